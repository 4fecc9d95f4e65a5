//! What the report reads from `template.yaml` (compiled in, so a report always prices the
//! template of the code it measured): parameter defaults, the access-log format, the routes and
//! the metrics its metric filters can create.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde_yaml::Value;

static TEXT: &str = include_str!("../../../../template.yaml");
static MANIFEST: &str = include_str!("../../../../model-artifacts/manifest.json");
static TEMPLATE: LazyLock<Value> =
    LazyLock::new(|| serde_yaml::from_str(TEXT).unwrap_or(Value::Null));

/// A parameter's `Default`, as a number.
pub fn default_number(parameter: &str) -> Option<f64> {
    let default = &TEMPLATE["Parameters"][parameter]["Default"];
    default
        .as_f64()
        .or_else(|| default.as_str().and_then(|s| s.parse().ok()))
}

/// A parameter's `Default`, as text.
pub fn default_text(parameter: &str) -> Option<String> {
    let default = &TEMPLATE["Parameters"][parameter]["Default"];
    default
        .as_str()
        .map(str::to_owned)
        .or_else(|| default.as_f64().map(|n| n.to_string()))
}

/// `Globals.Function.MemorySize`.
pub fn memory_mb() -> Option<f64> {
    TEMPLATE["Globals"]["Function"]["MemorySize"].as_f64()
}

/// The HTTP API's access-log `Format` (inside the `!If` on `ApiAccessLogs`).
pub fn access_log_format() -> Option<String> {
    let settings = &TEMPLATE["Resources"]["HttpApi"]["Properties"]["AccessLogSettings"];
    let Value::Tagged(tagged) = settings else {
        return settings["Format"].as_str().map(str::to_owned);
    };
    tagged
        .value
        .as_sequence()?
        .iter()
        .find_map(|branch| branch["Format"].as_str().map(str::to_owned))
}

/// The API routes the functions' `HttpApi` events declare (`$default` excluded).
fn routes() -> Vec<String> {
    let mut routes = Vec::new();
    let Some(resources) = TEMPLATE["Resources"].as_mapping() else {
        return routes;
    };
    for resource in resources.values() {
        let Some(events) = resource["Properties"]["Events"].as_mapping() else {
            continue;
        };
        for event in events.values() {
            if let Some(path) = event["Properties"]["Path"].as_str() {
                routes.push(path.to_owned());
            }
        }
    }
    routes
}

/// Every custom metric the template's metric filters can create, whatever the traffic:
/// metric name → number of dimension values. Dimension values come from fixed sets: a route
/// template or `unmatched`, a model label.
pub fn metrics() -> BTreeMap<String, usize> {
    let labels = serde_json::from_str::<serde_json::Value>(MANIFEST)
        .ok()
        .and_then(|m| m["labels"].as_array().map(Vec::len))
        .unwrap_or(0);
    let routes = routes().len() + 1; // + `unmatched`
    let mut metrics = BTreeMap::new();
    let Some(resources) = TEMPLATE["Resources"].as_mapping() else {
        return metrics;
    };
    for resource in resources.values() {
        if resource["Type"] != "AWS::Logs::MetricFilter" {
            continue;
        }
        let Some(transformations) = resource["Properties"]["MetricTransformations"].as_sequence()
        else {
            continue;
        };
        for t in transformations {
            let Some(name) = t["MetricName"].as_str() else {
                continue;
            };
            let values = t["Dimensions"].as_sequence().map_or(1, |dims| {
                dims.iter()
                    .map(|d| match d["Value"].as_str() {
                        Some("$.route") => routes,
                        Some("$.label") => labels,
                        _ => 1,
                    })
                    .product()
            });
            metrics.insert(name.to_owned(), values);
        }
    }
    metrics
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_throttle_and_the_access_log_format() {
        assert!(default_number("ApiThrottleRateLimit").is_some_and(|r| r > 0.0));
        assert!(default_number("ApiThrottleBurstLimit").is_some_and(|b| b > 0.0));
        assert_eq!(default_text("ApiAccessLogs").as_deref(), Some("false"));
        assert!(access_log_format().is_some_and(|f| f.contains("$context.requestId")));
        assert!(memory_mb().is_some());
    }

    #[test]
    fn metrics_come_from_fixed_sets() {
        let metrics = metrics();
        assert!(metrics.get("Latency").is_some_and(|&n| n >= 2));
        assert_eq!(metrics.get("Predictions"), Some(&3));
        assert_eq!(metrics.get("ServerErrors"), Some(&1));
    }
}

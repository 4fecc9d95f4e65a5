//! `POST /predict`, `POST /predict/batch`, `GET /model`, `GET /health`.
//!
//! Every protected request goes through the same steps, cheapest and least trusting first:
//!
//! ```text
//! route + method ─▶ bearer token ─▶ scope ─▶ body (size, type, JSON, values) ─▶ rate limit ─▶ inference
//!   404/405          401 (no I/O)     403      413/415/400/422                     429/503      200
//! ```
//!
//! The token check makes no network call, so unauthenticated traffic never reaches DynamoDB.
//! Validation runs before the limiter because a batch costs one unit per row and the row count
//! is only known once the body is parsed; a rejected body consumes no quota.

use http::{HeaderValue, Method, StatusCode};
use lambda_http::{Body, Request, Response};
use secure_ml_core::auth::{SCOPE_PREDICT, SCOPE_PROBA, Verifier};
use secure_ml_core::frame::route::{Route as Entry, Routes};
use secure_ml_core::frame::{Call, Frame};
use secure_ml_core::model::{PredictionView, ServedModel};
use secure_ml_core::predict::MAX_BODY_BYTES;
use secure_ml_core::problem::{ApiError, json_response};
use secure_ml_core::ratelimit::{Group, RateLimiter};
use serde::Serialize;

/// Everything a request needs, built once at init.
#[derive(Debug)]
pub struct Deps {
    pub frame: Frame,
    pub model: ServedModel,
    pub verifier: Verifier,
    pub limiter: RateLimiter,
}

/// The routes of this function, as `template.yaml` declares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Predict,
    Batch,
    Model,
    Health,
}

pub static ROUTES: Routes<Route> = Routes {
    service: "predict",
    routes: &[
        Entry::new("/predict", Method::POST, Route::Predict),
        Entry::new("/predict/batch", Method::POST, Route::Batch),
        Entry::new("/model", Method::GET, Route::Model),
        Entry::new("/health", Method::GET, Route::Health),
    ],
};

/// Handles one request. Never fails: every outcome is a response.
pub async fn handle(deps: &Deps, request: Request) -> Response<Body> {
    deps.frame
        .serve(&ROUTES, request, async |call, route| match route {
            Route::Predict => predict(deps, call).await,
            Route::Batch => batch(deps, call).await,
            Route::Model => model(deps, call).await,
            Route::Health => Ok(health(deps)),
        })
        .await
}

/// `POST /predict`: one row, one unit of quota.
async fn predict(deps: &Deps, call: &mut Call<'_>) -> Result<Response<Body>, ApiError> {
    let claims = call.authorize(&deps.verifier, SCOPE_PREDICT).await?;
    let row = deps
        .model
        .request()
        .parse_single(call.json_body(MAX_BODY_BYTES)?)?;
    call.charge(&deps.limiter, Group::Predict(claims.tier), 1)
        .await?;
    let prediction = deps.model.predict(&row, claims.has_scope(SCOPE_PROBA));
    call.count_prediction(prediction.label);
    Ok(json_response(StatusCode::OK, &prediction))
}

#[derive(Serialize)]
struct BatchResponse<'a> {
    predictions: Vec<PredictionView<'a>>,
    model_version: &'a str,
}

/// `POST /predict/batch`: N rows cost N units, so batching cannot multiply the quota.
async fn batch(deps: &Deps, call: &mut Call<'_>) -> Result<Response<Body>, ApiError> {
    let claims = call.authorize(&deps.verifier, SCOPE_PREDICT).await?;
    let rows = deps
        .model
        .request()
        .parse_batch(call.json_body(MAX_BODY_BYTES)?)?;
    let cost = u32::try_from(rows.len()).unwrap_or(u32::MAX);
    call.charge(&deps.limiter, Group::Predict(claims.tier), cost)
        .await?;
    let predictions = deps
        .model
        .predict_batch(&rows, claims.has_scope(SCOPE_PROBA));
    for prediction in &predictions {
        call.count_prediction(prediction.label);
    }
    let body = BatchResponse {
        predictions,
        model_version: deps.model.version(),
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// `GET /model`: the model card, one unit of quota.
async fn model(deps: &Deps, call: &mut Call<'_>) -> Result<Response<Body>, ApiError> {
    let claims = call.authorize(&deps.verifier, SCOPE_PREDICT).await?;
    call.charge(&deps.limiter, Group::Predict(claims.tier), 1)
        .await?;
    let mut response = Response::new(Body::Text(deps.model.card_json().to_owned()));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

#[derive(Serialize)]
struct Health<'a> {
    status: &'static str,
    model_version: &'a str,
}

/// `GET /health`: no token, no DynamoDB call.
fn health(deps: &Deps) -> Response<Body> {
    json_response(
        StatusCode::OK,
        &Health {
            status: "ok",
            model_version: deps.model.version(),
        },
    )
}

#[cfg(test)]
mod tests {
    //! Handler tests: API Gateway events from `events/` (and variants of them) in, status,
    //! headers and body out. DynamoDB is faked at the SDK boundary; an `UpdateItem` that
    //! succeeds is an admission, and the rule's call count proves which requests reached it.

    use super::*;
    use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
    use secure_ml_core::auth::Tier;
    use secure_ml_core::auth::token::unix_now;
    use secure_ml_core::auth::{KeySet, TokenIssuer, TokenSettings};
    use secure_ml_core::config::Vars;
    use secure_ml_core::ratelimit::RateLimitConfig;
    use secure_ml_core::testing::{Rule, RuleMode, mock, mock_dynamodb};
    use serde_json::Value;

    const ISS: &str = "https://auth.secure-ml-api.test";
    const AUD: &str = "secure-ml-api";
    const CLIENT: &str = "cl_00112233445566778899aabbccddeeff";

    static MODEL_ARTIFACT: &[u8] = include_bytes!(env!("MODEL_ARTIFACT_PATH"));
    static MODEL_MANIFEST: &str = include_str!(env!("MODEL_MANIFEST_PATH"));

    struct Harness {
        deps: Deps,
        issuer: TokenIssuer,
        writes: Rule,
        /// The access lines the frame wrote.
        log: secure_ml_core::testing::AccessLog,
    }

    impl Harness {
        /// The function as built: the embedded model (the committed default).
        fn new() -> Self {
            Self::serving(ServedModel::load(MODEL_ARTIFACT, MODEL_MANIFEST).unwrap())
        }

        /// The function serving another model.
        fn with_model((artifact, manifest): (Vec<u8>, String)) -> Self {
            Self::serving(ServedModel::load(&artifact, &manifest).unwrap())
        }

        fn serving(model: ServedModel) -> Self {
            let now = unix_now();
            let keys = KeySet::generate(now).unwrap();
            let settings = TokenSettings {
                issuer: ISS.into(),
                audience: AUD.into(),
                lifetime_seconds: 900,
            };
            let issuer = TokenIssuer::new(&keys, settings).unwrap();
            let verifier = Verifier::from_jwks(ISS, AUD, &issuer.jwks(now)).unwrap();
            let writes = mock!(aws_sdk_dynamodb::Client::update_item)
                .then_output(|| UpdateItemOutput::builder().build());
            let client = mock_dynamodb(RuleMode::MatchAny, &[&writes]);
            let config =
                RateLimitConfig::from_vars(&Vars::from_pairs([("RATE_LIMIT_TABLE", "rl-test")]))
                    .unwrap();
            let (frame, log) = secure_ml_core::testing::frame_with_penalty(u32::MAX);
            let deps = Deps {
                frame,
                model,
                verifier,
                limiter: RateLimiter::new(client, config),
            };
            Self {
                deps,
                issuer,
                writes,
                log,
            }
        }

        fn token(&self, scopes: &[&str], tier: Tier) -> String {
            let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
            self.issuer
                .issue(CLIENT, &scopes, tier, unix_now())
                .unwrap()
                .access_token
        }

        async fn send(&self, request: Request) -> Response<Body> {
            handle(&self.deps, request).await
        }

        /// `name` from `events/`, its placeholder token replaced by a real one with `scopes`.
        async fn send_event(&self, name: &str, scopes: &[&str]) -> Response<Body> {
            let token = self.token(scopes, Tier::Free);
            self.send(event(name, &token, |_| {})).await
        }

        /// `events/predict.json` with another body.
        async fn predict_with_body(&self, body: &str) -> Response<Body> {
            let token = self.token(&[SCOPE_PREDICT], Tier::Free);
            self.send(event("predict.json", &token, |e| {
                e["body"] = Value::String(body.to_owned())
            }))
            .await
        }

        async fn batch_with_body(&self, body: &str) -> Response<Body> {
            let token = self.token(&[SCOPE_PREDICT], Tier::Free);
            self.send(event("predict-batch.json", &token, |e| {
                e["body"] = Value::String(body.to_owned())
            }))
            .await
        }

        /// `route` (`predict.json` or `predict-batch.json`) with `body`, by a client holding
        /// both scopes.
        async fn with_proba(&self, route: &str, body: &str) -> Response<Body> {
            let token = self.token(&[SCOPE_PREDICT, SCOPE_PROBA], Tier::Free);
            self.send(event(route, &token, |e| {
                e["body"] = Value::String(body.to_owned())
            }))
            .await
        }

        fn dynamodb_writes(&self) -> usize {
            self.writes.num_calls()
        }
    }

    fn event(name: &str, token: &str, edit: impl FnOnce(&mut Value)) -> Request {
        let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
        let mut json: Value =
            serde_json::from_str(&text.replace("REPLACE_WITH_ACCESS_TOKEN", token)).unwrap();
        edit(&mut json);
        lambda_http::request::from_str(&json.to_string()).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn body_text(response: &Response<Body>) -> &str {
        match response.body() {
            Body::Text(text) => text,
            other => panic!("not a text body: {other:?}"),
        }
    }

    fn body_json(response: &Response<Body>) -> Value {
        let bytes: &[u8] = match response.body() {
            Body::Text(text) => text.as_bytes(),
            Body::Binary(bytes) => bytes,
            _ => b"null",
        };
        serde_json::from_slice(bytes).unwrap()
    }

    fn header<'a>(response: &'a Response<Body>, name: &str) -> Option<&'a str> {
        response.headers().get(name).map(|v| v.to_str().unwrap())
    }

    /// Asserts a problem+json response of `status` and `slug`, and returns its body.
    fn assert_problem(response: &Response<Body>, status: u16, slug: &str) -> Value {
        assert_eq!(response.status(), status, "body: {}", body_json(response));
        assert_eq!(
            header(response, "content-type"),
            Some("application/problem+json")
        );
        let body = body_json(response);
        assert_eq!(body["type"], format!("/problems/{slug}"));
        assert_eq!(body["status"], status);
        assert!(body["title"].is_string() && body["detail"].is_string());
        body
    }

    fn pointers(body: &Value) -> Vec<&str> {
        body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["pointer"].as_str().unwrap())
            .collect()
    }

    mod serving {
        use super::*;

        #[tokio::test]
        async fn predicts_setosa_for_the_tutorial_request() {
            let h = Harness::new();
            let response = h.send_event("predict.json", &[SCOPE_PREDICT]).await;
            assert_eq!(response.status(), 200);
            assert_eq!(header(&response, "content-type"), Some("application/json"));
            let body = body_json(&response);
            assert_eq!(body["prediction"], 0);
            assert_eq!(body["label"], "setosa");
            assert_eq!(body["model_version"], h.deps.model.version());
            assert_eq!(body["warnings"], Value::Array(vec![]));
            assert!(
                body.get("probabilities").is_none(),
                "probabilities need predict:proba"
            );
            assert_eq!(h.dynamodb_writes(), 1);
        }

        #[tokio::test]
        async fn rate_limit_headers_accompany_a_served_prediction() {
            let h = Harness::new();
            let response = h.send_event("predict.json", &[SCOPE_PREDICT]).await;
            assert_eq!(
                header(&response, "ratelimit-policy"),
                Some("\"predict\";q=60;w=60")
            );
            let ratelimit = header(&response, "ratelimit").unwrap();
            assert!(ratelimit.starts_with("\"predict\";r=19;t="), "{ratelimit}");
        }

        #[tokio::test]
        async fn probabilities_are_returned_only_with_the_proba_scope() {
            let h = Harness::new();
            let response = h
                .send_event("predict.json", &[SCOPE_PREDICT, SCOPE_PROBA])
                .await;
            assert_eq!(response.status(), 200);
            let body = body_json(&response);
            let probabilities = body["probabilities"].as_object().unwrap();
            assert_eq!(probabilities.len(), 3);
            let (best, _) = probabilities
                .iter()
                .max_by(|a, b| a.1.as_f64().unwrap().total_cmp(&b.1.as_f64().unwrap()))
                .unwrap();
            assert_eq!(best, body["label"].as_str().unwrap());
            let total: f64 = probabilities.values().map(|v| v.as_f64().unwrap()).sum();
            assert!((total - 1.0).abs() < 1e-9);
        }

        #[tokio::test]
        async fn accepts_a_base64_encoded_body_from_api_gateway() {
            let h = Harness::new();
            let response = h.send_event("predict-base64.json", &[SCOPE_PREDICT]).await;
            assert_eq!(response.status(), 200);
            assert_eq!(body_json(&response)["label"], "virginica");
        }

        #[tokio::test]
        async fn batch_predicts_every_row_and_costs_one_unit_per_row() {
            let h = Harness::new();
            let response = h.send_event("predict-batch.json", &[SCOPE_PREDICT]).await;
            assert_eq!(response.status(), 200);
            let body = body_json(&response);
            let labels: Vec<&str> = body["predictions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["label"].as_str().unwrap())
                .collect();
            assert_eq!(labels, ["setosa", "versicolor", "virginica"]);
            assert_eq!(body["model_version"], h.deps.model.version());
            // Three rows from a fresh key with burst 20: 17 left.
            assert!(
                header(&response, "ratelimit")
                    .unwrap()
                    .starts_with("\"predict\";r=17;")
            );
        }

        #[tokio::test]
        async fn warns_about_features_outside_the_training_range() {
            let h = Harness::new();
            let response = h
                .predict_with_body(r#"{"data": [9.5, 3.0, 1.4, 0.2]}"#)
                .await;
            assert_eq!(response.status(), 200);
            let warnings = body_json(&response)["warnings"].clone();
            assert_eq!(warnings.as_array().unwrap().len(), 1);
            assert!(
                warnings[0].as_str().unwrap().contains("sepal_length"),
                "{warnings}"
            );
        }

        /// Found by schemathesis: `{}` wrote 5e-324 out in full (326 characters per warning).
        #[tokio::test]
        async fn warnings_quote_extreme_values_briefly() {
            let h = Harness::new();
            let response = h
                .predict_with_body(r#"{"data": [5e-324, 3.0, 1.4, 0.2]}"#)
                .await;
            assert_eq!(response.status(), 200);
            let warnings = body_json(&response)["warnings"].clone();
            let warning = warnings[0].as_str().unwrap();
            assert!(warning.starts_with("sepal_length = 5e-324 cm"), "{warning}");
            assert!(warning.len() < 100, "{warning}");
        }

        #[tokio::test]
        async fn model_card_describes_the_embedded_model() {
            let h = Harness::new();
            let response = h.send_event("model.json", &[SCOPE_PREDICT]).await;
            assert_eq!(response.status(), 200);
            let card = body_json(&response);
            assert_eq!(card["version"], h.deps.model.version());
            assert_eq!(card["smartcore_version"], "0.7.0");
            assert_eq!(
                card["labels"],
                serde_json::json!(["setosa", "versicolor", "virginica"])
            );
            assert!(card["metrics"]["holdout_accuracy"].as_f64().unwrap() > 0.9);
            assert!(card["metrics"]["cv_accuracy_mean"].as_f64().unwrap() > 0.9);
            assert_eq!(card["features"][0]["unit"], "cm");
            assert!(header(&response, "ratelimit-policy").is_some());
        }

        #[tokio::test]
        async fn health_needs_no_token_and_no_dynamodb_call() {
            let h = Harness::new();
            let response = h.send(event("health.json", "", |_| {})).await;
            assert_eq!(response.status(), 200);
            let body = body_json(&response);
            assert_eq!(body["status"], "ok");
            assert_eq!(body["model_version"], h.deps.model.version());
            assert_eq!(h.dynamodb_writes(), 0);
        }
    }

    mod any_model {
        //! What is served follows the manifest: the request shape, the answer, the metrics.
        use super::*;
        use secure_ml_core::model::fixtures;

        #[tokio::test]
        async fn the_default_models_answer_is_unchanged_byte_for_byte() {
            let h = Harness::new();
            let manifest: Value = serde_json::from_str(MODEL_MANIFEST).unwrap();
            let response = h
                .predict_with_body(r#"{"data": [5.1, 3.5, 1.4, 0.2]}"#)
                .await;
            let expected = format!(
                r#"{{"prediction":0,"label":"setosa","model_version":{},"warnings":[]}}"#,
                manifest["version"]
            );
            assert_eq!(body_text(&response), expected);
        }

        #[tokio::test]
        async fn features_may_be_named_instead_of_ordered() {
            let h = Harness::new();
            let manifest: Value = serde_json::from_str(MODEL_MANIFEST).unwrap();
            let names: Vec<&str> = manifest["features"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["name"].as_str().unwrap())
                .collect();
            let values = [6.7, 3.0, 5.2, 2.3];
            let array = h
                .with_proba("predict.json", r#"{"data": [6.7, 3.0, 5.2, 2.3]}"#)
                .await;
            let named: serde_json::Map<String, Value> = names
                .iter()
                .rev()
                .zip(values.iter().rev())
                .map(|(name, value)| ((*name).to_owned(), (*value).into()))
                .collect();
            let named = serde_json::json!({ "data": named }).to_string();
            let by_name = h.with_proba("predict.json", &named).await;
            assert_eq!(by_name.status(), 200, "{}", body_json(&by_name));
            assert_eq!(body_text(&by_name), body_text(&array));
        }

        #[tokio::test]
        async fn a_misnamed_feature_is_a_422_naming_it() {
            let h = Harness::new();
            let response = h
                .predict_with_body(
                    r#"{"data": {"sepal_length": 5.1, "sepal_width": 3.5, "petal_len": 1.4, "petal_width": 0.2}}"#,
                )
                .await;
            let problem = assert_problem(&response, 422, "validation-failed");
            assert_eq!(
                pointers(&problem),
                ["/data/petal_len", "/data/petal_length"]
            );
            assert_eq!(h.dynamodb_writes(), 0);
        }

        #[tokio::test]
        async fn a_regressor_answers_a_number_without_label_or_probabilities() {
            let h = Harness::with_model(fixtures::regressor());
            let response = h
                .with_proba("predict.json", r#"{"data": {"bmi": 31, "age": 40}}"#)
                .await;
            assert_eq!(response.status(), 200);
            assert_eq!(
                body_text(&response),
                r#"{"prediction":200.25,"model_version":"0.3.1","warnings":[]}"#
            );
            let batch = h
                .with_proba(
                    "predict-batch.json",
                    r#"{"instances": [[40, 20], [95, 31]]}"#,
                )
                .await;
            assert_eq!(
                body_json(&batch),
                serde_json::json!({
                    "predictions": [
                        {"prediction": 100.5, "model_version": "0.3.1", "warnings": []},
                        {"prediction": 200.25, "model_version": "0.3.1",
                         "warnings": ["age = 95 years is outside the training range [18, 90]"]},
                    ],
                    "model_version": "0.3.1",
                })
            );
        }

        #[tokio::test]
        async fn a_regressors_rows_are_counted_without_a_label() {
            let h = Harness::with_model(fixtures::regressor());
            h.with_proba(
                "predict-batch.json",
                r#"{"instances": [[40, 20], [95, 31]]}"#,
            )
            .await;
            let lines = secure_ml_core::testing::access_lines(&h.log);
            assert_eq!(lines.len(), 1, "{lines:?}");
            assert_eq!(lines[0]["predictions"], 2);
            assert!(lines[0].get("label").is_none(), "{}", lines[0]);
        }

        #[tokio::test]
        async fn another_models_features_bounds_and_names_are_the_contract() {
            let h = Harness::with_model(fixtures::regressor());
            let problem = assert_problem(
                &h.predict_with_body(r#"{"data": [-1, 20, 3]}"#).await,
                422,
                "validation-failed",
            );
            assert_eq!(pointers(&problem), ["/data", "/data/0"]);
            assert_eq!(
                problem["errors"][1]["detail"],
                "age must be at least 0 (years), got -1"
            );
            let h = Harness::with_model(fixtures::classifier());
            let problem = assert_problem(
                &h.predict_with_body(r#"{"data": {"x": 1, "y/z": "2"}}"#)
                    .await,
                422,
                "validation-failed",
            );
            assert_eq!(pointers(&problem), ["/data/y~1z"]);
            let response = h
                .with_proba("predict.json", r#"{"data": {"x": 1, "y/z": 2}}"#)
                .await;
            assert_eq!(
                body_text(&response),
                r#"{"prediction":1,"label":"yes","model_version":"0.3.1","warnings":[],"probabilities":{"no":0.125,"yes":0.875}}"#
            );
        }

        #[tokio::test]
        async fn the_model_card_is_the_manifest_as_published() {
            let (artifact, manifest) = fixtures::regressor();
            let h = Harness::with_model((artifact, manifest.clone()));
            let response = h.send_event("model.json", &[SCOPE_PREDICT]).await;
            assert_eq!(response.status(), 200);
            assert_eq!(
                body_json(&response),
                serde_json::from_str::<Value>(&manifest).unwrap()
            );
        }
    }

    mod routing {
        use super::*;
        use lambda_http::RequestExt;
        use std::collections::BTreeSet;

        /// Every metric dimension value the access lines carry: the template's metric filters
        /// read `route` and `label` from them.
        fn dimension_values(h: &Harness) -> BTreeSet<String> {
            let mut values = BTreeSet::new();
            for line in secure_ml_core::testing::access_lines(&h.log) {
                for name in ["route", "label"] {
                    if let Some(value) = line[name].as_str() {
                        values.insert(format!("\"{name}\"={value}"));
                    }
                }
            }
            values
        }

        #[tokio::test]
        async fn a_thousand_unknown_paths_publish_no_new_metric_dimension_value() {
            let h = Harness::new();
            h.send_event("predict.json", &[SCOPE_PREDICT]).await;
            h.send_event("predict-batch.json", &[SCOPE_PREDICT]).await;
            h.send(event("health.json", "", |_| {})).await;
            let known = dimension_values(&h);
            for i in 0..1_000 {
                let request = event("unknown-route.json", "", |_| {})
                    .with_raw_http_path(format!("/x{i}/{}", "y".repeat(i % 7)));
                assert_eq!(h.send(request).await.status(), 404);
            }
            let wrong_method = event("predict-wrong-method.json", "", |_| {});
            assert_eq!(h.send(wrong_method).await.status(), 405);
            let after = dimension_values(&h);
            let new: Vec<&String> = after.difference(&known).collect();
            assert_eq!(new, [&"\"route\"=unmatched".to_owned()], "{after:?}");
            assert!(
                after.iter().all(|v| {
                    [
                        "\"route\"=/predict",
                        "\"route\"=/predict/batch",
                        "\"route\"=/health",
                    ]
                    .contains(&v.as_str())
                        || v == "\"route\"=unmatched"
                        || v.starts_with("\"label\"=")
                }),
                "{after:?}"
            );
        }

        #[tokio::test]
        async fn aliases_of_a_route_are_404s() {
            let h = Harness::new();
            let token = h.token(&[SCOPE_PREDICT], Tier::Free);
            for alias in [
                "/predict/",
                "//predict",
                "/x/../predict",
                "/%70redict",
                "/predict%2F",
                "/PREDICT",
                "/predict\\",
                "/./predict",
                "/predict/.",
                // On AWS the `$default` route sends these here with this raw path; a prefix
                // that `cargo lambda watch` strips locally is no alias on AWS either.
                "/lambda-url/predict/predict",
                "/lambda-url/x/predict",
            ] {
                let request = event("predict.json", &token, |e| {
                    e["rawPath"] = Value::String(alias.into());
                });
                assert_problem(&h.send(request).await, 404, "not-found");
            }
            assert_eq!(h.dynamodb_writes(), 0);
        }

        #[tokio::test]
        async fn unknown_route_is_a_404_problem() {
            let h = Harness::new();
            assert_problem(
                &h.send_event("unknown-route.json", &[SCOPE_PREDICT]).await,
                404,
                "not-found",
            );
        }

        #[tokio::test]
        async fn wrong_method_is_a_405_with_allow() {
            let h = Harness::new();
            let response = h
                .send_event("predict-wrong-method.json", &[SCOPE_PREDICT])
                .await;
            assert_problem(&response, 405, "method-not-allowed");
            assert_eq!(header(&response, "allow"), Some("POST"));
        }
    }

    mod authentication {
        use super::*;

        #[tokio::test]
        async fn a_source_that_keeps_sending_bad_tokens_waits_and_others_do_not() {
            let mut h = Harness::new();
            h.deps.frame = secure_ml_core::testing::frame_with_penalty(50).0;
            let from = |ip: &str| {
                let ip = ip.to_owned();
                event("predict.json", "not.a.jwt", move |e| {
                    e["requestContext"]["http"]["sourceIp"] = Value::String(ip);
                })
            };
            let mut statuses = Vec::new();
            for _ in 0..1_000 {
                statuses.push(h.send(from("203.0.113.9")).await.status().as_u16());
            }
            assert!(statuses[..50].iter().all(|s| *s == 401), "{statuses:?}");
            assert!(statuses[50..].iter().all(|s| *s == 429), "{statuses:?}");
            let refused = h.send(from("203.0.113.9")).await;
            let problem = assert_problem(&refused, 429, "quota-exceeded");
            assert!(
                problem["detail"]
                    .as_str()
                    .unwrap()
                    .contains("rejected requests")
            );
            let retry_after: u64 = header(&refused, "retry-after").unwrap().parse().unwrap();
            assert!((1..=60).contains(&retry_after));
            // Another address, even a valid token from the same one, is judged on its own.
            assert_eq!(h.send(from("203.0.113.10")).await.status(), 401);
            let token = h.token(&[SCOPE_PREDICT], Tier::Free);
            let good = event("predict.json", &token, |e| {
                e["requestContext"]["http"]["sourceIp"] = Value::String("203.0.113.10".into());
            });
            assert_eq!(h.send(good).await.status(), 200);
            assert_eq!(
                h.dynamodb_writes(),
                1,
                "rejections and penalties cost no write"
            );
        }

        #[tokio::test]
        async fn missing_token_is_a_401_bearer_challenge_before_any_dynamodb_call() {
            let h = Harness::new();
            let response = h.send(event("predict-no-token.json", "", |_| {})).await;
            assert_problem(&response, 401, "invalid-token");
            assert!(
                header(&response, "www-authenticate")
                    .unwrap()
                    .starts_with("Bearer realm=")
            );
            assert_eq!(h.dynamodb_writes(), 0);
        }

        #[tokio::test]
        async fn token_in_the_query_string_is_ignored() {
            let h = Harness::new();
            let token = h.token(&[SCOPE_PREDICT], Tier::Free);
            let response = h
                .send(event("predict-token-in-query.json", &token, |_| {}))
                .await;
            assert_problem(&response, 401, "invalid-token");
        }

        #[tokio::test]
        async fn garbage_token_is_a_401_invalid_token() {
            let h = Harness::new();
            let response = h.send(event("predict.json", "not.a.jwt", |_| {})).await;
            assert_problem(&response, 401, "invalid-token");
            assert!(
                header(&response, "www-authenticate")
                    .unwrap()
                    .contains("error=\"invalid_token\"")
            );
            assert!(!body_json(&response).to_string().contains("not.a.jwt"));
        }

        #[tokio::test]
        async fn token_without_the_predict_scope_is_a_403() {
            let h = Harness::new();
            for name in ["predict.json", "predict-batch.json", "model.json"] {
                let response = h.send_event(name, &[SCOPE_PROBA]).await;
                assert_problem(&response, 403, "insufficient-scope");
                assert!(
                    header(&response, "www-authenticate")
                        .unwrap()
                        .contains("error=\"insufficient_scope\"")
                );
            }
            assert_eq!(h.dynamodb_writes(), 0);
        }

        #[tokio::test]
        async fn request_without_a_source_ip_is_refused_with_403() {
            let h = Harness::new();
            let response = h
                .send_event("predict-no-source-ip.json", &[SCOPE_PREDICT])
                .await;
            assert_problem(&response, 403, "no-source-ip");
            assert_eq!(h.dynamodb_writes(), 0);
        }
    }

    mod bad_input {
        //! Every bad input: a clear 4xx problem, never a 5xx, and no quota spent.
        use super::*;

        /// Every refusal below, and the row of 8,183 zeros that once got an 823 KB answer to
        /// a 16 KB request: no answer is larger than twice its request or 4 KiB.
        #[tokio::test]
        async fn no_error_answer_is_larger_than_twice_its_request_or_4_kib() {
            let h = Harness::new();
            let zeros = vec!["0"; 8_183].join(",");
            let nulls = vec!["null"; 3_000].join(",");
            let rows = vec!["[0, 0, 0, 0]"; 100].join(",");
            let slashes = "/".repeat(8_000);
            let names: Vec<String> = (0..40)
                .map(|i| format!(r#""{i}{}": 1"#, "~".repeat(60)))
                .collect();
            let names = names.join(",");
            let bodies = [
                format!(r#"{{"{slashes}": 1}}"#),
                format!(r#"{{"data": {{"{slashes}": 1}}}}"#),
                format!(r#"{{"data": {{{names}}}, {names}}}"#),
                r#"{"instances": [{}, {}, {}, {}, {}, {}, {}]}"#.to_owned(),
                format!(r#"{{"instances": [[{zeros}]]}}"#),
                format!(r#"{{"data": [{zeros}]}}"#),
                format!(r#"{{"instances": [{rows}]}}"#),
                format!(r#"{{"data": [{nulls}]}}"#),
                format!(r#"{{"instances": [{nulls}]}}"#),
                r#"{"data": [5e-324, -5e-324, 1e300, "x"]}"#.to_owned(),
                "{".repeat(4_000),
                String::new(),
            ];
            for body in &bodies {
                for response in [
                    h.predict_with_body(body).await,
                    h.batch_with_body(body).await,
                ] {
                    let status = response.status().as_u16();
                    assert!((400..500).contains(&status), "{status} for {body:.60}");
                    let answer = match response.body() {
                        Body::Text(text) => text.len(),
                        other => panic!("{other:?}"),
                    };
                    assert!(
                        answer <= (2 * body.len()).max(4096),
                        "a {}-byte body got a {answer}-byte answer",
                        body.len()
                    );
                }
            }
            assert_eq!(h.dynamodb_writes(), 0);
        }

        async fn assert_rejected(
            h: &Harness,
            response: Response<Body>,
            status: u16,
            slug: &str,
        ) -> Value {
            let body = assert_problem(&response, status, slug);
            assert_eq!(
                h.dynamodb_writes(),
                0,
                "a rejected body must not consume quota"
            );
            body
        }

        /// Events the frame cannot read as sent, decoded as the runtime decodes them: each is
        /// a small `400 malformed-request` with an access line, and spends no quota.
        #[tokio::test]
        async fn unreadable_events_are_400_malformed_request() {
            use secure_ml_core::frame::event::decode;
            let h = Harness::new();
            let token = h.token(&[SCOPE_PREDICT], Tier::Free);
            let predict = |edit: &dyn Fn(&mut Value)| {
                let path = format!("{}/../../events/predict.json", env!("CARGO_MANIFEST_DIR"));
                let text = std::fs::read_to_string(path).unwrap();
                let mut json: Value =
                    serde_json::from_str(&text.replace("REPLACE_WITH_ACCESS_TOKEN", &token))
                        .unwrap();
                edit(&mut json);
                json.to_string()
            };
            let events = [
                // A body flagged base64 that is not: lambda_http would panic on it.
                predict(&|e| {
                    e["isBase64Encoded"] = true.into();
                    e["body"] = "{\"data\": [5.1, 3.5, 1.4, 0.2]}".into();
                }),
                // A header value the http crate refuses: neither way reads the event.
                predict(&|e| e["headers"]["x-bad"] = "a\u{1}b".into()),
                // A method that is not an HTTP token.
                predict(&|e| e["requestContext"]["http"]["method"] = "PO ST".into()),
                // Not an API Gateway event at all.
                r#"{"Records": [{"eventSource": "aws:sqs", "body": "x"}]}"#.to_owned(),
            ];
            for payload in &events {
                let (request, _) = decode(payload, lambda_http::Context::default());
                let response = h.send(request).await;
                let size = body_text(&response).len();
                assert!(size <= 512, "{size} bytes for {payload:.80}");
                let body = assert_rejected(&h, response, 400, "malformed-request").await;
                let detail = body["detail"].as_str().unwrap();
                assert!(
                    ["base64", "not an API Gateway request"]
                        .iter()
                        .any(|why| detail.contains(why)),
                    "{detail}"
                );
            }
            let lines = secure_ml_core::testing::access_lines(&h.log);
            assert_eq!(lines.len(), events.len());
            assert!(lines.iter().all(|l| l["status"] == 400), "{lines:?}");
        }

        #[tokio::test]
        async fn empty_non_json_and_syntax_errors_are_400() {
            let h = Harness::new();
            for body in [
                "",
                "   ",
                "not json",
                "{\"data\": [5.1, 3.5, 1.4, 0.2]",
                "{\"data\": [1e400, 1, 1, 1]}",
            ] {
                let response = h.predict_with_body(body).await;
                assert_rejected(&h, response, 400, "malformed-json").await;
            }
        }

        #[tokio::test]
        async fn json_null_and_non_objects_are_422_at_the_root() {
            let h = Harness::new();
            for body in ["null", "[5.1, 3.5, 1.4, 0.2]", "42", "\"data\""] {
                let problem = assert_rejected(
                    &h,
                    h.predict_with_body(body).await,
                    422,
                    "validation-failed",
                )
                .await;
                assert_eq!(pointers(&problem), [""]);
            }
        }

        #[tokio::test]
        async fn wrong_content_type_is_415() {
            let h = Harness::new();
            let response = h
                .send_event("predict-wrong-content-type.json", &[SCOPE_PREDICT])
                .await;
            assert_rejected(&h, response, 415, "unsupported-media-type").await;
        }

        #[tokio::test]
        async fn missing_content_type_is_415() {
            let h = Harness::new();
            let token = h.token(&[SCOPE_PREDICT], Tier::Free);
            let request = event("predict.json", &token, |e| {
                e["headers"].as_object_mut().unwrap().remove("content-type");
            });
            assert_rejected(&h, h.send(request).await, 415, "unsupported-media-type").await;
        }

        #[tokio::test]
        async fn one_mebibyte_body_is_413() {
            let h = Harness::new();
            let huge = format!(
                "{{\"data\": [5.1, 3.5, 1.4, 0.2], \"pad\": \"{}\"}}",
                "x".repeat(1 << 20)
            );
            assert_rejected(
                &h,
                h.predict_with_body(&huge).await,
                413,
                "payload-too-large",
            )
            .await;
        }

        #[tokio::test]
        async fn each_invalid_value_is_a_422_with_its_pointer() {
            let h = Harness::new();
            let cases: &[(&str, &[&str])] = &[
                (r#"{}"#, &["/data"]),
                (r#"{"data": [5.1, 3.5, 1.4]}"#, &["/data"]),
                (r#"{"data": [5.1, 3.5, 1.4, 0.2, 1.0]}"#, &["/data"]),
                (
                    r#"{"data": ["5.1", "3.5", "1.4", "0.2"]}"#,
                    &["/data/0", "/data/1", "/data/2", "/data/3"],
                ),
                (
                    r#"{"data": ["NaN", 3.5, "Infinity", "-Infinity"]}"#,
                    &["/data/0", "/data/2", "/data/3"],
                ),
                (r#"{"data": [-5.1, 3.5, 1.4, 0.2]}"#, &["/data/0"]),
                (r#"{"data": [5.1, 0, 1.4, 0.0]}"#, &["/data/1", "/data/3"]),
                (
                    r#"{"data": [5.1, 3.5, 100.5, 1e300]}"#,
                    &["/data/2", "/data/3"],
                ),
                (r#"{"data": [[5.1, 3.5, 1.4, 0.2]]}"#, &["/data", "/data/0"]),
                (r#"{"data": [[5.1], 3.5, 1.4, 0.2]}"#, &["/data/0"]),
                (r#"{"data": [5.1, 3.5, 1.4, 0.2], "extra": 1}"#, &["/extra"]),
                (
                    r#"{"data": [5.1, 3.5, 1.4, 0.2], "data": [6.0, 3.0, 4.5, 1.5]}"#,
                    &["/data"],
                ),
            ];
            for (body, expected) in cases {
                let problem = assert_rejected(
                    &h,
                    h.predict_with_body(body).await,
                    422,
                    "validation-failed",
                )
                .await;
                assert_eq!(pointers(&problem), *expected, "{body}");
            }
        }

        #[tokio::test]
        async fn batch_of_101_rows_and_empty_batch_are_422() {
            let h = Harness::new();
            let rows = vec!["[5.1, 3.5, 1.4, 0.2]"; 101].join(",");
            for body in [
                format!(r#"{{"instances": [{rows}]}}"#),
                r#"{"instances": []}"#.to_owned(),
            ] {
                let problem =
                    assert_rejected(&h, h.batch_with_body(&body).await, 422, "validation-failed")
                        .await;
                assert_eq!(pointers(&problem), ["/instances"]);
            }
        }

        #[tokio::test]
        async fn one_bad_row_rejects_the_whole_batch_with_every_pointer() {
            let h = Harness::new();
            let response = h
                .send_event("predict-batch-one-bad-row.json", &[SCOPE_PREDICT])
                .await;
            let problem = assert_rejected(&h, response, 422, "validation-failed").await;
            assert_eq!(pointers(&problem), ["/instances/1/1", "/instances/1/3"]);
        }

        #[tokio::test]
        async fn the_sample_invalid_event_points_at_each_bad_value() {
            let h = Harness::new();
            let response = h
                .send_event("predict-invalid-values.json", &[SCOPE_PREDICT])
                .await;
            let problem = assert_rejected(&h, response, 422, "validation-failed").await;
            assert_eq!(pointers(&problem), ["/data/1", "/data/2", "/data/3"]);
        }
    }

    mod rate_limits {
        use super::*;

        #[tokio::test]
        async fn batch_larger_than_the_burst_is_a_422_naming_the_tiers_maximum_without_a_dynamodb_call()
         {
            let h = Harness::new();
            let rows = vec!["[5.1, 3.5, 1.4, 0.2]"; 21].join(",");
            let response = h
                .batch_with_body(&format!(r#"{{"instances": [{rows}]}}"#))
                .await;
            // A 429 would tell the client to retry a request that can never be admitted.
            let problem = assert_problem(&response, 422, "too-many-rows");
            let detail = problem["detail"].as_str().unwrap();
            assert!(
                detail.contains("21 rows") && detail.contains("at most 20"),
                "{detail}"
            );
            assert!(header(&response, "retry-after").is_none());
            assert_eq!(
                header(&response, "ratelimit-policy"),
                Some("\"predict\";q=60;w=60")
            );
            assert_eq!(h.dynamodb_writes(), 0);
        }

        #[tokio::test]
        async fn premium_tier_multiplies_the_policy() {
            let h = Harness::new();
            let token = h.token(&[SCOPE_PREDICT], Tier::Premium);
            let rows = vec!["[5.1, 3.5, 1.4, 0.2]"; 50].join(",");
            let request = event("predict-batch.json", &token, |e| {
                e["body"] = Value::String(format!(r#"{{"instances": [{rows}]}}"#));
            });
            let response = h.send(request).await;
            assert_eq!(response.status(), 200);
            assert_eq!(
                header(&response, "ratelimit-policy"),
                Some("\"predict\";q=300;w=60")
            );
        }
    }
}

//! API Gateway HTTP API (payload 2.0) events, built from the repository's sample events so the
//! benchmarks send exactly what the handler tests and `cargo lambda invoke` send.

use base64::Engine;
use serde_json::Value;

static PREDICT: &str = include_str!("../../../events/predict.json");
static BATCH: &str = include_str!("../../../events/predict-batch.json");
static HEALTH: &str = include_str!("../../../events/health.json");
static TOKEN: &str = include_str!("../../../events/token-valid-basic.json");

/// Source IPs: `10.<phase>.x.y`, unique per request within a phase, so every request is a new
/// key to the rate limiter (one conditional write, always admitted) unless a test wants otherwise.
pub fn ip(phase: u8, i: u32) -> String {
    format!("10.{phase}.{}.{}", (i >> 8) & 0xff, i & 0xff)
}

fn build(template: &str, ip: &str, seq: u64, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut event: Value = serde_json::from_str(template).unwrap_or(Value::Null);
    event["requestContext"]["http"]["sourceIp"] = Value::String(ip.to_owned());
    event["requestContext"]["requestId"] = Value::String(format!("bench{seq:012}="));
    edit(&mut event);
    serde_json::to_vec(&event).unwrap_or_default()
}

fn set_header(event: &mut Value, name: &str, value: String) {
    event["headers"][name] = Value::String(value);
}

/// `POST /predict` with the tutorial's body.
pub fn predict(token: &str, ip: &str, seq: u64) -> Vec<u8> {
    build(PREDICT, ip, seq, |e| {
        set_header(e, "authorization", format!("Bearer {token}"));
    })
}

/// `POST /predict` with another body: a row of the model a variant was built with.
pub fn predict_with_body(token: &str, ip: &str, seq: u64, body: &str) -> Vec<u8> {
    build(PREDICT, ip, seq, |e| {
        set_header(e, "authorization", format!("Bearer {token}"));
        e["body"] = Value::String(body.to_owned());
    })
}

/// `POST /predict/batch` with `rows` rows.
pub fn batch(token: &str, ip: &str, seq: u64, rows: usize) -> Vec<u8> {
    let body = format!(
        r#"{{"instances": [{}]}}"#,
        vec!["[5.1, 3.5, 1.4, 0.2]"; rows].join(", ")
    );
    build(BATCH, ip, seq, |e| {
        set_header(e, "authorization", format!("Bearer {token}"));
        e["body"] = Value::String(body);
    })
}

/// `GET /health`: no token, no DynamoDB call.
pub fn health(ip: &str, seq: u64) -> Vec<u8> {
    build(HEALTH, ip, seq, |_| {})
}

/// `POST /predict` with a token that does not verify.
pub fn predict_bad_token(ip: &str, seq: u64) -> Vec<u8> {
    build(PREDICT, ip, seq, |e| {
        set_header(e, "authorization", "Bearer not.a.jwt".to_owned());
    })
}

/// `POST /token` with HTTP Basic client authentication.
pub fn token(client_id: &str, client_secret: &str, ip: &str, seq: u64) -> Vec<u8> {
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{client_secret}"));
    build(TOKEN, ip, seq, |e| {
        set_header(e, "authorization", format!("Basic {basic}"));
    })
}

/// `POST /predict` with a token of the right shape and a known `kid` whose signature does not
/// verify: the most CPU an unauthenticated request can make the verifier spend (the signature
/// check runs, then fails).
pub fn predict_forged_token(token: &str, ip: &str, seq: u64) -> Vec<u8> {
    let forged = match token.rsplit_once('.') {
        // A canonical base64url signature of the same length (all zero bytes): it decodes,
        // so the Ed25519 check runs, and fails.
        Some((signed, signature)) => format!("{signed}.{}", "A".repeat(signature.len())),
        None => "not.a.jwt".to_owned(),
    };
    predict(&forged, ip, seq)
}

/// `GET <path>`, a path no route has: the `$default` route sends it to the predict function.
pub fn unknown_path(path: &str, ip: &str, seq: u64) -> Vec<u8> {
    build(HEALTH, ip, seq, |e| {
        e["rawPath"] = Value::String(path.to_owned());
        e["requestContext"]["http"]["path"] = Value::String(path.to_owned());
        e["routeKey"] = Value::String("$default".to_owned());
    })
}

/// `POST /token` with a form body that is not a client-credentials request (no credentials).
pub fn token_bad_body(ip: &str, seq: u64) -> Vec<u8> {
    build(TOKEN, ip, seq, |e| {
        if let Some(headers) = e["headers"].as_object_mut() {
            headers.remove("authorization");
        }
        e["body"] = Value::String("grant_type=password&username=a&password=b".to_owned());
    })
}

/// The event `{}` for the null function.
pub fn empty() -> Vec<u8> {
    b"{}".to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips_are_unique_within_a_phase() {
        let ips: std::collections::HashSet<String> = (0..65_536).map(|i| ip(2, i)).collect();
        assert_eq!(ips.len(), 65_536);
    }

    #[test]
    fn predict_event_carries_token_and_source_ip() {
        let event: Value = serde_json::from_slice(&predict("t.o.k", "10.9.0.1", 7)).unwrap();
        assert_eq!(event["headers"]["authorization"], "Bearer t.o.k");
        assert_eq!(event["requestContext"]["http"]["sourceIp"], "10.9.0.1");
        assert_eq!(event["rawPath"], "/predict");
    }

    #[test]
    fn a_predict_event_can_carry_another_models_row() {
        let body = r#"{"data": [0.5, -1.25]}"#;
        let event: Value =
            serde_json::from_slice(&predict_with_body("t.o.k", "10.9.0.1", 7, body)).unwrap();
        assert_eq!(event["headers"]["authorization"], "Bearer t.o.k");
        assert_eq!(event["body"], body);
        assert_eq!(event["rawPath"], "/predict");
    }

    #[test]
    fn a_forged_token_keeps_its_shape_and_changes_its_signature() {
        let event: Value =
            serde_json::from_slice(&predict_forged_token("h.p.sigA", "10.9.0.1", 1)).unwrap();
        assert_eq!(event["headers"]["authorization"], "Bearer h.p.AAAA");
    }

    #[test]
    fn batch_event_has_the_requested_rows() {
        let event: Value = serde_json::from_slice(&batch("t", "10.9.0.1", 1, 4)).unwrap();
        let body: Value = serde_json::from_str(event["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["instances"].as_array().unwrap().len(), 4);
    }
}

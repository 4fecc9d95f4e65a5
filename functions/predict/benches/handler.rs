//! The whole CPU path of `POST /predict` through the real `handler::handle`, with the rate
//! limiter's `UpdateItem` answered instantly by `aws-smithy-mocks` (the SDK's request pipeline
//! still runs: serialization, interceptors, retry bookkeeping — that is CPU a request pays).
//!
//! | bench | from → to |
//! |---|---|
//! | `request_to_response` | a built `http::Request` → `handle` → `Response` |
//! | `event_to_response` | the API Gateway event JSON → `frame::event` → `handle` → response JSON: everything between the Runtime API's two HTTP messages (the access line formatted and dropped) |
//! | `event_to_response_json_logs` | the same, with the JSON log subscriber of `telemetry::init` installed (to a sink) |
//! | `health_event_to_response` | the same for `GET /health`: the frame's whole cost, no token, no DynamoDB |
//! | `decode_event` | `frame::event::decode` of the `/predict` event alone |
//! | `encode_response` | `frame::event::encode` of a `/predict` response and its JSON |
//! | `limiter_check_mocked` | `RateLimiter::check` alone (key new to the limiter's memory after the first call: busy, EXTEND) |
//! | `sdk_update_item_mocked` | a bare mocked `UpdateItem`: the SDK's request pipeline, nothing of ours |
//!
//! The handler is compiled into this bench from `src/handler.rs`: a binary crate has no library
//! to link against.
//! Run with `cargo bench -p predict-function --bench handler -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
use aws_sdk_dynamodb::types::AttributeValue;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use lambda_http::Context;
use secure_ml_core::auth::token::unix_now;
use secure_ml_core::auth::{KeySet, SCOPE_PREDICT, Tier, TokenIssuer, TokenSettings, Verifier};
use secure_ml_core::config::Vars;
use secure_ml_core::frame::Frame;
use secure_ml_core::frame::access::Sink;
use secure_ml_core::frame::event;
use secure_ml_core::frame::penalty::PenaltyPolicy;
use secure_ml_core::model::ServedModel;
use secure_ml_core::ratelimit::{ClientKey, Group, RateLimitConfig, RateLimiter};
use secure_ml_core::testing::{RuleMode, mock, mock_dynamodb};
use tracing_subscriber::EnvFilter;

// `cargo clippy --all-targets` checks benches with `cfg(test)`, which brings the handler's
// test module along, unused here.
#[allow(dead_code, unused_imports)]
#[path = "../src/handler.rs"]
mod handler;

static MODEL_ARTIFACT: &[u8] = include_bytes!(env!("MODEL_ARTIFACT_PATH"));
static MODEL_MANIFEST: &str = include_str!(env!("MODEL_MANIFEST_PATH"));
static EVENT: &str = include_str!("../../../events/predict.json");
static HEALTH: &str = include_str!("../../../events/health.json");

const ISS: &str = "https://auth.secure-ml-api.test";
const AUD: &str = "secure-ml-api";

/// A DynamoDB client whose every `UpdateItem` succeeds at once.
fn mocked_dynamodb() -> aws_sdk_dynamodb::Client {
    let writes = mock!(aws_sdk_dynamodb::Client::update_item)
        .then_output(|| UpdateItemOutput::builder().build());
    mock_dynamodb(RuleMode::MatchAny, &[&writes])
}

/// Deps as `main` builds them, except the DynamoDB client, which answers every `UpdateItem`
/// with success at once. The template's default policy (60/min, burst 20): the mock returns
/// no `tat`, so the limiter remembers `now + T` and every request stays admitted.
fn deps() -> (&'static handler::Deps, String) {
    let now = unix_now();
    let keys = KeySet::generate(now).expect("keys");
    let settings = TokenSettings {
        issuer: ISS.into(),
        audience: AUD.into(),
        lifetime_seconds: 900,
    };
    let issuer = TokenIssuer::new(&keys, settings).expect("issuer");
    let token = issuer
        .issue(
            "cl_00112233445566778899aabbccddeeff",
            &[SCOPE_PREDICT.to_owned()],
            Tier::Free,
            now,
        )
        .expect("token")
        .access_token;
    let client = mocked_dynamodb();
    let config = RateLimitConfig::from_vars(&Vars::from_pairs([("RATE_LIMIT_TABLE", "rl-bench")]))
        .expect("config");
    let policy = PenaltyPolicy {
        limit: u32::MAX,
        window_ms: 60_000,
    };
    let clock = std::sync::Arc::new(secure_ml_core::ratelimit::SystemClock);
    let deps = handler::Deps {
        // Every access line is formatted, as in production, and then dropped.
        frame: Frame::new(policy, Sink::Discard, clock),
        model: ServedModel::load(MODEL_ARTIFACT, MODEL_MANIFEST).expect("model"),
        verifier: Verifier::from_jwks(ISS, AUD, &issuer.jwks(now)).expect("verifier"),
        limiter: RateLimiter::new(client, config),
    };
    let event = EVENT.replace("REPLACE_WITH_ACCESS_TOKEN", &token);
    (Box::leak(Box::new(deps)), event)
}

fn handler(c: &mut Criterion) {
    let (deps, event) = deps();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // What `frame::run` does between the Runtime API's two HTTP messages.
    let full = |payload: &str| {
        let (request, origin) = event::decode(payload, Context::default());
        let response = rt.block_on(handler::handle(deps, request));
        serde_json::to_vec(&event::encode(origin, response)).expect("response JSON")
    };
    // Sanity: the path under test is the admitted 200, not an early error.
    let first: serde_json::Value = serde_json::from_slice(&full(&event)).expect("json");
    assert_eq!(first["statusCode"], 200, "{first}");

    let mut group = c.benchmark_group("handler");
    group.bench_function("request_to_response", |b| {
        b.iter_batched(
            || event::decode(&event, Context::default()).0,
            |request| rt.block_on(handler::handle(deps, request)),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("event_to_response", |b| b.iter(|| full(black_box(&event))));
    group.bench_function("health_event_to_response", |b| {
        b.iter(|| full(black_box(HEALTH)))
    });
    group.bench_function("decode_event", |b| {
        b.iter(|| event::decode(black_box(&event), Context::default()))
    });
    group.bench_function("encode_response", |b| {
        b.iter_batched(
            || {
                let (request, _) = event::decode(&event, Context::default());
                rt.block_on(handler::handle(deps, request))
            },
            |response| {
                serde_json::to_vec(&event::encode(event::Origin::HttpApi, response))
                    .expect("response JSON")
            },
            BatchSize::SmallInput,
        )
    });
    // The pieces the handler adds to the parts measured in `cpu_path`.
    let key = ClientKey::from_ip(std::net::IpAddr::from([203, 0, 113, 7]));
    group.bench_function("limiter_check_mocked", |b| {
        b.iter(|| rt.block_on(deps.limiter.check(Group::Predict(Tier::Free), &key, 1)))
    });
    let client = mocked_dynamodb();
    group.bench_function("sdk_update_item_mocked", |b| {
        b.iter(|| {
            rt.block_on(
                client
                    .update_item()
                    .table_name("rl-bench")
                    .key("pk", AttributeValue::S("predict#203.0.113.7".to_owned()))
                    .send(),
            )
            .is_ok()
        })
    });
    // The subscriber `telemetry::init` installs, writing to a sink: formatting is the cost.
    let subscriber = secure_ml_core::telemetry::subscriber(EnvFilter::new("info"))
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        group.bench_function("event_to_response_json_logs", |b| {
            b.iter(|| full(black_box(&event)))
        });
    });
    group.finish();
}

criterion_group!(benches, handler);
criterion_main!(benches);

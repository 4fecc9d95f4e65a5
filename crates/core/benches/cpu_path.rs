//! The CPU work of one prediction, part by part, each next to its floor.
//!
//! | bench | what | floor it is compared with |
//! |---|---|---|
//! | `jwt_verify` | `Verifier`: header precheck, key lookup, EdDSA signature, claims (the cache bypassed: a token seen for the first time) | `ed25519_verify_floor`: the bare signature check |
//! | `token_cache_hit` | `Verifier::verify` of a token it verified before: the `Authorization` header, the cache lookup, `exp`/`nbf`/key expiry | — |
//! | `verify_parse_infer_cached` | a repeated token's check, the `/predict` body, inference: the CPU of a prediction without the rate limiter | `parse_single` + `predict_row` |
//! | `parse_single` | `/predict` body: envelope, pointers, range checks | `parse_single_serde_floor`: serde derive into `[f64; 4]` |
//! | `parse_batch_100` | a 100-row `/predict/batch` body | — |
//! | `predict_row` | `ServedModel::predict`: forest + response view | `forest_row_floor`: the bare forest walk |
//! | `predict_batch_100` | `ServedModel::predict_batch` on 100 rows | `forest_batch_100_floor` |
//!
//! Rows cycle through the 150 Iris rows: a single fixed row would always take the same
//! (for setosa: the shortest) path through every tree. Run with
//! `cargo bench -p secure-ml-core --bench cpu_path -- --warm-up-time 1 --measurement-time 3`
//! (or `make bench`, which puts the results in BENCHMARKS.md).

use std::hint::black_box;

use base64::Engine;
use criterion::{Criterion, criterion_group, criterion_main};
use ed25519_dalek::{Signature, Verifier as _};
use futures::FutureExt as _;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use secure_ml_core::auth::token::unix_now;
use secure_ml_core::auth::{KeySet, SCOPE_PREDICT, Tier, TokenIssuer, TokenSettings, Verifier};
use secure_ml_core::model::ServedModel;

use tree_model::Ensemble;

static MODEL: &[u8] = include_bytes!("../../../model-artifacts/model.bin");
static MANIFEST: &str = include_str!("../../../model-artifacts/manifest.json");
static IRIS: &str = include_str!("../../../model-artifacts/iris.csv");

const ISS: &str = "https://auth.secure-ml-api.test";
const AUD: &str = "secure-ml-api";
const BODY: &[u8] = br#"{"data": [5.1, 3.5, 1.4, 0.2]}"#;

/// What a `/predict` body would be with no validation at all.
#[derive(serde::Deserialize)]
#[allow(dead_code)] // read only by black_box
struct PlainBody {
    data: [f64; 4],
}

type Row = [f64; 4];

fn iris_rows() -> Vec<Row> {
    IRIS.lines()
        .skip(1)
        .filter_map(|line| {
            let v: Vec<f64> = line
                .split(',')
                .take(4)
                .filter_map(|x| x.parse().ok())
                .collect();
            <[f64; 4]>::try_from(v).ok()
        })
        .collect()
}

/// A fresh key set, a `predict` token it signed, the verifier that trusts it, and the raw
/// Ed25519 key (the floor of a signature check).
fn signed_token() -> (String, Verifier, ed25519_dalek::VerifyingKey) {
    let now = unix_now();
    let keys = KeySet::generate(now).expect("key generation");
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
    let verifier = Verifier::from_jwks(ISS, AUD, &issuer.jwks(now)).expect("verifier");
    let verifying_key = keys.keys[0]
        .signing_key()
        .expect("signing key")
        .verifying_key();
    (token, verifier, verifying_key)
}

fn cpu(c: &mut Criterion) {
    let (token, verifier, verifying_key) = signed_token();
    let (signing_input, signature) = token.rsplit_once('.').expect("a compact JWS");
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(signature)
        .expect("base64url signature");
    let signature = Signature::from_slice(&signature).expect("64-byte signature");

    let model = ServedModel::load(MODEL, MANIFEST).expect("model");
    let forest = Ensemble::from_bytes(MODEL).expect("forest");
    let mut scratch = forest.scratch();
    let rows = iris_rows();
    assert_eq!(rows.len(), 150, "iris.csv rows");
    let batch: Vec<Row> = rows.iter().copied().cycle().skip(25).take(100).collect();
    let batch_body = format!(
        r#"{{"instances": [{}]}}"#,
        batch
            .iter()
            .map(|r| format!("[{}, {}, {}, {}]", r[0], r[1], r[2], r[3]))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let mut headers = HeaderMap::new();
    let bearer = HeaderValue::from_str(&format!("Bearer {token}")).expect("header value");
    headers.insert(AUTHORIZATION, bearer);
    // A verifier without a key source never awaits: a hit completes on the first poll.
    let verify_now = |headers: &HeaderMap| {
        verifier
            .verify(headers)
            .now_or_never()
            .expect("no I/O without a key source")
    };
    verify_now(&headers).expect("the token verifies");
    assert_eq!(verifier.cached_tokens(), 1, "the token is cached");

    let request = model.request();
    let mut group = c.benchmark_group("cpu");
    group.bench_function("token_cache_hit", |b| {
        b.iter(|| verify_now(black_box(&headers)).is_ok())
    });
    group.bench_function("verify_parse_infer_cached", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % rows.len();
            let claims = verify_now(black_box(&headers)).expect("cached token");
            let row = request.parse_single(black_box(BODY)).expect("valid body");
            black_box(row);
            model.predict(black_box(&rows[i]), claims.has_scope("predict:proba"))
        })
    });
    group.bench_function("jwt_verify", |b| {
        b.iter(|| {
            verifier
                .verify_token_with_loaded_keys(black_box(&token))
                .is_ok()
        })
    });
    group.bench_function("ed25519_verify_floor", |b| {
        b.iter(|| {
            verifying_key
                .verify(black_box(signing_input.as_bytes()), black_box(&signature))
                .is_ok()
        })
    });
    group.bench_function("parse_single", |b| {
        b.iter(|| request.parse_single(black_box(BODY)).is_ok())
    });
    group.bench_function("parse_single_serde_floor", |b| {
        b.iter(|| serde_json::from_slice::<PlainBody>(black_box(BODY)).is_ok())
    });
    group.bench_function("parse_batch_100", |b| {
        b.iter(|| {
            request
                .parse_batch(black_box(batch_body.as_bytes()))
                .is_ok()
        })
    });
    group.bench_function("predict_row", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % rows.len();
            model.predict(black_box(&rows[i][..]), false)
        })
    });
    group.bench_function("forest_row_floor", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % rows.len();
            black_box(forest.predict_into(black_box(&rows[i]), &mut scratch));
        })
    });
    let parsed = request
        .parse_batch(batch_body.as_bytes())
        .expect("a valid batch");
    group.bench_function("predict_batch_100", |b| {
        b.iter(|| model.predict_batch(black_box(&parsed), false))
    });
    group.bench_function("forest_batch_100_floor", |b| {
        b.iter(|| {
            for row in black_box(&batch) {
                black_box(forest.predict_into(row, &mut scratch));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, cpu);
criterion_main!(benches);

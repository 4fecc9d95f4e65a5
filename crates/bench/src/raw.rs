//! DynamoDB calls made directly by the harness: the floors the functions are compared with.
//!
//! [`fresh_write`] is the rate limiter's FRESH write (same update and condition expressions,
//! same return-value settings; see `secure_ml_core::ratelimit`) on a key nobody else uses, so
//! it always succeeds with one round trip — exactly the DynamoDB work of an admitted request.

use std::time::Instant;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};

/// A timed call: milliseconds, and how it ended (`ok` or the error code).
#[derive(Debug, Clone)]
pub struct Timed {
    pub ms: f64,
    pub outcome: String,
}

impl Timed {
    pub fn ok(&self) -> bool {
        self.outcome == "ok"
    }
}

fn outcome<T, E: ProvideErrorMetadata>(
    result: &Result<T, aws_sdk_dynamodb::error::SdkError<E>>,
) -> String {
    match result {
        Ok(_) => "ok".to_owned(),
        Err(aws_sdk_dynamodb::error::SdkError::ServiceError(e)) => {
            e.err().code().unwrap_or("service-error").to_owned()
        }
        Err(aws_sdk_dynamodb::error::SdkError::TimeoutError(_)) => "timeout".to_owned(),
        Err(aws_sdk_dynamodb::error::SdkError::DispatchFailure(_)) => "dispatch-failure".to_owned(),
        Err(_) => "sdk-error".to_owned(),
    }
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis()),
    )
    .unwrap_or(u64::MAX)
}

/// The limiter's FRESH conditional write for `pk` (cost 1 at 60/min).
pub async fn fresh_write(client: &Client, table: &str, pk: &str) -> Timed {
    let now = now_ms();
    let tat = now + 1_000;
    let expires_at = tat / 1_000 + 1 + 60;
    let started = Instant::now();
    let result = client
        .update_item()
        .table_name(table)
        .key("pk", AttributeValue::S(pk.to_owned()))
        .return_values(ReturnValue::UpdatedNew)
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .expression_attribute_values(":now", n(now))
        .expression_attribute_values(":now_s", n(now / 1_000))
        .update_expression("SET tat = :tat, expires_at = :expires_at")
        .condition_expression("attribute_not_exists(tat) OR tat <= :now OR expires_at < :now_s")
        .expression_attribute_values(":tat", n(tat))
        .expression_attribute_values(":expires_at", n(expires_at))
        .send()
        .await;
    Timed {
        ms: started.elapsed().as_secs_f64() * 1e3,
        outcome: outcome(&result),
    }
}

/// The token function's client lookup (`GetItem` by `client_id`).
pub async fn get_client(client: &Client, table: &str, client_id: &str) -> Timed {
    let started = Instant::now();
    let result = client
        .get_item()
        .table_name(table)
        .key("client_id", AttributeValue::S(client_id.to_owned()))
        .send()
        .await;
    Timed {
        ms: started.elapsed().as_secs_f64() * 1e3,
        outcome: outcome(&result),
    }
}

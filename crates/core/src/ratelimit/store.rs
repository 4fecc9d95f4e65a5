//! The two conditional writes, and the one place where DynamoDB's answers — success,
//! `ConditionalCheckFailedException` with the old item, throttling, faults — become named
//! outcomes. The module docs of [`super`] explain the expressions; the fragments below carry
//! the same names.

use std::collections::HashMap;
use std::sync::LazyLock;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_smithy_types::error::display::DisplayErrorContext;

use super::gcra::{Bucket, ceil_secs};

/// Seconds an item outlives its bucket's drain time. For items written here, "expired"
/// therefore implies "drained a minute ago", so the expiry fragments never change a decision
/// about a live bucket even with some clock skew between instances (or with DynamoDB's TTL
/// sweeper); they exist for items whose `tat` cannot be trusted.
pub(crate) const EXPIRY_GRACE_SECS: u64 = 60;

// Condition fragments. `:now` is epoch milliseconds, `:now_s` epoch seconds (TTL's unit).

/// The key has no bucket: its first request, or TTL has already deleted the item.
const ABSENT: &str = "attribute_not_exists(tat)";
/// The bucket has drained: all its debt is paid, which is the same state as no bucket at all.
const DRAINED: &str = "tat <= :now";
/// The item is past its declared lifetime. TTL deletes it up to days later; until then it
/// must count as absent, whatever its `tat` says.
const EXPIRED: &str = "expires_at < :now_s";
/// There is debt to extend. Without this, `tat + :inc` on a drained bucket would build on a
/// `tat` in the past and hand out the idle time as extra capacity.
const BUSY: &str = "tat > :now";
/// The GCRA admission test itself: `tat + n·T <= now + L`.
const FITS: &str = "tat <= :allow_at";
/// The complement of [`EXPIRED`]: only a live item's `tat` may be extended.
const LIVE: &str = "expires_at >= :now_s";

/// Absent, expired or drained: the new `tat` is `now + n·T` whatever the old one was.
static FRESH_CONDITION: LazyLock<String> =
    LazyLock::new(|| format!("{ABSENT} OR {DRAINED} OR {EXPIRED}"));
/// Busy, fitting and live: the new `tat` is computed by DynamoDB from the current one.
static EXTEND_CONDITION: LazyLock<String> =
    LazyLock::new(|| format!("{BUSY} AND {FITS} AND {LIVE}"));

const FRESH_UPDATE: &str = "SET tat = :tat, expires_at = :expires_at";
const EXTEND_UPDATE: &str = "SET tat = tat + :inc, expires_at = :expires_at";

/// How DynamoDB answered a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Admitted. `tat` is the stored value after the write, when DynamoDB returned it.
    Written { tat: Option<u64> },
    /// The condition did not hold; this is the bucket as DynamoDB evaluated it.
    ConditionFailed(Bucket),
    /// The condition did not hold, and the item is one this module would not have written (a
    /// non-numeric `tat`, or a `tat` without `expires_at`): neither write can ever apply.
    Malformed,
    /// The key's item is written too often for DynamoDB (its partition was throttled):
    /// treated as over the limit.
    Throttled,
    /// No answer about the item.
    Fault(Fault),
}

/// Why DynamoDB could not be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// A per-attempt or per-operation timeout, or the limiter's own deadline.
    Timeout,
    /// The request could not be sent (connection refused, DNS, TLS, ...).
    Dispatch,
    /// DynamoDB throttled the table or the account, not this key's item.
    Throttled,
    /// DynamoDB answered with an error other than a condition failure or throttling.
    Service,
    /// The response could not be read.
    Response,
    /// See [`Answer::Malformed`].
    MalformedItem,
    /// The item changed under us more often than the write budget allows.
    Contention,
    /// The SDK could not build the request, or failed in a way it does not classify.
    Other,
}

impl Fault {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Dispatch => "dispatch-failure",
            Self::Throttled => "throttled",
            Self::Service => "service-error",
            Self::Response => "response-error",
            Self::MalformedItem => "malformed-item",
            Self::Contention => "contention",
            Self::Other => "sdk-error",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Store {
    client: Client,
    table: String,
}

impl Store {
    pub(crate) fn new(client: Client, table: String) -> Self {
        Self { client, table }
    }

    /// FRESH: `tat = :tat` for `pk` at `now`, if the bucket is absent, drained or expired.
    pub(crate) async fn fresh(&self, pk: &str, tat: u64, now: u64) -> Answer {
        let request = self
            .update(pk, now)
            .update_expression(FRESH_UPDATE)
            .condition_expression(FRESH_CONDITION.as_str())
            .expression_attribute_values(":tat", number(tat))
            .expression_attribute_values(":expires_at", number(expires_at(tat)));
        Self::answer(request.send().await, pk, now)
    }

    /// EXTEND: `tat = tat + :inc` for `pk` at `now`, if the bucket is busy, live, and its `tat`
    /// is at most `allow_at`. `capacity_end` (`now + L`) bounds the `tat` it can leave, and so
    /// the item's expiry.
    pub(crate) async fn extend(
        &self,
        pk: &str,
        (inc, allow_at): (u64, u64),
        now: u64,
        capacity_end: u64,
    ) -> Answer {
        let request = self
            .update(pk, now)
            .update_expression(EXTEND_UPDATE)
            .condition_expression(EXTEND_CONDITION.as_str())
            .expression_attribute_values(":inc", number(inc))
            .expression_attribute_values(":allow_at", number(allow_at))
            // The new `tat` is at most `allow_at + inc`, which is `now + L`.
            .expression_attribute_values(":expires_at", number(expires_at(capacity_end)));
        Self::answer(request.send().await, pk, now)
    }

    /// What both writes share: the key, the returned values, `:now` and `:now_s`.
    fn update(
        &self,
        pk: &str,
        now: u64,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk.to_owned()))
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .expression_attribute_values(":now", number(now))
            .expression_attribute_values(":now_s", number(now / 1_000))
    }

    fn answer<R: std::fmt::Debug>(
        result: Result<
            aws_sdk_dynamodb::operation::update_item::UpdateItemOutput,
            SdkError<UpdateItemError, R>,
        >,
        pk: &str,
        now: u64,
    ) -> Answer {
        match result {
            Ok(output) => Answer::Written {
                tat: output
                    .attributes()
                    .and_then(|item| integer(item.get("tat"))),
            },
            Err(error) => answer_from_error(error, pk, now),
        }
    }
}

/// The one place where an `UpdateItem` error becomes a named outcome.
fn answer_from_error<R: std::fmt::Debug>(
    error: SdkError<UpdateItemError, R>,
    pk: &str,
    now: u64,
) -> Answer {
    let fault = match &error {
        SdkError::ServiceError(context) => match context.err() {
            UpdateItemError::ConditionalCheckFailedException(failed) => {
                return observe(failed.item(), now);
            }
            UpdateItemError::ProvisionedThroughputExceededException(throttled)
                if throttles_the_key(throttled.throttling_reasons()) =>
            {
                return Answer::Throttled;
            }
            UpdateItemError::ProvisionedThroughputExceededException(_)
            | UpdateItemError::ThrottlingException(_)
            | UpdateItemError::RequestLimitExceeded(_) => Fault::Throttled,
            other if is_throttling_code(other.code()) => Fault::Throttled,
            _ => Fault::Service,
        },
        SdkError::TimeoutError(_) => Fault::Timeout,
        SdkError::DispatchFailure(failure) if failure.is_timeout() => Fault::Timeout,
        SdkError::DispatchFailure(_) => Fault::Dispatch,
        SdkError::ResponseError(_) => Fault::Response,
        _ => Fault::Other,
    };
    tracing::warn!(
        pk,
        fault = fault.as_str(),
        error = %DisplayErrorContext(&error),
        "rate limit store call failed"
    );
    Answer::Fault(fault)
}

/// Whether DynamoDB throttled this key's item (its partition's key range), as opposed to the
/// whole table or account. Only the former says anything about this caller: a key written so
/// often that its partition pushes back is far over any sane limit. Throttling of the table
/// (its maximum on-demand throughput) or of the account (`RequestLimitExceeded`) is a fault of
/// the store like any other, and the fail policy applies. Without reasons — what DynamoDB
/// sent before it named them — partition throttling is the only kind an on-demand table
/// without a maximum has, so it counts as the key's.
fn throttles_the_key(reasons: &[aws_sdk_dynamodb::types::ThrottlingReason]) -> bool {
    reasons.is_empty()
        || reasons
            .iter()
            .any(|r| r.reason().is_some_and(|reason| reason.contains("KeyRange")))
}

fn is_throttling_code(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "ProvisionedThroughputExceededException"
                | "ThrottlingException"
                | "RequestLimitExceeded"
        )
    )
}

/// Reads the old item returned with a failed condition, judging it exactly as the two
/// conditions do: absent, expired or drained is [`Bucket::Drained`]; live with `tat > now`
/// is [`Bucket::Busy`]; anything else is [`Answer::Malformed`].
pub(crate) fn observe(item: Option<&HashMap<String, AttributeValue>>, now: u64) -> Answer {
    let Some(item) = item else {
        return Answer::ConditionFailed(Bucket::Drained);
    };
    let expires_at = item.get("expires_at");
    let expired = matches!(integer(expires_at), Some(expires_at) if expires_at < now / 1_000);
    let Some(tat) = item.get("tat").filter(|_| !expired) else {
        return Answer::ConditionFailed(Bucket::Drained); // ABSENT or EXPIRED
    };
    let Some(tat) = integer(Some(tat)) else {
        return Answer::Malformed;
    };
    match Bucket::at(Some(tat), now) {
        Bucket::Drained => Answer::ConditionFailed(Bucket::Drained), // DRAINED
        busy if integer(expires_at).is_some() => Answer::ConditionFailed(busy), // BUSY and LIVE
        _ => Answer::Malformed,
    }
}

/// The item's TTL: the second after its bucket can last have drained, plus the grace.
fn expires_at(tat_bound: u64) -> u64 {
    ceil_secs(tat_bound).saturating_add(EXPIRY_GRACE_SECS)
}

fn number(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn integer(value: Option<&AttributeValue>) -> Option<u64> {
    match value {
        Some(AttributeValue::N(n)) => n.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_500;

    fn item(pairs: &[(&str, AttributeValue)]) -> HashMap<String, AttributeValue> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn the_conditions_read_as_named_fragments() {
        assert_eq!(
            *FRESH_CONDITION,
            "attribute_not_exists(tat) OR tat <= :now OR expires_at < :now_s"
        );
        assert_eq!(
            *EXTEND_CONDITION,
            "tat > :now AND tat <= :allow_at AND expires_at >= :now_s"
        );
    }

    #[test]
    fn an_absent_item_is_a_drained_bucket() {
        assert_eq!(observe(None, NOW), Answer::ConditionFailed(Bucket::Drained));
        assert_eq!(
            observe(Some(&item(&[])), NOW),
            Answer::ConditionFailed(Bucket::Drained)
        );
    }

    #[test]
    fn an_expired_item_is_a_drained_bucket_whatever_its_tat() {
        let stale = item(&[
            ("tat", number(NOW + 3_600_000)),
            ("expires_at", number(NOW / 1_000 - 1)),
        ]);
        assert_eq!(
            observe(Some(&stale), NOW),
            Answer::ConditionFailed(Bucket::Drained)
        );
    }

    #[test]
    fn a_live_item_with_future_tat_is_busy() {
        let live = item(&[
            ("tat", number(NOW + 5)),
            ("expires_at", number(NOW / 1_000)),
        ]);
        assert_eq!(
            observe(Some(&live), NOW),
            Answer::ConditionFailed(Bucket::Busy { tat: NOW + 5 })
        );
    }

    #[test]
    fn an_item_this_module_would_not_write_is_malformed() {
        let text = item(&[
            ("tat", AttributeValue::S("soon".into())),
            ("expires_at", number(NOW)),
        ]);
        assert_eq!(observe(Some(&text), NOW), Answer::Malformed);
        let immortal = item(&[("tat", number(NOW + 5))]);
        assert_eq!(observe(Some(&immortal), NOW), Answer::Malformed);
    }

    #[test]
    fn an_item_outlives_its_bucket_by_the_grace() {
        assert_eq!(
            expires_at(1_700_000_000_001),
            1_700_000_001 + EXPIRY_GRACE_SECS
        );
    }
}

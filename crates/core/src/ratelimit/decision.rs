//! The outcome of a check, and everything a response needs from it: the IETF `RateLimit`
//! header fields, and the problem to answer with when the request is not served.

use http::{HeaderName, HeaderValue};

use super::config::Policy;
use super::gcra::ceil_secs;
use crate::problem::ApiError;

/// `Retry-After` of a 503 when the store could not be asked (fail-closed).
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 2;

/// `RateLimit-Policy`, draft-ietf-httpapi-ratelimit-headers.
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`, draft-ietf-httpapi-ratelimit-headers.
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// What happens to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Within the limit: served.
    Admitted,
    /// Over the limit: 429 with `Retry-After`.
    Refused,
    /// Over the limit, but served because `RATE_LIMIT_MODE=shadow`.
    ShadowRefused,
    /// The store could not be asked; served because `RATE_LIMIT_FAIL_POLICY=fail-open`
    /// (or because the limiter is in shadow mode).
    FailedOpen,
    /// The store could not be asked; 503 with `Retry-After` (fail-closed).
    Unavailable,
}

impl Outcome {
    /// Stable label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admitted => "admit",
            Self::Refused => "refuse",
            Self::ShadowRefused => "shadow-refuse",
            Self::FailedOpen => "fail-open",
            Self::Unavailable => "unavailable",
        }
    }
}

/// Why the limiter decided what it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Basis {
    /// A conditional write to DynamoDB succeeded, or its failure returned the item.
    Store,
    /// This instance already knew the key was over its limit; DynamoDB was not called.
    Recent,
    /// DynamoDB throttled the key's item: the key is far over any sane limit.
    Throttled,
    /// The request costs more than the policy's burst and can never be admitted.
    CostExceedsBurst,
    /// DynamoDB could not be asked; the label says how it failed.
    Fault(&'static str),
}

impl Basis {
    /// Stable label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Store => "store",
            Self::Recent => "recent",
            Self::Throttled => "throttled",
            Self::CostExceedsBurst => "cost-exceeds-burst",
            Self::Fault(kind) => kind,
        }
    }
}

/// The answer to one [`super::RateLimiter::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub(crate) outcome: Outcome,
    pub(crate) basis: Basis,
    pub(crate) policy: Policy,
    pub(crate) cost: u32,
    /// Units that could be spent right after the decision; unknown without the store's data.
    pub(crate) remaining: Option<u32>,
    /// Milliseconds until a request would be admitted: after an admission, a one-unit
    /// request; after a refusal, this very request. Unknown without the store's data.
    pub(crate) wait_ms: Option<u64>,
}

impl Decision {
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    pub fn basis(&self) -> Basis {
        self.basis
    }

    /// The policy that was applied (after the tier).
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The request's cost in quota units.
    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// Whether the request is to be served (admitted, shadow-refused, or failed open).
    pub fn is_admitted(&self) -> bool {
        matches!(
            self.outcome,
            Outcome::Admitted | Outcome::ShadowRefused | Outcome::FailedOpen
        )
    }

    /// Stable label of the outcome, for logs and metrics (`admit`, `refuse`, ...).
    pub fn as_str(&self) -> &'static str {
        self.outcome.as_str()
    }

    /// Quota units left after this decision (`r`), when known.
    pub fn remaining(&self) -> Option<u32> {
        self.remaining
    }

    /// Whole seconds until a request would be admitted (`t`), when known. Rounded up, so
    /// a client that waits this long is never early.
    pub fn reset_secs(&self) -> Option<u64> {
        self.wait_ms.map(ceil_secs)
    }

    /// The `Retry-After` of the response that refuses this request, if it is refused (also
    /// for a shadow refusal, which is reported but not enforced).
    pub fn retry_after_secs(&self) -> Option<u64> {
        match (self.outcome, self.basis) {
            // Waiting would not help: such a request never fits.
            (_, Basis::CostExceedsBurst) => None,
            (Outcome::Refused | Outcome::ShadowRefused, _) => {
                self.reset_secs().map(|secs| secs.max(1))
            }
            (Outcome::Unavailable, _) => Some(UNAVAILABLE_RETRY_AFTER_SECS),
            _ => None,
        }
    }

    /// The rate-limit header fields for the response, whatever its status:
    ///
    /// - `RateLimit-Policy: "predict";q=60;w=60`, always;
    /// - `RateLimit: "predict";r=<remaining>;t=<seconds>`, when the store's data is known
    ///   (not after a fault). On a 429, `t` is the `Retry-After` instant, as the draft asks.
    ///
    /// `Retry-After` itself is not included: [`ApiError::into_response`] adds it to 429 and
    /// 503 responses. Insert these (`HeaderMap::insert`) into the final response.
    pub fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let name = self.policy.name();
        let mut headers = vec![(
            RATELIMIT_POLICY.clone(),
            header_value(format!(
                "\"{name}\";q={};w={}",
                self.policy.quota(),
                self.policy.window_secs()
            )),
        )];
        if let (Some(remaining), Some(reset)) = (self.remaining, self.reset_secs()) {
            headers.push((
                RATELIMIT.clone(),
                header_value(format!("\"{name}\";r={remaining};t={reset}")),
            ));
        }
        headers
    }

    /// The problem to answer with when the request is not served: 429 for a refusal, 503 when
    /// the store could not be asked and the limiter fails closed, 422 for a request larger
    /// than the policy's burst (no wait would ever admit it). `None` when it is served.
    pub fn into_error(self) -> Option<ApiError> {
        if let (Outcome::Refused, Basis::CostExceedsBurst) = (self.outcome, self.basis) {
            return Some(ApiError::TooManyRows {
                rows: self.cost,
                max: self.policy.burst(),
            });
        }
        let retry_after = self.retry_after_secs()?;
        match (self.outcome, self.basis) {
            (Outcome::Refused, _) => Some(ApiError::QuotaExceeded {
                retry_after,
                detail: format!(
                    "too many requests from this address for the {} policy ({} per {} s); retry in {} s",
                    self.policy.name(),
                    self.policy.quota(),
                    self.policy.window_secs(),
                    retry_after
                ),
            }),
            (Outcome::Unavailable, _) => Some(ApiError::Unavailable { retry_after }),
            _ => None,
        }
    }
}

fn header_value(value: String) -> HeaderValue {
    // Policy names are static ASCII identifiers and the rest are integers.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use http::header::RETRY_AFTER;

    use super::*;

    fn predict() -> Policy {
        Policy::new("predict", 60, 60, 20).unwrap()
    }

    fn decision(
        outcome: Outcome,
        basis: Basis,
        remaining: Option<u32>,
        wait_ms: Option<u64>,
    ) -> Decision {
        Decision {
            outcome,
            basis,
            policy: predict(),
            cost: 1,
            remaining,
            wait_ms,
        }
    }

    fn header<'a>(headers: &'a [(HeaderName, HeaderValue)], name: &HeaderName) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.to_str().ok())
    }

    #[test]
    fn an_admission_reports_policy_remaining_and_zero_reset() {
        let headers = decision(Outcome::Admitted, Basis::Store, Some(19), Some(0)).headers();
        assert_eq!(
            header(&headers, &RATELIMIT_POLICY),
            Some("\"predict\";q=60;w=60")
        );
        assert_eq!(header(&headers, &RATELIMIT), Some("\"predict\";r=19;t=0"));
        assert_eq!(headers.len(), 2, "no Retry-After on a served request");
    }

    #[test]
    fn a_refusal_reports_the_same_instant_in_t_and_retry_after() {
        let refused = decision(Outcome::Refused, Basis::Store, Some(0), Some(1_250));
        assert_eq!(
            header(&refused.headers(), &RATELIMIT),
            Some("\"predict\";r=0;t=2")
        );
        assert_eq!(refused.retry_after_secs(), Some(2));
        let response = refused.into_error().unwrap().into_response();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()[RETRY_AFTER], "2");
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        for (wait_ms, secs) in [(1, 1), (999, 1), (1_000, 1), (1_001, 2), (59_999, 60)] {
            let refused = decision(Outcome::Refused, Basis::Store, Some(0), Some(wait_ms));
            assert_eq!(
                refused.retry_after_secs(),
                Some(secs),
                "wait of {wait_ms} ms"
            );
        }
    }

    #[test]
    fn a_shadow_refusal_is_reported_but_served() {
        let shadow = decision(Outcome::ShadowRefused, Basis::Store, Some(0), Some(3_000));
        assert!(shadow.is_admitted());
        assert_eq!(
            header(&shadow.headers(), &RATELIMIT),
            Some("\"predict\";r=0;t=3")
        );
        assert_eq!(shadow.into_error(), None);
    }

    #[test]
    fn a_fail_closed_decision_is_a_503_with_retry_after_and_only_the_policy_header() {
        let unavailable = decision(Outcome::Unavailable, Basis::Fault("timeout"), None, None);
        let headers = unavailable.headers();
        assert_eq!(
            header(&headers, &RATELIMIT_POLICY),
            Some("\"predict\";q=60;w=60")
        );
        assert_eq!(header(&headers, &RATELIMIT), None);
        let response = unavailable.into_error().unwrap().into_response();
        assert_eq!(response.status(), 503);
        assert_eq!(
            response.headers()[RETRY_AFTER],
            UNAVAILABLE_RETRY_AFTER_SECS.to_string().as_str()
        );
    }

    #[test]
    fn a_fail_open_decision_is_served_without_a_ratelimit_field() {
        let open = decision(
            Outcome::FailedOpen,
            Basis::Fault("dispatch-failure"),
            None,
            None,
        );
        assert!(open.is_admitted());
        assert_eq!(header(&open.headers(), &RATELIMIT), None);
        assert_eq!(open.into_error(), None);
    }

    #[test]
    fn a_request_larger_than_the_burst_is_unprocessable_not_retryable() {
        let mut too_big = decision(Outcome::Refused, Basis::CostExceedsBurst, None, None);
        too_big.cost = 50;
        assert_eq!(too_big.retry_after_secs(), None);
        let response = too_big.into_error().unwrap().into_response();
        assert_eq!(response.status(), 422);
        assert!(response.headers().get(RETRY_AFTER).is_none());
    }

    #[test]
    fn labels_are_stable_metric_dimensions() {
        let labels: Vec<_> = [
            Outcome::Admitted,
            Outcome::Refused,
            Outcome::ShadowRefused,
            Outcome::FailedOpen,
            Outcome::Unavailable,
        ]
        .map(Outcome::as_str)
        .into();
        assert_eq!(
            labels,
            [
                "admit",
                "refuse",
                "shadow-refuse",
                "fail-open",
                "unavailable"
            ]
        );
    }
}

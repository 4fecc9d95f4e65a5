//! The request frame both functions share: from the Lambda event to the response and its one
//! access line, with the function's own work reduced to one `async fn` per route.
//!
//! ```text
//!  event ─▶ decode ─▶ penalty? ─▶ route table ─▶ the route's fn(&mut Call) ─▶ finish ─▶ response
//!           (event)    429         404 / 405       authorize, body, charge       rate-limit headers,
//!                      (penalty)   (route)         (Call's methods)              penalty count,
//!                                                                                access line (access)
//! ```
//!
//! - [`event`] turns an API Gateway event into a request without ever panicking, and the
//!   response back into the event shape API Gateway expects.
//! - [`penalty`]: a source whose requests keep being rejected waits, answered from memory.
//! - [`route`]: exact-path route tables; 404 and 405 (with `Allow`) come from one place.
//! - [`Call`]: what a route function works with — the request, the caller's key, and the
//!   steps every protected route takes ([`Call::authorize`], [`Call::charge`]), each recording
//!   what the access line reports.
//! - [`access`]: the access line, which is also the request's CloudWatch metrics record.
//!
//! A function's `main` is [`start`]`(init, handler::handle)`; its `handle` is
//! `deps.frame.serve(&ROUTES, request, async |call, route| match route { … })`.

pub mod access;
pub mod event;
pub mod penalty;
pub mod route;

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderName, HeaderValue, Method};
use lambda_http::{Body, Request, RequestExt, Response};

use self::access::{AccessRecord, Decision, Sink};
use self::event::Malformed;
use self::penalty::{Penalties, PenaltyPolicy, is_rejection};
use self::route::{Resolved, Routes, UNMATCHED, raw_path};
use crate::auth::{AccessClaims, Verifier};
use crate::config::{ConfigError, Vars};
use crate::problem::ApiError;
use crate::ratelimit::{ClientKey, Clock, SystemClock, client_key};

/// What every request of one instance shares: the penalty memory and the access log.
#[derive(Debug)]
pub struct Frame {
    penalties: Penalties,
    sink: Sink,
}

impl Frame {
    /// The frame of a function instance: its penalty policy from `vars`, access lines to
    /// stdout unless `RUST_LOG` is above `info`.
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let sink = if crate::telemetry::access_log_enabled(vars) {
            Sink::Stdout
        } else {
            Sink::Off
        };
        Ok(Self::new(
            PenaltyPolicy::from_vars(vars)?,
            sink,
            Arc::new(SystemClock),
        ))
    }

    /// A frame with the given policy, sink and clock (tests).
    pub fn new(policy: PenaltyPolicy, sink: Sink, clock: Arc<dyn Clock>) -> Self {
        Self {
            penalties: Penalties::new(policy, clock),
            sink,
        }
    }

    /// Answers one request: penalty, route, the route's function, then the access line.
    /// Never fails: every outcome, expected or not, is a response.
    pub async fn serve<R: Copy>(
        &self,
        routes: &Routes<R>,
        request: Request,
        handler: impl AsyncFnOnce(&mut Call<'_>, R) -> Result<Response<Body>, ApiError>,
    ) -> Response<Body> {
        let started = Instant::now();
        let mut call = Call::new(&request);
        let mut response = match self.admit(routes, &mut call) {
            Ok(route) => handler(&mut call, route.id)
                .await
                .unwrap_or_else(ApiError::into_response),
            Err(error) => error.into_response(),
        };
        for (name, value) in call.rate_limit_headers.drain(..) {
            response.headers_mut().insert(name, value);
        }
        let status = response.status().as_u16();
        if is_rejection(status)
            && let Ok(key) = call.key
        {
            self.penalties.record(key);
        }
        let record = AccessRecord {
            request_id: request.lambda_context_ref().map(|c| c.request_id.as_str()),
            ip: call.key.as_ref().ok().copied(),
            route: call.route,
            method: call.method,
            status,
            latency_ms: started.elapsed().as_secs_f64() * 1e3,
            client_id: call.client_id.as_deref(),
            decision: call.decision,
            predictions: &call.predictions,
        };
        self.sink.write(&record);
        response
    }

    /// Everything decided before the route's function runs.
    fn admit<R: Copy>(
        &self,
        routes: &Routes<R>,
        call: &mut Call<'_>,
    ) -> Result<&'static route::Route<R>, ApiError> {
        if let Ok(key) = &call.key
            && let Some(retry_after) = self.penalties.retry_after(key)
        {
            call.decision = Some(Decision::Penalty);
            return Err(ApiError::QuotaExceeded {
                retry_after,
                detail: format!(
                    "too many rejected requests from this address; retry in {retry_after} s"
                ),
            });
        }
        if let Some(Malformed(why)) = call.request.extensions().get::<Malformed>() {
            call.method = Some(method_label(call.request.method()));
            return Err(ApiError::MalformedRequest { detail: why });
        }
        match routes.resolve(call.request.method(), raw_path(call.request)) {
            Resolved::Route(route) => {
                call.route = route.path;
                Ok(route)
            }
            Resolved::Refused(path, error) => {
                call.route = path;
                call.method = Some(method_label(call.request.method()));
                Err(error)
            }
            Resolved::Unmatched => {
                call.method = Some(method_label(call.request.method()));
                Err(ApiError::NotFound)
            }
        }
    }
}

/// One request as a route function sees it, and what its access line will say.
#[derive(Debug)]
pub struct Call<'r> {
    request: &'r Request,
    key: Result<ClientKey, ApiError>,
    route: &'static str,
    method: Option<&'static str>,
    client_id: Option<String>,
    decision: Option<Decision>,
    rate_limit_headers: Vec<(HeaderName, HeaderValue)>,
    predictions: Vec<(Option<String>, u32)>,
}

impl<'r> Call<'r> {
    fn new(request: &'r Request) -> Self {
        Self {
            request,
            key: client_key(request),
            route: UNMATCHED,
            method: None,
            client_id: None,
            decision: None,
            rate_limit_headers: Vec::new(),
            predictions: Vec::new(),
        }
    }

    pub fn request(&self) -> &'r Request {
        self.request
    }

    /// The caller's rate-limit key, or 403 when API Gateway gave no source IP.
    pub fn key(&self) -> Result<ClientKey, ApiError> {
        self.key.clone()
    }

    /// Records the authenticated client for the access line.
    pub fn identify(&mut self, client_id: &str) {
        self.client_id = Some(client_id.to_owned());
    }

    /// Verifies the bearer token (no I/O unless its `kid` is new) and requires `scope`.
    pub async fn authorize(
        &mut self,
        verifier: &Verifier,
        scope: &'static str,
    ) -> Result<AccessClaims, ApiError> {
        let claims = verifier.verify(self.request.headers()).await?;
        self.identify(&claims.client_id);
        claims.require_scope(scope)?;
        Ok(claims)
    }

    /// A JSON body of at most `limit` bytes sent as `application/json` (413, 415, 400).
    pub fn json_body(&self, limit: usize) -> Result<&'r [u8], ApiError> {
        crate::http::json_body(self.request, limit)
    }

    /// Charges `cost` units of `group`'s policy to the caller. The rate-limit headers go on
    /// the response whatever happens next; a refusal (429) or an unreachable store under
    /// `fail-closed` (503) is the error to answer with.
    #[cfg(feature = "aws")]
    pub async fn charge(
        &mut self,
        limiter: &crate::ratelimit::RateLimiter,
        group: crate::ratelimit::Group,
        cost: u32,
    ) -> Result<(), ApiError> {
        let key = self.key()?;
        let decision = limiter.check(group, &key, cost).await;
        self.decision = Some(Decision::Limiter(decision.outcome()));
        self.rate_limit_headers = decision.headers();
        decision.into_error().map_or(Ok(()), Err)
    }

    /// Counts one row predicted as `label`, or one answer without a label (a regressor's),
    /// for the `Predictions` metric. Labels come from the model, never from the request.
    pub fn count_prediction(&mut self, label: Option<&str>) {
        match self
            .predictions
            .iter_mut()
            .find(|(l, _)| l.as_deref() == label)
        {
            Some((_, rows)) => *rows += 1,
            None => self.predictions.push((label.map(str::to_owned), 1)),
        }
    }
}

/// A method as the access line names it: one of the standard ones, or `other`, so a caller
/// cannot write what it likes into the logs.
fn method_label(method: &Method) -> &'static str {
    static STANDARD: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::HEAD,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    STANDARD
        .iter()
        .find(|m| *m == method)
        .map_or("other", Method::as_str)
}

/// A function's whole life: configuration and logging from the environment, `init` once (a
/// failure is one ERROR line and exit status 1), then every invocation through `handle`.
///
/// What `init` built lives as long as the process, so it is leaked into a `&'static`: every
/// invocation borrows it without reference counting, and [`run`] may hand it to several
/// pollers.
pub async fn start<D, I, H, F>(init: I, handle: H) -> Result<(), lambda_http::Error>
where
    D: Sync + 'static,
    I: AsyncFnOnce(&Vars) -> Result<D, String>,
    H: Fn(&'static D, Request) -> F + Copy + Send + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let started = Instant::now();
    let vars = Vars::from_env();
    let outcome = match crate::telemetry::init(&vars) {
        Ok(()) => init(&vars).await,
        Err(error) => Err(error.to_string()),
    };
    let deps: &'static D = Box::leak(Box::new(crate::telemetry::finish_init(started, outcome)));
    run(move |request| handle(deps, request)).await
}

/// Polls the Runtime API for events and answers each through `handle`.
///
/// One invocation at a time, as Lambda sends them, unless `AWS_LAMBDA_MAX_CONCURRENCY` asks for
/// more (Lambda Managed Instances): then that many pollers share the instance. That is
/// `lambda_runtime`'s `run_concurrent`; its plain `run` would ignore the variable and warn
/// about it on every start, and `cargo lambda watch` sets it (to 1) for every function.
pub async fn run<H, F>(handle: H) -> Result<(), lambda_http::Error>
where
    H: Fn(Request) -> F + Clone + Send + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    use lambda_http::LambdaEvent;
    use serde_json::value::RawValue;

    let service = lambda_http::service_fn(move |event: LambdaEvent<Box<RawValue>>| {
        let handle = handle.clone();
        async move {
            let (request, origin) = event::decode(event.payload.get(), event.context);
            let response = handle(request).await;
            Ok::<_, std::convert::Infallible>(event::encode(origin, response))
        }
    });
    // The loop runs as a task, not as `block_on`'s own future: on a current-thread runtime,
    // waking that future always goes through the I/O driver (an eventfd write, then an extra
    // `epoll_wait`), while waking a task only queues it.
    tokio::spawn(lambda_http::lambda_runtime::run_concurrent(service))
        .await
        .unwrap_or_else(|join| Err(join.into()))
}

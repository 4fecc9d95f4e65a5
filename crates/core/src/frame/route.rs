//! Route tables: which path and method a function serves, and the one place where an unknown
//! path becomes 404 and a known path with another method becomes 405 with `Allow`.
//!
//! Paths are matched exactly against the request's *raw* path, as API Gateway received it: no
//! decoding, no dot-segment removal, no trailing-slash folding. `/x/../predict`,
//! `/%70redict`, `/predict/` and `/predict\` are all different paths from `/predict`, so none
//! of them can reach a route by another name (on AWS the `$default` route sends them to the
//! prediction function, which answers 404 for each).

use http::Method;
use lambda_http::{Request, RequestExt};

use crate::problem::ApiError;

/// The route label of a request that matched no route: the metric dimension and the access
/// log's `route` for every unknown path, whatever it was.
pub const UNMATCHED: &str = "unmatched";

/// One route: the path template as `template.yaml` declares it, its method, and the handler's
/// name for it.
#[derive(Debug)]
pub struct Route<R> {
    pub path: &'static str,
    pub method: Method,
    pub id: R,
}

impl<R> Route<R> {
    /// `route("/predict", Method::POST, Id::Predict)`: one line per route in a table.
    pub const fn new(path: &'static str, method: Method, id: R) -> Self {
        Self { path, method, id }
    }
}

/// The routes of one function.
#[derive(Debug)]
pub struct Routes<R: 'static> {
    /// The function's name (`predict`, `token`).
    pub service: &'static str,
    pub routes: &'static [Route<R>],
}

/// A request's place in a route table.
#[derive(Debug)]
pub enum Resolved<R: 'static> {
    Route(&'static Route<R>),
    /// A known path with another method: the route's path, and the problem to answer.
    Refused(&'static str, ApiError),
    /// No route has this path.
    Unmatched,
}

impl<R: Copy> Routes<R> {
    /// Finds the route for `method` and the raw `path`.
    pub fn resolve(&self, method: &Method, path: &str) -> Resolved<R> {
        let mut known_path = None;
        for route in self.routes {
            if route.path == path {
                if route.method == method {
                    return Resolved::Route(route);
                }
                known_path.get_or_insert(route);
            }
        }
        match known_path {
            Some(route) => Resolved::Refused(
                route.path,
                ApiError::MethodNotAllowed {
                    allow: route.method.as_str(),
                },
            ),
            None => Resolved::Unmatched,
        }
    }

    /// Every `(method, path)` this function serves, in table order.
    pub fn endpoints(&self) -> impl Iterator<Item = (&'static Method, &'static str)> {
        self.routes.iter().map(|r| (&r.method, r.path))
    }
}

/// The path a request is routed on: the raw path of the API Gateway event when there is one
/// (`rawPath`, before any normalisation), else the URI's path (requests built in tests).
/// Nothing is stripped from it: the local stack routes by the deployed paths too.
pub fn raw_path(request: &Request) -> &str {
    match request.raw_http_path() {
        "" => request.uri().path(),
        raw => raw,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Id {
        A,
        B,
    }

    static ROUTES: Routes<Id> = Routes {
        service: "test",
        routes: &[
            Route::new("/a", Method::POST, Id::A),
            Route::new("/b", Method::GET, Id::B),
        ],
    };

    #[test]
    fn a_route_matches_its_exact_path_and_method() {
        assert!(matches!(
            ROUTES.resolve(&Method::POST, "/a"),
            Resolved::Route(Route { id: Id::A, .. })
        ));
        assert!(matches!(
            ROUTES.resolve(&Method::GET, "/b"),
            Resolved::Route(Route { id: Id::B, .. })
        ));
    }

    #[test]
    fn another_method_is_405_with_the_routes_method() {
        match ROUTES.resolve(&Method::DELETE, "/a") {
            Resolved::Refused("/a", ApiError::MethodNotAllowed { allow: "POST" }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn near_misses_are_unmatched() {
        for path in [
            "/a/", "/A", "//a", "/x/../a", "/%61", "/a\\", "", "/a?b", "/a/.",
        ] {
            assert!(
                matches!(ROUTES.resolve(&Method::POST, path), Resolved::Unmatched),
                "{path:?}"
            );
        }
    }
}

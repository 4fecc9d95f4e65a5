//! Who is asking: the client key, taken from the one place a client cannot write.
//!
//! API Gateway fills `requestContext` from the TCP connection it accepted. Forwarding headers
//! (`X-Forwarded-For`, `Forwarded`, `X-Real-IP`) arrive in the request and say whatever the
//! client wants them to say; trusting them would let anyone pick a fresh budget per request.
//! They are never read here.

use std::fmt;
use std::net::{AddrParseError, IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

use crate::problem::ApiError;

/// The identity a budget belongs to: an IPv4 address, or an IPv6 /64.
///
/// IPv6 is grouped by /64 because that is what one subscriber gets: a single host can rotate
/// through 2^64 addresses of its own prefix at will.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    V4(Ipv4Addr),
    /// The /64 network (host bits zero).
    V6(Ipv6Addr),
}

impl ClientKey {
    /// The key of an address: IPv4 as is, IPv4-mapped IPv6 (`::ffff:a.b.c.d`) as the IPv4
    /// address it maps, any other IPv6 as its /64.
    pub fn from_ip(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4),
                None => Self::V6(Ipv6Addr::from(u128::from(v6) & !((1_u128 << 64) - 1))),
            },
        }
    }
}

impl FromStr for ClientKey {
    type Err = AddrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim().parse().map(Self::from_ip)
    }
}

/// `203.0.113.7` or `2001:db8:1:2::/64` (RFC 5952 canonical text).
impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(v4) => write!(f, "{v4}"),
            Self::V6(net) => write!(f, "{net}/64"),
        }
    }
}

/// The client key of a request, from its API Gateway request context only:
/// `requestContext.http.sourceIp` (HTTP API, payload 2.0) or
/// `requestContext.identity.sourceIp` (REST API). No source IP, or one that does not parse,
/// is [`ApiError::NoSourceIp`] (403): a request we cannot attribute is not served.
pub fn client_key(request: &Request) -> Result<ClientKey, ApiError> {
    let source_ip = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.http.source_ip.as_deref(),
        Some(RequestContext::ApiGatewayV1(context)) => context.identity.source_ip.as_deref(),
        // Other event sources, if another crate enables them, carry no trusted source IP here.
        #[allow(unreachable_patterns)]
        _ => None,
    };
    source_ip
        .and_then(|ip| ip.parse().ok())
        .ok_or(ApiError::NoSourceIp)
}

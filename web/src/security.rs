//! Protection: the Host check that defeats DNS rebinding (every request's Host must be one this
//! server answers to), the per-process CSRF token that every form carries, the Origin check
//! (against the same allowed hosts, never against the Host header, which a rebinding page
//! controls), the access token (`ORCH_WEB_TOKEN`) that every request but the sign-in page
//! needs when one is set (required beyond loopback), an optional read-only token
//! (`ORCH_WEB_READ_TOKEN`) for reads, and the security headers of every response.

use std::net::{IpAddr, SocketAddr};

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use rand::Rng;

use crate::error::{ApiError, PageError, WebError};

/// The cookie that carries the access token after `/login`.
pub const TOKEN_COOKIE: &str = "orch_token";

/// What requests are checked against.
#[derive(Debug)]
pub struct Security {
    csrf: String,
    token: Option<String>,
    read_token: Option<String>,
    /// The address the server is bound to, when known.
    bound: Option<SocketAddr>,
    /// Host names configured beyond the built-in ones (`--allowed-host`), lower case.
    names: Vec<String>,
}

impl Security {
    /// A fresh CSRF token for this process, and the access token if one is configured. It
    /// answers to `localhost` and the loopback addresses until [`Security::bound_to`] and
    /// [`Security::allow_hosts`] say more.
    pub fn new(token: Option<String>) -> Security {
        let mut rng = rand::rng();
        let csrf: String = (0..32)
            .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
            .collect();
        Security {
            csrf,
            token,
            read_token: None,
            bound: None,
            names: Vec::new(),
        }
    }

    /// The address the server listens on: its IP is an allowed host (and, for `0.0.0.0` or
    /// `::`, any IP literal, since the server answers on all of the machine's addresses and a
    /// rebinding page can only ever send a DNS name).
    pub fn bound_to(mut self, addr: SocketAddr) -> Security {
        self.bound = Some(addr);
        self
    }

    /// More host names this server answers to (a proxy's name, the machine's DNS name), with
    /// or without a port.
    pub fn allow_hosts<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, names: I) -> Security {
        for name in names {
            let name = name.as_ref().trim().to_ascii_lowercase();
            if !name.is_empty() {
                self.names.push(name);
            }
        }
        self
    }

    /// A token that opens every read (pages, the API's GETs, logs) but no write.
    pub fn with_read_token(mut self, token: Option<String>) -> Security {
        self.read_token = token.filter(|t| !t.is_empty());
        self
    }

    /// Whether `host` (a Host header or an Origin's authority: `name`, `name:port`,
    /// `[v6]:port`) is one this server answers to: `localhost`, a loopback address, the bound
    /// address, a configured name, or any IP literal when bound to all addresses.
    pub fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        let name = strip_port(&host);
        if name == "localhost" || name.ends_with(".localhost") {
            return true;
        }
        if self
            .names
            .iter()
            .any(|n| *n == host || strip_port(n) == name && !n.contains(':'))
        {
            return true;
        }
        let literal = match name.strip_prefix('[') {
            Some(rest) => match rest.strip_suffix(']') {
                Some(inner) => inner,
                None => return false,
            },
            None => name,
        };
        let Ok(ip) = literal.parse::<IpAddr>() else {
            return false;
        };
        match self.bound {
            Some(b) if b.ip().is_unspecified() => true,
            Some(b) => ip.is_loopback() || ip == b.ip(),
            None => ip.is_loopback(),
        }
    }

    /// The hosts allowed, for messages.
    fn allowed_description(&self) -> String {
        let mut list = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "[::1]".to_owned(),
        ];
        match self.bound {
            Some(b) if b.ip().is_unspecified() => list.push("any IP address".to_owned()),
            Some(b) if !b.ip().is_loopback() => list.push(b.ip().to_string()),
            _ => {}
        }
        list.extend(self.names.iter().cloned());
        list.join(", ")
    }

    /// Checks the Host header of any request (DNS rebinding: a page on a name the attacker
    /// controls, re-pointed at 127.0.0.1, sends its own name as Host).
    pub fn check_host(&self, headers: &HeaderMap) -> Result<(), WebError> {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if self.host_allowed(host) {
            return Ok(());
        }
        Err(WebError::Forbidden(format!(
            "this server does not answer to host `{}` (a page on another name re-pointed at this address, DNS rebinding, would look like this); it answers to {}: add a name with --allowed-host or ORCH_WEB_ALLOWED_HOSTS",
            orch::text::shorten(host, 80),
            self.allowed_description()
        )))
    }

    /// The CSRF token that forms embed.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    pub fn token_required(&self) -> bool {
        self.token.is_some()
    }

    /// Checks a form post: its CSRF field, its Origin (when the browser sent one) against the
    /// Host it was sent to, and the access token (cookie) when one is configured.
    pub fn check_form(&self, headers: &HeaderMap, csrf: &str) -> Result<(), WebError> {
        if !constant_time_eq(csrf.as_bytes(), self.csrf.as_bytes()) {
            return Err(WebError::Forbidden(
                "this form is stale or came from another site (CSRF token mismatch): reload the page and try again".into(),
            ));
        }
        self.check_origin(headers)?;
        self.check_token(headers)
    }

    /// Checks an API write: same-origin if a browser sent it, and the access token (bearer
    /// header or cookie) when one is configured. JSON bodies cannot be posted cross-site
    /// without a CORS preflight, which this server never grants.
    pub fn check_api(&self, headers: &HeaderMap) -> Result<(), WebError> {
        self.check_origin(headers)?;
        self.check_token(headers)
    }

    /// Whether `candidate` is the read-only token.
    pub fn read_token_matches(&self, candidate: &str) -> bool {
        self.read_token
            .as_deref()
            .is_some_and(|t| constant_time_eq(t.as_bytes(), candidate.as_bytes()))
    }

    /// Whether the sign-in page accepts `candidate`: the access token or the read-only one.
    pub fn login_accepts(&self, candidate: &str) -> bool {
        self.token_matches(candidate) || self.read_token_matches(candidate)
    }

    /// The token a request carries: its bearer header, else its sign-in cookie.
    fn presented(headers: &HeaderMap) -> Option<&str> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().strip_prefix(TOKEN_COOKIE)?.strip_prefix('='))
            .next();
        bearer.or(cookie)
    }

    /// Checks a read: when a token is set (always, beyond loopback), reads need it or the
    /// read-only token.
    pub fn check_read(&self, headers: &HeaderMap) -> Result<(), WebError> {
        if self.token.is_none() {
            return Ok(());
        }
        match Self::presented(headers) {
            Some(t) if self.token_matches(t) || self.read_token_matches(t) => Ok(()),
            Some(_) => Err(WebError::Unauthorized("the access token is wrong".into())),
            None => Err(WebError::Unauthorized(format!(
                "this server needs its access token ({} or {}) for every page and API call: send `Authorization: Bearer TOKEN`, or sign in at /login",
                crate::TOKEN_ENV,
                crate::READ_TOKEN_ENV
            ))),
        }
    }

    /// Whether `candidate` is the access token.
    pub fn token_matches(&self, candidate: &str) -> bool {
        self.token
            .as_deref()
            .is_some_and(|t| constant_time_eq(t.as_bytes(), candidate.as_bytes()))
    }

    fn check_token(&self, headers: &HeaderMap) -> Result<(), WebError> {
        if self.token.is_none() {
            return Ok(());
        }
        match Self::presented(headers) {
            Some(t) if self.token_matches(t) => Ok(()),
            Some(t) if self.read_token_matches(t) => Err(WebError::Forbidden(format!(
                "this is the read-only token ({}): write actions need {}",
                crate::READ_TOKEN_ENV,
                crate::TOKEN_ENV
            ))),
            Some(_) => Err(WebError::Forbidden("the access token is wrong".into())),
            None => Err(WebError::Forbidden(format!(
                "write actions need the access token ({}): send `Authorization: Bearer TOKEN`, or sign in at /login",
                crate::TOKEN_ENV
            ))),
        }
    }
}

impl Security {
    /// A request whose Origin is not one of the hosts this server answers to is refused. The
    /// Origin is compared with the allowed hosts, not with the Host header: a rebinding page
    /// sends its own name in both.
    fn check_origin(&self, headers: &HeaderMap) -> Result<(), WebError> {
        let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
            return Ok(());
        };
        let origin_host = url::Url::parse(origin).ok().and_then(|u| {
            let host = u.host_str()?.to_owned();
            Some(match u.port() {
                Some(p) => format!("{host}:{p}"),
                None => host,
            })
        });
        match origin_host {
            Some(h) if self.host_allowed(&h) => Ok(()),
            _ => Err(WebError::Forbidden(format!(
                "cross-site request refused: Origin {} is not this server (it answers to {})",
                orch::text::shorten(origin, 80),
                self.allowed_description()
            ))),
        }
    }
}

/// `name:port` -> `name`; `[::1]:3000` -> `[::1]`; a bare IPv6 address stays whole.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

/// The gate in front of every route: the Host check, then, when a token is set, the token
/// (or the read-only token) for every read but the sign-in page and the static files. Pages
/// without it are sent to `/login`; the API answers 401. Writes check the full token in their
/// handlers (with the CSRF proof for forms).
pub async fn gate(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    request: Request,
    next: Next,
) -> Response {
    let security = &state.security;
    let path = request.uri().path();
    // Prometheus scrapes `/metrics` with a bearer token and wants a 401, not a sign-in page.
    let api = path.starts_with("/api/") || path == "/metrics";
    if let Err(e) = security.check_host(request.headers()) {
        return if api {
            ApiError(e).into_response()
        } else {
            PageError(e).into_response()
        };
    }
    let open = path == "/login" || path.starts_with("/static/");
    let read = matches!(*request.method(), Method::GET | Method::HEAD);
    if !open
        && read
        && let Err(e) = security.check_read(request.headers())
    {
        return if api {
            ApiError(e).into_response()
        } else {
            Redirect::to("/login").into_response()
        };
    }
    next.run(request).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Headers on every response: no framing by other sites, no MIME sniffing, scripts only from
/// this server.
pub async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn origin_must_be_an_allowed_host() {
        let s = Security::new(None).bound_to("127.0.0.1:3000".parse().unwrap());
        let h = headers(&[(header::HOST, "127.0.0.1:3000")]);
        assert!(
            s.check_origin(&h).is_ok(),
            "no Origin: not a cross-site browser request"
        );
        let h = headers(&[
            (header::HOST, "127.0.0.1:3000"),
            (header::ORIGIN, "http://127.0.0.1:3000"),
        ]);
        assert!(s.check_origin(&h).is_ok());
        let h = headers(&[
            (header::HOST, "localhost:3000"),
            (header::ORIGIN, "http://localhost:3000"),
        ]);
        assert!(s.check_origin(&h).is_ok());
        let h = headers(&[
            (header::HOST, "127.0.0.1:3000"),
            (header::ORIGIN, "http://evil.example"),
        ]);
        assert!(s.check_origin(&h).is_err());
        let h = headers(&[(header::ORIGIN, "null")]);
        assert!(s.check_origin(&h).is_err());
    }

    /// The DNS rebinding request of issue 14: a page on evil.example, re-pointed at
    /// 127.0.0.1, sends its own name as both Host and Origin. Before, the Origin was compared
    /// with the Host and the request passed.
    #[test]
    fn a_rebinding_request_is_refused() {
        let s = Security::new(None).bound_to("127.0.0.1:39300".parse().unwrap());
        let h = headers(&[
            (header::HOST, "evil.example:39300"),
            (header::ORIGIN, "http://evil.example:39300"),
        ]);
        let e = s.check_host(&h).unwrap_err().to_string();
        assert!(
            e.contains("`evil.example:39300`") && e.contains("--allowed-host"),
            "{e}"
        );
        assert!(
            s.check_api(&h).is_err(),
            "the Origin is not an allowed host either"
        );
        // A configured name is served, with or without its port.
        let named = Security::new(None)
            .bound_to("127.0.0.1:39300".parse().unwrap())
            .allow_hosts(["Orch.Example.com"]);
        let h = headers(&[
            (header::HOST, "orch.example.com:39300"),
            (header::ORIGIN, "https://orch.example.com:39300"),
        ]);
        assert!(named.check_host(&h).is_ok() && named.check_api(&h).is_ok());
    }

    #[test]
    fn allowed_hosts() {
        let local = Security::new(None).bound_to("127.0.0.1:3000".parse().unwrap());
        for ok in [
            "127.0.0.1:3000",
            "localhost",
            "LOCALHOST:3000",
            "[::1]:3000",
            "127.0.0.1",
        ] {
            assert!(local.host_allowed(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.example",
            "10.0.0.5:3000",
            "127.0.0.1.nip.io:3000",
            "[::1",
        ] {
            assert!(!local.host_allowed(bad), "{bad}");
        }
        let lan = Security::new(Some("0123456789abcdef".into()))
            .bound_to("192.168.1.5:3000".parse().unwrap());
        assert!(lan.host_allowed("192.168.1.5:3000"));
        assert!(!lan.host_allowed("192.168.1.6:3000"));
        assert!(!lan.host_allowed("orch.lan:3000"));
        let all = Security::new(Some("0123456789abcdef".into()))
            .bound_to("0.0.0.0:3000".parse().unwrap());
        assert!(all.host_allowed("10.1.2.3:3000") && all.host_allowed("[fe80::1]:3000"));
        assert!(!all.host_allowed("evil.example:3000"));
        // A long Host is shortened in the message.
        let long = "a".repeat(5000);
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(&long).unwrap());
        assert!(local.check_host(&h).unwrap_err().to_string().len() < 600);
    }

    #[test]
    fn reads_need_a_token_when_one_is_set() {
        let s = Security::new(Some("0123456789abcdef0123".into()))
            .with_read_token(Some("reader-0123456789abc".into()));
        assert!(s.check_read(&HeaderMap::new()).is_err());
        let h = headers(&[(header::AUTHORIZATION, "Bearer reader-0123456789abc")]);
        assert!(s.check_read(&h).is_ok());
        let e = s.check_api(&h).unwrap_err().to_string();
        assert!(e.contains("read-only"), "{e}");
        let h = headers(&[(header::COOKIE, "orch_token=0123456789abcdef0123")]);
        assert!(s.check_read(&h).is_ok() && s.check_api(&h).is_ok());
        assert!(Security::new(None).check_read(&HeaderMap::new()).is_ok());
    }

    #[test]
    fn forms_need_the_csrf_token_and_the_access_token_when_set() {
        let s = Security::new(Some("0123456789abcdef0123".into()));
        let mut h = HeaderMap::new();
        assert!(s.check_form(&h, "wrong").is_err());
        let csrf = s.csrf().to_owned();
        assert!(s.check_form(&h, &csrf).is_err(), "token missing");
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; orch_token=0123456789abcdef0123"),
        );
        assert!(s.check_form(&h, &csrf).is_ok());
        let open = Security::new(None);
        assert!(open.check_api(&HeaderMap::new()).is_ok());
    }
}

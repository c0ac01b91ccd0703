//! Write protection: the per-process CSRF token that every form carries, the Origin check, the
//! optional access token (`ORCH_WEB_TOKEN`) that write actions need when the server listens
//! beyond loopback, and the security headers of every response.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use rand::Rng;

use crate::error::WebError;

/// The cookie that carries the access token after `/login`.
pub const TOKEN_COOKIE: &str = "orch_token";

/// What write actions are checked against.
#[derive(Debug)]
pub struct Security {
    csrf: String,
    token: Option<String>,
}

impl Security {
    /// A fresh CSRF token for this process, and the access token if one is configured.
    pub fn new(token: Option<String>) -> Security {
        let mut rng = rand::rng();
        let csrf: String = (0..32)
            .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
            .collect();
        Security { csrf, token }
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
        check_origin(headers)?;
        self.check_token(headers)
    }

    /// Checks an API write: same-origin if a browser sent it, and the access token (bearer
    /// header or cookie) when one is configured. JSON bodies cannot be posted cross-site
    /// without a CORS preflight, which this server never grants.
    pub fn check_api(&self, headers: &HeaderMap) -> Result<(), WebError> {
        check_origin(headers)?;
        self.check_token(headers)
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
        match bearer.or(cookie) {
            Some(t) if self.token_matches(t) => Ok(()),
            Some(_) => Err(WebError::Forbidden("the access token is wrong".into())),
            None => Err(WebError::Forbidden(format!(
                "write actions need the access token ({}): send `Authorization: Bearer TOKEN`, or sign in at /login",
                crate::TOKEN_ENV
            ))),
        }
    }
}

/// A request whose Origin names another host than the one it was sent to is refused.
fn check_origin(headers: &HeaderMap) -> Result<(), WebError> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = url::Url::parse(origin).ok().map(|u| match u.port() {
        Some(p) => format!("{}:{p}", u.host_str().unwrap_or("")),
        None => u.host_str().unwrap_or("").to_owned(),
    });
    if origin_host.as_deref() == Some(host) {
        Ok(())
    } else {
        Err(WebError::Forbidden(format!(
            "cross-site request refused: Origin {origin} is not this server ({host})"
        )))
    }
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

    #[test]
    fn origin_must_match_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:3000"));
        assert!(
            check_origin(&h).is_ok(),
            "no Origin: not a cross-site browser request"
        );
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:3000"),
        );
        assert!(check_origin(&h).is_ok());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(check_origin(&h).is_err());
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

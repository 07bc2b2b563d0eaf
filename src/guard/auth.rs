//! API keys (`AFW_API_KEY`, `AFW_API_KEYS`): which presented credential is valid.
//!
//! Keys are kept only as SHA-256 digests and a presented key is digested and compared with
//! every configured digest in constant time, so neither its content nor its length shows in
//! the response time. This module never logs a key and never builds a response.

use axum::http::{HeaderMap, header};
use subtle::ConstantTimeEq;

use crate::config::Secret;

/// Where a request may carry its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    /// `Authorization: Bearer` or `x-api-key` (every request).
    Header,
    /// `?apiKey=` (the WebSocket upgrade only: browsers cannot set headers on it).
    Query,
}

/// What a request presented.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented<'a> {
    None,
    Key(std::borrow::Cow<'a, str>, Carrier),
}

/// The configured keys, as digests. Empty: auth is off.
pub struct Keys {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys({} configured)", self.digests.len())
    }
}

fn digest(key: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl Keys {
    /// Every non-empty key of `AFW_API_KEY` and the comma-separated `AFW_API_KEYS`.
    pub fn new(key: Option<&Secret>, keys: Option<&Secret>) -> Self {
        let listed = keys.map(|k| k.0.split(',').collect::<Vec<_>>());
        let digests = key
            .map(|k| k.0.as_str())
            .into_iter()
            .chain(listed.into_iter().flatten())
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(digest)
            .collect();
        Self { digests }
    }

    pub fn enabled(&self) -> bool {
        !self.digests.is_empty()
    }

    /// The index of the configured key that matches (every key is compared, always).
    pub fn check(&self, presented: &str) -> Option<usize> {
        let d = digest(presented);
        let mut found = None;
        for (i, k) in self.digests.iter().enumerate() {
            if bool::from(k.ct_eq(&d)) && found.is_none() {
                found = Some(i);
            }
        }
        found
    }
}

/// The key a request carries: a header first, then `?apiKey=` (percent-decoded).
pub fn presented<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Presented<'a> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let header_key = bearer.or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()));
    if let Some(k) = header_key {
        return Presented::Key(k.into(), Carrier::Header);
    }
    let from_query = query.and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(name, _)| name == "apiKey")
            .map(|(_, v)| v)
    });
    match from_query {
        Some(v) => Presented::Key(v, Carrier::Query),
        None => Presented::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn secret(s: &str) -> Secret {
        Secret(s.to_owned())
    }

    #[test]
    fn every_listed_key_works_and_nothing_else() {
        let keys = Keys::new(Some(&secret("k1")), Some(&secret(" k2 , ,k3")));
        assert!(keys.enabled());
        assert_eq!(keys.check("k1"), Some(0));
        assert_eq!(keys.check("k2"), Some(1));
        assert_eq!(keys.check("k3"), Some(2));
        assert_eq!(keys.check("k"), None);
        assert_eq!(keys.check(""), None);
        assert!(!Keys::new(None, Some(&secret(" , "))).enabled());
        assert_eq!(format!("{keys:?}"), "Keys(3 configured)");
    }

    #[test]
    fn keys_come_from_headers_or_the_query() {
        let mut h = HeaderMap::new();
        assert_eq!(
            presented(&h, Some("apiKey=q")),
            Presented::Key("q".into(), Carrier::Query)
        );
        assert_eq!(presented(&h, Some("x=1")), Presented::None);
        h.insert("x-api-key", HeaderValue::from_static("x"));
        assert_eq!(
            presented(&h, None),
            Presented::Key("x".into(), Carrier::Header)
        );
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer  b "),
        );
        assert_eq!(
            presented(&h, Some("apiKey=q")),
            Presented::Key("b".into(), Carrier::Header)
        );
    }
}

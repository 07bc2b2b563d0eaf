//! API keys (`AFW_API_KEY`, `AFW_API_KEYS`): which presented credential is valid.
//!
//! Keys are kept padded to a fixed [`MAX_KEY_BYTES`] with their length beside them, and a
//! presented key is padded the same way and compared with every configured key over the
//! whole fixed width, in constant time (`subtle`): neither a key's content nor its length
//! shows in the response time, and no hashing is needed on the hot path. This module never
//! logs a key and never builds a response.

use axum::http::{HeaderMap, header};
use subtle::ConstantTimeEq;

use crate::config::Secret;

/// Where a request may carry its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Carrier {
    /// `Authorization: Bearer` or `x-api-key` (every request).
    Header,
    /// `?apiKey=` (the WebSocket upgrade only: browsers cannot set headers on it).
    Query,
}

/// What a request presented.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Presented<'a> {
    None,
    Key(std::borrow::Cow<'a, str>, Carrier),
}

/// The longest accepted API key, in bytes.
pub(crate) const MAX_KEY_BYTES: usize = 128;
const WORDS: usize = MAX_KEY_BYTES / 8;

/// A key padded to the fixed width (as words, compared eight bytes at a time), and its
/// length.
struct Padded {
    words: [u64; WORDS],
    len: u64,
}

fn pad(key: &[u8]) -> Option<Padded> {
    let mut bytes = [0u8; MAX_KEY_BYTES];
    bytes.get_mut(..key.len())?.copy_from_slice(key);
    let mut words = [0u64; WORDS];
    for (w, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        *w = u64::from_le_bytes(b);
    }
    Some(Padded {
        words,
        len: key.len() as u64,
    })
}

impl Padded {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.words
            .iter()
            .zip(&other.words)
            .fold(self.len.ct_eq(&other.len), |acc, (a, b)| acc & a.ct_eq(b))
    }
}

/// A configured key longer than [`MAX_KEY_BYTES`].
#[derive(Debug, thiserror::Error)]
#[error("AFW_API_KEY/AFW_API_KEYS: a key is longer than {MAX_KEY_BYTES} bytes")]
pub struct KeyTooLong;

/// The configured keys. Empty: auth is off.
pub(crate) struct Keys {
    keys: Vec<Padded>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys({} configured)", self.keys.len())
    }
}

impl Keys {
    /// Every non-empty key of `AFW_API_KEY` and the comma-separated `AFW_API_KEYS`.
    pub(crate) fn new(key: Option<&Secret>, keys: Option<&Secret>) -> Result<Self, KeyTooLong> {
        let listed = keys.map(|k| k.0.split(',').collect::<Vec<_>>());
        let keys = key
            .map(|k| k.0.as_str())
            .into_iter()
            .chain(listed.into_iter().flatten())
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(|k| pad(k.as_bytes()).ok_or(KeyTooLong))
            .collect::<Result<_, _>>()?;
        Ok(Self { keys })
    }

    /// How many keys are configured.
    pub(crate) fn count(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The index of the configured key that matches (every key is compared, always, over
    /// the full width).
    pub(crate) fn check(&self, presented: &str) -> Option<usize> {
        // Longer than any key can be: public information, no secret involved.
        let p = pad(presented.as_bytes())?;
        let mut found = None;
        for (i, k) in self.keys.iter().enumerate() {
            if bool::from(k.ct_eq(&p)) && found.is_none() {
                found = Some(i);
            }
        }
        found
    }
}

/// The key a request carries: a header first, then `?apiKey=` (percent-decoded).
pub(crate) fn presented<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Presented<'a> {
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
        let keys = Keys::new(Some(&secret("k1")), Some(&secret(" k2 , ,k3"))).unwrap();
        assert!(keys.enabled());
        assert_eq!(keys.check("k1"), Some(0));
        assert_eq!(keys.check("k2"), Some(1));
        assert_eq!(keys.check("k3"), Some(2));
        assert_eq!(keys.check("k"), None);
        assert_eq!(keys.check(""), None);
        assert_eq!(keys.check("k1\0"), None, "padding is not part of the key");
        assert_eq!(keys.check(&"x".repeat(MAX_KEY_BYTES + 1)), None);
        assert!(!Keys::new(None, Some(&secret(" , "))).unwrap().enabled());
        assert!(Keys::new(Some(&secret(&"k".repeat(MAX_KEY_BYTES + 1))), None).is_err());
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

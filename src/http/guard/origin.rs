//! Which browser origins and which `Host` names may reach afw.
//!
//! afw usually runs on a developer's machine, where every web page they open can send it
//! requests. Browsers mark those requests with `Origin`; the WebSocket upgrade too (and
//! browsers do not apply CORS to WebSockets), so one allow-list covers both. A page can also
//! rebind its own DNS name to 127.0.0.1 and send same-origin requests: on loopback, only
//! loopback names are accepted as `Host`. This module only decides; it builds no response.

use axum::http::HeaderMap;
use axum::http::header;

/// The origin allow-list (`AFW_CORS_ORIGINS`).
#[derive(Debug, Clone)]
pub(crate) struct Origins {
    /// Exact origins, lowercased, without a trailing slash.
    allowed: Vec<String>,
    /// `*` was asked for.
    any: bool,
}

impl Origins {
    pub(crate) fn parse(list: &str) -> Self {
        let mut allowed = Vec::new();
        let mut any = false;
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item == "*" {
                any = true;
            } else {
                allowed.push(item.trim_end_matches('/').to_ascii_lowercase());
            }
        }
        Self { allowed, any }
    }

    /// Whether a request carrying `origin` may proceed. afw's own origin (the scheme and
    /// the request's own `Host`) is always allowed, so pages afw serves can call it.
    pub(crate) fn allows(&self, origin: &str, host: Option<&str>) -> bool {
        if self.any {
            return true;
        }
        let origin = origin.trim_end_matches('/');
        if self.allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
            return true;
        }
        let Some(host) = host else {
            return false;
        };
        ["http://", "https://"].iter().any(|scheme| {
            origin.len() == scheme.len() + host.len()
                && origin[..scheme.len()].eq_ignore_ascii_case(scheme)
                && origin[scheme.len()..].eq_ignore_ascii_case(host)
        })
    }
}

/// The `Host` rule (`AFW_ALLOWED_HOSTS`).
#[derive(Debug, Clone)]
pub(crate) struct Hosts {
    /// Extra names, lowercased, without port.
    extra: Vec<String>,
    /// The listener is on a loopback address: loopback names only (plus `extra`).
    loopback: bool,
}

impl Hosts {
    pub(crate) fn new(list: &str, loopback: bool) -> Self {
        let extra = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.to_ascii_lowercase())
            .collect();
        Self { extra, loopback }
    }

    /// Whether a request with this `Host` header value may proceed. A request without
    /// `Host` is not from a browser and passes.
    pub(crate) fn allows(&self, host: Option<&str>) -> bool {
        let Some(host) = host else {
            return true;
        };
        let name = host_name(host);
        // No hostile page can make a browser send a loopback name for its own pages.
        ["localhost", "127.0.0.1", "[::1]"]
            .iter()
            .any(|l| l.eq_ignore_ascii_case(name))
            || self.extra.iter().any(|e| e.eq_ignore_ascii_case(name))
            || (!self.loopback && self.extra.is_empty())
    }
}

/// The name part of a `Host` value: `localhost:3001` → `localhost`, `[::1]:3001` → `[::1]`.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.split_once(':').map_or(host, |(name, _)| name)
}

/// The request's `Host` (HTTP/1.1) as text, if present and readable.
pub(crate) fn host_header(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::HOST).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_exact_and_include_our_own() {
        let o = Origins::parse(" http://localhost:5173 ,http://127.0.0.1:5173/");
        assert!(o.allows("http://localhost:5173", None));
        assert!(o.allows("HTTP://LOCALHOST:5173", None));
        assert!(o.allows("http://127.0.0.1:5173", None));
        assert!(!o.allows("http://localhost:5174", None));
        assert!(!o.allows("http://localhost:51730", None));
        assert!(!o.allows("http://evil.example", None));
        assert!(!o.allows("null", None));
        // Our own origin: the page was served by afw itself.
        assert!(o.allows("http://localhost:3001", Some("localhost:3001")));
        assert!(o.allows("https://afw.example", Some("afw.example")));
        assert!(!o.allows("http://evil.example", Some("localhost:3001")));
        assert!(Origins::parse("*").allows("http://evil.example", None));
    }

    #[test]
    fn on_loopback_only_loopback_names_pass() {
        let h = Hosts::new("", true);
        for ok in ["localhost:3001", "127.0.0.1", "[::1]:3001", "LOCALHOST"] {
            assert!(h.allows(Some(ok)), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:3001",
            "127.0.0.1.evil.example",
            "[::2]",
        ] {
            assert!(!h.allows(Some(bad)), "{bad}");
        }
        assert!(h.allows(None));
        let h = Hosts::new("afw.internal", true);
        assert!(h.allows(Some("afw.internal:3001")));
        // Beyond loopback any name passes, unless a list is given.
        assert!(Hosts::new("", false).allows(Some("10.0.0.5:3001")));
        assert!(!Hosts::new("afw.example", false).allows(Some("evil.example")));
        assert!(Hosts::new("afw.example", false).allows(Some("localhost:3001")));
    }
}

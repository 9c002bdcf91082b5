//! The front door's header rules, as pure functions (unit-tested here):
//! - forwarded headers: who may send them, and what is appended for the gateway;
//! - framing: let the Hub (`https://huggingface.co`, whose Space page shows the app in its
//!   App tab) frame the app, and nothing else that was refused before.

use std::net::IpAddr;

use hyper::header::{HeaderMap, HeaderName, HeaderValue};

use crate::settings::Cidr;

const FORWARDED: [&str; 5] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
];

/// Why a request is refused before it reaches the gateway.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused(pub &'static str);

/// Set the forwarded headers the gateway reads, for a request from `peer`.
/// - A peer outside `trusted` may not send forwarded headers (the gateway refuses them from
///   an untrusted hop, and so do we: the front door must add no way in).
/// - A direct loopback peer with none is passed as it is: to the gateway it is what it would
///   have been without us, a local client.
/// - Otherwise `peer` is appended to `X-Forwarded-For`, and `X-Forwarded-Proto` is kept from
///   a trusted proxy or set to `http`.
pub fn forward(headers: &mut HeaderMap, peer: IpAddr, trusted: &[Cidr]) -> Result<(), Refused> {
    let any = FORWARDED.iter().any(|h| headers.contains_key(*h));
    let peer_trusted = trusted.iter().any(|c| c.contains(peer));
    if any && !peer_trusted {
        return Err(Refused(
            "forwarded headers from a peer that is not a trusted proxy (OPENCLAW_TRUSTED_PROXIES)",
        ));
    }
    let loopback = match peer {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
        IpAddr::V4(v4) => v4.is_loopback(),
    };
    if !any && loopback {
        return Ok(());
    }
    let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => format!("{}, {peer}", prev.trim()),
        _ => peer.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert(HeaderName::from_static("x-forwarded-for"), v);
    }
    if !headers.contains_key("x-forwarded-proto") {
        headers.insert(
            HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static("http"),
        );
    }
    Ok(())
}

/// Let `hub` (the Hub's origin) frame a response that refused framing: `X-Frame-Options`
/// goes, and the CSP's `frame-ancestors` gets `hub` in place of `'none'` (or beside its
/// sources). A response that refused nothing is left as it is; no other directive is touched.
pub fn allow_hub_framing(headers: &mut HeaderMap, hub: &str) {
    let xfo = headers
        .remove("x-frame-options")
        .and_then(|v| v.to_str().ok().map(str::to_ascii_lowercase));
    let mut had_ancestors = false;
    let csps: Vec<HeaderValue> = headers
        .get_all("content-security-policy")
        .iter()
        .cloned()
        .collect();
    if !csps.is_empty() {
        headers.remove("content-security-policy");
    }
    for v in csps {
        let Ok(text) = v.to_str() else {
            headers.append("content-security-policy", v);
            continue;
        };
        let (new, found) = widen_ancestors(text, hub);
        had_ancestors |= found;
        if let Ok(v) = HeaderValue::from_str(&new) {
            headers.append("content-security-policy", v);
        }
    }
    if let (Some(xfo), false) = (xfo, had_ancestors) {
        // X-Frame-Options alone said DENY or SAMEORIGIN: say the same in CSP, plus HF.
        let sources = if xfo.contains("sameorigin") {
            format!("'self' {hub}")
        } else {
            hub.to_string()
        };
        if let Ok(v) = HeaderValue::from_str(&format!("frame-ancestors {sources}")) {
            headers.append("content-security-policy", v);
        }
    }
}

/// One CSP value with `hub` added to its `frame-ancestors`; and whether it had one.
fn widen_ancestors(csp: &str, hub: &str) -> (String, bool) {
    let mut found = false;
    let parts: Vec<String> = csp
        .split(';')
        .map(|d| {
            let t = d.trim();
            let mut words = t.split_whitespace();
            if !words
                .next()
                .is_some_and(|n| n.eq_ignore_ascii_case("frame-ancestors"))
            {
                return t.to_string();
            }
            found = true;
            let mut sources: Vec<&str> = words
                .filter(|w| !w.eq_ignore_ascii_case("'none'"))
                .collect();
            if !sources.contains(&hub) {
                sources.push(hub);
            }
            format!("frame-ancestors {}", sources.join(" "))
        })
        .filter(|d| !d.is_empty())
        .collect();
    (parts.join("; "), found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| c.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_headers_only_from_trusted_proxies() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        // The HF proxy (trusted) forwards a client: the proxy's address is appended.
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.7"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        forward(&mut h, ip("10.1.2.3"), &trusted).unwrap();
        assert_eq!(h["x-forwarded-for"], "203.0.113.7, 10.1.2.3");
        assert_eq!(h["x-forwarded-proto"], "https");
        // Anyone else sending them is refused, whatever the header.
        for name in FORWARDED {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static("127.0.0.1"));
            assert!(
                forward(&mut h, ip("203.0.113.9"), &trusted).is_err(),
                "{name}"
            );
            assert!(
                forward(&mut h, ip("127.0.0.1"), &trusted).is_err(),
                "{name} via loopback"
            );
        }
        // A direct remote client: its address becomes the forwarded client.
        let mut h = HeaderMap::new();
        forward(&mut h, ip("198.51.100.4"), &trusted).unwrap();
        assert_eq!(h["x-forwarded-for"], "198.51.100.4");
        assert_eq!(h["x-forwarded-proto"], "http");
        // A direct loopback client stays a direct local client.
        let mut h = HeaderMap::new();
        forward(&mut h, ip("::ffff:127.0.0.1"), &trusted).unwrap();
        assert!(h.is_empty());
    }

    const HF: &str = "https://huggingface.co";

    #[test]
    fn framing_is_opened_to_huggingface_only() {
        let mut h = HeaderMap::new();
        h.insert("x-frame-options", HeaderValue::from_static("DENY"));
        h.insert(
            "content-security-policy",
            HeaderValue::from_static(
                "default-src 'self'; frame-ancestors 'none'; script-src 'self'",
            ),
        );
        allow_hub_framing(&mut h, HF);
        assert!(!h.contains_key("x-frame-options"));
        assert_eq!(
            h["content-security-policy"],
            "default-src 'self'; frame-ancestors https://huggingface.co; script-src 'self'"
        );
        // X-Frame-Options alone: the same refusal in CSP, with HF let in.
        let mut h = HeaderMap::new();
        h.insert("x-frame-options", HeaderValue::from_static("SAMEORIGIN"));
        allow_hub_framing(&mut h, HF);
        assert_eq!(
            h["content-security-policy"],
            "frame-ancestors 'self' https://huggingface.co"
        );
        // Nothing refused: nothing added.
        let mut h = HeaderMap::new();
        h.insert(
            "content-security-policy",
            HeaderValue::from_static("default-src 'self'"),
        );
        allow_hub_framing(&mut h, HF);
        assert_eq!(h["content-security-policy"], "default-src 'self'");
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn cidr_contains() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains(ip("10.255.0.1")) && !c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.0.0.1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("1.2.3.4")));
    }
}

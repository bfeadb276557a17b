//! Who the client is: the socket's peer address, unless that peer is one of
//! `http.trusted_proxies` (CIDRs). Only then are `Forwarded` (RFC 7239, preferred) or
//! `X-Forwarded-For` read, from the right: each hop appends the address it saw, so the first
//! address from the right that is not a trusted proxy is the client. Anything a client wrote
//! to the left of that is ignored, and a header from an untrusted peer is ignored entirely.
//! An unparsable entry where the client should be makes the nearest trusted hop the client.

use std::net::IpAddr;

use poem::http::HeaderMap;
/// One `ADDRESS/PREFIX` block (a bare address is a single host), as the detection rules'
/// IP lists read them.
pub use vigil_rules::sigma::Cidr;

/// The proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// Parses `http.trusted_proxies`; the error names the bad entry.
    pub fn parse(list: &[String]) -> Result<TrustedProxies, String> {
        list.iter()
            .map(|s| Cidr::parse(s))
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The client's address for a request from `peer` with `headers` (see the module doc).
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let chain = match joined(headers, "forwarded") {
            Some(v) => forwarded_for(&v),
            None => match joined(headers, "x-forwarded-for") {
                Some(v) => v.split(',').map(|s| s.trim().parse().ok()).collect(),
                None => return peer,
            },
        };
        let mut client = peer;
        for hop in chain.iter().rev() {
            match hop {
                Some(ip) => {
                    client = ip.to_canonical();
                    if !self.trusts(client) {
                        return client;
                    }
                }
                None => return client,
            }
        }
        client
    }
}

/// Every value of header `name`, joined by commas (several header lines are one list).
fn joined(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// The `for=` address of each element of a `Forwarded` header (None when absent or not an IP
/// address: `unknown`, obfuscated names).
fn forwarded_for(value: &str) -> Vec<Option<IpAddr>> {
    value
        .split(',')
        .map(|element| {
            element.split(';').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                if !k.trim().eq_ignore_ascii_case("for") {
                    return None;
                }
                node_ip(v.trim().trim_matches('"'))
            })
        })
        .collect()
}

/// `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]`, `[2001:db8::1]:4711`.
fn node_ip(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    if let Ok(ip) = node.parse() {
        return Some(ip);
    }
    node.rsplit_once(':')?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use poem::http::HeaderValue;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_parse_and_match() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.200.1.1")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.0.0.1")), "IPv4-mapped peers");
        assert!(Cidr::parse("::/0").unwrap().contains(ip("2001:db8::1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("192.0.2.7").unwrap().contains(ip("192.0.2.7")));
        assert!(!Cidr::parse("192.0.2.7").unwrap().contains(ip("192.0.2.8")));
        for bad in ["10.0.0.0/33", "nope", "10.0.0.0/x", "::/129", ""] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn headers_are_read_only_from_trusted_peers_and_from_the_right() {
        let p = proxies(&["10.0.0.0/8"]);
        let xff = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.2")]);
        // An untrusted peer's header is ignored.
        assert_eq!(p.client_ip(ip("198.51.100.1"), &xff), ip("198.51.100.1"));
        // A trusted peer: the rightmost untrusted hop (the client's own claim is left of it).
        assert_eq!(p.client_ip(ip("10.0.0.1"), &xff), ip("203.0.113.9"));
        // Several header lines are one list.
        let two = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "203.0.113.10"),
        ]);
        assert_eq!(p.client_ip(ip("10.0.0.1"), &two), ip("203.0.113.10"));
        // Forwarded wins over X-Forwarded-For; ports, quotes and brackets are handled.
        let fwd = headers(&[
            (
                "forwarded",
                r#"for=6.6.6.6, for="[2001:db8::17]:4711";proto=https"#,
            ),
            ("x-forwarded-for", "203.0.113.9"),
        ]);
        assert_eq!(p.client_ip(ip("10.0.0.1"), &fwd), ip("2001:db8::17"));
        let port = headers(&[("forwarded", "for=192.0.2.60:8080;by=10.0.0.1")]);
        assert_eq!(p.client_ip(ip("10.0.0.1"), &port), ip("192.0.2.60"));
        // Garbage where the client should be: the nearest trusted hop.
        let junk = headers(&[("x-forwarded-for", "not-an-ip, 10.0.0.7")]);
        assert_eq!(p.client_ip(ip("10.0.0.1"), &junk), ip("10.0.0.7"));
        let unknown = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(p.client_ip(ip("10.0.0.1"), &unknown), ip("10.0.0.1"));
        // No header: the peer.
        assert_eq!(
            p.client_ip(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
        // Nothing trusted: headers never matter.
        assert_eq!(
            TrustedProxies::default().client_ip(ip("10.0.0.1"), &xff),
            ip("10.0.0.1")
        );
    }
}

//! Who the client is: the peer's address, or the address a trusted reverse proxy forwarded.
//!
//! Addresses are canonical before anything compares them: a dual-stack listener sees IPv4
//! clients as IPv4-mapped IPv6 (`::ffff:a.b.c.d`), which would otherwise miss IPv4 proxy entries
//! and fall into one shared IPv6 /64 rate-limit bucket.

use std::net::IpAddr;

use poem::Request;

/// The client address of a request: its peer, or what a trusted proxy forwarded.
pub(crate) fn of_request(req: &Request, proxies: &TrustedProxies) -> IpAddr {
    let peer = req
        .remote_addr()
        .as_socket_addr()
        .map(|addr| addr.ip().to_canonical())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let forwarded = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    proxies.client_ip(peer, forwarded)
}

/// Proxies whose `X-Forwarded-For` is believed, as addresses or CIDR blocks.
#[derive(Clone, Debug, Default)]
pub(crate) struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Parses `10.0.0.1, 10.1.0.0/16, ::1`.
    pub(crate) fn parse(raw: &str) -> Result<Self, String> {
        raw.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                let (addr, prefix) = entry.split_once('/').unwrap_or((entry, ""));
                let addr: IpAddr = addr
                    .parse()
                    .map_err(|_| format!("'{entry}' is not an IP address or CIDR block"))?;
                let max = if addr.is_ipv4() { 32 } else { 128 };
                let prefix = if prefix.is_empty() {
                    max
                } else {
                    prefix
                        .parse::<u8>()
                        .ok()
                        .filter(|p| *p <= max)
                        .ok_or_else(|| format!("'{entry}' has an invalid prefix length"))?
                };
                // An IPv4-mapped block is the IPv4 block it maps.
                match addr.to_canonical() {
                    IpAddr::V4(v4) if addr.is_ipv6() && prefix >= 96 => {
                        Ok((IpAddr::V4(v4), prefix - 96))
                    }
                    _ => Ok((addr, prefix)),
                }
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        self.0
            .iter()
            .any(|(net, prefix)| in_block(ip, *net, *prefix))
    }

    /// The client's address: the peer itself, unless the peer is a trusted proxy, in which
    /// case the nearest address in `X-Forwarded-For` that is not a trusted proxy.
    pub(crate) fn client_ip(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let Some(header) = forwarded_for else {
            return peer;
        };
        let mut client = peer;
        for hop in header.rsplit(',').map(str::trim) {
            match hop.parse::<IpAddr>().map(|ip| ip.to_canonical()) {
                Ok(ip) => {
                    client = ip;
                    if !self.contains(ip) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        client
    }
}

fn in_block(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, ::1").unwrap();
        let client: IpAddr = "203.0.113.9".parse().unwrap();
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: IpAddr = "198.51.100.7".parse().unwrap();

        assert_eq!(proxies.client_ip(stranger, Some("203.0.113.9")), stranger);
        assert_eq!(proxies.client_ip(proxy, Some("203.0.113.9")), client);
        assert_eq!(
            proxies.client_ip(proxy, Some("1.1.1.1, 203.0.113.9, 10.0.0.5")),
            client
        );
        assert_eq!(proxies.client_ip(proxy, None), proxy);
        assert_eq!(proxies.client_ip(proxy, Some("garbage")), proxy);
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());

        // IPv4 clients of a dual-stack listener, and mapped forms anywhere, count as IPv4.
        let mapped_proxy: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(proxies.client_ip(mapped_proxy, Some("203.0.113.9")), client);
        assert_eq!(
            proxies.client_ip(mapped_proxy, Some("::ffff:203.0.113.9")),
            client
        );
        let mapped_stranger: IpAddr = "::ffff:198.51.100.7".parse().unwrap();
        assert_eq!(proxies.client_ip(mapped_stranger, None), stranger);
        let mapped_block = TrustedProxies::parse("::ffff:10.0.0.0/104").unwrap();
        assert!(mapped_block.contains(proxy));
        assert!(TrustedProxies::parse("proxy.local").is_err());
    }
}

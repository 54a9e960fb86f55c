//! The client IP of an inbound request, and the CIDR lists it is checked against.
//!
//! The client is the socket peer, unless the peer is a trusted proxy: then it is the nearest
//! `X-Forwarded-For` entry, reading from the right, that is not itself a trusted proxy. A header
//! sent by anyone else is never read, so it cannot spoof an allow-listed address.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use ipnet::IpNet;

/// ElevenLabs' published static egress IPs, comma separated: the default for
/// `ELEVENLABS_ALLOWED_IPS`.
///
/// US (default), EU and Asia, then the EU, India and Singapore data residency regions. Source:
/// <https://elevenlabs.io/docs/eleven-api/resources/ip-allowlisting>, the same table as
/// <https://elevenlabs.io/docs/eleven-agents/workflows/post-call-webhooks#ip-whitelisting>.
pub const ELEVENLABS_EGRESS_IPS: &str = "34.67.146.145,34.59.11.47,\
35.204.38.71,34.147.113.54,\
35.185.187.110,35.247.157.189,\
34.77.234.246,34.140.184.144,\
34.93.26.174,34.93.252.69,\
34.87.23.17,34.126.179.103";

/// A list of CIDR networks, parsed from comma-separated CIDRs or bare IPs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrList(Vec<IpNet>);

/// An entry of a CIDR list that is neither an IP address nor a CIDR network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an IP address or CIDR network (expected e.g. 203.0.113.7 or 10.0.0.0/8)")]
pub struct CidrListError(pub String);

impl CidrList {
    /// True if `ip` (IPv4-mapped IPv6 counts as IPv4) is in one of the networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// True when the list has no networks.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The networks, in the order given.
    pub fn networks(&self) -> &[IpNet] {
        &self.0
    }
}

impl FromStr for CidrList {
    type Err = CidrListError;

    /// Parses `"10.0.0.0/8, 203.0.113.7"`; a bare IP is a single-host network, and empty
    /// entries (an empty string, a trailing comma) are skipped.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(parse_network)
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl fmt::Display for CidrList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, net) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

fn parse_network(entry: &str) -> Result<IpNet, CidrListError> {
    let network = if entry.contains('/') {
        entry.parse::<IpNet>().ok().map(|net| net.trunc())
    } else {
        entry
            .parse::<IpAddr>()
            .ok()
            .map(|ip| IpNet::from(ip.to_canonical()))
    };
    network.ok_or_else(|| CidrListError(entry.to_owned()))
}

/// The client IP of a request from `peer` carrying `x_forwarded_for` (every header value, in
/// order).
///
/// If `peer` is not a trusted proxy, it is the client and the header is ignored. Otherwise the
/// entries are walked from the right, skipping trusted proxies: the first untrusted entry is
/// the client. An entry that is not an IP address stops the walk at the last trusted hop, since
/// nothing left of it can be trusted. If every entry is a trusted proxy, the leftmost one is
/// the client (the peer when the header is absent or empty).
pub fn client_ip(peer: IpAddr, x_forwarded_for: &[&str], trusted_proxies: &CidrList) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted_proxies.contains(peer) {
        return peer;
    }
    let mut last_trusted = peer;
    let entries = x_forwarded_for
        .iter()
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .collect::<Vec<_>>();
    for entry in entries.into_iter().rev() {
        let Some(ip) = parse_forwarded_ip(entry) else {
            return last_trusted;
        };
        if !trusted_proxies.contains(ip) {
            return ip;
        }
        last_trusted = ip;
    }
    last_trusted
}

/// An `X-Forwarded-For` entry: an IP, or an IP with a port (`1.2.3.4:80`, `[::1]:80`).
fn parse_forwarded_ip(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|addr| addr.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn list(s: &str) -> CidrList {
        s.parse().unwrap()
    }

    fn proxies() -> CidrList {
        list("10.0.0.0/8, 192.168.1.1")
    }

    #[test]
    fn an_empty_string_is_an_empty_list() {
        assert!(list("").is_empty());
        assert!(list(" , ").is_empty());
    }

    #[test]
    fn a_bare_ipv4_is_a_single_host() {
        let l = list("203.0.113.7");
        assert!(l.contains(ip("203.0.113.7")));
        assert!(!l.contains(ip("203.0.113.8")));
    }

    #[test]
    fn a_bare_ipv6_is_a_single_host() {
        let l = list("2001:db8::1");
        assert!(l.contains(ip("2001:db8::1")));
        assert!(!l.contains(ip("2001:db8::2")));
    }

    #[test]
    fn a_cidr_contains_its_addresses() {
        let l = list("10.0.0.0/8,2001:db8::/32");
        assert!(l.contains(ip("10.255.0.1")));
        assert!(l.contains(ip("2001:db8:ffff::1")));
        assert!(!l.contains(ip("11.0.0.1")));
    }

    #[test]
    fn a_cidr_with_host_bits_set_covers_its_network() {
        assert!(list("10.1.2.3/8").contains(ip("10.200.0.1")));
    }

    #[test]
    fn an_ipv4_mapped_ipv6_address_matches_an_ipv4_entry() {
        assert!(proxies().contains(ip("::ffff:10.1.2.3")));
    }

    #[test]
    fn an_ipv4_mapped_entry_is_stored_as_ipv4() {
        assert!(list("::ffff:203.0.113.7").contains(ip("203.0.113.7")));
    }

    #[test]
    fn a_bad_entry_is_named_in_the_error() {
        let err = "10.0.0.0/8, nonsense".parse::<CidrList>().unwrap_err();
        assert_eq!(err, CidrListError("nonsense".to_owned()));
        assert!(err.to_string().contains("`nonsense`"));
    }

    #[test]
    fn a_prefix_too_long_is_an_error() {
        assert!("10.0.0.0/33".parse::<CidrList>().is_err());
    }

    #[test]
    fn a_list_displays_as_comma_separated_cidrs() {
        assert_eq!(
            list("10.0.0.0/8, 1.2.3.4").to_string(),
            "10.0.0.0/8,1.2.3.4/32"
        );
    }

    #[test]
    fn the_elevenlabs_list_parses_to_twelve_hosts() {
        let l = list(ELEVENLABS_EGRESS_IPS);
        assert_eq!(l.networks().len(), 12);
        assert!(l.contains(ip("34.67.146.145")));
        assert!(l.contains(ip("34.126.179.103")));
    }

    #[test]
    fn an_untrusted_peer_is_the_client() {
        assert_eq!(
            client_ip(ip("198.51.100.9"), &[], &proxies()),
            ip("198.51.100.9")
        );
    }

    #[test]
    fn an_untrusted_peer_cannot_spoof_with_x_forwarded_for() {
        let client = client_ip(ip("198.51.100.9"), &["34.67.146.145"], &proxies());
        assert_eq!(client, ip("198.51.100.9"));
    }

    #[test]
    fn with_no_trusted_proxies_the_peer_is_the_client() {
        let client = client_ip(ip("10.0.0.5"), &["34.67.146.145"], &CidrList::default());
        assert_eq!(client, ip("10.0.0.5"));
    }

    #[test]
    fn a_trusted_peer_yields_the_entry_it_added() {
        let client = client_ip(ip("10.0.0.5"), &["34.67.146.145"], &proxies());
        assert_eq!(client, ip("34.67.146.145"));
    }

    #[test]
    fn entries_left_of_the_first_untrusted_one_are_ignored() {
        let client = client_ip(ip("10.0.0.5"), &["1.1.1.1, 34.67.146.145"], &proxies());
        assert_eq!(client, ip("34.67.146.145"));
    }

    #[test]
    fn trusted_proxies_in_the_chain_are_skipped() {
        let client = client_ip(
            ip("10.0.0.5"),
            &["34.67.146.145, 192.168.1.1, 10.9.9.9"],
            &proxies(),
        );
        assert_eq!(client, ip("34.67.146.145"));
    }

    #[test]
    fn several_header_values_are_read_as_one_list_in_order() {
        let client = client_ip(
            ip("10.0.0.5"),
            &["1.1.1.1", "34.67.146.145, 10.1.1.1"],
            &proxies(),
        );
        assert_eq!(client, ip("34.67.146.145"));
    }

    #[test]
    fn a_garbage_entry_stops_at_the_last_trusted_hop() {
        let client = client_ip(
            ip("10.0.0.5"),
            &["34.67.146.145, unknown, 10.2.2.2"],
            &proxies(),
        );
        assert_eq!(client, ip("10.2.2.2"));
    }

    #[test]
    fn a_garbage_last_entry_yields_the_peer() {
        let client = client_ip(ip("10.0.0.5"), &["34.67.146.145, garbage"], &proxies());
        assert_eq!(client, ip("10.0.0.5"));
    }

    #[test]
    fn when_every_entry_is_trusted_the_leftmost_is_the_client() {
        let client = client_ip(ip("10.0.0.5"), &["10.3.3.3, 10.2.2.2"], &proxies());
        assert_eq!(client, ip("10.3.3.3"));
    }

    #[test]
    fn a_trusted_peer_without_the_header_is_the_client() {
        assert_eq!(client_ip(ip("10.0.0.5"), &[], &proxies()), ip("10.0.0.5"));
        assert_eq!(
            client_ip(ip("10.0.0.5"), &[" , "], &proxies()),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn an_ipv4_mapped_peer_is_reported_as_ipv4() {
        assert_eq!(
            client_ip(ip("::ffff:198.51.100.9"), &[], &proxies()),
            ip("198.51.100.9")
        );
    }

    #[test]
    fn an_ipv4_mapped_trusted_peer_is_trusted() {
        let client = client_ip(ip("::ffff:10.0.0.5"), &["34.67.146.145"], &proxies());
        assert_eq!(client, ip("34.67.146.145"));
    }

    #[test]
    fn an_ipv4_mapped_entry_is_reported_as_ipv4() {
        let client = client_ip(ip("10.0.0.5"), &["::ffff:34.67.146.145"], &proxies());
        assert_eq!(client, ip("34.67.146.145"));
    }

    #[test]
    fn an_entry_with_a_port_is_read_as_its_ip() {
        let client = client_ip(ip("10.0.0.5"), &["34.67.146.145:5123"], &proxies());
        assert_eq!(client, ip("34.67.146.145"));
        let client = client_ip(ip("10.0.0.5"), &["[2001:db8::7]:443"], &proxies());
        assert_eq!(client, ip("2001:db8::7"));
    }
}

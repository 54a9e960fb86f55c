//! The one outbound HTTP client: rustls, a total timeout, no redirects, pooled connections,
//! and (unless private targets are allowed) an SSRF guard.
//!
//! The guard has two halves. A resolver drops every non-global address a host name resolves
//! to, and the connection is made to the addresses it returns, so DNS rebinding between a
//! check and the connect is impossible. URLs whose host is an IP literal never reach a
//! resolver, so [`DeliveryClient::send`] checks those itself before sending anything.

use std::error::Error as StdError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect;
use url::Host;

/// Settings of the delivery client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Total time allowed for one attempt: connect, send, and read the response.
    pub timeout: Duration,
    /// Whether targets on loopback, private and other non-global addresses may be called.
    pub allow_private_targets: bool,
    /// The `user-agent` header sent with every delivery.
    pub user_agent: String,
}

impl Default for ClientConfig {
    /// 15 s timeout, SSRF guard on, `wirehook/<version>`.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(15),
            allow_private_targets: false,
            user_agent: concat!("wirehook/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// A delivery target refused by the SSRF guard; found in a request error's source chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("target {host} has no public address (refused by the SSRF guard)")]
pub struct SsrfBlocked {
    /// The host name or IP literal that was refused.
    pub host: String,
}

/// The delivery client could not be built (TLS backend initialisation).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the delivery HTTP client")]
pub struct ClientBuildError(#[source] reqwest::Error);

/// Why [`DeliveryClient::send`] got no response.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The target's IP literal is not a global address; nothing was sent.
    #[error(transparent)]
    Blocked(#[from] SsrfBlocked),
    /// The request failed: connect, DNS (including the resolver's [`SsrfBlocked`]), timeout, ….
    #[error(transparent)]
    Http(#[from] reqwest::Error),
}

/// The outbound HTTP client; cheap to clone, and meant to be shared by all deliveries.
#[derive(Debug, Clone)]
pub struct DeliveryClient {
    client: reqwest::Client,
    config: ClientConfig,
}

impl DeliveryClient {
    /// The total timeout of one attempt.
    pub fn timeout(&self) -> Duration {
        self.config.timeout
    }

    /// Builds the client: rustls, `config.timeout`, no redirects, keep-alive pooling, no proxy,
    /// and the SSRF-checking resolver unless `config.allow_private_targets`.
    pub fn new(config: ClientConfig) -> Result<Self, ClientBuildError> {
        let mut builder = reqwest::Client::builder()
            .tls_backend_rustls()
            .timeout(config.timeout)
            .redirect(redirect::Policy::none())
            // A proxy would resolve the target itself, out of the guard's reach.
            .no_proxy()
            .referer(false)
            // Keep-alive pooling; bounded so one busy host cannot hoard idle sockets.
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(32);
        if !config.allow_private_targets {
            builder = builder.dns_resolver(GlobalOnlyResolver);
        }
        let client = builder.build().map_err(ClientBuildError)?;
        Ok(Self { client, config })
    }

    /// The settings this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Refuses a URL whose host is a non-global IP literal, when the SSRF guard is on.
    ///
    /// Host names pass here; the resolver checks the addresses they resolve to.
    pub fn check_target(&self, url: &reqwest::Url) -> Result<(), SsrfBlocked> {
        if self.config.allow_private_targets {
            return Ok(());
        }
        let ip = match url.host() {
            Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
            Some(Host::Domain(_)) | None => return Ok(()),
        };
        if is_global(ip) {
            Ok(())
        } else {
            Err(SsrfBlocked {
                host: ip.to_string(),
            })
        }
    }

    /// Sends a request after [`check_target`](Self::check_target); the only way out.
    pub async fn send(&self, request: reqwest::Request) -> Result<reqwest::Response, SendError> {
        self.check_target(request.url())?;
        Ok(self.client.execute(request).await?)
    }
}

/// Resolves with the system resolver (through tokio) and keeps only global addresses.
#[derive(Debug, Clone, Copy)]
struct GlobalOnlyResolver;

impl Resolve for GlobalOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if resolved.is_empty() {
                return Err(format!("{host} resolves to no address").into());
            }
            let global: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| is_global(addr.ip()))
                .collect();
            if global.is_empty() {
                let blocked: Box<dyn StdError + Send + Sync> = Box::new(SsrfBlocked { host });
                return Err(blocked);
            }
            let addrs: Addrs = Box::new(global.into_iter());
            Ok(addrs)
        })
    }
}

/// Whether `ip` is a publicly routable unicast address that deliveries may reach.
///
/// False for unspecified, loopback, private (10/8, 172.16/12, 192.168/16), shared/CGNAT
/// (100.64/10), link-local (169.254/16, fe80::/10), IETF protocol (192.0.0/24, 2001::/23),
/// documentation, benchmarking, reserved (240/4), broadcast, multicast, discard (100::/64),
/// ULA (fc00::/7), site-local (fec0::/10), and IPv6 forms that embed a non-global IPv4
/// address (IPv4-mapped, IPv4-compatible, NAT64 64:ff9b::/96, 6to4 2002::/16).
pub fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_global_v4(ip),
        IpAddr::V6(ip) => is_global_v6(ip),
    }
}

fn is_global_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0 // "this network", including 0.0.0.0
        || a == 10
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || a == 127
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast (deprecated)
        || (a == 192 && b == 168)
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || a >= 224) // multicast 224/4, reserved 240/4, broadcast
}

fn is_global_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_global_v4(v4);
    }
    let segments = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    match segments {
        // ::/96: unspecified, loopback and the deprecated IPv4-compatible addresses.
        [0, 0, 0, 0, 0, 0, _, _] => false,
        // NAT64 well-known prefix: as global as the IPv4 address it translates to.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => is_global_v4(embedded_v4(hi, lo)),
        // NAT64 local-use prefix 64:ff9b:1::/48.
        [0x64, 0xff9b, 1, ..] => false,
        // Discard-only 100::/64.
        [0x100, 0, 0, 0, ..] => false,
        // IETF protocol assignments 2001::/23 (Teredo, ORCHID, benchmarking, …).
        [0x2001, s1, ..] if s1 < 0x200 => false,
        // Documentation 2001:db8::/32 and 3fff::/20.
        [0x2001, 0xdb8, ..] => false,
        [0x3fff, s1, ..] if s1 < 0x1000 => false,
        // 6to4: as global as the IPv4 address it tunnels to.
        [0x2002, hi, lo, ..] => is_global_v4(embedded_v4(hi, lo)),
        // ULA fc00::/7, link-local fe80::/10, site-local fec0::/10, multicast ff00::/8.
        [s0, ..] if (s0 & 0xfe00) == 0xfc00 => false,
        [s0, ..] if (s0 & 0xffc0) == 0xfe80 => false,
        [s0, ..] if (s0 & 0xffc0) == 0xfec0 => false,
        [s0, ..] if (s0 & 0xff00) == 0xff00 => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn guarded() -> DeliveryClient {
        DeliveryClient::new(ClientConfig::default()).unwrap()
    }

    fn url(s: &str) -> reqwest::Url {
        s.parse().unwrap()
    }

    #[test]
    fn public_addresses_are_global() {
        for addr in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.169.0.1",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001:82a::200e",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "3fff:1000::1",
            "3ffe::1",
        ] {
            assert!(is_global(ip(addr)), "{addr} should be global");
        }
    }

    #[test]
    fn loopback_is_not_global() {
        for addr in ["127.0.0.1", "127.255.255.254", "::1"] {
            assert!(!is_global(ip(addr)), "{addr}");
        }
    }

    #[test]
    fn private_ranges_are_not_global() {
        for addr in [
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
        ] {
            assert!(!is_global(ip(addr)), "{addr}");
        }
    }

    #[test]
    fn link_local_and_cloud_metadata_are_not_global() {
        for addr in ["169.254.169.254", "169.254.0.1", "fe80::1", "febf::1"] {
            assert!(!is_global(ip(addr)), "{addr}");
        }
    }

    #[test]
    fn shared_cgnat_range_is_not_global() {
        for addr in ["100.64.0.1", "100.127.255.255"] {
            assert!(!is_global(ip(addr)), "{addr}");
        }
    }

    #[test]
    fn unspecified_and_this_network_are_not_global() {
        for addr in ["0.0.0.0", "0.1.2.3", "::"] {
            assert!(!is_global(ip(addr)), "{addr}");
        }
    }

    #[test]
    fn multicast_broadcast_and_reserved_are_not_global() {
        for addr in [
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "ff02::1",
        ] {
            assert!(!is_global(ip(addr)), "{addr}");
        }
    }

    #[test]
    fn documentation_and_benchmarking_ranges_are_not_global() {
        for addr in [
            "192.0.2.1",
            "198.51.100.1",
            "203.0.113.1",
            "198.18.0.1",
            "198.19.255.255",
            "2001:db8::1",
            "3fff::1",
        ] {
            assert!(!is_global(ip(addr)), "{addr}");
        }
    }

    #[test]
    fn ietf_protocol_assignments_are_not_global() {
        for addr in [
            "192.0.0.1",
            "192.88.99.1",
            "2001::1",
            "2001:1ff::1",
            "100::1",
        ] {
            assert!(!is_global(ip(addr)), "{addr}");
        }
    }

    #[test]
    fn unique_local_and_site_local_are_not_global() {
        for addr in ["fc00::1", "fd12:3456:789a::1", "fec0::1"] {
            assert!(!is_global(ip(addr)), "{addr}");
        }
    }

    #[test]
    fn ipv4_mapped_non_global_addresses_are_not_global() {
        for addr in [
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:100.64.0.1",
            "::ffff:0.0.0.0",
            "::ffff:255.255.255.255",
        ] {
            assert!(!is_global(ip(addr)), "{addr}");
        }
    }

    #[test]
    fn ipv6_forms_embedding_non_global_ipv4_are_not_global() {
        for addr in [
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::1",
        ] {
            assert!(!is_global(ip(addr)), "{addr}");
        }
    }

    #[test]
    fn guard_refuses_a_private_ip_literal() {
        let err = guarded()
            .check_target(&url("http://127.0.0.1:8080/hook"))
            .unwrap_err();
        assert_eq!(err.host, "127.0.0.1");
    }

    #[test]
    fn guard_refuses_an_ipv6_literal() {
        assert!(guarded().check_target(&url("http://[::1]/")).is_err());
        assert!(
            guarded()
                .check_target(&url("http://[::ffff:7f00:1]/"))
                .is_err()
        );
    }

    #[test]
    fn guard_refuses_numeric_ipv4_spellings() {
        for target in ["http://2130706433/", "http://0x7f.1/", "http://0177.0.0.1/"] {
            assert!(guarded().check_target(&url(target)).is_err(), "{target}");
        }
    }

    #[test]
    fn guard_lets_host_names_through_to_the_resolver() {
        assert!(guarded().check_target(&url("http://localhost/")).is_ok());
    }

    #[test]
    fn guard_allows_a_public_ip_literal() {
        assert!(guarded().check_target(&url("https://1.1.1.1/")).is_ok());
    }

    #[test]
    fn private_literals_pass_when_private_targets_are_allowed() {
        let client = DeliveryClient::new(ClientConfig {
            allow_private_targets: true,
            ..ClientConfig::default()
        })
        .unwrap();
        assert!(client.check_target(&url("http://127.0.0.1/")).is_ok());
    }

    #[tokio::test]
    async fn resolver_refuses_a_name_with_only_loopback_addresses() {
        let err = GlobalOnlyResolver
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .unwrap();
        assert!(err.downcast_ref::<SsrfBlocked>().is_some(), "{err}");
    }

    #[test]
    fn default_user_agent_names_the_service_and_version() {
        assert_eq!(
            ClientConfig::default().user_agent,
            concat!("wirehook/", env!("CARGO_PKG_VERSION"))
        );
    }
}

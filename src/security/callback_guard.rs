//! Where answers may be sent: the callback allow list (SSRF guard).
//!
//! A request's `ResponseURL` comes from whoever sent the request. Without a
//! guard, anyone who can reach the provider could make it POST to the cloud
//! metadata service (`100.100.100.200` on Alibaba Cloud, `169.254.169.254`
//! elsewhere), to loopback admin ports or into a private network. So before
//! every delivery each callback URL is checked:
//!
//! - the scheme is `http` or `https`;
//! - the host matches the allow list: an exact name, `*.suffix` (any
//!   subdomain of `suffix`, not `suffix` itself), an IP literal, or `*`;
//! - an IP literal is accepted only when that address is listed explicitly,
//!   whatever else the list says, so `*` never opens `127.0.0.1` or the
//!   metadata address;
//! - at connect time, a name that is allowed through a wildcard or `*` must
//!   not resolve to a loopback, link-local, metadata, unspecified or multicast
//!   address, and for the public URL not to a private (RFC 1918, CGNAT, ULA)
//!   one either. ROS's intranet endpoints live on Alibaba's internal network,
//!   so the intranet URL may resolve to private addresses. A name listed
//!   exactly may resolve anywhere.
//!
//! Redirects are never followed (the delivery client is built so).
//!
//! **Default allow list**: `*.aliyuncs.com` and `*.alibabacloud.com`. ROS
//! documents no callback host. Its API endpoints are `ros.aliyuncs.com` and
//! `ros.<region>.aliyuncs.com`, Alibaba's service and OSS endpoints
//! (presigned URLs included) live under `aliyuncs.com`, and its newer
//! international domain is `alibabacloud.com`. Once you see the host ROS
//! really uses, narrow the list to it (`--callback-allow`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::request::{CallbackUrl, Target};

/// The allow list when none is configured.
pub const DEFAULT_CALLBACK_ALLOW: [&str; 2] = ["*.aliyuncs.com", "*.alibabacloud.com"];

/// What local tests and `stackhook invoke` need: callback sinks on loopback.
pub const LOCAL_CALLBACK_ALLOW: [&str; 3] = ["127.0.0.1", "::1", "localhost"];

/// One entry of the allow list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `*`: any host name (IP literals still need listing).
    Any,
    /// `host.example.com`: exactly this name.
    Exact(String),
    /// `*.example.com`: any subdomain, stored as `.example.com`.
    Suffix(String),
    /// `10.0.0.5` or `::1`: exactly this address.
    Ip(IpAddr),
}

impl FromStr for HostPattern {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if text.trim() == "*" {
            return Ok(HostPattern::Any);
        }
        let text = text.trim().trim_end_matches('.').to_ascii_lowercase();
        let bare = text.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(HostPattern::Ip(canonical_ip(ip)));
        }
        let (suffix, name) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, text.as_str()),
        };
        let valid = !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid {
            return Err(format!(
                "`{text}` is not a host name, `*.suffix`, an IP address or `*`"
            ));
        }
        Ok(if suffix {
            HostPattern::Suffix(format!(".{name}"))
        } else {
            HostPattern::Exact(name.to_string())
        })
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Any => f.write_str("*"),
            HostPattern::Exact(name) => f.write_str(name),
            HostPattern::Suffix(suffix) => write!(f, "*{suffix}"),
            HostPattern::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Parse a comma-separated allow list, as `--callback-allow` takes it.
///
/// # Errors
/// A message naming the entry that is not a pattern.
pub fn parse_allow_list(text: &str) -> Result<Vec<HostPattern>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect()
}

/// Why a callback URL was refused. Messages name the host at most.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardError {
    /// Not a URL.
    Unparseable,
    /// Not http or https.
    Scheme(String),
    /// No host.
    NoHost,
    /// A name not on the allow list.
    NotAllowed(String),
    /// An IP literal that is not listed explicitly.
    AddressNotListed(String),
}

impl fmt::Display for GuardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuardError::Unparseable => f.write_str("the callback URL is not a valid URL"),
            GuardError::Scheme(s) => write!(f, "callback scheme `{s}` is not http or https"),
            GuardError::NoHost => f.write_str("the callback URL has no host"),
            GuardError::NotAllowed(h) => {
                write!(f, "callback host `{h}` is not on the callback allow list")
            }
            GuardError::AddressNotListed(h) => write!(
                f,
                "callback address `{h}` is an IP literal{} not listed in the callback allow list",
                if special_address(h.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), true) {
                    " in a private, loopback, link-local or metadata range"
                } else {
                    ""
                }
            ),
        }
    }
}

impl std::error::Error for GuardError {}

impl GuardError {
    /// What would let the URL receive answers, if a setting can: a host or
    /// address added to the allow list. `None` for a URL no list allows.
    pub fn remedy(&self) -> Option<String> {
        match self {
            GuardError::NotAllowed(host) | GuardError::AddressNotListed(host) => Some(format!(
                "to send answers there, add `{host}` to the allow list with --callback-allow \
                 (STACKHOOK_CALLBACK_ALLOW)"
            )),
            GuardError::Unparseable | GuardError::Scheme(_) | GuardError::NoHost => None,
        }
    }
}

/// The allow list, checked before every delivery.
#[derive(Debug, Clone)]
pub struct CallbackGuard {
    allow: Arc<Vec<HostPattern>>,
}

impl Default for CallbackGuard {
    fn default() -> Self {
        CallbackGuard::new(default_allow_list())
    }
}

/// [`DEFAULT_CALLBACK_ALLOW`] as patterns.
pub fn default_allow_list() -> Vec<HostPattern> {
    DEFAULT_CALLBACK_ALLOW
        .iter()
        .filter_map(|p| p.parse().ok())
        .collect()
}

impl CallbackGuard {
    /// A guard for `allow`. An empty list refuses every callback.
    pub fn new(allow: Vec<HostPattern>) -> Self {
        CallbackGuard {
            allow: Arc::new(allow),
        }
    }

    /// The allow list.
    pub fn allow_list(&self) -> &[HostPattern] {
        &self.allow
    }

    /// Check one URL.
    ///
    /// # Errors
    /// A [`GuardError`] saying why the URL may not receive an answer.
    pub fn check(&self, url: &str) -> Result<(), GuardError> {
        self.approve(url).map(drop)
    }

    /// [`CallbackGuard::check`], returning the parsed URL, so that it is
    /// parsed once for both the check and the request.
    fn approve(&self, url: &str) -> Result<reqwest::Url, GuardError> {
        let parsed = reqwest::Url::parse(url).map_err(|_| GuardError::Unparseable)?;
        self.check_parsed(&parsed)?;
        Ok(parsed)
    }

    fn check_parsed(&self, parsed: &reqwest::Url) -> Result<(), GuardError> {
        let scheme = parsed.scheme();
        if scheme != "http" && scheme != "https" {
            return Err(GuardError::Scheme(scheme.chars().take(16).collect()));
        }
        match parsed.host() {
            None => Err(GuardError::NoHost),
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)),
            Some(url::Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                if self.name_allowed(&name) {
                    Ok(())
                } else {
                    Err(GuardError::NotAllowed(name))
                }
            }
        }
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), GuardError> {
        if self.ip_listed(ip) {
            Ok(())
        } else {
            Err(GuardError::AddressNotListed(canonical_ip(ip).to_string()))
        }
    }

    fn ip_listed(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.allow
            .iter()
            .any(|p| matches!(p, HostPattern::Ip(listed) if *listed == ip))
    }

    fn name_listed_exactly(&self, name: &str) -> bool {
        self.allow
            .iter()
            .any(|p| matches!(p, HostPattern::Exact(listed) if listed == name))
    }

    fn name_allowed(&self, name: &str) -> bool {
        self.allow.iter().any(|p| match p {
            HostPattern::Any => true,
            HostPattern::Exact(listed) => listed == name,
            HostPattern::Suffix(suffix) => name.len() > suffix.len() && name.ends_with(suffix),
            HostPattern::Ip(_) => false,
        })
    }

    /// Hand each target whose URL passes to `keep`, with its URL parsed, and
    /// log each refusal with its host only. Returns how many were kept.
    ///
    /// # Errors
    /// [`Error::CallbackRefused`] when there were targets and none passes.
    pub(crate) fn approve_targets<'a>(
        &self,
        targets: impl IntoIterator<Item = (Target, &'a CallbackUrl)>,
        mut keep: impl FnMut(Target, &'a CallbackUrl, reqwest::Url),
    ) -> Result<usize> {
        let mut refusals = Vec::new();
        let mut kept = 0;
        for (target, url) in targets {
            match self.approve_target(target, url) {
                Ok(parsed) => {
                    keep(target, url, parsed);
                    kept += 1;
                }
                Err(refusal) => refusals.push(refusal),
            }
        }
        if kept == 0 && !refusals.is_empty() {
            Err(Error::CallbackRefused(refusals.join("; ")))
        } else {
            Ok(kept)
        }
    }

    /// Why none of `targets` may receive an answer, or `None` when one may
    /// (or there are none): each refused URL with the host the guard
    /// refused and, where a setting can allow it, the flag that does.
    /// Stops at the first URL that passes, so an allowed request parses
    /// one URL.
    pub(crate) fn refuse_all<'a>(
        &self,
        targets: impl IntoIterator<Item = (Target, &'a CallbackUrl)>,
    ) -> Option<String> {
        let mut refusals = Vec::new();
        for (target, url) in targets {
            match self.approve(url.expose()) {
                Ok(_) => return None,
                Err(error) => {
                    tracing::warn!(
                        target = target.as_str(),
                        host = host_of(url.expose()).as_deref().unwrap_or("-"),
                        reason = %error,
                        "callback refused by the callback guard"
                    );
                    refusals.push(match error.remedy() {
                        Some(remedy) => format!("{} URL: {error}; {remedy}", target.as_str()),
                        None => format!("{} URL: {error}", target.as_str()),
                    });
                }
            }
        }
        (!refusals.is_empty()).then(|| refusals.join("; "))
    }

    /// `url` parsed, if it passes; otherwise the refusal, logged with the
    /// URL's host only and described for the caller.
    pub(crate) fn approve_target(
        &self,
        target: Target,
        url: &CallbackUrl,
    ) -> std::result::Result<reqwest::Url, String> {
        self.approve(url.expose()).map_err(|error| {
            tracing::warn!(
                target = target.as_str(),
                host = host_of(url.expose()).as_deref().unwrap_or("-"),
                reason = %error,
                "callback refused by the callback guard"
            );
            format!("{} URL: {error}", target.as_str())
        })
    }

    /// A DNS resolver that applies the connect-time rules. `strict` refuses
    /// private ranges too (for the public URL).
    pub fn resolver(&self, strict: bool) -> Arc<GuardedResolver> {
        Arc::new(GuardedResolver {
            guard: self.clone(),
            strict,
        })
    }
}

/// The host of a URL, for logs.
pub fn host_of(url: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
}

/// Resolves names with the system resolver, then drops the addresses a
/// callback may not go to (see the module docs).
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    guard: CallbackGuard,
    strict: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        let guard = self.guard.clone();
        let strict = self.strict;
        Box::pin(async move {
            let trusted = guard.name_listed_exactly(&host);
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let kept: Vec<SocketAddr> = found
                .filter(|a| trusted || guard.ip_listed(a.ip()) || !special_address(a.ip(), strict))
                .collect();
            if kept.is_empty() {
                let error: Box<dyn std::error::Error + Send + Sync> =
                    Box::new(std::io::Error::other(format!(
                        "{host} resolves only to addresses callbacks may not go to"
                    )));
                return Err(error);
            }
            let addrs: reqwest::dns::Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

/// An IPv4 address embedded in an IPv6 one (mapped, compatible or NAT64)
/// stands for that IPv4 address.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        // ::ffff:a.b.c.d (mapped)
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail),
        // ::a.b.c.d (compatible, deprecated), but not :: and ::1
        [0, 0, 0, 0, 0, 0, _, _] if !(s[6] == 0 && s[7] <= 1) => Some(tail),
        // 64:ff9b::a.b.c.d (NAT64)
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail),
        _ => None,
    }
}

/// Whether `ip` is an address callbacks must not reach unless listed.
///
/// Always: unspecified, loopback, link-local (`169.254.0.0/16`, which holds
/// other clouds' metadata service, and `fe80::/10`), Alibaba Cloud's metadata
/// address `100.100.100.200`, multicast, broadcast and reserved space.
/// With `private` also: `10/8`, `172.16/12`, `192.168/16`, CGNAT `100.64/10`
/// and IPv6 unique-local `fc00::/7`.
pub fn special_address(ip: IpAddr, private: bool) -> bool {
    match canonical_ip(ip) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            let always = o[0] == 0
                || v4.is_loopback()
                || v4.is_link_local()
                || v4 == Ipv4Addr::new(100, 100, 100, 200)
                || v4.is_multicast()
                || v4.is_broadcast()
                || o[0] >= 240
                || (o[0] == 192 && o[1] == 0 && o[2] == 0);
            let private_range = v4.is_private() || (o[0] == 100 && (64..128).contains(&o[1]));
            always || (private && private_range)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            let always = v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (first & 0xffc0) == 0xfe80;
            let unique_local = (first & 0xfe00) == 0xfc00;
            always || (private && unique_local)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(list: &str) -> CallbackGuard {
        CallbackGuard::new(parse_allow_list(list).expect("valid list"))
    }

    #[test]
    fn default_list_allows_alibaba_hosts_only() {
        let g = CallbackGuard::default();
        assert_eq!(
            g.check("https://ros.cn-hangzhou.aliyuncs.com/cb?sig=1"),
            Ok(())
        );
        assert_eq!(g.check("http://x.y.alibabacloud.com/"), Ok(()));
        assert!(
            g.check("https://aliyuncs.com/").is_err(),
            "the bare suffix is not a subdomain"
        );
        assert!(g.check("https://evilaliyuncs.com/").is_err());
        assert!(g.check("https://aliyuncs.com.evil.example/").is_err());
        assert!(g.check("https://ros.aliyuncs.com.:443/").is_ok());
    }

    #[test]
    fn ip_literals_need_explicit_listing_even_with_a_star() {
        let g = guard("*");
        for url in [
            "http://127.0.0.1:8080/",
            "http://100.100.100.200/latest/meta-data",
            "http://169.254.169.254/",
            "http://10.0.0.1/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[fe80::1]/",
            "http://[fd00::1]/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://8.8.8.8/",
        ] {
            assert!(
                matches!(g.check(url), Err(GuardError::AddressNotListed(_))),
                "{url}"
            );
        }
        assert_eq!(g.check("https://anything.example/"), Ok(()));
        let local = guard("127.0.0.1,::1");
        assert_eq!(local.check("http://127.0.0.1:9/x"), Ok(()));
        assert_eq!(local.check("http://[::1]:9/x"), Ok(()));
        assert_eq!(local.check("http://[::ffff:127.0.0.1]:9/x"), Ok(()));
        assert!(local.check("http://127.0.0.2/").is_err());
    }

    #[test]
    fn other_schemes_are_refused() {
        let g = guard("*");
        for url in [
            "file:///etc/passwd",
            "ftp://host.example/",
            "gopher://host.example/",
            "data:text/plain,x",
        ] {
            assert!(g.check(url).is_err(), "{url}");
        }
        assert_eq!(g.check("not a url"), Err(GuardError::Unparseable));
    }

    #[test]
    fn messages_name_the_host_only() {
        let g = CallbackGuard::default();
        let err = g
            .check("https://evil.example/cb?Signature=s3cret")
            .unwrap_err();
        assert!(err.to_string().contains("evil.example"));
        assert!(!err.to_string().contains("s3cret"));
    }

    fn target_urls(public: Option<&str>, intranet: Option<&str>) -> Vec<(Target, CallbackUrl)> {
        let public = public.map(|u| (Target::Public, CallbackUrl::new(u)));
        let intranet = intranet.map(|u| (Target::Intranet, CallbackUrl::new(u)));
        intranet.into_iter().chain(public).collect()
    }

    fn refusal_of(guard: &CallbackGuard, targets: &[(Target, CallbackUrl)]) -> Option<String> {
        guard.refuse_all(targets.iter().map(|(target, url)| (*target, url)))
    }

    #[test]
    fn a_request_is_refused_only_when_every_callback_is() {
        let guard = guard("*.aliyuncs.com");
        let both_bad = target_urls(
            Some("https://evil.example/cb?Signature=s3cret"),
            Some("http://100.100.100.200/latest/meta-data"),
        );
        let refusal = refusal_of(&guard, &both_bad).expect("both refused");
        assert!(
            refusal.contains("intranet URL") && refusal.contains("public URL"),
            "{refusal}"
        );
        assert!(refusal.contains("`evil.example`"), "{refusal}");
        assert!(refusal.contains("`100.100.100.200`"), "{refusal}");
        assert!(refusal.contains("--callback-allow"), "{refusal}");
        assert!(!refusal.contains("s3cret"), "{refusal}");

        let one_good = target_urls(
            Some("https://ros.cn-hangzhou.aliyuncs.com/cb"),
            Some("http://100.100.100.200/"),
        );
        assert_eq!(refusal_of(&guard, &one_good), None);
        assert_eq!(refusal_of(&guard, &[]), None, "no URL is not a refusal");

        // No setting allows a non-http scheme: the reason names no flag.
        let ftp = target_urls(Some("ftp://ros.aliyuncs.com/x"), None);
        let refusal = refusal_of(&guard, &ftp).expect("refused");
        assert!(refusal.contains("scheme `ftp`"), "{refusal}");
        assert!(!refusal.contains("--callback-allow"), "{refusal}");
    }

    #[test]
    fn special_ranges() {
        for ip in [
            "100.100.100.200",
            "169.254.1.1",
            "127.0.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "::ffff:169.254.169.254",
            "64:ff9b::7f00:1",
        ] {
            assert!(special_address(ip.parse().expect("ip"), false), "{ip}");
        }
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "fc00::1",
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert!(
                special_address(ip, true) && !special_address(ip, false),
                "{ip}"
            );
        }
        for ip in ["8.8.8.8", "47.96.0.1", "2001:4860::1"] {
            assert!(!special_address(ip.parse().expect("ip"), true), "{ip}");
        }
    }

    #[test]
    fn patterns_parse() {
        assert_eq!(
            "*.Example.COM.".parse(),
            Ok(HostPattern::Suffix(".example.com".into()))
        );
        assert_eq!(
            "[::1]".parse(),
            Ok(HostPattern::Ip("::1".parse().expect("ip")))
        );
        assert!("exa mple.com".parse::<HostPattern>().is_err());
        assert!("*.".parse::<HostPattern>().is_err());
        assert!(parse_allow_list("a.com, *.b.com,,").expect("valid").len() == 2);
    }
}

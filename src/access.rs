//! IP rules: which peers may publish, play, and reach the admin surface.
//! Lists of CIDRs (IPv4 and IPv6; a bare address is a /32 or /128). For
//! publish and play, deny wins and an empty allow list allows all; the admin
//! surface (`/api/*`, `/metrics`, `/dashboard`) admits loopback peers, the
//! `api.allow` list, and anyone with `api.token`.

use std::net::IpAddr;

use ipnet::IpNet;

/// A parsed list of networks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cidrs(Vec<IpNet>);

impl Cidrs {
    /// Parses `entries` (`"10.0.0.0/8"`, `"::1"`, ...); the error names the
    /// entry that is neither a network nor an address.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        entries
            .iter()
            .map(|e| {
                let e = e.trim();
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{e:?} is neither a CIDR nor an IP address"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Cidrs)
    }

    /// True when no network is listed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when `ip` is in one of the networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as a dual-stack socket
/// reports IPv4 peers) as the IPv4 address it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// One action's allow and deny lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    /// Empty: everyone not denied.
    pub allow: Cidrs,
    /// Wins over `allow`.
    pub deny: Cidrs,
}

impl Rule {
    /// Why `ip` is refused, naming the list (`access.deny_<action>`), or
    /// Ok.
    pub fn check(&self, ip: IpAddr, action: &str) -> Result<(), String> {
        let ip = canonical(ip);
        if self.deny.contains(ip) {
            return Err(format!("peer {ip} is denied by access.deny_{action}"));
        }
        if !self.allow.is_empty() && !self.allow.contains(ip) {
            return Err(format!("peer {ip} is not in access.allow_{action}"));
        }
        Ok(())
    }
}

/// Compares two strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(list: &[&str]) -> Cidrs {
        Cidrs::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn deny_wins_and_an_empty_allow_list_allows_all() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let open = Rule::default();
        assert_eq!(open.check(ip("203.0.113.9"), "play"), Ok(()));
        let r = Rule {
            allow: cidrs(&["127.0.0.0/8", "2001:db8::/32"]),
            deny: cidrs(&["127.0.0.3"]),
        };
        assert_eq!(r.check(ip("127.0.0.2"), "play"), Ok(()));
        assert_eq!(r.check(ip("2001:db8::1"), "play"), Ok(()));
        assert_eq!(
            r.check(ip("127.0.0.3"), "play"),
            Err("peer 127.0.0.3 is denied by access.deny_play".into())
        );
        assert_eq!(
            r.check(ip("::ffff:127.0.0.3"), "play"),
            Err("peer 127.0.0.3 is denied by access.deny_play".into()),
            "an IPv4-mapped peer is its IPv4 address"
        );
        assert_eq!(
            r.check(ip("192.0.2.1"), "publish"),
            Err("peer 192.0.2.1 is not in access.allow_publish".into())
        );
    }

    #[test]
    fn bad_entries_are_named() {
        let err = Cidrs::parse(&["10.0.0.0/8".into(), "10.0.0/33".into()]).unwrap_err();
        assert!(err.contains("\"10.0.0/33\""), "{err}");
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}

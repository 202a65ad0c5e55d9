//! Typed values of condition keys: parsing of dates, numbers, booleans and
//! CIDR blocks, shared by policy compilation (policy-side values) and
//! evaluation (request-side values). Nothing here allocates.

use std::net::IpAddr;

/// Parses a date: RFC 3339 (`2026-11-30T12:00:00Z`, offsets allowed) or
/// whole seconds since the Unix epoch, as IAM accepts both. Returns
/// nanoseconds since the epoch.
pub(crate) fn parse_date(s: &str) -> Option<i128> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<i64>()
            .ok()
            .map(|secs| i128::from(secs) * 1_000_000_000);
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp_nanos())
}

/// Parses a finite decimal number.
pub(crate) fn parse_number(s: &str) -> Option<f64> {
    let v: f64 = s.trim().parse().ok()?;
    v.is_finite().then_some(v)
}

/// Parses `true`/`false`, case-insensitively as IAM does.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Parses an IP address; IPv4-mapped IPv6 addresses become IPv4 so that
/// `::ffff:10.1.2.3` from a dual-stack listener matches `10.0.0.0/8`.
pub(crate) fn parse_ip(s: &str) -> Option<IpAddr> {
    let ip: IpAddr = s.trim().parse().ok()?;
    Some(ip.to_canonical())
}

/// An IPv4 or IPv6 CIDR block, precompiled to a network and mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cidr {
    V4 { net: u32, mask: u32 },
    V6 { net: u128, mask: u128 },
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `x::y/n`, or a bare address (a /32 or /128).
    /// Host bits set below the prefix are an error: `10.0.0.1/8` is almost
    /// always a typo for `10.0.0.1/32` or `10.0.0.0/8`.
    pub(crate) fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => {
                let len: u8 = l
                    .parse()
                    .map_err(|_| format!("`{s}`: prefix length `{l}` is not a number"))?;
                (a, Some(len))
            }
            None => (s, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}` is not an IPv4 or IPv6 address or CIDR block"))?;
        match ip {
            IpAddr::V4(v4) => {
                let len = len.unwrap_or(32);
                if len > 32 {
                    return Err(format!("`{s}`: an IPv4 prefix length is at most 32"));
                }
                let mask = if len == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(len))
                };
                let bits = u32::from(v4);
                if bits & !mask != 0 {
                    return Err(format!(
                        "`{s}` has host bits set below /{len}: write {}/{len} (the network) or {addr}/32 (the host)",
                        std::net::Ipv4Addr::from(bits & mask)
                    ));
                }
                Ok(Cidr::V4 { net: bits, mask })
            }
            IpAddr::V6(v6) => {
                let len = len.unwrap_or(128);
                if len > 128 {
                    return Err(format!("`{s}`: an IPv6 prefix length is at most 128"));
                }
                let mask = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(len))
                };
                let bits = u128::from(v6);
                if bits & !mask != 0 {
                    return Err(format!(
                        "`{s}` has host bits set below /{len}: write {}/{len} (the network) or {addr}/128 (the host)",
                        std::net::Ipv6Addr::from(bits & mask)
                    ));
                }
                Ok(Cidr::V6 { net: bits, mask })
            }
        }
    }

    /// Whether `ip` (already canonical, see [`parse_ip`]) lies in the block.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match (self, ip) {
            (Cidr::V4 { net, mask }, IpAddr::V4(a)) => u32::from(a) & mask == *net,
            (Cidr::V6 { net, mask }, IpAddr::V6(a)) => u128::from(a) & mask == *net,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse_date("0"), Some(0));
        assert_eq!(parse_date("1970-01-01T00:00:01Z"), Some(1_000_000_000));
        assert_eq!(
            parse_date("2026-11-30T13:00:00+01:00"),
            parse_date("2026-11-30T12:00:00Z")
        );
        assert_eq!(parse_date("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_date("yesterday"), None);
        assert_eq!(parse_date(""), None);
    }

    #[test]
    fn numbers_and_bools() {
        assert_eq!(parse_number("1.5"), Some(1.5));
        assert_eq!(parse_number("-3"), Some(-3.0));
        assert_eq!(parse_number("NaN"), None);
        assert_eq!(parse_number("inf"), None);
        assert_eq!(parse_bool("TRUE"), Some(true));
        assert_eq!(parse_bool("False"), Some(false));
        assert_eq!(parse_bool("yes"), None);
    }

    #[test]
    fn cidrs_v4_v6_and_mapped() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(parse_ip("10.200.1.1").unwrap()));
        assert!(c.contains(parse_ip("::ffff:10.1.2.3").unwrap()));
        assert!(!c.contains(parse_ip("11.0.0.1").unwrap()));
        assert!(!c.contains(parse_ip("::1").unwrap()));
        let c = Cidr::parse("2001:db8::/32").unwrap();
        assert!(c.contains(parse_ip("2001:db8::1").unwrap()));
        assert!(!c.contains(parse_ip("2001:db9::1").unwrap()));
        assert!(!c.contains(parse_ip("10.0.0.1").unwrap()));
        let any = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(any.contains(parse_ip("1.2.3.4").unwrap()));
        let host = Cidr::parse("192.0.2.7").unwrap();
        assert!(host.contains(parse_ip("192.0.2.7").unwrap()));
        assert!(!host.contains(parse_ip("192.0.2.8").unwrap()));
        assert!(
            Cidr::parse("::/0")
                .unwrap()
                .contains(parse_ip("::1").unwrap())
        );
    }

    #[test]
    fn bad_cidrs_say_why() {
        assert!(Cidr::parse("10.0.0.1/8").unwrap_err().contains("host bits"));
        assert!(
            Cidr::parse("10.0.0.0/33")
                .unwrap_err()
                .contains("at most 32")
        );
        assert!(Cidr::parse("::/129").unwrap_err().contains("at most 128"));
        assert!(Cidr::parse("10.0.0/8").unwrap_err().contains("not an IPv4"));
        assert!(
            Cidr::parse("10.0.0.0/x")
                .unwrap_err()
                .contains("not a number")
        );
    }
}

//! `IpRange`: a contiguous range of client addresses, written as CIDR (`10.0.0.0/24`),
//! `start-end` (`10.0.0.1-10.0.0.9`, spaces around `-` allowed) or a single address.
//! IPv4 and IPv6 both work; a range never mixes the two.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// Why a range text was refused. Every variant carries the offending text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// Not an address, a CIDR block or `start-end`.
    #[error(
        "`{0}` is not an IP address, a CIDR block (10.0.0.0/24) or a range (10.0.0.1-10.0.0.9)"
    )]
    Syntax(String),
    /// `start-end` whose end precedes its start.
    #[error("`{0}`: the end address precedes the start address")]
    Reversed(String),
    /// `start-end` with one IPv4 and one IPv6 address.
    #[error("`{0}`: start and end are of different address families (IPv4 and IPv6)")]
    MixedFamilies(String),
    /// A CIDR block with bits set after the prefix, e.g. `10.0.0.5/24`.
    ///
    /// Refused rather than silently truncated: `10.0.0.5/24` is as likely a typo for the
    /// single host `10.0.0.5` as for the block `10.0.0.0/24`, and guessing wrong sends a whole
    /// office to the wrong update source.
    #[error("`{given}`: host bits are set after the /{prefix} prefix; did you mean `{network}`?")]
    HostBits {
        /// The text as given.
        given: String,
        /// Prefix length.
        prefix: u8,
        /// The block the admin most likely meant.
        network: String,
    },
}

impl RangeError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            RangeError::Syntax(_) => "range.syntax",
            RangeError::Reversed(_) => "range.reversed",
            RangeError::MixedFamilies(_) => "range.mixed_families",
            RangeError::HostBits { .. } => "range.host_bits",
        }
    }
}

/// How the range was written; kept so that export gives back what the admin typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Form {
    Single(IpAddr),
    Cidr(IpNet),
    Span(IpAddr, IpAddr),
}

/// A contiguous, non-empty range of IP addresses of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpRange(Form);

impl IpRange {
    /// Parses any of the three accepted forms. Surrounding spaces are ignored.
    ///
    /// # Errors
    /// A [`RangeError`] naming the text when it is not a valid range.
    pub fn parse(text: &str) -> Result<Self, RangeError> {
        let t = text.trim();
        if let Some((a, b)) = t.split_once('-') {
            let start = parse_addr(a.trim(), text)?;
            let end = parse_addr(b.trim(), text)?;
            if start.is_ipv4() != end.is_ipv4() {
                return Err(RangeError::MixedFamilies(text.to_owned()));
            }
            if end < start {
                return Err(RangeError::Reversed(text.to_owned()));
            }
            return Ok(IpRange(Form::Span(start, end)));
        }
        if t.contains('/') {
            let net: IpNet = t.parse().map_err(|_| RangeError::Syntax(text.to_owned()))?;
            if net.trunc() != net {
                return Err(RangeError::HostBits {
                    given: text.to_owned(),
                    prefix: net.prefix_len(),
                    network: net.trunc().to_string(),
                });
            }
            return Ok(IpRange(Form::Cidr(net)));
        }
        Ok(IpRange(Form::Single(parse_addr(t, text)?)))
    }

    /// The first address in the range.
    pub fn start(&self) -> IpAddr {
        match self.0 {
            Form::Single(a) | Form::Span(a, _) => a,
            Form::Cidr(n) => n.network(),
        }
    }

    /// The last address in the range.
    pub fn end(&self) -> IpAddr {
        match self.0 {
            Form::Single(a) | Form::Span(_, a) => a,
            Form::Cidr(n) => n.broadcast(),
        }
    }

    /// Whether `ip` lies in the range. An address of the other family never does; an
    /// IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) is treated as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.start().is_ipv4() && self.start() <= ip && ip <= self.end()
    }
}

fn parse_addr(part: &str, whole: &str) -> Result<IpAddr, RangeError> {
    part.parse::<IpAddr>()
        .map_err(|_| RangeError::Syntax(whole.to_owned()))
}

impl FromStr for IpRange {
    type Err = RangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IpRange::parse(s)
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Form::Single(a) => write!(f, "{a}"),
            Form::Cidr(n) => write!(f, "{n}"),
            Form::Span(a, b) => write!(f, "{a}-{b}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    // Each accepted form parses and contains exactly the addresses it should.
    #[test]
    fn forms_and_contains() {
        let cases = [
            ("10.0.0.0/24", "10.0.0.0", "10.0.0.255", "10.0.1.0"),
            ("10.0.0.1-10.0.0.9", "10.0.0.1", "10.0.0.9", "10.0.0.10"),
            ("10.0.0.1 - 10.0.0.9", "10.0.0.1", "10.0.0.9", "10.0.0.0"),
            ("10.0.0.7", "10.0.0.7", "10.0.0.7", "10.0.0.8"),
            (
                "fd00::/64",
                "fd00::",
                "fd00::ffff:ffff:ffff:ffff",
                "fd00:0:0:1::",
            ),
            ("fd00::1-fd00::9", "fd00::1", "fd00::9", "fd00::a"),
            ("0.0.0.0/0", "0.0.0.0", "255.255.255.255", "::1"),
        ];
        for (text, first, last, outside) in cases {
            let r = IpRange::parse(text).unwrap();
            assert!(r.contains(ip(first)), "{text} should contain {first}");
            assert!(r.contains(ip(last)), "{text} should contain {last}");
            assert!(
                !r.contains(ip(outside)),
                "{text} should not contain {outside}"
            );
            assert_eq!(r.start(), ip(first));
            assert_eq!(r.end(), ip(last));
        }
    }

    // An IPv4-mapped IPv6 client address matches IPv4 ranges.
    #[test]
    fn mapped_ipv4_matches() {
        let r = IpRange::parse("10.0.0.0/8").unwrap();
        assert!(r.contains(ip("::ffff:10.1.2.3")));
    }

    // Each kind of bad range is refused with its own code and the text in the message.
    #[test]
    fn refusals_name_the_value() {
        let cases = [
            ("10.0.0.9-10.0.0.1", "range.reversed"),
            ("10.0.0.1-fd00::1", "range.mixed_families"),
            ("10.0.0.5/24", "range.host_bits"),
            ("10.0.0.0/33", "range.syntax"),
            ("10.0.0", "range.syntax"),
            ("", "range.syntax"),
            ("10.0.0.1-", "range.syntax"),
            ("office-1", "range.syntax"),
        ];
        for (text, code) in cases {
            let err = IpRange::parse(text).unwrap_err();
            assert_eq!(err.code(), code, "{text}");
            assert!(err.to_string().contains(&format!("`{text}`")), "{err}");
        }
        let err = IpRange::parse("10.0.0.5/24").unwrap_err();
        assert!(err.to_string().contains("10.0.0.0/24"), "{err}");
    }

    // Display gives back the form the admin wrote, so export/apply round-trips.
    #[test]
    fn display_keeps_the_form() {
        for text in ["10.0.0.0/24", "10.0.0.1-10.0.0.9", "10.0.0.7", "fd00::/64"] {
            assert_eq!(IpRange::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(
            IpRange::parse(" 10.0.0.1 - 10.0.0.9 ").unwrap().to_string(),
            "10.0.0.1-10.0.0.9"
        );
    }
}

//! The PROXY protocol, versions 1 and 2 (HAProxy's
//! `proxy-protocol.txt`), as a load balancer puts it in front of a
//! connection: who the client is. Pure: bytes in, a verdict out; no I/O,
//! no allocation, no panic on any input (fuzzed: `fuzz/`, and the
//! property below run by `cargo test`).
//!
//! The caller peeks at the start of the connection (at most [`MAX`]
//! bytes) and asks [`parse`]: `Ok(None)` means a prefix of a header that
//! may still become valid (read again later); `Ok(Some(header))` gives
//! its length, to be consumed, and what it says; `Err` says why it never
//! will be one. A verdict is given as soon as the bytes seen decide it,
//! so a peer that sends garbage is closed at once, not at the deadline.
//!
//! Bounds: a v1 header is at most 107 bytes with its CRLF (the
//! specification's own figure); a v2 header is 16 bytes and the length
//! they announce, accepted up to [`V2_MAX_LEN`] = 536. 536 bytes is the
//! smallest TCP segment every IPv4 path carries (the default MSS, RFC
//! 879), and the specification asks senders to send the header at once,
//! so a header that fits arrives whole in the first segment; it holds the
//! largest address block (216 bytes, AF_UNIX) and 320 bytes of TLVs,
//! room for an authority (a host name is at most 255 bytes) with a CRC32C
//! and a short unique id. HAProxy's `send-proxy-v2` without SSL TLVs
//! sends 12 (TCP4) or 36 (TCP6) address bytes and, with
//! `proxy-v2-options authority`, the SNI.
//!
//! What is accepted, and what the caller does with it:
//! - v1 `TCP4`/`TCP6`, v2 `PROXY` over `TCP4`/`TCP6` (family 0x11, 0x21):
//!   [`Origin::Client`], the client's and the address it connected to.
//! - v1 `UNKNOWN`, v2 `LOCAL` (health checks; any family, addresses
//!   ignored, as the specification requires), and v2 `PROXY` with family
//!   `UNSPEC` (0x00: the balancer does not know the client's address):
//!   [`Origin::Balancer`], served as coming from the balancer itself.
//! - v2 over UDP (0x12, 0x22), UNIX-domain (0x31, 0x32) or with a
//!   transport of 0: refused ([`Malformed::Family`]): a stream service
//!   has no use for a datagram client, and a UNIX-domain "address" is not
//!   something `only_from` or `per_source` could judge; serving it as the
//!   balancer would silently hand the balancer's rights to an unknown
//!   client.
//! - TLVs: `PP2_TYPE_AUTHORITY` (0x02) is returned (the first one; it
//!   must read as a host name: printable ASCII, 1 to 255 bytes); every
//!   other type is skipped, its length checked against the header's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::access::Cidr;

/// A service's `proxy_protocol`, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trust {
    /// `proxy_from`: the balancers whose headers are believed.
    pub from: Vec<Cidr>,
    /// `proxy_timeout`: how long the header may take after the accept.
    pub timeout: Duration,
}

impl Trust {
    /// `proxy_timeout`'s default.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

    /// Whether `balancer` may send a header.
    pub fn trusts(&self, balancer: IpAddr) -> bool {
        self.from.iter().any(|c| c.contains(balancer))
    }
}

/// The v2 signature, the first 12 bytes of a v2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The start of every v1 header.
const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest v1 header, CRLF included.
pub const V1_MAX: usize = 107;
/// The longest v2 header oxinetd accepts after its fixed 16 bytes.
pub const V2_MAX_LEN: usize = 536;
/// The most bytes a header can take: what the caller peeks.
pub const MAX: usize = 16 + V2_MAX_LEN;
/// `PP2_TYPE_AUTHORITY`.
const TLV_AUTHORITY: u8 = 0x02;

/// A complete header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// Its length: the bytes to consume before the client's own.
    pub len: usize,
    pub version: u8,
    pub origin: Origin,
    /// The v2 authority TLV (the host name the client asked for, its SNI).
    pub authority: Option<&'a [u8]>,
}

/// Who the connection is from, as the header tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A proxied client: its address, and the one it connected to.
    Client {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// The balancer itself (v2 `LOCAL`, v1 `UNKNOWN`, v2 `UNSPEC`).
    Balancer,
}

/// Why bytes are not a header: the `what=` of the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Neither a v1 nor a v2 signature.
    Signature,
    /// v2 with a version other than 2.
    Version,
    /// v2 with a command other than LOCAL or PROXY.
    Command,
    /// A protocol or address family not served (see the module doc).
    Family,
    /// v2's length: over [`V2_MAX_LEN`], or too short for its addresses.
    Length,
    /// v1 past 107 bytes without CRLF, or a line feed without its CR.
    Line,
    /// v1: a field missing, extra, or not separated by one space.
    Fields,
    /// v1: an address that is not one of its family.
    Address,
    /// v1: a port that is not a number from 0 to 65535.
    Port,
    /// v2: a TLV running past the header's length.
    Tlv,
    /// v2: an authority TLV that is not a host name.
    Authority,
}

impl Malformed {
    pub fn as_str(self) -> &'static str {
        match self {
            Malformed::Signature => "signature",
            Malformed::Version => "version",
            Malformed::Command => "command",
            Malformed::Family => "family",
            Malformed::Length => "length",
            Malformed::Line => "line",
            Malformed::Fields => "fields",
            Malformed::Address => "address",
            Malformed::Port => "port",
            Malformed::Tlv => "tlv",
            Malformed::Authority => "authority",
        }
    }
}

/// The header at the start of `buf`: `Ok(None)` while `buf` is a prefix
/// of one that may still be valid.
pub fn parse(buf: &[u8]) -> Result<Option<Header<'_>>, Malformed> {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf.get(..n) == V2_SIGNATURE.get(..n) && !buf.is_empty() {
        // "\r\n\r\n\0..." is no prefix of "PROXY ": v2 or nothing.
        return v2(buf);
    }
    let n = buf.len().min(V1_PREFIX.len());
    if buf.get(..n) == V1_PREFIX.get(..n) {
        return v1(buf);
    }
    Err(Malformed::Signature)
}

/// A v1 header: `PROXY TCP4 SRC DST SPORT DPORT\r\n`, or `PROXY UNKNOWN`
/// and anything up to the CRLF.
fn v1(buf: &[u8]) -> Result<Option<Header<'_>>, Malformed> {
    let window = buf.get(..buf.len().min(V1_MAX)).unwrap_or(buf);
    let lf = window.iter().position(|&b| b == b'\n');
    // Decided first, from what is there: the protocol word.
    let line = buf.get(..lf.unwrap_or(buf.len())).unwrap_or(buf);
    proto_prefix(line.get(V1_PREFIX.len()..).unwrap_or_default())?;
    let Some(lf) = lf else {
        return match buf.len() >= V1_MAX {
            true => Err(Malformed::Line),
            false => Ok(None),
        };
    };
    let line = match lf.checked_sub(1).and_then(|cr| window.get(..cr)) {
        Some(line) if window.get(lf - 1) == Some(&b'\r') => line,
        _ => return Err(Malformed::Line),
    };
    let len = lf + 1;
    let rest = line.get(V1_PREFIX.len()..).unwrap_or_default();
    if rest.starts_with(b"UNKNOWN") {
        // The specification: "the receiver must ignore anything presented
        // before the CRLF is found" (after UNKNOWN).
        return match rest.get(7) {
            None | Some(b' ') => Ok(Some(local(len, 1))),
            Some(_) => Err(Malformed::Family),
        };
    }
    let mut fields = rest.split(|&b| b == b' ');
    let v4 = match fields.next() {
        Some(b"TCP4") => true,
        Some(b"TCP6") => false,
        _ => return Err(Malformed::Family),
    };
    let mut next = || match fields.next() {
        Some(f) if !f.is_empty() => Ok(f),
        _ => Err(Malformed::Fields),
    };
    let (src, dst, sport, dport) = (next()?, next()?, next()?, next()?);
    if fields.next().is_some() {
        return Err(Malformed::Fields);
    }
    let (src, dst) = (address(src, v4)?, address(dst, v4)?);
    let (sport, dport) = (port(sport)?, port(dport)?);
    Ok(Some(Header {
        len,
        version: 1,
        origin: Origin::Client {
            source: SocketAddr::new(src, sport),
            destination: SocketAddr::new(dst, dport),
        },
        authority: None,
    }))
}

/// Whether `rest`, what follows `PROXY ` so far, can still start a known
/// protocol word.
fn proto_prefix(rest: &[u8]) -> Result<(), Malformed> {
    let word = rest
        .split(|&b| b == b' ' || b == b'\r')
        .next()
        .unwrap_or_default();
    let whole = rest.len() > word.len();
    let known = [&b"TCP4"[..], b"TCP6", b"UNKNOWN"].iter().any(|w| {
        if whole {
            *w == word
        } else {
            w.starts_with(word)
        }
    });
    match known {
        true => Ok(()),
        false => Err(Malformed::Family),
    }
}

fn address(field: &[u8], v4: bool) -> Result<IpAddr, Malformed> {
    let s = std::str::from_utf8(field).map_err(|_| Malformed::Address)?;
    let ip = match v4 {
        true => s.parse::<Ipv4Addr>().map(IpAddr::V4),
        false => s.parse::<Ipv6Addr>().map(IpAddr::V6),
    };
    ip.map_err(|_| Malformed::Address)
}

/// A decimal port: 1 to 5 digits, no sign, no leading zero, ≤ 65535.
fn port(field: &[u8]) -> Result<u16, Malformed> {
    let digits = field.iter().all(u8::is_ascii_digit);
    if !digits || field.is_empty() || field.len() > 5 || (field.len() > 1 && field[0] == b'0') {
        return Err(Malformed::Port);
    }
    let n = field
        .iter()
        .fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
    u16::try_from(n).map_err(|_| Malformed::Port)
}

fn local(len: usize, version: u8) -> Header<'static> {
    Header {
        len,
        version,
        origin: Origin::Balancer,
        authority: None,
    }
}

/// A v2 header: signature, version and command, family and protocol,
/// length, addresses, TLVs.
fn v2(buf: &[u8]) -> Result<Option<Header<'_>>, Malformed> {
    let Some(&[ver_cmd, family, hi, lo]) = buf.get(12..16) else {
        // The signature so far matches; the version byte decides next.
        return match buf.get(12) {
            Some(v) if v >> 4 != 2 => Err(Malformed::Version),
            Some(v) if v & 0x0f > 1 => Err(Malformed::Command),
            _ => Ok(None),
        };
    };
    if ver_cmd >> 4 != 2 {
        return Err(Malformed::Version);
    }
    let proxy = match ver_cmd & 0x0f {
        0 => false,
        1 => true,
        _ => return Err(Malformed::Command),
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if len > V2_MAX_LEN {
        return Err(Malformed::Length);
    }
    // The family is judged before the rest arrives: no waiting for bytes
    // that could not change the verdict.
    let addr_len = match (proxy, family) {
        (false, _) | (true, 0x00) => 0,
        (true, 0x11) => 12,
        (true, 0x21) => 36,
        _ => return Err(Malformed::Family),
    };
    if len < addr_len {
        return Err(Malformed::Length);
    }
    let Some(body) = buf.get(16..16 + len) else {
        return Ok(None);
    };
    if !proxy || addr_len == 0 {
        // LOCAL: the specification has the receiver ignore the addresses
        // (and so the TLVs with them).
        return Ok(Some(local(16 + len, 2)));
    }
    let (addrs, tlvs) = body.split_at(addr_len);
    let Some((ips, &[a, b, c, d])) = addrs.split_last_chunk::<4>() else {
        return Err(Malformed::Length);
    };
    let (src, dst) = ips.split_at(ips.len() / 2);
    let (src, dst) = match family {
        0x11 => (ip4(src), ip4(dst)),
        _ => (ip6(src), ip6(dst)),
    };
    let origin = Origin::Client {
        source: SocketAddr::new(src, u16::from_be_bytes([a, b])),
        destination: SocketAddr::new(dst, u16::from_be_bytes([c, d])),
    };
    Ok(Some(Header {
        len: 16 + len,
        version: 2,
        origin,
        authority: authority(tlvs)?,
    }))
}

fn ip4(b: &[u8]) -> IpAddr {
    let mut a = [0u8; 4];
    for (d, s) in a.iter_mut().zip(b) {
        *d = *s;
    }
    IpAddr::V4(Ipv4Addr::from(a))
}

fn ip6(b: &[u8]) -> IpAddr {
    let mut a = [0u8; 16];
    for (d, s) in a.iter_mut().zip(b) {
        *d = *s;
    }
    IpAddr::V6(Ipv6Addr::from(a))
}

/// Walk the TLVs: each one's length within the header; the first
/// authority returned.
fn authority(mut tlvs: &[u8]) -> Result<Option<&[u8]>, Malformed> {
    let mut found = None;
    while !tlvs.is_empty() {
        let Some(&[kind, hi, lo]) = tlvs.get(..3) else {
            return Err(Malformed::Tlv);
        };
        let n = usize::from(u16::from_be_bytes([hi, lo]));
        let Some(value) = tlvs.get(3..3 + n) else {
            return Err(Malformed::Tlv);
        };
        if kind == TLV_AUTHORITY && found.is_none() {
            let host = !value.is_empty()
                && value.len() <= 255
                && value.iter().all(|b| b.is_ascii_graphic());
            if !host {
                return Err(Malformed::Authority);
            }
            found = Some(value);
        }
        tlvs = tlvs.get(3 + n..).unwrap_or_default();
    }
    Ok(found)
}

/// One fuzzer input (`fuzz/`): every prefix of it parsed, and the
/// properties of [`check`] held.
#[cfg(any(test, fuzzing))]
pub fn exercise(input: &[u8]) {
    let input = input.get(..input.len().min(MAX + 8)).unwrap_or(input);
    let whole = parse(input);
    check(input, whole);
    for end in 0..input.len() {
        let part = parse(input.get(..end).unwrap_or_default());
        check(input, part);
        match (part, whole) {
            // A prefix never contradicts what more bytes decide.
            (Err(e), w) => assert_eq!(w, Err(e), "prefix {end} refused, whole not"),
            (Ok(Some(h)), w) => assert_eq!(w, Ok(Some(h)), "prefix {end} complete"),
            (Ok(None), _) => {}
        }
    }
}

#[cfg(any(test, fuzzing))]
fn check(input: &[u8], r: Result<Option<Header<'_>>, Malformed>) {
    if let Ok(Some(h)) = r {
        assert!(h.len <= input.len() && h.len <= MAX);
        if h.version == 1 {
            assert!(h.len <= V1_MAX);
        }
        if let Some(a) = h.authority {
            assert!(!a.is_empty() && a.len() <= 255);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2_header(ver_cmd: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(ver_cmd);
        h.push(family);
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    fn tcp4_body() -> Vec<u8> {
        let mut b = vec![192, 0, 2, 1, 127, 0, 0, 1];
        b.extend_from_slice(&1234u16.to_be_bytes());
        b.extend_from_slice(&80u16.to_be_bytes());
        b
    }

    fn client(s: &str, d: &str) -> Origin {
        Origin::Client {
            source: s.parse().unwrap(),
            destination: d.parse().unwrap(),
        }
    }

    #[test]
    fn v1_tcp4_tcp6_unknown() {
        let h = parse(b"PROXY TCP4 192.0.2.1 127.0.0.1 1234 80\r\nGET /").unwrap();
        let h = h.unwrap();
        assert_eq!(h.len, 40);
        assert_eq!(h.origin, client("192.0.2.1:1234", "127.0.0.1:80"));
        let h = parse(b"PROXY TCP6 2001:db8::1 ::1 65535 0\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.origin, client("[2001:db8::1]:65535", "[::1]:0"));
        let h = parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap();
        assert_eq!((h.len, h.origin), (15, Origin::Balancer));
        let h = parse(b"PROXY UNKNOWN ffff::1 ::1 1 2\r\nx")
            .unwrap()
            .unwrap();
        assert_eq!(h.origin, Origin::Balancer);
    }

    #[test]
    fn v1_longest_is_accepted_and_one_more_is_not() {
        // The specification's worst case.
        let max = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
                    ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(max.len(), V1_MAX);
        assert_eq!(parse(max).unwrap().unwrap().len, V1_MAX);
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(V1_MAX, b'x');
        assert_eq!(parse(&long), Err(Malformed::Line));
        long.truncate(V1_MAX - 1);
        assert_eq!(parse(&long), Ok(None), "could still end in CRLF");
    }

    #[test]
    fn v1_malformed() {
        let cases: &[(&[u8], Malformed)] = &[
            (b"PROXY TCP4 192.0.2.1 127.0.0.1 1234 80\n", Malformed::Line),
            (
                b"PROXY TCP4 192.0.2.1 127.0.0.1 1234 80\rX\r\n",
                Malformed::Port,
            ),
            (b"PROXY TCP5 192.0.2.1 127.0.0.1 1 2\r\n", Malformed::Family),
            (b"PROXY TCP4 ::1 127.0.0.1 1 2\r\n", Malformed::Address),
            (b"PROXY TCP6 192.0.2.1 ::1 1 2\r\n", Malformed::Address),
            (
                b"PROXY TCP4 192.0.2.256 127.0.0.1 1 2\r\n",
                Malformed::Address,
            ),
            (
                b"PROXY TCP4 192.0.2.1 127.0.0.1 65536 2\r\n",
                Malformed::Port,
            ),
            (b"PROXY TCP4 192.0.2.1 127.0.0.1 -1 2\r\n", Malformed::Port),
            (b"PROXY TCP4 192.0.2.1 127.0.0.1 +1 2\r\n", Malformed::Port),
            (b"PROXY TCP4 192.0.2.1 127.0.0.1 01 2\r\n", Malformed::Port),
            (b"PROXY TCP4 192.0.2.1 127.0.0.1 1 x\r\n", Malformed::Port),
            (b"PROXY TCP4 192.0.2.1 127.0.0.1 1\r\n", Malformed::Fields),
            (
                b"PROXY TCP4 192.0.2.1 127.0.0.1 1 2 3\r\n",
                Malformed::Fields,
            ),
            (
                b"PROXY TCP4 192.0.2.1  127.0.0.1 1 2\r\n",
                Malformed::Fields,
            ),
            (
                b"PROXY TCP4 192.0.2.1 127.0.0.1 1 2 \r\n",
                Malformed::Fields,
            ),
            (b"PROXY TCP4\r\n", Malformed::Fields),
            (b"PROXY \r\n", Malformed::Family),
            (b"PROXY UNKNOWNX\r\n", Malformed::Family),
            (b"PROXY tcp4 192.0.2.1 127.0.0.1 1 2\r\n", Malformed::Family),
            (
                b"proxy TCP4 192.0.2.1 127.0.0.1 1 2\r\n",
                Malformed::Signature,
            ),
            (b"GET / HTTP/1.0\r\n", Malformed::Signature),
            (b"\r\n\r\nX", Malformed::Signature),
            (b"PROXY TCP9", Malformed::Family),
        ];
        for (input, why) in cases {
            assert_eq!(
                parse(input),
                Err(*why),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn truncated_is_incomplete() {
        let v1 = b"PROXY TCP4 192.0.2.1 127.0.0.1 1234 80\r\n";
        let v2 = v2_header(0x21, 0x11, &tcp4_body());
        for full in [&v1[..], &v2[..]] {
            for end in 0..full.len() {
                assert_eq!(parse(&full[..end]), Ok(None), "{end}");
            }
            assert!(parse(full).unwrap().is_some());
        }
    }

    #[test]
    fn v2_tcp4_tcp6_with_payload_after() {
        let mut h = v2_header(0x21, 0x11, &tcp4_body());
        h.extend_from_slice(b"SSH-2.0-x\r\n");
        let p = parse(&h).unwrap().unwrap();
        assert_eq!(p.len, 28);
        assert_eq!(p.origin, client("192.0.2.1:1234", "127.0.0.1:80"));
        let mut body = vec![0x20, 0x01, 0x0d, 0xb8];
        body.resize(16, 0);
        body[15] = 7;
        body.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        body.extend_from_slice(&[0, 1, 0, 2]);
        let h = v2_header(0x21, 0x21, &body);
        let p = parse(&h).unwrap().unwrap();
        assert_eq!(p.origin, client("[2001:db8::7]:1", "[::1]:2"));
    }

    #[test]
    fn v2_local_and_unspec_are_the_balancer() {
        for (cmd, family) in [(0x20, 0x00), (0x20, 0x11), (0x20, 0x31), (0x21, 0x00)] {
            let h = v2_header(cmd, family, &[]);
            let p = parse(&h).unwrap().unwrap();
            assert_eq!((p.len, p.origin), (16, Origin::Balancer));
        }
        // LOCAL with addresses anyway: skipped with the length.
        let h = v2_header(0x20, 0x11, &tcp4_body());
        let p = parse(&h).unwrap().unwrap();
        assert_eq!((p.len, p.origin), (28, Origin::Balancer));
    }

    #[test]
    fn v2_authority_and_other_tlvs() {
        let mut body = tcp4_body();
        body.extend_from_slice(&[0x04, 0, 4, 0xde, 0xad, 0xbe, 0xef]); // CRC32C
        body.extend_from_slice(&[0x02, 0, 11]);
        body.extend_from_slice(b"example.org");
        body.extend_from_slice(&[0xe0, 0, 0]); // custom, empty
        let h = v2_header(0x21, 0x11, &body);
        let p = parse(&h).unwrap().unwrap();
        assert_eq!(p.authority, Some(&b"example.org"[..]));
        assert_eq!(p.len, 16 + body.len());
    }

    #[test]
    fn v2_malformed() {
        let mut bad_tlv = tcp4_body();
        bad_tlv.extend_from_slice(&[0x02, 0, 20, b'a']);
        let mut short_tlv = tcp4_body();
        short_tlv.extend_from_slice(&[0x02, 0]);
        let mut nul_authority = tcp4_body();
        nul_authority.extend_from_slice(&[0x02, 0, 2, b'a', 0]);
        let mut empty_authority = tcp4_body();
        empty_authority.extend_from_slice(&[0x02, 0, 0]);
        let cases: Vec<(Vec<u8>, Malformed)> = vec![
            (v2_header(0x11, 0x11, &tcp4_body()), Malformed::Version),
            (v2_header(0x31, 0x11, &tcp4_body()), Malformed::Version),
            (v2_header(0x22, 0x11, &tcp4_body()), Malformed::Command),
            (v2_header(0x2f, 0x11, &tcp4_body()), Malformed::Command),
            (v2_header(0x21, 0x12, &tcp4_body()), Malformed::Family),
            (v2_header(0x21, 0x22, &[0; 36]), Malformed::Family),
            (v2_header(0x21, 0x31, &[0; 216]), Malformed::Family),
            (v2_header(0x21, 0x10, &tcp4_body()), Malformed::Family),
            (v2_header(0x21, 0x41, &tcp4_body()), Malformed::Family),
            (v2_header(0x21, 0x11, &tcp4_body()[..11]), Malformed::Length),
            (v2_header(0x21, 0x21, &[0; 35]), Malformed::Length),
            (
                v2_header(0x21, 0x11, &[0; V2_MAX_LEN + 1]),
                Malformed::Length,
            ),
            (v2_header(0x21, 0x11, &bad_tlv), Malformed::Tlv),
            (v2_header(0x21, 0x11, &short_tlv), Malformed::Tlv),
            (v2_header(0x21, 0x11, &nul_authority), Malformed::Authority),
            (
                v2_header(0x21, 0x11, &empty_authority),
                Malformed::Authority,
            ),
        ];
        for (input, why) in cases {
            assert_eq!(parse(&input), Err(why), "{input:02x?}");
            exercise(&input);
        }
    }

    #[test]
    fn v2_decided_before_the_rest_arrives() {
        // A length over the cap, or a bad family, is refused from the
        // fixed 16 bytes, not after waiting for the body.
        let h = v2_header(0x21, 0x11, &[0; 600]);
        assert_eq!(parse(&h[..16]), Err(Malformed::Length));
        let h = v2_header(0x21, 0x31, &[0; 216]);
        assert_eq!(parse(&h[..16]), Err(Malformed::Family));
        assert_eq!(parse(&h[..13]), Ok(None));
        let h = v2_header(0x11, 0x11, &[]);
        assert_eq!(parse(&h[..13]), Err(Malformed::Version));
        // Longest accepted: the cap exactly.
        let mut body = tcp4_body();
        body.extend_from_slice(&[0xe0, 0x02, 0x09]);
        body.resize(V2_MAX_LEN, 0);
        assert_eq!(
            parse(&v2_header(0x21, 0x11, &body)).unwrap().unwrap().len,
            MAX
        );
    }

    /// The fuzz property over mutations of valid headers, a few thousand
    /// rounds per `cargo test` (`fuzz/` runs it coverage-guided).
    #[test]
    fn mutations_never_panic_nor_contradict() {
        let mut seeds: Vec<Vec<u8>> = vec![
            b"PROXY TCP4 192.0.2.1 127.0.0.1 1234 80\r\n".to_vec(),
            b"PROXY TCP6 2001:db8::1 ::1 65535 0\r\nxyz".to_vec(),
            b"PROXY UNKNOWN\r\n".to_vec(),
            v2_header(0x20, 0x00, &[]),
        ];
        let mut body = tcp4_body();
        body.extend_from_slice(&[0x02, 0, 3, b'a', b'.', b'b', 0x04, 0, 0]);
        seeds.push(v2_header(0x21, 0x11, &body));
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rnd = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n.max(1) as u64) as usize
        };
        for _ in 0..4000 {
            let mut m = seeds[rnd(seeds.len())].clone();
            for _ in 0..=rnd(3) {
                let at = rnd(m.len() + 1);
                match rnd(4) {
                    0 if at < m.len() => m[at] = rnd(256) as u8,
                    1 => m.insert(at, rnd(256) as u8),
                    2 if at < m.len() => {
                        m.remove(at);
                    }
                    _ => m.truncate(at),
                }
            }
            exercise(&m);
        }
    }
}

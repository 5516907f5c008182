//! The PROXY protocol header oxinetd sends upstream
//! (`forward_proxy_protocol`), so the target sees the real client: v1 (a
//! line of text) or v2 (binary), per haproxy's proxy-protocol.txt. Only the
//! encoder lives here; reading a header is `proxy_protocol`'s.

use std::net::{IpAddr, SocketAddr};

use super::ProxyVersion;

/// The v2 signature.
const V2_SIG: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The most bytes a header takes: v1 is at most 107, v2 with two IPv6
/// addresses 16 + 36.
pub const MAX: usize = 108;

/// Write the header for a connection from `peer` to `local` into `out`.
/// `None` for either (a UNIX-domain client) sends the "unknown" form:
/// `PROXY UNKNOWN` (v1), or a `PROXY` command with no address (v2); the
/// target then uses the connection's own addresses.
pub fn encode(version: ProxyVersion, ends: Option<(SocketAddr, SocketAddr)>, out: &mut Vec<u8>) {
    let ends = ends.map(|(peer, local)| same_family(peer, local));
    match version {
        ProxyVersion::V1 => v1(ends, out),
        ProxyVersion::V2 => v2(ends, out),
    }
}

/// Both addresses in one family: a v4-mapped address is written as
/// IPv4, and an IPv4 address beside an IPv6 one as v4-mapped.
fn same_family(peer: SocketAddr, local: SocketAddr) -> (SocketAddr, SocketAddr) {
    let (p, l) = (crate::spawn::unmap(peer), crate::spawn::unmap(local));
    match (p.ip(), l.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => (p, l),
        _ => (mapped(p), mapped(l)),
    }
}

fn mapped(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    }
}

fn v1(ends: Option<(SocketAddr, SocketAddr)>, out: &mut Vec<u8>) {
    use std::io::Write;
    let Some((peer, local)) = ends else {
        out.extend_from_slice(b"PROXY UNKNOWN\r\n");
        return;
    };
    let family = if peer.is_ipv4() { "TCP4" } else { "TCP6" };
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "PROXY {family} {} {} {} {}\r\n",
        peer.ip(),
        local.ip(),
        peer.port(),
        local.port()
    );
}

fn v2(ends: Option<(SocketAddr, SocketAddr)>, out: &mut Vec<u8>) {
    out.extend_from_slice(&V2_SIG);
    // Version 2, command PROXY.
    out.push(0x21);
    match ends {
        None => {
            // AF_UNSPEC: the receiver ignores the (empty) address block.
            out.extend_from_slice(&[0x00, 0, 0]);
        }
        Some((peer, local)) => match (peer.ip(), local.ip()) {
            (IpAddr::V4(p), IpAddr::V4(l)) => {
                out.push(0x11); // TCP over IPv4
                out.extend_from_slice(&12u16.to_be_bytes());
                out.extend_from_slice(&p.octets());
                out.extend_from_slice(&l.octets());
                out.extend_from_slice(&peer.port().to_be_bytes());
                out.extend_from_slice(&local.port().to_be_bytes());
            }
            (p, l) => {
                out.push(0x21); // TCP over IPv6
                out.extend_from_slice(&36u16.to_be_bytes());
                out.extend_from_slice(&v6_octets(p));
                out.extend_from_slice(&v6_octets(l));
                out.extend_from_slice(&peer.port().to_be_bytes());
                out.extend_from_slice(&local.port().to_be_bytes());
            }
        },
    }
}

fn v6_octets(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(v: ProxyVersion, peer: &str, local: &str) -> Vec<u8> {
        let mut out = Vec::new();
        encode(
            v,
            Some((peer.parse().unwrap(), local.parse().unwrap())),
            &mut out,
        );
        out
    }

    #[test]
    fn v1_lines() {
        assert_eq!(
            header(ProxyVersion::V1, "192.0.2.1:5000", "127.0.0.1:80"),
            b"PROXY TCP4 192.0.2.1 127.0.0.1 5000 80\r\n"
        );
        assert_eq!(
            header(
                ProxyVersion::V1,
                "[::ffff:10.0.0.1]:1",
                "[::ffff:10.0.0.2]:2"
            ),
            b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n"
        );
        assert_eq!(
            header(ProxyVersion::V1, "[2001:db8::1]:1", "127.0.0.1:2"),
            b"PROXY TCP6 2001:db8::1 ::ffff:127.0.0.1 1 2\r\n"
        );
        let mut out = Vec::new();
        encode(ProxyVersion::V1, None, &mut out);
        assert_eq!(out, b"PROXY UNKNOWN\r\n");
        // The longest line fits the v1 limit of 107 bytes.
        let long = header(
            ProxyVersion::V1,
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:65535",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:65535",
        );
        assert!(long.len() <= 107 && long.len() <= MAX, "{}", long.len());
    }

    #[test]
    fn v2_blocks() {
        let h = header(ProxyVersion::V2, "192.0.2.1:5000", "127.0.0.1:80");
        assert_eq!(&h[..12], &V2_SIG);
        assert_eq!(&h[12..16], &[0x21, 0x11, 0, 12]);
        assert_eq!(&h[16..20], &[192, 0, 2, 1]);
        assert_eq!(&h[20..24], &[127, 0, 0, 1]);
        assert_eq!(&h[24..], &[0x13, 0x88, 0, 80]);
        let h = header(ProxyVersion::V2, "[2001:db8::1]:1", "[::1]:2");
        assert_eq!(h.len(), 16 + 36);
        assert_eq!(&h[12..16], &[0x21, 0x21, 0, 36]);
        assert_eq!(&h[48..], &[0, 1, 0, 2]);
        let mut out = Vec::new();
        encode(ProxyVersion::V2, None, &mut out);
        assert_eq!(&out[12..], &[0x21, 0, 0, 0]);
    }
}

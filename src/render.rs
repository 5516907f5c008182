//! Numbers and socket addresses as text, on the stack, for the lines and
//! environment variables written for every connection.
//!
//! `core::fmt` renders an `Ipv4Addr` through a nested format call with
//! padding support, and an integer through `pad_integral`; per connection
//! that was about a third of the supervisor's own (user) time (perf,
//! bench/README). `Text` renders the common cases directly and hands
//! the result to a line or a buffer as one `&str`. IPv6 goes through
//! `core::fmt` (RFC 5952 compression is not worth repeating here).
//!
//! [`append`] and [`append_all`] put the pieces into a line or the
//! environment with the room made once per entry or `key=value` pair, then
//! copied in 8/4/2/1-byte moves: no `memcpy` call per piece (musl's is not
//! inlined and was a quarter of the supervisor's user time), no byte loop.
//! The figures that made this worth it: `src/sys/spawn/mod.rs`.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Room for the longest value: `[` + 45 (IPv6 with embedded IPv4) +
/// `%4294967295` + `]:65535`.
const CAP: usize = 64;

/// "00" to "99", for `push_decimal`.
const PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// One rendered value.
#[derive(Clone, Copy)]
pub struct Text {
    buf: [u8; CAP],
    len: usize,
}

impl Text {
    fn new() -> Text {
        Text {
            buf: [0; CAP],
            len: 0,
        }
    }

    /// A number in decimal.
    pub fn decimal(n: u64) -> Text {
        let mut t = Text::new();
        t.push_decimal(n);
        t
    }

    /// A signed number in decimal.
    fn signed(n: i64) -> Text {
        let mut t = Text::new();
        if n < 0 {
            t.push_byte(b'-');
        }
        t.push_decimal(n.unsigned_abs());
        t
    }

    /// An address as `core::net` writes it (dotted quad, RFC 5952).
    fn ip(ip: IpAddr) -> Text {
        let mut t = Text::new();
        match ip {
            IpAddr::V4(v4) => t.push_ipv4(v4),
            IpAddr::V6(v6) => {
                let _ = write!(t, "{v6}");
            }
        }
        t
    }

    /// `ADDR:PORT`, or `[ADDR]:PORT` for IPv6, as `core::net` writes it.
    fn socket_addr(addr: SocketAddr) -> Text {
        let mut t = Text::new();
        match addr {
            SocketAddr::V4(v4) => {
                t.push_ipv4(*v4.ip());
                t.push_byte(b':');
                t.push_decimal(u64::from(v4.port()));
            }
            SocketAddr::V6(v6) => {
                let _ = write!(t, "{v6}");
            }
        }
        t
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII and whole `str`s are ever pushed, so this cannot fail.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Appends what fits (CAP covers every value rendered here).
    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.push_byte(b);
        }
    }

    /// One byte at a time, not `copy_from_slice`: the values are a few
    /// bytes long, and a call to `memcpy` per piece cost more than the
    /// copy (musl's is not inlined).
    fn push_byte(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    /// The digits go straight to their place, the last first: the
    /// number's length is counted before.
    fn push_decimal(&mut self, mut n: u64) {
        let len = decimal_len(n);
        let Some(out) = self.buf.get_mut(self.len..self.len + len) else {
            return;
        };
        // Two digits per division from a table (division by a constant is
        // a multiplication).
        let mut at = len;
        while n >= 100 {
            let pair = (n % 100) as usize * 2;
            n /= 100;
            at -= 2;
            out[at] = PAIRS[pair];
            out[at + 1] = PAIRS[pair + 1];
        }
        if n >= 10 {
            let pair = n as usize * 2;
            out[0] = PAIRS[pair];
            out[1] = PAIRS[pair + 1];
        } else {
            out[0] = b'0' + n as u8;
        }
        self.len += len;
    }

    fn push_ipv4(&mut self, ip: Ipv4Addr) {
        for (i, octet) in ip.octets().into_iter().enumerate() {
            if i > 0 {
                self.push_byte(b'.');
            }
            self.push_decimal(u64::from(octet));
        }
    }
}

/// How many decimal digits `n` has.
fn decimal_len(n: u64) -> usize {
    let mut len = 1;
    let mut bound = 10u64;
    while n >= bound {
        len += 1;
        match bound.checked_mul(10) {
            Some(b) => bound = b,
            None => break,
        }
    }
    len
}

impl fmt::Write for Text {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if s.len() > CAP - self.len {
            return Err(fmt::Error);
        }
        self.push(s.as_bytes());
        Ok(())
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Appends `bytes` to `buf`: the room made first (`resize`: musl's
/// `memset` writes a few bytes with a few stores), then copied in words
/// of 8 bytes, then 4, 2 and 1, each an inline load and store. Not
/// `extend_from_slice`: the pieces of a log line or an environment entry
/// are a few bytes long and of unknown length, and a `memcpy` call per
/// piece cost more than the copy (musl's starts a `rep movsq` whatever
/// the length; it was a quarter of the supervisor's user time per
/// connection, bench/README). Nor one byte at a time (`push`): that was
/// 40 % of the supervisor's instructions per exec'd connection
/// (callgrind: 3,900 of 9,800).
pub fn append(buf: &mut Vec<u8>, bytes: &[u8]) {
    append_all(buf, &[bytes]);
}

/// Appends `parts` one after the other, the room for all of them made at
/// once (see `append`).
pub fn append_all(buf: &mut Vec<u8>, parts: &[&[u8]]) {
    let at = buf.len();
    let len = parts.iter().map(|p| p.len()).sum::<usize>();
    buf.resize(at + len, 0);
    let mut out = buf.get_mut(at..).unwrap_or_default();
    for part in parts {
        out = copy(out, part);
    }
}

/// Copies `bytes` to the start of `out` (which has room for them);
/// returns the rest of `out`.
fn copy<'a>(mut out: &'a mut [u8], bytes: &[u8]) -> &'a mut [u8] {
    let mut rest = bytes;
    while let Some((word, tail)) = rest.split_first_chunk::<8>() {
        out = put(out, word);
        rest = tail;
    }
    if let Some((half, tail)) = rest.split_first_chunk::<4>() {
        out = put(out, half);
        rest = tail;
    }
    if let Some((pair, tail)) = rest.split_first_chunk::<2>() {
        out = put(out, pair);
        rest = tail;
    }
    if let Some((byte, _)) = rest.split_first_chunk::<1>() {
        out = put(out, byte);
    }
    out
}

/// Copies `piece` to the start of `out` (one load and store of `N`
/// bytes); returns the rest of `out`.
fn put<'a, const N: usize>(out: &'a mut [u8], piece: &[u8; N]) -> &'a mut [u8] {
    match out.split_first_chunk_mut::<N>() {
        Some((head, tail)) => {
            *head = *piece;
            tail
        }
        None => &mut [],
    }
}

/// A value that renders as `Text`: what `log::Opt` and the environment
/// take, so each value costs one `write_str`.
pub trait Render {
    fn render(&self) -> Text;
}

macro_rules! render_unsigned {
    ($($t:ty),*) => {$(
        impl Render for $t {
            fn render(&self) -> Text {
                Text::decimal(u64::from(*self))
            }
        }
    )*};
}
render_unsigned!(u8, u16, u32, u64);

impl Render for i32 {
    fn render(&self) -> Text {
        Text::signed(i64::from(*self))
    }
}

impl Render for usize {
    fn render(&self) -> Text {
        // usize is at most 64 bits on every target Rust supports here.
        Text::decimal(*self as u64)
    }
}

/// Durations in milliseconds come as `u128`; they fit a `u64`.
impl Render for u128 {
    fn render(&self) -> Text {
        match u64::try_from(*self) {
            Ok(n) => Text::decimal(n),
            Err(_) => {
                let mut t = Text::new();
                let _ = write!(t, "{self}");
                t
            }
        }
    }
}

impl Render for bool {
    fn render(&self) -> Text {
        let mut t = Text::new();
        t.push(if *self { b"true" } else { b"false" });
        t
    }
}

impl Render for &str {
    /// Short words only (signal names); longer text is cut at `CAP` bytes.
    fn render(&self) -> Text {
        let mut t = Text::new();
        let mut end = self.len().min(CAP);
        while !self.is_char_boundary(end) {
            end -= 1;
        }
        t.push(&self.as_bytes()[..end]);
        t
    }
}

impl Render for IpAddr {
    fn render(&self) -> Text {
        Text::ip(*self)
    }
}

impl Render for SocketAddr {
    fn render(&self) -> Text {
        Text::socket_addr(*self)
    }
}

#[cfg(test)]
mod tests {
    use super::{Render, Text};
    use std::net::{IpAddr, SocketAddr};

    #[test]
    fn numbers_read_as_core_fmt_writes_them() {
        for n in [
            0u64,
            7,
            10,
            99,
            100,
            101,
            999,
            1000,
            65535,
            4294967295,
            u64::MAX,
        ] {
            assert_eq!(Text::decimal(n).as_str(), n.to_string());
        }
        for n in (0..100_000u64).chain((1..20).map(|k| 10u64.pow(k) - 1)) {
            assert_eq!(Text::decimal(n).as_str(), n.to_string());
        }
        for n in [0i64, -1, 42, i64::MIN, i64::MAX] {
            assert_eq!(Text::signed(n).as_str(), n.to_string());
        }
        assert_eq!(u128::MAX.render().as_str(), u128::MAX.to_string());
        assert_eq!(12345u128.render().as_str(), "12345");
        assert_eq!(usize::MAX.render().as_str(), usize::MAX.to_string());
        assert_eq!(true.render().as_str(), "true");
    }

    #[test]
    fn append_all_copies_every_length() {
        let src: Vec<u8> = (0..40u8).map(|b| b'!' + b).collect();
        for a in 0..=src.len() {
            for b in 0..=src.len() - a {
                let mut buf = b"x".to_vec();
                super::append_all(&mut buf, &[&src[..a], b"=", &src[a..a + b]]);
                let mut want = b"x".to_vec();
                want.extend_from_slice(&src[..a]);
                want.push(b'=');
                want.extend_from_slice(&src[a..a + b]);
                assert_eq!(buf, want);
            }
        }
    }

    #[test]
    fn append_copies_every_length() {
        let src: Vec<u8> = (0..64u8).map(|b| b'!' + b).collect();
        for start in 0..3 {
            for len in 0..=src.len() - start {
                let mut buf = b"head".to_vec();
                super::append(&mut buf, &src[start..start + len]);
                assert_eq!(&buf[..4], b"head");
                assert_eq!(&buf[4..], &src[start..start + len], "length {len}");
            }
        }
    }

    #[test]
    fn addresses_read_as_core_net_writes_them() {
        for a in [
            "0.0.0.0:0",
            "127.0.0.1:7",
            "255.255.255.255:65535",
            "10.20.3.40:1024",
            "[::1]:80",
            "[::ffff:192.0.2.1]:9",
            "[2001:db8::1]:65535",
            "[fe80::1%4294967295]:65535",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
        ] {
            let a: SocketAddr = a.parse().expect("test address");
            assert_eq!(a.render().as_str(), a.to_string());
            assert_eq!(Text::ip(a.ip()).as_str(), a.ip().to_string());
        }
        let ip: IpAddr = "1.2.3.4".parse().expect("test address");
        assert_eq!(format!("<{}>", ip.render()), "<1.2.3.4>");
    }

    #[test]
    fn long_words_are_cut_on_a_character_boundary() {
        let word = "é".repeat(40);
        let t = word.as_str().render();
        assert!(t.as_str().len() <= 64 && word.starts_with(t.as_str()));
    }
}

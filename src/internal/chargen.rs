//! RFC 864 character generator: lines of 72 printable ASCII characters,
//! each starting one character further along the 95-character cycle,
//! ended by CR LF. The whole cycle (95 lines) is built once; a stream
//! writes from any point in it without copying.

use std::sync::OnceLock;

const LINE: usize = 72;
const PRINTABLE: usize = 95;
/// One full cycle: 95 lines of 74 bytes.
const CYCLE: usize = PRINTABLE * (LINE + 2);

/// Two cycles back to back, so `CYCLE` bytes can be read from any offset.
fn pattern() -> &'static [u8] {
    static P: OnceLock<Vec<u8>> = OnceLock::new();
    P.get_or_init(|| {
        let mut p = Vec::with_capacity(2 * CYCLE);
        for _ in 0..2 {
            for first in 0..PRINTABLE {
                // The RFC's example starts its first line at '!'.
                p.extend((0..LINE).map(|i| b' ' + ((first + 1 + i) % PRINTABLE) as u8));
                p.extend_from_slice(b"\r\n");
            }
        }
        p
    })
}

/// Bytes to send next on a stream at cycle position `at`.
pub fn stream_from(at: usize) -> &'static [u8] {
    &pattern()[at..at + CYCLE]
}

/// The position after sending `n` bytes from `at`.
pub fn advance(at: usize, n: usize) -> usize {
    (at + n) % CYCLE
}

/// One datagram reply: RFC 864 asks for a random length of 0 to 512.
pub fn datagram(out: &mut Vec<u8>) {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<(u64, usize)> = const { Cell::new((0, 0)) };
    }
    STATE.with(|s| {
        let (mut x, line) = s.get();
        if x == 0 {
            x = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
                | 1;
        }
        // xorshift64: a length only needs to look random.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 513) as usize;
        let start = line * (LINE + 2);
        out.extend_from_slice(&pattern()[start..start + len]);
        s.set((x, (line + 1) % PRINTABLE));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_rotate_through_printables() {
        let p = stream_from(0);
        // The first two lines of RFC 864's example.
        assert_eq!(
            &p[..2 * (LINE + 2)],
            &b"!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefgh\r\n\
               \"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghi\r\n"[..]
        );
        assert_eq!(advance(CYCLE - 1, 2), 1);
        assert_eq!(stream_from(CYCLE - 1).len(), CYCLE);
    }
}

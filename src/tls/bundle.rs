//! The bundle a relay reads on its fd 3, in one place for both ends: the
//! supervisor writes it ([`Writer`]), `oxinetd-tls` reads it ([`read_fd3`],
//! [`records`]). After a magic line naming the format and its version
//! come records `NAME LEN\n`, LEN bytes, `\n` (the `tls` module doc says
//! why versioned). The reader checks every length against what is left,
//! so a cut or corrupt bundle is an error, never a panic.

use std::io;
use std::os::unix::fs::FileExt as _;

/// The most a bundle may hold (the relay reads no more).
pub const MAX_BUNDLE: usize = 4 << 20;

/// A bundle being written: its magic line, then records.
pub struct Writer(Vec<u8>);

impl Writer {
    pub fn new(magic: &[u8]) -> Writer {
        Writer(magic.to_vec())
    }

    pub fn record(&mut self, name: &str, value: &[u8]) {
        self.0
            .extend_from_slice(format!("{name} {}\n", value.len()).as_bytes());
        self.0.extend_from_slice(value);
        self.0.push(b'\n');
    }

    pub fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// The records of `bundle`, which must begin with `magic`.
pub fn records<'a>(bundle: &'a [u8], magic: &[u8]) -> Result<Records<'a>, String> {
    match bundle.strip_prefix(magic) {
        Some(rest) => Ok(Records { rest }),
        None => Err(format!(
            "not a bundle of this oxinetd (it does not begin with {:?})",
            String::from_utf8_lossy(magic).trim_end()
        )),
    }
}

/// `(name, value)` of each record in turn; after an error, nothing.
pub struct Records<'a> {
    rest: &'a [u8],
}

impl<'a> Records<'a> {
    fn split(&mut self) -> Result<(&'a str, &'a [u8]), String> {
        let b = self.rest;
        let nl = b.iter().position(|c| *c == b'\n').ok_or("truncated")?;
        let head = std::str::from_utf8(&b[..nl]).map_err(|_| "bad record")?;
        let (name, len) = head.split_once(' ').ok_or("bad record")?;
        let len: usize = len.parse().map_err(|_| "bad length")?;
        let rest = &b[nl + 1..];
        // The value and its closing `\n`, checked without overflow.
        if len >= rest.len() || rest[len] != b'\n' {
            return Err("truncated".to_owned());
        }
        self.rest = &rest[len + 1..];
        Ok((name, &rest[..len]))
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<(&'a str, &'a [u8]), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let record = self.split();
        if record.is_err() {
            self.rest = &[];
        }
        Some(record)
    }
}

/// The bundle on fd 3, read from offset 0 (a sealed memfd shared by every
/// relay of the plan), at most [`MAX_BUNDLE`] bytes; fd 3 is closed.
pub fn read_fd3() -> Result<Vec<u8>, String> {
    let fd = crate::sys::adopt_fd(3).ok_or("no key material on fd 3")?;
    let file = std::fs::File::from(fd);
    let mut buf = vec![0u8; MAX_BUNDLE];
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("unable to read the key material: {e}")),
        }
    }
    buf.truncate(n);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(b: &[u8]) -> Result<Vec<(&str, &[u8])>, String> {
        records(b, b"m 1\n")?.collect()
    }

    #[test]
    fn records_round_trip_and_bad_ones_are_errors() {
        let mut w = Writer::new(b"m 1\n");
        w.record("a", b"x\ny");
        w.record("b", b"");
        let b = w.finish();
        assert_eq!(all(&b).unwrap(), [("a", &b"x\ny"[..]), ("b", &b""[..])]);
        for cut in 0..b.len() {
            assert!(all(&b[..cut]).is_err() || cut == 4 || cut == 12);
        }
        assert!(all(b"m 2\n").is_err());
        assert!(all(b"m 1\na 18446744073709551615\nx\n").is_err());
        assert!(all(b"m 1\na 1\nxy").is_err());
        assert!(all(b"m 1\na -1\n\n").is_err());
    }
}

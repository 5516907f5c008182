//! `bulk`: one connection, 64 KiB writes, the echo read back (up to a MiB
//! per read) and checked.
//!
//! The stream is a repeating pattern of period 251 (prime, so it never lines
//! up with a buffer size), checked with one slice comparison per read.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use crate::stats::Errors;
use crate::Opts;

const PERIOD: usize = 251;

/// The reader takes whatever has arrived, up to a MiB: the client should
/// spend less CPU per byte than the servers it measures, which share its
/// two cores.
const READ_SIZE: usize = 1 << 20;

fn pattern(len: usize) -> Vec<u8> {
    (0..len + PERIOD).map(|i| (i % PERIOD) as u8).collect()
}

pub fn run(o: &Opts) {
    let mut errors = Errors::default();
    let (written, read, secs, mismatch) = match transfer(o) {
        Ok(r) => r,
        Err(e) => {
            errors.count(&e);
            eprintln!("bulk: {e}");
            (0, 0, 0.0, false)
        }
    };
    // A different echo, or a short one (the server closed, or the read timed out).
    if mismatch || read != written {
        errors.bad_reply += 1;
    }
    let mbps = if secs > 0.0 {
        read as f64 / secs / 1e6
    } else {
        0.0
    };
    println!(
        "mode=bulk chunk={} written={written} echoed={read} secs={secs:.3} mbps={mbps:.1}{}",
        o.chunk,
        errors.fields()
    );
}

/// Returns (bytes written, bytes echoed, seconds to the last echoed byte,
/// whether the echo differed from what was sent).
fn transfer(o: &Opts) -> io::Result<(u64, u64, f64, bool)> {
    let stream = TcpStream::connect_timeout(&o.addr, o.timeout)?;
    stream.set_read_timeout(Some(o.timeout))?;
    stream.set_write_timeout(Some(o.timeout))?;
    let mut writer = stream.try_clone()?;
    let chunk = o.chunk;
    let secs = o.secs;
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let pat = pattern(chunk.max(READ_SIZE));
    let wpat = pat.clone();
    let w = std::thread::spawn(move || -> io::Result<u64> {
        let mut off = 0u64;
        let res = (|| {
            while Instant::now() < deadline {
                let at = (off % PERIOD as u64) as usize;
                writer.write_all(&wpat[at..at + chunk])?;
                off += chunk as u64;
            }
            Ok(())
        })();
        let _ = writer.shutdown(Shutdown::Write);
        res.map(|()| off)
    });

    let mut reader = stream;
    let mut buf = vec![0u8; READ_SIZE];
    let mut got = 0u64;
    let mut mismatch = false;
    let mut last = start;
    let read_result = loop {
        match reader.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                let at = (got % PERIOD as u64) as usize;
                if buf[..n] != pat[at..at + n] {
                    mismatch = true;
                }
                got += n as u64;
                last = Instant::now();
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    let written = match w.join() {
        Ok(r) => r?,
        Err(_) => return Err(io::Error::other("writer thread panicked")),
    };
    // A read timeout after everything came back means the server kept the
    // connection open after our FIN; the transfer itself is complete.
    if let Err(e) = read_result {
        if got != written {
            return Err(e);
        }
    }
    Ok((written, got, (last - start).as_secs_f64(), mismatch))
}

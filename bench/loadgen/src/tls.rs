//! `tls` and `tlsbulk`: the `tcp` and `bulk` modes through TLS (rustls,
//! ring), verifying the server's certificate against `--ca` for the name
//! `localhost`. Every connection is a full handshake: the client keeps no
//! session (resumption disabled), so servers that issue tickets (stunnel)
//! and those that do not (oxinetd) do the same work.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::stats::{percentiles, Errors};
use crate::Opts;

const LINE: &[u8] = b"ping\n";

/// The client configuration: the CA of `path`, no resumption.
pub fn config(path: &str) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| format!("{path}: {e}"))? {
        roots
            .add(cert.map_err(|e| format!("{path}: {e}"))?)
            .map_err(|e| format!("{path}: {e}"))?;
    }
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut c = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(c))
}

fn connection(cfg: &Arc<ClientConfig>) -> io::Result<ClientConnection> {
    let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
    ClientConnection::new(Arc::clone(cfg), name).map_err(io::Error::other)
}

pub fn run(o: &Opts, cfg: Arc<ClientConfig>) {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(o.secs);
    let started = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..o.conc)
        .map(|i| {
            let (addr, timeout, max, started) = (o.addr, o.timeout, o.max, Arc::clone(&started));
            let cfg = Arc::clone(&cfg);
            let source = crate::tcp::source_for(addr, i);
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut errors = Errors::default();
                while Instant::now() < deadline && started.fetch_add(1, Ordering::Relaxed) < max {
                    let t = Instant::now();
                    let r = (|| {
                        let s = match source {
                            Some(src) => crate::tcp::connect_from(addr, src, timeout)?,
                            None => TcpStream::connect_timeout(&addr, timeout)?,
                        };
                        s.set_read_timeout(Some(timeout))?;
                        s.set_write_timeout(Some(timeout))?;
                        // As curl and browsers do: the Finished and the
                        // request are two writes, and a server that sends
                        // nothing after the handshake (no tickets) would
                        // otherwise hold the second one for a delayed ACK
                        // (40 ms).
                        s.set_nodelay(true)?;
                        let mut tls = StreamOwned::new(connection(&cfg)?, s);
                        tls.write_all(LINE)?;
                        let mut buf = [0u8; 16];
                        let mut n = 0;
                        while n < LINE.len() {
                            match tls.read(&mut buf[n..])? {
                                0 => break,
                                k => n += k,
                            }
                        }
                        if &buf[..n] != LINE {
                            return Err(io::Error::new(io::ErrorKind::InvalidData, "bad reply"));
                        }
                        Ok(())
                    })();
                    match r {
                        Ok(()) => lat.push(t.elapsed().as_micros() as u64),
                        Err(e) => {
                            errors.count(&e);
                            if e.kind() == io::ErrorKind::ConnectionRefused {
                                std::thread::sleep(Duration::from_millis(1));
                            }
                        }
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut errors = Errors::default();
    for w in workers {
        match w.join() {
            Ok((l, e)) => {
                lat.extend(l);
                errors.add(&e);
            }
            Err(_) => errors.other += 1,
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "mode=tls conc={} conns={} secs={elapsed:.3} rate={:.1}{}{}",
        o.conc,
        lat.len(),
        lat.len() as f64 / elapsed,
        errors.fields(),
        percentiles(&mut lat)
    );
}

const PERIOD: usize = 251;

/// `bulk` through TLS: 64 KiB chunks written, the echo read back and
/// checked, one thread on a non-blocking socket.
pub fn bulk(o: &Opts, cfg: Arc<ClientConfig>) {
    let mut errors = Errors::default();
    let (written, read, secs, mismatch) = match transfer(o, &cfg) {
        Ok(r) => r,
        Err(e) => {
            errors.count(&e);
            eprintln!("tlsbulk: {e}");
            (0, 0, 0.0, false)
        }
    };
    if mismatch || read != written {
        errors.bad_reply += 1;
    }
    let mbps = if secs > 0.0 {
        read as f64 / secs / 1e6
    } else {
        0.0
    };
    println!(
        "mode=tlsbulk chunk={} written={written} echoed={read} secs={secs:.3} mbps={mbps:.1}{}",
        o.chunk,
        errors.fields()
    );
}

fn transfer(o: &Opts, cfg: &Arc<ClientConfig>) -> io::Result<(u64, u64, f64, bool)> {
    let mut s = TcpStream::connect_timeout(&o.addr, o.timeout)?;
    s.set_read_timeout(Some(o.timeout))?;
    s.set_write_timeout(Some(o.timeout))?;
    let mut tls = connection(cfg)?;
    // The handshake, blocking.
    while tls.is_handshaking() {
        tls.complete_io(&mut s)?;
    }
    s.set_nonblocking(true)?;
    let chunk = o.chunk as u64;
    let pat: Vec<u8> = (0..o.chunk.max(1 << 20) + PERIOD)
        .map(|i| (i % PERIOD) as u8)
        .collect();
    let mut buf = vec![0u8; 1 << 20];
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(o.secs);
    let (mut written, mut got) = (0u64, 0u64);
    let (mut mismatch, mut last, mut writing, mut eof) = (false, start, true, false);
    loop {
        let mut moved = false;
        if writing && !tls.wants_write() {
            if written % chunk == 0 && Instant::now() >= deadline {
                writing = false;
                tls.send_close_notify();
            } else {
                let at = (written % PERIOD as u64) as usize;
                let rest = (chunk - written % chunk) as usize;
                let n = tls.writer().write(&pat[at..at + rest])?;
                written += n as u64;
                moved |= n > 0;
            }
        }
        while tls.wants_write() {
            match tls.write_tls(&mut s) {
                Ok(n) => moved |= n > 0,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if !eof {
            match tls.read_tls(&mut s) {
                Ok(0) => eof = true,
                Ok(_) => {
                    tls.process_new_packets().map_err(io::Error::other)?;
                    moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        loop {
            match tls.reader().read(&mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    let at = (got % PERIOD as u64) as usize;
                    if buf[..n] != pat[at..at + n] {
                        mismatch = true;
                    }
                    got += n as u64;
                    last = Instant::now();
                    moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        if (!writing && got >= written) || eof {
            break;
        }
        if !moved {
            crate::bulk::wait(&s, tls.wants_write(), o.timeout)?;
        }
    }
    let _ = s.shutdown(Shutdown::Both);
    Ok((written, got, (last - start).as_secs_f64(), mismatch))
}

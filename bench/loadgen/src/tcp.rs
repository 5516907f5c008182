//! `tcp`: connect → send one line → read the echo → close, N workers.
//!
//! Against an IPv4 loopback server each worker connects from a source
//! address of its own (127.0.W.W): the client closes first, so each
//! connection leaves a local port in TIME_WAIT, reusable on loopback only
//! after a second; from one source address that caps the client at about
//! 14,000 connections a second (the even ports of 32768-60999), whatever
//! the server could do. The source port is still chosen at connect
//! (IP_BIND_ADDRESS_NO_PORT), so the ports of all sources are reused.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::stats::{percentiles, Errors};
use crate::{Opts, Pace};

const LINE: &[u8] = b"ping\n";

pub fn run(o: &Opts) {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(o.secs);
    // Requests started across all workers, against --max.
    let started = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..o.conc)
        .map(|i| {
            let (addr, timeout, max, started) = (o.addr, o.timeout, o.max, Arc::clone(&started));
            let proxy = o.proxy;
            let source = source_for(addr, i);
            let mut pace = Pace::new(o, i);
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut errors = Errors::default();
                loop {
                    pace.wait();
                    if Instant::now() >= deadline || started.fetch_add(1, Ordering::Relaxed) >= max
                    {
                        break;
                    }
                    let t = Instant::now();
                    match one(addr, source, timeout, proxy) {
                        Ok(()) => lat.push(t.elapsed().as_micros() as u64),
                        Err(e) => {
                            errors.count(&e);
                            // A refusing server answers at once: don't spin.
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
        "mode=tcp conc={} conns={} secs={elapsed:.3} rate={:.1}{}{}{}",
        o.conc,
        lat.len(),
        lat.len() as f64 / elapsed,
        errors.fields(),
        percentiles(&mut lat),
        errors.times(start)
    );
}

/// The source address of worker `i`, for an IPv4 loopback server.
pub fn source_for(addr: SocketAddr, i: usize) -> Option<Ipv4Addr> {
    match addr {
        SocketAddr::V4(a) if a.ip().is_loopback() => Some(Ipv4Addr::new(
            127,
            0,
            1 + (i / 250) as u8,
            1 + (i % 250) as u8,
        )),
        _ => None,
    }
}

/// Connect to `addr` from `source` (port chosen at connect), within
/// `timeout` (SO_SNDTIMEO bounds a blocking connect on Linux).
pub fn connect_from(
    addr: SocketAddr,
    source: Ipv4Addr,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let check = |r: libc::c_int| {
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r)
        }
    };
    let sin = |a: SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let SocketAddr::V4(dest) = addr else {
        return Err(io::Error::other("not IPv4"));
    };
    let (local, remote) = (sin(SocketAddrV4::new(source, 0)), sin(dest));
    let on: libc::c_int = 1;
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor owned here; every pointer
    // is to a local of the size passed. The descriptor is handed to the
    // TcpStream at once, so it is closed on every path.
    unsafe {
        let fd = check(libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
        ))?;
        let stream = TcpStream::from_raw_fd(fd);
        check(libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ))?;
        check(libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        ))?;
        check(libc::bind(
            fd,
            (&local as *const libc::sockaddr_in).cast(),
            len,
        ))?;
        match check(libc::connect(
            fd,
            (&remote as *const libc::sockaddr_in).cast(),
            len,
        )) {
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
                Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
            }
            Err(e) => Err(e),
            Ok(_) => Ok(stream),
        }
    }
}

/// One connection. Errors of the reply itself come back as InvalidData.
fn one(
    addr: SocketAddr,
    source: Option<Ipv4Addr>,
    timeout: Duration,
    proxy: Option<u8>,
) -> io::Result<()> {
    let mut s = match source {
        Some(src) => connect_from(addr, src, timeout)?,
        None => TcpStream::connect_timeout(&addr, timeout)?,
    };
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    match proxy {
        None => s.write_all(LINE)?,
        Some(version) => {
            let mut out = proxy_header(version, s.local_addr()?, addr)?;
            out.extend_from_slice(LINE);
            s.write_all(&out)?;
        }
    }
    let mut buf = [0u8; 16];
    let mut n = 0;
    while n < LINE.len() {
        match s.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    if &buf[..n] != LINE {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "bad reply"));
    }
    Ok(())
}

/// A PROXY protocol header (version 1 or 2) for a connection from `src`
/// to `dst`, as a load balancer sends it.
fn proxy_header(version: u8, src: SocketAddr, dst: SocketAddr) -> io::Result<Vec<u8>> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (src, dst) else {
        return Err(io::Error::other("--proxy: IPv4 only"));
    };
    if version == 1 {
        let line = format!(
            "PROXY TCP4 {} {} {} {}\r\n",
            s.ip(),
            d.ip(),
            s.port(),
            d.port()
        );
        return Ok(line.into_bytes());
    }
    let mut h = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    h.extend_from_slice(&s.ip().octets());
    h.extend_from_slice(&d.ip().octets());
    h.extend_from_slice(&s.port().to_be_bytes());
    h.extend_from_slice(&d.port().to_be_bytes());
    Ok(h)
}

//! `idle`: hold N connections open at once, then check each one echoes.
//!
//! Phases, each bounded by `--secs` (default 5 s per phase, raised here to
//! at least 60 s for opening): open the connections one after another,
//! print `phase=opened ...` (the harness measures the server while they are
//! all open), wait `--hold-secs`, write a distinct line to every one, then
//! read every echo back.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::stats::Errors;
use crate::Opts;

pub fn run(o: &Opts) {
    let limit = raise_nofile();
    let phase_budget = Duration::from_secs_f64(o.secs.max(60.0));
    let mut errors = Errors::default();

    let t0 = Instant::now();
    let mut conns = Vec::with_capacity(o.conns);
    for _ in 0..o.conns {
        if t0.elapsed() > phase_budget {
            break;
        }
        match TcpStream::connect_timeout(&o.addr, o.timeout) {
            Ok(s) => conns.push(s),
            Err(e) => errors.count(&e),
        }
    }
    let open_secs = t0.elapsed().as_secs_f64();
    println!(
        "phase=opened opened={} open_secs={open_secs:.3} nofile={limit}",
        conns.len()
    );
    let _ = io::stdout().flush();
    std::thread::sleep(Duration::from_secs_f64(o.hold_secs));

    let t1 = Instant::now();
    let mut alive = vec![true; conns.len()];
    for (i, s) in conns.iter_mut().enumerate() {
        if let Err(e) = s.write_all(format!("conn {i}\n").as_bytes()) {
            errors.count(&e);
            alive[i] = false;
        }
    }
    let mut served = 0usize;
    for (i, s) in conns.iter_mut().enumerate() {
        if !alive[i] {
            continue;
        }
        let left = phase_budget.saturating_sub(t1.elapsed());
        if left.is_zero() {
            errors.timeout += 1;
            continue;
        }
        match read_line(s, o.timeout.min(left)) {
            Ok(line) if line == format!("conn {i}\n").as_bytes() => served += 1,
            Ok(_) => errors.bad_reply += 1,
            Err(e) => errors.count(&e),
        }
    }
    let check_secs = t1.elapsed().as_secs_f64();
    println!(
        "mode=idle wanted={} opened={} served={served} open_secs={open_secs:.3} check_secs={check_secs:.3} nofile={limit}{}",
        o.conns,
        conns.len(),
        errors.fields()
    );
}

fn read_line(s: &mut TcpStream, timeout: Duration) -> io::Result<Vec<u8>> {
    s.set_read_timeout(Some(timeout))?;
    let mut line = Vec::with_capacity(16);
    let mut buf = [0u8; 64];
    while !line.ends_with(b"\n") {
        match s.read(&mut buf)? {
            0 => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed")),
            n => line.extend_from_slice(&buf[..n]),
        }
        if line.len() > 64 {
            break;
        }
    }
    Ok(line)
}

/// Raise the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force.
fn raise_nofile() -> libc::rlim_t {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return 0;
        }
        if rl.rlim_cur < rl.rlim_max {
            let want = libc::rlimit {
                rlim_cur: rl.rlim_max,
                rlim_max: rl.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                rl.rlim_cur = rl.rlim_max;
            }
        }
    }
    rl.rlim_cur
}

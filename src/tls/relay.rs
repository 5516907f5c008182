//! `oxinetd-tls relay SERVER ARGV0 ARGS...`: one TLS connection, in a
//! process of the service's user.
//!
//! The supervisor's child execs this instead of the handler, after the
//! same confinement (ids, rlimits, `no_new_privs`...), with the client's
//! socket on fds 0 and 1, the handler's stderr on 2 and the service's
//! bundle (certificate, key, options: `tls::Settings::encode`) on fd 3.
//! It:
//!
//! 1. reads the bundle (with `pread`: every relay of the service shares
//!    the memfd's offset) and closes fd 3, so the handler never has it;
//! 2. does the handshake on the client's socket within the service's
//!    deadline; a failure is one stderr line and exit 1;
//! 3. starts the handler with one end of a socketpair on its fds 0 and 1
//!    (stderr and the environment are its own, plus the `SSL_*`
//!    variables), in the same process group;
//! 4. relays both ways, half-closes included: the client's close_notify
//!    or EOF shuts down the handler's input, the handler's EOF sends
//!    close_notify; it ends when the handler has closed its end and
//!    everything it wrote has been sent;
//! 5. exits as the handler did (its code, or the same signal), so the
//!    supervisor's `exit` line is the handler's.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use rustls::ServerConnection;
use socket2::Socket;

use super::blocking::{handshake, would_block};
use super::bundle;
use super::Settings;

/// Most plaintext held for the handler before the client is no longer read.
const HOLD: usize = 64 * 1024;

/// The relay's entry point; `args` are those after `relay`.
pub fn main(args: Vec<OsString>) -> ExitCode {
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tls: {}{e}", peer());
            ExitCode::from(1)
        }
    }
}

/// `from IP PORT: ` as the supervisor's environment tells it.
fn peer() -> String {
    let var = |n: &str| std::env::var(n).ok();
    match (
        var("REMOTE_ADDR"),
        var("REMOTE_PORT").or_else(|| var("UNIXREMOTEPID")),
    ) {
        (Some(ip), Some(port)) => format!("client {ip} port {port}: "),
        _ => String::new(),
    }
}

fn run(args: Vec<OsString>) -> Result<ExitCode, String> {
    if args.first().is_some_and(|a| a == "--pipe") {
        return super::pipe::run();
    }
    let mut args = args.into_iter();
    let (Some(server), Some(argv0)) = (args.next(), args.next()) else {
        return Err(
            "usage: oxinetd-tls relay SERVER ARGV0 [ARGS...] | oxinetd-tls relay --pipe \
             (started by oxinetd)"
                .into(),
        );
    };
    let bundle = bundle::read_fd3()?;
    let settings = Settings::decode(&bundle).map_err(|e| format!("key material: {e}"))?;
    let config = settings
        .server_config()
        .map_err(|e| format!("unusable key material: {e:?}"))?;
    let client = io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| format!("unable to take the connection: {e}"))?;
    let client = Socket::from(client);
    // rustls hands over whole records in one write: Nagle would only hold
    // the last of a flight (a close_notify after the handler's output)
    // for the client's delayed ACK. A UNIX-domain client has no Nagle.
    let _ = client.set_tcp_nodelay(true);
    client
        .set_nonblocking(true)
        .map_err(|e| format!("unable to set the connection non-blocking: {e}"))?;
    let mut tls = ServerConnection::new(config).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + settings.handshake_timeout;
    handshake(&mut tls, &client, "client", deadline)
        .map_err(|e| format!("handshake failed: {e}"))?;

    let (mine, theirs) = Socket::pair(socket2::Domain::UNIX, socket2::Type::STREAM, None)
        .map_err(|e| format!("unable to create a socketpair: {e}"))?;
    let theirs = OwnedFd::from(theirs);
    let theirs_out = theirs
        .try_clone()
        .map_err(|e| format!("unable to dup: {e}"))?;
    let mut cmd = Command::new(&server);
    cmd.arg0(&argv0)
        .args(args)
        .stdin(Stdio::from(theirs))
        .stdout(Stdio::from(theirs_out))
        .envs(environment(&tls));
    let mut handler = cmd.spawn().map_err(|e| {
        format!(
            "unable to exec {}: {e}",
            std::path::Path::new(&server).display()
        )
    })?;
    // The handler's ends are closed here by dropping `cmd`.
    drop(cmd);
    mine.set_nonblocking(true)
        .map_err(|e| format!("unable to set the socketpair non-blocking: {e}"))?;
    if let Err(e) = relay(&mut tls, &client, &mine) {
        eprintln!("tls: {}{e}", peer());
    }
    drop(mine);
    drop(client);
    let status = handler
        .wait()
        .map_err(|e| format!("unable to wait for the handler: {e}"))?;
    if let Some(sig) = status.signal() {
        // As the handler did: the supervisor logs the signal.
        if let Ok(sig) = nix::sys::signal::Signal::try_from(sig) {
            let _ = nix::sys::signal::raise(sig);
        }
        return Ok(ExitCode::from(128u8.wrapping_add(sig as u8)));
    }
    Ok(ExitCode::from(status.code().unwrap_or(1) as u8))
}

/// The `SSL_*` variables of the handler (mod_ssl's names, as stunnel
/// also uses them).
fn environment(tls: &ServerConnection) -> Vec<(&'static str, OsString)> {
    let mut env = Vec::new();
    let mut put = |k: &'static str, v: String| {
        // A DN may hold anything; the environment takes no NUL or control.
        let v: String = v
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        env.push((k, OsString::from(v)));
    };
    if let Some(v) = tls.protocol_version() {
        let v = match v {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
            _ => "unknown",
        };
        put("SSL_PROTOCOL", v.to_owned());
    }
    if let Some(s) = tls.negotiated_cipher_suite() {
        if let Some(name) = s.suite().as_str() {
            // IANA's names: rustls writes TLS 1.3's as TLS13_*.
            let name = name
                .strip_prefix("TLS13_")
                .map_or_else(|| name.to_owned(), |rest| format!("TLS_{rest}"));
            put("SSL_CIPHER", name);
        }
    }
    if let Some(sni) = tls.server_name() {
        put("SSL_TLS_SNI", sni.to_owned());
    }
    if let Some(p) = tls.alpn_protocol() {
        put("SSL_ALPN", String::from_utf8_lossy(p).into_owned());
    }
    let leaf = tls.peer_certificates().and_then(|c| c.first());
    put(
        "SSL_CLIENT_VERIFY",
        if leaf.is_some() { "SUCCESS" } else { "NONE" }.to_owned(),
    );
    if let Some(der) = leaf {
        if let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) {
            put("SSL_CLIENT_S_DN", cert.subject().to_string());
            put("SSL_CLIENT_I_DN", cert.issuer().to_string());
            put("SSL_CLIENT_M_SERIAL", hex(cert.raw_serial(), true));
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
        put("SSL_CLIENT_FINGERPRINT", hex(digest.as_ref(), false));
    }
    env
}

fn hex(bytes: &[u8], upper: bool) -> String {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(digits[usize::from(b >> 4)]));
        s.push(char::from(digits[usize::from(b & 15)]));
    }
    s
}

/// Both directions until the handler has closed its end and the client
/// has had everything; `Err` for a connection that broke (logged).
fn relay(tls: &mut ServerConnection, mut client: &Socket, mut plain: &Socket) -> io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    // Plaintext from the client not yet written to the handler.
    let mut to_handler: Vec<u8> = Vec::with_capacity(HOLD);
    let mut sent = 0usize;
    // The client has finished sending (close_notify or EOF).
    let mut client_done = false;
    let mut client_eof = false;
    // The handler's input has been shut down.
    let mut handler_input_shut = false;
    // The handler has finished writing; close_notify queued.
    let mut handler_done = false;
    // The handler has closed its end entirely (POLLHUP).
    let mut handler_gone = false;
    loop {
        // Plaintext out of rustls, while there is room.
        while !client_done && to_handler.len() - sent < HOLD {
            match tls.reader().read(&mut buf) {
                Ok(0) => client_done = true,
                Ok(n) => to_handler.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // EOF without close_notify: treated as the end of input
                // (a truncation only the handler's protocol can judge).
                Err(_) => client_done = true,
            }
        }
        if sent < to_handler.len() && !handler_gone {
            match plain.write(&to_handler[sent..]) {
                Ok(n) => sent += n,
                Err(e) if would_block(&e) => {}
                // The handler stopped reading (exited): what it missed is
                // dropped.
                Err(_) => sent = to_handler.len(),
            }
            if sent == to_handler.len() {
                to_handler.clear();
                sent = 0;
            }
        }
        if (client_done || handler_gone) && to_handler.is_empty() && !handler_input_shut {
            let _ = plain.shutdown(std::net::Shutdown::Write);
            handler_input_shut = true;
        }
        while tls.wants_write() {
            match tls.write_tls(&mut client) {
                Ok(_) => {}
                Err(e) if would_block(&e) => break,
                Err(e) => return Err(e),
            }
        }
        if handler_done && !tls.wants_write() && (client_done || handler_gone) {
            let _ = client.shutdown(std::net::Shutdown::Write);
            return Ok(());
        }

        let mut client_ev = PollFlags::empty();
        if !client_eof && to_handler.len() < HOLD {
            client_ev |= PollFlags::POLLIN;
        }
        if tls.wants_write() {
            client_ev |= PollFlags::POLLOUT;
        }
        let mut plain_ev = PollFlags::empty();
        if !handler_done && !tls.wants_write() {
            plain_ev |= PollFlags::POLLIN;
        }
        if !to_handler.is_empty() {
            plain_ev |= PollFlags::POLLOUT;
        }
        let mut fds = [
            PollFd::new(client.as_fd(), client_ev),
            PollFd::new(plain.as_fd(), plain_ev),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let client_rev = fds[0].revents().unwrap_or(PollFlags::empty());
        let plain_rev = fds[1].revents().unwrap_or(PollFlags::empty());

        if client_rev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
            && !client_eof
        {
            match tls.read_tls(&mut client) {
                Ok(0) => client_eof = true,
                Ok(_) => {
                    if let Err(e) = tls.process_new_packets() {
                        let _ = tls.write_tls(&mut client);
                        return Err(io::Error::other(e));
                    }
                }
                Err(e) if would_block(&e) => {}
                Err(e) => return Err(e),
            }
        }
        if plain_rev.intersects(PollFlags::POLLIN) && !handler_done {
            match plain.read(&mut buf) {
                Ok(0) => {
                    handler_done = true;
                    tls.send_close_notify();
                }
                Ok(n) => tls.writer().write_all(&buf[..n])?,
                Err(e) if would_block(&e) => {}
                Err(_) => {
                    handler_done = true;
                    tls.send_close_notify();
                }
            }
        } else if plain_rev.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
            handler_gone = true;
            if !handler_done {
                handler_done = true;
                tls.send_close_notify();
            }
        }
    }
}

//! `oxinetd-tls`: the TLS side of oxinetd, started by it, never by hand.
//!
//! - `oxinetd-tls relay SERVER ARGV0 [ARGS...]`: one TLS connection, in a
//!   process of the service's user (`oxinetd::tls::relay`);
//! - `oxinetd-tls relay --pipe`: one connection of an internal service or
//!   a forward with `tls` or `forward_tls`, between two sockets
//!   (`oxinetd::tls::pipe`);
//! - `oxinetd-tls check`: a service's certificates and key, or a
//!   forward's `forward_tls`, checked at load (`oxinetd::tls::check`).

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    match args.next().as_deref().and_then(|a| a.to_str()) {
        Some("relay") => oxinetd::tls::relay::main(args.collect()),
        Some("check") => oxinetd::tls::check::serve(),
        _ => {
            eprintln!(
                "usage: oxinetd-tls relay SERVER ARGV0 [ARGS...] | oxinetd-tls relay --pipe | oxinetd-tls check\n\
                 (started by oxinetd for its tls services; see oxinetd(8))"
            );
            ExitCode::from(2)
        }
    }
}

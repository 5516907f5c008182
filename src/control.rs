//! The control socket's protocol, shared by the supervisor (which serves it
//! in its event loop, `supervisor/control.rs`) and the `oxinetd status`,
//! `reload` and `stop` commands (the client, [`ask`]).
//!
//! A client connects to the UNIX-domain stream socket, writes one request
//! line, and reads the answer until EOF:
//!
//! ```text
//! status text|json [SERVICE]
//! reload
//! stop [GRACE_MS]
//! ```
//!
//! The answer's first line is `ok` or `error`; the rest is the body (the
//! status table or JSON; `reloaded: kept N, bound N, closed N`; the config
//! errors, one `FILE:LINE:COL: message` a line; the reason a request was
//! refused). A `stop`'s EOF comes when the supervisor exits.
//!
//! Bounds, so no client can hold up the supervisor: a request longer than
//! [`MAX_REQUEST`] bytes is answered with an error and closed; a client
//! still connected [`DEADLINE`] after it connected is closed, whatever it
//! was doing; at most [`MAX_CLIENTS`] are served at once (more are closed
//! as soon as accepted).
//!
//! Who may do what: the socket's file is oxinetd's user's, mode 0600, or
//! 0660 and `control_group`'s group. A peer running as root or as
//! oxinetd's user (its `SO_PEERCRED`) may do everything; any other peer
//! (one the file's group let connect) may only ask for `status`.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest request line, newline included.
pub const MAX_REQUEST: usize = 4096;

/// How long a client may stay connected (a `stop` waiting for the exit
/// excepted).
pub const DEADLINE: Duration = Duration::from_secs(5);

/// Clients served at once.
pub const MAX_CLIENTS: usize = 16;

/// The control socket unless `control_socket` says otherwise: as root
/// `/run/oxinetd/control.sock`; as another user
/// `$XDG_RUNTIME_DIR/oxinetd/control.sock`, or none without that variable.
pub fn default_path() -> Option<PathBuf> {
    if nix::unistd::geteuid().is_root() {
        return Some(PathBuf::from("/run/oxinetd/control.sock"));
    }
    let dir = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from)?;
    dir.is_absolute()
        .then(|| dir.join("oxinetd").join("control.sock"))
}

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Status { json: bool, service: Option<String> },
    Reload,
    Stop { grace: Option<Duration> },
}

impl Request {
    /// Parse one request line (without its newline).
    pub fn parse(line: &str) -> Result<Request, String> {
        let mut words = line.split_ascii_whitespace();
        let req = match words.next() {
            Some("status") => {
                let json = match words.next() {
                    Some("json") => true,
                    Some("text") => false,
                    _ => return Err("usage: status text|json [SERVICE]".into()),
                };
                let service = words.next().map(str::to_string);
                Request::Status { json, service }
            }
            Some("reload") => Request::Reload,
            Some("stop") => {
                let grace = match words.next() {
                    None => None,
                    Some(ms) => match ms.parse::<u64>() {
                        Ok(ms) => Some(Duration::from_millis(ms)),
                        Err(_) => return Err("usage: stop [GRACE_MS]".into()),
                    },
                };
                Request::Stop { grace }
            }
            Some(other) => {
                let shown: String = other.chars().take(32).collect();
                return Err(format!(
                    "unknown request \"{}\" (status, reload, stop)",
                    shown.escape_default()
                ));
            }
            None => return Err("empty request".into()),
        };
        if words.next().is_some() {
            return Err("too many words in the request".into());
        }
        Ok(req)
    }

    /// The request as its line.
    pub fn line(&self) -> String {
        match self {
            Request::Status { json, service } => {
                let mut l = format!("status {}", if *json { "json" } else { "text" });
                if let Some(s) = service {
                    l.push(' ');
                    l.push_str(s);
                }
                l
            }
            Request::Reload => "reload".into(),
            Request::Stop { grace: None } => "stop".into(),
            Request::Stop { grace: Some(g) } => format!("stop {}", g.as_millis()),
        }
    }

    /// Whether only root or oxinetd's own user may ask it.
    pub fn needs_owner(&self) -> bool {
        !matches!(self, Request::Status { .. })
    }
}

/// What a peer may ask, from its uid: root and oxinetd's own user
/// everything, others (let in by the file's group) `status` only.
pub fn may(req: &Request, peer_uid: u32, own_uid: u32, group: bool) -> Result<(), String> {
    if peer_uid == 0 || peer_uid == own_uid {
        return Ok(());
    }
    if !group {
        return Err(format!(
            "permission denied: uid {peer_uid} is not oxinetd's user (no control_group)"
        ));
    }
    if req.needs_owner() {
        return Err(format!(
            "permission denied: uid {peer_uid} may only ask for status \
             (reload and stop need root or oxinetd's user)"
        ));
    }
    Ok(())
}

/// The supervisor's answer.
#[derive(Debug)]
pub struct Answer {
    pub ok: bool,
    pub body: String,
}

/// Ask the supervisor at `path`; wait up to `patience` for each read.
pub fn ask(path: &Path, req: &Request, patience: Duration) -> io::Result<Answer> {
    let mut s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(patience))?;
    s.set_write_timeout(Some(DEADLINE))?;
    s.write_all(format!("{}\n", req.line()).as_bytes())?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply)?;
    let reply = String::from_utf8_lossy(&reply);
    let (head, body) = reply.split_once('\n').unwrap_or((&reply, ""));
    match head {
        "ok" => Ok(Answer {
            ok: true,
            body: body.to_string(),
        }),
        "error" => Ok(Answer {
            ok: false,
            body: body.to_string(),
        }),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the answer is not oxinetd's (or it closed without one)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        for r in [
            Request::Status {
                json: true,
                service: Some("echo".into()),
            },
            Request::Status {
                json: false,
                service: None,
            },
            Request::Reload,
            Request::Stop { grace: None },
            Request::Stop {
                grace: Some(Duration::from_millis(2500)),
            },
        ] {
            assert_eq!(Request::parse(&r.line()), Ok(r));
        }
        assert!(Request::parse("status").is_err());
        assert!(Request::parse("reload now").is_err());
        assert!(Request::parse("").is_err());
        assert!(Request::parse("stop soon").is_err());
    }

    #[test]
    fn who_may_do_what() {
        let status = Request::Status {
            json: false,
            service: None,
        };
        assert!(may(&Request::Reload, 0, 0, false).is_ok());
        assert!(may(&Request::Reload, 1000, 1000, false).is_ok());
        assert!(may(&status, 65534, 0, false).is_err());
        assert!(may(&status, 65534, 0, true).is_ok());
        assert!(may(&Request::Reload, 65534, 0, true).is_err());
        assert!(may(&Request::Stop { grace: None }, 65534, 0, true).is_err());
    }
}

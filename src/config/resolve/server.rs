//! `server` (a program, or `internal:NAME`), `argv0` and `args`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::field::Field;
use super::{io_problem, reach, Resolver, Svc};
use crate::config::error::quote;
use crate::config::ConfigError;
use crate::internal::Internal;
use crate::privilege::Identity;

/// What `server` names.
pub enum Server {
    Exec(PathBuf),
    Internal(Internal),
}

impl Resolver<'_> {
    /// `server`, required. Resolved first: an internal service needs no
    /// identity or argv.
    pub(super) fn server(&mut self, svc: &Svc<'_>, root: Option<&Path>) -> Option<Server> {
        let Some(f) = svc.get("server") else {
            svc.report_here(format!("service{} has no server", svc.label()));
            return None;
        };
        svc.ok(f.str().and_then(|s| match s.strip_prefix("internal:") {
            Some(n) => Internal::from_name(n).map(Server::Internal).ok_or_else(|| {
                let names: Vec<&str> = Internal::ALL.iter().map(|i| i.name()).collect();
                f.err(format!(
                    "server: no internal service \"{n}\" (there are {})",
                    names.join(", ")
                ))
            }),
            None => match root {
                None => check_server(f, s, &mut self.programs).map(Server::Exec),
                Some(root) => check_inside(f, s, root, &mut self.programs).map(Server::Exec),
            },
        }))
    }
}

impl Resolver<'_> {
    /// The program, as `server` resolved it, can be reached and run by
    /// the user its handlers switch to (`reach`); checked once per program
    /// and identity. Handlers that keep oxinetd's own ids need no check:
    /// oxinetd found the file with them.
    pub(super) fn reachable(
        &mut self,
        svc: &Svc<'_>,
        server: &Path,
        root: Option<&Path>,
        identity: &Identity,
    ) {
        let Identity::Switch {
            user,
            uid,
            gid,
            groups,
        } = identity
        else {
            return;
        };
        let who = reach::Who {
            user,
            uid: *uid,
            gid: *gid,
            groups,
        };
        let inside = root.unwrap_or(Path::new("/"));
        let key = (
            inside.to_path_buf(),
            server.to_path_buf(),
            *uid,
            *gid,
            groups.clone(),
        );
        let problem = self
            .reach
            .entry(key)
            .or_insert_with(|| reach::blocker(inside, server, &who));
        let (Some(problem), Some(f)) = (problem, svc.get("server")) else {
            return;
        };
        let written = f.str().unwrap_or_default();
        let note = match (root, Path::new(written).is_absolute()) {
            (Some(root), _) => format!(" (inside chroot {})", root.display()),
            (None, true) => String::new(),
            (None, false) => " (relative to the config file's directory)".to_owned(),
        };
        svc.report(f.err(format!(
            "server \"{s}\"{note}: {problem}",
            s = quote(written)
        )));
    }
}

/// `argv0` (default: the server's file name) and `args`.
pub fn argv(svc: &Svc<'_>, server: Option<&Server>) -> (Option<String>, Vec<String>) {
    let argv0 = match (svc.get("argv0"), server) {
        (Some(f), _) => svc.ok(f.str().map(str::to_owned)),
        (None, Some(Server::Exec(p))) => Some(
            p.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        ),
        (None, _) => Some(String::new()),
    };
    let args = svc
        .get("args")
        .and_then(|f| svc.ok(f.list()))
        .map(|v| v.into_iter().map(|(s, _)| s.to_owned()).collect())
        .unwrap_or_default();
    (argv0, args)
}

/// An argument cannot hold a NUL byte (reported after the other checks).
pub fn check_args(svc: &Svc<'_>, args: &[String]) {
    if let Some(f) = svc.get("args") {
        if args.iter().any(|a| a.contains('\0')) {
            svc.report(f.err("args: an argument contains a NUL byte"));
        }
    }
}

/// An internal service that only speaks over a stream (metrics: HTTP)
/// cannot be given a datagram socket.
pub fn check_kind(svc: &Svc<'_>, internal: Internal, kind: crate::config::SocketKind) {
    if kind == crate::config::SocketKind::Dgram && !internal.serves_datagrams() {
        if let Some(f) = svc.get("server") {
            svc.report(f.err(format!(
                "server: internal:{} is served over TCP only (socket = \"stream\")",
                internal.name()
            )));
        }
    }
}

/// Whether `server` names an internal service (read before the rest).
pub fn names_internal(svc: &Svc<'_>) -> bool {
    svc.get("server")
        .and_then(|f| f.str().ok())
        .is_some_and(|s| s.starts_with("internal:"))
}

/// The server of a chrooted service: an absolute path inside `root`,
/// checked there (the handler execs it after the chroot).
fn check_inside(
    f: Field<'_>,
    s: &str,
    root: &Path,
    checked: &mut HashMap<PathBuf, Option<String>>,
) -> Result<PathBuf, ConfigError> {
    let Some(inner) = s.strip_prefix('/') else {
        return Err(f.err(format!(
            "server \"{}\": with chroot, give the program's absolute path inside {}",
            quote(s),
            root.display()
        )));
    };
    // Links in the root lead where the handler's lookup leads, inside it.
    let problem = match reach::inside(root, Path::new("/").join(inner).as_path()) {
        Ok(host) => program_problem(&host, checked),
        Err(e) => Some(io_problem(&e)),
    };
    match problem {
        None => Ok(PathBuf::from(s)),
        Some(problem) => Err(f.err(format!(
            "server \"{}\" (inside chroot {}): {problem}",
            quote(s),
            root.display()
        ))),
    }
}

/// The server as an absolute path (relative ones are taken from the config
/// file's directory), checked to be an executable regular file (once per
/// path: `checked`). Messages quote the path as written.
fn check_server(
    f: Field<'_>,
    s: &str,
    checked: &mut HashMap<PathBuf, Option<String>>,
) -> Result<PathBuf, ConfigError> {
    if s.is_empty() || s.contains('\0') {
        return Err(f.err("server: expected a path to a program"));
    }
    let written = Path::new(s);
    let (path, note) = if written.is_absolute() {
        (written.to_path_buf(), "")
    } else {
        let joined = f.dir().join(written);
        (
            std::path::absolute(&joined).unwrap_or(joined),
            " (relative to the config file's directory)",
        )
    };
    match program_problem(&path, checked) {
        None => Ok(path),
        Some(problem) => Err(f.err(format!("server \"{s}\"{note}: {problem}", s = quote(s)))),
    }
}

/// What keeps `path` from being run as a program, if anything (once per
/// path: `checked`).
fn program_problem(path: &Path, checked: &mut HashMap<PathBuf, Option<String>>) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    checked
        .entry(path.to_path_buf())
        .or_insert_with_key(|path| match std::fs::metadata(path) {
            Err(e) => Some(io_problem(&e)),
            Ok(m) if !m.is_file() => Some("not a regular file".to_string()),
            Ok(m) if m.permissions().mode() & 0o111 == 0 => Some("not executable".to_string()),
            Ok(_) => None,
        })
        .clone()
}

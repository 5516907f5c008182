//! `chroot`, `private_tmp`, `private_network`: the filesystem and network
//! a handler sees. Each needs oxinetd to run as root (the child sets them
//! up before it drops privileges).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::field::Field;
use super::{io_problem, reach, Svc};
use crate::config::error::quote;
use crate::confine::Confine;

/// The sandbox keys of a program's service, into `c`; `euid` is
/// oxinetd's own.
pub fn resolve(svc: &Svc<'_>, euid: u32, c: &mut Confine) {
    if let Some(f) = svc.get("chroot") {
        c.chroot = svc.ok(f.str().and_then(|s| match chroot_dir(s) {
            Ok(p) => Ok(p),
            Err(m) => Err(f.err(format!("chroot \"{}\": {m}", quote(s)))),
        }));
        needs_root(svc, f, euid);
    }
    if let Some(f) = svc.get("private_network") {
        c.private_network = svc.ok(f.bool()).unwrap_or(false);
        if c.private_network {
            needs_root(svc, f, euid);
        }
    }
    if let Some(f) = svc.get("private_tmp") {
        c.private_tmp = svc.ok(f.bool()).unwrap_or(false);
        if c.private_tmp {
            needs_root(svc, f, euid);
            if crate::spawn::private_tmp_dirs(c).is_empty() {
                let root = c.chroot.as_deref().unwrap_or(Path::new("/"));
                svc.report(f.err(format!(
                    "private_tmp: neither tmp nor var/tmp is a directory under {}",
                    root.display()
                )));
            }
        }
    }
}

/// A program under /tmp or /var/tmp would be hidden by the empty tmpfs
/// `private_tmp` mounts there before exec (both looked up as the handler
/// does: links followed, inside the chroot if any).
pub fn check_server(svc: &Svc<'_>, c: &Confine, server: &Path) {
    let Some(f) = svc.get("private_tmp").filter(|_| c.private_tmp) else {
        return;
    };
    let root = c.chroot.as_deref().unwrap_or(Path::new("/"));
    // A server that cannot be found is reported by `server`.
    let Ok(program) = reach::inside(root, server) else {
        return;
    };
    let covered = ["/tmp", "/var/tmp"]
        .into_iter()
        .find(|d| reach::inside(root, Path::new(d)).is_ok_and(|dir| program.starts_with(dir)));
    if let Some(dir) = covered {
        svc.report(f.err(format!(
            "private_tmp: server {} is under {dir}, which private_tmp covers with an empty tmpfs",
            server.display(),
        )));
    }
}

/// Namespaces, mounts and chroot take root's privileges.
fn needs_root(svc: &Svc<'_>, f: Field<'_>, euid: u32) {
    if euid != 0 {
        svc.report(f.err(format!(
            "{}: needs oxinetd to run as root (it runs as uid {euid})",
            f.name
        )));
    }
}

/// A chroot directory as sshd wants its `ChrootDirectory`: an absolute
/// path to a directory that root owns and only root can write, under
/// directories only root can change (a sticky one, such as /tmp, does:
/// others cannot rename what root owns in it). Otherwise whoever can
/// write it could plant a program or a library the handler then runs.
/// Links are resolved first and the real path checked and used: a link
/// through a directory someone else owns would let them swap the root.
fn chroot_dir(s: &str) -> Result<PathBuf, String> {
    if !Path::new(s).is_absolute() || s.contains('\0') {
        return Err("expected an absolute path to a directory".to_owned());
    }
    let real = std::fs::canonicalize(s).map_err(|e| io_problem(&e))?;
    let path = real.as_path();
    let meta = std::fs::metadata(path).map_err(|e| io_problem(&e))?;
    if !meta.is_dir() {
        return Err("not a directory".to_owned());
    }
    if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        return Err(format!(
            "must be owned by root and writable by root only (owner uid {}, mode {:04o})",
            meta.uid(),
            meta.mode() & 0o7777
        ));
    }
    for dir in path.ancestors().skip(1) {
        let m = std::fs::metadata(dir).map_err(|e| io_problem(&e))?;
        let sticky = m.mode() & 0o1000 != 0;
        if !sticky && (m.uid() != 0 || m.mode() & 0o022 != 0) {
            return Err(format!(
                "{} can be changed by someone other than root (owner uid {}, mode {:04o})",
                dir.display(),
                m.uid(),
                m.mode() & 0o7777
            ));
        }
    }
    Ok(path.to_path_buf())
}

//! The directories above a UNIX-domain socket: who could change what the
//! socket's path names while oxinetd (root) binds it, chowns and chmods it.
//!
//! Every directory on the path, from `/` down, must be a real directory
//! (never a symbolic link), owned by root or by oxinetd's own user, and
//! writable by nobody else; an ancestor (not the socket's own directory)
//! may be world- or group-writable only with the sticky bit, like `/tmp`,
//! because the next component, also checked, is then root's and nobody
//! else can rename it. The socket's owner (`socket_owner`) gets no say:
//! the owner of a directory can rename entries in it, which is how a
//! symlink could be swapped in under a root `chmod`.
//!
//! Under that rule nobody but root can change what the path resolves to,
//! so the file oxinetd binds is the one it then changes, through the
//! directory's descriptor and without following a link.

use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, openat, AtFlags, OFlag};
use nix::sys::stat::{fchmodat, fstat, fstatat, mkdirat, FchmodatFlags, Mode, SFlag};

/// Mode of the directories oxinetd makes for a socket.
const DIR_MODE: u32 = 0o755;

/// Whether a directory at `at` with `mode` and owner `uid` may hold a
/// socket (`parent`) or lie above one, for a process running as `euid`.
fn judge(at: &Path, mode: u32, uid: u32, euid: u32, parent: bool) -> Result<(), String> {
    if uid != 0 && uid != euid {
        return Err(format!(
            "{} is owned by uid {uid}: every directory above a UNIX-domain socket \
             must be root's (or oxinetd's own user's)",
            at.display()
        ));
    }
    let writable = mode & 0o022;
    let sticky = mode & libc::S_ISVTX != 0;
    if writable != 0 && (parent || !sticky) {
        let who = if writable & 0o002 != 0 {
            "anyone"
        } else {
            "its group"
        };
        let hint = if parent && sticky {
            "; give the socket a directory of its own (such as /run/NAME/)"
        } else {
            ""
        };
        return Err(format!(
            "{} is writable by {who} (mode {:04o}): the directories above a UNIX-domain \
             socket must be writable by root only{hint}",
            at.display(),
            mode & 0o7777
        ));
    }
    Ok(())
}

/// The directory components of `path` (absolute) and its file name.
fn split(path: &Path) -> Result<(Vec<&OsStr>, &OsStr), String> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => parts.push(n),
            Component::ParentDir | Component::Prefix(_) => {
                return Err("a UNIX-domain socket path may not contain \"..\"".into())
            }
        }
    }
    match parts.pop() {
        Some(name) if path.is_absolute() => Ok((parts, name)),
        _ => Err("not an absolute path to a file".into()),
    }
}

/// The load-time check of `path`: each directory that exists must pass
/// `judge`; the missing ones oxinetd will make itself. Bind checks again.
pub fn check(path: &Path, euid: u32) -> Result<(), String> {
    let (dirs, _) = split(path)?;
    let mut at = PathBuf::from("/");
    for i in 0..=dirs.len() {
        if i > 0 {
            at.push(dirs[i - 1]);
        }
        let meta = match std::fs::symlink_metadata(&at) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(format!("{}: {e}", at.display())),
        };
        if meta.file_type().is_symlink() {
            return Err(not_followed(&at));
        }
        if !meta.is_dir() {
            return Err(format!("{} is not a directory", at.display()));
        }
        judge(&at, meta.mode(), meta.uid(), euid, i == dirs.len())?;
    }
    Ok(())
}

fn not_followed(at: &Path) -> String {
    format!(
        "{} is a symbolic link: a UNIX-domain socket path must name its real directory \
         (links are not followed)",
        at.display()
    )
}

fn denied(m: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, m)
}

/// Open the directory of the socket at `path` (`O_PATH`), one component at
/// a time without following links, checking each as [`check`] does; when
/// `create`, make the missing ones (0755, root's). Its file name too.
pub fn open_parent(path: &Path, create: bool) -> io::Result<(OwnedFd, &OsStr)> {
    let euid = nix::unistd::geteuid().as_raw();
    let (dirs, name) = split(path).map_err(denied)?;
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut dir = open("/", flags, Mode::empty())?;
    let mut at = PathBuf::from("/");
    let st = fstat(&dir)?;
    judge(&at, st.st_mode, st.st_uid, euid, dirs.is_empty()).map_err(denied)?;
    for (i, c) in dirs.iter().enumerate() {
        at.push(c);
        let mut made = false;
        let next = match openat(&dir, *c, flags, Mode::empty()) {
            Err(Errno::ENOENT) if create => {
                match mkdirat(&dir, *c, Mode::from_bits_truncate(DIR_MODE)) {
                    Ok(()) => made = true,
                    Err(Errno::EEXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                openat(&dir, *c, flags, Mode::empty())
            }
            other => other,
        };
        let next = match next {
            Ok(fd) => fd,
            Err(Errno::ENOTDIR | Errno::ELOOP) => {
                let link = fstatat(&dir, *c, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .is_ok_and(|s| s.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFLNK.bits());
                return Err(denied(if link {
                    not_followed(&at)
                } else {
                    format!("{} is not a directory", at.display())
                }));
            }
            Err(e) => {
                return Err(io::Error::new(
                    io::Error::from(e).kind(),
                    format!("{}: {e}", at.display()),
                ))
            }
        };
        let st = fstat(&next)?;
        judge(&at, st.st_mode, st.st_uid, euid, i + 1 == dirs.len()).map_err(denied)?;
        if made && st.st_mode & 0o7777 != DIR_MODE {
            // Whatever the umask: `dir` is root's alone, so `c` is the
            // directory just made and checked.
            fchmodat(
                &dir,
                *c,
                Mode::from_bits_truncate(DIR_MODE),
                FchmodatFlags::FollowSymlink,
            )?;
        }
        dir = next;
    }
    Ok((dir, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_rule() {
        let p = Path::new("/x");
        assert!(judge(p, 0o40755, 0, 0, true).is_ok());
        assert!(judge(p, 0o40755, 7, 7, true).is_ok());
        assert!(judge(p, 0o41777, 0, 0, false).is_ok());
        let e = judge(p, 0o41777, 0, 0, true).unwrap_err();
        assert!(e.contains("writable by anyone (mode 1777)"), "{e}");
        assert!(judge(p, 0o40775, 0, 0, false).is_err());
        assert!(judge(p, 0o40755, 65534, 0, false).is_err());
        assert!(split(Path::new("/a/../b")).is_err());
        assert_eq!(split(Path::new("/s")).unwrap(), (vec![], OsStr::new("s")));
    }

    #[test]
    fn missing_directories_are_made_and_links_are_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let euid = nix::unistd::geteuid().as_raw();
        let path = tmp.path().join("a/b/s.sock");
        assert!(check(&path, euid).is_ok());
        let (_, name) = open_parent(&path, true).unwrap();
        assert_eq!(name, "s.sock");
        let mode = std::fs::metadata(tmp.path().join("a/b")).unwrap().mode();
        assert_eq!(mode & 0o7777, 0o755);

        let target = tmp.path().join("target");
        std::fs::create_dir(&target).unwrap();
        std::os::unix::fs::symlink(&target, tmp.path().join("link")).unwrap();
        let path = tmp.path().join("link/c/s.sock");
        let e = check(&path, euid).unwrap_err();
        assert!(e.contains("is a symbolic link"), "{e}");
        let e = open_parent(&path, true).unwrap_err();
        assert!(e.to_string().contains("is a symbolic link"), "{e}");
        assert!(!target.join("c").exists());

        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let e = open_parent(&open.join("s.sock"), true).unwrap_err();
        assert!(e.to_string().contains("writable by anyone"), "{e}");
        assert!(open_parent(&open.join("own/s.sock"), true).is_ok());
    }
}

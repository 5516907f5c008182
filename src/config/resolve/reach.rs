//! Whether a handler's user can reach and run its server: every directory
//! on the way searchable, the file executable (and readable if it is a
//! `#!` script, which its interpreter opens) by that uid, gid and groups.
//!
//! oxinetd (root) stats the path and finds the program; the handler,
//! switched to its user, may not: a checkout in a 0700 home passes the
//! file checks and then every connection fails at `execve` with EACCES.
//! This finds that at `check`, and names the directory that blocks.
//!
//! The path is walked as the kernel walks it, symbolic links followed, and
//! each step judged by its mode bits, owner and group; for a chrooted
//! handler, from its root, links resolved inside it (`inside` gives that
//! walk's file for `server`'s own checks). A file or directory
//! with an ACL is given the benefit of the doubt (its ACL may grant what
//! its mode denies); mount options (`noexec`) and security modules are not
//! looked at.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// Symbolic links followed in one walk before giving up, as the kernel's
/// `ELOOP` limit.
const MAX_LINKS: usize = 40;

/// Who a handler runs as.
pub struct Who<'a> {
    pub user: &'a str,
    pub uid: u32,
    pub gid: u32,
    pub groups: &'a [u32],
}

impl Who<'_> {
    /// Whether the mode bits `bit` (4 read, 1 execute or search) of `m`
    /// are granted to this user: the owner's, else the group's, else the
    /// others' (as the kernel chooses, the first class that matches).
    fn may(&self, m: &Metadata, bit: u32) -> bool {
        let shift = if m.uid() == self.uid {
            6
        } else if m.gid() == self.gid || self.groups.contains(&m.gid()) {
            3
        } else {
            0
        };
        (m.mode() >> shift) & bit != 0
    }
}

/// What keeps `who` from running `path` (absolute, as seen inside `root`:
/// "/" or a handler's chroot), as a message; `None` when nothing does, or
/// it cannot be told (something on the way cannot be read even by
/// oxinetd: the other checks report that).
pub fn blocker(root: &Path, path: &Path, who: &Who<'_>) -> Option<String> {
    if who.uid == 0 {
        return None;
    }
    let file = match walk(root, path, Some(who)) {
        Ok(file) => file,
        Err(Stop::Denied(msg)) => return Some(msg),
        Err(Stop::Io(_)) => return None,
    };
    let meta = std::fs::metadata(&file).ok()?;
    if !who.may(&meta, 1) && !crate::sys::has_acl(&file) {
        return Some(denied(&file, &meta, "executable", who));
    }
    if is_script(&file) && !who.may(&meta, 4) && !crate::sys::has_acl(&file) {
        return Some(format!(
            "{} is a script, and its interpreter cannot read it as {} (mode {:04o}, owner {})",
            file.display(),
            who.user,
            meta.mode() & 0o7777,
            owner(&meta)
        ));
    }
    None
}

/// The file `path` (absolute) names for a process whose root directory
/// is `root`, as a path on the host: links followed inside the root, as
/// the kernel follows them after `chroot` (an absolute target starts
/// again at `root`, `..` never climbs above it), never to the host's
/// tree. An error as the kernel's lookup would give it.
pub fn inside(root: &Path, path: &Path) -> std::io::Result<PathBuf> {
    walk(root, path, None).map_err(|stop| match stop {
        Stop::Io(e) => e,
        Stop::Denied(msg) => std::io::Error::other(msg),
    })
}

/// Why a walk stopped.
enum Stop {
    /// What the lookup met (no such file, a loop of links...).
    Io(std::io::Error),
    /// A directory on the way `who` cannot search.
    Denied(String),
}

/// `path` looked up name by name from `root`, as the kernel does with
/// `root` as the process's root directory: the host path of the file it
/// leads to, every link followed (the last one too). With `who`, each
/// directory looked up in must be searchable by them.
fn walk(root: &Path, path: &Path, who: Option<&Who<'_>>) -> Result<PathBuf, Stop> {
    let mut dir = root.to_path_buf();
    let mut rest: VecDeque<OsString> = parts(path);
    let mut links = 0;
    while let Some(name) = rest.pop_front() {
        // Looking a name up in `dir` needs search permission on it.
        if let Some(who) = who {
            let meta = std::fs::metadata(&dir).map_err(Stop::Io)?;
            if !who.may(&meta, 1) && !crate::sys::has_acl(&dir) {
                return Err(Stop::Denied(denied(&dir, &meta, "searchable", who)));
            }
        }
        if name == ".." {
            if dir != root {
                dir.pop();
            }
            continue;
        }
        let next = dir.join(&name);
        let meta = std::fs::symlink_metadata(&next).map_err(Stop::Io)?;
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return Err(Stop::Io(std::io::Error::from_raw_os_error(libc::ELOOP)));
            }
            let target = std::fs::read_link(&next).map_err(Stop::Io)?;
            if target.is_absolute() {
                dir = root.to_path_buf();
            }
            for part in parts(&target).into_iter().rev() {
                rest.push_front(part);
            }
            continue;
        }
        if !rest.is_empty() && !meta.is_dir() {
            return Err(Stop::Io(std::io::Error::from_raw_os_error(libc::ENOTDIR)));
        }
        dir = next;
    }
    Ok(dir)
}

/// The names of `path` to look up in turn (`.` and the root dropped).
fn parts(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

fn denied(path: &Path, meta: &Metadata, what: &str, who: &Who<'_>) -> String {
    format!(
        "{} is not {what} by {} (mode {:04o}, owner {})",
        path.display(),
        who.user,
        meta.mode() & 0o7777,
        owner(meta)
    )
}

/// The owner's name, or its uid when it has none.
fn owner(meta: &Metadata) -> String {
    crate::privilege::user_name(meta.uid()).unwrap_or_else(|| format!("uid {}", meta.uid()))
}

/// Whether the file starts with `#!`.
fn is_script(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 2];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| &head == b"#!")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Judged by mode bits as the test's own ids see them: a user who is
    /// neither the owner nor in the group gets the others' bits.
    #[test]
    fn the_blocking_directory_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        std::fs::create_dir_all(home.join("bin")).unwrap();
        let prog = home.join("bin/x.sh");
        std::fs::write(&prog, "#!/bin/sh\n").unwrap();
        chmod(tmp.path(), 0o755);
        chmod(&home.join("bin"), 0o755);
        chmod(&prog, 0o755);
        let me = std::fs::metadata(&prog).unwrap();
        let stranger = Who {
            user: "stranger",
            uid: me.uid().wrapping_add(12345),
            gid: me.gid().wrapping_add(12345),
            groups: &[],
        };
        chmod(&home, 0o755);
        assert_eq!(blocker(Path::new("/"), &prog, &stranger), None);

        chmod(&home, 0o700);
        let msg = blocker(Path::new("/"), &prog, &stranger).unwrap();
        assert!(
            msg.starts_with(&format!(
                "{} is not searchable by stranger (mode 0700, owner ",
                home.display()
            )),
            "{msg}"
        );
        // The same through a symbolic link and a `..`.
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink("home/bin", &link).unwrap();
        let via = link.join("../bin/x.sh");
        let msg = blocker(Path::new("/"), &via, &stranger).unwrap();
        assert!(msg.starts_with(&home.display().to_string()), "{msg}");

        chmod(&home, 0o755);
        chmod(&prog, 0o744);
        let msg = blocker(Path::new("/"), &prog, &stranger).unwrap();
        assert!(
            msg.contains("x.sh is not executable by stranger (mode 0744"),
            "{msg}"
        );
        chmod(&prog, 0o711);
        let msg = blocker(Path::new("/"), &prog, &stranger).unwrap();
        assert!(msg.contains("is a script"), "{msg}");

        // The owner gets the owner's bits, a member the group's.
        let owner = Who {
            user: "owner",
            uid: me.uid(),
            gid: me.gid().wrapping_add(1),
            groups: &[],
        };
        chmod(&prog, 0o700);
        chmod(&home, 0o700);
        assert_eq!(blocker(Path::new("/"), &prog, &owner), None);
        let member = Who {
            user: "member",
            uid: me.uid().wrapping_add(1),
            gid: me.gid().wrapping_add(1),
            groups: &[me.gid()],
        };
        chmod(&home, 0o750);
        chmod(&prog, 0o750);
        assert_eq!(blocker(Path::new("/"), &prog, &member), None);
        chmod(&prog, 0o700);
        assert!(blocker(Path::new("/"), &prog, &member).is_some());
    }

    /// Inside a root, links lead inside it: an absolute target starts at
    /// the root, `..` stops there, and a name only the host has is not
    /// found.
    #[test]
    fn links_inside_a_root_stay_inside_it() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::create_dir_all(root.join("opt")).unwrap();
        std::fs::write(root.join("opt/prog"), "").unwrap();
        std::os::unix::fs::symlink("/opt/prog", root.join("bin/abs")).unwrap();
        std::os::unix::fs::symlink("../../../opt/prog", root.join("bin/up")).unwrap();
        // On the host this leads to the test's own directory.
        let host = tmp.path().join("host-only");
        std::fs::write(&host, "").unwrap();
        std::os::unix::fs::symlink(&host, root.join("bin/out")).unwrap();
        let want = root.join("opt/prog");
        assert_eq!(inside(&root, Path::new("/bin/abs")).unwrap(), want);
        assert_eq!(inside(&root, Path::new("/bin/up")).unwrap(), want);
        assert_eq!(inside(&root, Path::new("/../opt/prog")).unwrap(), want);
        let e = inside(&root, Path::new("/bin/out")).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        let e = inside(&root, Path::new("/opt/prog/x")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTDIR));
        std::os::unix::fs::symlink("loop", root.join("bin/loop")).unwrap();
        let e = inside(&root, Path::new("/bin/loop")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
    }
}

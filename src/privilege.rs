//! Resolution of `user`/`group` to the ids a handler runs with, done once at
//! config time so that the child only has to call setgroups/setgid/setuid.
//!
//! The rules (what `oxinetd check` enforces):
//!
//! | oxinetd runs as | `user` set            | handler runs as                  |
//! |-----------------|-----------------------|----------------------------------|
//! | root            | yes                   | that user, group, groups         |
//! | root            | no                    | rejected: nothing runs as root unless `user = "root"` |
//! | another user    | no, or the same user  | the invoking user, unchanged     |
//! | another user    | a different user      | rejected: only root can switch   |
//!
//! The lookups run in a short-lived forked child ([`crate::sys::in_child`]):
//! they go through nsswitch exactly as in-process ones would (LDAP, sss,
//! systemd users all work), but the NSS modules glibc loads for them, and
//! the libraries those pull in, end with the child instead of staying
//! mapped in the supervisor for its lifetime (about 0.6 MiB of RSS with
//! Debian's default `files systemd`). One child per distinct
//! `user`/`group`/`groups` of a load (the config front-end caches them).
//! A build on a C library without NSS modules (musl) asks the system's
//! `getent` instead, so it finds the same users; it needs no lookup child
//! (nothing is loaded), and runs the queries of one identity at once.

use nix::unistd::{Gid, Group, Uid, User};

/// Who a handler runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// Keep oxinetd's own ids (oxinetd is not root).
    Inherit,
    /// Switch to these ids in the child before exec.
    Switch {
        user: String,
        uid: u32,
        gid: u32,
        /// Supplementary groups, from the group database.
        groups: Vec<u32>,
    },
}

impl Identity {
    /// `user`/`group` as configured, checked against the ids oxinetd runs with.
    /// `supplementary`: the user's other groups from the group database
    /// (`groups = true`, the default), or only `gid` (xinetd's default).
    pub fn resolve(
        user: Option<&str>,
        group: Option<&str>,
        supplementary: bool,
        euid: u32,
        egid: u32,
    ) -> Result<Identity, String> {
        if user.is_none() {
            // Nothing to look up.
            return Identity::resolve_here(user, group, supplementary, euid, egid);
        }
        // Without NSS modules in this C library the lookups are `getent`
        // processes: nothing is loaded here, so no lookup child is needed.
        if getent::used() {
            return Identity::resolve_here(user, group, supplementary, euid, egid);
        }
        let lookup = || {
            let found = Identity::resolve_here(user, group, supplementary, euid, egid);
            encode(&found)
        };
        match crate::sys::in_child(lookup) {
            Some(Ok(bytes)) => decode(&bytes).ok_or_else(|| {
                format!(
                    "unable to look up user \"{}\": malformed answer from the lookup process",
                    user.unwrap_or_default()
                )
            })?,
            Some(Err(e)) => Err(format!(
                "unable to look up user \"{}\": {e}",
                user.unwrap_or_default()
            )),
            None => Identity::resolve_here(user, group, supplementary, euid, egid),
        }
    }

    /// [`Identity::resolve`] in this process.
    fn resolve_here(
        user: Option<&str>,
        group: Option<&str>,
        supplementary: bool,
        euid: u32,
        egid: u32,
    ) -> Result<Identity, String> {
        let Some(user_name) = user else {
            if euid == 0 {
                return Err(
                    "no user: oxinetd runs as root and will not run handlers as root \
                     unless the config says user = \"root\""
                        .into(),
                );
            }
            if group.is_some() {
                return Err("group is set but user is not".into());
            }
            return Ok(Identity::Inherit);
        };
        // With `getent`, the group and the user's groups are asked for
        // while the user is looked up: processes at once rather than one
        // after the other.
        let early_group = group.and_then(|g| getent::start("group", g));
        let early_groups = (supplementary && euid == 0)
            .then(|| getent::start("initgroups", user_name))
            .flatten();
        let user = lookup_user(user_name)?;
        let gid = match group {
            Some(g) => lookup_group(g, early_group)?,
            None => user.gid,
        };
        if euid != 0 {
            if user.uid == euid && (group.is_none() || gid == egid) {
                return Ok(Identity::Inherit);
            }
            return Err(format!(
                "user \"{user_name}\"{}: oxinetd is not running as root, so handlers can \
                 only run as oxinetd's own user",
                group.map(|g| format!(" group \"{g}\"")).unwrap_or_default()
            ));
        }
        let groups = if supplementary {
            member_groups(&user.name, gid, early_groups)
                .map_err(|e| format!("user \"{user_name}\": unable to read its groups: {e}"))?
        } else {
            vec![gid]
        };
        Ok(Identity::Switch {
            user: user.name,
            uid: user.uid,
            gid,
            groups,
        })
    }
}

/// `USER` or `USER:GROUP` (names or numbers) as uid and gid, the owner of
/// a UNIX-domain socket's file; the user's own group when no group is
/// given. The same lookup as a handler's identity (in a child), without
/// supplementary groups and without the rules on who oxinetd runs as,
/// which the caller applies.
pub fn lookup_owner(spec: &str) -> Result<(u32, u32), String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    match Identity::resolve(Some(user), group, false, 0, 0)? {
        Identity::Switch { uid, gid, .. } => Ok((uid, gid)),
        Identity::Inherit => Err(format!("\"{spec}\": not a user")),
    }
}

/// The name of the account `uid`, for messages (the owner of a file):
/// looked up as handlers' identities are (in a child, or with `getent`);
/// `None` when there is no such account or it cannot be asked.
pub fn user_name(uid: u32) -> Option<String> {
    let lookup = || lookup_user(&uid.to_string()).map(|a| a.name);
    let found = if getent::used() {
        lookup()
    } else {
        match crate::sys::in_child(|| lookup().map(String::into_bytes).unwrap_or_default()) {
            Some(Ok(bytes)) => String::from_utf8(bytes).map_err(|_| String::new()),
            Some(Err(_)) => return None,
            None => lookup(),
        }
    };
    found.ok().filter(|n| !n.is_empty())
}

/// The answer of a lookup child: `E` and the message, `I`, or `S` and
/// `uid gid group...` on one line, then the user name.
fn encode(found: &Result<Identity, String>) -> Vec<u8> {
    match found {
        Err(m) => format!("E{m}"),
        Ok(Identity::Inherit) => "I".to_owned(),
        Ok(Identity::Switch {
            user,
            uid,
            gid,
            groups,
        }) => {
            let mut s = format!("S{uid} {gid}");
            for g in groups {
                s.push_str(&format!(" {g}"));
            }
            format!("{s}\n{user}")
        }
    }
    .into_bytes()
}

fn decode(bytes: &[u8]) -> Option<Result<Identity, String>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (kind, rest) = text.split_at_checked(1)?;
    match kind {
        "E" => Some(Err(rest.to_owned())),
        "I" if rest.is_empty() => Some(Ok(Identity::Inherit)),
        "S" => {
            let (ids, user) = rest.split_once('\n')?;
            let mut ids = ids.split(' ').map(str::parse::<u32>);
            let uid = ids.next()?.ok()?;
            let gid = ids.next()?.ok()?;
            let groups = ids.collect::<Result<Vec<u32>, _>>().ok()?;
            Some(Ok(Identity::Switch {
                user: user.to_owned(),
                uid,
                gid,
                groups,
            }))
        }
        _ => None,
    }
}

/// What a handler's identity needs of a passwd entry.
struct Account {
    name: String,
    uid: u32,
    gid: u32,
}

// Lookups go through the C library. glibc's answers come from nsswitch
// (LDAP, sss, systemd users included). musl has no NSS modules: it reads
// /etc/passwd and /etc/group only. So a build on another C library asks
// the system's `getent` first, which answers through the system's NSS,
// and uses its own C library only where there is no `getent`.

fn lookup_user(name: &str) -> Result<Account, String> {
    if let Some(found) = getent::answer(None, "passwd", name) {
        let line = found?.ok_or_else(|| format!("unknown user \"{name}\""))?;
        return getent::account(&line)
            .ok_or_else(|| format!("user \"{name}\": getent gave a malformed entry: {line}"));
    }
    let found = match name.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)),
        Err(_) => User::from_name(name),
    };
    match found {
        Ok(Some(u)) => Ok(Account {
            name: u.name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
        }),
        Ok(None) => Err(format!("unknown user \"{name}\"")),
        Err(e) => Err(format!("unable to look up user \"{name}\": {e}")),
    }
}

/// `early`: `getent group NAME` already started.
fn lookup_group(name: &str, early: Option<getent::Pending>) -> Result<u32, String> {
    if let Some(found) = getent::answer(early, "group", name) {
        let line = found?.ok_or_else(|| format!("unknown group \"{name}\""))?;
        return getent::group_id(&line)
            .ok_or_else(|| format!("group \"{name}\": getent gave a malformed entry: {line}"));
    }
    let found = match name.parse::<u32>() {
        Ok(gid) => Group::from_gid(Gid::from_raw(gid)),
        Err(_) => Group::from_name(name),
    };
    match found {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(format!("unknown group \"{name}\"")),
        Err(e) => Err(format!("unable to look up group \"{name}\": {e}")),
    }
}

/// `gid` and the groups `user` is a member of, as initgroups(3) sets them.
/// `early`: `getent initgroups` started before the user's entry was known;
/// its answer counts only if it was asked about the entry's own name.
fn member_groups(user: &str, gid: u32, early: Option<getent::Pending>) -> Result<Vec<u32>, String> {
    // glibc's getent has an `initgroups` database; others may not, and
    // then the C library's group file is all there is.
    let early = early.filter(|p| p.key() == user);
    if let Some(Ok(Some(line))) = getent::answer(early, "initgroups", user) {
        return getent::member_groups(&line, gid)
            .ok_or_else(|| format!("getent gave a malformed initgroups entry: {line}"));
    }
    let cname = std::ffi::CString::new(user).map_err(|_| "the name contains NUL".to_owned())?;
    nix::unistd::getgrouplist(&cname, Gid::from_raw(gid))
        .map(|gs| gs.into_iter().map(Gid::as_raw).collect())
        .map_err(|e| e.to_string())
}

/// The system's `getent`, for builds whose C library has no NSS modules.
mod getent {
    use super::Account;
    use std::process::{Child, Command, Stdio};

    const PATHS: [&str; 2] = ["/usr/bin/getent", "/bin/getent"];

    fn path() -> Option<&'static str> {
        PATHS
            .iter()
            .copied()
            .find(|p| std::path::Path::new(p).exists())
    }

    /// Whether lookups ask `getent`: on a C library without NSS modules,
    /// when the system has one.
    pub fn used() -> bool {
        cfg!(not(target_env = "gnu")) && path().is_some()
    }

    /// A `getent DB -- KEY` under way.
    pub struct Pending {
        path: &'static str,
        db: &'static str,
        key: String,
        child: Option<Child>,
    }

    /// Start `getent DB -- KEY` if lookups use `getent`; `None` otherwise or
    /// if it cannot be started (then [`query`] says why).
    pub fn start(db: &'static str, key: &str) -> Option<Pending> {
        if !used() {
            return None;
        }
        spawn(path()?, db, key).ok()
    }

    fn spawn(path: &'static str, db: &'static str, key: &str) -> Result<Pending, String> {
        let child = Command::new(path)
            .args([db, "--", key])
            // The answer does not depend on the locale; not loading one
            // saves getent a dozen file opens.
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("unable to run {path}: {e}"))?;
        Ok(Pending {
            path,
            db,
            key: key.to_owned(),
            child: Some(child),
        })
    }

    impl Pending {
        pub fn key(&self) -> &str {
            &self.key
        }

        /// The entry's line, or `Ok(None)` when there is no such key
        /// (exit status 2).
        pub fn finish(mut self) -> Result<Option<String>, String> {
            let Some(child) = self.child.take() else {
                return Ok(None);
            };
            let (path, db, key) = (self.path, self.db, &self.key);
            let out = child
                .wait_with_output()
                .map_err(|e| format!("unable to run {path}: {e}"))?;
            match out.status.code() {
                Some(0) => Ok(String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .next()
                    .map(str::to_owned)),
                Some(2) => Ok(None),
                _ => Err(format!("{path} {db} {key}: {}", out.status)),
            }
        }
    }

    impl Drop for Pending {
        /// An answer no longer wanted: end the process and collect it.
        fn drop(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// `getent DB -- KEY`: `None` without a `getent`; else the entry's
    /// line, or `Ok(None)` when there is no such key (exit status 2).
    pub fn query(db: &'static str, key: &str) -> Option<Result<Option<String>, String>> {
        Some(spawn(path()?, db, key).and_then(Pending::finish))
    }

    /// What a lookup learns from `getent`: the answer of `early` (the same
    /// query, started before) if there is one, else of a new [`query`];
    /// `None` when lookups do not use `getent`.
    pub fn answer(
        early: Option<Pending>,
        db: &'static str,
        key: &str,
    ) -> Option<Result<Option<String>, String>> {
        match early {
            Some(p) => Some(p.finish()),
            None if used() => query(db, key),
            None => None,
        }
    }

    /// `name:password:uid:gid:gecos:home:shell`.
    pub fn account(line: &str) -> Option<Account> {
        let f: Vec<&str> = line.split(':').collect();
        Some(Account {
            name: f.first().filter(|n| !n.is_empty())?.to_string(),
            uid: f.get(2)?.parse().ok()?,
            gid: f.get(3)?.parse().ok()?,
        })
    }

    /// `name:password:gid:members`.
    pub fn group_id(line: &str) -> Option<u32> {
        line.split(':').nth(2)?.parse().ok()
    }

    /// `user gid gid ...` (glibc's `initgroups`), after `gid` itself.
    pub fn member_groups(line: &str, gid: u32) -> Option<Vec<u32>> {
        let mut groups = vec![gid];
        for g in line.split_whitespace().skip(1) {
            let g = g.parse().ok()?;
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
        Some(groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_answers_round_trip() {
        let answers = [
            Err("unknown user \"x y\"\nsecond line".to_owned()),
            Ok(Identity::Inherit),
            Ok(Identity::Switch {
                user: "nobody".into(),
                uid: 65534,
                gid: 65534,
                groups: vec![65534, 7, 100],
            }),
            Ok(Identity::Switch {
                user: "u".into(),
                uid: 1,
                gid: 2,
                groups: vec![],
            }),
        ];
        for a in answers {
            assert_eq!(decode(&encode(&a)), Some(a));
        }
        assert_eq!(decode(b""), None);
        assert_eq!(decode(b"S1\nx"), None);
        assert_eq!(decode(b"Sx 2\nu"), None);
    }

    #[test]
    fn root_without_user_is_refused() {
        assert!(Identity::resolve(None, None, true, 0, 0).is_err());
    }

    #[test]
    fn non_root_without_user_inherits() {
        assert_eq!(
            Identity::resolve(None, None, true, 1000, 1000),
            Ok(Identity::Inherit)
        );
    }

    #[test]
    fn non_root_cannot_switch() {
        let err = Identity::resolve(Some("nobody"), None, true, 1000, 1000).unwrap_err();
        assert!(err.contains("oxinetd is not running as root"), "{err}");
    }

    #[test]
    fn root_switches_to_nobody() {
        match Identity::resolve(Some("nobody"), Some("nogroup"), true, 0, 0) {
            Ok(Identity::Switch { uid, gid, .. }) => {
                assert_eq!((uid, gid), (65534, 65534));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_user_by_number_gets_the_groups_of_its_name() {
        // With getent, the groups asked for early are for "65534", not for
        // the entry's name: they are asked for again, by name.
        match Identity::resolve(Some("65534"), None, true, 0, 0) {
            Ok(Identity::Switch {
                user, uid, groups, ..
            }) => {
                assert_eq!((user.as_str(), uid), ("nobody", 65534));
                assert_eq!(groups, vec![65534]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unknown_names_are_errors() {
        assert!(Identity::resolve(Some("no-such-user-x"), None, true, 0, 0)
            .unwrap_err()
            .contains("unknown user"));
        assert!(
            Identity::resolve(Some("nobody"), Some("no-such-group-x"), true, 0, 0)
                .unwrap_err()
                .contains("unknown group")
        );
    }

    #[test]
    fn without_supplementary_groups_only_the_gid_remains() {
        match Identity::resolve(Some("nobody"), Some("nogroup"), false, 0, 0) {
            Ok(Identity::Switch { gid, groups, .. }) => assert_eq!(groups, vec![gid]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn getent_lines_are_parsed_or_refused() {
        let a = getent::account("oxiext:x:4242:4243:Test:/nonexistent:/usr/sbin/nologin").unwrap();
        assert_eq!((a.name.as_str(), a.uid, a.gid), ("oxiext", 4242, 4243));
        for bad in ["", "oxiext", ":x:1:1::/:/bin/sh", "u:x:one:1::/:", "u:x:1"] {
            assert!(getent::account(bad).is_none(), "{bad:?}");
        }
        assert_eq!(getent::group_id("staff:x:50:a,b"), Some(50));
        assert_eq!(getent::group_id("staff:x:"), None);
        assert_eq!(
            getent::member_groups("oxiext                4244 4243 27", 4243),
            Some(vec![4243, 4244, 27])
        );
        assert_eq!(getent::member_groups("oxiext", 7), Some(vec![7]));
        assert_eq!(getent::member_groups("oxiext 12 x", 7), None);
    }

    #[test]
    fn getent_answers_found_and_not_found() {
        let root = getent::query("passwd", "root").expect("Debian has getent");
        assert!(root.unwrap().unwrap().starts_with("root:x:0:0:"));
        assert_eq!(
            getent::query("passwd", "no-such-user-oxi").unwrap(),
            Ok(None)
        );
        // A key that looks like an option is still a key.
        assert_eq!(getent::query("group", "-s").unwrap(), Ok(None));
    }
}

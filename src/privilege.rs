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
        let user = lookup_user(user_name)?;
        let gid = match group {
            Some(g) => lookup_group(g)?,
            None => user.gid.as_raw(),
        };
        if euid != 0 {
            if user.uid.as_raw() == euid && (group.is_none() || gid == egid) {
                return Ok(Identity::Inherit);
            }
            return Err(format!(
                "user \"{user_name}\"{}: oxinetd is not running as root, so handlers can \
                 only run as oxinetd's own user",
                group.map(|g| format!(" group \"{g}\"")).unwrap_or_default()
            ));
        }
        let cname = std::ffi::CString::new(user.name.as_str())
            .map_err(|_| format!("user \"{user_name}\": name contains NUL"))?;
        let groups = if supplementary {
            nix::unistd::getgrouplist(&cname, Gid::from_raw(gid))
                .map_err(|e| format!("user \"{user_name}\": unable to read its groups: {e}"))?
                .into_iter()
                .map(Gid::as_raw)
                .collect()
        } else {
            vec![gid]
        };
        Ok(Identity::Switch {
            user: user.name,
            uid: user.uid.as_raw(),
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

fn lookup_user(name: &str) -> Result<User, String> {
    let found = match name.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)),
        Err(_) => User::from_name(name),
    };
    match found {
        Ok(Some(u)) => Ok(u),
        Ok(None) => Err(format!("unknown user \"{name}\"")),
        Err(e) => Err(format!("unable to look up user \"{name}\": {e}")),
    }
}

fn lookup_group(name: &str) -> Result<u32, String> {
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
}

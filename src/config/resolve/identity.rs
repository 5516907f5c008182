//! `user`, `group` and `groups`: who a program runs as.

use super::{Resolver, Svc};
use crate::config::error::quote;
use crate::config::ConfigError;
use crate::privilege::Identity;

/// An identity as written: user, group, supplementary groups.
pub type CacheKey = (Option<String>, Option<String>, bool);

impl Resolver<'_> {
    /// The identity of a program's handlers; an internal service runs
    /// as oxinetd (its `user` and `group` are still checked to be strings).
    pub(super) fn identity(&mut self, svc: &Svc<'_>, internal: bool) -> Option<Identity> {
        let user = svc
            .get("user")
            .and_then(|f| svc.ok(f.str()).map(|s| (s, f)));
        let group = svc
            .get("group")
            .and_then(|f| svc.ok(f.str()).map(|s| (s, f)));
        let if_root = svc
            .get("user_if_root")
            .and_then(|f| svc.ok(f.str()).map(|s| (s, f)));
        if internal {
            return Some(Identity::Inherit);
        }
        let (euid, egid) = (self.ctx.euid, self.ctx.egid);
        // `user_if_root` stands in for a missing `user`, and only for a
        // root oxinetd: the one case where handlers would otherwise have
        // no user (refused). A `user` of the service's own beats a
        // `user_if_root` from `[defaults]`; any other pair leaves
        // `user_if_root` unused, which is refused rather than ignored.
        if let (Some((u, _)), Some((r, f))) = (user, if_root) {
            if svc.own("user_if_root").is_some() || svc.own("user").is_none() {
                svc.report(f.err(format!(
                    "user_if_root \"{r}\": never used: user \"{u}\" is set for this \
                     service and applies whether or not oxinetd runs as root",
                    r = quote(r),
                    u = quote(u)
                )));
            }
        }
        let user = user.or(if_root.filter(|_| euid == 0));
        let groups = svc.get("groups").and_then(|f| svc.ok(f.bool()));
        let key = (
            user.map(|(s, _)| s.to_owned()),
            group.map(|(s, _)| s.to_owned()),
            groups.unwrap_or(true),
        );
        let resolved = self
            .identities
            .entry(key)
            .or_insert_with_key(|(u, g, sup)| {
                Identity::resolve(u.as_deref(), g.as_deref(), *sup, euid, egid)
            })
            .clone();
        svc.ok(resolved.map_err(|m| {
            let at = match (user, group) {
                (_, Some((_, g))) if m.contains("group") => g.at.clone(),
                (Some((_, u)), _) => u.at.clone(),
                _ => svc.origin.clone(),
            };
            ConfigError::new(at, format!("service{}: {m}", svc.label()))
        }))
    }
}

//! `user`, `group` and `groups`: who a program runs as.

use super::{Resolver, Svc};
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
        if internal {
            return Some(Identity::Inherit);
        }
        let groups = svc.get("groups").and_then(|f| svc.ok(f.bool()));
        let key = (
            user.map(|(s, _)| s.to_owned()),
            group.map(|(s, _)| s.to_owned()),
            groups.unwrap_or(true),
        );
        let (euid, egid) = (self.ctx.euid, self.ctx.egid);
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

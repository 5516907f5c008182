//! Names and listeners two services may not share.

use std::collections::HashMap;

use crate::config::{ClashKey, ConfigError, Diagnostic, Loaded, Service};

/// Drop services whose name or listen addresses clash with an earlier one.
/// Names and slots are indexed, so a config of thousands of services is
/// checked in one pass rather than by comparing every pair.
pub fn check_conflicts(mut loaded: Loaded) -> Loaded {
    let n = loaded.config.services.len();
    let mut kept: Vec<Service> = Vec::with_capacity(n);
    let mut names: HashMap<String, usize> = HashMap::with_capacity(n);
    // (index in `kept`, index in its `listen`), in the order they were kept.
    let mut slots: HashMap<ClashKey, Vec<(usize, usize)>> = HashMap::with_capacity(n);
    for svc in loaded.config.services.drain(..) {
        if let Some(&first) = names.get(&svc.name) {
            loaded.diagnostics.push(Diagnostic::error(ConfigError::new(
                svc.origin.clone(),
                format!(
                    "duplicate service name \"{}\" (first defined at {})",
                    svc.name, kept[first].origin
                ),
            )));
            continue;
        }
        let clash = svc.listen.iter().find_map(|key| {
            let same_slot = slots.get(&key.addr.clash_key(key.kind)?)?;
            same_slot.iter().find_map(|&(s, k)| {
                let other = &kept[s].listen[k];
                other
                    .addr
                    .overlaps(&key.addr)
                    .then_some((key, other, &kept[s]))
            })
        });
        if let Some((key, other, s)) = clash {
            loaded.diagnostics.push(Diagnostic::error(ConfigError::new(
                svc.origin.clone(),
                format!(
                    "service \"{}\": listen {} overlaps {} of service \"{}\" ({})",
                    svc.name, key, other, s.name, s.origin
                ),
            )));
            continue;
        }
        let at = kept.len();
        for (k, key) in svc.listen.iter().enumerate() {
            if let Some(slot) = key.addr.clash_key(key.kind) {
                slots.entry(slot).or_default().push((at, k));
            }
        }
        names.insert(svc.name.clone(), at);
        kept.push(svc);
    }
    loaded.config.services = kept;
    loaded
}

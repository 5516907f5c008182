//! `[global]`: settings of the supervisor itself.

use std::path::PathBuf;

use super::field::Field;
use crate::config::error::quote;
use crate::config::{ConfigError, Global};

/// `[global]` over the defaults; errors go to `errors`.
pub fn resolve<'a>(keys: impl Iterator<Item = Field<'a>>, errors: &mut Vec<ConfigError>) -> Global {
    let mut global = Global::default();
    for f in keys {
        let result = match f.name {
            "syslog_facility" => f.str().and_then(|s| {
                s.parse()
                    .map(|fac| global.syslog_facility = fac)
                    .map_err(|_| {
                        f.err(format!(
                            "syslog_facility: unknown facility \"{s}\"",
                            s = quote(s)
                        ))
                    })
            }),
            "syslog_socket" => f
                .str()
                .map(|s| global.syslog_socket = Some(PathBuf::from(s))),
            "shutdown_grace" => f.seconds().map(|d| global.shutdown_grace = d),
            "loop_pause" => f.seconds().map(|d| global.loop_pause = d),
            "max_processes" => f
                .int(1, 1_000_000)
                .map(|n| global.max_processes = n as usize),
            "control_socket" => f.str().and_then(|s| match s {
                "" => {
                    global.control_socket = None;
                    Ok(())
                }
                s if s.starts_with('/') => {
                    global.control_socket = Some(PathBuf::from(s));
                    Ok(())
                }
                s => Err(f.err(format!(
                    "control_socket: \"{}\" is not an absolute path (\"\" for no control socket)",
                    quote(s)
                ))),
            }),
            "control_group" => f.str().and_then(|g| {
                let euid = nix::unistd::geteuid().as_raw();
                crate::privilege::lookup_owner(&format!("{euid}:{g}"))
                    .map(|(_, gid)| global.control_group = Some(gid))
                    .map_err(|m| f.err(format!("control_group: {m}")))
            }),
            _ => Ok(()),
        };
        if let Err(e) = result {
            errors.push(e);
        }
    }
    global
}

//! `only_from`, `no_access`, `access_times` and `banner_fail`: who may
//! connect, when, and what a refused client reads.

use super::field::Field;
use super::{io_problem, Svc};
use crate::access::{Access, Cidr, Window};
use crate::config::error::quote;
use crate::config::ConfigError;

/// The access rules of a service.
pub fn rules(svc: &Svc<'_>) -> Access {
    let mut access = Access::default();
    if let Some(f) = svc.get("only_from") {
        access.only_from = svc.many(f.each(Cidr::parse));
    }
    if let Some(f) = svc.get("no_access") {
        access.no_access = svc.many(f.each(Cidr::parse)).unwrap_or_default();
    }
    if let Some(f) = svc.get("access_times") {
        access.times = svc.many(f.each(Window::parse)).unwrap_or_default();
    }
    access
}

/// `banner_fail`: the file's contents.
pub fn banner(svc: &Svc<'_>) -> Option<Vec<u8>> {
    svc.get("banner_fail")
        .and_then(|f| svc.ok(f.str().and_then(|s| read_banner(f, s))))
}

/// The contents of a banner file (relative paths from the config's
/// directory), read once at load so a refusal costs no file I/O.
fn read_banner(f: Field<'_>, s: &str) -> Result<Vec<u8>, ConfigError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    const MAX_BANNER: u64 = 64 * 1024;
    let path = f.dir().join(s);
    let failed = |e: &std::io::Error| {
        f.err(format!(
            "banner_fail \"{s}\": {}",
            io_problem(e),
            s = quote(s)
        ))
    };
    // Checked and read through one descriptor (non-blocking: a FIFO does
    // not wait for a writer), at most the limit, whatever the name becomes.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .map_err(|e| failed(&e))?;
    if !file.metadata().map_err(|e| failed(&e))?.is_file() {
        return Err(f.err(format!(
            "banner_fail \"{s}\": not a regular file",
            s = quote(s)
        )));
    }
    let mut banner = Vec::new();
    file.take(MAX_BANNER + 1)
        .read_to_end(&mut banner)
        .map_err(|e| failed(&e))?;
    if banner.len() as u64 > MAX_BANNER {
        return Err(f.err(format!(
            "banner_fail \"{s}\": larger than 64 KiB",
            s = quote(s)
        )));
    }
    Ok(banner)
}

//! Resource limits.

/// Raise the soft fd limit to the hard one (internal services hold one fd
/// per connection). Returns the limit as it was, for handlers.
pub fn raise_nofile() -> Option<libc::rlimit> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    Some(libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    })
}

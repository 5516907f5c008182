//! Local time.

/// Minutes since local midnight, for `access_times`.
pub fn local_minute_of_day() -> u16 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    // SAFETY: `tm` is a local the call fills in; localtime_r is reentrant
    // and the supervisor has no other thread.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&(now as _), &mut tm).is_null() {
            return ((now / 60) % 1440) as u16;
        }
        tm
    };
    (tm.tm_hour * 60 + tm.tm_min) as u16
}

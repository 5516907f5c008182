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

/// A moment as local civil time, for log timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    pub year: i32,
    /// 1-12.
    pub month: u8,
    /// 1-31.
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    /// Seconds east of UTC.
    pub utc_offset: i32,
}

/// `secs` since the epoch as local time; `None` if the C library cannot
/// tell it.
pub fn local_time(secs: i64) -> Option<LocalTime> {
    // SAFETY: `tm` is a local the call fills in; localtime_r is reentrant
    // and reads only the time given.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&(secs as _), &mut tm).is_null() {
            return None;
        }
        tm
    };
    Some(LocalTime {
        year: tm.tm_year + 1900,
        month: (tm.tm_mon + 1) as u8,
        day: tm.tm_mday as u8,
        hour: tm.tm_hour as u8,
        minute: tm.tm_min as u8,
        second: tm.tm_sec as u8,
        utc_offset: tm.tm_gmtoff as i32,
    })
}

//! RFC 867 daytime: the current date and time as one line of text, in
//! the RFC's example form ("Weekday, Month Day, Year HH:MM:SS-ZONE"), UTC.

use std::io::Write;

const DAYS: [&str; 7] = [
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

pub fn now(out: &mut Vec<u8>) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format(secs, out);
}

fn format(unix: u64, out: &mut Vec<u8>) {
    let days = unix / 86400;
    let rem = unix % 86400;
    let (y, m, d) = civil_from_days(days as i64);
    let _ = write!(
        out,
        "{}, {} {}, {} {:02}:{:02}:{:02}-UTC\r\n",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        d,
        y,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        let mut out = Vec::new();
        format(0, &mut out);
        assert_eq!(out, b"Thursday, January 1, 1970 00:00:00-UTC\r\n");
        out.clear();
        format(1_795_351_845, &mut out); // 2026-11-22 12:50:45 UTC
        assert_eq!(out, b"Sunday, November 22, 2026 12:50:45-UTC\r\n");
        out.clear();
        format(951_782_400, &mut out); // leap day
        assert_eq!(out, b"Tuesday, February 29, 2000 00:00:00-UTC\r\n");
    }
}

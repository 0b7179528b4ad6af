//! Dates as qmail writes them: `26 Sep 1995 04:46:54 -0000` (netqmail's date822fmt),
//! always in UTC.

use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tm {
    pub year: i64,
    /// 1..=12
    pub month: u32,
    /// 1..=31
    pub day: u32,
    pub hour: u32,
    pub min: u32,
    pub sec: u32,
    /// 0 = Sunday
    pub wday: u32,
}

/// Seconds since the epoch, now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Breaks `secs` since the epoch into a UTC date (proleptic Gregorian calendar).
pub fn tm(secs: u64) -> Tm {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = if m <= 2 { y + 1 } else { y };
    Tm {
        year,
        month: m,
        day: d,
        hour: (rem / 3600) as u32,
        min: ((rem / 60) % 60) as u32,
        sec: (rem % 60) as u32,
        wday: ((days + 4).rem_euclid(7)) as u32,
    }
}

/// `26 Sep 1995 04:46:54 -0000`, without a newline.
pub fn date822(secs: u64) -> String {
    let t = tm(secs);
    format!(
        "{} {} {} {:02}:{:02}:{:02} -0000",
        t.day,
        MONTHS[(t.month - 1) as usize],
        t.year,
        t.hour,
        t.min,
        t.sec
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(date822(0), "1 Jan 1970 00:00:00 -0000");
        assert_eq!(date822(812_090_814), "26 Sep 1995 04:46:54 -0000");
        assert_eq!(date822(951_782_400), "29 Feb 2000 00:00:00 -0000");
        assert_eq!(date822(1_795_564_800), "25 Nov 2026 00:00:00 -0000");
        assert_eq!(tm(0).wday, 4);
    }
}

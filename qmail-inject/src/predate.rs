//! predate: run a program with a `Date` field in local time put before its standard
//! input (netqmail's predate), so that a message fed through it carries the sender's
//! own time zone instead of qmail-inject's UTC date.

use crate::feed::{child_exit, fatal, feed};
use control::Exit;
use std::io::{self, Write};
use std::process::{Command, Stdio};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_secs(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
    days_from_civil(y, mo, d) * 86400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s)
}

/// The field for a local time and its UTC instant: `Date: 26 Sep 1995 06:46:53 +0200`.
/// The offset is the difference of the two wall clocks rounded to minutes.
pub fn date_field(local: (i64, u32, u32, u32, u32, u32), utc_secs: i64) -> String {
    let (y, mo, d, h, mi, s) = local;
    let diff = civil_secs(y, mo, d, h, mi, s) - utc_secs;
    let (sign, minutes) = if diff < 0 {
        ('-', (-diff + 30) / 60)
    } else {
        ('+', (diff + 30) / 60)
    };
    let month = MONTHS
        .get((mo as usize).wrapping_sub(1))
        .copied()
        .unwrap_or("Jan");
    format!(
        "Date: {d} {month} {y} {h:02}:{mi:02}:{s:02} {sign}{:02}{:02}\n",
        minutes / 60,
        minutes % 60
    )
}

/// The field for now.
pub fn now_field() -> String {
    let now = control::now();
    let secs = i64::try_from(now).unwrap_or(0);
    let t = control::tm(now);
    let utc = civil_secs(t.year, t.month, t.day, t.hour, t.min, t.sec);
    let local =
        crate::sys::localtime(secs).unwrap_or((t.year, t.month, t.day, t.hour, t.min, t.sec));
    date_field(local, utc)
}

/// Runs predate; returns the child's exit code.
pub fn main() -> Exit {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let Some((prog, rest)) = args.split_first() else {
        let _ = io::stderr().write_all(b"predate: usage: predate child [ arg ... ]\n");
        return Exit::PERM;
    };
    let mut child = match Command::new(prog).args(rest).stdin(Stdio::piped()).spawn() {
        Ok(c) => c,
        Err(e) => {
            return fatal(
                "predate",
                &format!("unable to run {}: {e}", prog.to_string_lossy()),
            );
        }
    };
    // As netqmail's predate, a read error just ends the input.
    let _ = feed(&mut child, now_field().as_bytes());
    child_exit("predate", &mut child)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets() {
        let utc = civil_secs(1995, 9, 26, 4, 46, 53);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(utc, 812_090_813);
        assert_eq!(
            date_field((1995, 9, 26, 6, 46, 53), utc),
            "Date: 26 Sep 1995 06:46:53 +0200\n"
        );
        assert_eq!(
            date_field((1995, 9, 25, 23, 16, 53), utc),
            "Date: 25 Sep 1995 23:16:53 -0530\n"
        );
        assert_eq!(
            date_field((1995, 9, 26, 4, 46, 53), utc),
            "Date: 26 Sep 1995 04:46:53 +0000\n"
        );
        for s in [0u64, 951_782_400, 1_795_564_800] {
            let t = control::tm(s);
            assert_eq!(
                civil_secs(t.year, t.month, t.day, t.hour, t.min, t.sec),
                s as i64
            );
        }
    }
}

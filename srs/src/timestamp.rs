//! The SRS0 timestamp: the day (seconds since the epoch divided by 86400) modulo 1024,
//! in two base32 characters (`A`–`Z`, `2`–`7`), as libsrs2 and Mail::SRS write it.

const DAY: u64 = 24 * 60 * 60;
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// Two base32 characters: 1024 days in a cycle.
pub(crate) const SLOTS: u32 = 1024;

/// The two characters for the day of `now` (seconds since the epoch).
pub(crate) fn create(now: u64) -> [u8; 2] {
    let day = (now / DAY) as usize;
    [BASE32[(day >> 5) & 31], BASE32[day & 31]]
}

/// The day number (0 to 1023) of a timestamp; letters in either case. `None` unless it
/// is exactly two base32 characters.
pub(crate) fn decode(stamp: &[u8]) -> Option<u32> {
    let [a, b] = stamp else {
        return None;
    };
    let val = |c: u8| {
        BASE32
            .iter()
            .position(|&x| x == c.to_ascii_uppercase())
            .map(|p| p as u32)
    };
    Some(val(*a)? << 5 | val(*b)?)
}

/// How many days ago the day `then` was at `now`, within the 1024-day cycle: a day
/// that has not come yet this cycle is taken from the cycle before (libsrs2's rule, so
/// a timestamp from the future is very old).
pub(crate) fn age(then: u32, now: u64) -> u32 {
    let today = ((now / DAY) % u64::from(SLOTS)) as u32;
    if today >= then {
        today - then
    } else {
        today + SLOTS - then
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_in_base32() {
        // 2020-01-01 00:01:00 UTC is day 18262; 18262 % 1024 = 854 = 26*32 + 22: "2W"
        // (postsrsd's test vector).
        assert_eq!(&create(1_577_836_860), b"2W");
        assert_eq!(decode(b"2W"), Some(854));
        assert_eq!(decode(b"2w"), Some(854));
        assert_eq!(&create(0), b"AA");
        assert_eq!(&create(1023 * DAY), b"77");
        assert_eq!(&create(1024 * DAY), b"AA");
        for bad in [&b""[..], b"A", b"AAA", b"A1", b"A=", b"\xc1A"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ages_wrap_with_the_cycle() {
        let now = 1_577_836_860; // day 854 of the cycle
        assert_eq!(age(854, now), 0);
        assert_eq!(age(833, now), 21);
        assert_eq!(age(855, now), 1023);
        let early = 3 * DAY; // day 3
        assert_eq!(age(1020, early), 7);
        for d in 0..SLOTS {
            assert_eq!(decode(&create(u64::from(d) * DAY)), Some(d));
            assert!(age(d, now) < SLOTS);
        }
    }
}

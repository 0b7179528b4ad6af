//! The one call without a safe wrapper: the C library's local time conversion, which
//! knows the time zone rules (TZ, /etc/localtime). Only predate needs it.

/// Local broken-down time for `secs` since the epoch: (year, month 1..=12, day, hour,
/// minute, second). `None` when the C library cannot convert it.
pub fn localtime(secs: i64) -> Option<(i64, u32, u32, u32, u32, u32)> {
    #[allow(clippy::useless_conversion)] // time_t is i64 here, not everywhere
    let t: libc::time_t = secs.try_into().ok()?;
    // SAFETY: `tm` is plain old data, so all-zero bytes are a valid value; localtime_r
    // reads `t` and writes only into `tm`, both valid for the duration of the call, and
    // is thread-safe. A null result means failure and leaves us not reading `tm`.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return None;
        }
        tm
    };
    Some((
        i64::from(tm.tm_year) + 1900,
        u32::try_from(tm.tm_mon + 1).ok()?,
        u32::try_from(tm.tm_mday).ok()?,
        u32::try_from(tm.tm_hour).ok()?,
        u32::try_from(tm.tm_min).ok()?,
        u32::try_from(tm.tm_sec).ok()?,
    ))
}

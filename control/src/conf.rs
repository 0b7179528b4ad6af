//! qmail's build-time facts (netqmail's conf-* files) and the defaults of the control
//! files that more than one program reads, each written once.

const fn parse_split(s: Option<&str>) -> u64 {
    match s {
        None => 23,
        Some(s) => {
            let b = s.as_bytes();
            let mut i = 0;
            let mut v: u64 = 0;
            while i < b.len() {
                assert!(b[i].is_ascii_digit(), "RQMAIL_SPLIT must be a number");
                v = v * 10 + (b[i] - b'0') as u64;
                i += 1;
            }
            assert!(v > 0, "RQMAIL_SPLIT must be positive");
            v
        }
    }
}

/// The number of subdirectories of queue/mess, info, local and remote (netqmail's
/// conf-split, 23 unless `RQMAIL_SPLIT` was set when building). It must match the queue
/// on disk.
pub const SPLIT: u64 = parse_split(option_env!("RQMAIL_SPLIT"));

/// The user-extension delimiter of qmail-getpw and qmail-local (netqmail's conf-break).
pub const BREAK: u8 = b'-';

/// Mode bits that must not be set on a home directory or a .qmail file (netqmail's
/// conf-patrn: other-writable).
pub const PATRN: u32 = 0o002;

/// The most deliveries rqmail's qmail-lspawn and qmail-rspawn accept at once, whatever the
/// descriptor limit.
pub const SPAWN_CEILING: u32 = 100_000;

/// The most deliveries a spawn runs at once with the descriptor limit `nofile` (netqmail's
/// conf-spawn, computed instead of compiled in): each delivery holds one descriptor and a
/// child being started three more for a moment, so half of what is left after 64, at
/// least 1 and at most [`SPAWN_CEILING`].
pub fn spawn_limit(nofile: u64) -> u32 {
    let usable = nofile.saturating_sub(64) / 2;
    u32::try_from(usable.min(u64::from(SPAWN_CEILING)))
        .unwrap_or(SPAWN_CEILING)
        .max(1)
}

/// control/queuelifetime's default: a week, in seconds.
pub const DEFAULT_QUEUELIFETIME: u64 = 604_800;
/// control/concurrencylocal's default.
pub const DEFAULT_CONCURRENCYLOCAL: u64 = 10;
/// control/concurrencyremote's default.
pub const DEFAULT_CONCURRENCYREMOTE: u64 = 20;
/// control/bouncefrom's default.
pub const DEFAULT_BOUNCEFROM: &str = "MAILER-DAEMON";
/// control/bouncehost's default when control/me is missing too.
pub const DEFAULT_BOUNCEHOST: &str = "bouncehost";
/// control/doublebouncehost's default when control/me is missing too.
pub const DEFAULT_DOUBLEBOUNCEHOST: &str = "doublebouncehost";
/// control/doublebounceto's default.
pub const DEFAULT_DOUBLEBOUNCETO: &str = "postmaster";
/// control/envnoathost's default when control/me is missing too.
pub const DEFAULT_ENVNOATHOST: &str = "envnoathost";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_parses_and_spawn_limit_is_bounded() {
        assert_eq!(parse_split(None), 23);
        assert_eq!(parse_split(Some("101")), 101);
        assert_eq!(spawn_limit(0), 1);
        assert_eq!(spawn_limit(1024), 480);
        assert_eq!(spawn_limit(u64::MAX), SPAWN_CEILING);
    }
}

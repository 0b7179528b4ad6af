//! The invoker's user name, read from /etc/passwd directly.
//!
//! qmail-queue only needs to know whether its real uid belongs to alias, qmaild or qmails
//! (the words of its Received line). As a static program it may ask no account source
//! but /etc/passwd (README.md, "How the programs are linked"), which is what glibc's
//! "files" source did for it through getpwuid; reading the file here gives the same
//! answer without glibc's NSS set-up (reading /etc/nsswitch.conf, building its tables:
//! about a fifth of qmail-queue's instructions and ten system calls per message).
//!
//! The rule is the files source's: lines are read in order; blank lines and lines whose
//! first non-blank character is `#` are skipped, as are lines without the seven
//! colon-separated fields or whose third field is not a decimal number; the first line
//! whose uid matches names the user.

use std::path::Path;

/// The most of /etc/passwd read (larger files are read this far: a uid whose first entry
/// lies beyond is then "by uid N", the answer for an unknown uid).
pub const MAX_PASSWD: u64 = 16 * 1024 * 1024;

/// The name of the first entry of `data` (the bytes of a passwd file) whose uid is `uid`.
pub fn name_of_uid(data: &[u8], uid: u32) -> Option<&[u8]> {
    for line in data.split(|&c| c == b'\n') {
        let start = line
            .iter()
            .position(|c| !c.is_ascii_whitespace())
            .unwrap_or(line.len());
        let line = &line[start..];
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        let mut fields = line.splitn(7, |&c| c == b':');
        let (Some(name), Some(_pw), Some(id)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        // gid, gecos, home and shell must be there too (a line cut short is not an entry).
        if fields.count() != 4 {
            continue;
        }
        if parse_uid(id) == Some(uid) {
            return Some(name);
        }
    }
    None
}

fn parse_uid(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// The name of `uid` in the passwd file `path`; `None` when the file cannot be read or
/// has no entry for it.
pub fn lookup(path: &Path, uid: u32) -> Option<String> {
    use std::io::Read;
    // Room for a usual /etc/passwd, so it is read in one call and an empty one.
    let mut data = Vec::with_capacity(16 * 1024);
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PASSWD).read_to_end(&mut data))
        .ok()?;
    name_of_uid(&data, uid).map(|n| String::from_utf8_lossy(n).into_owned())
}

/// [`lookup`] in /etc/passwd.
pub fn user_name(uid: u32) -> Option<String> {
    lookup(Path::new("/etc/passwd"), uid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FILE: &[u8] = b"root:x:0:0:root:/root:/bin/bash\n\
        # alias:x:7790:7790::/var/qmail/alias:/bin/false\n\
        \n\
        broken:x:7790\n\
        alias:x:7790:2108::/var/qmail/alias:/usr/sbin/nologin\n\
        other:x:7790:2108::/x:/bin/sh\n\
          qmaild:x:7791:2108::/var/qmail:/usr/sbin/nologin\n\
        bad:x:12a:1::/:/bin/sh\n\
        big:x:99999999999:1::/:/bin/sh\n";

    #[test]
    fn first_entry_wins() {
        assert_eq!(name_of_uid(FILE, 0), Some(&b"root"[..]));
        assert_eq!(name_of_uid(FILE, 7790), Some(&b"alias"[..]));
        assert_eq!(name_of_uid(FILE, 7791), Some(&b"qmaild"[..]));
        assert_eq!(name_of_uid(FILE, 12), None);
        assert_eq!(name_of_uid(FILE, 4242), None);
        assert_eq!(name_of_uid(b"", 0), None);
        assert_eq!(name_of_uid(b"a:x:5:5:::", 5), Some(&b"a"[..]));
        assert_eq!(name_of_uid(b"a:x:5:5::", 5), None);
    }

    #[test]
    fn same_as_the_system() {
        // This machine's own accounts: the files source of getpwuid gives the same names.
        let data = std::fs::read("/etc/passwd").unwrap_or_default();
        control::prepare_lookups();
        for uid in [0u32, 1, 2, 65534] {
            let mine = name_of_uid(&data, uid).map(|n| String::from_utf8_lossy(n).into_owned());
            let libc = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                .ok()
                .flatten()
                .map(|u| u.name);
            if libc.is_some() {
                assert_eq!(mine, libc, "uid {uid}");
            }
        }
    }

    #[test]
    fn unreadable_file() {
        assert_eq!(lookup(Path::new("/nonexistent/passwd"), 0), None);
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..512), uid in any::<u32>()) {
            let _ = name_of_uid(&data, uid);
        }

        #[test]
        fn finds_a_written_entry(name in "[a-z][a-z0-9_-]{0,15}", uid in any::<u32>()) {
            let file = format!("#x:x:{uid}:0:::\nroot:x:0:0:root:/root:/bin/sh\n{name}:x:{uid}:7::/h:/bin/sh\n");
            let want = if uid == 0 { "root" } else { name.as_str() };
            prop_assert_eq!(name_of_uid(file.as_bytes(), uid), Some(want.as_bytes()));
        }
    }
}

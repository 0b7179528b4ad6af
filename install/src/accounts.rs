//! The qmail users and groups (netqmail's INSTALL.ids): creating the missing ones with
//! groupadd(8) and useradd(8), and reading the ids from a staging root's own account files.
//!
//! The account databases are never edited by hand: the system's tools do it, with
//! `--prefix` when the accounts belong to a staging root (a system image being built).

use control::Ids;
use nix::unistd::{Gid, Uid};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The users and their primary groups, as INSTALL.ids makes them.
use control::ACCOUNTS as USERS;
/// The groups, in the order they are created.
use control::GROUP_NAMES as GROUPS;

/// The longest account file line that is parsed; longer lines are ignored.
const MAX_LINE: usize = 4096;

/// One entry of a passwd or group file: name and numeric id (uid or gid).
fn parse_entries(text: &str) -> Vec<(&str, u32)> {
    text.lines()
        .filter(|l| l.len() <= MAX_LINE && !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let _password = f.next()?;
            let id = f.next()?.parse::<u32>().ok()?;
            (!name.is_empty()).then_some((name, id))
        })
        .collect()
}

/// The numeric id of `name` in the text of a passwd or group file.
pub fn find_id(text: &str, name: &str) -> Option<u32> {
    parse_entries(text)
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, id)| id)
}

/// Where the account files of a staging root are, when it has its own: `destdir/etc`
/// holding a `passwd` file. `None` for the running system's accounts.
pub fn staged_etc(destdir: &Path) -> Option<PathBuf> {
    if destdir.as_os_str().is_empty() {
        return None;
    }
    let etc = destdir.join("etc");
    etc.join("passwd").is_file().then_some(etc)
}

/// An account problem: a missing id, an unreadable file or a failed tool.
#[derive(Debug)]
pub struct AccountError(pub String);

impl std::fmt::Display for AccountError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AccountError {}

fn read(p: &Path) -> Result<String, AccountError> {
    fs::read(p)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| AccountError(format!("unable to read {}: {e}", p.display())))
}

/// The qmail ids as a staging root's `etc/passwd` and `etc/group` define them.
pub fn ids_from_files(etc: &Path) -> Result<Ids, AccountError> {
    let passwd = read(&etc.join("passwd"))?;
    let group = read(&etc.join("group"))?;
    let user = |n: &str| {
        find_id(&passwd, n).map(Uid::from_raw).ok_or_else(|| {
            AccountError(format!(
                "unable to find user {n} in {}/passwd",
                etc.display()
            ))
        })
    };
    let grp = |n: &str| {
        find_id(&group, n).map(Gid::from_raw).ok_or_else(|| {
            AccountError(format!(
                "unable to find group {n} in {}/group",
                etc.display()
            ))
        })
    };
    Ids::from_lookups(user, grp)
}

fn system_tool(name: &str) -> Result<PathBuf, AccountError> {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            AccountError(format!(
                "{name} is not installed (it creates the qmail ids)"
            ))
        })
}

fn nologin_shell() -> &'static str {
    ["/usr/sbin/nologin", "/sbin/nologin"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("/bin/false")
}

/// Which accounts exist already: in the staging root's files, or in the system's database.
struct Existing {
    etc: Option<PathBuf>,
}

impl Existing {
    fn user(&self, name: &str) -> Result<bool, AccountError> {
        match &self.etc {
            Some(etc) => Ok(find_id(&read(&etc.join("passwd"))?, name).is_some()),
            None => nix::unistd::User::from_name(name)
                .map(|u| u.is_some())
                .map_err(|e| AccountError(format!("unable to look up user {name}: {e}"))),
        }
    }

    fn group(&self, name: &str) -> Result<bool, AccountError> {
        match &self.etc {
            Some(etc) => Ok(find_id(&read(&etc.join("group"))?, name).is_some()),
            None => nix::unistd::Group::from_name(name)
                .map(|g| g.is_some())
                .map_err(|e| AccountError(format!("unable to look up group {name}: {e}"))),
        }
    }
}

fn run(mut c: Command, what: &str) -> Result<(), AccountError> {
    let out = c
        .output()
        .map_err(|e| AccountError(format!("unable to run {what}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(AccountError(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Creates the qmail groups and users that do not exist yet, as INSTALL.ids does (system
/// accounts, no login shell, no home directory created; alias's home is `home/alias`, the
/// others' `home`). Existing accounts are left exactly as they are. With `prefix` (a staging
/// root), the accounts go into that root's `etc` files (the tools' `--prefix`). Returns the names
/// created.
pub fn create_missing(home: &Path, prefix: Option<&Path>) -> Result<Vec<String>, AccountError> {
    let existing = Existing {
        etc: prefix.map(|p| p.join("etc")),
    };
    let mut made = Vec::new();
    let prefix_args = |c: &mut Command| {
        if let Some(p) = prefix {
            c.arg("--prefix").arg(p);
        }
    };
    for g in GROUPS {
        if existing.group(g)? {
            continue;
        }
        let mut c = Command::new(system_tool("groupadd")?);
        prefix_args(&mut c);
        c.args(["-r", g]);
        run(c, &format!("groupadd {g}"))?;
        made.push(g.to_string());
    }
    for (u, g) in USERS {
        if existing.user(u)? {
            continue;
        }
        let dir = if u == "alias" {
            home.join("alias")
        } else {
            home.to_path_buf()
        };
        let mut c = Command::new(system_tool("useradd")?);
        prefix_args(&mut c);
        c.args(["-r", "-M", "-g", g, "-s", nologin_shell(), "-d"])
            .arg(&dir)
            .arg(u);
        run(c, &format!("useradd {u}"))?;
        made.push(u.to_string());
    }
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_ids_in_account_files() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n# comment:x:5\nqmailq:x:992:995::/var/qmail:/usr/sbin/nologin\nbad:x:notanumber:1::/:/bin/sh\n";
        assert_eq!(find_id(passwd, "qmailq"), Some(992));
        assert_eq!(find_id(passwd, "root"), Some(0));
        assert_eq!(find_id(passwd, "bad"), None);
        assert_eq!(find_id(passwd, "qmail"), None);
        assert_eq!(find_id("qmail:x:995:\n", "qmail"), Some(995));
    }

    #[test]
    fn staged_etc_needs_a_passwd_file() {
        let d = tempfile::tempdir().unwrap();
        assert!(staged_etc(Path::new("")).is_none());
        assert!(staged_etc(d.path()).is_none());
        fs::create_dir(d.path().join("etc")).unwrap();
        fs::write(d.path().join("etc/passwd"), "root:x:0:0::/:/bin/sh\n").unwrap();
        assert_eq!(staged_etc(d.path()), Some(d.path().join("etc")));
    }

    #[test]
    fn ids_from_files_names_what_is_missing() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("passwd"), "root:x:0:0::/:/bin/sh\n").unwrap();
        fs::write(d.path().join("group"), "qmail:x:7:\n").unwrap();
        let e = ids_from_files(d.path()).unwrap_err().to_string();
        assert!(e.contains("unable to find user alias in"), "{e}");
        let mut pw = String::from("root:x:0:0::/:/bin/sh\n");
        for (i, (u, _)) in USERS.iter().enumerate() {
            pw.push_str(&format!("{u}:x:{}:8::/var/qmail:/bin/false\n", 700 + i));
        }
        fs::write(d.path().join("passwd"), pw).unwrap();
        fs::write(d.path().join("group"), "qmail:x:7:\nnofiles:x:8:\n").unwrap();
        let ids = ids_from_files(d.path()).unwrap();
        assert_eq!(ids.alias.as_raw(), 700);
        assert_eq!(ids.qmails.as_raw(), 706);
        assert_eq!(ids.owner.as_raw(), 0);
        assert_eq!(ids.qmail.as_raw(), 7);
        assert_eq!(ids.nofiles.as_raw(), 8);
        assert!(!ids.single_user);
    }

    #[test]
    fn account_parser_survives_malformed_lines() {
        // Not untrusted input (a staging root's own account files), but it must not panic:
        // every prefix of a few awkward lines, with and without the name looked for.
        let samples = [
            "qmailq:x:992:995::/var/qmail:/usr/sbin/nologin\n",
            ":::::\n",
            "qmailq\n",
            "qmailq:x:\n",
            "qmailq:x:-1:0\n",
            "qmailq:x:99999999999:0\n",
            "\u{e9}\u{e9}:x:1:1\n",
            "# qmailq:x:5:5\n",
        ];
        for s in samples {
            for end in 0..=s.len() {
                if let Some(prefix) = s.get(..end) {
                    let _ = find_id(prefix, "qmailq");
                    let _ = find_id(prefix, "");
                }
            }
        }
        assert_eq!(find_id("qmailq:x:-1:0\n", "qmailq"), None);
        assert_eq!(find_id("qmailq:x:99999999999:0\n", "qmailq"), None);
        assert_eq!(find_id("# qmailq:x:5:5\n", "# qmailq"), None);
        let long = format!("qmailq:x:1:{}\n", "a".repeat(MAX_LINE));
        assert_eq!(find_id(&long, "qmailq"), None);
        assert_eq!(find_id(&format!("{long}qmailq:x:7:7\n"), "qmailq"), Some(7));
    }
}

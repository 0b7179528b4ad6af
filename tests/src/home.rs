//! A qmail home of its own for each test, and single-user mode: programs run as `nobody`
//! when the suite runs as root (as the invoking user otherwise), with the files they need
//! given to that user.

use crate::programs::{bin, bin_dir, is_root, tool};
use crate::users::{chown_user, ensure_qmail_users, nobody};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A qmail home of its own: bin/ with symlinks to the built programs, control/, an empty
/// queue (single-user owners), users/, alias/. Removed when dropped.
pub struct Home {
    dir: tempfile::TempDir,
}

impl Default for Home {
    fn default() -> Self {
        Self::new()
    }
}

impl Home {
    /// A fresh home with `control/me` set to `testhost.example`. As root, the qmail users
    /// and groups are made first when they are missing ([`ensure_qmail_users`]).
    pub fn new() -> Home {
        if is_root() {
            ensure_qmail_users();
        }
        let dir = tempfile::Builder::new()
            .prefix("rqmail-test-")
            .tempdir()
            .expect("tempdir");
        let h = Home { dir };
        for d in ["bin", "control", "users", "alias"] {
            fs::create_dir_all(h.path().join(d)).expect("mkdir");
        }
        qmail_queue::create_queue(&h.path().join("queue"), &control::Ids::single_user())
            .expect("create queue");
        if let Ok(rd) = fs::read_dir(bin_dir()) {
            for e in rd.flatten() {
                let p = e.path();
                let name = e.file_name();
                let n = name.to_string_lossy();
                let is_exec = p.is_file()
                    && fs::metadata(&p)
                        .map(|m| m.permissions().mode() & 0o111 != 0)
                        .unwrap_or(false);
                if is_exec && !n.contains('.') && !n.starts_with("rqmail_tests") {
                    let _ = std::os::unix::fs::symlink(&p, h.path().join("bin").join(&name));
                }
            }
        }
        h.control("me", "testhost.example\n");
        h
    }

    /// The home directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The queue directory.
    pub fn queue(&self) -> PathBuf {
        self.path().join("queue")
    }

    /// Writes control/NAME.
    pub fn control(&self, name: &str, contents: &str) {
        fs::write(self.path().join("control").join(name), contents).expect("write control");
    }

    /// Removes control/NAME.
    pub fn remove_control(&self, name: &str) {
        let _ = fs::remove_file(self.path().join("control").join(name));
    }

    /// A command running the built program `name` with QMAIL_HOME set to this home and a
    /// small, predictable environment.
    pub fn cmd(&self, name: &str) -> Command {
        let mut c = Command::new(bin(name));
        c.env_clear()
            .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
            .env("QMAIL_HOME", self.path())
            .current_dir(self.path());
        c
    }

    /// Makes the whole home readable and writable by `uid` (for single-user tests run as
    /// another user).
    pub fn chown_all(&self, uid: u32, gid: u32) {
        fn walk(p: &Path, uid: u32, gid: u32) {
            let _ = std::os::unix::fs::lchown(p, Some(uid), Some(gid));
            if p.is_dir()
                && !p.is_symlink()
                && let Ok(rd) = fs::read_dir(p)
            {
                for e in rd.flatten() {
                    walk(&e.path(), uid, gid);
                }
            }
        }
        walk(self.path(), uid, gid);
    }
}

impl AsRef<Path> for Home {
    fn as_ref(&self) -> &Path {
        self.path()
    }
}

/// Every file below `p` that is not a directory (symbolic links are not followed),
/// appended to `out`; nothing when `p` cannot be read.
pub fn walk(p: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = fs::read_dir(p) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
}

/// A home for single-user mode: searchable by everyone and, when the tests run as root,
/// owned by the single-user runner (`nobody`).
pub fn user_home() -> Home {
    let h = Home::new();
    fs::set_permissions(h.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    if is_root() {
        let (u, g) = nobody();
        h.chown_all(u, g);
    }
    h
}

/// A home for root-mode tests: the qmail users exist, the home is searchable by
/// everyone and its queue has netqmail's owners and modes. Returns the home and the ids.
pub fn root_mode_home() -> (Home, control::Ids) {
    assert!(
        is_root(),
        "root-mode tests need root; run the suite as root"
    );
    super::ensure_qmail_users();
    let ids = control::Ids::lookup().expect("qmail ids");
    let h = Home::new();
    fs::set_permissions(h.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    qmail_queue::create_queue(&h.queue(), &ids).expect("queue with qmail owners");
    (h, ids)
}

/// A command running `program` in single-user mode (as nobody when root) with
/// QMAIL_HOME set to `home` and `home` as its working directory.
pub fn user_cmd(home: impl AsRef<Path>, program: &Path) -> Command {
    let home = home.as_ref();
    let mut c = if is_root() {
        let mut c = Command::new(tool("setpriv"));
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(program);
        c
    } else {
        Command::new(program)
    };
    c.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("QMAIL_HOME", home)
        .current_dir(home);
    c
}

/// Writes an executable script into the home's bin/, replacing the built program.
pub fn script(home: &Home, name: &str, body: &str) {
    let p = home.path().join("bin").join(name);
    write_executable(&p, body);
    chown_user(&p);
}

/// Writes `contents` as the executable file `p` (mode 0755), replacing what was there
/// (a symbolic link to a built program, say) instead of writing through it.
pub fn write_executable(p: &Path, contents: impl AsRef<[u8]>) {
    let _ = fs::remove_file(p);
    fs::write(p, contents).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    fs::set_permissions(p, fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Creates a file below the home as the single-user runner.
pub fn user_file(home: &Home, rel: &str, data: &[u8]) -> PathBuf {
    let p = home.path().join(rel);
    fs::write(&p, data).expect("write");
    chown_user(&p);
    p
}

/// A private directory for a test peer's files, readable and writable by everyone (peers
/// and single-user programs run as nobody); removed when dropped.
pub fn scratch(prefix: &str) -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("tempdir");
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
    d
}

/// A home for single-user mode (owned by nobody when root), with `control/me`,
/// `rcpthosts` and `locals` set to testhost.example, and every local address delivered
/// by the real qmail-local into `alias/Maildir/` (through `alias/.qmail-default`).
pub fn mail_home() -> Home {
    let h = Home::new();
    fs::set_permissions(h.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    h.control("rcpthosts", "testhost.example\n");
    h.control("locals", "testhost.example\n");
    let md = h.path().join("alias/Maildir");
    for d in ["", "tmp", "new", "cur"] {
        fs::create_dir_all(md.join(d)).expect("maildir");
    }
    fs::set_permissions(md, fs::Permissions::from_mode(0o700)).expect("chmod");
    fs::write(h.path().join("alias/.qmail-default"), "./Maildir/\n").expect("dot-qmail");
    if is_root() {
        let (u, g) = nobody();
        h.chown_all(u, g);
    }
    h
}

/// Files in a Maildir's new/ and cur/, with their contents.
pub fn maildir_messages(md: &Path) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(rd) = fs::read_dir(md.join(sub)) {
            for e in rd.flatten() {
                if let Ok(b) = fs::read(e.path()) {
                    v.push(b);
                }
            }
        }
    }
    v
}

/// Number of files in a Maildir's new/ and cur/.
pub fn maildir_count(md: &Path) -> usize {
    ["new", "cur"]
        .iter()
        .map(|s| fs::read_dir(md.join(s)).map_or(0, Iterator::count))
        .sum()
}

/// A tmpfs mounted for a test (as root): small file systems that fill up. Unmounted
/// (lazily) when dropped.
pub struct Tmpfs {
    path: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Tmpfs {
    /// A tmpfs of `size` (mode 0755) on a temporary directory.
    pub fn new(size: &str) -> Tmpfs {
        Tmpfs::with_options(&format!("size={size},mode=0755"))
    }

    /// A tmpfs with the mount options `opts` (size=, nr_inodes=, mode=, uid=, gid=) on a
    /// temporary directory.
    pub fn with_options(opts: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tmp");
        let mut t = Tmpfs::mount_on(dir.path(), opts);
        t._dir = Some(dir);
        t
    }

    /// A tmpfs with the mount options `opts` on `dir` (made when missing).
    pub fn mount_on(dir: &Path, opts: &str) -> Tmpfs {
        fs::create_dir_all(dir).expect("mkdir mount point");
        let st = Command::new(tool("mount"))
            .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount");
        assert!(
            st.success(),
            "mount tmpfs -o {opts} on {} failed",
            dir.display()
        );
        Tmpfs {
            path: dir.to_path_buf(),
            _dir: None,
        }
    }

    /// Changes mount options (`nr_inodes=N`, `size=S`) in place.
    pub fn remount(&self, opts: &str) {
        let st = Command::new(tool("mount"))
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.path)
            .status()
            .expect("remount");
        assert!(st.success(), "remount -o {opts} failed");
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new(tool("umount"))
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

//! Where the programs are: the built rqmail programs and the real peers installed on the
//! machine (tcpserver, swaks, openssl, Python).

use std::path::{Path, PathBuf};

/// The directory holding the built programs (`target/debug` or `target/release`): the
/// parent of the test executable's `deps/` directory.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("RQMAIL_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").to_path_buf()
}

/// The path of a built rqmail program; panics with a hint when it is missing.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is not built: run `cargo build --workspace` (the README's test command does)",
        p.display()
    );
    p
}

/// The path of an external program the tests need (tcpserver, swaks, ...); panics with a
/// hint when it is not installed.
pub fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/bin", "/usr/local/bin", "/sbin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} is not installed: run the README's test command, which installs the test peers")
}

/// Python for helpers: `/usr/bin/python3` (the pyenv shim cannot run as other users).
pub fn python() -> PathBuf {
    tool("python3")
}

/// True when the tests run as root (root-mode tests need it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

//! Confinement after start-up: what a program may still do once it knows its job.
//!
//! Four independent steps, each asked for by a [`Policy`] and each degrading on its own
//! when the kernel or the process cannot do it (the program then runs as netqmail's
//! would, with uids only):
//!
//! 1. `no_new_privs` (prctl `PR_SET_NO_NEW_PRIVS`): an executed setuid or setgid program
//!    no longer gains its owner's ids. Only for programs that never run a setuid program
//!    (qmail-queue is one), and required by the kernel for steps 3 and 4 in a process
//!    without `CAP_SYS_ADMIN`.
//! 2. The capability bounding set: every capability outside the kept list is dropped, so
//!    that nothing this process executes, not even a setuid-root program, ever gets it.
//!    Changing it needs `CAP_SETPCAP`, that is root: qmail-start does it for the
//!    daemons it starts before they take their uids, qmail-lspawn for itself.
//! 3. Landlock: file access limited to the listed paths, each with the access given;
//!    optionally no TCP bind or connect at all (Landlock ABI 4).
//! 4. seccomp: an allow-list of system calls; any other fails with `EPERM` (the program
//!    sees an error it already handles, not a crash).
//!
//! [`kernel_support`] tells whether this kernel has Landlock and seccomp, for the one
//! warning qmail-send logs at start when it lacks them.

use caps::{CapSet, Capability};
use landlock::{
    ABI, Access, AccessFs, AccessNet, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The newest Landlock ABI this module asks for (older kernels get what they have).
const LANDLOCK_ABI: ABI = ABI::V5;

/// What a path is opened for under Landlock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsAccess {
    /// Read files, list directories.
    Read,
    /// Read and execute (programs and their shared libraries).
    Exec,
    /// Read, write, create, rename and remove files and directories beneath.
    ReadWrite,
}

/// At most this many symbolic links in control/ are followed by
/// [`Policy::allow_control`].
pub const MAX_CONTROL_LINKS: usize = 1000;

/// Where systems keep certificate authorities (Debian, Red Hat, SUSE, Alpine, and
/// OpenSSL's own directories).
pub const CERT_DIRS: &[&str] = &[
    "/etc/ssl",
    "/etc/pki",
    "/etc/ca-certificates",
    "/usr/share/ca-certificates",
    "/usr/local/share/ca-certificates",
    "/usr/lib/ssl",
    "/usr/local/ssl",
    "/var/lib/ca-certificates",
];

/// How one step went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The policy does not ask for it.
    NotAsked,
    /// In force.
    Done,
    /// In force with what this kernel supports (an older Landlock ABI).
    Partial,
    /// This kernel cannot do it.
    Unsupported,
    /// The process may not do it (the reason), or it failed.
    Failed(String),
}

/// How each step of [`Policy::apply`] went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub no_new_privs: Step,
    pub bounding_set: Step,
    pub landlock: Step,
    pub seccomp: Step,
}

impl Outcome {
    /// One phrase per step that was asked for and is not in force, e.g.
    /// `landlock: unsupported by this kernel`.
    pub fn problems(&self) -> Vec<String> {
        let mut v = Vec::new();
        for (name, s) in [
            ("no_new_privs", &self.no_new_privs),
            ("capability bounding set", &self.bounding_set),
            ("landlock", &self.landlock),
            ("seccomp", &self.seccomp),
        ] {
            match s {
                Step::NotAsked | Step::Done | Step::Partial => {}
                Step::Unsupported => v.push(format!("{name}: {UNSUPPORTED}")),
                Step::Failed(why) => v.push(format!("{name}: {why}")),
            }
        }
        v
    }
}

impl Outcome {
    /// The problems that are neither this kernel's lack nor a bounding set left alone
    /// for want of root (an unprivileged process asks for it when it might be root):
    /// what a program started per connection notes at the debug level.
    pub fn unexpected(&self) -> Vec<String> {
        let mut o = self.clone();
        if o.bounding_set == Step::Failed(NO_SETPCAP.to_string()) {
            o.bounding_set = Step::NotAsked;
        }
        o.problems()
            .into_iter()
            .filter(|p| !p.ends_with(UNSUPPORTED))
            .collect()
    }

    /// Writes each of [`unexpected`](Outcome::unexpected) as a debug diagnostic.
    pub fn note_unexpected(&self) {
        for p in self.unexpected() {
            tracing::debug!("confinement: {p}");
        }
    }
}

const NO_SETPCAP: &str = "no CAP_SETPCAP to change it";
const UNSUPPORTED: &str = "unsupported by this kernel";

/// What one program keeps after start-up. Built with the methods below, then
/// [`apply`](Policy::apply)ed once.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    no_new_privs: bool,
    bounding_keep: Option<Vec<Capability>>,
    paths: Option<Vec<(PathBuf, FsAccess)>>,
    deny_tcp: bool,
    reparents: bool,
    syscalls: Option<Vec<i64>>,
}

impl Policy {
    /// A policy that asks for nothing.
    pub fn new() -> Policy {
        Policy::default()
    }

    /// Sets no_new_privs.
    pub fn no_new_privs(mut self) -> Policy {
        self.no_new_privs = true;
        self
    }

    /// Drops every capability but `keep` from the bounding set.
    pub fn bounding_set(mut self, keep: &[Capability]) -> Policy {
        self.bounding_keep = Some(keep.to_vec());
        self
    }

    /// Turns Landlock on (with no path allowed yet).
    pub fn landlock(mut self) -> Policy {
        self.paths.get_or_insert_with(Vec::new);
        self
    }

    /// Allows `path` (a directory and everything beneath it, or one file) under
    /// Landlock; turns Landlock on. A path that does not exist is left out.
    pub fn allow(mut self, path: impl Into<PathBuf>, access: FsAccess) -> Policy {
        self.paths
            .get_or_insert_with(Vec::new)
            .push((path.into(), access));
        self
    }

    /// Allows reading `home/control` and, for each symbolic link directly in it (a
    /// certificate kept elsewhere, a `tlshosts` directory, a file shared with another
    /// system), what it points to: read where it lies at start-up.
    pub fn allow_control(self, home: &Path) -> Policy {
        self.allow_with_links(home.join("control"), FsAccess::Read)
    }

    /// Allows `dir` with `access` and, for each symbolic link directly in it (at most
    /// [`MAX_CONTROL_LINKS`]), what it points to now, with the same access: a bin/ whose
    /// programs are links to where they were built or packaged, a control/ whose files
    /// are kept elsewhere.
    pub fn allow_with_links(mut self, dir: PathBuf, access: FsAccess) -> Policy {
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten().take(MAX_CONTROL_LINKS) {
                if e.file_type().is_ok_and(|t| t.is_symlink())
                    && let Ok(real) = std::fs::canonicalize(e.path())
                {
                    self = self.allow(real, access);
                }
            }
        }
        self.allow(dir, access)
    }

    /// Allows reading the system's certificate directories and what `SSL_CERT_FILE` and
    /// `SSL_CERT_DIR` name (rustls-native-certs reads them for qmail-remote's
    /// control/tlsverify).
    pub fn allow_certificates(mut self) -> Policy {
        for d in CERT_DIRS {
            self = self.allow(d, FsAccess::Read);
        }
        for v in ["SSL_CERT_FILE", "SSL_CERT_DIR"] {
            if let Some(p) = std::env::var_os(v) {
                self = self.allow(p, FsAccess::Read);
            }
        }
        self
    }

    /// Allows reading `/dev/urandom` and `/dev/random`: a statically linked program's
    /// random-number crates (rand, getrandom 0.3 and later) cannot find glibc's
    /// getrandom there and read the devices instead.
    pub fn allow_random_devices(self) -> Policy {
        self.allow("/dev/urandom", FsAccess::Read)
            .allow("/dev/random", FsAccess::Read)
    }

    /// No TCP bind or connect at all (Landlock ABI 4 and later).
    pub fn deny_tcp(self) -> Policy {
        self.landlock().deny_tcp_flag()
    }

    /// The program renames or links files from one directory to another (a Maildir's
    /// new/ to cur/, qmail-queue's pid/ to mess/): Landlock ABI 1 refuses that under any
    /// rules (EXDEV), so on such a kernel Landlock is left out (unsupported).
    pub fn reparents(mut self) -> Policy {
        self.reparents = true;
        self
    }

    fn deny_tcp_flag(mut self) -> Policy {
        self.deny_tcp = true;
        self
    }

    /// Turns the seccomp allow-list on with these system calls (see [`syscalls`]).
    pub fn syscalls(mut self, sets: &[&[i64]]) -> Policy {
        let v = self.syscalls.get_or_insert_with(Vec::new);
        for set in sets {
            v.extend_from_slice(set);
        }
        v.sort_unstable();
        v.dedup();
        self
    }

    /// Applies the steps in order: no_new_privs, bounding set, Landlock, seccomp.
    pub fn apply(&self) -> Outcome {
        let support = kernel_support();
        let no_new_privs = if self.no_new_privs {
            match nix::sys::prctl::set_no_new_privs() {
                Ok(()) => Step::Done,
                Err(e) => Step::Failed(e.desc().to_string()),
            }
        } else {
            Step::NotAsked
        };
        let bounding_set = match &self.bounding_keep {
            None => Step::NotAsked,
            Some(keep) => bounding(keep),
        };
        let landlock = match &self.paths {
            None => Step::NotAsked,
            Some(_) if self.reparents && (1..2).contains(&support.landlock_abi) => {
                Step::Unsupported
            }
            Some(paths) => landlock(paths, self.deny_tcp),
        };
        let seccomp = match &self.syscalls {
            None => Step::NotAsked,
            Some(list) if support.seccomp => seccomp(list),
            Some(_) => Step::Unsupported,
        };
        Outcome {
            no_new_privs,
            bounding_set,
            landlock,
            seccomp,
        }
    }
}

fn bounding(keep: &[Capability]) -> Step {
    let Ok(now) = caps::read(None, CapSet::Bounding) else {
        return Step::Unsupported;
    };
    let extra: Vec<Capability> = now.into_iter().filter(|c| !keep.contains(c)).collect();
    if extra.is_empty() {
        return Step::Done;
    }
    // Dropping needs CAP_SETPCAP in the effective set.
    if !caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false) {
        return Step::Failed(NO_SETPCAP.to_string());
    }
    for c in extra {
        if let Err(e) = caps::drop(None, CapSet::Bounding, c) {
            return Step::Failed(e.to_string());
        }
    }
    Step::Done
}

fn landlock(paths: &[(PathBuf, FsAccess)], deny_tcp: bool) -> Step {
    let abi = LANDLOCK_ABI;
    let read = AccessFs::from_read(abi) & !AccessFs::Execute;
    let file_only = AccessFs::from_file(abi);
    let build = || -> Result<landlock::RestrictionStatus, landlock::RulesetError> {
        let mut rs = Ruleset::default().handle_access(AccessFs::from_all(abi))?;
        if deny_tcp {
            rs = rs.handle_access(AccessNet::from_all(abi))?;
        }
        let mut created = rs.create()?.no_new_privs(false);
        for (p, a) in paths {
            let Ok(fd) = PathFd::new(p) else {
                continue;
            };
            let mut access = match a {
                FsAccess::Read => read,
                FsAccess::Exec => read | AccessFs::Execute,
                FsAccess::ReadWrite => AccessFs::from_all(abi),
            };
            if !is_dir(&fd) {
                access &= file_only;
            }
            created = created.add_rule(PathBeneath::new(fd, access))?;
        }
        created.restrict_self()
    };
    match build() {
        Ok(st) => match st.ruleset {
            RulesetStatus::FullyEnforced => Step::Done,
            RulesetStatus::PartiallyEnforced => Step::Partial,
            RulesetStatus::NotEnforced => Step::Unsupported,
        },
        Err(e) => Step::Failed(e.to_string()),
    }
}

/// Whether the opened path is a directory: one fstat of the descriptor, not a second
/// walk of the path.
fn is_dir(fd: &PathFd) -> bool {
    use std::os::fd::AsFd;
    nix::sys::stat::fstat(fd.as_fd()).is_ok_and(|st| {
        nix::sys::stat::SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT)
            == nix::sys::stat::SFlag::S_IFDIR
    })
}

fn seccomp(list: &[i64]) -> Step {
    let Ok(arch) = std::env::consts::ARCH.try_into() else {
        return Step::Unsupported;
    };
    let tree = audit_arch().and_then(|a| bpf::allow_list(list, a));
    let prog: seccompiler::BpfProgram = match tree {
        Some(p) => p,
        // No tree for this list (an architecture without its audit value here, or a
        // list too long for BPF's 8-bit jumps): seccompiler's chain, the same verdicts.
        None => {
            let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> =
                list.iter().map(|&n| (n, Vec::new())).collect();
            let filter = match seccompiler::SeccompFilter::new(
                rules,
                seccompiler::SeccompAction::Errno(libc::EPERM as u32),
                seccompiler::SeccompAction::Allow,
                arch,
            ) {
                Ok(f) => f,
                Err(e) => return Step::Failed(e.to_string()),
            };
            match filter.try_into() {
                Ok(p) => p,
                Err(e) => return Step::Failed(format!("{e:?}")),
            }
        }
    };
    match seccompiler::apply_filter_all_threads(&prog) {
        Ok(()) => Step::Done,
        Err(e) => Step::Failed(e.to_string()),
    }
}

/// This architecture's AUDIT_ARCH value, which a filter checks first.
fn audit_arch() -> Option<u32> {
    if cfg!(target_arch = "x86_64") {
        Some(62 | 0x8000_0000 | 0x4000_0000)
    } else if cfg!(target_arch = "aarch64") {
        Some(183 | 0x8000_0000 | 0x4000_0000)
    } else if cfg!(target_arch = "riscv64") {
        Some(243 | 0x8000_0000 | 0x4000_0000)
    } else {
        None
    }
}

/// An allow-list of system calls as a classic BPF program whose numbers are found by
/// binary search. seccompiler compiles a list into a chain of one comparison per call,
/// and the kernel runs a new filter once for every system-call number when it is
/// installed (to cache the calls it always allows): with a chain of 400 instructions
/// that cost 0.35 to 0.9 ms of CPU per process here, and the same calls as a search tree
/// nothing measurable (bench/RESULTS.md, run 8, measured with a small C program). The
/// verdicts are the same: another architecture kills the process, a listed number is
/// allowed, any other fails with EPERM.
mod bpf {
    use seccompiler::sock_filter;

    /// BPF_LD | BPF_W | BPF_ABS (the first two are 0).
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x05 | 0x10;
    const JGE_K: u16 = 0x05 | 0x30;
    const RET_K: u16 = 0x06;
    /// Offsets in `struct seccomp_data`.
    const NR: u32 = 0;
    const ARCH: u32 = 4;
    pub const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    pub const DENY: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    pub const KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;
    /// Numbers compared one by one at the bottom of the tree.
    const LEAF: usize = 4;

    fn op(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
        sock_filter { code, jt, jf, k }
    }

    /// The program for `list` on the architecture `audit_arch`; `None` when a jump would
    /// not fit BPF's 8-bit offsets.
    pub fn allow_list(list: &[i64], audit_arch: u32) -> Option<Vec<sock_filter>> {
        let mut nrs: Vec<u32> = list.iter().filter_map(|&n| u32::try_from(n).ok()).collect();
        nrs.sort_unstable();
        nrs.dedup();
        let mut p = vec![
            op(LD_W_ABS, ARCH, 0, 0),
            op(JEQ_K, audit_arch, 1, 0),
            op(RET_K, KILL, 0, 0),
            op(LD_W_ABS, NR, 0, 0),
        ];
        p.extend(tree(&nrs)?);
        Some(p)
    }

    /// The search over sorted `nrs`, the number in the accumulator.
    fn tree(nrs: &[u32]) -> Option<Vec<sock_filter>> {
        if nrs.len() <= LEAF {
            // jeq n_0 .. jeq n_k-1, then the refusal, then the permission.
            let k = nrs.len();
            let mut v = Vec::with_capacity(k + 2);
            for (i, &n) in nrs.iter().enumerate() {
                v.push(op(JEQ_K, n, u8::try_from(k - i).ok()?, 0));
            }
            v.push(op(RET_K, DENY, 0, 0));
            v.push(op(RET_K, ALLOW, 0, 0));
            return Some(v);
        }
        let mid = nrs.len() / 2;
        let left = tree(&nrs[..mid])?;
        let right = tree(&nrs[mid..])?;
        let mut v = Vec::with_capacity(1 + left.len() + right.len());
        v.push(op(JGE_K, nrs[mid], u8::try_from(left.len()).ok()?, 0));
        v.extend(left);
        v.extend(right);
        Some(v)
    }

    /// Runs `p` on a system call (for tests): the verdict.
    #[cfg(test)]
    pub fn run(p: &[sock_filter], arch: u32, nr: u32) -> u32 {
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let i = &p[pc];
            pc += 1;
            match i.code {
                LD_W_ABS => acc = if i.k == ARCH { arch } else { nr },
                JEQ_K => pc += usize::from(if acc == i.k { i.jt } else { i.jf }),
                JGE_K => pc += usize::from(if acc >= i.k { i.jt } else { i.jf }),
                RET_K => return i.k,
                c => panic!("unexpected BPF code {c:#x}"),
            }
        }
    }
}

/// What this kernel offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Support {
    /// The Landlock ABI version, 0 when Landlock is not there (or not enabled).
    pub landlock_abi: i64,
    /// seccomp filters.
    pub seccomp: bool,
}

/// Asks the kernel what it offers.
pub fn kernel_support() -> Support {
    Support {
        landlock_abi: crate::sys::landlock_abi(),
        seccomp: crate::sys::seccomp_supported(),
    }
}

/// The one warning a program that starts the others logs when this kernel lacks
/// Landlock or seccomp: `None` when it has both.
pub fn support_warning() -> Option<String> {
    let s = kernel_support();
    let mut missing = Vec::new();
    if s.landlock_abi < 1 {
        missing.push("Landlock");
    }
    if !s.seccomp {
        missing.push("seccomp");
    }
    (!missing.is_empty()).then(|| {
        format!(
            "this kernel has no {}: programs run without that confinement",
            missing.join(" and ")
        )
    })
}

/// The fields of `/proc/PID/status` that show a process's confinement: NoNewPrivs,
/// Seccomp (0 none, 2 filter) and CapBnd (hexadecimal), as text.
pub fn status_of(pid: u32) -> Option<(String, String, String)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    Some((field("NoNewPrivs:")?, field("Seccomp:")?, field("CapBnd:")?))
}

/// System call sets for [`Policy::syscalls`]: numbers for this architecture.
pub mod syscalls {
    /// What every Rust program needs to run and end: memory, signals, time, threads'
    /// futexes, randomness, reading and writing open descriptors, exiting.
    pub const RUNTIME: &[i64] = &[
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_readv,
        libc::SYS_writev,
        libc::SYS_pread64,
        libc::SYS_pwrite64,
        libc::SYS_close,
        libc::SYS_fstat,
        libc::SYS_newfstatat,
        libc::SYS_statx,
        libc::SYS_lseek,
        libc::SYS_fcntl,
        libc::SYS_ioctl,
        libc::SYS_dup,
        libc::SYS_dup3,
        libc::SYS_mmap,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_mprotect,
        libc::SYS_madvise,
        libc::SYS_brk,
        libc::SYS_rt_sigaction,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigreturn,
        libc::SYS_sigaltstack,
        libc::SYS_futex,
        libc::SYS_getrandom,
        libc::SYS_clock_gettime,
        libc::SYS_clock_getres,
        libc::SYS_clock_nanosleep,
        libc::SYS_nanosleep,
        libc::SYS_gettimeofday,
        libc::SYS_getpid,
        libc::SYS_gettid,
        libc::SYS_getuid,
        libc::SYS_geteuid,
        libc::SYS_getgid,
        libc::SYS_getegid,
        libc::SYS_sched_yield,
        libc::SYS_sched_getaffinity,
        libc::SYS_prlimit64,
        libc::SYS_uname,
        libc::SYS_ppoll,
        libc::SYS_pselect6,
        libc::SYS_restart_syscall,
        libc::SYS_exit,
        libc::SYS_exit_group,
        libc::SYS_tgkill,
        // What glibc's start of a thread does in that thread: a thread spawned just
        // before the filter (a watchdog) may reach these only after the filter binds
        // every thread, and glibc aborts ("rseq registration failed") when rseq fails.
        libc::SYS_rseq,
        libc::SYS_set_robust_list,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_poll,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_select,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_dup2,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_stat,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_lstat,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_time,
    ];

    /// Opening, listing, syncing, locking, truncating and removing files (Landlock
    /// decides which).
    pub const FILES: &[i64] = &[
        libc::SYS_openat,
        libc::SYS_getdents64,
        libc::SYS_fsync,
        libc::SYS_fdatasync,
        libc::SYS_flock,
        libc::SYS_ftruncate,
        libc::SYS_unlinkat,
        libc::SYS_readlinkat,
        libc::SYS_faccessat,
        libc::SYS_faccessat2,
        libc::SYS_fchdir,
        libc::SYS_chdir,
        libc::SYS_getcwd,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_open,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_unlink,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_readlink,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_access,
    ];

    /// Renaming files (a Maildir's new/ to cur/; Landlock decides where).
    pub const RENAME: &[i64] = &[
        libc::SYS_renameat,
        libc::SYS_renameat2,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_rename,
    ];

    /// Waiting for and signalling a child started before confinement (qmail-qmqpd's
    /// qmail-queue).
    pub const CHILDREN: &[i64] = &[libc::SYS_wait4, libc::SYS_waitid, libc::SYS_kill];

    /// Talking over descriptors already open (a socket pair, the client's connection):
    /// sending, receiving and shutting down, no new socket.
    pub const SOCKET_IO: &[i64] = &[
        libc::SYS_getsockname,
        libc::SYS_getpeername,
        libc::SYS_getsockopt,
        libc::SYS_setsockopt,
        libc::SYS_sendto,
        libc::SYS_recvfrom,
        libc::SYS_sendmsg,
        libc::SYS_recvmsg,
        libc::SYS_shutdown,
    ];

    /// A network client: sockets, connecting, sending and receiving, waiting.
    pub const NETWORK: &[i64] = &[
        libc::SYS_socket,
        libc::SYS_connect,
        libc::SYS_bind,
        libc::SYS_getsockname,
        libc::SYS_getpeername,
        libc::SYS_getsockopt,
        libc::SYS_setsockopt,
        libc::SYS_sendto,
        libc::SYS_recvfrom,
        libc::SYS_sendmsg,
        libc::SYS_recvmsg,
        libc::SYS_sendmmsg,
        libc::SYS_recvmmsg,
        libc::SYS_shutdown,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn the_allow_list_tree_gives_every_number_its_verdict() {
        let arch = audit_arch().expect("an architecture with an audit value");
        let sets: Vec<Vec<i64>> = vec![
            Vec::new(),
            vec![3],
            syscalls::RUNTIME.to_vec(),
            [
                syscalls::RUNTIME,
                syscalls::FILES,
                syscalls::RENAME,
                syscalls::SOCKET_IO,
            ]
            .concat(),
            (0..200).map(|n| n * 2).collect(),
        ];
        for list in sets {
            let p = bpf::allow_list(&list, arch).expect("a tree");
            assert!(p.len() <= 4096);
            for nr in (0..1100u32).chain([0x4000_0000, 0x4000_0001, u32::MAX]) {
                let want = if list.contains(&i64::from(nr)) {
                    bpf::ALLOW
                } else {
                    bpf::DENY
                };
                assert_eq!(bpf::run(&p, arch, nr), want, "number {nr} in {list:?}");
            }
            assert_eq!(bpf::run(&p, arch ^ 1, 0), bpf::KILL);
        }
        // A list whose tree would need a jump past 255 instructions: no tree.
        let long: Vec<i64> = (0..2000).collect();
        assert!(bpf::allow_list(&long, arch).is_none());
    }

    /// Runs the test `name` in a child process of this test binary (confinement is for
    /// the whole process, and cannot be undone), with RQMAIL_CONFINE_DIR=`dir`.
    fn in_child(name: &str, dir: &Path) -> (bool, String) {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture", "--ignored"])
            .env("RQMAIL_CONFINE_CHILD", "1")
            .env("RQMAIL_CONFINE_DIR", dir)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }

    #[test]
    #[ignore = "runs only as the child of confinement_is_in_force"]
    fn confined_child() {
        if std::env::var_os("RQMAIL_CONFINE_CHILD").is_none() {
            return;
        }
        let dir = std::env::var_os("RQMAIL_CONFINE_DIR").unwrap();
        let dir = PathBuf::from(dir);
        let allowed = dir.join("allowed");
        let outside = dir.join("outside");
        // This thread's status (the test harness runs the test in a thread of its own),
        // opened now: /proc is not among the allowed paths.
        let tid = nix::unistd::gettid();
        let mut status = std::fs::File::open(format!("/proc/self/task/{tid}/status")).unwrap();
        let o = Policy::new()
            .no_new_privs()
            .allow(&allowed, FsAccess::ReadWrite)
            .syscalls(&[syscalls::RUNTIME, syscalls::FILES])
            .apply();
        if kernel_support().landlock_abi < 1 {
            println!("SKIP no landlock");
            return;
        }
        assert_eq!(o.no_new_privs, Step::Done);
        assert_eq!(o.landlock, Step::Done);
        assert_eq!(o.seccomp, Step::Done);
        assert!(o.problems().is_empty());
        // allowed: read and write beneath `allowed`
        std::fs::write(allowed.join("new"), "x").unwrap();
        assert_eq!(std::fs::read(allowed.join("f")).unwrap(), b"inside");
        // forbidden by Landlock: a file outside, also through a symbolic link inside
        let e = std::fs::read(outside.join("f")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{e}");
        let e = std::fs::read(allowed.join("link")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{e}");
        // forbidden by seccomp: a system call not in the list fails with EPERM
        let e = std::net::TcpStream::connect("127.0.0.1:1").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
        let e = Command::new("/bin/true").status().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
        let mut st = String::new();
        std::io::Read::read_to_string(&mut status, &mut st).unwrap();
        assert!(st.contains("\nNoNewPrivs:\t1\n"), "{st}");
        assert!(st.contains("\nSeccomp:\t2\n"), "{st}");
        println!("CONFINED OK");
    }

    #[test]
    fn confinement_is_in_force() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("allowed")).unwrap();
        std::fs::create_dir(d.path().join("outside")).unwrap();
        std::fs::write(d.path().join("allowed/f"), "inside").unwrap();
        std::fs::write(d.path().join("outside/f"), "secret").unwrap();
        std::os::unix::fs::symlink(d.path().join("outside/f"), d.path().join("allowed/link"))
            .unwrap();
        let (ok, text) = in_child("confine::tests::confined_child", d.path());
        assert!(ok, "{text}");
        assert!(
            text.contains("CONFINED OK") || text.contains("SKIP no landlock"),
            "{text}"
        );
    }

    #[test]
    fn problems_name_the_steps() {
        let o = Outcome {
            no_new_privs: Step::Done,
            bounding_set: Step::Failed("no CAP_SETPCAP to change it".into()),
            landlock: Step::Unsupported,
            seccomp: Step::NotAsked,
        };
        assert_eq!(
            o.problems(),
            [
                "capability bounding set: no CAP_SETPCAP to change it",
                "landlock: unsupported by this kernel"
            ]
        );
    }

    #[test]
    fn status_of_this_process() {
        let (nnp, sc, bnd) = status_of(std::process::id()).unwrap();
        assert!(nnp == "0" || nnp == "1");
        assert!(sc.parse::<u32>().is_ok());
        assert!(u64::from_str_radix(&bnd, 16).is_ok());
    }
}

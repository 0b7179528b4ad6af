//! The inspection and control tools: qmail-qread and qmail-qstat on a queue built by hand
//! in netqmail's formats, qmail-showctl on a control directory, qmail-newmrh building
//! morercpthosts.cdb. Expected outputs are written out byte for byte from netqmail's
//! formatting rules.

use rqmail_tests::{Home, bin, ensure_qmail_users, is_root, tool, user_ids};
use std::fs;
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

/// Writes `data` to queue/`rel` (creating directories) with modification time `mtime`.
fn put(home: &Home, rel: &str, data: &[u8], mtime: Option<u64>) {
    let p = home.queue().join(rel);
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(&p, data).expect("write queue file");
    if let Some(t) = mtime {
        let f = fs::File::options().write(true).open(&p).expect("open");
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(t))
            .expect("set mtime");
    }
}

/// A queue as qmail-send leaves it: messages 24 (split 1), 5, 28 and 51 (split 5; 51 has
/// lost its mess file), 6 (not yet preprocessed: mess and todo, no info).
fn sample_queue(home: &Home) {
    // #24: local and remote recipients, some done, a bounce pending.
    put(home, "mess/1/24", &[b'x'; 321], None);
    put(home, "info/1/24", b"Fjoe@example.org\0", Some(812_090_814));
    put(
        home,
        "local/1/24",
        b"Tann@example.com\0Dbob@example.com\0",
        None,
    );
    put(
        home,
        "remote/1/24",
        b"Dcarl@example.net\0Tdora@example.net\0",
        None,
    );
    put(home, "bounce/24", b"", None);
    // #5: a bounce message (empty sender), remote only.
    put(home, "mess/5/5", b"", None);
    put(home, "info/5/5", b"F\0", Some(1_000_000_000));
    put(home, "remote/5/5", b"Tx@y\0", None);
    // #28: control and 8-bit characters; an unfinished record is not shown.
    put(home, "mess/5/28", b"0123456789", None);
    put(
        home,
        "info/5/28",
        b"Fevil\x01\xffsender\0",
        Some(1_700_000_000),
    );
    put(
        home,
        "local/5/28",
        b"Tcontrol\x07char@example.com\0Tunfinished",
        None,
    );
    // #51: info without mess.
    put(home, "info/5/51", b"Fa@b\0", Some(1_700_000_000));
    // Not message numbers: ignored (#5 is not bouncing).
    put(home, "info/5/junk", b"Fa@b\0", None);
    put(home, "bounce/+5", b"", None);
    // #6: queued, not preprocessed.
    put(home, "mess/6/6", b"hello", None);
    put(home, "todo/6", b"u0\0p1\0Fa@b\0Tc@d\0", None);
}

const SAMPLE_QREAD: &str = "\
26 Sep 1995 04:46:54 GMT  #24  321  <joe@example.org>  bouncing
\tlocal\tann@example.com
  done\tlocal\tbob@example.com
  done\tremote\tcarl@example.net
\tremote\tdora@example.net
9 Sep 2001 01:46:40 GMT  #5  0  <> 
\tremote\tx@y
14 Nov 2023 22:13:20 GMT  #28  10  <evil__sender> 
\tlocal\tcontrol_char@example.com
warning: trouble with #51: file does not exist
";

#[test]
fn qmail_qread_lists_a_hand_built_queue() {
    let home = Home::new();
    sample_queue(&home);
    let out = home.cmd("qmail-qread").output().expect("run qmail-qread");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), SAMPLE_QREAD);
    assert!(out.stderr.is_empty());
}

#[test]
fn qmail_qread_empty_queue_and_failures() {
    let home = Home::new();
    let out = home.cmd("qmail-qread").output().expect("run");
    assert_eq!((out.status.code(), out.stdout.len()), (Some(0), 0));

    // No queue: netqmail's message, on standard output.
    let mut c = home.cmd("qmail-qread");
    c.env("QMAIL_HOME", home.path().join("nonexistent"));
    let out = c.output().expect("run");
    assert_eq!(out.status.code(), Some(111));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "fatal: unable to chdir: file does not exist\n"
    );

    // A missing info/ subdirectory stops the listing where it is met.
    sample_queue(&home);
    fs::remove_dir(home.queue().join("info/3")).expect("rmdir");
    let out = home.cmd("qmail-qread").output().expect("run");
    assert_eq!(out.status.code(), Some(111));
    let head = SAMPLE_QREAD.split("9 Sep 2001").next().expect("head");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{head}fatal: unable to opendir info/3: file does not exist\n")
    );
}

#[test]
fn qmail_qread_needs_access_to_the_queue() {
    assert!(
        is_root(),
        "this test runs qmail-qread as nobody and needs root"
    );
    let home = Home::new();
    sample_queue(&home);
    // The home is reachable; the queue (0750) is not, and once it is, its info/
    // directories (0700, owned by root here) are not.
    let chmod = |p: &std::path::Path, mode: u32| {
        fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(mode)).expect("chmod")
    };
    chmod(home.path(), 0o755);
    let as_nobody = || {
        std::process::Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(home.path().join("bin/qmail-qread"))
            .env_clear()
            .env("QMAIL_HOME", home.path())
            .output()
            .expect("run as nobody")
    };
    let out = as_nobody();
    assert_eq!(out.status.code(), Some(111));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "fatal: unable to chdir: access denied\n"
    );
    chmod(&home.queue(), 0o755);
    let out = as_nobody();
    assert_eq!(out.status.code(), Some(111));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "fatal: unable to opendir info/0: access denied\n"
    );

    // Everything readable but one mess/ and one remote/ subdirectory and one local/ file:
    // each message with an unreadable part is a warning and the listing goes on.
    let st = std::process::Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(home.queue())
        .status()
        .expect("chmod -R");
    assert!(st.success());
    chmod(&home.queue().join("mess/1"), 0o700);
    chmod(&home.queue().join("remote/5"), 0o700);
    chmod(&home.queue().join("local/5/28"), 0o600);
    let out = as_nobody();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "warning: trouble with #24: access denied\n\
         9 Sep 2001 01:46:40 GMT  #5  0  <> \n\
         warning: trouble with #5: access denied\n\
         14 Nov 2023 22:13:20 GMT  #28  10  <evil__sender> \n\
         warning: trouble with #28: access denied\n\
         warning: trouble with #28: access denied\n\
         warning: trouble with #51: file does not exist\n"
    );
}

#[test]
fn qmail_qstat_counts() {
    let home = Home::new();
    let out = home.cmd("qmail-qstat").output().expect("run qmail-qstat");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "messages in queue: 0\nmessages in queue but not yet preprocessed: 0\n"
    );
    sample_queue(&home);
    let out = home.cmd("qmail-qstat").output().expect("run qmail-qstat");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "messages in queue: 4\nmessages in queue but not yet preprocessed: 1\n"
    );
    assert!(out.stderr.is_empty());
}

#[test]
fn qmail_qstat_counts_what_qmail_queue_wrote() {
    // Messages queued by the real qmail-queue, counted without qmail-send running.
    let home = Home::new();
    for i in 0..3 {
        let (r, w) = nix::unistd::pipe().expect("pipe");
        fs::File::from(w)
            .write_all(b"Fa@example.org\0Tb@example.com\0\0")
            .expect("envelope");
        let mut child = home
            .cmd("qmail-queue")
            .stdin(Stdio::piped())
            .stdout(Stdio::from(r))
            .spawn()
            .expect("spawn qmail-queue");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(format!("Subject: {i}\n\nx\n").as_bytes())
            .expect("message");
        drop(stdin);
        assert!(child.wait().expect("wait").success());
    }
    let out = home.cmd("qmail-qstat").output().expect("run");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "messages in queue: 3\nmessages in queue but not yet preprocessed: 3\n"
    );
    // Not preprocessed yet, so qmail-qread shows nothing.
    let out = home.cmd("qmail-qread").output().expect("run");
    assert_eq!((out.status.code(), out.stdout.len()), (Some(0), 0));
}

// ---------------------------------------------------------------------------------------
// qmail-showctl

/// qmail-showctl with a descriptor limit of 1088 (so its concurrency line is
/// (1088 - 64) / 2 = 512); returns (exit code, stdout).
fn showctl(home: &Home) -> (Option<i32>, String) {
    let out = std::process::Command::new(tool("prlimit"))
        .arg("--nofile=1088:1088")
        .arg("--")
        .arg(bin("qmail-showctl"))
        .env_clear()
        .env("QMAIL_HOME", home.path())
        .output()
        .expect("run qmail-showctl");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The output after the seven header lines.
fn body(out: &str) -> &str {
    let mut rest = out;
    for _ in 0..7 {
        rest = rest.split_once('\n').expect("header line").1;
    }
    rest
}

/// Control files that exercise every kind of paragraph; the expected text below was
/// derived from qmail-showctl.c and control.c (and matches netqmail's program).
fn sample_control(home: &Home) {
    home.control("me", "mx.Example\n");
    home.control(
        "badmailfrom",
        "a@b\n#c\n\n  \nbad\x01x@y  \nnul\0split\n\0dropped\n@spam.example",
    );
    home.control("bouncefrom", "bounces \t\n");
    home.control("concurrencylocal", "99999999999\n");
    home.control("concurrencyremote", "3000000000");
    home.control("databytes", "abc\n");
    home.control("queuelifetime", "25x\n");
    home.control("defaulthost", "");
    fs::create_dir(home.path().join("control/defaultdomain")).expect("mkdir");
    home.control("locals", "Example.com\n");
    home.control("rcpthosts", "example.com\n.example.com\n");
    home.control("smtpgreeting", "mail caf\u{e9}\n");
    home.control("smtproutes", ":relay.example\nfoo.example:[1.2.3.4]:26\n");
    home.control("timeoutconnect", "0\n");
    home.control("zzz", "x");
    home.control(".hidden", "x");
    home.control("morercpthosts.tmp", "x");
}

const SAMPLE_SHOWCTL: &str = "
badmailfrom: 
a@b not accepted in MAIL FROM.
bad?x@y not accepted in MAIL FROM.
nul not accepted in MAIL FROM.
split not accepted in MAIL FROM.
@spam.example not accepted in MAIL FROM.

bouncefrom: Bounce user name is bounces.

bouncehost: (Default.) Bounce host name is mx.Example.

concurrencylocal: Local concurrency is 1215752191.

concurrencyremote: Remote concurrency is 0.

databytes: (Default.) SMTP DATA limit is 0 bytes.

defaultdomain: Oops! Trouble reading this file.

defaulthost: Default host name is .

doublebouncehost: (Default.) 2B recipient host: mx.Example.

doublebounceto: (Default.) 2B recipient user: postmaster.

envnoathost: (Default.) Presumed domain name is mx.Example.

helohost: (Default.) SMTP client HELO host name is mx.Example.

idhost: (Default.) Message-ID host name is mx.Example.

localiphost: (Default.) Local IP address becomes mx.Example.

locals: 
Messages for Example.com are delivered locally.

me: My name is mx.Example.

percenthack: (Default.) The percent hack is not allowed.

plusdomain: (Default.) Plus domain name is mx.Example.

qmqpservers: (Default.) No QMQP servers.

queuelifetime: Message lifetime in the queue is 25 seconds.

rcpthosts: 
SMTP clients may send messages to recipients at example.com.
SMTP clients may send messages to recipients at .example.com.

morercpthosts: (Default.) No effect.

morercpthosts.cdb: (Default.) No effect.

smtpgreeting: SMTP greeting: 220 mail caf??.

smtproutes: 
SMTP route: :relay.example
SMTP route: foo.example:[1.2.3.4]:26

timeoutconnect: SMTP client connection timeout is 0 seconds.

timeoutremote: (Default.) SMTP client data timeout is 1200 seconds.

timeoutsmtpd: (Default.) SMTP server data timeout is 1200 seconds.

virtualdomains: (Default.) No virtual domains.

.hidden: I have no idea what this file does.

morercpthosts.tmp: I have no idea what this file does.

zzz: I have no idea what this file does.
";

#[test]
fn qmail_showctl_explains_every_file() {
    let home = Home::new();
    sample_control(&home);
    let (code, out) = showctl(&home);
    assert_eq!(code, Some(0));
    assert_eq!(body(&out), SAMPLE_SHOWCTL);
}

#[test]
fn qmail_showctl_header_with_the_qmail_ids() {
    assert!(
        is_root(),
        "this test creates the qmail users and needs root"
    );
    ensure_qmail_users();
    let home = Home::new();
    let (code, out) = showctl(&home);
    assert_eq!(code, Some(0));
    let u = |n: &str| user_ids(n).0.to_string();
    let g = |n: &str| {
        nix::unistd::Group::from_name(n)
            .expect("group lookup")
            .expect("group exists")
            .gid
            .to_string()
    };
    let header = format!(
        "qmail home directory: {}.\nuser-ext delimiter: -.\npaternalism (in decimal): 2.\n\
         silent concurrency limit: 512.\nsubdirectory split: 23.\n\
         user ids: {}, {}, {}, 0, {}, {}, {}, {}.\ngroup ids: {}, {}.\n",
        home.path().display(),
        u("alias"),
        u("qmaild"),
        u("qmaill"),
        u("qmailp"),
        u("qmailq"),
        u("qmailr"),
        u("qmails"),
        g("nofiles"),
        g("qmail"),
    );
    assert!(out.starts_with(&header), "{out}");
    // A home with only control/me: every default, me filling in the host names.
    assert!(
        body(&out).contains("\nbouncehost: (Default.) Bounce host name is testhost.example.\n")
    );
    assert!(body(&out).contains("\nrcpthosts: (Default.) SMTP clients may send messages to any recipient.\n\nmorercpthosts: (Default.) No rcpthosts; morercpthosts is irrelevant.\n"));
}

#[test]
fn qmail_showctl_morercpthosts_states() {
    let home = Home::new();
    let cdb_line = |home: &Home| {
        let (code, out) = showctl(home);
        assert_eq!(code, Some(0));
        out.split("\nmorercpthosts.cdb: ")
            .nth(1)
            .expect("cdb paragraph")
            .lines()
            .next()
            .expect("line")
            .to_string()
    };
    let set_mtime = |name: &str, t: u64| {
        fs::File::options()
            .write(true)
            .open(home.path().join("control").join(name))
            .expect("open")
            .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(t))
            .expect("mtime");
    };
    assert_eq!(cdb_line(&home), "(Default.) No effect.");
    home.control("morercpthosts.cdb", "");
    assert_eq!(
        cdb_line(&home),
        "Oops! morercpthosts.cdb exists but morercpthosts doesn't."
    );
    home.remove_control("morercpthosts.cdb");
    home.control("morercpthosts", "more.example\n");
    assert_eq!(
        cdb_line(&home),
        "Oops! morercpthosts exists but morercpthosts.cdb doesn't."
    );
    home.control("morercpthosts.cdb", "");
    set_mtime("morercpthosts", 2_000_000_000);
    set_mtime("morercpthosts.cdb", 1_000_000_000);
    assert_eq!(
        cdb_line(&home),
        "Oops! morercpthosts.cdb is older than morercpthosts."
    );
    set_mtime("morercpthosts.cdb", 2_000_000_000);
    assert_eq!(
        cdb_line(&home),
        "Modified recently enough; hopefully up to date."
    );
    // Without rcpthosts, morercpthosts is explained as irrelevant; with it, as more hosts.
    let (_, out) = showctl(&home);
    assert!(
        out.contains(
            "\nmorercpthosts: \nNo rcpthosts; doesn't matter that morercpthosts has more.example.\n"
        ),
        "{out}"
    );
    home.control("rcpthosts", "example.com\n");
    let (_, out) = showctl(&home);
    assert!(
        out.contains(
            "\nmorercpthosts: \nSMTP clients may send messages to recipients at more.example.\n"
        ),
        "{out}"
    );
}

#[test]
fn qmail_showctl_failures() {
    let home = Home::new();
    // control/me unreadable: netqmail's message, without a newline.
    fs::remove_file(home.path().join("control/me")).expect("rm me");
    fs::create_dir(home.path().join("control/me")).expect("mkdir me");
    let (code, out) = showctl(&home);
    assert_eq!(code, Some(111));
    assert_eq!(body(&out), "Oops! Trouble reading control/me.");
    // No control directory.
    fs::remove_dir_all(home.path().join("control")).expect("rm control");
    let (code, out) = showctl(&home);
    assert_eq!(code, Some(111));
    assert_eq!(body(&out), "Oops! Unable to chdir to control.\n");
    // No home.
    let out = home
        .cmd("qmail-showctl")
        .env("QMAIL_HOME", home.path().join("nonexistent"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(111));
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.starts_with(&format!(
        "qmail home directory: {}.\n",
        home.path().join("nonexistent").display()
    )));
    assert_eq!(
        body(&out),
        format!(
            "Oops! Unable to chdir to {}.\n",
            home.path().join("nonexistent").display()
        )
    );
}

// ---------------------------------------------------------------------------------------
// qmail-newmrh

/// The sha256 of the morercpthosts.cdb netqmail 1.06's qmail-newmrh writes for
/// [`MRH_INPUT`] (measured with netqmail built from source).
const MRH_NETQMAIL_SHA256: &str =
    "2a00aa0351dc72624e1f8d2a3a2e0e519c2fa93d3a10cc60289924e67671ad15";
const MRH_INPUT: &str =
    "Mail.Example.COM\n# a comment\n\nb.example \t\n  c.example\nb.example\nlast.example";

#[test]
fn qmail_newmrh_builds_the_same_cdb_as_netqmail() {
    let home = Home::new();
    home.control("morercpthosts", MRH_INPUT);
    let out = home.cmd("qmail-newmrh").output().expect("run qmail-newmrh");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
    let cdb = home.path().join("control/morercpthosts.cdb");
    let sum = std::process::Command::new(tool("sha256sum"))
        .arg(&cdb)
        .output()
        .expect("sha256sum");
    let sum = String::from_utf8_lossy(&sum.stdout).into_owned();
    assert_eq!(sum.split_whitespace().next(), Some(MRH_NETQMAIL_SHA256));
    // Mode 0644 (umask 033), no temporary file left.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&cdb).expect("stat").permissions().mode() & 0o777,
        0o644
    );
    assert!(!home.path().join("control/morercpthosts.tmp").exists());
    // The keys, as qmail-smtpd looks them up.
    let db = control::Cdb::open_optional(&cdb)
        .expect("open")
        .expect("exists");
    for k in [
        "mail.example.com",
        "b.example",
        "  c.example",
        "last.example",
    ] {
        assert!(db.contains(k.as_bytes()).expect("lookup"), "{k}");
    }
    for k in [
        "Mail.Example.COM",
        "# a comment",
        "",
        "c.example",
        "b.example \t",
    ] {
        assert!(!db.contains(k.as_bytes()).expect("lookup"), "{k:?}");
    }
    // qmail-showctl now agrees that it is up to date.
    home.control("rcpthosts", "example.com\n");
    let (_, out) = showctl(&home);
    assert!(out.contains("\nmorercpthosts.cdb: Modified recently enough; hopefully up to date.\n"));
}

#[test]
fn qmail_newmrh_failures_leave_the_old_cdb() {
    let home = Home::new();
    home.control("morercpthosts", "a.example\n");
    assert!(home.cmd("qmail-newmrh").status().expect("run").success());
    let cdb = home.path().join("control/morercpthosts.cdb");
    let before = fs::read(&cdb).expect("cdb");

    // No morercpthosts.
    home.remove_control("morercpthosts");
    let out = home.cmd("qmail-newmrh").output().expect("run");
    assert_eq!(out.status.code(), Some(111));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "qmail-newmrh: fatal: unable to read control/morercpthosts: file does not exist\n"
    );
    assert_eq!(fs::read(&cdb).expect("cdb"), before);

    // The temporary file cannot be written.
    home.control("morercpthosts", "b.example\n");
    fs::create_dir(home.path().join("control/morercpthosts.tmp")).expect("mkdir");
    let out = home.cmd("qmail-newmrh").output().expect("run");
    assert_eq!(out.status.code(), Some(111));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "qmail-newmrh: fatal: unable to write to control/morercpthosts.tmp: is a directory\n"
    );
    assert_eq!(fs::read(&cdb).expect("cdb"), before);

    // No home.
    let out = home
        .cmd("qmail-newmrh")
        .env("QMAIL_HOME", home.path().join("nonexistent"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(111));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "qmail-newmrh: fatal: unable to chdir to {}: file does not exist\n",
            home.path().join("nonexistent").display()
        )
    );
}

/// The short-lived programs start through control::program_main!: descriptors 0, 1 and 2
/// that were closed are /dev/null (a file a setuid qmail-queue opens can never become its
/// standard error), and SIGPIPE is ignored (a reader that went away is a write error,
/// not a kill), as with an ordinary Rust main.
#[test]
fn programs_start_with_standard_descriptors_and_sigpipe_ignored() {
    let home = Home::new();
    let sh = |script: String| {
        std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .current_dir(home.path())
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("QMAIL_HOME", home.path())
            .output()
            .expect("sh")
    };
    // qmail-queue with standard error closed: the message is queued whole.
    let out = sh(format!(
        "printf 'Fa@example.org\\0Tb@example.com\\0\\0' > env; \
         printf 'Subject: t\\n\\nbody\\n' | {} 1< env 2>&-; echo \"rc=$?\"",
        bin("qmail-queue").display()
    ));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "rc=0\n");
    let q = home.queued();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].body_after_received(), b"Subject: t\n\nbody\n");

    // qmail-smtpd started with standard error closed holds /dev/null there.
    home.control("me", "testhost.example\n");
    let mut smtpd = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("exec {} 2>&-", bin("qmail-smtpd").display()))
        .env_clear()
        .env("QMAIL_HOME", home.path())
        .env("TCPREMOTEIP", "127.0.0.1")
        .env("TCPLOCALIP", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start qmail-smtpd");
    let mut greeting = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(smtpd.stdout.as_mut().expect("stdout")),
        &mut greeting,
    )
    .expect("greeting");
    assert_eq!(greeting, "220 testhost.example ESMTP\r\n");
    let fd2 = fs::read_link(format!("/proc/{}/fd/2", smtpd.id()));
    drop(smtpd.stdin.take());
    smtpd.wait().expect("wait");
    assert_eq!(
        fd2.expect("fd 2 is open"),
        std::path::Path::new("/dev/null")
    );

    // ... and passes it on: a QMAILQUEUE script it starts finds descriptor 2 open.
    let qq = home.path().join("qq");
    fs::write(
        &qq,
        "#!/bin/sh\n\
         readlink /proc/$$/fd/2 > \"$QMAIL_HOME/fd2\" 2>/dev/null || echo closed > \"$QMAIL_HOME/fd2\"\n\
         cat > /dev/null\ncat <&1 > /dev/null\nexit 0\n",
    )
    .expect("script");
    fs::set_permissions(&qq, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let out = sh(format!(
        "printf 'HELO c\\r\\nMAIL FROM:<a@b>\\r\\nRCPT TO:<c@d>\\r\\nDATA\\r\\nx\\r\\n.\\r\\nQUIT\\r\\n' \
         | QMAILQUEUE={} TCPREMOTEIP=127.0.0.1 TCPLOCALIP=127.0.0.1 {} 2>&-",
        qq.display(),
        bin("qmail-smtpd").display()
    ));
    let replies = String::from_utf8_lossy(&out.stdout);
    assert!(replies.contains("\r\n250 ok "), "{replies}");
    assert_eq!(
        fs::read_to_string(home.path().join("fd2")).expect("fd2"),
        "/dev/null\n"
    );

    // qmail-showctl into a pipe nobody reads: exit 111 from the write error, not death
    // by SIGPIPE.
    let (r, w) = nix::unistd::pipe().expect("pipe");
    drop(r);
    let st = home
        .cmd("qmail-showctl")
        .stdout(Stdio::from(w))
        .stderr(Stdio::null())
        .status()
        .expect("run qmail-showctl");
    assert_eq!(st.code(), Some(111), "{st:?}");
}

//! DNS for qmail-remote: a small stub resolver on hickory-proto's message format and
//! the standard library's sockets (no async runtime).
//!
//! Queries go to the name servers of /etc/resolv.conf (`nameserver` lines, at most three,
//! and `options timeout:N attempts:N`; 127.0.0.1 when none is listed), or to the servers
//! in the environment variable `RQMAIL_NAMESERVERS` (addresses with optional ports,
//! separated by spaces or commas: `127.0.0.1:5353 [::1]:53`), which replaces them. Each
//! query is sent over UDP with recursion desired, and again over TCP when the answer
//! comes back truncated; no search list is applied (netqmail's res_query).
//!
//! Failures keep netqmail's distinction. Permanent ([`DnsError::Hard`]): the name does not
//! exist (NXDOMAIN), or exists without any record in the answer, or cannot be a DNS
//! name. Temporary ([`DnsError::Soft`]): no server answered in time, or every answer was
//! SERVFAIL, REFUSED or another error code, or was malformed.
//!
//! With DANE (control/dane, see [`crate::dane`]) every query goes to the validating
//! resolvers named there instead, with the DO and AD bits set, and the AD bit of each
//! answer is remembered: [`Lookup::secure`] says whether an RRset (or its absence) was
//! validated by DNSSEC. A bogus answer is the resolver's SERVFAIL: a temporary failure.

use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::binary::BinEncodable;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// The environment variable that names the servers to ask instead of resolv.conf's.
pub const NAMESERVERS_ENV: &str = "RQMAIL_NAMESERVERS";

/// A failed lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsError {
    /// Try again later.
    Soft,
    /// The name has no such data and never will.
    Hard,
}

/// The lookups qmail-remote makes. Names are ASCII (or UTF-8, converted to their ASCII
/// form), without a trailing dot; names in answers come back the same way.
pub trait Lookup {
    /// The MX records of `name`: preference and exchange (`""` for the root, a "null MX").
    fn mx(&mut self, name: &str) -> Result<Vec<(u16, String)>, DnsError>;
    /// The A (`v6` false) or AAAA (`v6` true) records of `name`.
    fn addrs(&mut self, name: &str, v6: bool) -> Result<Vec<IpAddr>, DnsError>;
    /// The target of `name`'s CNAME record, if it has one.
    fn cname(&mut self, name: &str) -> Result<Option<String>, DnsError>;
    /// From now on, ask only `servers` (validating resolvers, trusted for their AD bit).
    fn validate_with(&mut self, _servers: Vec<SocketAddr>) {}
    /// Whether the last answer for `name` and `rtype` (data or no data) carried the AD bit
    /// of a trusted validating resolver. Always false without [`Lookup::validate_with`].
    fn secure(&self, _name: &str, _rtype: RecordType) -> bool {
        false
    }
    /// The name at the end of the CNAME chain the last answer for `name` and `rtype`
    /// followed, when it followed one (validating mode only).
    fn expanded(&self, _name: &str, _rtype: RecordType) -> Option<String> {
        None
    }
    /// The TLSA records of `name` (each record's data in wire form), and whether the
    /// answer was validated.
    fn tlsa(&mut self, _name: &str) -> Result<(Vec<Vec<u8>>, bool), DnsError> {
        Err(DnsError::Hard)
    }
}

/// Where and how to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub servers: Vec<SocketAddr>,
    pub timeout: Duration,
    pub attempts: u32,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            servers: vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53)],
            timeout: Duration::from_secs(5),
            attempts: 2,
        }
    }
}

/// Reads resolv.conf's text the way the C library does for what matters here.
pub fn parse_resolv_conf(text: &str) -> Config {
    let mut c = Config {
        servers: Vec::new(),
        ..Config::default()
    };
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok())
                    && c.servers.len() < 3
                {
                    c.servers.push(SocketAddr::new(ip, 53));
                }
            }
            Some("options") => {
                for w in words {
                    if let Some(n) = w
                        .strip_prefix("timeout:")
                        .and_then(|n| n.parse::<u64>().ok())
                    {
                        c.timeout = Duration::from_secs(n.clamp(1, 30));
                    } else if let Some(n) = w
                        .strip_prefix("attempts:")
                        .and_then(|n| n.parse::<u32>().ok())
                    {
                        c.attempts = n.clamp(1, 5);
                    }
                }
            }
            _ => {}
        }
    }
    if c.servers.is_empty() {
        c.servers = Config::default().servers;
    }
    c
}

/// Reads the list of `RQMAIL_NAMESERVERS`; entries that are not addresses are skipped.
pub fn parse_nameservers(list: &str) -> Vec<SocketAddr> {
    list.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .filter_map(|w| {
            w.parse::<SocketAddr>()
                .ok()
                .or_else(|| w.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
        })
        .collect()
}

/// The configuration from the environment or /etc/resolv.conf.
pub fn system_config() -> Config {
    let mut c = std::fs::read_to_string("/etc/resolv.conf")
        .map(|t| parse_resolv_conf(&t))
        .unwrap_or_default();
    if let Some(v) = std::env::var_os(NAMESERVERS_ENV) {
        let servers = parse_nameservers(&v.to_string_lossy());
        if !servers.is_empty() {
            c.servers = servers;
        }
    }
    c
}

/// The name as a DNS name, or `Hard` when it cannot be one.
pub fn to_name(name: &str) -> Result<Name, DnsError> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() || trimmed.len() > 253 {
        return Err(DnsError::Hard);
    }
    let n = if trimmed.is_ascii() {
        Name::from_ascii(trimmed)
    } else {
        Name::from_utf8(trimmed)
    };
    let mut n = n.map_err(|_| DnsError::Hard)?;
    n.set_fqdn(true);
    Ok(n)
}

/// A name from an answer, as text without the trailing dot.
pub fn name_text(n: &Name) -> String {
    let s = n.to_ascii();
    s.strip_suffix('.').unwrap_or(&s).to_string()
}

/// The stub resolver.
#[derive(Debug, Clone)]
pub struct Resolver {
    /// Read on the first query: a delivery routed by smtproutes to an IP address never
    /// reads resolv.conf.
    config: std::cell::OnceCell<Config>,
    /// Set by [`Lookup::validate_with`]: queries carry DO and AD, answers' AD is kept.
    validating: bool,
    /// The AD bit of each answer, by lower-cased name and type.
    secure: std::cell::RefCell<std::collections::HashMap<(String, RecordType), bool>>,
    /// The owner of the records of the type asked, when a CNAME chain led there.
    owners: std::cell::RefCell<std::collections::HashMap<(String, RecordType), String>>,
}

/// What one server said.
enum Said {
    Answer(Message),
    Truncated,
    Nothing,
}

/// The largest answer read over TCP (a DNS message cannot be longer).
const MAX_TCP: usize = 65535;

impl Resolver {
    /// A resolver with a configuration of its own (tests).
    #[cfg(test)]
    fn new(config: Config) -> Resolver {
        Resolver {
            config: std::cell::OnceCell::from(config),
            validating: false,
            secure: Default::default(),
            owners: Default::default(),
        }
    }

    /// The resolver of this system (see the module documentation), configured when it is
    /// first asked.
    pub fn system() -> Resolver {
        Resolver {
            config: std::cell::OnceCell::new(),
            validating: false,
            secure: Default::default(),
            owners: Default::default(),
        }
    }

    /// The answer records' data for `name` and `rtype`.
    pub fn query(&self, name: &Name, rtype: RecordType) -> Result<Vec<RData>, DnsError> {
        let mut msg = Message::query();
        msg.add_query(Query::query(name.clone(), rtype));
        msg.metadata.recursion_desired = true;
        if self.validating {
            // RFC 6840 5.7: AD in the query asks for AD in the answer; DO (RFC 3225)
            // as well, for resolvers that only look at it.
            msg.metadata.authentic_data = true;
            let mut edns = Edns::new();
            edns.set_dnssec_ok(true);
            edns.set_max_payload(1232);
            msg.set_edns(edns);
        }
        let id = msg.metadata.id;
        let bytes = msg.to_vec().map_err(|_| DnsError::Hard)?;
        let config = self.config.get_or_init(system_config);
        for _ in 0..config.attempts {
            for server in &config.servers {
                let said = match udp(*server, &bytes, config.timeout, |m| {
                    matches(m, id, name, rtype)
                }) {
                    Said::Truncated => {
                        tracing::debug!(
                            "DNS: {name} {rtype}: truncated answer from {server}, asking over TCP"
                        );
                        tcp(*server, &bytes, config.timeout, |m| {
                            matches(m, id, name, rtype)
                        })
                    }
                    s => s,
                };
                let Said::Answer(m) = said else {
                    tracing::debug!("DNS: {name} {rtype}: no answer from {server}");
                    continue;
                };
                let code = m.metadata.response_code;
                tracing::debug!(
                    "DNS: {name} {rtype}: {server} says {code:?}, answer records: {}",
                    m.answers.len()
                );
                if self.validating && matches!(code, ResponseCode::NoError | ResponseCode::NXDomain)
                {
                    let ad = m.metadata.authentic_data;
                    tracing::debug!(
                        "DNS: {name} {rtype}: AD bit {}",
                        if ad {
                            "set (DNSSEC-validated)"
                        } else {
                            "clear (insecure)"
                        }
                    );
                    let key = name.to_ascii().to_ascii_lowercase();
                    if let Some(owner) = m
                        .answers
                        .iter()
                        .filter(|r| r.record_type() == rtype)
                        .map(|r| name_text(&r.name))
                        .next()
                        .filter(|o| !o.eq_ignore_ascii_case(&name_text(name)))
                    {
                        self.owners.borrow_mut().insert((key, rtype), owner);
                    }
                    self.secure
                        .borrow_mut()
                        .insert((name.to_ascii().to_ascii_lowercase(), rtype), ad);
                }
                match code {
                    ResponseCode::NoError => {
                        if m.answers.is_empty() {
                            return Err(DnsError::Hard);
                        }
                        return Ok(m.answers.into_iter().map(|r| r.data).collect());
                    }
                    ResponseCode::NXDomain => return Err(DnsError::Hard),
                    // SERVFAIL, REFUSED and the rest: another server may do better.
                    _ => continue,
                }
            }
        }
        tracing::debug!(
            "DNS: {name} {rtype}: no usable answer from any server (temporary failure)"
        );
        Err(DnsError::Soft)
    }
}

/// True when `m` answers our query.
fn matches(m: &Message, id: u16, name: &Name, rtype: RecordType) -> bool {
    m.metadata.id == id
        && m.metadata.message_type == MessageType::Response
        && m.queries.len() == 1
        && m.queries[0].query_type() == rtype
        && m.queries[0].name() == name
}

fn bind_addr(server: &SocketAddr) -> SocketAddr {
    match server {
        SocketAddr::V4(_) => "0.0.0.0:0".parse().unwrap_or(*server),
        SocketAddr::V6(_) => "[::]:0".parse().unwrap_or(*server),
    }
}

fn udp(server: SocketAddr, query: &[u8], timeout: Duration, ok: impl Fn(&Message) -> bool) -> Said {
    let Ok(sock) = UdpSocket::bind(bind_addr(&server)) else {
        return Said::Nothing;
    };
    if sock.connect(server).is_err() || sock.send(query).is_err() {
        return Said::Nothing;
    }
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || sock.set_read_timeout(Some(left)).is_err() {
            return Said::Nothing;
        }
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // Timed out, or the port is closed (ICMP): this server said nothing.
            Err(_) => return Said::Nothing,
        };
        // Anything that is not the answer to this query (spoofed, stale, garbage) is
        // ignored while the time lasts.
        let Ok(m) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        if !ok(&m) {
            continue;
        }
        if m.metadata.truncation {
            return Said::Truncated;
        }
        return Said::Answer(m);
    }
}

fn tcp(server: SocketAddr, query: &[u8], timeout: Duration, ok: impl Fn(&Message) -> bool) -> Said {
    let deadline = Instant::now() + timeout;
    let Ok(mut s) = TcpStream::connect_timeout(&server, timeout) else {
        return Said::Nothing;
    };
    let Ok(len) = u16::try_from(query.len()) else {
        return Said::Nothing;
    };
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(query);
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() || s.set_write_timeout(Some(left)).is_err() || s.write_all(&out).is_err() {
        return Said::Nothing;
    }
    let mut read_exact = |buf: &mut [u8]| -> bool {
        let mut got = 0;
        while got < buf.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
                return false;
            }
            match s.read(&mut buf[got..]) {
                Ok(0) => return false,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    };
    let mut lb = [0u8; 2];
    if !read_exact(&mut lb) {
        return Said::Nothing;
    }
    let n = usize::from(u16::from_be_bytes(lb)).min(MAX_TCP);
    let mut buf = vec![0u8; n];
    if !read_exact(&mut buf) {
        return Said::Nothing;
    }
    match Message::from_vec(&buf) {
        Ok(m) if ok(&m) => Said::Answer(m),
        _ => Said::Nothing,
    }
}

/// The end of a lookup, at the verbose level: what was found, or which kind of failure.
fn noted<T>(
    what: &str,
    name: &str,
    r: Result<T, DnsError>,
    show: impl Fn(&T) -> String,
) -> Result<T, DnsError> {
    match &r {
        Ok(v) => tracing::debug!("DNS: {what} {name}: {}", show(v)),
        Err(DnsError::Soft) => tracing::debug!("DNS: {what} {name}: temporary failure"),
        Err(DnsError::Hard) => tracing::debug!("DNS: {what} {name}: no such data"),
    }
    r
}

fn list<T: std::fmt::Display>(v: &[T]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Lookup for Resolver {
    fn mx(&mut self, name: &str) -> Result<Vec<(u16, String)>, DnsError> {
        let r = to_name(name).and_then(|n| {
            Ok(self
                .query(&n, RecordType::MX)?
                .into_iter()
                .filter_map(|d| match d {
                    RData::MX(mx) => Some((mx.preference, name_text(&mx.exchange))),
                    _ => None,
                })
                .collect())
        });
        noted("MX", name, r, |v: &Vec<(u16, String)>| {
            list(
                &v.iter()
                    .map(|(p, x)| format!("{p} {x}"))
                    .collect::<Vec<_>>(),
            )
        })
    }

    fn addrs(&mut self, name: &str, v6: bool) -> Result<Vec<IpAddr>, DnsError> {
        let t = if v6 { RecordType::AAAA } else { RecordType::A };
        let r = to_name(name).and_then(|n| {
            Ok(self
                .query(&n, t)?
                .into_iter()
                .filter_map(|d| match d {
                    RData::A(a) if !v6 => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) if v6 => Some(IpAddr::V6(a.0)),
                    _ => None,
                })
                .collect())
        });
        noted(if v6 { "AAAA" } else { "A" }, name, r, |v: &Vec<IpAddr>| {
            list(v)
        })
    }

    fn cname(&mut self, name: &str) -> Result<Option<String>, DnsError> {
        let r = to_name(name).and_then(|n| {
            Ok(self
                .query(&n, RecordType::CNAME)?
                .into_iter()
                .find_map(|d| match d {
                    RData::CNAME(c) => Some(name_text(&c.0)),
                    _ => None,
                }))
        });
        noted("CNAME", name, r, |v: &Option<String>| {
            v.clone().unwrap_or_else(|| "none".into())
        })
    }

    fn validate_with(&mut self, servers: Vec<SocketAddr>) {
        let base = self.config.get().cloned().unwrap_or_else(system_config);
        self.config = std::cell::OnceCell::from(Config { servers, ..base });
        self.validating = true;
    }

    fn secure(&self, name: &str, rtype: RecordType) -> bool {
        let Ok(n) = to_name(name) else {
            return false;
        };
        self.secure
            .borrow()
            .get(&(n.to_ascii().to_ascii_lowercase(), rtype))
            .copied()
            .unwrap_or(false)
    }

    fn expanded(&self, name: &str, rtype: RecordType) -> Option<String> {
        let n = to_name(name).ok()?;
        self.owners
            .borrow()
            .get(&(n.to_ascii().to_ascii_lowercase(), rtype))
            .cloned()
    }

    fn tlsa(&mut self, name: &str) -> Result<(Vec<Vec<u8>>, bool), DnsError> {
        let r = to_name(name).and_then(|n| {
            let found: Vec<Vec<u8>> = self
                .query(&n, RecordType::TLSA)?
                .into_iter()
                .filter_map(|d| match d {
                    RData::TLSA(t) => t.to_bytes().ok(),
                    _ => None,
                })
                .collect();
            if found.is_empty() {
                // Only a CNAME, or other types: no TLSA records.
                return Err(DnsError::Hard);
            }
            Ok(found)
        });
        let r = noted("TLSA", name, r, |v: &Vec<Vec<u8>>| {
            format!("{} records", v.len())
        })?;
        Ok((r, self.secure(name, RecordType::TLSA)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::Record;
    use hickory_proto::rr::rdata::{A, MX};
    use proptest::prelude::*;
    use std::thread;

    #[test]
    fn resolv_conf() {
        let c = parse_resolv_conf(
            "# comment\nsearch example\nnameserver 192.0.2.1\nnameserver ::1\nnameserver fe80::1%eth0\n\
             nameserver 192.0.2.2\nnameserver 192.0.2.3\noptions rotate timeout:2 attempts:9\n",
        );
        assert_eq!(
            c.servers,
            vec![
                "192.0.2.1:53".parse().unwrap(),
                "[::1]:53".parse().unwrap(),
                "192.0.2.2:53".parse().unwrap()
            ]
        );
        assert_eq!(c.timeout, Duration::from_secs(2));
        assert_eq!(c.attempts, 5);
        assert_eq!(parse_resolv_conf("").servers, Config::default().servers);
    }

    #[test]
    fn nameserver_list() {
        assert_eq!(
            parse_nameservers("127.0.0.1:5353, [::1]:53 192.0.2.1 junk"),
            vec![
                "127.0.0.1:5353".parse().unwrap(),
                "[::1]:53".parse().unwrap(),
                "192.0.2.1:53".parse().unwrap()
            ]
        );
    }

    #[test]
    fn names() {
        assert_eq!(to_name("Example.COM.").unwrap().to_ascii(), "Example.COM.");
        assert_eq!(to_name(""), Err(DnsError::Hard));
        assert_eq!(to_name(&"a".repeat(300)), Err(DnsError::Hard));
        assert_eq!(
            to_name(&format!("{}.example", "a".repeat(64))),
            Err(DnsError::Hard)
        );
        assert_eq!(name_text(&to_name("mx.example").unwrap()), "mx.example");
        assert_eq!(
            name_text(&to_name("bücher.example").unwrap()),
            "xn--bcher-kva.example"
        );
        assert_eq!(name_text(&to_name("_x.example").unwrap()), "_x.example");
    }

    /// A one-shot UDP server answering with what `answer` makes of the query.
    fn serve(answer: impl Fn(Message) -> Vec<Vec<u8>> + Send + 'static) -> SocketAddr {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = s.local_addr().unwrap();
        thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, peer)) = s.recv_from(&mut buf) {
                let q = Message::from_vec(&buf[..n]).unwrap();
                for r in answer(q) {
                    s.send_to(&r, peer).unwrap();
                }
            }
        });
        addr
    }

    fn resolver(addr: SocketAddr) -> Resolver {
        Resolver::new(Config {
            servers: vec![addr],
            timeout: Duration::from_secs(5),
            attempts: 1,
        })
    }

    fn reply_to(q: &Message, code: ResponseCode) -> Message {
        let mut r = Message::response(q.metadata.id, q.metadata.op_code);
        r.metadata.response_code = code;
        r.add_query(q.queries[0].clone());
        r
    }

    #[test]
    fn answers_garbage_and_codes() {
        let addr = serve(|q| {
            let name = q.queries[0].name().to_ascii();
            let mut r = reply_to(&q, ResponseCode::NoError);
            match name.as_str() {
                "mx.example." => {
                    // Garbage and a reply with another id come first: both are ignored.
                    let mut wrong = r.clone();
                    wrong.metadata.id = q.metadata.id.wrapping_add(1);
                    r.add_answer(Record::from_rdata(
                        q.queries[0].name().clone(),
                        60,
                        RData::MX(MX::new(10, Name::from_ascii("smtp.example.").unwrap())),
                    ));
                    r.add_answer(Record::from_rdata(
                        q.queries[0].name().clone(),
                        60,
                        RData::A(A::new(192, 0, 2, 1)),
                    ));
                    vec![
                        b"\x00\x01garbage".to_vec(),
                        wrong.to_vec().unwrap(),
                        r.to_vec().unwrap(),
                    ]
                }
                "nx.example." => vec![reply_to(&q, ResponseCode::NXDomain).to_vec().unwrap()],
                "fail.example." => vec![reply_to(&q, ResponseCode::ServFail).to_vec().unwrap()],
                "refused.example." => vec![reply_to(&q, ResponseCode::Refused).to_vec().unwrap()],
                _ => vec![r.to_vec().unwrap()],
            }
        });
        let mut r = resolver(addr);
        assert_eq!(
            r.mx("mx.example"),
            Ok(vec![(10, "smtp.example".to_string())])
        );
        assert_eq!(r.mx("nx.example"), Err(DnsError::Hard));
        assert_eq!(r.mx("empty.example"), Err(DnsError::Hard));
        assert_eq!(r.mx("fail.example"), Err(DnsError::Soft));
        assert_eq!(r.mx("refused.example"), Err(DnsError::Soft));
        assert_eq!(
            r.addrs("mx.example", false),
            Ok(vec!["192.0.2.1".parse().unwrap()])
        );
        assert_eq!(r.addrs("mx.example", true), Ok(vec![]));
    }

    #[test]
    fn silence_and_closed_port_are_soft() {
        let quiet = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut r = Resolver::new(Config {
            servers: vec![quiet.local_addr().unwrap()],
            timeout: Duration::from_millis(200),
            attempts: 1,
        });
        assert_eq!(r.mx("example.com"), Err(DnsError::Soft));
        let closed = quiet.local_addr().unwrap();
        drop(quiet);
        let mut r = resolver(closed);
        assert_eq!(r.cname("example.com"), Err(DnsError::Soft));
    }

    #[test]
    fn truncated_answer_is_asked_again_over_tcp() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        let u = UdpSocket::bind(("127.0.0.1", port)).unwrap();
        thread::spawn(move || {
            let mut buf = [0u8; 512];
            let (n, peer) = u.recv_from(&mut buf).unwrap();
            let q = Message::from_vec(&buf[..n]).unwrap();
            let mut r = reply_to(&q, ResponseCode::NoError);
            r.metadata.truncation = true;
            u.send_to(&r.to_vec().unwrap(), peer).unwrap();
        });
        thread::spawn(move || {
            let (mut s, _) = tcp.accept().unwrap();
            let mut lb = [0u8; 2];
            s.read_exact(&mut lb).unwrap();
            let mut q = vec![0u8; usize::from(u16::from_be_bytes(lb))];
            s.read_exact(&mut q).unwrap();
            let q = Message::from_vec(&q).unwrap();
            let mut r = reply_to(&q, ResponseCode::NoError);
            r.add_answer(Record::from_rdata(
                q.queries[0].name().clone(),
                60,
                RData::CNAME(hickory_proto::rr::rdata::CNAME(
                    Name::from_ascii("real.example.").unwrap(),
                )),
            ));
            let b = r.to_vec().unwrap();
            s.write_all(&(b.len() as u16).to_be_bytes()).unwrap();
            s.write_all(&b).unwrap();
        });
        let mut r = resolver(SocketAddr::from(([127, 0, 0, 1], port)));
        assert_eq!(
            r.cname("alias.example"),
            Ok(Some("real.example".to_string()))
        );
    }

    proptest! {
        #[test]
        fn resolv_conf_never_panics(s in "\\PC{0,200}") {
            let c = parse_resolv_conf(&s);
            prop_assert!(!c.servers.is_empty() && c.servers.len() <= 3);
            let _ = parse_nameservers(&s);
        }
    }
}

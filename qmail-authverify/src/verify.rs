//! The checks themselves: SPF (RFC 7208) for the HELO name and the envelope sender, the
//! DKIM signatures (RFC 6376, RFC 8463), DMARC (RFC 7489) for the From: domain, and the
//! Authentication-Results field (RFC 8601) that records them. The work is mail-auth's;
//! it is async and asks DNS through hickory-resolver, so this module (and only this one)
//! runs a tokio current-thread runtime for the duration of one message.

use crate::policy::Findings;
use mail_auth::dmarc::Policy;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimResult, DmarcResult, MessageAuthenticator,
    SpfResult,
};
use mail_auth::{Parameters, ResolverCache, SpfOutput};
use std::borrow::Borrow;
use std::cell::Cell;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// The environment variable that names the DNS servers to ask instead of
/// /etc/resolv.conf's (qmail-remote reads the same): addresses with optional ports,
/// separated by spaces or commas, e.g. `127.0.0.1:5353 [::1]`.
pub const NAMESERVERS_ENV: &str = "RQMAIL_NAMESERVERS";

/// How long one DNS query waits for an answer, and how many times it is sent.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);
const DNS_ATTEMPTS: usize = 2;

/// Parses [`NAMESERVERS_ENV`]; port 53 when none is given. Words that are not addresses
/// are skipped.
pub fn parse_nameservers(v: &str) -> Vec<SocketAddr> {
    v.split([' ', ',', '\t'])
        .filter(|w| !w.is_empty())
        .filter_map(|w| {
            w.parse::<SocketAddr>()
                .ok()
                .or_else(|| w.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
                .or_else(|| {
                    w.strip_prefix('[')
                        .and_then(|x| x.strip_suffix(']'))
                        .and_then(|x| x.parse::<IpAddr>().ok())
                        .map(|ip| SocketAddr::new(ip, 53))
                })
        })
        .take(3)
        .collect()
}

/// What is checked.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// The message as queued (LF line ends).
    pub message: &'a [u8],
    /// The client's address.
    pub ip: IpAddr,
    /// The HELO/EHLO argument ("" when the client gave none).
    pub helo: &'a str,
    /// The envelope sender ("" for a bounce).
    pub mail_from: &'a str,
    /// This host: the authserv-id of the field.
    pub host: &'a str,
}

/// The Authentication-Results field (LF line ends) and what the policy needs.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub field: String,
    pub findings: Findings,
}

/// A DNS setup that cannot be used.
#[derive(Debug)]
pub struct DnsSetup(pub String);

fn authenticator(servers: &[SocketAddr]) -> Result<MessageAuthenticator, DnsSetup> {
    let mut opts = ResolverOpts::default();
    opts.timeout = DNS_TIMEOUT;
    opts.attempts = DNS_ATTEMPTS;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.ndots = 0;
    opts.cache_size = 256;
    let config = if servers.is_empty() {
        let (c, o) = mail_auth::hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| DnsSetup(format!("unable to read /etc/resolv.conf: {e}")))?;
        opts.timeout = o.timeout.min(DNS_TIMEOUT);
        ResolverConfig::from_parts(None, Vec::new(), c.name_servers().to_vec())
    } else {
        let ns = servers
            .iter()
            .map(|s| {
                let mut udp = ConnectionConfig::udp();
                udp.port = s.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = s.port();
                NameServerConfig::new(s.ip(), true, vec![udp, tcp])
            })
            .collect();
        ResolverConfig::from_parts(None, Vec::new(), ns)
    };
    MessageAuthenticator::new(config, opts).map_err(|e| DnsSetup(e.to_string()))
}

/// RFC 7208 section 4.6.4: at most two DNS lookups of one SPF check may find nothing
/// (NXDOMAIN, or no answer of the type asked); past that the result is permerror.
pub const VOID_LOOKUP_LIMIT: u32 = 2;

/// The DNS lookups of one SPF check, counted through mail-auth's cache interface: each
/// lookup asks the cache first (`get`, which never has anything) and stores what it found
/// (`insert`), so the lookups that found nothing, or failed, are the difference.
#[derive(Debug, Default)]
struct Lookups {
    asked: Cell<u32>,
    found: Cell<u32>,
}

impl Lookups {
    fn void(&self) -> u32 {
        self.asked.get().saturating_sub(self.found.get())
    }
}

/// A cache that keeps nothing and counts for [`Lookups`].
struct Counting<'a>(&'a Lookups);

impl<K, V> ResolverCache<K, V> for Counting<'_> {
    fn get<Q>(&self, _: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.asked.set(self.0.asked.get().saturating_add(1));
        None
    }
    fn remove<Q>(&self, _: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }
    fn insert(&self, _: K, _: V, _: Instant) {
        self.0.found.set(self.0.found.get().saturating_add(1));
    }
}

/// One SPF check with RFC 7208's void lookup limit: the evaluation that went past a
/// third lookup finding nothing ends in permerror (a match found before it ended the
/// evaluation earlier, so counting at the end is the same). The first lookup, of the
/// domain's own record, is not a mechanism's: when it finds nothing the result is
/// `none` and nothing else was asked.
async fn spf_check(auth: &MessageAuthenticator, params: SpfParameters<'_>) -> SpfOutput {
    let lookups = Lookups::default();
    let c = Counting(&lookups);
    let p = Parameters::new(params)
        .with_txt_cache(&c)
        .with_mx_cache(&c)
        .with_ipv4_cache(&c)
        .with_ipv6_cache(&c)
        .with_ptr_cache(&c);
    let out = auth.verify_spf(p).await;
    if lookups.void() > VOID_LOOKUP_LIMIT
        && !matches!(out.result(), SpfResult::TempError | SpfResult::None)
    {
        tracing::debug!("SPF of {}: more than two void lookups", out.domain());
        return out.with_result(SpfResult::PermError);
    }
    out
}

/// True when `d` can be a domain name SPF checks (letters, digits, hyphens, dots, at
/// least one dot, at most 253 bytes).
fn is_domain(d: &str) -> bool {
    let d = d.strip_suffix('.').unwrap_or(d);
    d.len() <= 253
        && d.contains('.')
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
        })
}

/// Runs every check. `Err` only when DNS cannot be set up at all.
pub fn check(servers: &[SocketAddr], input: &Input<'_>) -> Result<Outcome, DnsSetup> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| DnsSetup(format!("unable to start the DNS runtime: {e}")))?;
    runtime.block_on(async {
        let auth = authenticator(servers)?;
        Ok(check_async(&auth, input).await)
    })
}

async fn check_async(auth: &MessageAuthenticator, input: &Input<'_>) -> Outcome {
    let mut findings = Findings::default();
    let mut temp: Vec<String> = Vec::new();
    let helo = if is_domain(input.helo) {
        input.helo.trim_end_matches('.').to_ascii_lowercase()
    } else {
        String::new()
    };

    // SPF: the HELO identity, then MAIL FROM (for a bounce, postmaster@HELO: RFC 7208
    // section 2.4).
    let spf_helo = if helo.is_empty() {
        None
    } else {
        Some(
            spf_check(
                auth,
                SpfParameters::verify_ehlo(input.ip, &helo, input.host),
            )
            .await,
        )
    };
    let postmaster;
    let sender = if input.mail_from.is_empty() {
        postmaster = format!("postmaster@{helo}");
        if helo.is_empty() {
            ""
        } else {
            postmaster.as_str()
        }
    } else {
        input.mail_from
    };
    let sender_domain = sender.rsplit_once('@').map_or("", |(_, d)| d);
    let spf_from = if is_domain(sender_domain) {
        Some(
            spf_check(
                auth,
                SpfParameters::verify_mail_from(input.ip, &helo, input.host, sender),
            )
            .await,
        )
    } else {
        None
    };
    if let Some(o) = &spf_helo
        && o.result() == SpfResult::TempError
    {
        temp.push(format!("SPF of {helo}"));
    }
    if let Some(o) = &spf_from {
        match o.result() {
            SpfResult::TempError => temp.push(format!("SPF of {sender_domain}")),
            SpfResult::Fail => {
                findings.spf_fail = true;
                findings.spf_domain = sender_domain.to_ascii_lowercase();
            }
            _ => {}
        }
    }

    // mail-auth reads messages as they are on the wire: CR LF line ends.
    let wire = to_crlf(input.message);
    let mut ar = AuthenticationResults::new(input.host);
    let mut dmarc_clause = String::new();
    let mut dkim_count = 0;
    if let Some(msg) = AuthenticatedMessage::parse(&wire) {
        let dkim = auth.verify_dkim(&msg).await;
        dkim_count = dkim.len();
        for d in &dkim {
            if let DkimResult::TempError(e) = d.result() {
                let who = d.signature().map_or("", |s| s.d.as_str());
                temp.push(format!("DKIM signature of {who} ({e})"));
            }
        }
        ar = ar.with_dkim_results(&dkim, msg.from());
        if !msg.from().is_empty() {
            let none = SpfOutput::new(sender_domain.to_string());
            let spf_for_dmarc = spf_from.as_ref().unwrap_or(&none);
            let dmarc = auth
                .verify_dmarc(DmarcParameters::new(
                    &msg,
                    &dkim,
                    sender_domain,
                    spf_for_dmarc,
                ))
                .await;
            let d = dmarc_result(
                dmarc.spf_result(),
                dmarc.dkim_result(),
                dmarc.dmarc_record().is_some(),
            );
            if d == "temperror" {
                temp.push(format!("DMARC of {}", dmarc.domain()));
            }
            let policy = match dmarc.policy() {
                Policy::Reject => "reject",
                Policy::Quarantine => "quarantine",
                Policy::None | Policy::Unspecified => "none",
            };
            if d == "fail" && policy == "reject" {
                findings.dmarc_reject = true;
                findings.dmarc_domain = dmarc.domain().to_string();
            }
            if !dmarc.domain().is_empty() {
                dmarc_clause = format!(
                    ";\n\tdmarc={d} header.from={} policy.dmarc={policy}",
                    pvalue(dmarc.domain())
                );
            }
        }
    }
    if let Some(o) = &spf_helo {
        ar = ar.with_spf_ehlo_result(o, input.ip, &helo);
    }
    if let Some(o) = &spf_from {
        ar = ar.with_spf_mailfrom_result(o, input.ip, input.mail_from, &helo);
    }
    findings.temp = if temp.is_empty() {
        None
    } else {
        Some(temp.join(", "))
    };
    let mut field = mail_auth::common::headers::HeaderWriter::to_header(&ar).replace("\r\n", "\n");
    if field.ends_with("; none\n") {
        field.truncate(field.len() - "; none\n".len());
    } else {
        field.pop();
    }
    if dkim_count == 0 {
        field.push_str(";\n\tdkim=none");
    }
    field.push_str(&dmarc_clause);
    if spf_helo.is_none() && spf_from.is_none() {
        field.push_str(";\n\tspf=none");
    }
    field.push('\n');
    Outcome { field, findings }
}

/// What mail-auth reads of a message (the header fields, the DKIM-Signature fields and
/// the malformed ones, the From: addresses), as qmail-authverify hands it over: the
/// number of fields, of signatures and of errors, or `None` when it reads no header.
pub fn parse_counts(msg: &[u8]) -> Option<(usize, usize, usize)> {
    let wire = to_crlf(msg);
    let m = AuthenticatedMessage::parse(&wire)?;
    Some((m.headers.len(), m.dkim_headers.len(), m.errors.len()))
}

/// The message with every LF that does not follow a CR made CR LF.
pub fn to_crlf(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + msg.len() / 30 + 2);
    let mut prev = 0u8;
    for &c in msg {
        if c == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(c);
        prev = c;
    }
    out
}

/// The DMARC result (RFC 8601 section 2.7.1 words) from the SPF and DKIM alignment
/// results mail-auth found, and whether the domain has a DMARC record: a pass of either
/// passes; a DNS failure (when nothing passed) is temperror; a record without any
/// aligned pass is fail.
fn dmarc_result(spf: &DmarcResult, dkim: &DmarcResult, has_record: bool) -> &'static str {
    let r = [spf, dkim];
    if r.contains(&&DmarcResult::Pass) {
        "pass"
    } else if r.iter().any(|x| matches!(x, DmarcResult::TempError(_))) {
        "temperror"
    } else if r.iter().any(|x| matches!(x, DmarcResult::PermError(_))) {
        "permerror"
    } else if has_record {
        "fail"
    } else {
        "none"
    }
}

/// A domain as an RFC 8601 pvalue: only letters, digits and `.-_` kept (others `?`).
fn pvalue(d: &str) -> String {
    d.chars()
        .take(253)
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers() {
        assert_eq!(
            parse_nameservers("127.0.0.1:5353, [::1]:53 10.0.0.1 junk"),
            vec![
                "127.0.0.1:5353".parse().unwrap(),
                "[::1]:53".parse().unwrap(),
                "10.0.0.1:53".parse().unwrap(),
            ]
        );
        assert!(parse_nameservers("").is_empty());
    }

    #[test]
    fn void_lookups_are_the_ones_that_stored_nothing() {
        let l = Lookups::default();
        let c = Counting(&l);
        for found in [true, false, true, false, false] {
            let got: Option<u32> = ResolverCache::<Box<str>, u32>::get(&c, "name");
            assert_eq!(got, None);
            if found {
                ResolverCache::<Box<str>, u32>::insert(&c, "name".into(), 1, Instant::now());
            }
        }
        assert_eq!(l.void(), 3);
        assert!(l.void() > VOID_LOOKUP_LIMIT);
    }

    #[test]
    fn line_ends() {
        assert_eq!(to_crlf(b"a\nb\r\nc\n\n"), b"a\r\nb\r\nc\r\n\r\n");
        assert_eq!(to_crlf(b""), b"");
        assert_eq!(to_crlf(b"\n"), b"\r\n");
    }

    #[test]
    fn dmarc_words() {
        use mail_auth::Error;
        let fail = DmarcResult::Fail(Error::NotAligned);
        let temp = DmarcResult::TempError(Error::ParseError);
        assert_eq!(dmarc_result(&DmarcResult::Pass, &fail, true), "pass");
        assert_eq!(
            dmarc_result(&DmarcResult::None, &DmarcResult::None, true),
            "fail"
        );
        assert_eq!(dmarc_result(&fail, &DmarcResult::None, true), "fail");
        assert_eq!(dmarc_result(&temp, &temp, false), "temperror");
        assert_eq!(
            dmarc_result(&DmarcResult::None, &DmarcResult::None, false),
            "none"
        );
        assert_eq!(pvalue("exa mple.com;"), "exa?mple.com?");
    }

    #[test]
    fn domains() {
        assert!(is_domain("mail.example.com"));
        assert!(is_domain("example.com."));
        assert!(!is_domain("localhost"));
        assert!(!is_domain("[192.0.2.1]"));
        assert!(!is_domain("a..b"));
        assert!(!is_domain(""));
        assert!(!is_domain(&format!("{}.com", "a".repeat(64))));
    }
}

//! The one place in this crate that calls into libc without a safe wrapper: the reverse
//! lookup of an address with getnameinfo(3) and `NI_NAMEREQD`, which follows the system's
//! resolver configuration (nsswitch.conf, /etc/hosts, resolv.conf) like other programs.

use std::net::{IpAddr, SocketAddr};

use nix::sys::socket::{SockaddrLike, SockaddrStorage};

/// The outcome of a reverse lookup, with netqmail's distinction between a temporary
/// failure and the absence of a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reverse {
    /// The name as the resolver returned it (not yet validated).
    Name(Vec<u8>),
    /// A temporary failure (the resolver could not get an answer now).
    Soft,
    /// No name for this address (or a permanent failure).
    Hard,
    /// The resolver ran out of memory.
    Mem,
}

/// Looks up the name of `ip`.
pub fn reverse(ip: IpAddr) -> Reverse {
    let sa = SockaddrStorage::from(SocketAddr::new(ip, 0));
    let mut host = [0u8; libc::NI_MAXHOST as usize];
    // SAFETY: `sa.as_ptr()`/`sa.len()` describe a fully initialised sockaddr_in or
    // sockaddr_in6 owned by `sa`, alive for the whole call; `host` is a writable buffer of
    // exactly the length passed, and getnameinfo writes at most that many bytes including
    // the terminating NUL; the service buffer is null with length 0, which getnameinfo
    // accepts to mean "no service wanted". Nothing is retained after the call returns.
    let rc = unsafe {
        libc::getnameinfo(
            sa.as_ptr(),
            sa.len(),
            host.as_mut_ptr().cast::<libc::c_char>(),
            libc::NI_MAXHOST,
            std::ptr::null_mut(),
            0,
            libc::NI_NAMEREQD,
        )
    };
    match rc {
        0 => {
            let end = host.iter().position(|&c| c == 0).unwrap_or(host.len());
            Reverse::Name(host[..end].to_vec())
        }
        libc::EAI_AGAIN | libc::EAI_SYSTEM => Reverse::Soft,
        libc::EAI_MEMORY => Reverse::Mem,
        _ => Reverse::Hard,
    }
}

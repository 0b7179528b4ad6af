//! Quoting a local part for a header or an SMTP path (netqmail's quote).
//!
//! As little quoting as possible: a local part made only of characters that are safe in
//! both RFC 821 and RFC 822, with no leading, trailing or doubled dot, stays as it is;
//! anything else is put in double quotes with `"`, `\`, CR and LF backslash-quoted.

pub use control::address::quote_needed as need;
pub use control::address::{quote, quote2};

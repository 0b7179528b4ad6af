//! System errors in netqmail's words and its rule for temporary errors: the shared
//! table in [`control::errstr`], under the names this crate uses.

pub use control::errstr::describe as error_str;
pub use control::errstr::{errno_str, errno_temp, is_temp};

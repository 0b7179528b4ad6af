//! qmail-smtpd (work in progress)

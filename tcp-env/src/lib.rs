//! tcp-env (work in progress)

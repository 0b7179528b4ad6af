//! tcp-env: set up TCP-related environment variables, then run a program (tcp-env(1)).

fn main() {
    std::process::exit(tcp_env::main().code());
}

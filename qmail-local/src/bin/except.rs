//! except: reverse the exit code of a delivery program (except(1)).

fn main() {
    std::process::exit(qmail_local::helpers::except_main());
}

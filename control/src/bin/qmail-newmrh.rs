//! qmail-newmrh: compile control/morercpthosts into morercpthosts.cdb (qmail-newmrh(8)).

fn main() {
    std::process::exit(control::newmrh::main());
}

//! The `kfn` binary with no handlers of its own: `kfn new NAME` creates a
//! project (whose binary has every subcommand with its handlers registered),
//! and the commands that need no handler work on any functions.toml whose
//! handlers it does not name.

fn main() -> std::process::ExitCode {
    kfn::cli::main(kfn_sdk::Registry::default())
}

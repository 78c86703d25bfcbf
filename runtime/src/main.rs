//! The `kfn` binary: the runtime with the order-processing handlers registered.

fn main() -> std::process::ExitCode {
    kfn::cli::main(kfn_functions::registry())
}

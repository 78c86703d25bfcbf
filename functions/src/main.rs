//! `orders`: the order-processing system — every kfn subcommand (`dev`, `run`,
//! `check`, `topics`, `dlq`, `acls`, …) with the order handlers registered.

fn main() -> std::process::ExitCode {
    kfn::cli::main(kfn_functions::registry())
}

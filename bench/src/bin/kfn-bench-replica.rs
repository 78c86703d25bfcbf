//! A kfn replica for the benchmarks: the kfn CLI with the order system's
//! handlers plus `passthrough`, which emits each OrderCreated unchanged.

use kfn_functions::events::OrderCreated;
use kfn_sdk::{Ctx, Emit, FnError};

async fn passthrough(_ctx: Ctx, order: OrderCreated) -> Result<Emit, FnError> {
    let key = order.order_id.clone();
    Ok(Emit::one("out", key, order))
}

fn main() -> std::process::ExitCode {
    let mut registry = kfn_functions::registry();
    registry.handler("passthrough", passthrough);
    kfn::cli::main(registry)
}

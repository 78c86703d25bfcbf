//! A kfn replica for tests: the kfn CLI with the order system's handlers plus
//! test handlers (`passthrough`), run as a child process so tests can kill -9 it.

use kfn_functions::events::OrderCreated;
use kfn_sdk::{Ctx, Emit, FnError};

/// Emits the order unchanged; `KFN_TEST_DELAY_US` slows each call (so a test can kill mid-stream).
async fn passthrough(_ctx: Ctx, order: OrderCreated) -> Result<Emit, FnError> {
    if let Some(us) = std::env::var("KFN_TEST_DELAY_US").ok().and_then(|v| v.parse().ok()) {
        tokio::time::sleep(std::time::Duration::from_micros(us)).await;
    }
    let key = order.order_id.clone();
    Ok(Emit::one("out", key, order))
}

fn main() -> std::process::ExitCode {
    let mut registry = kfn_functions::registry();
    registry.handler("passthrough", passthrough);
    kfn::cli::main(registry)
}

//! A kfn replica for tests: the kfn CLI with the order system's handlers plus
//! test handlers (`passthrough`), run as a child process so tests can kill -9 it.

use kfn_functions::events::OrderCreated;
use kfn_sdk::{Ctx, Emit, FnError};

/// Emits the order unchanged; `KFN_TEST_DELAY_US` slows each call, and
/// `KFN_TEST_HOLD_FROM=N` never returns for orders numbered N or more
/// (`order-NNNNN`), so a test can stop the replica mid-stream without racing it.
async fn passthrough(_ctx: Ctx, order: OrderCreated) -> Result<Emit, FnError> {
    if let Some(us) = std::env::var("KFN_TEST_DELAY_US").ok().and_then(|v| v.parse().ok()) {
        tokio::time::sleep(std::time::Duration::from_micros(us)).await;
    }
    let hold_from = std::env::var("KFN_TEST_HOLD_FROM").ok().and_then(|v| v.parse::<u64>().ok());
    let number = order.order_id.strip_prefix("order-").and_then(|n| n.parse::<u64>().ok());
    if let (Some(hold_from), Some(number)) = (hold_from, number) {
        if number >= hold_from {
            std::future::pending::<()>().await;
        }
    }
    let key = order.order_id.clone();
    Ok(Emit::one("out", key, order))
}

fn main() -> std::process::ExitCode {
    let mut registry = kfn_functions::registry();
    registry.handler("passthrough", passthrough);
    kfn::cli::main(registry)
}

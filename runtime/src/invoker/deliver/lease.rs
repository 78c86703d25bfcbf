//! Whether a partition worker still owns its partition.
//!
//! A worker hands its chunks to the member's transaction task and awaits the
//! outcome. When the member loses the partition (its session given up or
//! fenced, or a revocation that outlived the shutdown timeout) the worker is
//! aborted, but a chunk already queued outlives it, and the member may hold a
//! new generation by the time the task commits: the chunk's offsets would be
//! accepted under it while the partition runs again from its committed offset,
//! here or elsewhere. The lease is voided synchronously, before the abort and
//! before the member can rejoin, so the task, which reads the generation
//! *first* and the leases after, either sees the lease void or commits under
//! the generation the partition was still held in (which the coordinator
//! refuses once the member moved on).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// One partition worker's hold on its partition; clones share it.
#[derive(Debug, Clone)]
pub struct Lease(Arc<AtomicBool>);

impl Lease {
    /// A lease held from now on.
    pub fn new() -> Self {
        Lease(Arc::new(AtomicBool::new(true)))
    }

    /// The partition was lost: nothing its worker handed in may commit.
    pub fn void(&self) {
        self.0.store(false, Ordering::SeqCst);
    }

    /// Whether the partition is still the worker's.
    pub fn is_held(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

impl Default for Lease {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::Lease;

    #[test]
    fn a_voided_lease_is_void_for_every_clone() {
        let lease = Lease::new();
        let handed_in = lease.clone();
        assert!(handed_in.is_held());
        lease.void();
        assert!(!handed_in.is_held());
    }
}

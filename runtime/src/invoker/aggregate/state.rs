//! The state of one partition of an aggregate, and the changes of one chunk.
//!
//! A chunk folds into an [`Overlay`] over the partition's [`PartitionState`];
//! the overlay is applied only after the chunk's outputs (the table updates)
//! and its offsets were committed, so the in-memory state never runs ahead of
//! what a restore from the table would give. A chunk that fails is folded
//! again from the same state.

use std::collections::HashMap;

use kfn_sdk::Row;

/// The rows of one table partition, by state key, and the partition's stream time.
#[derive(Default)]
pub struct PartitionState {
    rows: HashMap<String, Row>,
    /// The largest record timestamp seen (ms); `i64::MIN` before any.
    stream_time: i64,
}

impl PartitionState {
    /// An empty state.
    pub fn new() -> Self {
        Self { rows: HashMap::new(), stream_time: i64::MIN }
    }

    /// Sets a row (restore).
    pub fn insert(&mut self, key: String, row: Row) {
        self.rows.insert(key, row);
    }

    /// Removes a row (a tombstone in the table).
    pub fn remove(&mut self, key: &str) {
        self.rows.remove(key);
    }

    /// Moves stream time forward to `timestamp_ms`.
    pub fn observe(&mut self, timestamp_ms: i64) {
        self.stream_time = self.stream_time.max(timestamp_ms);
    }

    /// The largest timestamp seen.
    pub fn stream_time(&self) -> i64 {
        self.stream_time
    }

    /// How many rows the partition holds.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the partition holds no row.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Applies a committed chunk's changes.
    pub fn apply(&mut self, overlay: Overlay) {
        self.rows.extend(overlay.rows);
        self.observe(overlay.stream_time);
    }
}

/// The changes of one chunk, not yet committed.
pub struct Overlay {
    rows: HashMap<String, Row>,
    stream_time: i64,
}

impl Overlay {
    /// No changes over `base`.
    pub fn over(base: &PartitionState) -> Self {
        Self { rows: HashMap::new(), stream_time: base.stream_time }
    }

    /// The current row of `key`: the chunk's change, else the committed row.
    pub fn get<'a>(&'a self, base: &'a PartitionState, key: &str) -> Option<&'a Row> {
        self.rows.get(key).or_else(|| base.rows.get(key))
    }

    /// Sets the row of `key`.
    pub fn set(&mut self, key: String, row: Row) {
        self.rows.insert(key, row);
    }

    /// Moves the chunk's stream time forward.
    pub fn observe(&mut self, timestamp_ms: i64) {
        self.stream_time = self.stream_time.max(timestamp_ms);
    }

    /// The chunk's stream time (the base's, moved by the chunk's records).
    pub fn stream_time(&self) -> i64 {
        self.stream_time
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    struct N(i64);
    impl kfn_sdk::Event for N {
        const NAME: &'static str = "N";
    }

    fn n(row: Option<&Row>) -> Option<i64> {
        row.and_then(|r| r.as_any().downcast_ref::<N>()).map(|n| n.0)
    }

    #[test]
    fn an_overlay_changes_nothing_until_applied() {
        let mut base = PartitionState::new();
        base.insert("a".into(), Arc::new(N(1)));
        base.observe(10);
        let mut overlay = Overlay::over(&base);
        overlay.set("a".into(), Arc::new(N(2)));
        overlay.set("b".into(), Arc::new(N(5)));
        overlay.observe(20);
        assert_eq!(n(overlay.get(&base, "a")), Some(2));
        assert_eq!(n(overlay.get(&base, "b")), Some(5));
        // Dropped (the chunk failed): the base is as before.
        assert_eq!(n(Overlay::over(&base).get(&base, "a")), Some(1));
        assert_eq!(base.stream_time(), 10);
        assert_eq!(base.len(), 1);
        base.apply(overlay);
        assert_eq!(base.stream_time(), 20);
        assert_eq!(base.len(), 2);
        assert_eq!(n(Overlay::over(&base).get(&base, "a")), Some(2));
    }
}

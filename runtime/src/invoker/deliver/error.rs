//! Why a chunk could not be delivered.

use crate::kafka::producer::SendError;

/// Why a chunk could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// The member holds no assignment any more: the partition is someone else's.
    #[error("the member lost its assignment")]
    Unassigned,
    /// Producing, staging or committing the transaction failed.
    #[error("cannot write the chunk: {0}")]
    Send(#[from] SendError),
    /// The function is stopping: its member's transaction task has ended.
    #[error("the function is stopping")]
    Stopped,
}

impl DeliverError {
    /// This member was fenced: stop the partition; otherwise, redo the chunk.
    pub fn is_fenced(&self) -> bool {
        match self {
            DeliverError::Unassigned | DeliverError::Stopped => true,
            DeliverError::Send(e) => e.is_fenced(),
        }
    }
}

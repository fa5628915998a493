//! Why the procurement agent stops without a result.

use crate::requester::RequesterError;

/// Why the agent stopped without a result.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Talking to the node or preparing a job failed.
    #[error(transparent)]
    Requester(#[from] RequesterError),
    /// The mandate named by the goal does not exist.
    #[error("mandate {0} does not exist")]
    NoMandate(u64),
}

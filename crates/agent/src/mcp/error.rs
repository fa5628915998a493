//! Why a tool call failed, in the market's words; every variant becomes a
//! tool result with `isError: true`, its message as text and
//! `{"error": <kind>, "message": <text>}` as structured content.

use agentic_client::ClientError;
use agentic_protocol::state::JobStatus;
use agentic_protocol::{Amount, JobId, MandateId};
use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::json;

use crate::procure::Refusal;
use crate::requester::RequesterError;

/// Why a tool call failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The arguments do not fit the tool's input schema.
    #[error("invalid arguments for `{tool}`: {reason}")]
    InvalidArguments {
        /// The tool.
        tool: &'static str,
        /// What is wrong (serde's message, naming the field).
        reason: String,
    },
    /// The node has no job with this id.
    #[error("unknown job {0}: the node has no such job")]
    UnknownJob(JobId),
    /// The node has no mandate with this id.
    #[error("mandate {0} does not exist on the node")]
    UnknownMandate(MandateId),
    /// The mandate or the payer's balance forbids the purchase (checked
    /// before anything is uploaded or signed).
    #[error("refused before signing anything{}: {refusal}", mandate.map(|m| format!(" (spending under mandate {m})")).unwrap_or_default())]
    Refused {
        /// The mandate spent under, if any.
        mandate: Option<MandateId>,
        /// The rule broken, with its numbers.
        refusal: Refusal,
    },
    /// The job ended without an output.
    #[error("job {job} {status:?}: it has no output{}", refund.map(|r| format!("; the unused escrow ({r}) went back to the payer")).unwrap_or_default())]
    NoOutput {
        /// The job.
        job: JobId,
        /// Its status (`Failed` or `Cancelled`).
        status: JobStatus,
        /// What the bill says came back, if known.
        refund: Option<Amount>,
    },
    /// A stage index past the job's stages.
    #[error("job {job} has {stages} stage(s); there is no stage {stage}")]
    NoSuchStage {
        /// The job.
        job: JobId,
        /// Asked for.
        stage: u32,
        /// The job's stages.
        stages: usize,
    },
    /// The stage cannot be challenged now.
    #[error("job {job} stage {stage} cannot be challenged: {reason}")]
    NotChallengeable {
        /// The job.
        job: JobId,
        /// The stage.
        stage: u32,
        /// Why (its phase, or the window closed).
        reason: String,
    },
    /// This server cannot recompute the stage itself.
    #[error("cannot recompute job {job} stage {stage} here, so no challenge was posted: {reason}")]
    CannotRecompute {
        /// The job.
        job: JobId,
        /// The stage.
        stage: u32,
        /// Why.
        reason: String,
    },
    /// The tool's task stopped before answering (a panic in this server); the
    /// server goes on serving other calls.
    #[error("the tool stopped unexpectedly ({0}); the server keeps serving")]
    Stopped(String),
    /// Preparing, submitting or following the job failed (includes the ledger's
    /// rejections with its reason, and an unreachable node).
    #[error(transparent)]
    Requester(#[from] RequesterError),
}

impl From<ClientError> for ToolError {
    fn from(e: ClientError) -> Self {
        ToolError::Requester(e.into())
    }
}

impl ToolError {
    /// A short machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            ToolError::InvalidArguments { .. } => "invalid_arguments",
            ToolError::UnknownJob(_) => "unknown_job",
            ToolError::UnknownMandate(_) => "unknown_mandate",
            ToolError::Refused { .. } => "refused",
            ToolError::NoOutput { .. } => "no_output",
            ToolError::NoSuchStage { .. } => "no_such_stage",
            ToolError::NotChallengeable { .. } => "not_challengeable",
            ToolError::CannotRecompute { .. } => "cannot_recompute",
            ToolError::Stopped(_) => "internal_error",
            ToolError::Requester(e) => match e {
                RequesterError::Rejected { .. } => "ledger_rejected",
                RequesterError::Node(ClientError::Transport { .. }) => "node_unreachable",
                RequesterError::Node(_) | RequesterError::ReceiptWithout { .. } => "node_error",
                RequesterError::Bisection { .. } => "dispute_error",
                RequesterError::InsufficientBalance { .. } => "insufficient_balance",
                RequesterError::Timeout { .. } => "timeout",
                RequesterError::NoResult { .. } => "no_result_yet",
                RequesterError::OutputUnavailable { .. } | RequesterError::BadOutput { .. } => {
                    "output_unavailable"
                }
                _ => "invalid_job",
            },
        }
    }

    /// The tool result the caller sees.
    pub fn into_result(self) -> CallToolResult {
        let message = self.to_string();
        let mut r = CallToolResult::error(vec![ContentBlock::text(message.clone())]);
        r.structured_content = Some(json!({"error": self.kind(), "message": message}));
        r
    }
}

//! What can go wrong for a requester, in the market's words.
//!
//! Every message is self-contained (an underlying error's text is part of it),
//! so a CLI prints one line per failure rather than a chain that repeats itself.

use std::time::Duration;

use agentic_client::ClientError;
use agentic_compute::partition::PartitionError;
use agentic_compute::train::task::TaskError;
use agentic_compute::ComputeError;
use agentic_protocol::matching::Disqualified;
use agentic_protocol::state::JobStatus;
use agentic_protocol::{Address, Amount, DisputeId, Hash, JobId, MoveError, TxError};

/// Why preparing, submitting or following a job failed.
#[derive(Debug, thiserror::Error)]
pub enum RequesterError {
    /// Zero stages asked for.
    #[error("a job needs at least one stage")]
    ZeroStages,
    /// More stages than the model has layers.
    #[error("{stages} stages asked for, but model `{model}` has only {layers} layers (each stage runs at least one)")]
    MoreStagesThanLayers {
        /// Stages asked for.
        stages: usize,
        /// The model's layers.
        layers: usize,
        /// The model.
        model: String,
    },
    /// More stages than the ledger accepts.
    #[error("{stages} stages asked for, the ledger accepts at most {max}")]
    TooManyStages {
        /// Stages asked for.
        stages: usize,
        /// The ledger's limit.
        max: usize,
    },
    /// Replicas outside `1..=MAX_REPLICAS`.
    #[error("{replicas} replicas asked for; a job needs 1 to {max}")]
    BadReplicas {
        /// Replicas asked for.
        replicas: u8,
        /// The ledger's limit.
        max: usize,
    },
    /// A zero price cap.
    #[error("the max price must be positive (base units per mega-op)")]
    ZeroMaxPrice,
    /// A zero deadline.
    #[error("the deadline must be at least one block")]
    ZeroDeadline,
    /// The input holds nothing.
    #[error("the input is empty: {0}")]
    EmptyInput(String),
    /// The model could not be found, read or loaded.
    #[error("model `{model}`: {reason}")]
    Model {
        /// The model asked for.
        model: String,
        /// Why.
        reason: ComputeError,
    },
    /// The input cannot be encoded for, or does not fit, the model.
    #[error("the input does not fit model `{model}`: {reason}")]
    Input {
        /// The model.
        model: String,
        /// Why.
        reason: ComputeError,
    },
    /// A layer range meters to zero operations (the ledger refuses such a stage).
    #[error("stage {stage} (layers {first_layer}..{end}) meters to zero operations")]
    ZeroOpsStage {
        /// The stage.
        stage: usize,
        /// Its first layer.
        first_layer: u32,
        /// One past its last layer.
        end: u32,
    },
    /// Automatic placement found no offer that qualifies.
    #[error("no qualified offer for automatic placement: {offers} offers, none at price ≤ {max_price} with a reported speed that meets the job's requirements")]
    NoQualifiedOffer {
        /// Offers seen.
        offers: usize,
        /// The job's price cap.
        max_price: Amount,
    },
    /// Fewer qualified offers than stages (each stage needs its own provider).
    #[error(
        "{stages} stages need {stages} distinct providers, but only {qualified} offers qualify"
    )]
    NotEnoughOffers {
        /// Stages asked for.
        stages: usize,
        /// Qualified offers.
        qualified: usize,
    },
    /// The partitioner refused the problem.
    #[error("placement: {0}")]
    Partition(#[from] PartitionError),
    /// A named placement does not name one provider per stage.
    #[error("the placement names {named} providers for {stages} stages (one per stage)")]
    PlacementLength {
        /// Providers named.
        named: usize,
        /// Stages.
        stages: usize,
    },
    /// A named placement names a provider twice.
    #[error("the placement names provider {0} twice (each stage needs its own)")]
    DuplicateProvider(Address),
    /// A named provider's offer does not meet the job's requirements.
    #[error("stage {stage}: provider {provider} does not qualify: {reason}")]
    Unqualified {
        /// The stage.
        stage: usize,
        /// The provider.
        provider: Address,
        /// Why.
        reason: Disqualified,
    },
    /// Not a generation job.
    #[error("job {0} is not a generation job: it has no token stream")]
    NotGeneration(JobId),
    /// The generation session failed or was aborted.
    #[error("job {job}: the generation session failed: {reason}")]
    SessionFailed {
        /// The job.
        job: JobId,
        /// Why.
        reason: String,
    },
    /// The streamed tokens are not what the last stage committed to.
    #[error(
        "job {job}: the streamed tokens hash to {streamed}, the last stage committed to {on_chain}"
    )]
    TranscriptMismatch {
        /// The job.
        job: JobId,
        /// The hash of the tokens streamed.
        streamed: Hash,
        /// The last stage's revealed output.
        on_chain: Hash,
    },
    /// The escrow does not fit in 128 bits.
    #[error("the escrow overflows (ops × max price × copies exceeds 2^128)")]
    EscrowOverflow,
    /// The escrow rounds down to zero (the ledger refuses such a job).
    #[error(
        "the escrow rounds to zero ({ops} ops at {max_price} per mega-op): raise the max price"
    )]
    EscrowRoundsToZero {
        /// Total metered ops.
        ops: u64,
        /// The job's price cap.
        max_price: Amount,
    },
    /// The payer cannot cover the escrow and the fee.
    #[error("insufficient balance: the job locks {escrow} in escrow plus a {fee} fee, the account holds {have}")]
    InsufficientBalance {
        /// The escrow.
        escrow: Amount,
        /// The fee.
        fee: Amount,
        /// The balance.
        have: Amount,
    },
    /// The ledger finalized a transaction but rejected it.
    #[error("the ledger rejected the {kind} transaction {id}: {reason}")]
    Rejected {
        /// The transaction kind.
        kind: &'static str,
        /// Its id.
        id: Hash,
        /// The ledger's reason.
        reason: String,
        /// The same, typed (absent from nodes that do not send it).
        detail: Option<Box<TxError>>,
    },
    /// The node could not be reached, refused a request, answered something the
    /// API does not document, or a transaction was not finalized in time.
    #[error(transparent)]
    Node(ClientError),
    /// The ledger applied a transaction but its receipt lacks the event that says
    /// what it did (e.g. a `SubmitJob` without `JobSubmitted`).
    #[error("the receipt of {kind} transaction {id} has no {event} event")]
    ReceiptWithout {
        /// The transaction kind.
        kind: &'static str,
        /// Its id.
        id: Hash,
        /// The event expected.
        event: &'static str,
    },
    /// Our trace cannot play a dispute's next bisection move.
    #[error("dispute {dispute}: cannot move: {reason}")]
    Bisection {
        /// The dispute.
        dispute: DisputeId,
        /// Why.
        reason: MoveError,
    },
    /// The node's event feed dropped items (or ended) before it reached the present,
    /// so a bill read from it would be incomplete.
    #[error("job {job}: the node's event feed lost {missed} event(s) before the present")]
    EventsLost {
        /// The job.
        job: JobId,
        /// How many it said it dropped (0: it ended).
        missed: u64,
    },
    /// The job did not end in time.
    #[error("job {job} still active after {waited:?}")]
    Timeout {
        /// The job.
        job: JobId,
        /// How long we waited.
        waited: Duration,
    },
    /// The job has no output (yet, or ever).
    #[error("job {job} has no output: it is {status:?} and stage {stage} has no agreed result")]
    NoResult {
        /// The job.
        job: JobId,
        /// Its status.
        status: JobStatus,
        /// The first stage without a result.
        stage: usize,
    },
    /// The output blob could not be fetched from the node.
    #[error("job {job}'s output {hash} is not available from the node (the last provider publishes it): {reason}")]
    OutputUnavailable {
        /// The job.
        job: JobId,
        /// The output hash.
        hash: Hash,
        /// Why.
        reason: Box<ClientError>,
    },
    /// The output blob is not a valid activation.
    #[error("job {job}'s output {hash} is not a valid activation: {reason}")]
    BadOutput {
        /// The job.
        job: JobId,
        /// The output hash.
        hash: Hash,
        /// Why.
        reason: ComputeError,
    },
    /// More stages than a training job has steps.
    #[error("{stages} stages asked for, but the training job has only {steps} steps (each stage runs at least one)")]
    MoreStagesThanSteps {
        /// Stages asked for.
        stages: usize,
        /// Steps of the job.
        steps: u64,
    },
    /// The training task cannot be built or run as asked.
    #[error("training `{model}`: {reason}")]
    Training {
        /// The model.
        model: String,
        /// Why.
        reason: TaskError,
    },
    /// The job's model blob is not a valid training task.
    #[error("job {job}'s task {hash} is not a valid training task: {reason}")]
    BadTask {
        /// The job.
        job: JobId,
        /// The task hash (the job's model).
        hash: Hash,
        /// Why.
        reason: TaskError,
    },
    /// The training job's output is not a valid state of its task.
    #[error("job {job}'s output {hash} is not a valid training state: {reason}")]
    BadTrainingOutput {
        /// The job.
        job: JobId,
        /// The output hash.
        hash: Hash,
        /// Why.
        reason: TaskError,
    },
    /// A stage's agreed result does not chain: its input is not the job's input (stage
    /// 0) or the previous stage's output, or the last stage's output is not the
    /// fetched state.
    #[error(
        "job {job}: stage {stage}'s agreed result does not chain from the job's input to the fetched output"
    )]
    ChainMismatch {
        /// The job.
        job: JobId,
        /// The stage.
        stage: usize,
    },
}

impl From<ClientError> for RequesterError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Rejected {
                kind,
                id,
                reason,
                detail,
            } => RequesterError::Rejected {
                kind,
                id,
                reason,
                detail,
            },
            other => RequesterError::Node(other),
        }
    }
}

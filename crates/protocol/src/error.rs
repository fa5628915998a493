//! Typed errors: why a transaction or a block is refused.
//!
//! A transaction that fails with a [`TxError`] changes nothing at all — not
//! the balance, not the nonce, not the fee — so a rejected transaction leaves
//! the state root exactly as it was.

use crate::params::ParamError;
use crate::types::{Address, Amount, ChainId, DisputeId, Height, JobId, MandateId, ProposalId};
use std::borrow::Cow;

/// A short reason in words, inside an error. The ledger writes constants
/// (`Cow::Borrowed`); a client reading an error back from JSON gets an owned
/// copy, which compares equal.
pub type Reason = Cow<'static, str>;

/// Why a transaction was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum TxError {
    // ---- envelope ----
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// The transaction is for another chain.
    #[error("wrong chain: expected {expected}, got {got}")]
    WrongChain {
        /// This chain.
        expected: ChainId,
        /// The transaction's chain.
        got: ChainId,
    },
    /// The nonce is not the signer's next nonce (replay or gap).
    #[error("bad nonce: expected {expected}, got {got}")]
    BadNonce {
        /// The signer's next nonce.
        expected: u64,
        /// The transaction's nonce.
        got: u64,
    },
    /// The fee is below the minimum.
    #[error("fee {fee} below minimum {min}")]
    FeeTooLow {
        /// Offered fee.
        fee: Amount,
        /// Minimum fee.
        min: Amount,
    },
    /// The balance does not cover what the transaction needs (including its fee).
    #[error("insufficient balance: need {need}, have {have}")]
    InsufficientBalance {
        /// Needed.
        need: Amount,
        /// Available.
        have: Amount,
    },
    /// An amount is zero where it must be positive.
    #[error("amount must be positive")]
    ZeroAmount,
    /// Arithmetic would overflow.
    #[error("amount overflow")]
    Overflow,

    // ---- staking ----
    /// Not enough bonded stake.
    #[error("insufficient bonded stake: need {need}, have {have}")]
    InsufficientStake {
        /// Needed.
        need: Amount,
        /// Bonded.
        have: Amount,
    },
    /// Not enough released stake to withdraw.
    #[error("insufficient withdrawable stake: need {need}, have {have}")]
    InsufficientWithdrawable {
        /// Requested.
        need: Amount,
        /// Withdrawable.
        have: Amount,
    },

    // ---- providers ----
    /// The signer is already an active provider.
    #[error("already registered")]
    AlreadyRegistered,
    /// The address is not an active provider.
    #[error("not a provider: {0:?}")]
    NotProvider(Address),
    /// An offer is malformed (zero price or capacity, or a malformed endpoint).
    #[error("invalid offer: {0}")]
    InvalidOffer(Reason),
    /// The provider still has open assignments.
    #[error("provider has {0} open assignments")]
    OpenAssignments(u32),

    // ---- mandates ----
    /// No such mandate.
    #[error("unknown mandate {0}")]
    UnknownMandate(MandateId),
    /// The signer is not the mandate's principal.
    #[error("not the mandate's principal")]
    NotPrincipal,
    /// The signer is not the mandate's agent.
    #[error("not the mandate's agent")]
    NotAgent,
    /// The mandate was revoked.
    #[error("mandate {0} revoked")]
    MandateRevoked(MandateId),
    /// The mandate expired.
    #[error("mandate expired at {0}")]
    MandateExpired(Height),
    /// The job would exceed the mandate's total cap.
    #[error("mandate total cap exceeded: spent {spent} + {escrow} > {cap}")]
    MandateTotalCapExceeded {
        /// Already spent or locked.
        spent: Amount,
        /// This job's escrow.
        escrow: Amount,
        /// Total cap.
        cap: Amount,
    },
    /// The job's escrow exceeds the mandate's per-job cap.
    #[error("mandate per-job cap exceeded: {escrow} > {cap}")]
    MandatePerJobCapExceeded {
        /// This job's escrow.
        escrow: Amount,
        /// Per-job cap.
        cap: Amount,
    },
    /// The job's max price exceeds the mandate's max unit price.
    #[error("mandate unit price exceeded: {price} > {cap}")]
    MandateUnitPriceExceeded {
        /// Job's max price.
        price: Amount,
        /// Mandate's cap.
        cap: Amount,
    },
    /// The job asks for weaker verification than the mandate allows.
    #[error("verification level below the mandate's minimum")]
    MandateVerificationTooWeak,
    /// The mandate's terms are malformed.
    #[error("invalid mandate: {0}")]
    InvalidMandate(Reason),

    // ---- jobs ----
    /// The job spec is malformed.
    #[error("invalid job: {0}")]
    InvalidJob(Reason),
    /// A named provider does not qualify for its stage.
    #[error("named provider {provider:?} does not qualify for stage {stage}")]
    PlacementUnqualified {
        /// The stage.
        stage: u32,
        /// The named provider.
        provider: Address,
    },
    /// No such job.
    #[error("unknown job {0}")]
    UnknownJob(JobId),
    /// No such stage.
    #[error("job {job} has no stage {stage}")]
    UnknownStage {
        /// The job.
        job: JobId,
        /// The stage.
        stage: u32,
    },
    /// The stage is not in the phase this transaction needs.
    #[error("stage is not {0}")]
    WrongPhase(Reason),
    /// The signer holds no assignment for this stage.
    #[error("not assigned to this stage")]
    NotAssigned,
    /// The deadline for this action has passed.
    #[error("deadline {0} passed")]
    DeadlinePassed(Height),
    /// The signer already committed.
    #[error("already committed")]
    AlreadyCommitted,
    /// `CommitResult` on a generation stage: its commitment must come with
    /// the stage's input claim in the clear (`CommitSession`), which the drawn
    /// auditor checks before it commits.
    #[error("a generation stage commits with CommitSession (its input claim in the clear)")]
    SessionCommitNeeded,
    /// `CommitSession` on a stage of a job that is not a generation job.
    #[error("CommitSession is for generation stages")]
    NotASession,
    /// Some replica has not committed yet, so nobody may reveal.
    #[error("waiting for other replicas to commit")]
    RevealTooEarly,
    /// The signer already revealed.
    #[error("already revealed")]
    AlreadyRevealed,
    /// The revealed result does not match the commitment.
    #[error("reveal does not match the commitment")]
    CommitmentMismatch,
    /// The result's input is not the stage's input.
    #[error("result input does not match the stage input")]
    InputMismatch,
    /// A generation job is a session of one provider per stage: it must ask
    /// for exactly one replica.
    #[error("a generation job runs one provider per stage, not {0} replicas")]
    GenerationReplicas(u8),
    /// A revealed result's step count is out of range: `1..=max_tokens` for a
    /// generation stage (`max`), `0` for any other stage (`max` = 0).
    #[error("result claims {steps} steps; a generation stage needs 1..=max_tokens ({max}), any other stage 0")]
    InvalidSteps {
        /// The steps the result claims.
        steps: u32,
        /// The job's `max_tokens` (0: not a generation job).
        max: u32,
    },
    /// The previous pipeline stage has not revealed its output yet.
    #[error("previous stage has not revealed its output")]
    PreviousStageUnrevealed,
    /// The signer is not the stage's auditor.
    #[error("not the auditor")]
    NotAuditor,
    /// The challenge window is closed.
    #[error("challenge window closed")]
    ChallengeWindowClosed,
    /// A challenge must claim a different output.
    #[error("challenge agrees with the stage output")]
    ChallengeAgrees,
    /// A provider of the stage cannot challenge its own stage.
    #[error("cannot challenge own stage")]
    SelfChallenge,
    /// Only the job's requester (the signer of its `SubmitJob`) may cancel it.
    #[error("not the job's requester")]
    NotRequester,
    /// The job already completed, failed or was cancelled.
    #[error("job {0} is not active")]
    JobNotActive(JobId),
    /// A provider committed a result (or a stage is past running), so the job
    /// can no longer be cancelled.
    #[error("a provider already committed work; wait for the result or its deadline")]
    JobStarted,
    /// `ReplaceStage` on a job that is not a generation job.
    #[error("job {0} is not a generation job")]
    NotGeneration(JobId),
    /// `ReplaceStage`: the stage is not running with that provider, or it
    /// already committed.
    #[error("stage {stage} is not running uncommitted with that provider")]
    NotReplaceable {
        /// The stage.
        stage: u32,
    },
    /// `ReplaceStage` signed by neither the job's requester nor a provider of
    /// another of its stages.
    #[error("only the requester or another stage's provider may report a stage")]
    NotSessionMember,
    /// The job already excluded as many providers as it may.
    #[error("the job replaced as many providers as it may")]
    TooManyReplacements,
    /// A model or input hash of zero names no data anyone could fetch.
    #[error("{0} hash is zero")]
    ZeroHash(Reason),
    /// The transaction's fee is below what its work costs
    /// ([`crate::params::Params::required_fee`]).
    #[error("fee {fee} below the {required} this transaction's work costs")]
    FeeBelowWork {
        /// The fee carried.
        fee: Amount,
        /// The fee required.
        required: Amount,
    },
    /// The auditor already committed.
    #[error("auditor already committed")]
    AuditAlreadyCommitted,
    /// The audit's commitment does not open to this result.
    #[error("audit report does not match the auditor's commitment")]
    AuditCommitmentMismatch,
    /// The job already has an availability claim under check.
    #[error("an availability claim on this job is already under check")]
    ClaimPending,
    /// Availability can be claimed only by a provider assigned to the job
    /// that has not committed to its stage yet.
    #[error("only an assigned provider that has not committed may claim data unavailable")]
    NotClaimant,
    /// The account has open work, audits or disputes: exits wait for them.
    #[error("account has {jobs} open job role(s) and {disputes} open dispute(s)")]
    OpenObligations {
        /// Jobs in which it holds an unsettled assignment or audit.
        jobs: u32,
        /// Disputes it is a party to.
        disputes: u32,
    },
    /// Stake that voted is locked until the vote ends.
    #[error("stake voted on a proposal open until height {0}")]
    StakeLocked(Height),

    // ---- disputes ----
    /// No such dispute.
    #[error("unknown dispute {0}")]
    UnknownDispute(DisputeId),
    /// The signer is not a party to the dispute.
    #[error("not a party to the dispute")]
    NotParty,
    /// The dispute is not waiting for moves.
    #[error("dispute is closed to moves")]
    DisputeNotOpen,
    /// The signer already moved this round.
    #[error("already moved this round")]
    AlreadyMoved,
    /// The Merkle proof does not verify against the signer's trace root.
    #[error("bad merkle proof for leaf {index}")]
    BadProof {
        /// The leaf index.
        index: u32,
    },

    // ---- governance ----
    /// The proposed change is invalid.
    #[error("invalid parameter change: {0}")]
    InvalidParam(#[from] ParamError),
    /// No such proposal.
    #[error("unknown proposal {0}")]
    UnknownProposal(ProposalId),
    /// Voting on this proposal has ended.
    #[error("voting closed")]
    VotingClosed,
    /// The signer already voted.
    #[error("already voted")]
    AlreadyVoted,
}

/// Why a whole block was refused (its transactions are not applied).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum BlockError {
    /// The block is not the next height.
    #[error("wrong height: expected {expected}, got {got}")]
    WrongHeight {
        /// The next height.
        expected: Height,
        /// The block's height.
        got: Height,
    },
    /// The signature mask does not have one entry per transaction.
    #[error("signature mask has {mask} entries for {txs} transactions")]
    MaskLength {
        /// Mask entries.
        mask: usize,
        /// Transactions.
        txs: usize,
    },
    /// Too many transactions.
    #[error("block has {0} transactions, more than allowed")]
    TooManyTxs(usize),
}

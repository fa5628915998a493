//! Events: what happened in a block, for explorers, agents and tests.
//!
//! Events are outputs only; they are not part of the state root.

use crate::params::ParamChange;
use crate::types::{Address, Amount, DisputeId, Hash, Height, JobId, MandateId, ProposalId};

/// Why a dispute ended the way it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Resolution {
    /// The referee re-executed the disputed layer.
    Refereed {
        /// Model layer index re-executed.
        layer: u32,
    },
    /// The disputed layer's input could not be fetched; the defendant loses.
    InputUnavailable,
    /// A party did not move before the timeout.
    Timeout,
    /// The referee could not judge (e.g. model unavailable); nobody is punished.
    Annulled,
}

/// Something that happened while applying a block.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Event {
    /// Tokens moved between accounts.
    Transferred {
        from: Address,
        to: Address,
        amount: Amount,
    },
    /// Balance was bonded.
    Bonded { who: Address, amount: Amount },
    /// Stake started unbonding.
    UnbondStarted {
        who: Address,
        amount: Amount,
        release: Height,
    },
    /// Unbonding stake became withdrawable.
    UnbondReleased { who: Address, amount: Amount },
    /// Released stake was withdrawn to the balance.
    Withdrawn { who: Address, amount: Amount },
    /// New tokens were minted to the treasury.
    Issued { to: Address, amount: Amount },
    /// A provider registered (or re-registered after retiring).
    ProviderRegistered { provider: Address },
    /// A provider changed its offer.
    ProviderUpdated { provider: Address },
    /// A provider retired.
    ProviderRetired { provider: Address },
    /// A mandate was granted.
    MandateGranted {
        mandate: MandateId,
        principal: Address,
        agent: Address,
    },
    /// A mandate was revoked.
    MandateRevoked { mandate: MandateId },
    /// A job was posted and its escrow locked.
    JobSubmitted {
        job: JobId,
        payer: Address,
        escrow: Amount,
    },
    /// A provider was assigned a stage replica.
    StageAssigned {
        job: JobId,
        stage: u32,
        replica: u8,
        provider: Address,
        price: Amount,
        deadline: Height,
    },
    /// A provider committed to a result.
    ResultCommitted {
        job: JobId,
        stage: u32,
        provider: Address,
    },
    /// A provider revealed its result.
    ResultRevealed {
        job: JobId,
        stage: u32,
        provider: Address,
        output: Hash,
    },
    /// An auditor was drawn for a stage.
    AuditAssigned {
        job: JobId,
        stage: u32,
        auditor: Address,
        deadline: Height,
    },
    /// The auditor agreed and was paid its fee.
    AuditAgreed {
        job: JobId,
        stage: u32,
        auditor: Address,
        fee: Amount,
    },
    /// An auditor did not report in time.
    AuditMissed {
        job: JobId,
        stage: u32,
        auditor: Address,
    },
    /// A stage's result is verified and may be challenged until `until`.
    ChallengeWindowOpened {
        job: JobId,
        stage: u32,
        until: Height,
    },
    /// A dispute started.
    DisputeOpened {
        dispute: DisputeId,
        job: JobId,
        stage: u32,
        defendant: Address,
        challenger: Address,
    },
    /// A bisection round ended; the parties now disagree within leaves `lo..=hi`.
    BisectionNarrowed {
        dispute: DisputeId,
        lo: u32,
        hi: u32,
    },
    /// A dispute ended.
    DisputeResolved {
        dispute: DisputeId,
        /// The winner, if any (both can lose when neither matches the referee).
        winner: Option<Address>,
        /// Why.
        resolution: Resolution,
    },
    /// Bonded stake was slashed.
    Slashed {
        who: Address,
        amount: Amount,
        to_winner: Amount,
        to_requester: Amount,
        burned: Amount,
    },
    /// A challenger's bond was forfeited.
    BondForfeited {
        who: Address,
        amount: Amount,
        to_winner: Amount,
        to_requester: Amount,
        burned: Amount,
    },
    /// A challenger's bond was returned.
    BondReturned { who: Address, amount: Amount },
    /// A provider missed a deadline and was penalized; the stage is re-routed.
    DeadlineMissed {
        job: JobId,
        stage: u32,
        provider: Address,
        penalty: Amount,
    },
    /// A provider revealed a result whose input is not the previous stage's
    /// agreed output: its signed commitment proves a broken pipeline chain. It
    /// is slashed (see `Slashed`) and the stage is re-routed.
    ChainBroken {
        job: JobId,
        stage: u32,
        provider: Address,
        /// The input it committed to.
        claimed: Hash,
        /// The input the chain agreed on.
        agreed: Hash,
    },
    /// Every stage of a generation job revealed, but the results do not form
    /// one session: `stage` is the first whose `steps` differ from stage 0's,
    /// or else the first whose output is not the next stage's input (the last
    /// stage's output must be stage 0's input: both hash the token
    /// transcript). The job fails; nobody is paid and, for now, nobody is
    /// slashed; the session's bill is burned (`SessionCharged`), the rest of
    /// the escrow refunded.
    SessionBroken { job: JobId, stage: u32 },
    /// A broken session's bill — every revealed stage's ops over `steps` (the
    /// upper median of the steps the stages claimed) × its price — `burned`
    /// from the escrow instead of refunded: breaking a session never pays.
    SessionCharged {
        job: JobId,
        steps: u32,
        burned: Amount,
    },
    /// A provider was paid for a stage (ops × its price).
    StagePaid {
        job: JobId,
        stage: u32,
        provider: Address,
        amount: Amount,
    },
    /// An auditor was paid its fee outside an agreeing report: it won the dispute
    /// its report opened, or its commitment stood when the replicas disagreed.
    AuditPaid {
        job: JobId,
        stage: u32,
        auditor: Address,
        fee: Amount,
    },
    /// Nobody could fetch a job's data: an assigned provider (or auditor) was
    /// compensated from the escrow (one per party; `DataUnavailable` has the total).
    ProviderCompensated {
        job: JobId,
        provider: Address,
        amount: Amount,
    },
    /// A stage is final.
    StageFinalized { job: JobId, stage: u32 },
    /// Every stage is final; the unused escrow was refunded.
    JobCompleted { job: JobId, refund: Amount },
    /// A stage lost a dispute, or a generation session broke or missed a
    /// deadline; the job stopped and the unused escrow was refunded.
    JobFailed { job: JobId, refund: Amount },
    /// No provider qualified in time, or the requester cancelled before any
    /// commit; the escrow was refunded.
    JobCancelled { job: JobId, refund: Amount },
    /// A proposal was submitted.
    ProposalSubmitted {
        proposal: ProposalId,
        change: ParamChange,
        voting_ends: Height,
    },
    /// A vote was cast.
    Voted {
        proposal: ProposalId,
        voter: Address,
        approve: bool,
        weight: Amount,
    },
    /// A proposal passed and will take effect at `activates`.
    ProposalPassed {
        proposal: ProposalId,
        activates: Height,
    },
    /// A proposal failed (quorum or threshold not met).
    ProposalRejected { proposal: ProposalId },
    /// A passed change took effect.
    ParamChanged {
        proposal: ProposalId,
        change: ParamChange,
    },
    /// A passed change could no longer be applied (other changes made it invalid).
    ProposalVoided { proposal: ProposalId },
    /// The drawn auditor committed to its own result; the stage's replicas may reveal.
    AuditCommitted {
        job: JobId,
        stage: u32,
        auditor: Address,
    },
    /// An assigned provider claimed the job's model or input unavailable;
    /// the validators check it (the job's deadlines wait).
    UnavailabilityClaimed { job: JobId, claimant: Address },
    /// The validators fetched the data: the claim was false and the claimant
    /// paid the miss penalty; the job's deadlines resume, extended by the wait.
    ClaimRejected {
        job: JobId,
        claimant: Address,
        penalty: Amount,
    },
    /// Nobody could fetch the job's model or input: the job is cancelled and
    /// the payer compensated each assigned provider (`compensation` in all,
    /// from the escrow) before the rest was refunded.
    DataUnavailable {
        job: JobId,
        compensation: Amount,
        refund: Amount,
    },
    /// A failed job's last live stage settled (honest delivered work paid);
    /// the escrow still held for it was refunded.
    JobSettled { job: JobId, refund: Amount },
    /// Of a slash that failed a job, `amount` that would have been burned went
    /// to the payer instead: it repays what the payer owes for the job's
    /// honest delivered work ("from the cheater's slash first").
    PayerCompensated {
        job: JobId,
        payer: Address,
        amount: Amount,
    },
    /// A generation session's stage lost its provider (`ReplaceStage`,
    /// reported by `by`): the provider paid the miss `penalty`, left the job,
    /// and the stage went back to matching.
    StageReplaced {
        job: JobId,
        stage: u32,
        provider: Address,
        by: Address,
        penalty: Amount,
    },
    /// A generation session could not be completed (a stage that lapsed after
    /// the session ran found no replacement in time, or the job used up its
    /// replacements): `stages`, whose providers committed, are kept — revealed,
    /// verified and paid as in a completed session — the others are released,
    /// and the job fails (`JobFailed`, the rest refunded; `JobSettled` when
    /// the kept stages are done).
    SessionSalvaged { job: JobId, stages: Vec<u32> },
}

impl Event {
    /// The job this event is about, if any.
    pub fn job(&self) -> Option<JobId> {
        match self {
            Self::JobSubmitted { job, .. }
            | Self::StageAssigned { job, .. }
            | Self::ResultCommitted { job, .. }
            | Self::ResultRevealed { job, .. }
            | Self::AuditAssigned { job, .. }
            | Self::AuditAgreed { job, .. }
            | Self::AuditMissed { job, .. }
            | Self::AuditCommitted { job, .. }
            | Self::AuditPaid { job, .. }
            | Self::ChallengeWindowOpened { job, .. }
            | Self::DisputeOpened { job, .. }
            | Self::DeadlineMissed { job, .. }
            | Self::ChainBroken { job, .. }
            | Self::SessionBroken { job, .. }
            | Self::SessionCharged { job, .. }
            | Self::StagePaid { job, .. }
            | Self::ProviderCompensated { job, .. }
            | Self::StageFinalized { job, .. }
            | Self::JobCompleted { job, .. }
            | Self::JobFailed { job, .. }
            | Self::JobCancelled { job, .. }
            | Self::JobSettled { job, .. }
            | Self::UnavailabilityClaimed { job, .. }
            | Self::ClaimRejected { job, .. }
            | Self::DataUnavailable { job, .. }
            | Self::PayerCompensated { job, .. }
            | Self::StageReplaced { job, .. }
            | Self::SessionSalvaged { job, .. } => Some(*job),
            Self::Transferred { .. }
            | Self::Bonded { .. }
            | Self::UnbondStarted { .. }
            | Self::UnbondReleased { .. }
            | Self::Withdrawn { .. }
            | Self::Issued { .. }
            | Self::ProviderRegistered { .. }
            | Self::ProviderUpdated { .. }
            | Self::ProviderRetired { .. }
            | Self::MandateGranted { .. }
            | Self::MandateRevoked { .. }
            | Self::BisectionNarrowed { .. }
            | Self::DisputeResolved { .. }
            | Self::Slashed { .. }
            | Self::BondForfeited { .. }
            | Self::BondReturned { .. }
            | Self::ProposalSubmitted { .. }
            | Self::Voted { .. }
            | Self::ProposalPassed { .. }
            | Self::ProposalRejected { .. }
            | Self::ParamChanged { .. }
            | Self::ProposalVoided { .. } => None,
        }
    }
}

/// An event with the index of the transaction that caused it (`None` for the
/// per-block steps).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EventRecord {
    /// Index in the block's transaction list, or `None`.
    pub tx: Option<u32>,
    /// The event.
    pub event: Event,
}

//! The ledger state and block application.
//!
//! [`State`] holds every entity in ordered maps (deterministic iteration),
//! applies blocks ([`State::apply_block`]) and keeps an incremental state
//! root ([`State::root`]). The handlers live in submodules by domain:
//!
//! | module | transactions | per-block step |
//! | --- | --- | --- |
//! | `accounts` | Transfer, Bond, Unbond, Withdraw | release unbonded stake, issuance |
//! | `providers` | RegisterProvider, UpdateProvider, Retire | |
//! | `jobs` | GrantMandate, RevokeMandate, SubmitJob, CommitResult, RevealResult, CancelJob | matching, deadlines, audits, challenge windows, payout |
//! | `disputes` | AuditReport, Challenge, Bisect, StepRoot | dispute timeouts, referee, slashing |
//! | `governance` | Propose, Vote | tallies, activation |
//!
//! Every handler validates everything first and mutates only after all
//! checks passed, so a rejected transaction changes nothing (not even the
//! nonce or the fee).

mod accounts;
mod availability;
mod commit;
mod disputes;
mod governance;
mod jobs;
mod obligations;
mod providers;

use crate::bisection::Bisection;
use crate::error::{BlockError, TxError};
use crate::event::{Event, EventRecord};
use crate::params::{ParamChange, Params};
use crate::referee::Referee;
use crate::reputation::Reputation;
use crate::tx::{verify_batch, JobSpec, MandateTerms, Offer, SignedTx, StageResult, TxBody};
use crate::types::{
    codec_struct, limits, Address, Amount, ChainId, DisputeId, Hash, Height, JobId, MandateId,
    ProposalId,
};
use bytes::BufMut;
use commonware_codec::{Buf, EncodeSize, Error as CodecError, Read, ReadExt, Write};
use std::collections::{BTreeMap, BTreeSet};

pub use commit::StateKey;
pub use jobs::{audit_draw, auditor_seed, replica_seed};

/// An account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Account {
    /// Spendable tokens.
    pub balance: Amount,
    /// Next transaction nonce.
    pub nonce: u64,
    /// Bonded stake (provider collateral and voting weight; slashable).
    pub bonded: Amount,
    /// Unbonded stake released and ready for `Withdraw`.
    pub withdrawable: Amount,
}
codec_struct!(Account {
    balance,
    nonce,
    bonded,
    withdrawable
});

/// A registered provider. Its stake is its account's bonded amount.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Provider {
    /// The standing offer.
    pub offer: Offer,
    /// When it (last) registered.
    pub registered_at: Height,
    /// Stage assignments it is executing now (counts against capacity).
    pub active: u32,
    /// Assignments and audits not yet settled (blocks `Retire`).
    pub open: u32,
    /// Whether it retired (kept so its reputation survives re-registration).
    pub retired: bool,
    /// Value-weighted track record.
    pub reputation: Reputation,
}
codec_struct!(Provider {
    offer,
    registered_at,
    active,
    open,
    retired,
    reputation
});

/// A mandate: an agent may spend from the principal's balance within caps.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mandate {
    /// Who pays.
    pub principal: Address,
    /// The caps.
    pub terms: MandateTerms,
    /// Escrow locked plus amounts paid out under this mandate (refunds give it back).
    pub spent: Amount,
    /// Whether the principal revoked it.
    pub revoked: bool,
}
codec_struct!(Mandate {
    principal,
    terms,
    spent,
    revoked
});

/// One replica's assignment of a stage.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Assignment {
    /// The provider.
    pub provider: Address,
    /// Its price per mega-op when matched (what it is paid at).
    pub price: Amount,
    /// Last height to commit.
    pub deadline: Height,
    /// Phase-1 commitment.
    pub commitment: Option<Hash>,
    /// Phase-2 revealed result.
    pub result: Option<StageResult>,
}
codec_struct!(Assignment {
    provider,
    price,
    deadline,
    commitment,
    result
});

/// Where a stage is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StagePhase {
    /// Some replica slots wait for a provider (since the given height).
    Matching {
        /// When the stage (re)entered matching.
        since: Height,
    },
    /// Every slot has a provider; they commit, then reveal.
    Running {
        /// Last height to reveal, set once every replica has committed.
        reveal_deadline: Option<Height>,
    },
    /// An auditor re-executes the stage.
    Auditing {
        /// The auditor.
        auditor: Address,
        /// Its price per mega-op (its fee is ops × price).
        price: Amount,
        /// Last height to report.
        deadline: Height,
    },
    /// Verified; anyone may challenge until `until` (inclusive).
    Challengeable {
        /// Last height to challenge.
        until: Height,
    },
    /// Under dispute.
    Disputed {
        /// The dispute.
        dispute: DisputeId,
    },
    /// Paid out.
    Finalized,
    /// Stopped (the job failed or was cancelled).
    Cancelled,
}

impl StagePhase {
    /// The phase's short name (`matching`, `running`, `auditing`,
    /// `challengeable`, `disputed`, `finalized`, `cancelled`).
    pub fn name(&self) -> &'static str {
        match self {
            StagePhase::Matching { .. } => "matching",
            StagePhase::Running { .. } => "running",
            StagePhase::Auditing { .. } => "auditing",
            StagePhase::Challengeable { .. } => "challengeable",
            StagePhase::Disputed { .. } => "disputed",
            StagePhase::Finalized => "finalized",
            StagePhase::Cancelled => "cancelled",
        }
    }

    fn tag(&self) -> u8 {
        match self {
            StagePhase::Matching { .. } => 0,
            StagePhase::Running { .. } => 1,
            StagePhase::Auditing { .. } => 2,
            StagePhase::Challengeable { .. } => 3,
            StagePhase::Disputed { .. } => 4,
            StagePhase::Finalized => 5,
            StagePhase::Cancelled => 6,
        }
    }
}

impl Write for StagePhase {
    fn write(&self, buf: &mut impl BufMut) {
        buf.put_u8(self.tag());
        match self {
            StagePhase::Matching { since } => since.write(buf),
            StagePhase::Running { reveal_deadline } => reveal_deadline.write(buf),
            StagePhase::Auditing {
                auditor,
                price,
                deadline,
            } => {
                auditor.write(buf);
                price.write(buf);
                deadline.write(buf);
            }
            StagePhase::Challengeable { until } => until.write(buf),
            StagePhase::Disputed { dispute } => dispute.write(buf),
            StagePhase::Finalized | StagePhase::Cancelled => {}
        }
    }
}
impl EncodeSize for StagePhase {
    fn encode_size(&self) -> usize {
        1 + match self {
            StagePhase::Matching { .. } => 8,
            StagePhase::Running { reveal_deadline } => reveal_deadline.encode_size(),
            StagePhase::Auditing { .. } => 32 + 16 + 8,
            StagePhase::Challengeable { .. } => 8,
            StagePhase::Disputed { .. } => 8,
            StagePhase::Finalized | StagePhase::Cancelled => 0,
        }
    }
}
impl Read for StagePhase {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(match u8::read(buf)? {
            0 => StagePhase::Matching {
                since: Height::read(buf)?,
            },
            1 => StagePhase::Running {
                reveal_deadline: Option::<Height>::read(buf)?,
            },
            2 => StagePhase::Auditing {
                auditor: Address::read(buf)?,
                price: Amount::read(buf)?,
                deadline: Height::read(buf)?,
            },
            3 => StagePhase::Challengeable {
                until: Height::read(buf)?,
            },
            4 => StagePhase::Disputed {
                dispute: DisputeId::read(buf)?,
            },
            5 => StagePhase::Finalized,
            6 => StagePhase::Cancelled,
            t => return Err(CodecError::InvalidEnum(t)),
        })
    }
}

/// A replica slot: empty while matching.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Slot {
    /// The assignment, if matched.
    pub assignment: Option<Assignment>,
}
codec_struct!(Slot { assignment });

/// The auditor drawn for a stage when its replicas' commitments became final.
///
/// It commits to its own result before any replica may reveal (so it cannot
/// copy), and opens that commitment with `AuditReport` once the replicas
/// revealed (`StagePhase::Auditing`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditSlot {
    /// The auditor.
    pub auditor: Address,
    /// Its price per mega-op (its fee is ops × price).
    pub price: Amount,
    /// Last height to commit.
    pub deadline: Height,
    /// Its commitment, once posted.
    pub commitment: Option<Hash>,
}
codec_struct!(AuditSlot {
    auditor,
    price,
    deadline,
    commitment
});

/// A stage's runtime state (its layer range and ops are in the job's spec).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stage {
    /// Phase.
    pub phase: StagePhase,
    /// One slot per replica. A replica that missed its reveal after another
    /// replica revealed leaves its slot empty for good (a replacement could
    /// only echo a public result).
    pub slots: Vec<Slot>,
    /// The agreed result once every replica revealed the same output.
    pub result: Option<StageResult>,
    /// The auditor drawn for this stage, if any.
    #[serde(default)]
    pub audit: Option<AuditSlot>,
}
codec_struct!(Stage { phase, slots [list limits::MAX_REPLICAS], result, audit });

/// An assigned provider's claim that the job's model or input cannot be fetched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claim {
    /// Who claimed.
    pub claimant: Address,
    /// When (the job's deadlines wait from here).
    pub since: Height,
}
codec_struct!(Claim { claimant, since });

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum JobStatus {
    /// In progress.
    Active,
    /// Every stage paid; unused escrow refunded.
    Completed,
    /// A stage lost a dispute; unused escrow refunded.
    Failed,
    /// No provider in time, or the requester cancelled before any commit; escrow refunded.
    Cancelled,
}

impl Write for JobStatus {
    fn write(&self, buf: &mut impl BufMut) {
        buf.put_u8(match self {
            JobStatus::Active => 0,
            JobStatus::Completed => 1,
            JobStatus::Failed => 2,
            JobStatus::Cancelled => 3,
        });
    }
}
impl commonware_codec::FixedSize for JobStatus {
    const SIZE: usize = 1;
}
impl Read for JobStatus {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(match u8::read(buf)? {
            0 => JobStatus::Active,
            1 => JobStatus::Completed,
            2 => JobStatus::Failed,
            3 => JobStatus::Cancelled,
            t => return Err(CodecError::InvalidEnum(t)),
        })
    }
}

/// A job.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Job {
    /// Who signed `SubmitJob` (the agent, under a mandate).
    pub requester: Address,
    /// Whose balance funds the escrow (the principal, under a mandate).
    pub payer: Address,
    /// The job as submitted.
    pub spec: JobSpec,
    /// Submission height.
    pub submitted_at: Height,
    /// Tokens still locked.
    pub escrow: Amount,
    /// Status.
    pub status: JobStatus,
    /// Per-stage state, parallel to `spec.stages`.
    pub stages: Vec<Stage>,
    /// Providers that may no longer take this job (missed a deadline, lost a dispute).
    pub excluded: Vec<Address>,
    /// An availability claim under check, if any.
    #[serde(default)]
    pub claim: Option<Claim>,
}
codec_struct!(Job {
    requester,
    payer,
    spec,
    submitted_at,
    escrow,
    status,
    stages [list limits::MAX_STAGES],
    excluded [list limits::MAX_EXCLUDED],
    claim,
});

/// Who opened a dispute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DisputeKind {
    /// Two replicas revealed different outputs.
    Replica,
    /// The auditor disagreed.
    Audit,
    /// An outside challenger posted `bond`.
    External {
        /// The bond held by the ledger.
        bond: Amount,
    },
}

impl Write for DisputeKind {
    fn write(&self, buf: &mut impl BufMut) {
        match self {
            DisputeKind::Replica => buf.put_u8(0),
            DisputeKind::Audit => buf.put_u8(1),
            DisputeKind::External { bond } => {
                buf.put_u8(2);
                bond.write(buf);
            }
        }
    }
}
impl EncodeSize for DisputeKind {
    fn encode_size(&self) -> usize {
        match self {
            DisputeKind::External { .. } => 17,
            _ => 1,
        }
    }
}
impl Read for DisputeKind {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(match u8::read(buf)? {
            0 => DisputeKind::Replica,
            1 => DisputeKind::Audit,
            2 => DisputeKind::External {
                bond: Amount::read(buf)?,
            },
            t => return Err(CodecError::InvalidEnum(t)),
        })
    }
}

/// A bisection dispute between a stage's defendant and a challenger.
///
/// Trace leaves are indexed `0..=layers` (leaf 0 = the stage input, leaf
/// `i` = output of the stage's layer `i - 1`). Invariant: both parties agree
/// on leaf `lo` (value `agreed`) and disagree on leaf `hi`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Dispute {
    /// The job.
    pub job: JobId,
    /// The stage.
    pub stage: u32,
    /// Who opened it.
    pub kind: DisputeKind,
    /// The provider whose result is disputed.
    pub defendant: Address,
    /// Its trace root.
    pub defendant_root: Hash,
    /// The challenger (replica, auditor or outsider).
    pub challenger: Address,
    /// Its trace root.
    pub challenger_root: Hash,
    /// What a provider challenger (replica or auditor) is paid per mega-op if it wins.
    pub challenger_price: Amount,
    /// The bisection game: both agree on leaf `game.lo()`, disagree on `game.hi()`.
    pub game: Bisection,
    /// Value of leaf `lo` (both agree).
    pub agreed: Hash,
    /// The defendant's value of leaf `hi`.
    pub defendant_hi: Hash,
    /// The challenger's value of leaf `hi`.
    pub challenger_hi: Hash,
    /// The defendant's claimed stage output (its last leaf).
    pub defendant_output: Hash,
    /// The challenger's claimed stage output (its last leaf).
    pub challenger_output: Hash,
    /// The defendant's leaf at the current midpoint, once moved.
    pub defendant_move: Option<Hash>,
    /// The challenger's leaf at the current midpoint, once moved.
    pub challenger_move: Option<Hash>,
    /// Last height for the current round's moves.
    pub deadline: Height,
    /// Where the game is.
    pub phase: DisputePhase,
    /// Units of one step when the stage is a training stage (`0`: inference).
    pub step_units: u32,
    /// A training dispute's step (stage-relative), once the step-level game
    /// isolated it. From then on `game` is over the step's `step_units + 1`
    /// unit leaves and the roots are the parties' step roots.
    pub step: Option<u32>,
}

/// One party's side of a dispute ([`Dispute::party`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Party {
    /// Whether it is the defendant (else the challenger).
    pub defendant: bool,
    /// Its trace root (its step root once a training dispute reached one step).
    pub root: Hash,
    /// Its value of leaf `game.hi()`.
    pub hi: Hash,
    /// Whether it already moved this round.
    pub moved: bool,
}

impl Dispute {
    /// `who`'s side, if it is a party.
    pub fn party(&self, who: Address) -> Option<Party> {
        if who == self.defendant {
            Some(Party {
                defendant: true,
                root: self.defendant_root,
                hi: self.defendant_hi,
                moved: self.defendant_move.is_some(),
            })
        } else if who == self.challenger {
            Some(Party {
                defendant: false,
                root: self.challenger_root,
                hi: self.challenger_hi,
                moved: self.challenger_move.is_some(),
            })
        } else {
            None
        }
    }

    /// The referee question's layer index once the game is down to one leaf
    /// pair: the absolute layer `first_layer + lo` for inference; for a
    /// training stage, the flat unit index
    /// `(first_layer + step) × step_units + lo` (the referee splits it back).
    /// `None` when a training dispute has no step yet, or on overflow.
    pub fn referee_layer(&self, first_layer: u32) -> Option<u32> {
        if self.step_units == 0 {
            return Some(first_layer.saturating_add(self.game.lo()));
        }
        first_layer
            .checked_add(self.step?)?
            .checked_mul(self.step_units)?
            .checked_add(self.game.lo())
    }
}

/// Where a dispute is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DisputePhase {
    /// Parties are bisecting.
    Bisecting,
    /// One layer is left; the referee re-executes it in this block's per-block step.
    AwaitingReferee,
    /// Over.
    Resolved,
    /// A training dispute's step-level game isolated one step: each party
    /// posts its root over that step's unit leaves (`StepRoot`).
    StepRoots,
}

impl Write for DisputePhase {
    fn write(&self, buf: &mut impl BufMut) {
        buf.put_u8(match self {
            DisputePhase::Bisecting => 0,
            DisputePhase::AwaitingReferee => 1,
            DisputePhase::Resolved => 2,
            DisputePhase::StepRoots => 3,
        });
    }
}
impl commonware_codec::FixedSize for DisputePhase {
    const SIZE: usize = 1;
}
impl Read for DisputePhase {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(match u8::read(buf)? {
            0 => DisputePhase::Bisecting,
            1 => DisputePhase::AwaitingReferee,
            2 => DisputePhase::Resolved,
            3 => DisputePhase::StepRoots,
            t => return Err(CodecError::InvalidEnum(t)),
        })
    }
}
codec_struct!(Dispute {
    job,
    stage,
    kind,
    defendant,
    defendant_root,
    challenger,
    challenger_root,
    challenger_price,
    game,
    agreed,
    defendant_hi,
    challenger_hi,
    defendant_output,
    challenger_output,
    defendant_move,
    challenger_move,
    deadline,
    phase,
    step_units,
    step,
});

/// A governance proposal's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ProposalStatus {
    /// Open for votes until `voting_ends` (inclusive).
    Voting,
    /// Passed; takes effect at the given height.
    Passed {
        /// Activation height.
        activates: Height,
    },
    /// Quorum or threshold not met.
    Rejected,
    /// Took effect.
    Enacted,
    /// Passed but invalid when it was due (other changes intervened).
    Voided,
}

impl Write for ProposalStatus {
    fn write(&self, buf: &mut impl BufMut) {
        match self {
            ProposalStatus::Voting => buf.put_u8(0),
            ProposalStatus::Passed { activates } => {
                buf.put_u8(1);
                activates.write(buf);
            }
            ProposalStatus::Rejected => buf.put_u8(2),
            ProposalStatus::Enacted => buf.put_u8(3),
            ProposalStatus::Voided => buf.put_u8(4),
        }
    }
}
impl EncodeSize for ProposalStatus {
    fn encode_size(&self) -> usize {
        match self {
            ProposalStatus::Passed { .. } => 9,
            _ => 1,
        }
    }
}
impl Read for ProposalStatus {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(match u8::read(buf)? {
            0 => ProposalStatus::Voting,
            1 => ProposalStatus::Passed {
                activates: Height::read(buf)?,
            },
            2 => ProposalStatus::Rejected,
            3 => ProposalStatus::Enacted,
            4 => ProposalStatus::Voided,
            t => return Err(CodecError::InvalidEnum(t)),
        })
    }
}

/// A parameter-change proposal.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Proposal {
    /// Who proposed.
    pub proposer: Address,
    /// The change.
    pub change: ParamChange,
    /// Last height to vote.
    pub voting_ends: Height,
    /// Total bonded stake when proposed (the quorum base).
    pub bonded_snapshot: Amount,
    /// Yes weight.
    pub yes: Amount,
    /// No weight.
    pub no: Amount,
    /// Status.
    pub status: ProposalStatus,
}
codec_struct!(Proposal {
    proposer,
    change,
    voting_ends,
    bonded_snapshot,
    yes,
    no,
    status
});

/// One recorded vote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VoteRecord {
    /// Yes or no.
    pub approve: bool,
    /// Bonded stake of the voter when it voted.
    pub weight: Amount,
}
codec_struct!(VoteRecord { approve, weight });

/// Chain-wide counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Meta {
    /// Height of the last applied block (0 = genesis).
    pub height: Height,
    /// Next job id.
    pub next_job: JobId,
    /// Next mandate id.
    pub next_mandate: MandateId,
    /// Next dispute id.
    pub next_dispute: DisputeId,
    /// Next proposal id.
    pub next_proposal: ProposalId,
    /// Tokens created at genesis.
    pub genesis_supply: Amount,
    /// Tokens minted since genesis.
    pub issued: Amount,
    /// Tokens burned (fees, slash remainders, forfeited bonds).
    pub burned: Amount,
    /// Sum of every account's bonded stake.
    pub total_bonded: Amount,
    /// Receives issuance.
    pub treasury: Address,
}
codec_struct!(Meta {
    height,
    next_job,
    next_mandate,
    next_dispute,
    next_proposal,
    genesis_supply,
    issued,
    burned,
    total_bonded,
    treasury,
});

/// An account at genesis.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GenesisAccount {
    /// Address.
    pub address: Address,
    /// Spendable balance.
    pub balance: Amount,
    /// Bonded stake.
    pub bonded: Amount,
}

/// The initial state.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Genesis {
    /// The chain id every transaction must carry.
    pub chain_id: ChainId,
    /// Initial parameters.
    pub params: Params,
    /// Initial accounts.
    pub accounts: Vec<GenesisAccount>,
    /// Receives issuance (if governance turns it on).
    pub treasury: Address,
}

/// Why a genesis is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum GenesisError {
    /// Invalid parameters.
    #[error("invalid params: {0}")]
    Params(#[from] crate::params::ParamError),
    /// An address appears twice.
    #[error("duplicate genesis account {0:?}")]
    DuplicateAccount(Address),
    /// The supply overflows u128.
    #[error("genesis supply overflows")]
    Overflow,
}

/// A block as the ledger sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// Height (must be the state's height + 1).
    pub height: Height,
    /// The block's randomness (the threshold-VRF output the node supplies).
    pub beacon: [u8; 32],
    /// Transactions in order.
    pub txs: Vec<SignedTx>,
}

/// The result of one transaction.
pub type Receipt = Result<(), TxError>;

/// What applying a block produced.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BlockOutcome {
    /// The block height.
    pub height: Height,
    /// One receipt per transaction, in order.
    pub receipts: Vec<Receipt>,
    /// Everything that happened, in order.
    pub events: Vec<EventRecord>,
    /// The state root after the block.
    pub root: Hash,
}

/// A scheduled per-block check (an index over deadlines stored in the
/// entities; derived state, not committed separately).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// A stage's commit/reveal deadlines.
    Stage(JobId, u32),
    /// A stage's audit deadline.
    Audit(JobId, u32),
    /// A stage's challenge window end.
    Window(JobId, u32),
    /// A dispute round's timeout.
    Dispute(DisputeId),
    /// A proposal's voting end.
    Tally(ProposalId),
    /// A passed proposal's activation.
    Activate(ProposalId),
}

/// An account with the block epoch in which it was last touched (for
/// dirty tracking without a second map lookup).
#[derive(Clone, Copy, Debug)]
pub(crate) struct AccountSlot {
    pub(crate) acct: Account,
    pub(crate) touched: u64,
}

/// Per-block scratch: events and the block's beacon.
pub(crate) struct BlockCtx {
    pub(crate) events: Vec<EventRecord>,
    pub(crate) tx: Option<u32>,
    pub(crate) beacon: [u8; 32],
}

impl BlockCtx {
    #[inline]
    pub(crate) fn emit(&mut self, event: Event) {
        self.events.push(EventRecord { tx: self.tx, event });
    }
}

/// The whole ledger state.
#[derive(Clone)]
pub struct State {
    chain_id: ChainId,
    params: Params,
    meta: Meta,
    accounts: BTreeMap<Address, AccountSlot>,
    providers: BTreeMap<Address, Provider>,
    mandates: BTreeMap<MandateId, Mandate>,
    jobs: BTreeMap<JobId, Job>,
    disputes: BTreeMap<DisputeId, Dispute>,
    proposals: BTreeMap<ProposalId, Proposal>,
    votes: BTreeMap<(ProposalId, Address), VoteRecord>,
    unbonding: BTreeMap<(Height, Address), Amount>,
    timers: BTreeSet<(Height, Timer)>,
    matching: BTreeSet<JobId>,
    referee_queue: BTreeSet<DisputeId>,
    /// Jobs whose availability claim waits for the referee.
    claims: BTreeSet<JobId>,
    /// Jobs in which an address took a role (slot or audit); an index derived
    /// from the jobs, checked against them on read (see `open_roles`).
    roles: BTreeMap<Address, BTreeSet<JobId>>,
    /// The reverse of `roles`: who took a role in each job not yet settled, so
    /// a settled job's entries can be dropped without a scan (derived).
    role_holders: BTreeMap<JobId, BTreeSet<Address>>,
    /// Disputes an address is a party to, until resolved (derived).
    party_disputes: BTreeMap<Address, BTreeSet<DisputeId>>,
    /// The latest `voting_ends` among proposals an address voted on (derived
    /// from votes and proposals).
    vote_locks: BTreeMap<Address, Height>,
    /// Release heights of an address's unbonding entries (derived).
    unbonding_by: BTreeMap<Address, BTreeSet<Height>>,
    commit: commit::Commitment,
}

impl State {
    /// Builds the genesis state (height 0).
    pub fn new(genesis: &Genesis) -> Result<State, GenesisError> {
        genesis.params.validate()?;
        let mut accounts = BTreeMap::new();
        let mut supply = Amount::ZERO;
        let mut bonded_total = Amount::ZERO;
        for ga in &genesis.accounts {
            let acct = Account {
                balance: ga.balance,
                nonce: 0,
                bonded: ga.bonded,
                withdrawable: Amount::ZERO,
            };
            if accounts
                .insert(ga.address, AccountSlot { acct, touched: 0 })
                .is_some()
            {
                return Err(GenesisError::DuplicateAccount(ga.address));
            }
            supply = supply
                .checked_add(ga.balance)
                .and_then(|s| s.checked_add(ga.bonded))
                .ok_or(GenesisError::Overflow)?;
            bonded_total = bonded_total
                .checked_add(ga.bonded)
                .ok_or(GenesisError::Overflow)?;
        }
        let meta = Meta {
            genesis_supply: supply,
            total_bonded: bonded_total,
            treasury: genesis.treasury,
            ..Meta::default()
        };
        let mut state = State {
            chain_id: genesis.chain_id,
            params: genesis.params.clone(),
            meta,
            accounts,
            providers: BTreeMap::new(),
            mandates: BTreeMap::new(),
            jobs: BTreeMap::new(),
            disputes: BTreeMap::new(),
            proposals: BTreeMap::new(),
            votes: BTreeMap::new(),
            unbonding: BTreeMap::new(),
            timers: BTreeSet::new(),
            matching: BTreeSet::new(),
            referee_queue: BTreeSet::new(),
            claims: BTreeSet::new(),
            roles: BTreeMap::new(),
            role_holders: BTreeMap::new(),
            party_disputes: BTreeMap::new(),
            vote_locks: BTreeMap::new(),
            unbonding_by: BTreeMap::new(),
            commit: commit::Commitment::default(),
        };
        state.rebuild_root();
        Ok(state)
    }

    // ------------------------------------------------------------------
    // Reads
    // ------------------------------------------------------------------

    /// The chain id.
    pub fn chain_id(&self) -> ChainId {
        self.chain_id
    }
    /// Height of the last applied block.
    pub fn height(&self) -> Height {
        self.meta.height
    }
    /// The state root after the last applied block.
    pub fn root(&self) -> Hash {
        self.commit.root()
    }
    /// Current parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }
    /// Chain-wide counters (supply, next ids).
    pub fn meta(&self) -> &Meta {
        &self.meta
    }
    /// An account (a default, empty one if never touched).
    pub fn account(&self, a: &Address) -> Account {
        self.accounts.get(a).map(|s| s.acct).unwrap_or_default()
    }
    /// Spendable balance.
    pub fn balance(&self, a: &Address) -> Amount {
        self.account(a).balance
    }
    /// Next nonce.
    pub fn nonce(&self, a: &Address) -> u64 {
        self.account(a).nonce
    }
    /// Every account, in address order.
    pub fn accounts(&self) -> impl Iterator<Item = (&Address, &Account)> {
        self.accounts.iter().map(|(a, s)| (a, &s.acct))
    }
    /// A provider.
    pub fn provider(&self, a: &Address) -> Option<&Provider> {
        self.providers.get(a)
    }
    /// Every provider, in address order.
    pub fn providers(&self) -> impl Iterator<Item = (&Address, &Provider)> {
        self.providers.iter()
    }
    /// A provider's reputation score now (ppm), with decay and the stake bound.
    pub fn reputation_ppm(&self, a: &Address) -> u32 {
        match self.providers.get(a) {
            Some(p) => self.score(p, a),
            None => 0,
        }
    }
    /// A mandate.
    pub fn mandate(&self, id: MandateId) -> Option<&Mandate> {
        self.mandates.get(&id)
    }
    /// Every mandate.
    pub fn mandates(&self) -> impl Iterator<Item = (&MandateId, &Mandate)> {
        self.mandates.iter()
    }
    /// A job.
    pub fn job(&self, id: JobId) -> Option<&Job> {
        self.jobs.get(&id)
    }
    /// Every job.
    pub fn jobs(&self) -> impl Iterator<Item = (&JobId, &Job)> {
        self.jobs.iter()
    }
    /// A dispute.
    pub fn dispute(&self, id: DisputeId) -> Option<&Dispute> {
        self.disputes.get(&id)
    }
    /// Every dispute.
    pub fn disputes(&self) -> impl Iterator<Item = (&DisputeId, &Dispute)> {
        self.disputes.iter()
    }
    /// A proposal.
    pub fn proposal(&self, id: ProposalId) -> Option<&Proposal> {
        self.proposals.get(&id)
    }
    /// Every proposal.
    pub fn proposals(&self) -> impl Iterator<Item = (&ProposalId, &Proposal)> {
        self.proposals.iter()
    }
    /// A recorded vote.
    pub fn vote_record(&self, p: ProposalId, voter: &Address) -> Option<VoteRecord> {
        self.votes.get(&(p, *voter)).copied()
    }
    /// Pending unbondings: (release height, address) → amount.
    pub fn unbonding(&self) -> impl Iterator<Item = (&(Height, Address), &Amount)> {
        self.unbonding.iter()
    }

    /// Sums every place tokens can be — balances, bonded, unbonding,
    /// withdrawable, escrow, challenge bonds and burned — and compares with
    /// genesis supply plus issuance. Returns `(held, expected)`.
    pub fn supply(&self) -> (u128, u128) {
        let mut held: u128 = 0;
        for s in self.accounts.values() {
            held += s.acct.balance.0 + s.acct.bonded.0 + s.acct.withdrawable.0;
        }
        held += self.unbonding.values().map(|a| a.0).sum::<u128>();
        held += self.jobs.values().map(|j| j.escrow.0).sum::<u128>();
        held += self
            .disputes
            .values()
            .filter(|d| d.phase != DisputePhase::Resolved)
            .map(|d| match d.kind {
                DisputeKind::External { bond } => bond.0,
                _ => 0,
            })
            .sum::<u128>();
        held += self.meta.burned.0;
        (held, self.meta.genesis_supply.0 + self.meta.issued.0)
    }

    /// Whether the supply invariant holds (see [`State::supply`]).
    pub fn total_supply_check(&self) -> bool {
        let (held, expected) = self.supply();
        held == expected
    }

    // ------------------------------------------------------------------
    // Block application
    // ------------------------------------------------------------------

    /// Verifies every signature (batched, in parallel) and applies the block.
    pub fn apply_block(
        &mut self,
        block: &Block,
        referee: &dyn Referee,
    ) -> Result<BlockOutcome, BlockError> {
        let mask = verify_batch(&block.txs);
        self.apply_block_preverified(block, &mask, referee)
    }

    /// Applies a block whose signatures the caller already checked:
    /// `sig_ok[i]` says whether `block.txs[i]` is correctly signed (see
    /// [`crate::tx::verify_batch`]).
    pub fn apply_block_preverified(
        &mut self,
        block: &Block,
        sig_ok: &[bool],
        referee: &dyn Referee,
    ) -> Result<BlockOutcome, BlockError> {
        let expected = self.meta.height.plus(1);
        if block.height != expected {
            return Err(BlockError::WrongHeight {
                expected,
                got: block.height,
            });
        }
        if sig_ok.len() != block.txs.len() {
            return Err(BlockError::MaskLength {
                mask: sig_ok.len(),
                txs: block.txs.len(),
            });
        }
        if block.txs.len() > limits::MAX_BLOCK_TXS {
            return Err(BlockError::TooManyTxs(block.txs.len()));
        }
        self.commit.begin_block(&self.params, &self.meta);
        self.meta.height = block.height;
        let mut ctx = BlockCtx {
            events: Vec::with_capacity(block.txs.len() + 16),
            tx: None,
            beacon: block.beacon,
        };
        let mut receipts = Vec::with_capacity(block.txs.len());
        // Transactions apply in order on this thread. Every `EAGER_CHUNK`
        // transactions, the old values of the accounts first touched since the
        // last chunk are handed to another rayon thread, which removes them
        // from a partial root while application goes on (see
        // `commit::remove_old_accounts`). The root is a commutative sum, so
        // this overlap cannot change it.
        let eager = std::sync::Mutex::new(crate::root::StateCommitment::new());
        rayon::scope(|scope| {
            for (c, chunk) in block.txs.chunks(commit::EAGER_CHUNK).enumerate() {
                for (j, stx) in chunk.iter().enumerate() {
                    let i = c * commit::EAGER_CHUNK + j;
                    ctx.tx = Some(i as u32);
                    let r = if sig_ok[i] {
                        self.apply_tx(stx, &mut ctx)
                    } else {
                        Err(TxError::BadSignature)
                    };
                    receipts.push(r);
                }
                let olds = self.commit.take_old_accounts();
                let eager = &eager;
                scope.spawn(move |_| commit::remove_old_accounts(&olds, eager));
            }
        });
        ctx.tx = None;
        self.end_block(referee, &mut ctx);
        let eager = eager.into_inner().unwrap_or_else(|e| e.into_inner());
        let root = self.commit_block(eager);
        Ok(BlockOutcome {
            height: block.height,
            receipts,
            events: ctx.events,
            root,
        })
    }

    /// Applies one (signature-checked) transaction.
    fn apply_tx(&mut self, stx: &SignedTx, ctx: &mut BlockCtx) -> Result<(), TxError> {
        let tx = stx.tx();
        if tx.chain_id != self.chain_id {
            return Err(TxError::WrongChain {
                expected: self.chain_id,
                got: tx.chain_id,
            });
        }
        if tx.fee < self.params.min_fee {
            return Err(TxError::FeeTooLow {
                fee: tx.fee,
                min: self.params.min_fee,
            });
        }
        if !matches!(tx.body, TxBody::Transfer { .. }) {
            // Transfers are smaller than a KiB and match nothing: `min_fee` is
            // their whole price, checked above, and their path stays lean.
            let required = self.params.required_fee(&tx.body);
            if tx.fee < required {
                return Err(TxError::FeeBelowWork {
                    fee: tx.fee,
                    required,
                });
            }
        }
        let sender = stx.sender();
        if let TxBody::Transfer { to, amount } = &tx.body {
            // The hot path: one lookup per side, no allocation.
            return self.transfer(sender, tx.nonce, tx.fee, *to, *amount, ctx);
        }
        let acct = self.account(&sender);
        if tx.nonce != acct.nonce {
            return Err(TxError::BadNonce {
                expected: acct.nonce,
                got: tx.nonce,
            });
        }
        if acct.balance < tx.fee {
            return Err(TxError::InsufficientBalance {
                need: tx.fee,
                have: acct.balance,
            });
        }
        // What the body may spend: the balance left after the fee.
        let avail = acct.balance.saturating_sub(tx.fee);
        let fee = tx.fee;
        match &tx.body {
            TxBody::Transfer { to, amount } => {
                self.transfer(sender, tx.nonce, fee, *to, *amount, ctx)
            }
            TxBody::Bond { amount } => self.bond(sender, fee, avail, *amount, ctx),
            TxBody::Unbond { amount } => self.unbond(sender, fee, *amount, ctx),
            TxBody::Withdraw { amount } => self.withdraw(sender, fee, *amount, ctx),
            TxBody::RegisterProvider { offer, stake } => {
                self.register_provider(sender, fee, avail, offer, *stake, ctx)
            }
            TxBody::UpdateProvider { offer } => self.update_provider(sender, fee, offer, ctx),
            TxBody::Retire => self.retire(sender, fee, ctx),
            TxBody::GrantMandate { terms } => self.grant_mandate(sender, fee, terms, ctx),
            TxBody::RevokeMandate { mandate } => self.revoke_mandate(sender, fee, *mandate, ctx),
            TxBody::SubmitJob { spec } => self.submit_job(sender, fee, avail, spec, ctx),
            TxBody::CommitResult {
                job,
                stage,
                commitment,
            } => self.commit_result(sender, fee, *job, *stage, *commitment, ctx),
            TxBody::RevealResult {
                job,
                stage,
                result,
                salt,
            } => self.reveal_result(sender, fee, *job, *stage, result, salt, ctx),
            TxBody::AuditReport {
                job,
                stage,
                result,
                salt,
            } => self.audit_report(sender, fee, *job, *stage, result, salt, ctx),
            TxBody::AuditCommit {
                job,
                stage,
                commitment,
            } => self.audit_commit(sender, fee, *job, *stage, *commitment, ctx),
            TxBody::ClaimUnavailable { job } => self.claim_unavailable(sender, fee, *job, ctx),
            TxBody::Challenge { job, stage, result } => {
                self.challenge(sender, fee, avail, *job, *stage, result, ctx)
            }
            TxBody::Bisect {
                dispute,
                leaf,
                proof,
            } => self.bisect(sender, fee, *dispute, *leaf, proof, ctx),
            TxBody::StepRoot {
                dispute,
                root,
                first_proof,
                last_proof,
            } => self.step_root(sender, fee, *dispute, *root, first_proof, last_proof, ctx),
            TxBody::Propose { change } => self.propose(sender, fee, *change, ctx),
            TxBody::Vote { proposal, approve } => self.vote(sender, fee, *proposal, *approve, ctx),
            TxBody::CancelJob { job } => self.cancel_job_tx(sender, fee, *job, ctx),
        }
    }

    /// The per-block steps, in a fixed order.
    fn end_block(&mut self, referee: &dyn Referee, ctx: &mut BlockCtx) {
        let h = self.meta.height;
        // Timers due now, in (height, timer) order. Each handler re-checks the
        // entity, so stale timers are harmless.
        while let Some(&(at, timer)) = self.timers.first() {
            if at > h {
                break;
            }
            self.timers.pop_first();
            match timer {
                Timer::Activate(p) => self.activate_proposal(p, ctx),
                Timer::Tally(p) => self.tally_proposal(p, ctx),
                Timer::Stage(j, s) => self.check_stage_deadlines(j, s, ctx),
                Timer::Audit(j, s) => self.check_audit_deadline(j, s, ctx),
                Timer::Window(j, s) => self.close_challenge_window(j, s, ctx),
                Timer::Dispute(d) => self.check_dispute_timeout(d, ctx),
            }
        }
        self.release_unbonded(ctx);
        self.run_referee(referee, ctx);
        self.check_claims(referee, ctx);
        self.match_jobs(ctx);
        self.issue(ctx);
    }

    /// Schedules `timer` to fire in the per-block step of height `at`.
    pub(crate) fn schedule(&mut self, at: Height, timer: Timer) {
        self.timers.insert((at, timer));
    }

    /// Charges the fee and bumps the nonce (the last step of validation;
    /// callers checked the balance covers the fee).
    pub(crate) fn charge(&mut self, who: Address, fee: Amount) {
        let epoch = self.meta.height.0;
        let commit = &mut self.commit;
        let slot = self.accounts.entry(who).or_insert_with(|| {
            commit.new_account(who);
            AccountSlot {
                acct: Account::default(),
                touched: epoch,
            }
        });
        commit.touch_account(who, slot, epoch);
        slot.acct.balance = slot.acct.balance.saturating_sub(fee);
        slot.acct.nonce = slot.acct.nonce.wrapping_add(1);
        self.meta.burned = Amount(self.meta.burned.0.saturating_add(fee.0));
    }

    /// Mutable access to an account, creating it and recording it as dirty.
    pub(crate) fn account_mut(&mut self, who: Address) -> &mut Account {
        let epoch = self.meta.height.0;
        let commit = &mut self.commit;
        let slot = self.accounts.entry(who).or_insert_with(|| {
            commit.new_account(who);
            AccountSlot {
                acct: Account::default(),
                touched: epoch,
            }
        });
        commit.touch_account(who, slot, epoch);
        &mut slot.acct
    }

    /// Credits `amount` to `who`'s balance.
    pub(crate) fn credit(&mut self, who: Address, amount: Amount) {
        if amount.0 == 0 {
            return;
        }
        let a = self.account_mut(who);
        a.balance = Amount(a.balance.0.saturating_add(amount.0));
    }

    /// Burns `amount` (already removed from wherever it was held).
    pub(crate) fn burn(&mut self, amount: Amount) {
        self.meta.burned = Amount(self.meta.burned.0.saturating_add(amount.0));
    }

    /// Mutable job, recorded as dirty.
    pub(crate) fn job_mut(&mut self, id: JobId) -> Option<&mut Job> {
        let job = self.jobs.get_mut(&id)?;
        self.commit.touch(StateKey::Job(id), Some(&*job));
        Some(job)
    }
    /// Mutable provider, recorded as dirty.
    pub(crate) fn provider_mut(&mut self, a: Address) -> Option<&mut Provider> {
        let p = self.providers.get_mut(&a)?;
        self.commit.touch(StateKey::Provider(a), Some(&*p));
        Some(p)
    }
    /// Mutable dispute, recorded as dirty.
    pub(crate) fn dispute_mut(&mut self, id: DisputeId) -> Option<&mut Dispute> {
        let d = self.disputes.get_mut(&id)?;
        self.commit.touch(StateKey::Dispute(id), Some(&*d));
        Some(d)
    }
    /// Mutable mandate, recorded as dirty.
    pub(crate) fn mandate_mut(&mut self, id: MandateId) -> Option<&mut Mandate> {
        let m = self.mandates.get_mut(&id)?;
        self.commit.touch(StateKey::Mandate(id), Some(&*m));
        Some(m)
    }
    /// Mutable proposal, recorded as dirty.
    pub(crate) fn proposal_mut(&mut self, id: ProposalId) -> Option<&mut Proposal> {
        let p = self.proposals.get_mut(&id)?;
        self.commit.touch(StateKey::Proposal(id), Some(&*p));
        Some(p)
    }
}

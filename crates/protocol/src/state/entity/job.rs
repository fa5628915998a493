//! A job and its stages: the replica slots and their assignments, the
//! drawn auditor, each stage's phase, an availability claim, the job's status.

use crate::tx::{JobSpec, StageResult};
use crate::types::{codec_struct, limits, Address, Amount, DisputeId, Hash, Height};
use bytes::BufMut;
use commonware_codec::{Buf, EncodeSize, Error as CodecError, Read, ReadExt, Write};

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
    /// The input claim a generation stage's provider published with its
    /// commitment (`CommitSession`): its reveal must claim the same
    /// ([`StageResult::input`]). `None` before the commitment and for other
    /// stages.
    #[serde(default)]
    pub input: Option<Hash>,
}
codec_struct!(Assignment {
    provider,
    price,
    deadline,
    commitment,
    result,
    input
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

impl Stage {
    /// Whether every replica slot holds a provider that posted its commitment.
    pub fn all_committed(&self) -> bool {
        self.slots.iter().all(|s| {
            s.assignment
                .as_ref()
                .is_some_and(|a| a.commitment.is_some())
        })
    }
}

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

impl Job {
    /// Bars `who` from the job's slots: listed once, and the list stops growing at
    /// [`limits::MAX_EXCLUDED`] (the codec's bound).
    pub(crate) fn exclude(&mut self, who: Address) {
        if !self.excluded.contains(&who) && self.excluded.len() < limits::MAX_EXCLUDED {
            self.excluded.push(who);
        }
    }

    /// Whether any replica of any stage has posted its commitment.
    pub fn any_committed(&self) -> bool {
        self.stages.iter().any(|st| {
            st.slots
                .iter()
                .filter_map(|x| x.assignment.as_ref())
                .any(|a| a.commitment.is_some())
        })
    }

    /// Whether the job is a generation session ([`JobSpec::generation`]).
    pub fn is_generation(&self) -> bool {
        self.spec.generation.is_some()
    }

    /// The ops stage `i` bills at its providers' and auditor's prices: for a
    /// generation stage whose result is agreed, the ops of the steps it
    /// revealed ([`crate::tx::StageSpec::generation_ops`]); before that, the
    /// most it may bill ([`JobSpec::stage_max_ops`]); a stage's `ops` for
    /// other jobs. (0 only for a spec the ledger would have refused.)
    pub fn billed_ops(&self, i: usize) -> u64 {
        let steps = self.stages.get(i).and_then(|s| s.result).map(|r| r.steps);
        match steps {
            Some(steps) => self.spec.stage_ops_for(i, steps),
            None => self.spec.stage_max_ops(i),
        }
        .unwrap_or(0)
    }
}

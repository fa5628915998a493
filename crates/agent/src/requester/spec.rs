//! What preparing a job produces, for inference ([`super::prepare`]) and training
//! ([`super::training`]) alike: the [`PreparedJob`] and the ledger's job spec built
//! from per-layer (or per-step) ops ([`finish_spec`]).

use std::ops::Range;

use agentic_protocol::params::Params;
use agentic_protocol::tx::{GenerationSpec, JobSpec, Requirements, StageSpec};
use agentic_protocol::{Address, Amount, Hash, State, TxBody};

use super::error::RequesterError;
use super::placement::PlanSummary;
use super::request::JobRequest;
use super::training::TrainingSummary;

/// A job ready to submit: the blobs to upload and the ledger's job spec.
#[derive(Clone, Debug)]
pub struct PreparedJob {
    /// The model bundle's canonical bytes (the blob named by `model_hash`).
    pub bundle: Vec<u8>,
    /// blake3 of `bundle`: the job's `model`.
    pub model_hash: Hash,
    /// The input activation's canonical bytes (the blob named by `input_hash`).
    pub input: Vec<u8>,
    /// blake3 of `input`: the job's `input`.
    pub input_hash: Hash,
    /// The job as the ledger will see it.
    pub spec: JobSpec,
    /// The escrow `SubmitJob` locks (`State::escrow_for(&spec)`).
    pub escrow: Amount,
    /// Metered operations of every layer of the model on this input.
    pub layer_ops: Vec<u64>,
    /// Each layer's name (`embeddings`, `block.0`, …).
    pub layer_names: Vec<String>,
    /// Canonical bytes of the activation at each layer boundary (`layers + 1`
    /// entries: the input, then each layer's output).
    pub boundary_bytes: Vec<u64>,
    /// How the requester placed the stages (`None`: the ledger matches them).
    pub placement: Option<PlanSummary>,
    /// For a training job, what it trains (`None`: an inference job). Its "layers"
    /// are steps: `layer_ops` holds one entry per step, `boundary_bytes` the state's
    /// size before and after each, `bundle` the task blob and `input` the initial
    /// state.
    pub training: Option<TrainingSummary>,
}

impl PreparedJob {
    /// Total metered operations.
    pub fn total_ops(&self) -> u64 {
        self.layer_ops.iter().sum()
    }

    /// The `SubmitJob` transaction body of this job.
    pub fn submit_body(&self) -> TxBody {
        TxBody::SubmitJob {
            spec: self.spec.clone(),
        }
    }

    /// The fee its `SubmitJob` costs under `params` ([`Params::required_fee`]: the
    /// minimum fee plus one `fee_per_slot` per replica and auditor slot the ledger
    /// matches, plus `fee_per_kib` per whole KiB of the spec).
    pub fn fee(&self, params: &Params) -> Amount {
        params.required_fee(&self.submit_body())
    }
}

/// The ledger's job spec for `ranges` of `layer_ops` (a stage's ops are the sum of
/// its layers'), and the escrow it locks; refuses a zero-op stage and an escrow that
/// overflows or rounds to zero. `step_units` is 0 for inference and the task's units
/// per step for training (what a training dispute bisects inside a step).
pub(crate) fn finish_spec(
    req: &JobRequest,
    model: Hash,
    input: Hash,
    ranges: &[Range<usize>],
    layer_ops: &[u64],
    plan: &Option<PlanSummary>,
    step_units: u32,
) -> Result<(JobSpec, Amount), RequesterError> {
    let mut stages = Vec::with_capacity(ranges.len());
    for (i, r) in ranges.iter().enumerate() {
        let ops: u64 = layer_ops[r.clone()].iter().sum();
        if ops == 0 {
            return Err(RequesterError::ZeroOpsStage {
                stage: i,
                first_layer: r.start as u32,
                end: r.end as u32,
            });
        }
        stages.push(StageSpec {
            first_layer: r.start as u32,
            layers: r.len() as u32,
            ops,
            step_units,
            step_ops: 0,
            key_ops: 0,
        });
    }
    let placement = plan
        .as_ref()
        .map(|p| p.stages.iter().map(|s| s.provider).collect())
        .unwrap_or_default();
    assemble_spec(req, model, input, stages, placement, None)
}

/// The job spec of `req` over the given stages (each with its own metered ops), the
/// named placement and, for a generation job, its counts; with the escrow the ledger
/// will lock (a typed error when it overflows or rounds to zero).
pub(crate) fn assemble_spec(
    req: &JobRequest,
    model: Hash,
    input: Hash,
    stages: Vec<StageSpec>,
    placement: Vec<Address>,
    generation: Option<GenerationSpec>,
) -> Result<(JobSpec, Amount), RequesterError> {
    let ops: u64 = stages.iter().map(|s| s.ops).fold(0, u64::saturating_add);
    let spec = JobSpec {
        mandate: req.mandate,
        model,
        input,
        stages,
        max_price: req.max_price,
        deadline: req.deadline,
        requirements: Requirements {
            min_reputation_ppm: req.min_reputation_ppm,
            regions: req.regions.clone(),
            min_stake: req.min_stake,
            capabilities: req.capabilities,
            replicas: req.replicas,
            verification: req.verification,
        },
        coord: req.coord,
        placement,
        generation,
    };
    let escrow = State::escrow_for(&spec).ok_or(RequesterError::EscrowOverflow)?;
    if escrow == Amount::ZERO {
        return Err(RequesterError::EscrowRoundsToZero {
            ops,
            max_price: req.max_price,
        });
    }
    Ok((spec, escrow))
}

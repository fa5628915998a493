//! What a requester asks for ([`JobRequest`]) and what it knows of the market
//! ([`OfferView`]).

use agentic_compute::train::task::LrSchedule;
use agentic_compute::train::{AdamConfig, OptimizerConfig};
use agentic_protocol::coord::Coord;
use agentic_protocol::matching::Candidate;
use agentic_protocol::types::{Capabilities, Region, VerificationLevel};
use agentic_protocol::{Address, Amount, MandateId};

/// The input of a job.
#[derive(Clone, Debug, PartialEq)]
pub enum JobInput {
    /// Texts, one sequence each, tokenized by the model's tokenizer.
    Texts(Vec<String>),
    /// An activation's canonical bytes (`agentic_compute::Activation::canonical_bytes`),
    /// e.g. read from a tensor file: token ids for a language model, feature rows
    /// for an MLP.
    Activation(Vec<u8>),
    /// Not an inference: train the model (its architecture, and its weights unless
    /// `init_seed` is set) for some steps on a data file. The job's stages are step
    /// ranges; its output is the trained state (see [`crate::requester::training`]).
    Training(TrainingInput),
    /// Generate text with an LLM (`smollm2-135m`, or a GGUF file): the job's stages
    /// run as one session and stream tokens (see [`crate::requester::generate`]).
    Generate(super::generate::GenerationInput),
}

/// What a training job trains on and how ([`JobInput::Training`]).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainingInput {
    /// The training text: bytes, one token each (byte-level models, vocabulary 256).
    pub data: Vec<u8>,
    /// Optimizer steps, cut into the job's stages.
    pub steps: u64,
    /// Sequences per batch.
    pub batch: usize,
    /// Predicted positions per sequence (at most the model's positions).
    pub seq: usize,
    /// The optimizer; its `lr` is the schedule's peak.
    pub optimizer: OptimizerConfig,
    /// The learning-rate schedule over the steps.
    pub schedule: LrSchedule,
    /// Seed of the batch offsets.
    pub data_seed: u64,
    /// `None`: start from the model's weights; `Some(seed)`: from a fresh GPT-2
    /// initialization of the model's architecture.
    pub init_seed: Option<u64>,
}

impl TrainingInput {
    /// `steps` steps on `data`: batch 4 × seq 32, Adam at lr 1e-3 (β 0.9/0.999,
    /// no weight decay), constant rate, data seed 0, from the model's weights.
    pub fn new(data: Vec<u8>, steps: u64) -> TrainingInput {
        TrainingInput {
            data,
            steps,
            batch: 4,
            seq: 32,
            optimizer: OptimizerConfig::Adam(AdamConfig::default()),
            schedule: LrSchedule::Constant,
            data_seed: 0,
            init_seed: None,
        }
    }
}

/// Who runs each stage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PlacementChoice {
    /// The ledger matches every stage itself (price, reputation, latency); the
    /// layers are split so that every stage has the same number of ops, as near
    /// as the layer boundaries allow.
    #[default]
    Ledger,
    /// The requester runs the partitioner over the current qualified offers and
    /// names the providers (see [`crate::requester::placement`]).
    Auto,
    /// These providers, one per stage in pipeline order, with the layers split
    /// evenly by ops.
    Named(Vec<Address>),
}

/// A job as the requester describes it; [`crate::requester::prepare`] turns it
/// into a ledger [`agentic_protocol::tx::JobSpec`].
#[derive(Clone, Debug, PartialEq)]
pub struct JobRequest {
    /// Registry name (`tiny-gpt`, `minilm`) or a model directory.
    pub model: String,
    /// What to run it on.
    pub input: JobInput,
    /// Pipeline stages (contiguous layer ranges, one provider each).
    pub stages: usize,
    /// Independent providers per stage.
    pub replicas: u8,
    /// Highest price per mega-op paid (base units per 10^6 ops).
    pub max_price: Amount,
    /// Blocks a provider has to deliver after it is assigned.
    pub deadline: u64,
    /// How results are checked before payout.
    pub verification: VerificationLevel,
    /// Lowest provider reputation accepted (ppm).
    pub min_reputation_ppm: u32,
    /// Lowest provider bonded stake accepted.
    pub min_stake: Amount,
    /// Accepted provider regions (empty: any).
    pub regions: Vec<Region>,
    /// Capabilities every provider must have (none by default).
    pub capabilities: Capabilities,
    /// Who runs each stage.
    pub placement: PlacementChoice,
    /// Spend under this mandate (the signer must be its agent); `None`: the signer pays.
    pub mandate: Option<MandateId>,
    /// The requester's network coordinate (latency-aware matching and placement).
    pub coord: Coord,
}

impl JobRequest {
    /// Default price cap, base units per mega-op.
    pub const DEFAULT_MAX_PRICE: Amount = Amount(100);
    /// Default delivery deadline, blocks.
    pub const DEFAULT_DEADLINE: u64 = 100;

    /// `model` on `input`: one stage, one replica, max price
    /// [`Self::DEFAULT_MAX_PRICE`], deadline [`Self::DEFAULT_DEADLINE`] blocks,
    /// optimistic verification, no provider requirements, the ledger matches.
    pub fn new(model: impl Into<String>, input: JobInput) -> JobRequest {
        JobRequest {
            model: model.into(),
            input,
            stages: 1,
            replicas: 1,
            max_price: Self::DEFAULT_MAX_PRICE,
            deadline: Self::DEFAULT_DEADLINE,
            verification: VerificationLevel::Optimistic,
            min_reputation_ppm: 0,
            min_stake: Amount::ZERO,
            regions: Vec::new(),
            capabilities: Capabilities(0),
            placement: PlacementChoice::Ledger,
            mandate: None,
            coord: Coord::ORIGIN,
        }
    }

    /// The ledger's requirement for this request (what `matching::check` tests).
    pub(crate) fn requirement(&self) -> agentic_protocol::matching::Requirement {
        agentic_protocol::matching::Requirement {
            max_price: self.max_price.0,
            min_reputation_ppm: self.min_reputation_ppm,
            min_stake: self.min_stake.0,
            regions: self.regions.iter().map(|r| r.0).collect(),
            capabilities: self.capabilities.0,
            requester: self.coord,
        }
    }
}

/// A provider's standing offer as `/v1/offers` shows it (the node API's type).
pub use agentic_client::api::OfferView;

/// The ledger's matching candidate for an offer. Free capacity is taken as the whole
/// capacity: `/v1/offers` shows unsettled work (`open_jobs`), not the running
/// assignments the ledger counts, so a busy provider is not filtered out here (the
/// ledger re-checks when the job is submitted and matched).
pub(crate) fn candidate(o: &OfferView) -> Candidate<Address> {
    Candidate {
        id: o.provider,
        price: o.offer.price.0,
        reputation_ppm: o.reputation_ppm,
        coord: o.offer.coord,
        stake: o.bonded.0,
        free_capacity: o.offer.capacity,
        region: o.offer.region.0,
        capabilities: o.offer.capabilities.0,
    }
}

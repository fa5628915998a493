//! Transactions: bodies, the signed envelope, the canonical encoding and
//! batched signature verification.
//!
//! ```text
//!   SignedTx  = signer (32, ed25519 public key)
//!             ‖ Tx    = chain_id (8) ‖ nonce (8) ‖ fee (16) ‖ body (tag (1) ‖ fields)
//!             ‖ signature (64) over  union_unique(TX_NAMESPACE, Tx)
//! ```
//!
//! The signature covers the canonical encoding of `(chain id, nonce, fee,
//! body)` under the [`TX_NAMESPACE`] domain, so a signature can neither be
//! replayed on another chain (chain id), twice on this chain (nonce), nor in
//! another protocol (namespace). The signer's public key is bound by ed25519
//! itself. Decoding never panics: every list is length-bounded
//! ([`crate::types::limits`]), enums reject unknown tags, trailing bytes are
//! an error, and the public key must be a valid curve point.
//!
//! [`verify_batch`] checks many signatures at once: the transactions are cut
//! into one chunk per rayon thread, each chunk is one ed25519 batch equation
//! (a multi-scalar multiplication, cheaper per signature the larger it is),
//! and only a chunk whose equation fails is split in halves, recursively,
//! down to [`BATCH_CHUNK`] transactions that are re-checked one at a time —
//! so a block with a few bad signatures costs a logarithmic number of
//! extra equations. The batch
//! randomizers are derived from a blake3 hash of the whole chunk
//! (Fiat–Shamir), so verification is deterministic and needs no OS
//! randomness, yet an attacker cannot choose signatures that cancel out.

use crate::coord::Coord;
use crate::params::ParamChange;
use crate::types::{
    codec_struct, limits, Address, Amount, Capabilities, ChainId, DisputeId, Endpoint, Hash,
    Height, JobId, MandateId, ProposalId, Region, VerificationLevel,
};
use bytes::{Buf as _, BufMut, Bytes};
use commonware_codec::{
    Buf, Copying, Encode, EncodeSize, Error as CodecError, FixedSize, Read, ReadExt, Write,
};
use commonware_cryptography::{
    ed25519::{PrivateKey, PublicKey, Signature},
    BatchEntry, BatchVerifier, Signer, Verifier,
};
use commonware_parallel::Sequential;
use rayon::prelude::*;

/// Domain separation for transaction signatures.
pub const TX_NAMESPACE: &[u8] = b"agentic-tx";

/// Below this many transactions a failing batch is re-checked one by one
/// instead of being split further (see [`verify_batch`]).
pub const BATCH_CHUNK: usize = 64;

/// A provider's standing offer.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Offer {
    /// What the hardware can do.
    pub capabilities: Capabilities,
    /// Price in base units per mega-op (10^6 metered operations).
    pub price: Amount,
    /// Where the provider runs.
    pub region: Region,
    /// Network coordinate (Vivaldi-style), measured by the provider's node.
    pub coord: Coord,
    /// How many stage assignments the provider takes at once.
    pub capacity: u32,
    /// Data-plane address (`host:port`) where other providers and requesters
    /// fetch its blobs and push activations; empty: none.
    pub endpoint: Endpoint,
    /// Measured speed of the compute runtime on this hardware, in operations
    /// per second (the requester's partitioner places stages by it; 0: unknown).
    /// Reported by the provider; the ledger does not check it.
    pub speed: u64,
}
codec_struct!(Offer {
    capabilities,
    price,
    region,
    coord,
    capacity,
    endpoint,
    speed
});

/// Terms of a spending mandate a principal grants an agent.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MandateTerms {
    /// The agent allowed to submit jobs paid by the principal.
    pub agent: Address,
    /// Most the agent may have in escrow plus spent, in total.
    pub total_cap: Amount,
    /// Most escrow one job may lock.
    pub per_job_cap: Amount,
    /// Highest price per mega-op a job may offer.
    pub max_unit_price: Amount,
    /// First height at which the mandate no longer authorizes jobs.
    pub expiry: Height,
    /// Weakest verification level a job may ask for.
    pub min_verification: VerificationLevel,
}
codec_struct!(MandateTerms {
    agent,
    total_cap,
    per_job_cap,
    max_unit_price,
    expiry,
    min_verification
});

/// One stage of a job: a contiguous range of layers and its metered cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StageSpec {
    /// Index of the stage's first layer in the model.
    pub first_layer: u32,
    /// Number of layers (≥ 1); the stage's trace has `layers + 1` leaves.
    pub layers: u32,
    /// Operations the compute runtime meters for this stage.
    pub ops: u64,
    /// Units of one step of a training stage (`0`: an inference stage). A
    /// training stage's `[first_layer, first_layer + layers)` are steps, and its
    /// disputes bisect twice: over the steps, then over the `step_units` units
    /// (layer passes, head, optimizer) of the one disputed step.
    #[serde(default)]
    pub step_units: u32,
    /// Generation stages: the ops of one decode step over the stage's layers
    /// that do not depend on the context length (`0` for other stages).
    #[serde(default)]
    pub step_ops: u64,
    /// Generation stages: the ops one decode step adds per position of
    /// context it attends to (`0` for other stages).
    #[serde(default)]
    pub key_ops: u64,
}
codec_struct!(StageSpec {
    first_layer,
    layers,
    ops,
    step_units,
    step_ops,
    key_ops
});

impl StageSpec {
    /// An inference stage: `layers` layers from `first_layer`, metered at `ops`.
    pub fn layers(first_layer: u32, layers: u32, ops: u64) -> StageSpec {
        StageSpec {
            first_layer,
            layers,
            ops,
            step_units: 0,
            step_ops: 0,
            key_ops: 0,
        }
    }

    /// The ops of a generation of `steps ≥ 1` steps after a prompt of
    /// `prompt_tokens` tokens, where `ops` is the prefill (step 0, over the
    /// prompt) and every further step `k = 1..steps` costs `step_ops` plus
    /// `key_ops` per position it attends to before its own (`p + k − 1`):
    ///
    /// ```text
    ///   ops(n) = ops + (n − 1)·step_ops + key_ops·((n − 1)·p + (n − 1)·n / 2)
    /// ```
    ///
    /// `None` when `steps` is 0 or the count overflows a `u64`. The compute
    /// runtime meters a generation with the same formula (a test ties them).
    pub fn generation_ops(&self, prompt_tokens: u32, steps: u32) -> Option<u64> {
        let n = u64::from(steps);
        let p = u64::from(prompt_tokens);
        let decode = n.checked_sub(1)?;
        // (n − 1)·n is even, so the halving is exact.
        let attended = decode
            .checked_mul(p)?
            .checked_add(decode.checked_mul(n)? / 2)?;
        self.ops
            .checked_add(decode.checked_mul(self.step_ops)?)?
            .checked_add(self.key_ops.checked_mul(attended)?)
    }
}

/// What makes a job a generation session: the ledger needs only the token
/// counts (the prompt itself, the sampler, its seed and the stop tokens are in
/// the job's `input` blob, committed by its hash).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GenerationSpec {
    /// Tokens of the prompt (≥ 1): step 0, the prefill, runs over them.
    pub prompt_tokens: u32,
    /// Most tokens generated (≥ 1): the escrow covers this many steps.
    pub max_tokens: u32,
}
codec_struct!(GenerationSpec {
    prompt_tokens,
    max_tokens
});

/// What a provider must satisfy to take a job.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Requirements {
    /// Minimum reputation score (ppm).
    pub min_reputation_ppm: u32,
    /// Accepted regions (empty: any).
    pub regions: Vec<Region>,
    /// Minimum bonded stake.
    pub min_stake: Amount,
    /// Capabilities the provider must have.
    pub capabilities: Capabilities,
    /// Independent providers per stage (≥ 1).
    pub replicas: u8,
    /// How results are verified.
    pub verification: VerificationLevel,
}
codec_struct!(Requirements {
    min_reputation_ppm,
    regions [list limits::MAX_REGIONS],
    min_stake,
    capabilities,
    replicas,
    verification,
});

/// A job as submitted.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobSpec {
    /// Spend under this mandate (the signer must be its agent); `None`: the signer pays.
    pub mandate: Option<MandateId>,
    /// Hash of the model (weights and architecture) in the blob store.
    pub model: Hash,
    /// Hash of the input tensor in the blob store.
    pub input: Hash,
    /// Contiguous layer ranges, one per stage, in pipeline order.
    pub stages: Vec<StageSpec>,
    /// Highest price per mega-op the requester pays.
    pub max_price: Amount,
    /// Blocks a provider has to deliver after it is assigned.
    pub deadline: u64,
    /// Who may take the job.
    pub requirements: Requirements,
    /// The requester's network coordinate (for latency-aware matching).
    pub coord: Coord,
    /// Providers the requester names, one per stage (empty: the ledger matches).
    pub placement: Vec<Address>,
    /// A generation session (token by token across the stages); `None`: one pass.
    #[serde(default)]
    pub generation: Option<GenerationSpec>,
}
codec_struct!(JobSpec {
    mandate,
    model,
    input,
    stages [list limits::MAX_STAGES],
    max_price,
    deadline,
    requirements,
    coord,
    placement [list limits::MAX_STAGES],
    generation,
});

impl JobSpec {
    /// The most ops stage `i` may bill: a generation's ops over `max_tokens`
    /// steps ([`StageSpec::generation_ops`]), a stage's `ops` otherwise. The
    /// escrow, the audit odds and every fee before the steps are known use it.
    /// `None` for an unknown stage or an overflowing generation (refused at
    /// submission, so never for an accepted job).
    pub fn stage_max_ops(&self, i: usize) -> Option<u64> {
        let s = self.stages.get(i)?;
        match self.generation {
            Some(g) => s.generation_ops(g.prompt_tokens, g.max_tokens),
            None => Some(s.ops),
        }
    }

    /// The ops stage `i` bills for a result of `steps` steps: a generation's
    /// ops over `steps` (brought into `1..=max_tokens`, the range a reveal is
    /// held to), a stage's `ops` otherwise.
    pub fn stage_ops_for(&self, i: usize, steps: u32) -> Option<u64> {
        let s = self.stages.get(i)?;
        match self.generation {
            Some(g) => s.generation_ops(g.prompt_tokens, steps.min(g.max_tokens).max(1)),
            None => Some(s.ops),
        }
    }
}

/// A stage's result as claimed by whoever computed it.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct StageResult {
    /// Hash of the stage's input (trace leaf 0).
    pub input: Hash,
    /// Hash of the stage's output (the last trace leaf).
    pub output: Hash,
    /// Merkle root over the trace leaves (see [`crate::merkle`]).
    pub trace_root: Hash,
    /// Generation stages: the steps the session ran (`1..=max_tokens`, the
    /// same at every stage); `0` for other stages.
    #[serde(default)]
    pub steps: u32,
}
codec_struct!(StageResult {
    input,
    output,
    trace_root,
    steps
});

impl StageResult {
    /// The commitment a provider posts before revealing: binds the job, the
    /// stage, the result, a secret salt and the provider's own address, so a
    /// replica cannot reuse another's commitment.
    pub fn commitment(&self, job: JobId, stage: u32, salt: &Hash, provider: &Address) -> Hash {
        Hash::digest(
            "agentic commit-reveal v1",
            &[
                &job.0.to_be_bytes(),
                &stage.to_be_bytes(),
                &self.input.0,
                &self.output.0,
                &self.trace_root.0,
                &self.steps.to_be_bytes(),
                &salt.0,
                &provider.0,
            ],
        )
    }
}

/// What a transaction does.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TxBody {
    /// Move tokens to another account.
    Transfer {
        /// Recipient.
        to: Address,
        /// Amount moved.
        amount: Amount,
    },
    /// Lock balance as bonded stake.
    Bond {
        /// Amount bonded.
        amount: Amount,
    },
    /// Start unbonding stake (withdrawable after the unbonding delay).
    Unbond {
        /// Amount unbonded.
        amount: Amount,
    },
    /// Move released (unbonded) stake back to the balance.
    Withdraw {
        /// Amount withdrawn.
        amount: Amount,
    },
    /// Become a provider with a standing offer, bonding `stake` more first.
    RegisterProvider {
        /// The offer.
        offer: Offer,
        /// Extra stake bonded from the balance in the same transaction.
        stake: Amount,
    },
    /// Change the standing offer.
    UpdateProvider {
        /// The new offer.
        offer: Offer,
    },
    /// Stop taking jobs (allowed once no assignment is open).
    Retire,
    /// Authorize an agent to spend from the signer's balance.
    GrantMandate {
        /// The terms.
        terms: MandateTerms,
    },
    /// Stop a mandate from authorizing new jobs.
    RevokeMandate {
        /// The mandate.
        mandate: MandateId,
    },
    /// Post a job and lock its escrow.
    SubmitJob {
        /// The job.
        spec: JobSpec,
    },
    /// Phase 1 of commit-then-reveal: an assigned provider commits to its
    /// result (a generation stage commits with [`TxBody::CommitSession`]).
    CommitResult {
        /// The job.
        job: JobId,
        /// The stage.
        stage: u32,
        /// [`StageResult::commitment`].
        commitment: Hash,
    },
    /// Phase 2: reveal the committed result once every replica has committed.
    RevealResult {
        /// The job.
        job: JobId,
        /// The stage.
        stage: u32,
        /// The result.
        result: StageResult,
        /// The salt used in the commitment.
        salt: Hash,
    },
    /// The drawn auditor opens its commitment once the stage's replicas
    /// revealed: agree → paid, disagree → dispute.
    AuditReport {
        /// The job.
        job: JobId,
        /// The stage.
        stage: u32,
        /// The auditor's result.
        result: StageResult,
        /// The salt of its [`TxBody::AuditCommit`] commitment.
        salt: Hash,
    },
    /// Dispute a stage's result within its challenge window, posting a bond.
    Challenge {
        /// The job.
        job: JobId,
        /// The stage.
        stage: u32,
        /// The challenger's own result.
        result: StageResult,
    },
    /// One move of the bisection game: the signer's trace leaf at the
    /// dispute's current midpoint, with its Merkle proof.
    Bisect {
        /// The dispute.
        dispute: DisputeId,
        /// Leaf value (hash of the activation after that layer).
        leaf: Hash,
        /// Merkle proof of the leaf against the signer's trace root.
        proof: Vec<Hash>,
    },
    /// Propose a parameter change (bonded stakers only).
    Propose {
        /// The change.
        change: ParamChange,
    },
    /// Vote on a proposal with the signer's bonded stake.
    Vote {
        /// The proposal.
        proposal: ProposalId,
        /// Yes or no.
        approve: bool,
    },
    /// Withdraw a job before any provider committed work: the requester
    /// gets the whole escrow back and the assigned providers are released.
    CancelJob {
        /// The job (the signer must be its requester).
        job: JobId,
    },
    /// The drawn auditor commits to its own result
    /// ([`StageResult::commitment`] with its address) before any replica of
    /// the stage may reveal, so it cannot copy the result it audits.
    AuditCommit {
        /// The job.
        job: JobId,
        /// The stage.
        stage: u32,
        /// The commitment.
        commitment: Hash,
    },
    /// An assigned provider cannot fetch the job's model or input: the
    /// validators check (as for a referee verdict). Unavailable → the job is
    /// cancelled and the payer compensates every assigned provider; available
    /// → the claimant pays the miss penalty and the job goes on.
    ClaimUnavailable {
        /// The job.
        job: JobId,
    },
    /// A party of a training dispute whose step-level game isolated one step
    /// posts its root over that step's `step_units + 1` unit leaves, with the
    /// proofs that leaf 0 is the agreed state before the step and the last
    /// leaf its own state after it.
    StepRoot {
        /// The dispute.
        dispute: DisputeId,
        /// Merkle root of the signer's unit leaves of the step.
        root: Hash,
        /// Proof of leaf 0 (the agreed state) against `root`.
        first_proof: Vec<Hash>,
        /// Proof of the last leaf (the signer's state after the step).
        last_proof: Vec<Hash>,
    },
    /// A provider of a running generation session (or the job's requester)
    /// reports that stage `stage`'s provider `provider` dropped out of the
    /// session (its link broke, went silent, or sent a malformed or
    /// out-of-order frame): it is penalized as for a missed deadline and the
    /// stage is matched again; the replacement rebuilds the stage's cache
    /// by prefill and the session goes on (`state::jobs::replace`).
    ReplaceStage {
        /// The job.
        job: JobId,
        /// The stage.
        stage: u32,
        /// The provider the signer saw drop out (the stage's current one).
        provider: Address,
    },
    /// Phase 1 for a generation stage: the hidden commitment plus the stage's
    /// input claim in the clear ([`StageResult::input`]), so that the drawn
    /// auditor can check the input rows it fetches before it commits. Its
    /// reveal must claim that same input (`state::jobs::reveal`).
    CommitSession {
        /// The job.
        job: JobId,
        /// The stage.
        stage: u32,
        /// [`StageResult::commitment`].
        commitment: Hash,
        /// The result's input claim ([`StageResult::input`]): past stage 0,
        /// the chain hash of the stage's per-step input leaves.
        input: Hash,
    },
}

impl TxBody {
    /// Phase 1 of `stage` of `job`: `CommitSession` publishing `session_input` (a
    /// generation stage's input claim, [`StageResult::input`]), else `CommitResult`.
    pub fn commit(job: JobId, stage: u32, commitment: Hash, session_input: Option<Hash>) -> Self {
        match session_input {
            Some(input) => TxBody::CommitSession {
                job,
                stage,
                commitment,
                input,
            },
            None => TxBody::CommitResult {
                job,
                stage,
                commitment,
            },
        }
    }

    /// The replica and auditor slots this transaction asks the ledger to
    /// match: `stages × (replicas + 1 auditor when audits can be drawn)` for a
    /// `SubmitJob`, zero otherwise. Priced by `Params::fee_per_slot`.
    pub fn match_slots(&self) -> u64 {
        match self {
            TxBody::SubmitJob { spec } => {
                let audit =
                    u64::from(spec.requirements.verification != VerificationLevel::Optimistic);
                (spec.stages.len() as u64)
                    .saturating_mul(u64::from(spec.requirements.replicas).saturating_add(audit))
            }
            _ => 0,
        }
    }

    fn tag(&self) -> u8 {
        match self {
            TxBody::Transfer { .. } => 0,
            TxBody::Bond { .. } => 1,
            TxBody::Unbond { .. } => 2,
            TxBody::Withdraw { .. } => 3,
            TxBody::RegisterProvider { .. } => 4,
            TxBody::UpdateProvider { .. } => 5,
            TxBody::Retire => 6,
            TxBody::GrantMandate { .. } => 7,
            TxBody::RevokeMandate { .. } => 8,
            TxBody::SubmitJob { .. } => 9,
            TxBody::CommitResult { .. } => 10,
            TxBody::RevealResult { .. } => 11,
            TxBody::AuditReport { .. } => 12,
            TxBody::Challenge { .. } => 13,
            TxBody::Bisect { .. } => 14,
            TxBody::Propose { .. } => 15,
            TxBody::Vote { .. } => 16,
            TxBody::CancelJob { .. } => 17,
            TxBody::AuditCommit { .. } => 18,
            TxBody::ClaimUnavailable { .. } => 19,
            TxBody::StepRoot { .. } => 20,
            TxBody::ReplaceStage { .. } => 21,
            TxBody::CommitSession { .. } => 22,
        }
    }

    /// A short name of the kind (for logs and events).
    pub fn kind(&self) -> &'static str {
        match self {
            TxBody::Transfer { .. } => "transfer",
            TxBody::Bond { .. } => "bond",
            TxBody::Unbond { .. } => "unbond",
            TxBody::Withdraw { .. } => "withdraw",
            TxBody::RegisterProvider { .. } => "register_provider",
            TxBody::UpdateProvider { .. } => "update_provider",
            TxBody::Retire => "retire",
            TxBody::GrantMandate { .. } => "grant_mandate",
            TxBody::RevokeMandate { .. } => "revoke_mandate",
            TxBody::SubmitJob { .. } => "submit_job",
            TxBody::CommitResult { .. } => "commit_result",
            TxBody::RevealResult { .. } => "reveal_result",
            TxBody::AuditReport { .. } => "audit_report",
            TxBody::Challenge { .. } => "challenge",
            TxBody::Bisect { .. } => "bisect",
            TxBody::Propose { .. } => "propose",
            TxBody::Vote { .. } => "vote",
            TxBody::CancelJob { .. } => "cancel_job",
            TxBody::AuditCommit { .. } => "audit_commit",
            TxBody::ClaimUnavailable { .. } => "claim_unavailable",
            TxBody::StepRoot { .. } => "step_root",
            TxBody::ReplaceStage { .. } => "replace_stage",
            TxBody::CommitSession { .. } => "commit_session",
        }
    }
}

impl Write for TxBody {
    fn write(&self, buf: &mut impl BufMut) {
        buf.put_u8(self.tag());
        match self {
            TxBody::Transfer { to, amount } => {
                to.write(buf);
                amount.write(buf);
            }
            TxBody::Bond { amount } | TxBody::Unbond { amount } | TxBody::Withdraw { amount } => {
                amount.write(buf)
            }
            TxBody::RegisterProvider { offer, stake } => {
                offer.write(buf);
                stake.write(buf);
            }
            TxBody::UpdateProvider { offer } => offer.write(buf),
            TxBody::Retire => {}
            TxBody::GrantMandate { terms } => terms.write(buf),
            TxBody::RevokeMandate { mandate } => mandate.write(buf),
            TxBody::SubmitJob { spec } => spec.write(buf),
            TxBody::CommitResult {
                job,
                stage,
                commitment,
            } => {
                job.write(buf);
                stage.write(buf);
                commitment.write(buf);
            }
            TxBody::RevealResult {
                job,
                stage,
                result,
                salt,
            } => {
                job.write(buf);
                stage.write(buf);
                result.write(buf);
                salt.write(buf);
            }
            TxBody::AuditReport {
                job,
                stage,
                result,
                salt,
            } => {
                job.write(buf);
                stage.write(buf);
                result.write(buf);
                salt.write(buf);
            }
            TxBody::Challenge { job, stage, result } => {
                job.write(buf);
                stage.write(buf);
                result.write(buf);
            }
            TxBody::Bisect {
                dispute,
                leaf,
                proof,
            } => {
                dispute.write(buf);
                leaf.write(buf);
                crate::types::write_list(proof, buf);
            }
            TxBody::Propose { change } => change.write(buf),
            TxBody::Vote { proposal, approve } => {
                proposal.write(buf);
                approve.write(buf);
            }
            TxBody::CancelJob { job } | TxBody::ClaimUnavailable { job } => job.write(buf),
            TxBody::AuditCommit {
                job,
                stage,
                commitment,
            } => {
                job.write(buf);
                stage.write(buf);
                commitment.write(buf);
            }
            TxBody::StepRoot {
                dispute,
                root,
                first_proof,
                last_proof,
            } => {
                dispute.write(buf);
                root.write(buf);
                crate::types::write_list(first_proof, buf);
                crate::types::write_list(last_proof, buf);
            }
            TxBody::ReplaceStage {
                job,
                stage,
                provider,
            } => {
                job.write(buf);
                stage.write(buf);
                provider.write(buf);
            }
            TxBody::CommitSession {
                job,
                stage,
                commitment,
                input,
            } => {
                job.write(buf);
                stage.write(buf);
                commitment.write(buf);
                input.write(buf);
            }
        }
    }
}

impl EncodeSize for TxBody {
    fn encode_size(&self) -> usize {
        1 + match self {
            TxBody::Transfer { .. } => Address::SIZE + Amount::SIZE,
            TxBody::Bond { .. } | TxBody::Unbond { .. } | TxBody::Withdraw { .. } => Amount::SIZE,
            TxBody::RegisterProvider { offer, .. } => offer.encode_size() + Amount::SIZE,
            TxBody::UpdateProvider { offer } => offer.encode_size(),
            TxBody::Retire => 0,
            TxBody::GrantMandate { terms } => terms.encode_size(),
            TxBody::RevokeMandate { .. } => MandateId::SIZE,
            TxBody::SubmitJob { spec } => spec.encode_size(),
            TxBody::CommitResult { .. } => JobId::SIZE + 4 + Hash::SIZE,
            TxBody::RevealResult { result, .. } => {
                JobId::SIZE + 4 + result.encode_size() + Hash::SIZE
            }
            TxBody::AuditReport { result, .. } => {
                JobId::SIZE + 4 + result.encode_size() + Hash::SIZE
            }
            TxBody::Challenge { result, .. } => JobId::SIZE + 4 + result.encode_size(),
            TxBody::Bisect { proof, .. } => {
                DisputeId::SIZE + Hash::SIZE + crate::types::list_size(proof)
            }
            TxBody::Propose { .. } => ParamChange::SIZE,
            TxBody::Vote { .. } => ProposalId::SIZE + 1,
            TxBody::CancelJob { .. } | TxBody::ClaimUnavailable { .. } => JobId::SIZE,
            TxBody::AuditCommit { .. } => JobId::SIZE + 4 + Hash::SIZE,
            TxBody::StepRoot {
                first_proof,
                last_proof,
                ..
            } => {
                DisputeId::SIZE
                    + Hash::SIZE
                    + crate::types::list_size(first_proof)
                    + crate::types::list_size(last_proof)
            }
            TxBody::ReplaceStage { .. } => JobId::SIZE + 4 + Address::SIZE,
            TxBody::CommitSession { .. } => JobId::SIZE + 4 + Hash::SIZE + Hash::SIZE,
        }
    }
}

impl Read for TxBody {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let tag = u8::read(buf)?;
        Ok(match tag {
            0 => TxBody::Transfer {
                to: Address::read(buf)?,
                amount: Amount::read(buf)?,
            },
            1 => TxBody::Bond {
                amount: Amount::read(buf)?,
            },
            2 => TxBody::Unbond {
                amount: Amount::read(buf)?,
            },
            3 => TxBody::Withdraw {
                amount: Amount::read(buf)?,
            },
            4 => TxBody::RegisterProvider {
                offer: Offer::read(buf)?,
                stake: Amount::read(buf)?,
            },
            5 => TxBody::UpdateProvider {
                offer: Offer::read(buf)?,
            },
            6 => TxBody::Retire,
            7 => TxBody::GrantMandate {
                terms: MandateTerms::read(buf)?,
            },
            8 => TxBody::RevokeMandate {
                mandate: MandateId::read(buf)?,
            },
            9 => TxBody::SubmitJob {
                spec: JobSpec::read(buf)?,
            },
            10 => TxBody::CommitResult {
                job: JobId::read(buf)?,
                stage: u32::read(buf)?,
                commitment: Hash::read(buf)?,
            },
            11 => TxBody::RevealResult {
                job: JobId::read(buf)?,
                stage: u32::read(buf)?,
                result: StageResult::read(buf)?,
                salt: Hash::read(buf)?,
            },
            12 => TxBody::AuditReport {
                job: JobId::read(buf)?,
                stage: u32::read(buf)?,
                result: StageResult::read(buf)?,
                salt: Hash::read(buf)?,
            },
            13 => TxBody::Challenge {
                job: JobId::read(buf)?,
                stage: u32::read(buf)?,
                result: StageResult::read(buf)?,
            },
            14 => TxBody::Bisect {
                dispute: DisputeId::read(buf)?,
                leaf: Hash::read(buf)?,
                proof: crate::types::read_list(buf, limits::MAX_PROOF)?,
            },
            15 => TxBody::Propose {
                change: ParamChange::read(buf)?,
            },
            16 => TxBody::Vote {
                proposal: ProposalId::read(buf)?,
                approve: bool::read(buf)?,
            },
            17 => TxBody::CancelJob {
                job: JobId::read(buf)?,
            },
            18 => TxBody::AuditCommit {
                job: JobId::read(buf)?,
                stage: u32::read(buf)?,
                commitment: Hash::read(buf)?,
            },
            19 => TxBody::ClaimUnavailable {
                job: JobId::read(buf)?,
            },
            20 => TxBody::StepRoot {
                dispute: DisputeId::read(buf)?,
                root: Hash::read(buf)?,
                first_proof: crate::types::read_list(buf, limits::MAX_PROOF)?,
                last_proof: crate::types::read_list(buf, limits::MAX_PROOF)?,
            },
            21 => TxBody::ReplaceStage {
                job: JobId::read(buf)?,
                stage: u32::read(buf)?,
                provider: Address::read(buf)?,
            },
            22 => TxBody::CommitSession {
                job: JobId::read(buf)?,
                stage: u32::read(buf)?,
                commitment: Hash::read(buf)?,
                input: Hash::read(buf)?,
            },
            t => return Err(CodecError::InvalidEnum(t)),
        })
    }
}

/// The signed part of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tx {
    /// The chain this transaction is for.
    pub chain_id: ChainId,
    /// The signer's next nonce (0 for its first transaction).
    pub nonce: u64,
    /// Fee paid by the signer (burned), at least `Params::min_fee`.
    pub fee: Amount,
    /// What the transaction does.
    pub body: TxBody,
}
codec_struct!(Tx {
    chain_id,
    nonce,
    fee,
    body
});

/// A transaction with its signer and signature.
///
/// Keeps the canonical encoding of [`Tx`] it was signed or decoded from, so
/// verification never re-encodes.
#[derive(Clone, Debug)]
pub struct SignedTx {
    signer: PublicKey,
    address: Address,
    tx: Tx,
    payload: Bytes,
    signature: Signature,
}

impl PartialEq for SignedTx {
    fn eq(&self, o: &Self) -> bool {
        self.signer == o.signer && self.payload == o.payload && self.signature == o.signature
    }
}
impl Eq for SignedTx {}

impl SignedTx {
    /// Signs `tx` with `key`.
    pub fn sign(key: &PrivateKey, tx: Tx) -> SignedTx {
        let payload = tx.encode();
        let signature = key.sign(TX_NAMESPACE, &payload);
        let signer = key.public_key();
        SignedTx {
            address: Address::from(&signer),
            signer,
            tx,
            payload,
            signature,
        }
    }

    /// Assembles a transaction from parts without checking the signature
    /// (use [`SignedTx::verify`] or [`verify_batch`]).
    pub fn from_parts(signer: PublicKey, tx: Tx, signature: Signature) -> SignedTx {
        let payload = tx.encode();
        SignedTx {
            address: Address::from(&signer),
            signer,
            tx,
            payload,
            signature,
        }
    }

    /// The signer's public key.
    pub fn signer(&self) -> &PublicKey {
        &self.signer
    }
    /// The signer's address.
    pub fn sender(&self) -> Address {
        self.address
    }
    /// The signed transaction.
    pub fn tx(&self) -> &Tx {
        &self.tx
    }
    /// The signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }
    /// The signed bytes (canonical encoding of [`Tx`]).
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
    /// The transaction's id: blake3 of its full encoding.
    pub fn id(&self) -> Hash {
        Hash::digest(
            "agentic tx id v1",
            &[self.signer.as_ref(), &self.payload, self.signature.as_ref()],
        )
    }

    /// Checks this transaction's signature alone.
    pub fn verify(&self) -> bool {
        self.signer
            .verify(TX_NAMESPACE, &self.payload, &self.signature)
    }

    /// Canonical encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encode_size());
        self.write(&mut out);
        out
    }

    /// Decodes exactly one transaction from `bytes`; never panics.
    pub fn from_bytes(bytes: &[u8]) -> Result<SignedTx, CodecError> {
        let mut cur = Copying(bytes);
        let signer = PublicKey::read(&mut cur)?;
        let start = bytes.len() - cur.remaining();
        let tx = Tx::read(&mut cur)?;
        let end = bytes.len() - cur.remaining();
        let signature = Signature::read(&mut cur)?;
        if cur.remaining() != 0 {
            return Err(CodecError::ExtraData(cur.remaining()));
        }
        let payload = Bytes::copy_from_slice(bytes.get(start..end).ok_or(CodecError::EndOfBuffer)?);
        Ok(SignedTx {
            address: Address::from(&signer),
            signer,
            tx,
            payload,
            signature,
        })
    }
}

impl Write for SignedTx {
    fn write(&self, buf: &mut impl BufMut) {
        self.signer.write(buf);
        buf.put_slice(&self.payload);
        self.signature.write(buf);
    }
}
impl EncodeSize for SignedTx {
    fn encode_size(&self) -> usize {
        PublicKey::SIZE + self.payload.len() + Signature::SIZE
    }
}
impl Read for SignedTx {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let signer = PublicKey::read(buf)?;
        let tx = Tx::read(buf)?;
        let signature = Signature::read(buf)?;
        Ok(SignedTx::from_parts(signer, tx, signature))
    }
}

/// A deterministic CSPRNG for batch randomizers: blake3 in XOF mode, keyed
/// by a hash of everything in the batch.
struct TranscriptRng(blake3::OutputReader);

impl rand_core::TryRng for TranscriptRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.0.fill(&mut b);
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.0.fill(&mut b);
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.0.fill(dst);
        Ok(())
    }
}
impl rand_core::TryCryptoRng for TranscriptRng {}

fn verify_chunk(chunk: &[SignedTx], out: &mut [bool]) {
    let mut h = blake3::Hasher::new_derive_key("agentic batch verify v1");
    for t in chunk {
        h.update(t.signer.as_ref());
        h.update(&(t.payload.len() as u64).to_le_bytes());
        h.update(&t.payload);
        h.update(t.signature.as_ref());
    }
    let mut rng = TranscriptRng(h.finalize_xof());
    let ok = PublicKey::verify_batch(
        &mut rng,
        chunk,
        |_, t| BatchEntry {
            namespace: TX_NAMESPACE,
            message: &t.payload,
            public_key: &t.signer,
            signature: &t.signature,
        },
        &Sequential,
    );
    if ok {
        out.iter_mut().for_each(|o| *o = true);
    } else if chunk.len() <= BATCH_CHUNK {
        for (t, o) in chunk.iter().zip(out.iter_mut()) {
            *o = t.verify();
        }
    } else {
        let half = chunk.len() / 2;
        let (a, b) = chunk.split_at(half);
        let (oa, ob) = out.split_at_mut(half);
        rayon::join(|| verify_chunk(a, oa), || verify_chunk(b, ob));
    }
}

/// Verifies every transaction's signature; `result[i]` is whether `txs[i]`
/// is correctly signed. One batch equation per rayon thread; failing
/// batches are bisected (see the module docs).
pub fn verify_batch(txs: &[SignedTx]) -> Vec<bool> {
    let mut out = vec![false; txs.len()];
    if txs.is_empty() {
        return out;
    }
    let threads = rayon::current_num_threads().max(1);
    let chunk = txs.len().div_ceil(threads).max(1);
    txs.par_chunks(chunk)
        .zip(out.par_chunks_mut(chunk))
        .for_each(|(c, o)| verify_chunk(c, o));
    out
}

//! Checking a job's result on this machine, and disputing one that differs.
//!
//! Shared by the procurement agent (`verify_locally = true` in its goal) and
//! the MCP server's `challenge_result` tool:
//!
//! ```text
//!   recompute(job, stage) ── GET the model and input blobs (hash-checked by the client)
//!       │                    run layers 0..first (the stage's input), then first..end with a trace
//!       ▼
//!   (a generation stage: replay_generation_stage, one prefill of the streamed
//!    transcript, as an auditor replays it)
//!   Recomputed::compare(agreed)
//!       ├─ Agrees        ─▶ nothing to do (the ledger would refuse a challenge)
//!       ├─ InputDiffers  ─▶ an earlier stage diverged: challenge that one instead
//!       └─ Differs       ─▶ post_challenge: Challenge { job, stage, our result } — the
//!                           ledger locks `challenge_bond` from the signer — then
//!                           play_round, each time the caller wakes (the procurement agent
//!                           on the dispute's events, the MCP server on a timer), until the
//!                           dispute leaves bisection: each round, our trace leaf at the
//!                           midpoint + its Merkle proof
//! ```
//!
//! A party that stays silent for `dispute_timeout` blocks loses, so whoever
//! challenges must keep calling [`play_round`] until it answers [`Round::Over`].
//! The runtime is bitwise deterministic, so an honest recomputation and the
//! validators' referee agree on every layer: if ours differs from the agreed
//! result, the provider's is wrong.
//!
//! Nothing here holds a signing lock: a caller that sends other transactions
//! with the same key concurrently (the MCP server) serializes the calls that
//! sign ([`post_challenge`], [`play_round`]) itself.

use std::time::Duration;

use agentic_client::Client;
use agentic_compute::activation::DecodeLimits;
use agentic_compute::bundle::{Bundle, BundleLimits};
use agentic_compute::llm::stage::{replay_claim, GenerationRequest, StageRange};
use agentic_compute::Activation;
use agentic_protocol::event::Event;
use agentic_protocol::state::{Dispute, DisputePhase, Job};
use agentic_protocol::tx::StageResult;
use agentic_protocol::{Address, Amount, DisputeId, JobId, Leaves, TxBody};
use commonware_cryptography::ed25519::PrivateKey;
use serde::Serialize;

use crate::requester::RequesterError;

/// This machine's run of one stage.
#[derive(Clone, Debug)]
pub struct Recomputed {
    /// Input, output and trace root as a provider would commit them.
    pub result: StageResult,
    /// Trace leaves `[input, after each layer…]` (what bisection rounds open).
    pub leaves: Leaves,
}

/// How a recomputation compares with a stage's agreed result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// Same output: the result verifies.
    Agrees,
    /// Same input, different output: the agreed result is wrong.
    Differs,
    /// Different input: an earlier stage's output already diverged (challenge
    /// the earliest stage whose output differs; the ledger refuses this one).
    InputDiffers,
}

impl Recomputed {
    /// Compares with the stage's agreed result.
    pub fn compare(&self, agreed: &StageResult) -> Comparison {
        if self.result.output == agreed.output {
            Comparison::Agrees
        } else if self.result.input != agreed.input {
            Comparison::InputDiffers
        } else {
            Comparison::Differs
        }
    }
}

/// Why a stage cannot be recomputed here (nothing was posted).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct CannotRecompute {
    /// Why, in a sentence.
    pub reason: String,
}

fn cannot(reason: String) -> CannotRecompute {
    CannotRecompute { reason }
}

/// Re-runs `stage` of `job` from the job's input, with the model and the input
/// fetched from the node. Runs on a blocking thread.
pub async fn recompute(
    client: &Client,
    job: &Job,
    stage: u32,
) -> Result<Recomputed, CannotRecompute> {
    let Some(&spec) = job.spec.stages.get(stage as usize) else {
        return Err(cannot(format!(
            "the job has {} stage(s), no stage {stage}",
            job.spec.stages.len()
        )));
    };
    if job.is_generation() {
        return Err(cannot(
            "a generation stage is checked by replaying the session's transcript (replay_generation_stage: the procurement agent's verify_locally does it), not from the job's input alone".into(),
        ));
    }
    let model = client.get_blob(&job.spec.model).await.map_err(|e| {
        cannot(format!(
            "the node does not serve the job's model blob {}: {e}",
            job.spec.model
        ))
    })?;
    let input = client.get_blob(&job.spec.input).await.map_err(|e| {
        cannot(format!(
            "the node does not serve the job's input blob {}: {e}",
            job.spec.input
        ))
    })?;
    let run = tokio::task::spawn_blocking(move || -> Result<Recomputed, CannotRecompute> {
        let bundle = Bundle::decode(&model, BundleLimits::default()).map_err(|e| {
            cannot(format!("the job's model blob is not an inference model bundle (training jobs are not recomputed here): {e}"))
        })?;
        let loaded = bundle
            .load()
            .map_err(|e| cannot(format!("the model does not load: {e}")))?;
        let act = Activation::from_canonical_bytes(&input, DecodeLimits::default())
            .map_err(|e| cannot(format!("the job's input is not an activation: {e}")))?;
        let first = spec.first_layer as usize;
        let end = first + spec.layers as usize;
        let act = if first > 0 {
            loaded
                .model
                .run_range(0..first, act)
                .map_err(|e| cannot(format!("running layers 0..{first}: {e}")))?
                .output
        } else {
            act
        };
        let out = loaded
            .model
            .run_range(first..end, act)
            .map_err(|e| cannot(format!("running layers {first}..{end}: {e}")))?;
        Ok(Recomputed {
            result: StageResult {
                input: out.trace.input_hash,
                output: out.trace.output_hash(),
                trace_root: out.trace.root,
                steps: 0,
            },
            leaves: Leaves::new(out.trace.leaves()),
        })
    })
    .await
    .map_err(|e| cannot(format!("the recomputation stopped: {e}")))?;
    run
}

/// Replays `stage` of generation job `job` here, as an auditor does: one
/// teacher-forced prefill of `request`'s prompt and `tokens` (the transcript the
/// requester streamed) through the model, the stage's layers recorded
/// (`replay_claim`, the provider daemon's audit replay). Its result is what an
/// honest holder of the stage commits for that transcript. Blocking (run it off
/// the async threads).
///
/// Checked in stage order, the first stage whose output differs while its input
/// agrees is the one that lied (every stage after it computed on what it passed
/// on, so their inputs differ).
pub fn replay_generation_stage(
    model: &agentic_compute::llm::llama::Llama,
    job: &Job,
    stage: u32,
    request: &GenerationRequest,
    tokens: &[u32],
) -> Result<Recomputed, CannotRecompute> {
    let Some(spec) = job.spec.stages.get(stage as usize) else {
        return Err(cannot(format!(
            "the job has {} stage(s), no stage {stage}",
            job.spec.stages.len()
        )));
    };
    let range = StageRange {
        first: spec.first_layer as usize,
        count: spec.layers as usize,
    };
    let (trace, input, output) =
        replay_claim(model, &range, &request.prompt, tokens, &request.sampler)
            .map_err(|e| cannot(format!("replaying the session: {e}")))?;
    Ok(Recomputed {
        result: StageResult {
            input,
            output,
            trace_root: trace.root(),
            steps: trace.steps() as u32,
        },
        leaves: Leaves::new(trace.flat()),
    })
}

/// The chain's current `challenge_bond` (what a `Challenge` locks).
pub async fn challenge_bond(client: &Client) -> Result<Amount, RequesterError> {
    Ok(client.params().await?.challenge_bond)
}

/// A challenge the ledger accepted.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ChallengePosted {
    /// The dispute it opened.
    pub dispute: Option<DisputeId>,
    /// The bond the ledger locked from the signer (returned if it wins).
    pub bond: Amount,
    /// The transaction's fee (burned).
    pub fee: Amount,
}

/// Signs and sends `Challenge { job, stage, ours }` with `key`; the ledger locks
/// the challenge bond from the signer's balance.
pub async fn post_challenge(
    client: &Client,
    key: &PrivateKey,
    timeout: Duration,
    job: JobId,
    stage: u32,
    ours: StageResult,
) -> Result<ChallengePosted, RequesterError> {
    let bond = challenge_bond(client).await?;
    let body = TxBody::Challenge {
        job,
        stage,
        result: ours,
    };
    let fee = client.fee_for(&body).await?;
    let receipt = client.send(key, body, timeout).await?;
    let dispute = receipt.events.iter().find_map(|e| match e.event {
        Event::DisputeOpened { dispute, .. } => Some(dispute),
        _ => None,
    });
    Ok(ChallengePosted { dispute, bond, fee })
}

/// The dispute record (`/v1/disputes/{id}`), or `None` if the node has none.
pub async fn dispute(client: &Client, id: DisputeId) -> Result<Option<Dispute>, RequesterError> {
    match client.dispute(id).await {
        Ok(d) => Ok(Some(d)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// What one [`play_round`] call did.
#[derive(Clone, Debug)]
pub enum Round {
    /// Posted our leaf at the round's midpoint.
    Moved {
        /// The leaf index opened.
        mid: u32,
        /// The `Bisect` transaction's fee.
        fee: Amount,
    },
    /// Our move for this round is in; waiting for the other party.
    Waiting,
    /// The dispute left bisection (awaiting the referee or resolved), or
    /// `key` is not its challenger: nothing more to play.
    Over(Option<Box<Dispute>>),
}

/// Plays one round of `dispute` as its challenger: if this round still lacks
/// our move, posts our trace leaf at the midpoint with its Merkle proof.
pub async fn play_round(
    client: &Client,
    key: &PrivateKey,
    timeout: Duration,
    id: DisputeId,
    leaves: &Leaves,
) -> Result<Round, RequesterError> {
    use commonware_cryptography::Signer as _;
    let me = Address::from(&key.public_key());
    let Some(d) = dispute(client, id).await? else {
        return Ok(Round::Over(None));
    };
    if d.phase != DisputePhase::Bisecting || d.challenger != me {
        return Ok(Round::Over(Some(Box::new(d))));
    }
    let mid = d.game.midpoint().unwrap_or_default();
    let Some(body) = leaves
        .next_move(id, &d, me)
        .map_err(|reason| RequesterError::Bisection {
            dispute: id,
            reason,
        })?
    else {
        return Ok(Round::Waiting);
    };
    let fee = client.fee_for(&body).await?;
    client.send(key, body, timeout).await?;
    Ok(Round::Moved { mid, fee })
}

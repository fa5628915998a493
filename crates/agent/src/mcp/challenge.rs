//! `challenge_result`: recompute a stage here, and dispute it if it differs.
//!
//! ```text
//!   job record ── stage phase Challengeable { until } and height ≤ until? ── no ─▶ tool error (why)
//!       │ yes
//!   GET model blob + job input blob from the node (hash-checked)
//!       │ neither served, or not a model bundle ─▶ tool error "cannot recompute" (nothing posted)
//!   run layers 0..first (the stage's input), then first..end with a trace
//!       ├─ output = agreed output ─▶ verdict "agrees": nothing posted, nothing spent
//!       ├─ input ≠ agreed input   ─▶ tool error: an earlier stage already diverged
//!       └─ output ≠ agreed        ─▶ Challenge { job, stage, our result } (the ledger takes
//!                                     `challenge_bond`), then a background task answers each
//!                                     bisection round with our trace leaf and Merkle proof
//! ```
//!
//! The dispute ends with the referee re-executing the one layer the parties
//! disagree on: if our leaf is right the defendant is slashed, the job fails
//! and the payer gets everything unpaid back; if it is wrong the bond is lost.
//! A party that stays silent for a round loses, so the server must keep
//! running until the dispute resolves (`job_status` shows the stage as
//! `disputed` until then).

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentic_compute::activation::DecodeLimits;
use agentic_compute::bundle::{Bundle, BundleLimits};
use agentic_compute::Activation;
use agentic_node::client::ClientError;
use agentic_protocol::event::{Event, EventRecord};
use agentic_protocol::state::{Dispute, DisputePhase, Job, StagePhase};
use agentic_protocol::tx::StageResult;
use agentic_protocol::{merkle, DisputeId, Hash, JobId, TxBody};
use serde_json::{json, Value};

use super::args::ChallengeArgs;
use super::tools::Market;
use super::ToolError;
use crate::requester::RequesterError;

/// Longest a dispute player keeps answering rounds.
const MAX_DISPUTE_PLAY: Duration = Duration::from_secs(3600);

/// This server's own run of a stage.
struct Recomputed {
    result: StageResult,
    /// Trace leaves `[input, after each layer…]` (what bisection rounds open).
    leaves: Vec<[u8; 32]>,
}

impl Market {
    pub(crate) async fn challenge(self: Arc<Self>, a: ChallengeArgs) -> Result<Value, ToolError> {
        let id = JobId(a.job);
        let stage = a.stage;
        let job = self.job(id).await?;
        let Some(st) = job.stages.get(stage as usize) else {
            return Err(ToolError::NoSuchStage {
                job: id,
                stage,
                stages: job.stages.len(),
            });
        };
        let height = self.height().await?;
        let not = |reason: String| ToolError::NotChallengeable {
            job: id,
            stage,
            reason,
        };
        let until = match st.phase {
            StagePhase::Challengeable { until } if height <= until.0 => until,
            StagePhase::Challengeable { until } => {
                return Err(not(format!(
                    "its challenge window closed at height {until} (the chain is at {height})"
                )))
            }
            StagePhase::Disputed { dispute } => {
                return Err(not(format!("it is already under dispute {dispute}")))
            }
            StagePhase::Finalized => {
                return Err(not(
                    "it is final and paid: its challenge window has closed".into()
                ))
            }
            ref p => {
                return Err(not(format!(
                    "it is {} — only a stage with an agreed result, inside its challenge window, can be challenged",
                    p.name()
                )))
            }
        };
        let Some(agreed) = st.result else {
            return Err(not("it has no agreed result".into()));
        };

        let mine = self.recompute(&job, id, stage).await?;
        let base = json!({
            "job": id.0,
            "stage": stage,
            "agreed": {"input": agreed.input, "output": agreed.output, "trace_root": agreed.trace_root},
            "recomputed": {"input": mine.result.input, "output": mine.result.output, "trace_root": mine.result.trace_root},
            "window_until": until,
            "height": height,
        });
        if mine.result.output == agreed.output {
            let mut out = base;
            out["posted"] = json!(false);
            out["verdict"] = json!("agrees");
            out["message"] = json!(
                "this server re-ran the stage and got the agreed output: the result verifies, so no challenge was posted (the ledger would refuse one) and nothing was spent"
            );
            return Ok(out);
        }
        if mine.result.input != agreed.input {
            return Err(not(format!(
                "its agreed input {} differs from this server's recomputation {}: an earlier stage's output already diverged — challenge the earliest stage whose output differs",
                agreed.input, mine.result.input
            )));
        }

        let bond = self
            .client()
            .get("/v1/params")
            .await
            .ok()
            .map(|p| p["params"]["challenge_bond"].clone());
        let receipt = {
            let _one_at_a_time = self.tx_lock.lock().await;
            self.client()
                .send(
                    self.key(),
                    TxBody::Challenge {
                        job: id,
                        stage,
                        result: mine.result,
                    },
                    self.cfg.tx_timeout,
                )
                .await?
        };
        let events: Vec<EventRecord> = serde_json::from_value(receipt["events"].clone())
            .map_err(|e| RequesterError::Unexpected(format!("challenge receipt: {e}")))?;
        let dispute = events.iter().find_map(|e| match e.event {
            Event::DisputeOpened { dispute, .. } => Some(dispute),
            _ => None,
        });
        if let Some(d) = dispute {
            play_dispute(self.clone(), d, mine.leaves);
        }
        let mut out = base;
        out["posted"] = json!(true);
        out["verdict"] = json!("differs");
        out["dispute"] = json!(dispute.map(|d| d.0));
        out["bond"] = bond.unwrap_or(Value::Null);
        out["message"] = json!(
            "challenge posted with this server's own result; the server answers each bisection round in the background — keep it running until job_status shows the stage out of `disputed`. If the referee agrees with us the provider is slashed, the job fails and the payer is refunded everything unpaid; if not, the bond is lost"
        );
        Ok(out)
    }

    /// Re-runs `stage` of `job` from the job's input, with the model and the
    /// input fetched from the node.
    async fn recompute(&self, job: &Job, id: JobId, stage: u32) -> Result<Recomputed, ToolError> {
        let cannot = |reason: String| ToolError::CannotRecompute {
            job: id,
            stage,
            reason,
        };
        let model = self.client().get_blob(&job.spec.model).await.map_err(|e| {
            cannot(format!(
                "the node does not serve the job's model blob {}: {e}",
                job.spec.model
            ))
        })?;
        let input = self.client().get_blob(&job.spec.input).await.map_err(|e| {
            cannot(format!(
                "the node does not serve the job's input blob {}: {e}",
                job.spec.input
            ))
        })?;
        let spec = job.spec.stages[stage as usize];
        let run = tokio::task::spawn_blocking(move || -> Result<Recomputed, String> {
            let bundle = Bundle::decode(&model, BundleLimits::default()).map_err(|e| {
                format!("the job's model blob is not an inference model bundle (training jobs are not recomputed here): {e}")
            })?;
            let loaded = bundle
                .load()
                .map_err(|e| format!("the model does not load: {e}"))?;
            let act = Activation::from_canonical_bytes(&input, DecodeLimits::default())
                .map_err(|e| format!("the job's input is not an activation: {e}"))?;
            let first = spec.first_layer as usize;
            let end = first + spec.layers as usize;
            let act = if first > 0 {
                loaded
                    .model
                    .run_range(0..first, act)
                    .map_err(|e| format!("running layers 0..{first}: {e}"))?
                    .output
            } else {
                act
            };
            let out = loaded
                .model
                .run_range(first..end, act)
                .map_err(|e| format!("running layers {first}..{end}: {e}"))?;
            Ok(Recomputed {
                result: StageResult {
                    input: Hash(out.trace.input_hash.0),
                    output: Hash(out.trace.output_hash().0),
                    trace_root: Hash(out.trace.root.0),
                },
                leaves: out.trace.leaves().iter().map(|d| d.0).collect(),
            })
        })
        .await
        .map_err(|e| cannot(format!("the recomputation stopped: {e}")))?;
        run.map_err(cannot)
    }
}

/// Answers every bisection round of `dispute` (where this server is the
/// challenger) with its trace leaf at the round's midpoint and the leaf's
/// Merkle proof, until the dispute leaves the bisection phase.
fn play_dispute(market: Arc<Market>, dispute: DisputeId, leaves: Vec<[u8; 32]>) {
    tokio::spawn(async move {
        let me = market.me();
        let start = Instant::now();
        let path = format!("/v1/disputes/{}", dispute.0);
        while start.elapsed() < MAX_DISPUTE_PLAY {
            let d: Dispute = match market.client().get(&path).await {
                Ok(v) => match serde_json::from_value(v) {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::warn!(%dispute, "unreadable dispute: {e}");
                        break;
                    }
                },
                Err(ClientError::Api { status: 404, .. }) => break,
                Err(e) => {
                    tracing::warn!(%dispute, "reading the dispute: {e}");
                    tokio::time::sleep(market.cfg.poll_interval).await;
                    continue;
                }
            };
            if d.phase != DisputePhase::Bisecting || d.challenger != me {
                tracing::info!(%dispute, phase = ?d.phase, "dispute out of bisection; stop playing");
                break;
            }
            if let (None, Some(mid)) = (d.challenger_move, d.game.midpoint()) {
                let i = mid as usize;
                if let (Some(leaf), Some(proof)) = (leaves.get(i), merkle::proof(&leaves, i)) {
                    let body = TxBody::Bisect {
                        dispute,
                        leaf: Hash(*leaf),
                        proof: proof.into_iter().map(Hash).collect(),
                    };
                    let sent = {
                        let _one_at_a_time = market.tx_lock.lock().await;
                        market
                            .client()
                            .send(market.key(), body, market.cfg.tx_timeout)
                            .await
                    };
                    match sent {
                        Ok(_) => tracing::info!(%dispute, mid, "bisection move posted"),
                        Err(e) => tracing::warn!(%dispute, mid, "bisection move: {e}"),
                    }
                }
            }
            tokio::time::sleep(market.cfg.poll_interval).await;
        }
    });
}

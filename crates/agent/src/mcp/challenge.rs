//! `challenge_result`: recompute a stage here, and dispute it if it differs
//! (the recomputation, the challenge and each bisection round are
//! [`crate::verify`]'s, shared with the procurement agent).
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

use agentic_protocol::state::StagePhase;
use agentic_protocol::{DisputeId, JobId, Leaves};
use serde_json::{json, Value};

use super::args::ChallengeArgs;
use super::tools::Market;
use super::ToolError;
use crate::requester::JobFeed;
use crate::verify::{self, Comparison, Round};

/// Longest a dispute player keeps answering rounds.
const MAX_DISPUTE_PLAY: Duration = Duration::from_secs(3600);

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

        let mine = verify::recompute(self.client(), &job, stage)
            .await
            .map_err(|e| ToolError::CannotRecompute {
                job: id,
                stage,
                reason: e.reason,
            })?;
        let base = json!({
            "job": id.0,
            "stage": stage,
            "agreed": {"input": agreed.input, "output": agreed.output, "trace_root": agreed.trace_root},
            "recomputed": {"input": mine.result.input, "output": mine.result.output, "trace_root": mine.result.trace_root},
            "window_until": until,
            "height": height,
        });
        match mine.compare(&agreed) {
            Comparison::Agrees => {
                let mut out = base;
                out["posted"] = json!(false);
                out["verdict"] = json!("agrees");
                out["message"] = json!(
                    "this server re-ran the stage and got the agreed output: the result verifies, so no challenge was posted (the ledger would refuse one) and nothing was spent"
                );
                return Ok(out);
            }
            Comparison::InputDiffers => {
                return Err(not(format!(
                    "its agreed input {} differs from this server's recomputation {}: an earlier stage's output already diverged — challenge the earliest stage whose output differs",
                    agreed.input, mine.result.input
                )));
            }
            Comparison::Differs => {}
        }

        let posted = {
            let _one_at_a_time = self.tx_lock.lock().await;
            verify::post_challenge(
                self.client(),
                self.key(),
                self.cfg.tx_timeout,
                id,
                stage,
                mine.result,
            )
            .await?
        };
        if let Some(d) = posted.dispute {
            play_dispute(self.clone(), id, d, mine.leaves);
        }
        let mut out = base;
        out["posted"] = json!(true);
        out["verdict"] = json!("differs");
        out["dispute"] = json!(posted.dispute.map(|d| d.0));
        out["bond"] = json!(posted.bond);
        out["fee"] = json!(posted.fee);
        out["message"] = json!(
            "challenge posted with this server's own result; the server answers each bisection round in the background — keep it running until job_status shows the stage out of `disputed`. If the referee agrees with us the provider is slashed, the job fails and the payer is refunded everything unpaid; if not, the bond is lost"
        );
        Ok(out)
    }
}

/// Answers every bisection round of `dispute` (where this server is the
/// challenger) with its trace leaf at the round's midpoint and the leaf's
/// Merkle proof, until the dispute leaves the bisection phase. It plays again when a
/// finalized block's events name the dispute (the node's `/v1/events`, through the
/// requester SDK's [`JobFeed`]), or after `poll_interval` without one.
fn play_dispute(market: Arc<Market>, job: JobId, dispute: DisputeId, leaves: Leaves) {
    tokio::spawn(async move {
        let start = Instant::now();
        let mut feed = JobFeed::open(market.client(), job, market.cfg.poll_interval).await;
        feed.watch_dispute(dispute);
        while start.elapsed() < MAX_DISPUTE_PLAY {
            let round = {
                let _one_at_a_time = market.tx_lock.lock().await;
                verify::play_round(
                    market.client(),
                    market.key(),
                    market.cfg.tx_timeout,
                    dispute,
                    &leaves,
                )
                .await
            };
            match round {
                Ok(Round::Over(d)) => {
                    tracing::info!(%dispute, phase = ?d.map(|d| d.phase), "dispute out of bisection; stop playing");
                    break;
                }
                Ok(Round::Moved { mid, .. }) => {
                    tracing::info!(%dispute, mid, "bisection move posted")
                }
                Ok(Round::Waiting) => {}
                Err(e) => tracing::warn!(%dispute, "bisection round: {e}"),
            }
            feed.changed(start + MAX_DISPUTE_PLAY).await;
        }
    });
}

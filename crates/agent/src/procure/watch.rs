//! Following a purchased job: its phases, the disputes on it, and (with
//! `verify_locally`) this machine's own check of every stage.
//!
//! ```text
//!  each time the node's event feed reports a block that touched the job or a dispute
//!  on it (or every `resync_interval` regardless: requester::follow), until the job is
//!  settled (ended, and no escrow held: a failed job's delivered stages still being
//!  verified settle after it fails) or the goal's time runs out — re-read the job, then:
//!    job record changed ─▶ Step::Job
//!    a stage Disputed { d } not seen before ─▶ record who opened it (an audit, a
//!        replica, an outside challenger, or this agent) and both parties' stakes
//!    verify_locally, a stage with an agreed result (challengeable or final), not yet checked:
//!        recompute it here (crate::verify; a generation stage: replay the streamed
//!        transcript by one prefill, as an auditor does, in stage order) and compare
//!          agrees                       ─▶ recorded
//!          differs, window open, the bond
//!          fits the budget and balance  ─▶ Challenge (bond locked), then answer one
//!                                          bisection round per wake-up until it leaves bisection
//!          differs, cannot challenge    ─▶ recorded with why (the agent will not accept it)
//!          cannot recompute             ─▶ recorded with why
//!    a recorded dispute whose stage left it (or the job ended) ─▶ its verdict:
//!          the defendant is on the job's excluded list ─▶ the provider lost
//!          otherwise                                    ─▶ the provider's result stood
//! ```
//!
//! The amounts a verdict moves are the ledger's rules applied to what the chain
//! shows: the loser's bonded stake drop is the slash, `slash_requester_ppm` of it
//! went to the payer; what came back to this agent when it won its own dispute is
//! its bond and `slash_winner_ppm` of the slash (the ledger's rule: its balance
//! cannot tell, when the agent is also the payer of the job the dispute failed).

use std::time::Instant;

use agentic_protocol::state::{Account, DisputeKind, Job, JobStatus, StagePhase};
use agentic_protocol::{Address, Amount, DisputeId, Hash, JobId, Leaves, TxBody};
use serde::Serialize;

use super::error::AgentError;
use super::goal::Goal;
use super::plan::Quote;
use crate::requester::{Requester, RequesterError};
use crate::verify::{self, Comparison, Round};

/// What the agent reports while it works.
#[derive(Debug)]
pub enum Step<'a> {
    /// Quotes for attempt `attempt`, scored; `chosen` is the one bought.
    Quoted {
        /// 1-based attempt.
        attempt: u32,
        /// The scored quotes.
        quotes: &'a [Quote],
    },
    /// A job was submitted.
    Submitted {
        /// 1-based attempt.
        attempt: u32,
        /// The job.
        job: JobId,
        /// The plan bought.
        plan: &'static str,
        /// Escrow locked.
        escrow: Amount,
    },
    /// The job changed.
    Job(&'a Job),
    /// A generation job's last stage streamed a token.
    Token {
        /// The job.
        job: JobId,
        /// Its position (0 = the first generated token).
        index: u32,
        /// The token id.
        token: u32,
        /// The text it completes (empty while a character is incomplete).
        text: &'a str,
    },
    /// A stage was recomputed here (`verify_locally`).
    Checked {
        /// The job.
        job: JobId,
        /// What was found.
        check: &'a StageCheck,
    },
    /// A dispute on the job opened, or reached its verdict.
    Dispute {
        /// The job.
        job: JobId,
        /// The dispute as known so far.
        record: &'a DisputeRecord,
    },
}

/// What checking one stage here found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Check {
    /// This machine got the agreed output.
    Agrees {
        /// The output both agree on.
        output: Hash,
    },
    /// The agreed output differs from this machine's and the agent challenged it.
    Challenged {
        /// The agreed (provider's) output.
        agreed: Hash,
        /// This machine's output.
        ours: Hash,
        /// The dispute opened.
        dispute: Option<DisputeId>,
    },
    /// The agreed output differs, but the agent could not challenge it.
    DiffersUnchallenged {
        /// The agreed (provider's) output.
        agreed: Hash,
        /// This machine's output.
        ours: Hash,
        /// Why not (window closed, budget, balance, the ledger's refusal).
        reason: String,
    },
    /// The stage's input differs from this machine's: an earlier stage diverged.
    InputDiffers {
        /// The agreed input.
        agreed: Hash,
        /// This machine's input.
        ours: Hash,
    },
    /// The stage could not be recomputed here.
    CannotVerify {
        /// Why.
        reason: String,
    },
}

impl Check {
    /// Whether the check found the stage's result wrong.
    pub fn found_wrong(&self) -> bool {
        matches!(
            self,
            Check::Challenged { .. } | Check::DiffersUnchallenged { .. }
        )
    }
}

/// One stage checked here.
#[derive(Clone, Debug, Serialize)]
pub struct StageCheck {
    /// The stage.
    pub stage: u32,
    /// What was found.
    pub check: Check,
}

/// Who opened a dispute on the agent's job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum OpenedBy {
    /// This agent, after recomputing the stage.
    ThisAgent,
    /// The stage's auditor disagreed.
    Audit,
    /// Two replicas disagreed.
    Replica,
    /// Someone else posted a challenge bond.
    Challenger,
}

/// How a dispute ended, as far as the agent's job is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Still open when the agent stopped following.
    Open,
    /// The provider's result failed verification: it was slashed and excluded,
    /// the job failed, the payer got the unpaid escrow back.
    ProviderLost,
    /// The provider's result stood (or the dispute was annulled).
    ProviderUpheld,
}

/// A dispute on the agent's job, and what it cost or brought.
#[derive(Clone, Debug, Serialize)]
pub struct DisputeRecord {
    /// The stage.
    pub stage: u32,
    /// The dispute.
    pub dispute: DisputeId,
    /// Who opened it.
    pub opened_by: OpenedBy,
    /// The provider whose result is disputed.
    pub defendant: Address,
    /// Who disputes it.
    pub challenger: Address,
    /// The verdict.
    pub verdict: Verdict,
    /// The bond this agent locked (zero unless it opened the dispute).
    pub bond: Amount,
    /// This agent's transaction fees for it (challenge and bisection moves).
    pub fees: Amount,
    /// Bisection rounds this agent answered.
    pub moves: u32,
    /// The loser's stake (or forfeited bond) taken by the ledger.
    pub slashed: Amount,
    /// Of that, what the ledger credits to the job's payer (`slash_requester_ppm`).
    pub to_payer: Amount,
    /// What came back to this agent's key (its bond and the winner's share).
    pub to_agent: Amount,
    /// Both parties' bonded stake when the agent first saw the dispute.
    #[serde(skip)]
    stakes: (Amount, Amount),
}

impl DisputeRecord {
    /// What the dispute cost this agent's key for good: its fees, plus the bond
    /// if it never came back.
    pub fn agent_cost(&self) -> Amount {
        let lost_bond = self.bond.saturating_sub(self.to_agent);
        plus(self.fees, lost_bond)
    }
}

/// The job as the agent left it.
pub(crate) struct Followed {
    pub(crate) job: Job,
    pub(crate) checks: Vec<StageCheck>,
    pub(crate) disputes: Vec<DisputeRecord>,
    pub(crate) timed_out: bool,
}

/// What the follower needs to know.
pub(crate) struct Watch<'a> {
    pub(crate) requester: &'a Requester,
    pub(crate) goal: &'a Goal,
    pub(crate) job: JobId,
    pub(crate) until: Instant,
    /// The goal's budget left for a challenge bond and its fees.
    pub(crate) room: Amount,
    /// A generation whose stream ended, to replay its stages from (`verify_locally`).
    pub(crate) replay: Option<Replay>,
}

/// What replaying a generation's stages here takes: the model, the request, and
/// the transcript the requester streamed.
pub(crate) struct Replay {
    pub(crate) model: std::sync::Arc<agentic_compute::llm::generate::LlmModel>,
    pub(crate) request: agentic_compute::llm::stage::GenerationRequest,
    pub(crate) tokens: Vec<u32>,
}

async fn account(r: &Requester, who: &Address) -> Result<Account, RequesterError> {
    Ok(r.client().account(who).await?.account)
}

impl Watch<'_> {
    /// Follows the job to its end (or the goal's time), checking and disputing
    /// as the goal asks; `on` sees every step.
    pub(crate) async fn run(&self, on: &mut impl FnMut(Step<'_>)) -> Result<Followed, AgentError> {
        let r = self.requester;
        let me = r.address();
        let mut feed = r.follow(self.job).await;
        let mut last: Option<Job> = None;
        let mut checks: Vec<StageCheck> = Vec::new();
        let mut disputes: Vec<DisputeRecord> = Vec::new();
        // Our own disputes still in bisection, with our trace leaves.
        let mut playing: Vec<(DisputeId, Leaves)> = Vec::new();
        let mut room = self.room;
        loop {
            let job = r.job(self.job).await?;
            if last.as_ref() != Some(&job) {
                on(Step::Job(&job));
            }
            // Disputes opened by others (ours are recorded when posted).
            for (s, st) in job.stages.iter().enumerate() {
                let StagePhase::Disputed { dispute } = st.phase else {
                    continue;
                };
                if disputes.iter().any(|d| d.dispute == dispute) {
                    continue;
                }
                if let Some(rec) = self.open_record(s as u32, dispute, me).await? {
                    on(Step::Dispute {
                        job: self.job,
                        record: &rec,
                    });
                    disputes.push(rec);
                }
            }
            // This machine's own check of each stage with an agreed result (a
            // generation's stages by replaying the streamed transcript, in stage
            // order, so the first that lied is the one challenged).
            if self.goal.verify_locally && (self.goal.generate.is_none() || self.replay.is_some()) {
                for (s, st) in job.stages.iter().enumerate() {
                    let s = s as u32;
                    let ready = matches!(
                        st.phase,
                        StagePhase::Challengeable { .. } | StagePhase::Finalized
                    );
                    if !ready || st.result.is_none() || checks.iter().any(|c| c.stage == s) {
                        continue;
                    }
                    let (check, opened) = self.check_stage(&job, s, room).await?;
                    if let Some((rec, leaves)) = opened {
                        room = room.saturating_sub(plus(rec.bond, rec.fees));
                        on(Step::Dispute {
                            job: self.job,
                            record: &rec,
                        });
                        playing.push((rec.dispute, leaves));
                        disputes.push(rec);
                    }
                    let c = StageCheck { stage: s, check };
                    on(Step::Checked {
                        job: self.job,
                        check: &c,
                    });
                    checks.push(c);
                }
            }
            // One bisection round of each dispute we play.
            let mut still = Vec::new();
            for (id, leaves) in playing.drain(..) {
                match verify::play_round(r.client(), r.key(), r.tx_timeout, id, &leaves).await {
                    Ok(Round::Over(_)) => continue,
                    Ok(Round::Moved { mid, fee }) => {
                        tracing::info!(dispute = %id, mid, "bisection move posted");
                        if let Some(rec) = disputes.iter_mut().find(|d| d.dispute == id) {
                            rec.fees = plus(rec.fees, fee);
                            rec.moves += 1;
                        }
                    }
                    Ok(Round::Waiting) => {}
                    Err(e) => tracing::warn!(dispute = %id, "bisection round: {e}"),
                }
                still.push((id, leaves));
            }
            playing = still;
            // Verdicts of disputes whose stage moved on. The job is done once it is
            // settled: a failed job keeps what its live delivered stages may still pay
            // until the last of them settles (`JobSettled` refunds the rest).
            let done = job.status != JobStatus::Active && job.escrow == Amount::ZERO;
            for rec in disputes.iter_mut().filter(|d| d.verdict == Verdict::Open) {
                let left = job.stages.get(rec.stage as usize).is_none_or(|st| {
                    st.phase
                        != StagePhase::Disputed {
                            dispute: rec.dispute,
                        }
                });
                if done || left {
                    self.close_record(rec, &job).await?;
                    on(Step::Dispute {
                        job: self.job,
                        record: rec,
                    });
                }
            }
            if done {
                return Ok(Followed {
                    job,
                    checks,
                    disputes,
                    timed_out: false,
                });
            }
            if Instant::now() >= self.until {
                // Out of time: withdraw if nobody committed; otherwise the job runs on.
                let _ = r.cancel(self.job).await;
                let job = r.job(self.job).await?;
                return Ok(Followed {
                    job,
                    checks,
                    disputes,
                    timed_out: true,
                });
            }
            last = Some(job);
            feed.changed(self.until).await;
        }
    }

    /// A record of a dispute someone else opened (`None` if the node lost it).
    async fn open_record(
        &self,
        stage: u32,
        id: DisputeId,
        me: Address,
    ) -> Result<Option<DisputeRecord>, RequesterError> {
        let r = self.requester;
        let Some(d) = verify::dispute(r.client(), id).await? else {
            return Ok(None);
        };
        let opened_by = match d.kind {
            _ if d.challenger == me => OpenedBy::ThisAgent,
            DisputeKind::Audit => OpenedBy::Audit,
            DisputeKind::Replica => OpenedBy::Replica,
            DisputeKind::External { .. } => OpenedBy::Challenger,
        };
        let stakes = (
            account(r, &d.defendant).await?.bonded,
            account(r, &d.challenger).await?.bonded,
        );
        tracing::info!(dispute = %id, stage, ?opened_by, "a dispute on the agent's job");
        Ok(Some(DisputeRecord {
            stage,
            dispute: id,
            opened_by,
            defendant: d.defendant,
            challenger: d.challenger,
            verdict: Verdict::Open,
            bond: Amount::ZERO,
            fees: Amount::ZERO,
            moves: 0,
            slashed: Amount::ZERO,
            to_payer: Amount::ZERO,
            to_agent: Amount::ZERO,
            stakes,
        }))
    }

    /// Fills in the verdict and the amounts once the stage left the dispute.
    async fn close_record(&self, rec: &mut DisputeRecord, job: &Job) -> Result<(), RequesterError> {
        let r = self.requester;
        let resolved = verify::dispute(r.client(), rec.dispute)
            .await?
            .is_some_and(|d| d.phase == agentic_protocol::state::DisputePhase::Resolved);
        if !resolved {
            return Ok(()); // the job ended another way; the dispute stays open
        }
        let p = r.client().params().await?;
        let lost = job.excluded.contains(&rec.defendant);
        rec.verdict = if lost {
            Verdict::ProviderLost
        } else {
            Verdict::ProviderUpheld
        };
        let ours = rec.opened_by == OpenedBy::ThisAgent;
        rec.slashed = if lost {
            let after = account(r, &rec.defendant).await?.bonded;
            rec.stakes.0.saturating_sub(after)
        } else if ours {
            rec.bond
        } else {
            let after = account(r, &rec.challenger).await?.bonded;
            rec.stakes.1.saturating_sub(after)
        };
        rec.to_payer = rec.slashed.mul_ppm(p.slash_requester_ppm);
        if ours && lost {
            // The ledger's rule: the bond back and the winner's share of the slash.
            // (Not read from our balance: when this agent is also the job's payer,
            // the failed job's refund lands there in the same block.)
            rec.to_agent = plus(rec.bond, rec.slashed.mul_ppm(p.slash_winner_ppm));
        }
        tracing::info!(dispute = %rec.dispute, verdict = ?rec.verdict, slashed = %rec.slashed, "dispute over");
        Ok(())
    }

    /// Recomputes `stage` here, compares, and challenges a differing result when
    /// its window is open and the bond fits `room` and the agent's balance.
    async fn check_stage(
        &self,
        job: &Job,
        stage: u32,
        room: Amount,
    ) -> Result<(Check, Option<(DisputeRecord, Leaves)>), RequesterError> {
        let r = self.requester;
        let st = &job.stages[stage as usize];
        let Some(agreed) = st.result else {
            return Ok((
                Check::CannotVerify {
                    reason: "no agreed result".into(),
                },
                None,
            ));
        };
        let mine = match &self.replay {
            Some(rp) if job.is_generation() => {
                let (m, req, tokens, j) = (
                    std::sync::Arc::clone(&rp.model),
                    rp.request.clone(),
                    rp.tokens.clone(),
                    job.clone(),
                );
                tokio::task::spawn_blocking(move || {
                    verify::replay_generation_stage(&m.model, &j, stage, &req, &tokens)
                })
                .await
                .unwrap_or_else(|e| {
                    Err(verify::CannotRecompute {
                        reason: format!("the replay stopped: {e}"),
                    })
                })
            }
            _ => verify::recompute(r.client(), job, stage).await,
        };
        let mine = match mine {
            Ok(m) => m,
            Err(e) => return Ok((Check::CannotVerify { reason: e.reason }, None)),
        };
        let (agreed_out, ours) = (agreed.output, mine.result.output);
        let unchallenged = |reason: String| Check::DiffersUnchallenged {
            agreed: agreed_out,
            ours,
            reason,
        };
        match mine.compare(&agreed) {
            Comparison::Agrees => return Ok((Check::Agrees { output: ours }, None)),
            Comparison::InputDiffers => {
                return Ok((
                    Check::InputDiffers {
                        agreed: agreed.input,
                        ours: mine.result.input,
                    },
                    None,
                ))
            }
            Comparison::Differs => {}
        }
        let StagePhase::Challengeable { until } = st.phase else {
            return Ok((
                unchallenged(
                    "its challenge window had closed (the stage is final and paid)".into(),
                ),
                None,
            ));
        };
        let bond = verify::challenge_bond(r.client()).await?;
        let fee = r
            .client()
            .fee_for(&TxBody::Challenge {
                job: self.job,
                stage,
                result: mine.result,
            })
            .await?;
        let need = plus(bond, fee);
        if need > room {
            return Ok((
                unchallenged(format!(
                    "the challenge bond {bond} + fee {fee} is more than the {room} left of the goal's budget"
                )),
                None,
            ));
        }
        let me = r.address();
        let have = account(r, &me).await?.balance;
        if need > have {
            return Ok((
                unchallenged(format!(
                    "the challenge bond {bond} + fee {fee} is more than this agent's balance {have}"
                )),
                None,
            ));
        }
        let posted = match verify::post_challenge(
            r.client(),
            r.key(),
            r.tx_timeout,
            self.job,
            stage,
            mine.result,
        )
        .await
        {
            Ok(p) => p,
            Err(RequesterError::Rejected { reason, .. }) => {
                return Ok((
                    unchallenged(format!(
                        "the ledger refused the challenge (window until height {until}): {reason}"
                    )),
                    None,
                ))
            }
            Err(e) => return Err(e),
        };
        let check = Check::Challenged {
            agreed: agreed_out,
            ours,
            dispute: posted.dispute,
        };
        let Some(id) = posted.dispute else {
            return Ok((check, None));
        };
        tracing::info!(job = %self.job, stage, dispute = %id, "the agreed result differs from ours: challenged");
        let mut rec = match self.open_record(stage, id, me).await? {
            Some(rec) => rec,
            None => return Ok((check, None)),
        };
        rec.bond = posted.bond;
        rec.fees = posted.fee;
        Ok((check, Some((rec, mine.leaves))))
    }
}

fn plus(a: Amount, b: Amount) -> Amount {
    Amount(a.0.saturating_add(b.0))
}

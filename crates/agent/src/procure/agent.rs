//! The procurement loop: quote, check, submit, follow, retry, report.
//!
//! ```text
//!  attempt 1..=goal.attempts, while the goal's time lasts:
//!    offers ─▶ quotes (fastest / cheapest / reputable) ─▶ score by the preferences
//!      ─▶ first quote, best score first, that the budget, the payer's balance and
//!         the mandate allow ── none: refuse (the best quote's reason), nothing signed
//!      ─▶ submit (under the mandate) ─▶ follow the job (watch.rs): disputes on it are
//!         recorded; with `verify_locally`, each stage is recomputed here and a
//!         differing one challenged (the agent's key locks the bond, plays the game)
//!           Completed, every check agrees ─▶ fetch the output (hash-checked) ─▶ report
//!           Completed, a stage found wrong
//!             but not disputed in time    ─▶ not accepted: exclude its providers, next attempt
//!           Failed / Cancelled            ─▶ the escrow came back (the ledger refunds the payer,
//!                                            plus its share of a loser's slash); exclude the
//!                                            providers that failed, next attempt
//!           goal time runs out            ─▶ withdraw the job if nobody committed, report
//! ```
//!
//! A generation goal (`[generate]`) is prepared once, quoted by naming providers
//! (plan.rs), and between the submission and the follow its tokens are streamed
//! from the last stage (`Step::Token` for each) and, with `verify_locally`,
//! compared with a local run of the same request (generation.rs). It is accepted
//! once the job completed, the streamed tokens hash to the last stage's revealed
//! output and the local run (if asked for) agrees; otherwise the agent buys again
//! without the providers it blames.
//!
//! A stage that an audit, a replica or this agent disputes is followed to its
//! verdict: a result that fails verification is never accepted — the ledger
//! fails the job and refunds the payer — and the agent buys again from other
//! providers, within what is left of the budget (a challenge's fees, and its
//! bond if it were lost, count against the budget too).

use std::time::{Duration, Instant};

use agentic_protocol::state::{JobStatus, Mandate};
use agentic_protocol::{Address, Amount, Hash, JobId, MandateId};
use serde::Serialize;

use super::error::AgentError;
use super::generation::{self, Generation, LocalCheck, TranscriptCheck};
use super::goal::Goal;
use super::plan::{self, Quote};
use super::policy::{self, Means, Purchase, Refusal};
use super::watch::{DisputeRecord, StageCheck, Step, Watch};
use crate::requester::{cost, CostBreakdown, Requester, RequesterError};

/// One submission and how it ended.
#[derive(Clone, Debug, Serialize)]
pub struct Attempt {
    /// 1-based.
    pub attempt: u32,
    /// The plan bought and why (its score among the quotes).
    pub plan: &'static str,
    /// The job.
    pub job: JobId,
    /// Providers named (empty: the ledger matched).
    pub providers: Vec<Address>,
    /// Escrow locked at submission.
    pub escrow: Amount,
    /// The submission fee.
    pub fee: Amount,
    /// How the job ended (`Active` if the goal's time ran out first).
    pub status: JobStatus,
    /// Stages that went to a dispute.
    pub disputed_stages: Vec<u32>,
    /// Stages recomputed here (`verify_locally`), and what was found.
    pub checks: Vec<StageCheck>,
    /// Disputes on the job: who opened them, the verdict, what they moved.
    pub disputes: Vec<DisputeRecord>,
    /// The bill: paid per stage, refund.
    pub cost: CostBreakdown,
    /// A generation job: the tokens streamed and how they were checked.
    pub generation: Option<Generation>,
    /// What the attempt cost the goal: paid to providers, fees, escrow still
    /// locked, and this agent's dispute fees and any bond it lost.
    pub spent: Amount,
}

/// How the goal ended.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// The output, verified against the chain's agreed hash.
    Completed {
        /// The job that delivered it.
        job: JobId,
        /// Its hash.
        output_hash: Hash,
        /// Its shape: rows × width.
        shape: Vec<usize>,
    },
    /// The generated text, its tokens checked against the chain (and against a
    /// local run with `verify_locally`).
    Generated {
        /// The job that generated it.
        job: JobId,
        /// The text.
        text: String,
        /// How many tokens.
        tokens: usize,
        /// The token ids.
        token_ids: Vec<u32>,
        /// The transcript's hash (the last stage's revealed output).
        transcript: Hash,
        /// The exact bill: what the ledger paid from the escrow (providers and
        /// auditors) for the tokens generated; the rest came back to the payer.
        paid: Amount,
    },
    /// The agent refused to buy (nothing was signed for this attempt).
    Refused {
        /// The rule and the numbers.
        reason: String,
    },
    /// Every attempt failed or the goal's time ran out.
    GaveUp {
        /// Why.
        reason: String,
    },
}

/// What the agent bought, why, what it cost and what it got.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The goal as read.
    pub goal: Goal,
    /// The signer.
    pub agent: Address,
    /// The outcome.
    pub outcome: Outcome,
    /// Every submission.
    pub attempts: Vec<Attempt>,
    /// The quotes of the last attempt, scored (why the plan was chosen).
    pub quotes: Vec<Quote>,
    /// Paid to providers plus fees, all attempts.
    pub spent: Amount,
    /// The goal's budget left.
    pub budget_left: Amount,
    /// Wall time (s).
    pub elapsed_s: f64,
}

/// The procurement agent: a [`Requester`] with a goal.
pub struct ProcurementAgent {
    requester: Requester,
}

impl ProcurementAgent {
    /// An agent signing with `requester`'s key.
    pub fn new(requester: Requester) -> ProcurementAgent {
        ProcurementAgent { requester }
    }

    /// The requester it acts through.
    pub fn requester(&self) -> &Requester {
        &self.requester
    }

    async fn mandate(&self, goal: &Goal) -> Result<Option<Mandate>, AgentError> {
        let Some(id) = goal.mandate else {
            return Ok(None);
        };
        match self.requester.client().mandate(MandateId(id)).await {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.is_not_found() => Err(AgentError::NoMandate(id)),
            Err(e) => Err(RequesterError::from(e).into()),
        }
    }

    async fn balance_of(&self, a: &Address) -> Result<Amount, AgentError> {
        let v = self
            .requester
            .client()
            .account(a)
            .await
            .map_err(RequesterError::from)?;
        Ok(v.account.balance)
    }

    /// Works the goal to its end; `on` sees every step.
    pub async fn run(
        &self,
        goal: &Goal,
        mut on: impl FnMut(Step<'_>),
    ) -> Result<Report, AgentError> {
        let start = Instant::now();
        let until = start + Duration::from_secs(goal.deadline_secs);
        let me = self.requester.address();
        let mut attempts: Vec<Attempt> = Vec::new();
        let mut excluded: Vec<Address> = Vec::new();
        let mut spent = Amount::ZERO;
        let mut last_quotes = Vec::new();
        let mut outcome = None;
        let mut prepared = match goal.generate {
            Some(_) => Some(generation::Prepared::new(goal).await?),
            None => None,
        };
        for attempt in 1..=goal.attempts {
            if Instant::now() >= until {
                break;
            }
            let offers = self.requester.offers().await?;
            let (mut quotes, skipped) = match &prepared {
                Some(p) => plan::generation_quotes(goal, &p.base, &offers, &excluded),
                None => plan::quotes(goal, &offers, &excluded),
            };
            if quotes.is_empty() {
                let why = skipped
                    .iter()
                    .map(|(p, e)| format!("{p}: {e}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                outcome = Some(Outcome::GaveUp {
                    reason: format!("no quote could be formed ({why})"),
                });
                break;
            }
            plan::score(&mut quotes, goal);
            quotes.sort_by(|a, b| a.score.total_cmp(&b.score));
            on(Step::Quoted {
                attempt,
                quotes: &quotes,
            });

            // The means, read fresh each attempt.
            let mandate = self.mandate(goal).await?;
            let height = self
                .requester
                .client()
                .status()
                .await
                .map_err(RequesterError::from)?
                .height
                .0;
            let signer_balance = self.balance_of(&me).await?;
            let payer_balance = match &mandate {
                Some(m) => self.balance_of(&m.principal).await?,
                None => signer_balance,
            };
            let params = self
                .requester
                .client()
                .params()
                .await
                .map_err(RequesterError::from)?;
            let means = Means {
                me,
                height,
                budget_left: goal.budget.saturating_sub(spent),
                payer_balance,
                signer_balance,
                mandate: mandate.as_ref(),
            };
            let mut chosen = None;
            let mut first_refusal: Option<Refusal> = None;
            for (i, q) in quotes.iter().enumerate() {
                let p = Purchase {
                    escrow: q.escrow,
                    max_price: q.max_price,
                    verification: q.job.spec.requirements.verification,
                    fee: q.job.fee(&params),
                };
                match policy::check(&p, &means) {
                    Ok(()) => {
                        chosen = Some(i);
                        break;
                    }
                    Err(r) => {
                        first_refusal.get_or_insert(r);
                    }
                }
            }
            let Some(i) = chosen else {
                let reason = first_refusal.map(|r| r.to_string()).unwrap_or_default();
                tracing::info!(%reason, "purchase refused by the agent");
                last_quotes = quotes;
                outcome = Some(Outcome::Refused { reason });
                break;
            };
            let q = quotes[i].clone();
            last_quotes = quotes;
            let sub = match self.requester.submit_detailed(&q.job).await {
                Ok(s) => s,
                Err(RequesterError::Rejected { reason, .. }) => {
                    outcome = Some(Outcome::Refused {
                        reason: format!("the ledger refused the purchase: {reason}"),
                    });
                    break;
                }
                Err(e) => return Err(e.into()),
            };
            on(Step::Submitted {
                attempt,
                job: sub.job,
                plan: q.plan,
                escrow: sub.escrow,
            });
            // A generation: its tokens as they stream, then this machine's own run.
            let mut generated = None;
            if let Some(p) = prepared.as_mut() {
                let left = until.saturating_duration_since(Instant::now());
                let mut g = p.stream(&self.requester, sub.job, left, &mut on).await;
                if g.stream_error.is_none() && goal.verify_locally {
                    g.local = Some(p.check_locally(&g.tokens).await);
                }
                generated = Some(g);
            }
            // The budget left for a challenge: what is not spent nor locked by this job.
            let room = goal
                .budget
                .saturating_sub(spent)
                .saturating_sub(sub.escrow)
                .saturating_sub(sub.fee);
            // A generation that streamed to its end is checked stage by stage too:
            // each stage replayed from the streamed transcript, a lying one challenged.
            let replay = match (&prepared, &generated) {
                (Some(p), Some(g)) if goal.verify_locally && g.stream_error.is_none() => {
                    p.replay(&g.tokens)
                }
                _ => None,
            };
            let followed = Watch {
                requester: &self.requester,
                goal,
                job: sub.job,
                until,
                room,
                replay,
            }
            .run(&mut on)
            .await?;
            let job = followed.job;
            let bill = cost(
                &job,
                sub.job,
                &self.requester.events_of(sub.job, &job).await?,
            );
            if let Some(g) = generated.as_mut() {
                if job.status == JobStatus::Completed && g.stream_error.is_none() {
                    g.transcript =
                        generation::check_transcript(&self.requester, sub.job, &g.tokens).await?;
                }
            }
            let paid = bill.paid;
            let dispute_costs: u128 = followed.disputes.iter().map(|d| d.agent_cost().0).sum();
            let this = Amount(
                bill.paid
                    .0
                    .saturating_add(sub.fee.0)
                    .saturating_add(bill.still_locked.0)
                    .saturating_add(bill.charged.0)
                    .saturating_add(dispute_costs),
            );
            spent = Amount(spent.0.saturating_add(this.0));
            let mut disputed: Vec<u32> = followed.disputes.iter().map(|d| d.stage).collect();
            disputed.sort_unstable();
            disputed.dedup();
            // A stage this machine found wrong whose dispute did not fail the job.
            let wrong: Vec<u32> = followed
                .checks
                .iter()
                .filter(|c| c.check.found_wrong())
                .map(|c| c.stage)
                .collect();
            attempts.push(Attempt {
                attempt,
                plan: q.plan,
                job: sub.job,
                providers: q.providers.clone(),
                escrow: sub.escrow,
                fee: sub.fee,
                status: job.status,
                disputed_stages: disputed,
                checks: followed.checks,
                disputes: followed.disputes,
                cost: bill,
                generation: generated.clone(),
                spent: this,
            });
            if followed.timed_out && job.status == JobStatus::Active {
                outcome = Some(Outcome::GaveUp {
                    reason: format!(
                        "the goal's {} s ran out with job {} still running",
                        goal.deadline_secs, sub.job
                    ),
                });
                break;
            }
            if job.status == JobStatus::Completed && !wrong.is_empty() {
                // Paid, but not what this machine computes: never accepted.
                for s in &wrong {
                    if let Some(st) = job.stages.get(*s as usize) {
                        excluded.extend(
                            st.slots
                                .iter()
                                .filter_map(|sl| sl.assignment.as_ref().map(|a| a.provider)),
                        );
                    }
                }
                excluded.sort();
                excluded.dedup();
                tracing::warn!(job = %sub.job, stages = ?wrong, "completed with a result this machine disputes; buying again");
                if attempt == goal.attempts {
                    outcome = Some(Outcome::GaveUp {
                        reason: format!(
                            "job {} completed, but stage(s) {wrong:?} differ from this machine's recomputation and could not be disputed; not accepted",
                            sub.job
                        ),
                    });
                }
                continue;
            }
            if let (JobStatus::Completed, Some(g)) = (job.status, generated) {
                if let (true, TranscriptCheck::Matches { transcript }) =
                    (g.accepted(), &g.transcript)
                {
                    outcome = Some(Outcome::Generated {
                        job: sub.job,
                        tokens: g.tokens.len(),
                        transcript: *transcript,
                        text: g.text,
                        token_ids: g.tokens,
                        paid,
                    });
                    break;
                }
                // Paid, but not tokens this agent can trust: never accepted. A local
                // run that differs blames the whole session; a stream that is not the
                // chain's transcript, the last stage that served it.
                let blamed: Vec<&agentic_protocol::state::Stage> =
                    if matches!(g.local, Some(LocalCheck::Differs { .. })) {
                        job.stages.iter().collect()
                    } else {
                        job.stages.last().into_iter().collect()
                    };
                for st in blamed {
                    excluded.extend(
                        st.slots
                            .iter()
                            .filter_map(|sl| sl.assignment.as_ref().map(|a| a.provider)),
                    );
                }
                excluded.sort();
                excluded.dedup();
                let why = not_accepted(&g);
                tracing::warn!(job = %sub.job, %why, "generation not accepted; buying again");
                if attempt == goal.attempts {
                    outcome = Some(Outcome::GaveUp {
                        reason: format!("job {} completed, but {why}; not accepted", sub.job),
                    });
                }
                continue;
            }
            match job.status {
                JobStatus::Completed => {
                    let r = self.requester.result(sub.job).await?;
                    outcome = Some(Outcome::Completed {
                        job: sub.job,
                        output_hash: r.output_hash,
                        shape: vec![r.output.rows(), r.output.width()],
                    });
                    break;
                }
                JobStatus::Active => {
                    outcome = Some(Outcome::GaveUp {
                        reason: format!("job {} is still running", sub.job),
                    });
                    break;
                }
                _ => {
                    // The providers that missed a deadline or lost a dispute are on the
                    // job's excluded list; a job nobody took excludes its named ones.
                    excluded.extend(job.excluded.iter().copied());
                    if job.status == JobStatus::Cancelled {
                        excluded.extend(q.providers.iter().copied());
                    }
                    excluded.sort();
                    excluded.dedup();
                    tracing::info!(job = %sub.job, status = ?job.status, "attempt failed; buying again");
                }
            }
        }
        let outcome = outcome.unwrap_or_else(|| Outcome::GaveUp {
            reason: format!(
                "{} attempt(s) failed within {} s",
                attempts.len(),
                goal.deadline_secs
            ),
        });
        Ok(Report {
            goal: goal.clone(),
            agent: me,
            outcome,
            attempts,
            quotes: last_quotes,
            spent,
            budget_left: goal.budget.saturating_sub(spent),
            elapsed_s: start.elapsed().as_secs_f64(),
        })
    }
}

/// Why a completed generation was not accepted, in words.
fn not_accepted(g: &Generation) -> String {
    if let Some(e) = &g.stream_error {
        return format!("its token stream failed ({e})");
    }
    if let Some(LocalCheck::Differs { at, .. }) = &g.local {
        return format!(
            "its tokens differ from this machine's run of the same request at token {at}"
        );
    }
    match &g.transcript {
        TranscriptCheck::Differs { reason } => reason.clone(),
        TranscriptCheck::NotRevealed => "its last stage's output is not revealed".into(),
        TranscriptCheck::Unchecked => "its transcript was not checked".into(),
        TranscriptCheck::Matches { .. } => "it was not accepted".into(),
    }
}

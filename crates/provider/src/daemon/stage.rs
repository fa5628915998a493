//! The stage provider: the replica slots this provider holds.
//!
//! ```text
//!  plan_stage (pure):
//!   Running, not committed ─▶ plan_work: journaled already? ─▶ CommitResult again
//!                            running? wait. data missing this tick? ─▶ plan_missing:
//!                            ClaimUnavailable once retries run out
//!                            computed: input == the chain's? ─▶ Journal ─▶ CommitResult;
//!                            else Discard and Compute from the agreed input
//!                            input known (pushed, or the agreed one) ─▶ Compute
//!   Running, reveal open   ─▶ Publish (output on the node's blob store) ─▶ RevealResult
//!   computed, any phase    ─▶ Push: the output to the next stage's uncommitted providers
//!  executor (impl Daemon): start_compute, journal_computed, publish, push
//! ```
//!
//! Blobs come from the job's other providers first (the previous stage's before the
//! rest), then the node ([`Daemon::sources`]). A `copy-replica` daemon plans its stages
//! with [`crate::misbehave::copy_replica::plan_stage`] instead.

use std::time::Duration;

use agentic_client::Client;
use agentic_protocol::state::{Job, StagePhase};
use agentic_protocol::tx::StageResult;
use agentic_protocol::{Address, Hash, JobId, TxBody};

use super::generation;
use super::plan::{send, Action, Actor, Landed, Me, Missing, Stuck, TxKey, View};
use super::tasks::{salt_for, seed_for, Blob, ComputeTask};
use super::{Daemon, ProviderError};
use crate::journal::{Role, StageRecord};
use crate::misbehave::Misbehaviour;

/// Failed fetches in a row of a job's model or input before the daemon claims the data
/// unavailable (each turn of the loop retries).
pub const CLAIM_AFTER_FAILURES: u32 = 5;
/// Least time between the first failed fetch and the claim (the requester may still be
/// uploading).
pub const CLAIM_PATIENCE: Duration = Duration::from_secs(2);

/// Plans one stage of one job for an actor that computes (the honest provider and
/// every cheat but `copy-replica`), if this provider holds one of its slots.
pub(crate) fn plan_stage(
    view: &View<'_>,
    me: &Me,
    actor: Actor,
    id: JobId,
    job: &Job,
    s: u32,
    out: &mut Vec<Action>,
) {
    let st = &job.stages[s as usize];
    let Some(a) = st
        .slots
        .iter()
        .filter_map(|x| x.assignment.as_ref())
        .find(|a| a.provider == me.address)
    else {
        return;
    };
    let key = (id, s);
    let generation = generation::is_generation(job);
    if let StagePhase::Running { reveal_deadline } = st.phase {
        if a.commitment.is_none() {
            if view.height > a.deadline.0 {
                return;
            }
            if plan_started(view, me, id, job, s, out) {
                return;
            }
            if generation {
                return generation::plan_work(view, me, actor, id, job, s, out);
            }
            return plan_work(view, me, actor, id, job, s, out);
        }
        if reveal_deadline.is_some() && a.result.is_none() {
            let Some(rec) = view.journal.get(id, s) else {
                out.push(Action::Stuck(Stuck::NotJournaled { job: id, stage: s }));
                return;
            };
            if !view.local.pending.contains(&TxKey::Reveal(id, s)) {
                // The data first: once the result is on chain, anyone may need the
                // output (the next stage, the requester, a referee).
                // A generation stage's output is a hash over its steps, except the
                // last stage's: the transcript, which it publishes.
                let publishes = !generation || s as usize + 1 == job.stages.len();
                if !rec.published && publishes {
                    out.push(Action::Publish { job: id, stage: s });
                }
                let salt = salt_for(&me.salt_secret, id, s);
                send(
                    view,
                    out,
                    TxKey::Reveal(id, s),
                    TxBody::RevealResult {
                        job: id,
                        stage: s,
                        result: rec.result,
                        salt,
                    },
                    Landed::Revealed(id, s),
                );
            }
        }
    }
    // Keep pushing the output to the next stage while it has not committed (a
    // re-routed replacement needs it too). A session's stages exchanged theirs.
    if generation {
        return;
    }
    if let Some(output) = output_of(view, key) {
        plan_push(view, me, id, job, s, output, out);
    }
}

/// A stage assigned to us and not committed: compute, check, commit.
/// What every held, uncommitted stage checks first, single pass or generation
/// session alike; `true` when it decided this tick:
/// - committed before a crash but the transaction never landed: commit again (a record
///   of an audit of this stage that ended unreported is not a replica's result: compute
///   afresh, the new record replaces it);
/// - being computed: wait;
/// - its data failed to arrive this tick: retry or claim it unavailable.
fn plan_started(
    view: &View<'_>,
    me: &Me,
    id: JobId,
    job: &Job,
    s: u32,
    out: &mut Vec<Action>,
) -> bool {
    let key = (id, s);
    if let Some(rec) = view.journal.get(id, s).filter(|r| r.role == Role::Stage) {
        plan_commit(view, me, (id, job), s, &rec.result, out);
        return true;
    }
    if view.local.running.contains(&key) {
        return true;
    }
    if let Some(m) = view.local.missing.get(&key).filter(|m| m.fresh) {
        plan_missing(view, id, job, s, m, out);
        return true;
    }
    false
}

fn plan_work(
    view: &View<'_>,
    me: &Me,
    actor: Actor,
    id: JobId,
    job: &Job,
    s: u32,
    out: &mut Vec<Action>,
) {
    let key = (id, s);
    let local = view.local;
    let mode = actor.mode();
    // A colluding downstream commits on the activation pushed to it, agreed or not
    // (as soon as the ledger takes a commitment: once the previous stage has an
    // agreed result).
    let collude = mode.is_some_and(Misbehaviour::commits_on_pushed_input);
    let expected = expected_input(job, s);
    let mut pushed = local.inbox.get(&key).copied();
    if let Some(c) = local.computed.get(&key) {
        plan_push(view, me, id, job, s, c.pushed, out);
        if expected == Some(c.result.input) || (collude && expected.is_some()) {
            out.push(Action::Journal {
                job: id,
                stage: s,
                role: Role::Stage,
                misbehaviour: mode,
            });
            return plan_commit(view, me, (id, job), s, &c.result, out);
        }
        let Some(h) = expected else {
            return; // wait for the previous stage's reveal
        };
        tracing::warn!(
            job = id.0,
            stage = s,
            pushed = %c.result.input.to_hex(),
            agreed = %h.to_hex(),
            "pushed input differs from the chain's; recomputing"
        );
        out.push(Action::Discard { job: id, stage: s });
        pushed = None;
    }
    // Start computing if the input is known.
    let input = if collude {
        pushed.or(expected)
    } else {
        expected.or(pushed)
    };
    if let Some(input) = input {
        out.push(Action::Compute {
            job: id,
            stage: s,
            input,
            mode,
        });
    }
}

/// `CommitResult` for our result of stage `s` — `CommitSession` for a generation stage,
/// whose input claim goes in the clear for its auditor to check the rows it fetches.
pub(super) fn plan_commit(
    view: &View<'_>,
    me: &Me,
    (id, job): (JobId, &Job),
    s: u32,
    result: &StageResult,
    out: &mut Vec<Action>,
) {
    let salt = salt_for(&me.salt_secret, id, s);
    let commitment = result.commitment(id, s, &salt, &me.address);
    let body = TxBody::commit(
        id,
        s,
        commitment,
        job.is_generation().then_some(result.input),
    );
    send(
        view,
        out,
        TxKey::Commit(id, s),
        body,
        Landed::Committed(id, s),
    );
}

/// A computation of a stage we hold could not fetch its data (collected this tick). The
/// job's own data — its model, or its input for stage 0 — may still be on its way, so
/// the fetch is retried every turn; once it has failed [`CLAIM_AFTER_FAILURES`] times in
/// a row over at least [`CLAIM_PATIENCE`], the daemon claims the data unavailable
/// (`ClaimUnavailable`, once per job) instead of silently missing its deadline. The
/// validators then try to fetch both blobs: if they can, the claim costs the miss
/// penalty and the job goes on (the daemon keeps trying); if nobody can, the job is
/// cancelled and the payer compensates every assigned provider. A later stage's
/// input is the previous stage's output, not the job's data: it is never claimed.
pub(super) fn plan_missing(
    view: &View<'_>,
    id: JobId,
    job: &Job,
    s: u32,
    m: &Missing,
    out: &mut Vec<Action>,
) {
    let job_data = m.what == Blob::Model || s == 0;
    let due = m.failures >= CLAIM_AFTER_FAILURES && m.waited >= CLAIM_PATIENCE;
    let claimed = job.claim.is_some()
        || view.local.claimed.contains(&id)
        || view.local.pending.contains(&TxKey::Claim(id));
    if !job_data || !due || claimed {
        out.push(Action::Stuck(Stuck::Unfetchable {
            job: id,
            stage: s,
            what: m.what.name(),
            tries: m.failures,
        }));
        return;
    }
    send(
        view,
        out,
        TxKey::Claim(id),
        TxBody::ClaimUnavailable { job: id },
        Landed::Claimed,
    );
}

/// The input stage `s` must start from, once the chain knows it (every stage of a
/// generation job starts from the job's request).
pub(crate) fn expected_input(job: &Job, s: u32) -> Option<Hash> {
    if s == 0 || generation::is_generation(job) {
        Some(job.spec.input)
    } else {
        job.stages[s as usize - 1].result.map(|r| r.output)
    }
}

/// The activation stage `key` pushes to the next stage, once computed.
fn output_of(view: &View<'_>, key: (JobId, u32)) -> Option<Hash> {
    view.journal
        .get(key.0, key.1)
        .filter(|r| r.role == Role::Stage)
        .map(StageRecord::pushed_output)
        .or_else(|| view.local.computed.get(&key).map(|c| c.pushed))
}

/// Pushes our output of stage `s` to every provider of stage `s + 1` that has not
/// committed yet (once per provider and output).
fn plan_push(
    view: &View<'_>,
    me: &Me,
    id: JobId,
    job: &Job,
    s: u32,
    output: Hash,
    out: &mut Vec<Action>,
) {
    let Some(next) = job.stages.get(s as usize + 1) else {
        return;
    };
    if !matches!(next.phase, StagePhase::Running { .. }) {
        return;
    }
    let to: Vec<Address> = next
        .slots
        .iter()
        .filter_map(|x| x.assignment.as_ref())
        .filter(|a| a.commitment.is_none() && a.provider != me.address)
        .map(|a| a.provider)
        .filter(|p| !view.local.pushed.contains(&(id, s + 1, *p, output)))
        .collect();
    if !to.is_empty() {
        out.push(Action::Push {
            job: id,
            stage: s,
            output,
            to,
        });
    }
}

impl Daemon {
    /// Starts computing stage `s` of `job` from `input` in the background.
    pub(super) async fn start_compute(
        &mut self,
        id: JobId,
        job: &Job,
        s: u32,
        input: Hash,
        mode: Option<Misbehaviour>,
    ) {
        if generation::is_generation(job) {
            let held = job.stages[s as usize].slots.iter().any(|x| {
                x.assignment
                    .as_ref()
                    .is_some_and(|a| a.provider == self.me.address)
            });
            if held && generation::session_over(job, s) {
                if let Some(holders) = self.ended_transcript(id, job).await {
                    return self.start_rebuild(id, job, s, holders).await;
                }
            }
            if held {
                return self.start_session(id, job, s).await;
            }
            return self.start_generation_audit(id, job, s).await;
        }
        let spec = job.spec.stages[s as usize];
        let layers = spec.first_layer as usize..(spec.first_layer + spec.layers) as usize;
        let sources = self.sources(job, s).await;
        let task = ComputeTask {
            fetcher: self.fetcher.clone(),
            models: self.models.clone(),
            model: job.spec.model,
            layers,
            input,
            declared_ops: spec.ops,
            sources,
            slowdown: self.config.slowdown,
            mode,
            seed: seed_for(&self.me.salt_secret, id, s),
        };
        tracing::info!(job = id.0, stage = s, input = %input.to_hex(), "computing");
        self.running.insert((id, s), tokio::spawn(task.run()));
    }

    /// Journals the finished computation of `(id, s)` as our result in `role`.
    pub(super) fn journal_computed(
        &mut self,
        id: JobId,
        s: u32,
        role: Role,
        misbehaviour: Option<Misbehaviour>,
    ) -> Result<(), ProviderError> {
        let Some(c) = self.local.computed.remove(&(id, s)) else {
            return Ok(());
        };
        let mut rec = StageRecord::new(id, s, role, c.result, c.leaves, c.ops);
        rec.misbehaviour = misbehaviour;
        if role == Role::Stage {
            rec.pushed = (c.pushed != c.result.output).then_some(c.pushed);
        }
        self.journal.put(rec)?;
        Ok(())
    }

    /// Uploads the journaled output of stage `s` of job `id` to the node's blob store
    /// (once).
    pub(super) async fn publish(&mut self, id: JobId, s: u32) -> Result<(), ProviderError> {
        let Some(rec) = self.journal.get(id, s) else {
            return Err(ProviderError::NotJournaled { job: id, stage: s });
        };
        if rec.published {
            return Ok(());
        }
        let bytes = self
            .fetcher
            .store()
            .get(&rec.result.output)?
            .ok_or(ProviderError::OutputMissing { job: id, stage: s })?;
        self.client.put_blob(bytes).await?;
        self.journal.update(id, s, |r| r.published = true)?;
        Ok(())
    }

    /// Pushes `output` of stage `s` to the providers `to` of stage `s + 1` (a failed
    /// push is retried next turn).
    pub(super) async fn push(&mut self, id: JobId, s: u32, output: Hash, to: &[Address]) {
        let Ok(Some(bytes)) = self.fetcher.store().get(&output) else {
            return;
        };
        for p in to {
            let Some(e) = self.endpoint(p).await else {
                continue;
            };
            match Client::new(e)
                .push_activation(id, s + 1, bytes.clone())
                .await
            {
                Ok(_) => {
                    self.local.pushed.insert((id, s + 1, *p, output));
                    tracing::debug!(job = id.0, stage = s + 1, "activation pushed");
                }
                Err(err) => tracing::debug!(error = %err, "activation push failed"),
            }
        }
    }

    /// Where blobs for a job come from: the other providers of the job (peers first),
    /// then the node.
    pub(super) async fn sources(&mut self, job: &Job, s: u32) -> Vec<Client> {
        let mut order: Vec<Address> = Vec::new();
        // The previous stage first (it holds our input), then the rest.
        let mut stages: Vec<usize> = (0..job.stages.len()).collect();
        if s > 0 {
            stages.sort_by_key(|&i| i != s as usize - 1);
        }
        for i in stages {
            for a in job.stages[i]
                .slots
                .iter()
                .filter_map(|x| x.assignment.as_ref())
            {
                if a.provider != self.me.address && !order.contains(&a.provider) {
                    order.push(a.provider);
                }
            }
        }
        let mut out = Vec::new();
        for a in order {
            if let Some(e) = self.endpoint(&a).await {
                out.push(Client::new(e));
            }
        }
        out.push(self.client.clone());
        out
    }

    pub(super) async fn endpoint(&mut self, a: &Address) -> Option<String> {
        if let Some(e) = self.endpoints.get(a) {
            return Some(e.clone());
        }
        let e = self
            .client
            .provider(a)
            .await
            .ok()?
            .provider
            .offer
            .endpoint
            .0;
        if e.is_empty() {
            return None;
        }
        self.endpoints.insert(*a, e.clone());
        Some(e)
    }
}

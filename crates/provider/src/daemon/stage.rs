//! The stage provider: the replica slots this provider holds.
//!
//! ```text
//!  Running, not committed ─▶ work_on: input known? ─▶ start_compute (pushed input, or the
//!                            agreed one) ─▶ poll_task ─▶ input == the chain's? ─▶ journal
//!                            ─▶ commit (CommitResult); else recompute from the agreed input
//!                            model or job input not fetchable ─▶ data_missing ─▶ ClaimUnavailable
//!  Running, reveal open   ─▶ publish (output on the node's blob store) ─▶ RevealResult
//!  computed, any phase    ─▶ push_next: the output to the next stage's uncommitted providers
//! ```
//!
//! Blobs come from the job's other providers first (the previous stage's before the
//! rest), then the node ([`Daemon::sources`]). A `copy-replica` daemon takes
//! [`Daemon::copy_replica`] instead of computing.

use std::time::{Duration, Instant};

use agentic_client::Client;
use agentic_protocol::state::{Job, StagePhase};
use agentic_protocol::{Address, Hash, JobId, TxBody};

use super::register::send_tx;
use super::tasks::{salt_for, seed_for, Blob, ComputeTask, Poll, TaskError};
use super::{Daemon, ProviderError};
use crate::journal::{Role, StageRecord};
use crate::misbehave::{copy_replica, Misbehaviour};

/// Failed fetches in a row of a job's model or input before the daemon claims the data
/// unavailable (each turn of the loop retries).
pub const CLAIM_AFTER_FAILURES: u32 = 5;
/// Least time between the first failed fetch and the claim (the requester may still be
/// uploading).
pub const CLAIM_PATIENCE: Duration = Duration::from_secs(2);

impl Daemon {
    /// Advances one stage of one job, if this provider holds it.
    pub(super) async fn step(
        &mut self,
        id: JobId,
        job: &Job,
        s: u32,
        height: u64,
    ) -> Result<(), ProviderError> {
        let st = &job.stages[s as usize];
        let Some(a) = st
            .slots
            .iter()
            .filter_map(|x| x.assignment.as_ref())
            .find(|a| a.provider == self.me)
        else {
            return Ok(());
        };
        if self.config.misbehave.is_some_and(|m| !m.computes()) {
            return self.copy_replica(id, s, job, height).await;
        }
        let key = (id, s);
        if let StagePhase::Running { reveal_deadline } = st.phase {
            if a.commitment.is_none() {
                if height > a.deadline.0 {
                    return Ok(());
                }
                return self.work_on(id, job, s).await;
            }
            if reveal_deadline.is_some() && a.result.is_none() {
                let Some(rec) = self.journal.get(id, s).cloned() else {
                    return Err(ProviderError::NotJournaled { job: id, stage: s });
                };
                // The data first: once the result is on chain, anyone may need the
                // output (the next stage, the requester, a referee).
                self.publish(&rec).await?;
                let salt = salt_for(&self.salt_secret, id, s);
                send_tx(
                    &self.client,
                    &self.config,
                    TxBody::RevealResult {
                        job: id,
                        stage: s,
                        result: rec.result,
                        salt,
                    },
                )
                .await?;
                // (The chain holds our commitment even if we died before noting it.)
                self.journal.update(id, s, |r| {
                    r.committed = true;
                    r.revealed = true;
                })?;
                tracing::info!(job = id.0, stage = s, "revealed");
            }
        }
        // Keep pushing the output to the next stage while it has not committed (a
        // re-routed replacement needs it too).
        if let Some(out) = self.output_of(key) {
            self.push_next(id, job, s, out).await;
        }
        Ok(())
    }

    /// A stage assigned to us and not committed: compute, check, commit.
    async fn work_on(&mut self, id: JobId, job: &Job, s: u32) -> Result<(), ProviderError> {
        let key = (id, s);
        // Committed before a crash but the transaction never landed: commit again. (A
        // record of an audit of this stage that ended unreported is not a replica's
        // result: compute afresh, the new record replaces it.)
        if let Some(rec) = self.journal.get(id, s).cloned() {
            if rec.role == Role::Stage {
                return self.commit(id, s, rec).await;
            }
        }
        match self.poll_task(key).await? {
            Poll::Running => return Ok(()),
            Poll::Done(c) => {
                self.computed.insert(key, c);
            }
            Poll::Unavailable { what, detail } => {
                // Tried again next turn; claimed unavailable once retries run out.
                return self.data_missing(id, job, s, what, detail).await;
            }
            Poll::Idle => {}
        }
        let mode = self.config.misbehave;
        // A colluding downstream commits on the activation pushed to it, agreed or not
        // (as soon as the ledger takes a commitment: once the previous stage has an
        // agreed result).
        let collude = mode.is_some_and(Misbehaviour::commits_on_pushed_input);
        let expected = Daemon::expected_input(job, s);
        if let Some(c) = self.computed.get(&key).cloned() {
            self.push_next(id, job, s, c.pushed).await;
            if expected == Some(c.result.input) || (collude && expected.is_some()) {
                let mut rec = StageRecord::new(id, s, Role::Stage, c.result, c.leaves, c.ops);
                rec.misbehaviour = mode;
                rec.pushed = (c.pushed != c.result.output).then_some(c.pushed);
                self.journal.put(rec.clone())?;
                self.computed.remove(&key);
                return self.commit(id, s, rec).await;
            }
            let Some(h) = expected else {
                return Ok(()); // wait for the previous stage's reveal
            };
            tracing::warn!(
                job = id.0,
                stage = s,
                pushed = %c.result.input.to_hex(),
                agreed = %h.to_hex(),
                "pushed input differs from the chain's; recomputing"
            );
            self.computed.remove(&key);
            self.inbox
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
        }
        // Start computing if the input is known.
        let pushed = self
            .inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .copied();
        let input = if collude {
            pushed.or(expected)
        } else {
            expected.or(pushed)
        };
        let Some(input) = input else {
            return Ok(());
        };
        self.start_compute(id, job, s, input, mode).await;
        Ok(())
    }

    /// The input stage `s` must start from, once the chain knows it.
    pub(super) fn expected_input(job: &Job, s: u32) -> Option<Hash> {
        if s == 0 {
            Some(job.spec.input)
        } else {
            job.stages[s as usize - 1].result.map(|r| r.output)
        }
    }

    /// The activation stage `key` pushes to the next stage, once computed.
    fn output_of(&self, key: (JobId, u32)) -> Option<Hash> {
        self.journal
            .get(key.0, key.1)
            .filter(|r| r.role == Role::Stage)
            .map(StageRecord::pushed_output)
            .or_else(|| self.computed.get(&key).map(|c| c.pushed))
    }

    /// Starts computing stage `s` of `job` from `input` in the background.
    pub(super) async fn start_compute(
        &mut self,
        id: JobId,
        job: &Job,
        s: u32,
        input: Hash,
        mode: Option<Misbehaviour>,
    ) {
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
            seed: seed_for(&self.salt_secret, id, s),
        };
        tracing::info!(job = id.0, stage = s, input = %input.to_hex(), "computing");
        self.running.insert((id, s), tokio::spawn(task.run()));
    }

    /// Collects the background computation of `key`, if one was started.
    pub(super) async fn poll_task(&mut self, key: (JobId, u32)) -> Result<Poll, ProviderError> {
        match self.running.get(&key) {
            None => return Ok(Poll::Idle),
            Some(h) if !h.is_finished() => return Ok(Poll::Running),
            Some(_) => {}
        }
        let Some(h) = self.running.remove(&key) else {
            return Ok(Poll::Idle);
        };
        match h.await {
            Ok(Ok(c)) => {
                self.missing.remove(&key);
                let mut st = self.status();
                st.stages_computed += 1;
                st.ops += c.ops;
                Ok(Poll::Done(c))
            }
            Ok(Err(TaskError::Unavailable { what, detail })) => {
                Ok(Poll::Unavailable { what, detail })
            }
            Ok(Err(TaskError::Failed(e))) => Err(ProviderError::Task(e)),
            Err(e) => Err(ProviderError::Join(e)),
        }
    }

    /// A computation of a stage we hold could not fetch `what`. The job's own data — its
    /// model, or its input for stage 0 — may still be on its way, so the fetch is retried
    /// every turn; once it has failed [`CLAIM_AFTER_FAILURES`] times in a row over at
    /// least [`CLAIM_PATIENCE`], the daemon claims the data unavailable
    /// (`ClaimUnavailable`, once per job) instead of silently missing its deadline. The
    /// validators then try to fetch both blobs: if they can, the claim costs the miss
    /// penalty and the job goes on (the daemon keeps trying); if nobody can, the job is
    /// cancelled and the payer compensates every assigned provider. A later stage's
    /// input is the previous stage's output, not the job's data: it is never claimed.
    async fn data_missing(
        &mut self,
        id: JobId,
        job: &Job,
        s: u32,
        what: Blob,
        detail: String,
    ) -> Result<(), ProviderError> {
        let now = Instant::now();
        let (failures, since) = {
            let e = self.missing.entry((id, s)).or_insert((0, now));
            e.0 += 1;
            *e
        };
        let job_data = what == Blob::Model || s == 0;
        let due = failures >= CLAIM_AFTER_FAILURES && now.duration_since(since) >= CLAIM_PATIENCE;
        if !job_data || !due || job.claim.is_some() || self.claimed.contains(&id) {
            return Err(ProviderError::Unfetchable {
                job: id,
                stage: s,
                what: what.name(),
                tries: failures,
                detail,
            });
        }
        self.claimed.insert(id);
        send_tx(
            &self.client,
            &self.config,
            TxBody::ClaimUnavailable { job: id },
        )
        .await?;
        self.status().claims_sent += 1;
        tracing::warn!(
            job = id.0,
            stage = s,
            %what,
            failures,
            %detail,
            "the job's data cannot be fetched: claimed unavailable"
        );
        Ok(())
    }

    async fn commit(&mut self, id: JobId, s: u32, rec: StageRecord) -> Result<(), ProviderError> {
        let salt = salt_for(&self.salt_secret, id, s);
        let commitment = rec.result.commitment(id, s, &salt, &self.me);
        send_tx(
            &self.client,
            &self.config,
            TxBody::CommitResult {
                job: id,
                stage: s,
                commitment,
            },
        )
        .await?;
        self.journal.update(id, s, |r| r.committed = true)?;
        self.status().stages_committed += 1;
        tracing::info!(job = id.0, stage = s, output = %rec.result.output.to_hex(), "committed");
        Ok(())
    }

    /// Uploads a stage's output activation to the node's blob store (once).
    async fn publish(&mut self, rec: &StageRecord) -> Result<(), ProviderError> {
        if rec.published {
            return Ok(());
        }
        let bytes =
            self.fetcher
                .store()
                .get(&rec.result.output)?
                .ok_or(ProviderError::OutputMissing {
                    job: rec.job,
                    stage: rec.stage,
                })?;
        self.client.put_blob(bytes).await?;
        self.journal
            .update(rec.job, rec.stage, |r| r.published = true)?;
        Ok(())
    }

    /// Pushes our output of stage `s` to every provider of stage `s + 1` that has not
    /// committed yet (once per provider and output).
    async fn push_next(&mut self, id: JobId, job: &Job, s: u32, output: Hash) {
        let Some(next) = job.stages.get(s as usize + 1) else {
            return;
        };
        if !matches!(next.phase, StagePhase::Running { .. }) {
            return;
        }
        let targets: Vec<Address> = next
            .slots
            .iter()
            .filter_map(|x| x.assignment.as_ref())
            .filter(|a| a.commitment.is_none() && a.provider != self.me)
            .map(|a| a.provider)
            .filter(|p| !self.pushed.contains(&(id, s + 1, *p, output)))
            .collect();
        if targets.is_empty() {
            return;
        }
        let Ok(Some(bytes)) = self.fetcher.store().get(&output) else {
            return;
        };
        for p in targets {
            let Some(e) = self.endpoint(&p).await else {
                continue;
            };
            match Client::new(e)
                .push_activation(id, s + 1, bytes.clone())
                .await
            {
                Ok(_) => {
                    self.pushed.insert((id, s + 1, p, output));
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
                if a.provider != self.me && !order.contains(&a.provider) {
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

    async fn endpoint(&mut self, a: &Address) -> Option<String> {
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

    /// The `copy-replica` cheat on a stage it holds (see [`copy_replica`]): commit a
    /// copy of another replica's commitment, then try to reveal that replica's result.
    async fn copy_replica(
        &mut self,
        id: JobId,
        s: u32,
        job: &Job,
        height: u64,
    ) -> Result<(), ProviderError> {
        let st = &job.stages[s as usize];
        let StagePhase::Running { reveal_deadline } = st.phase else {
            return Ok(());
        };
        let Some(a) = st
            .slots
            .iter()
            .filter_map(|x| x.assignment.as_ref())
            .find(|a| a.provider == self.me)
        else {
            return Ok(());
        };
        if a.commitment.is_none() {
            let Some(commitment) = copy_replica::commitment_to_copy(st, &self.me) else {
                return Ok(());
            };
            if height > a.deadline.0 {
                return Ok(());
            }
            send_tx(
                &self.client,
                &self.config,
                TxBody::CommitResult {
                    job: id,
                    stage: s,
                    commitment,
                },
            )
            .await?;
            self.status().stages_committed += 1;
            tracing::warn!(
                job = id.0,
                stage = s,
                "copy-replica: committed a copied commitment"
            );
            return Ok(());
        }
        if reveal_deadline.is_none() || a.result.is_some() || self.copy_attempted.contains(&(id, s))
        {
            return Ok(());
        }
        let Some(result) = copy_replica::result_to_copy(st, &self.me) else {
            return Ok(());
        };
        self.copy_attempted.insert((id, s));
        let salt = salt_for(&self.salt_secret, id, s);
        // The ledger refuses it (the commitment binds its author); the cheat then
        // sits out the reveal deadline.
        send_tx(
            &self.client,
            &self.config,
            TxBody::RevealResult {
                job: id,
                stage: s,
                result,
                salt,
            },
        )
        .await?;
        Ok(())
    }
}

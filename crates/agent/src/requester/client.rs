//! [`Requester`]: the I/O shell over the node API — uploads, transactions, following
//! jobs (through the node's event feed, [`super::follow`]).

use std::time::{Duration, Instant};

use agentic_client::api::{Event as FeedEvent, TxReceipt};
use agentic_client::{Client, ClientError};
use agentic_compute::activation::DecodeLimits;
use agentic_compute::train::task::TrainTask;
use agentic_compute::Activation;
use agentic_protocol::event::Event;
use agentic_protocol::state::{Job, JobStatus};
use agentic_protocol::tx::StageResult;
use agentic_protocol::{Address, Amount, Hash, Height, JobId, TxBody};
use commonware_cryptography::ed25519::PrivateKey;
use commonware_cryptography::Signer as _;

use super::cost::{cost, CostBreakdown};
use super::error::RequesterError;
use super::follow::JobFeed;
use super::prepare::prepare;
use super::request::{JobRequest, OfferView, PlacementChoice};
use super::spec::PreparedJob;
use super::training::{check_training_output, TrainingResult};

/// A finished job's output, fetched and checked.
#[derive(Clone, Debug)]
pub struct JobResult {
    /// The job.
    pub job: JobId,
    /// Its status when fetched (`Completed`, or `Active` with every stage's
    /// result agreed and only challenge windows left).
    pub status: JobStatus,
    /// Hash of the output activation (the last stage's agreed output).
    pub output_hash: Hash,
    /// The output activation; its canonical bytes hash to `output_hash`.
    pub output: Activation,
    /// Every stage's agreed result, in pipeline order.
    pub stage_results: Vec<StageResult>,
}

/// What submitting a job did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submitted {
    /// The new job.
    pub job: JobId,
    /// The escrow the ledger locked.
    pub escrow: Amount,
    /// Who pays (the signer, or the mandate's principal).
    pub payer: Address,
    /// The `SubmitJob` fee (burned).
    pub fee: Amount,
    /// Bytes uploaded (blobs the node lacked).
    pub uploaded_bytes: u64,
}

/// A requester: a key and a node to talk to.
#[derive(Clone)]
pub struct Requester {
    client: Client,
    key: PrivateKey,
    /// How long to wait for a transaction to be finalized.
    pub tx_timeout: Duration,
    /// How often [`Requester::result`] looks for the output blob while the last
    /// provider publishes it.
    pub poll_interval: Duration,
    /// How often a job followed through the node's event feed ([`Requester::wait`],
    /// the procurement agent) is re-read when no event about it arrived: the slow
    /// fallback for a feed that dropped (it is reconnected) or a change without one.
    pub resync_interval: Duration,
    /// How long [`Requester::result`] waits for the last provider to publish
    /// the output blob once the result is agreed.
    pub output_wait: Duration,
}

impl std::fmt::Debug for Requester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Requester")
            .field("node", &self.client.base())
            .field("address", &self.address())
            .finish_non_exhaustive()
    }
}

impl Requester {
    /// A requester signing with `key` through the node behind `client`.
    pub fn new(client: Client, key: PrivateKey) -> Requester {
        Requester {
            client,
            key,
            tx_timeout: Duration::from_secs(60),
            poll_interval: Duration::from_millis(500),
            resync_interval: Duration::from_secs(2),
            output_wait: Duration::from_secs(10),
        }
    }

    /// The node client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The signing key (for the verification module's challenge and moves).
    pub(crate) fn key(&self) -> &PrivateKey {
        &self.key
    }

    /// The signer's address.
    pub fn address(&self) -> Address {
        Address::from(&self.key.public_key())
    }

    /// The signer's spendable balance.
    pub async fn balance(&self) -> Result<Amount, RequesterError> {
        Ok(self.client.account(&self.address()).await?.account.balance)
    }

    /// The market's current offers (`/v1/offers`).
    pub async fn offers(&self) -> Result<Vec<OfferView>, RequesterError> {
        Ok(self.client.offers().await?.offers)
    }

    /// [`prepare`] with the current offers when the placement needs them.
    pub async fn prepare(&self, req: &JobRequest) -> Result<PreparedJob, RequesterError> {
        let offers = match req.placement {
            PlacementChoice::Ledger => Vec::new(),
            PlacementChoice::Auto | PlacementChoice::Named(_) => self.offers().await?,
        };
        prepare(req, &offers)
    }

    /// Uploads `bytes` under `hash` unless the node has it; returns the bytes sent.
    async fn upload(&self, hash: &Hash, bytes: &[u8]) -> Result<u64, RequesterError> {
        if self.client.blob_size(hash).await?.is_some() {
            return Ok(0);
        }
        let stored = self.client.put_blob(bytes.to_vec()).await?;
        if stored != *hash {
            return Err(ClientError::BlobMismatch(*hash).into());
        }
        Ok(bytes.len() as u64)
    }

    /// Submits `job` and returns its id (see [`Requester::submit_detailed`]).
    pub async fn submit(&self, job: &PreparedJob) -> Result<JobId, RequesterError> {
        self.submit_detailed(job).await.map(|s| s.job)
    }

    /// Submits `job`: checks the payer's balance (when the signer pays), uploads
    /// the model bundle and the input if the node lacks them, signs `SubmitJob`
    /// and waits for its receipt; returns the id, escrow, payer, fee and bytes
    /// uploaded. A ledger rejection is [`RequesterError::Rejected`] with the
    /// ledger's reason.
    pub async fn submit_detailed(&self, job: &PreparedJob) -> Result<Submitted, RequesterError> {
        let fee = job.fee(&self.client.params().await?);
        if job.spec.mandate.is_none() {
            let have = self.balance().await?;
            if have.0 < job.escrow.0.saturating_add(fee.0) {
                return Err(RequesterError::InsufficientBalance {
                    escrow: job.escrow,
                    fee,
                    have,
                });
            }
        }
        // A registry LLM is not uploaded: providers take it from its public source.
        let mut uploaded = if job.bundle.is_empty() && job.spec.generation.is_some() {
            0
        } else {
            self.upload(&job.model_hash, &job.bundle).await?
        };
        uploaded += self.upload(&job.input_hash, &job.input).await?;
        let body = job.submit_body();
        let kind = body.kind();
        let receipt = self.client.send(&self.key, body, self.tx_timeout).await?;
        for e in &receipt.events {
            if let Event::JobSubmitted { job, payer, escrow } = e.event {
                return Ok(Submitted {
                    job,
                    escrow,
                    payer,
                    fee,
                    uploaded_bytes: uploaded,
                });
            }
        }
        Err(receipt_without(&receipt, kind, "JobSubmitted"))
    }

    /// The job record (`/v1/jobs/{id}`).
    pub async fn job(&self, id: JobId) -> Result<Job, RequesterError> {
        Ok(self.client.job(id).await?)
    }

    /// Follows the job until it is settled — no longer active and no escrow held (a
    /// failed job's delivered stages still being verified settle after it fails:
    /// their honest providers are paid and the rest is refunded then) — calling
    /// `on_progress` with the first record and each one that differs from the last;
    /// returns the final record, or [`RequesterError::Timeout`]. The record is
    /// re-read when the node's event feed reports a block that touched the job (and
    /// every [`Requester::resync_interval`] regardless).
    pub async fn wait(
        &self,
        id: JobId,
        timeout: Duration,
        mut on_progress: impl FnMut(&Job),
    ) -> Result<Job, RequesterError> {
        let start = Instant::now();
        let mut feed = self.follow(id).await;
        let mut last: Option<Job> = None;
        loop {
            let job = self.job(id).await?;
            if last.as_ref() != Some(&job) {
                on_progress(&job);
            }
            if job.status != JobStatus::Active && job.escrow == Amount::ZERO {
                return Ok(job);
            }
            last = Some(job);
            if start.elapsed() >= timeout {
                return Err(RequesterError::Timeout {
                    job: id,
                    waited: start.elapsed(),
                });
            }
            feed.changed(start + timeout).await;
        }
    }

    /// The ledger's events about job `id` so far, in order: replayed from the node's
    /// stored blocks from the job's submission height up to the height finalized now
    /// (`/v1/events?from=`).
    pub async fn job_events(&self, id: JobId) -> Result<Vec<Event>, RequesterError> {
        let job = self.job(id).await?;
        self.events_of(id, &job).await
    }

    /// The ledger events about `id` (already read as `job`: the replay starts at
    /// `job.submitted_at`) up to the chain's tip.
    pub async fn events_of(&self, id: JobId, job: &Job) -> Result<Vec<Event>, RequesterError> {
        Ok(self.events_since(id, job.submitted_at).await?.0)
    }

    /// The ledger events about `id` in the blocks from `from` up to the height
    /// finalized now, and that height (read from `height + 1` next time to continue
    /// without a gap or a repeat). Nothing, and `from − 1`, when `from` is not
    /// finalized yet.
    pub async fn events_since(
        &self,
        id: JobId,
        from: Height,
    ) -> Result<(Vec<Event>, Height), RequesterError> {
        use futures::StreamExt as _;
        let tip = self.client.status().await?.height;
        let mut out = Vec::new();
        if tip < from {
            return Ok((out, Height(from.0.saturating_sub(1))));
        }
        let mut feed = Box::pin(self.client.events_from(from).await?);
        let read = async {
            while let Some(item) = feed.next().await {
                match item? {
                    FeedEvent::Ledger(l) if l.event.job() == Some(id) => out.push(l.event),
                    FeedEvent::Block(b) if b.height >= tip => return Ok(()),
                    FeedEvent::Lagged { missed } => {
                        return Err(RequesterError::EventsLost { job: id, missed })
                    }
                    _ => {}
                }
            }
            Err(RequesterError::EventsLost { job: id, missed: 0 })
        };
        tokio::time::timeout(Duration::from_secs(60), read)
            .await
            .map_err(|_| RequesterError::Timeout {
                job: id,
                waited: Duration::from_secs(60),
            })??;
        Ok((out, tip))
    }

    /// The job's bill as the ledger paid it ([`cost`] over [`Requester::job_events`]).
    pub async fn bill(&self, id: JobId) -> Result<CostBreakdown, RequesterError> {
        let job = self.job(id).await?;
        let events = self.events_of(id, &job).await?;
        Ok(cost(&job, id, &events))
    }

    /// Subscribes to the node's events about `id` (read the job after this).
    pub(crate) async fn follow(&self, id: JobId) -> JobFeed {
        JobFeed::open(&self.client, id, self.resync_interval).await
    }

    /// The job's output: the last stage's agreed output, fetched from the node's
    /// blob store, checked against its hash and decoded. Available once every
    /// stage has an agreed result (the job may still be in a challenge window).
    pub async fn result(&self, id: JobId) -> Result<JobResult, RequesterError> {
        let job = self.job(id).await?;
        let (stage_results, output_hash) = agreed_results(id, &job)?;
        let bytes = self.output_bytes(id, output_hash).await?;
        let output = Activation::from_canonical_bytes(&bytes, DecodeLimits::default()).map_err(
            |reason| RequesterError::BadOutput {
                job: id,
                hash: output_hash,
                reason,
            },
        )?;
        Ok(JobResult {
            job: id,
            status: job.status,
            output_hash,
            output,
            stage_results,
        })
    }

    /// The bytes of a job's output blob. The last provider publishes the output
    /// around its reveal: give it `output_wait` to appear. `get_blob` checks that the
    /// bytes hash to their name.
    async fn output_bytes(&self, id: JobId, output_hash: Hash) -> Result<Vec<u8>, RequesterError> {
        let start = Instant::now();
        loop {
            match self.client.get_blob(&output_hash).await {
                Ok(bytes) => return Ok(bytes),
                Err(e) if e.is_not_found() && start.elapsed() < self.output_wait => {
                    tokio::time::sleep(self.poll_interval).await;
                }
                Err(reason) => {
                    return Err(RequesterError::OutputUnavailable {
                        job: id,
                        hash: output_hash,
                        reason: Box::new(reason),
                    })
                }
            }
        }
    }

    /// Whether `job` is a training job: its model blob starts with the training
    /// task's magic (one ranged read of 8 bytes from the node).
    pub async fn is_training(&self, job: &Job) -> Result<bool, RequesterError> {
        let head = self.client.get_blob_range(&job.spec.model, 0, 8).await?;
        Ok(TrainTask::is_task(&head))
    }

    /// A training job's output: the task and the final state, fetched from the node
    /// and checked against their hashes; the state must have done every step of the
    /// job and its step log must reproduce each stage's agreed trace root. Available
    /// once every stage has an agreed result.
    pub async fn training_result(&self, id: JobId) -> Result<TrainingResult, RequesterError> {
        let job = self.job(id).await?;
        let (stage_results, output_hash) = agreed_results(id, &job)?;
        let task_bytes = self
            .client
            .get_blob(&job.spec.model)
            .await
            .map_err(|reason| RequesterError::OutputUnavailable {
                job: id,
                hash: job.spec.model,
                reason: Box::new(reason),
            })?;
        let state_bytes = self.output_bytes(id, output_hash).await?;
        let (task, state, steps) =
            check_training_output(id, &job, &task_bytes, output_hash, &state_bytes)?;
        Ok(TrainingResult {
            job: id,
            status: job.status,
            task,
            output_hash,
            state,
            stage_results,
            steps,
        })
    }

    /// Withdraws a job no provider has committed work for (`CancelJob`); returns
    /// the refunded escrow.
    pub async fn cancel(&self, id: JobId) -> Result<Amount, RequesterError> {
        let body = TxBody::CancelJob { job: id };
        let kind = body.kind();
        let receipt = self.client.send(&self.key, body, self.tx_timeout).await?;
        for e in &receipt.events {
            if let Event::JobCancelled { job, refund } = e.event {
                if job == id {
                    return Ok(refund);
                }
            }
        }
        Err(receipt_without(&receipt, kind, "JobCancelled"))
    }
}

/// Every stage's agreed result and the job's output (the last stage's output), or
/// [`RequesterError::NoResult`] naming the first stage without one.
fn agreed_results(id: JobId, job: &Job) -> Result<(Vec<StageResult>, Hash), RequesterError> {
    let missing = |stage| RequesterError::NoResult {
        job: id,
        status: job.status,
        stage,
    };
    if let Some(stage) = job.stages.iter().position(|s| s.result.is_none()) {
        return Err(missing(stage));
    }
    let results: Vec<StageResult> = job.stages.iter().filter_map(|s| s.result).collect();
    let output = results.last().map(|r| r.output).ok_or_else(|| missing(0))?;
    Ok((results, output))
}

/// [`RequesterError::ReceiptWithout`] for `receipt`.
fn receipt_without(receipt: &TxReceipt, kind: &'static str, event: &'static str) -> RequesterError {
    RequesterError::ReceiptWithout {
        kind,
        id: receipt.id,
        event,
    }
}

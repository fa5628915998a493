//! [`Requester`]: the I/O shell over the node API — uploads, transactions, polling.

use std::time::{Duration, Instant};

use agentic_compute::activation::DecodeLimits;
use agentic_compute::train::task::TrainTask;
use agentic_compute::Activation;
use agentic_node::client::{Client, ClientError};
use agentic_protocol::event::{Event, EventRecord};
use agentic_protocol::state::{Job, JobStatus};
use agentic_protocol::tx::StageResult;
use agentic_protocol::{Address, Amount, Hash, JobId, TxBody};
use commonware_cryptography::ed25519::PrivateKey;
use commonware_cryptography::Signer as _;
use serde_json::Value;

use super::error::RequesterError;
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
    /// How often [`Requester::wait`] polls the job.
    pub poll_interval: Duration,
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

fn unexpected(what: &str, v: &Value) -> RequesterError {
    RequesterError::Unexpected(format!("{what}: {v}"))
}

impl Requester {
    /// A requester signing with `key` through the node behind `client`.
    pub fn new(client: Client, key: PrivateKey) -> Requester {
        Requester {
            client,
            key,
            tx_timeout: Duration::from_secs(60),
            poll_interval: Duration::from_millis(500),
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
        let v = self.client.account(&self.address()).await?;
        serde_json::from_value(v["balance"].clone()).map_err(|_| unexpected("account", &v))
    }

    /// The market's current offers (`/v1/offers`).
    pub async fn offers(&self) -> Result<Vec<OfferView>, RequesterError> {
        let v = self.client.get("/v1/offers").await?;
        serde_json::from_value(v["offers"].clone())
            .map_err(|e| RequesterError::Unexpected(format!("/v1/offers: {e}")))
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
            return Err(RequesterError::Unexpected(format!(
                "uploaded blob hashed to {stored}, expected {hash}"
            )));
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
        let mut uploaded = self.upload(&job.model_hash, &job.bundle).await?;
        uploaded += self.upload(&job.input_hash, &job.input).await?;
        let receipt = self
            .client
            .send(&self.key, job.submit_body(), self.tx_timeout)
            .await?;
        for e in events(&receipt)? {
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
        Err(unexpected(
            "a SubmitJob receipt without JobSubmitted",
            &receipt,
        ))
    }

    /// The job record (`/v1/jobs/{id}`).
    pub async fn job(&self, id: JobId) -> Result<Job, RequesterError> {
        let v = self.client.job(id.0).await?;
        serde_json::from_value(v).map_err(|e| RequesterError::Unexpected(format!("job {id}: {e}")))
    }

    /// Polls the job until it is settled — no longer active and no escrow held (a
    /// failed job's delivered stages still being verified settle after it fails:
    /// their honest providers are paid and the rest is refunded then) — calling
    /// `on_progress` with the first record and each one that differs from the last;
    /// returns the final record, or [`RequesterError::Timeout`].
    pub async fn wait(
        &self,
        id: JobId,
        timeout: Duration,
        mut on_progress: impl FnMut(&Job),
    ) -> Result<Job, RequesterError> {
        let start = Instant::now();
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
            tokio::time::sleep(self.poll_interval).await;
        }
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
                Err(ClientError::Api { status: 404, .. }) if start.elapsed() < self.output_wait => {
                    tokio::time::sleep(self.poll_interval).await;
                }
                Err(reason) => {
                    return Err(RequesterError::OutputUnavailable {
                        job: id,
                        hash: output_hash,
                        reason,
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
                reason,
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
        let receipt = self
            .client
            .send(&self.key, TxBody::CancelJob { job: id }, self.tx_timeout)
            .await?;
        for e in events(&receipt)? {
            if let Event::JobCancelled { job, refund } = e.event {
                if job == id {
                    return Ok(refund);
                }
            }
        }
        Err(unexpected(
            "a CancelJob receipt without JobCancelled",
            &receipt,
        ))
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

/// The ledger events of a receipt.
fn events(receipt: &Value) -> Result<Vec<EventRecord>, RequesterError> {
    serde_json::from_value(receipt["events"].clone())
        .map_err(|e| RequesterError::Unexpected(format!("receipt events: {e}: {receipt}")))
}

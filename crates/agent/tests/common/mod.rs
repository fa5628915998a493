//! Helpers the agent's end-to-end tests share: ledger reads, a mandate grant,
//! and the named adversary [`LyingProvider`].

#![allow(dead_code)] // each test binary uses its own subset

use std::time::{Duration, Instant};

use agentic_client::keystore::KeyFile;
use agentic_client::Client;
use agentic_protocol::event::Event;
use agentic_protocol::state::{Account, Job, Mandate, StagePhase};
use agentic_protocol::test_utils::offer;
use agentic_protocol::tx::{MandateTerms, StageResult};
use agentic_protocol::{Address, Amount, Hash, JobId, MandateId, Params, TxBody};
use agentic_provider::local::LocalMarket;
use commonware_cryptography::ed25519::PrivateKey;
use commonware_cryptography::Signer as _;

/// An account as the node reports it.
pub async fn account(c: &Client, a: &Address) -> Account {
    c.account(a).await.unwrap().account
}

/// A spendable balance.
pub async fn balance(c: &Client, a: &Address) -> Amount {
    account(c, a).await.balance
}

/// The chain's finalized height.
pub async fn height(c: &Client) -> u64 {
    c.status().await.unwrap().height.0
}

/// The governed parameters now.
pub async fn params(c: &Client) -> Params {
    c.params().await.unwrap()
}

/// A mandate's record.
pub async fn mandate(c: &Client, id: MandateId) -> Mandate {
    c.mandate(id).await.unwrap()
}

/// A job's record.
pub async fn job(c: &Client, id: JobId) -> Job {
    c.job(id).await.unwrap()
}

/// The newest job's id (0 when there is none).
pub async fn newest_job(c: &Client) -> u64 {
    let jobs = c.jobs(Default::default()).await.unwrap().jobs;
    jobs.last().map_or(0, |j| j.id)
}

/// Job `id` once it settled (no longer active, its escrow paid out or refunded), within
/// 120 s, and the steps its last stage's result claims (a generation's tokens).
pub async fn settled_generation(c: &Client, id: JobId) -> (Job, u32) {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let j = job(c, id).await;
        if j.status != agentic_protocol::state::JobStatus::Active && j.escrow == Amount::ZERO {
            let steps = j
                .stages
                .last()
                .and_then(|st| st.result)
                .map_or(0, |r| r.steps);
            return (j, steps);
        }
        assert!(Instant::now() < until, "job {} not settled: {j:#?}", id.0);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `principal` grants `terms`; returns the mandate's id.
pub async fn grant_mandate(c: &Client, principal: &PrivateKey, terms: MandateTerms) -> MandateId {
    let receipt = c
        .send(
            principal,
            TxBody::GrantMandate { terms },
            Duration::from_secs(30),
        )
        .await
        .expect("GrantMandate");
    receipt
        .events
        .iter()
        .find_map(|e| match e.event {
            Event::MandateGranted { mandate, .. } => Some(mandate),
            _ => None,
        })
        .expect("MandateGranted")
}

/// A named adversary: a registered provider without a daemon that, given a
/// stage-0 slot, commits and reveals a made-up result and never defends it
/// (it posts no bisection move, so a challenger who plays wins on time).
#[derive(Clone)]
pub struct LyingProvider {
    pub key: KeyFile,
}

impl LyingProvider {
    /// The output it claims.
    pub const CLAIM: Hash = Hash([7; 32]);
    /// Its bonded stake.
    pub const STAKE: u128 = 10_000;

    /// Registers `name` as a provider at `price` per mega-op with [`Self::STAKE`] bonded.
    pub async fn register(net: &LocalMarket, name: &str, price: u128) -> LyingProvider {
        let key = net.key(name);
        net.client()
            .send(
                &key.key,
                TxBody::RegisterProvider {
                    offer: offer(price, 4),
                    stake: Amount(Self::STAKE),
                },
                Duration::from_secs(30),
            )
            .await
            .expect("RegisterProvider");
        LyingProvider { key }
    }

    pub fn address(&self) -> Address {
        Address::from(&self.key.key.public_key())
    }

    /// Waits to be assigned stage 0 of `job`, then commits and reveals a made-up output.
    pub async fn lie(&self, c: &Client, job: JobId) {
        let me = self.address();
        let start = Instant::now();
        let j: Job = loop {
            let j = self::job(c, job).await;
            if j.stages[0].slots[0].assignment.as_ref().map(|a| a.provider) == Some(me) {
                break j;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "never assigned: {j:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let result = StageResult {
            input: j.spec.input,
            output: Self::CLAIM,
            trace_root: Hash([9; 32]),
            steps: 0,
        };
        let salt = Hash([3; 32]);
        let commitment = result.commitment(job, 0, &salt, &me);
        c.send(
            &self.key.key,
            TxBody::CommitResult {
                job,
                stage: 0,
                commitment,
            },
            Duration::from_secs(30),
        )
        .await
        .expect("the commitment is accepted on chain");
        // Reveals open once every replica committed and, when the stage is audited,
        // the auditor committed too.
        let start = Instant::now();
        while !matches!(
            self::job(c, job).await.stages[0].phase,
            StagePhase::Running {
                reveal_deadline: Some(_)
            }
        ) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "reveals never opened on job {job}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        c.send(
            &self.key.key,
            TxBody::RevealResult {
                job,
                stage: 0,
                result,
                salt,
            },
            Duration::from_secs(30),
        )
        .await
        .expect("the lie is accepted on chain");
    }

    /// Lies on every job whose stage 0 it is assigned, in the background, until
    /// the returned task is aborted.
    pub fn lie_on_every_job(&self, c: Client) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut done: Vec<u64> = Vec::new();
            loop {
                if let Ok(work) = c.provider_work(&me.address()).await {
                    for j in work.jobs {
                        let assigned = j
                            .item
                            .stages
                            .first()
                            .and_then(|st| st.slots.first())
                            .and_then(|slot| slot.assignment.as_ref())
                            .is_some_and(|a| a.provider == me.address());
                        if assigned && !done.contains(&j.id) {
                            done.push(j.id);
                            me.lie(&c, JobId(j.id)).await;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }
}

//! The provider tests' market ([`agentic_provider::local`]) and a minimal requester.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use agentic_client::keystore::KeyFile;
use agentic_client::Client;
use agentic_compute::bundle::Bundle;
use agentic_compute::{Activation, RunOutput};
use agentic_protocol::event::Event;
use agentic_protocol::state::{Job, JobStatus};
use agentic_protocol::tx::{JobSpec, Requirements, StageSpec};
use agentic_protocol::{Address, Amount, Hash, JobId, TxBody};
pub use agentic_provider::local::LocalMarket as Net;
use agentic_provider::local::{self, MarketSpec};

/// A fresh directory under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("agentic-provider-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Runs `f` against a fresh market of `validators` validators and the named funded
/// accounts, with windows long enough for daemons that restart (blocks come every
/// 200 ms, the default block interval).
pub fn with_network<F, Fut>(name: &str, validators: usize, users: &[&str], f: F)
where
    F: FnOnce(Net) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let dir = temp_dir(name);
    let spec = MarketSpec::new(validators, users)
        .param("reveal_window", 500)
        .param("challenge_window", 4)
        .param("match_timeout", 20)
        .param("audit_window", 20);
    local::run(&dir, spec, f).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `f` against a fresh market of `validators` validators and the named funded
/// accounts, with the genesis parameters `params` (name, value) over the defaults.
pub fn with_market<F, Fut>(
    name: &str,
    validators: usize,
    users: &[&str],
    params: &[(&str, u64)],
    f: F,
) where
    F: FnOnce(Net) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let dir = temp_dir(name);
    let mut spec = MarketSpec::new(validators, users);
    for (k, v) in params {
        spec = spec.param(k, v);
    }
    local::run(&dir, spec, f).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Windows for markets whose disputes go to the validators' referee: room for an audit,
/// a bisection and a verdict, with cheaters caught inside a test's patience.
pub const REFEREED: &[(&str, u64)] = &[
    ("reveal_window", 20),
    ("challenge_window", 10),
    ("audit_window", 20),
    ("dispute_timeout", 10),
    ("match_timeout", 100),
];

/// The chain's current parameters.
pub async fn params(c: &Client) -> agentic_protocol::params::Params {
    c.params().await.unwrap()
}

/// An account as the ledger holds it: balance, bonded stake, nonce (each successful
/// transaction bumps the nonce and costs its fee).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub balance: u128,
    pub bonded: u128,
    pub nonce: u64,
}

pub async fn snapshot(c: &Client, a: &Address) -> Snapshot {
    let v = c.account(a).await.unwrap().account;
    Snapshot {
        balance: v.balance.0,
        bonded: v.bonded.0,
        nonce: v.nonce,
    }
}

impl Snapshot {
    /// The fees of the transactions sent since `before`, each at the minimum fee: what
    /// a provider sends (commit, reveal, audit commit and report, bisection moves,
    /// claims) matches no slots and stays under a KiB. A requester's `SubmitJob` costs
    /// more: [`submit_fee`].
    pub fn fees_since(&self, before: &Snapshot) -> u128 {
        u128::from(self.nonce - before.nonce) * min_fee().0
    }
}

/// The fee of submitting `spec` at the default fee parameters
/// (`Params::required_fee`): the minimum fee plus one per replica and auditor slot
/// the ledger matches (plus one per whole KiB of the spec).
pub fn submit_fee(spec: &JobSpec) -> u128 {
    let params = agentic_protocol::params::Params::default();
    let fee = params
        .required_fee(&TxBody::SubmitJob { spec: spec.clone() })
        .0;
    let stages = spec.stages.len() as u128;
    let audited = u128::from(
        spec.requirements.verification != agentic_protocol::types::VerificationLevel::Optimistic,
    );
    let slots = stages * (u128::from(spec.requirements.replicas) + audited);
    assert_eq!(
        fee,
        params.min_fee.0 + slots * params.fee_per_slot.0,
        "a test spec is under a KiB"
    );
    fee
}

/// The disputes opened over `job`, by id.
pub async fn disputes_of(
    c: &Client,
    job: JobId,
) -> Vec<(
    agentic_protocol::DisputeId,
    agentic_protocol::state::Dispute,
)> {
    c.disputes(Default::default())
        .await
        .unwrap()
        .disputes
        .into_iter()
        .map(|d| (agentic_protocol::DisputeId(d.id), d.item))
        .filter(|(_, d)| d.job == job)
        .collect()
}

/// A job prepared by the test's requester.
pub struct Prepared {
    pub spec: JobSpec,
    pub bundle: Vec<u8>,
    pub input: Activation,
    /// The single local run of every stage, in order.
    pub local: Vec<RunOutput>,
}

/// tiny-gpt on `texts`, cut at `cuts` (layer boundaries), run locally stage by stage.
pub fn prepare(texts: &[&str], cuts: &[u32], max_price: u128, deadline: u64) -> Prepared {
    let bundle = Bundle::of("tiny-gpt").unwrap();
    let m = bundle.load().unwrap();
    let input = m.encode(texts).unwrap();
    let layers = m.model.layers() as u32;
    let mut bounds = vec![0];
    bounds.extend_from_slice(cuts);
    bounds.push(layers);
    let mut local = Vec::new();
    let mut act = input.clone();
    let mut stages = Vec::new();
    for w in bounds.windows(2) {
        let out = m
            .model
            .run_range(w[0] as usize..w[1] as usize, act.clone())
            .unwrap();
        stages.push(StageSpec {
            first_layer: w[0],
            layers: w[1] - w[0],
            ops: out.total_ops(),
            step_units: 0,
            step_ops: 0,
            key_ops: 0,
        });
        act = out.output.clone();
        local.push(out);
    }
    let spec = JobSpec {
        mandate: None,
        model: Hash(bundle.hash()),
        input: input.hash(),
        stages,
        max_price: Amount(max_price),
        deadline,
        requirements: Requirements {
            replicas: 1,
            ..Requirements::default()
        },
        coord: Default::default(),
        placement: Vec::new(),
        generation: None,
    };
    Prepared {
        spec,
        bundle: bundle.encode(),
        input,
        local,
    }
}

/// Uploads the blobs and submits the job; returns its id.
pub async fn submit(c: &Client, key: &KeyFile, p: &Prepared) -> Result<JobId, String> {
    submit_spec(c, key, &p.spec, &[&p.bundle, &p.input.canonical_bytes()]).await
}

pub async fn job(c: &Client, id: JobId) -> Job {
    c.job(id).await.unwrap()
}

/// Polls the job until `done(job)` or the timeout.
pub async fn wait_job(
    c: &Client,
    id: JobId,
    timeout: Duration,
    done: impl Fn(&Job) -> bool,
) -> Job {
    let start = Instant::now();
    loop {
        let j = job(c, id).await;
        if done(&j) {
            return j;
        }
        assert!(
            start.elapsed() < timeout,
            "job {} not done after {timeout:?}: {j:#?}",
            id.0
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn wait_finished(c: &Client, id: JobId, timeout: Duration) -> Job {
    wait_job(c, id, timeout, |j| j.status != JobStatus::Active).await
}

/// `(balance, bonded)` of an account.
pub async fn balances(c: &Client, a: &Address) -> (Amount, Amount) {
    let v = c.account(a).await.unwrap().account;
    (v.balance, v.bonded)
}

pub fn min_fee() -> Amount {
    Amount(1)
}

/// A training job prepared by the test's requester: tiny-gpt's weights fine-tuned on
/// a text, its steps cut into stages, and the same steps run locally.
pub struct PreparedTraining {
    pub spec: JobSpec,
    pub task: agentic_compute::train::task::TrainTask,
    /// The task blob (the job's `model`).
    pub task_bytes: Vec<u8>,
    /// The initial state blob (the job's `input`).
    pub init_bytes: Vec<u8>,
    /// Each stage run locally from the previous stage's decoded output.
    pub local: Vec<agentic_compute::train::task::TrainRun>,
    /// All the steps in one local run.
    pub whole: agentic_compute::train::task::TrainRun,
}

/// `steps` Adam steps of tiny-gpt (from its shipped weights) on `text`, batch 2 ×
/// seq 32, cut at `cuts` (step boundaries).
pub fn prepare_training(
    text: &str,
    steps: u64,
    cuts: &[u32],
    max_price: u128,
    deadline: u64,
) -> PreparedTraining {
    use agentic_compute::train::task::{
        gpt_of_bundle, Init, LrSchedule, TokenWidth, TrainState, TrainTask,
    };
    use agentic_compute::train::{AdamConfig, OptimizerConfig};
    let bundle = Bundle::of("tiny-gpt").unwrap();
    let (config, weights) = gpt_of_bundle(&bundle).unwrap();
    let task = TrainTask {
        config,
        optimizer: OptimizerConfig::Adam(AdamConfig {
            lr: 1e-3,
            ..AdamConfig::default()
        }),
        schedule: LrSchedule::Constant,
        steps,
        batch: 2,
        seq: 32,
        data_seed: 7,
        token_width: TokenWidth::U8,
        data: text.as_bytes().to_vec(),
    };
    let init = task.initial_state(Init::Safetensors(weights)).unwrap();
    let init_bytes = init.encode();
    let mut bounds = vec![0];
    bounds.extend_from_slice(cuts);
    bounds.push(steps as u32);
    let mut stages = Vec::new();
    let mut local = Vec::new();
    let mut bytes = init_bytes.clone();
    for w in bounds.windows(2) {
        let state = TrainState::decode(&bytes, &task).unwrap();
        let run = task
            .run_steps(&state, u64::from(w[0])..u64::from(w[1]))
            .unwrap();
        stages.push(StageSpec {
            first_layer: w[0],
            layers: w[1] - w[0],
            ops: task.step_ops() * u64::from(w[1] - w[0]),
            step_units: agentic_compute::train::units::step_units(&task),
            step_ops: 0,
            key_ops: 0,
        });
        bytes = run.state.encode();
        local.push(run);
    }
    let whole = task.run_steps(&init, 0..steps).unwrap();
    let spec = JobSpec {
        mandate: None,
        model: task.hash(),
        input: Hash(*blake3::hash(&init_bytes).as_bytes()),
        stages,
        max_price: Amount(max_price),
        deadline,
        requirements: Requirements {
            replicas: 1,
            ..Requirements::default()
        },
        coord: Default::default(),
        placement: Vec::new(),
        generation: None,
    };
    PreparedTraining {
        spec,
        task_bytes: task.encode(),
        task,
        init_bytes,
        local,
        whole,
    }
}

/// Uploads `blobs` and submits `spec`; returns the job's id.
pub async fn submit_spec(
    c: &Client,
    key: &KeyFile,
    spec: &JobSpec,
    blobs: &[&[u8]],
) -> Result<JobId, String> {
    for b in blobs {
        c.put_blob(b.to_vec()).await.map_err(|e| e.to_string())?;
    }
    let receipt = c
        .send(
            &key.key,
            TxBody::SubmitJob { spec: spec.clone() },
            Duration::from_secs(30),
        )
        .await
        .map_err(|e| e.to_string())?;
    for r in &receipt.events {
        if let Event::JobSubmitted { job, .. } = r.event {
            return Ok(job);
        }
    }
    Err(format!("no JobSubmitted event in {receipt:?}"))
}

//! The workload: the jobs every market run of one simulation submits, and the model
//! they run.
//!
//! ```text
//!   seed ─▶ ChaCha8 ─▶ per job: 1–2 lines of 8–64 tokens ─▶ Meter::layer_ops ─▶ JobPlan
//!                               cheat draw, pipeline draw, placement picks
//! ```
//!
//! The same `Workload` goes to every run (honest, audited baseline, single cheaters,
//! coalitions), so their figures compare the same jobs. The model is described by a
//! [`Meter`]: its name (the jobs' model hash), its layer count (the traces' length) and
//! the metered ops of each layer for an input shape; `agentic bench verify` meters the
//! real tiny-gpt with the compute runtime.

use agentic_protocol::{Hash, Params};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{Config, Error};

/// The model the simulated jobs run, as far as the market sees it.
pub trait Meter {
    /// Its name; the jobs' model hash is derived from it.
    fn name(&self) -> &str;
    /// Its layer count: each stage's trace has one leaf per layer, plus its input.
    fn layers(&self) -> u32;
    /// The metered ops of each of its layers for a batch of token sequences of these
    /// lengths.
    fn layer_ops(
        &self,
        seq_lens: &[usize],
    ) -> Result<Vec<u64>, Box<dyn std::error::Error + Send + Sync>>;
}

/// A stage's layers and metered ops.
#[derive(Clone, Debug, Default)]
pub(crate) struct Span {
    pub(crate) first: u32,
    pub(crate) layers: u32,
    pub(crate) ops: u64,
    /// Metered ops of each of its layers.
    pub(crate) layer_ops: Vec<u64>,
}

/// One job of the workload (the same in every market run).
#[derive(Clone, Debug)]
pub(crate) struct JobPlan {
    /// Metered ops of each model layer for this input shape.
    pub(crate) layer_ops: Vec<u64>,
    pub(crate) ops: u64,
    pub(crate) input: Hash,
    /// Uniform in [0, 1): below the cheater share, the job goes to a cheating target.
    pub(crate) cheat_draw: f64,
    /// Whether it is a two-stage pipeline.
    pub(crate) pipeline: bool,
    /// Which qualified honest provider takes its first stage.
    pub(crate) pick: u64,
    /// Which other honest provider takes an honest pipeline's second stage.
    pub(crate) pick2: u64,
}

impl JobPlan {
    /// Its stages: every layer in one, or split in two halves.
    pub(crate) fn spans(&self, stages: usize) -> Vec<Span> {
        let layers = self.layer_ops.len() as u32;
        if stages < 2 || layers < 2 {
            return vec![Span {
                first: 0,
                layers,
                ops: self.ops.max(1),
                layer_ops: self.layer_ops.clone(),
            }];
        }
        let cut = layers / 2;
        let ops = |r: std::ops::Range<usize>| self.layer_ops[r].iter().sum::<u64>().max(1);
        vec![
            Span {
                first: 0,
                layers: cut,
                ops: ops(0..cut as usize),
                layer_ops: self.layer_ops[..cut as usize].to_vec(),
            },
            Span {
                first: cut,
                layers: layers - cut,
                ops: ops(cut as usize..layers as usize),
                layer_ops: self.layer_ops[cut as usize..].to_vec(),
            },
        ]
    }
}

/// The jobs of every market run of a simulation, and what the runs share.
pub(crate) struct Workload {
    pub(crate) jobs: Vec<JobPlan>,
    pub(crate) jobs_per_block: usize,
    pub(crate) providers: usize,
    pub(crate) compute_cost: u64,
    pub(crate) seed: u64,
    pub(crate) model: Hash,
    pub(crate) layers: u32,
    /// The block of the first job: one unbonding delay in, so stake unbonded at the
    /// start is withdrawable.
    pub(crate) first_job: u64,
}

impl Workload {
    /// The jobs `config` asks for, metered by `model`.
    pub(crate) fn generate(args: &Config, model: &dyn Meter) -> Result<Self, Error> {
        let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
        let mut jobs = Vec::with_capacity(args.jobs);
        for i in 0..args.jobs {
            let lines = rng.gen_range(1..=2usize);
            let seq_lens: Vec<usize> = (0..lines).map(|_| rng.gen_range(8..=64)).collect();
            let layer_ops = model.layer_ops(&seq_lens).map_err(Error::Meter)?;
            let ops = layer_ops.iter().sum();
            jobs.push(JobPlan {
                layer_ops,
                ops,
                input: Hash::digest("agentic bench verify input", &[&(i as u64).to_be_bytes()]),
                cheat_draw: rng.gen::<f64>(),
                pipeline: rng.gen::<f64>() < args.pipelines,
                pick: rng.gen(),
                pick2: rng.gen(),
            });
        }
        Ok(Workload {
            jobs,
            jobs_per_block: args.jobs_per_block,
            providers: args.providers,
            compute_cost: args.compute_cost,
            seed: args.seed,
            model: Hash::digest("agentic bench verify model", &[model.name().as_bytes()]),
            layers: model.layers(),
            first_job: Params::default().unbonding_delay + 2,
        })
    }

    pub(crate) fn submit_blocks(&self) -> u64 {
        self.jobs.len().div_ceil(self.jobs_per_block) as u64
    }
}

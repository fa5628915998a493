//! What the simulator's tests share: a model meter that needs no runtime.

use crate::{Config, Meter};

/// A four-layer model (embeddings, two decoder blocks, head) whose layers cost a fixed
/// number of ops per token, of the order of tiny-gpt's as the compute runtime meters it.
pub(crate) struct LinearMeter;

/// Ops per token of each layer.
const OPS_PER_TOKEN: [u64; 4] = [128, 416_852, 416_852, 66_436];

impl Meter for LinearMeter {
    fn name(&self) -> &str {
        "linear-test-model"
    }

    fn layers(&self) -> u32 {
        OPS_PER_TOKEN.len() as u32
    }

    fn layer_ops(
        &self,
        seq_lens: &[usize],
    ) -> Result<Vec<u64>, Box<dyn std::error::Error + Send + Sync>> {
        let tokens = seq_lens.iter().sum::<usize>() as u64;
        Ok(OPS_PER_TOKEN.iter().map(|k| k * tokens).collect())
    }
}

/// A small market: 400 jobs, 30% of them on cheating targets, 10 honest providers.
pub(crate) fn small(seed: u64) -> Config {
    Config {
        jobs: 400,
        jobs_per_block: 40,
        providers: 10,
        cheaters: 0.3,
        seed,
        ..Config::DEFAULT
    }
}

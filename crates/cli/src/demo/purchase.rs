//! What every purchase in the story is checked against.
//!
//! * **The reference run**: the same model on the same input, run once, whole,
//!   in this process. A partitioned job is correct when its output is that
//!   run's output to the bit and each stage's agreed trace root is the root of
//!   that run's trace over the stage's layers (so the stages chain into the
//!   single run's trace).
//! * **The bill**: each stage is paid `ops × price / 10^6` of the provider that
//!   delivered it, once (`StagePaid` events), and the payer gets back the
//!   escrow it did not spend.

use agentic_agent::requester::JobResult;
use agentic_compute::registry;
use agentic_compute::trace::Trace;
use agentic_protocol::event::Event;
use agentic_protocol::state::Job;
use agentic_protocol::{Address, Amount, Hash, JobId};
use anyhow::Context;
use serde::Serialize;

use super::world::World;

/// The single local run of the model on a job's input.
pub struct Reference {
    /// blake3 of the input activation's canonical bytes.
    pub input_hash: Hash,
    /// The whole run's trace.
    pub trace: Trace,
    /// The output activation's canonical bytes.
    pub output_bytes: Vec<u8>,
}

impl Reference {
    /// Runs `model` on `texts`, whole, here.
    pub fn run(model: &str, texts: &[String]) -> anyhow::Result<Reference> {
        let m = registry::load(model).with_context(|| format!("loading {model}"))?;
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let input = m.encode(&refs).context("encoding the input")?;
        let input_hash = input.hash();
        let out = m.model.run(input).context("the reference run")?;
        Ok(Reference {
            input_hash,
            output_bytes: out.output.canonical_bytes(),
            trace: out.trace,
        })
    }

    /// The trace of layers `first..first + layers` cut out of the whole run.
    pub fn stage_trace(&self, first: usize, layers: usize) -> Option<Trace> {
        let input: Hash = if first == 0 {
            self.trace.input_hash
        } else {
            *self.trace.layer_hashes.get(first - 1)?
        };
        let hashes = self.trace.layer_hashes.get(first..first + layers)?.to_vec();
        Some(Trace::from_hashes(first, input, hashes))
    }

    /// The output hash of the whole run.
    pub fn output_hash(&self) -> Hash {
        self.trace.output_hash()
    }
}

/// How a job's result compares with the reference run.
#[derive(Clone, Debug, Serialize)]
pub struct Identity {
    /// The job's output hash (last stage's agreed output).
    pub output_hash: Hash,
    /// The reference run's output hash.
    pub local_output_hash: Hash,
    /// Each stage's agreed trace root.
    pub trace_roots: Vec<Hash>,
    /// The reference trace's root over each stage's layers.
    pub local_trace_roots: Vec<Hash>,
    /// The whole reference trace's root.
    pub local_whole_trace_root: Hash,
    /// The fetched output's bytes equal the reference output's bytes.
    pub output_bytes_equal: bool,
    /// Everything above matches, and the job's input is the reference input.
    pub bit_identical: bool,
}

impl Identity {
    /// Compares `job`'s agreed results and fetched output with `reference`.
    pub fn of(job: &Job, result: &JobResult, reference: &Reference) -> Identity {
        let trace_roots: Vec<Hash> = result.stage_results.iter().map(|r| r.trace_root).collect();
        let mut local_trace_roots = Vec::new();
        let mut stages_match = result.stage_results.len() == job.spec.stages.len();
        for (s, spec) in job.spec.stages.iter().enumerate() {
            let t = reference.stage_trace(spec.first_layer as usize, spec.layers as usize);
            let root = t.as_ref().map_or(Hash([0; 32]), |t| t.root);
            local_trace_roots.push(root);
            let agreed = result.stage_results.get(s);
            stages_match &= match (t, agreed) {
                (Some(t), Some(r)) => {
                    r.trace_root == root && r.input == t.input_hash && r.output == t.output_hash()
                }
                _ => false,
            };
        }
        let output_bytes_equal = result.output.canonical_bytes() == reference.output_bytes;
        let bit_identical = stages_match
            && output_bytes_equal
            && result.output_hash == reference.output_hash()
            && job.spec.input == reference.input_hash;
        Identity {
            output_hash: result.output_hash,
            local_output_hash: reference.output_hash(),
            trace_roots,
            local_trace_roots,
            local_whole_trace_root: reference.trace.root,
            output_bytes_equal,
            bit_identical,
        }
    }
}

/// One stage's bill.
#[derive(Clone, Debug, Serialize)]
pub struct StageBill {
    /// The stage.
    pub stage: u32,
    /// Its first layer.
    pub first_layer: u32,
    /// Its number of layers.
    pub layers: u32,
    /// The provider that delivered it (its name).
    pub provider: String,
    /// Its address.
    pub address: Address,
    /// Metered operations.
    pub ops: u64,
    /// The provider's price per mega-op when matched.
    pub price: Amount,
    /// `ops × price / 10^6`.
    pub bill: Amount,
    /// What the ledger paid for the stage (`StagePaid` events).
    pub paid: Amount,
    /// How many payments the stage got.
    pub payments: u32,
    /// Whether they all went to the provider that delivered it.
    pub paid_to_deliverer: bool,
}

/// The bill of `job` from its record and the ledger's `StagePaid` events.
pub fn bills(w: &World, id: JobId, job: &Job) -> Vec<StageBill> {
    let paid = w.events.select(|_, e| match e {
        Event::StagePaid {
            job,
            stage,
            provider,
            amount,
        } if *job == id => Some((*stage, *provider, *amount)),
        _ => None,
    });
    job.stages
        .iter()
        .zip(&job.spec.stages)
        .enumerate()
        .map(|(s, (st, spec))| {
            let a = st.slots.first().and_then(|x| x.assignment.as_ref());
            let address = a.map_or(Address([0; 32]), |a| a.provider);
            let price = a.map_or(Amount::ZERO, |a| a.price);
            let mine: Vec<&(u32, Address, Amount)> =
                paid.iter().filter(|p| p.0 == s as u32).collect();
            StageBill {
                stage: s as u32,
                first_layer: spec.first_layer,
                layers: spec.layers,
                provider: w.name(&address),
                address,
                ops: spec.ops,
                price,
                bill: Amount::cost(spec.ops, price).unwrap_or(Amount(u128::MAX)),
                paid: Amount(mine.iter().map(|p| p.2 .0).sum()),
                payments: mine.len() as u32,
                paid_to_deliverer: mine.iter().all(|p| p.1 == address),
            }
        })
        .collect()
}

/// Whether every stage was paid exactly its bill, once, to its deliverer.
pub fn exact(bills: &[StageBill]) -> bool {
    bills
        .iter()
        .all(|b| b.payments == 1 && b.paid_to_deliverer && b.paid == b.bill && b.bill.0 > 0)
}

/// `stage: name ops × price = bill (paid …)` for each stage.
pub fn bill_lines(bills: &[StageBill]) -> Vec<String> {
    bills
        .iter()
        .map(|b| {
            format!(
                "stage {} (layers {}..{}) on {}: {} ops × {} / 10^6 = {}; paid {} in {} payment{}",
                b.stage,
                b.first_layer,
                b.first_layer + b.layers,
                b.provider,
                thousands(b.ops),
                b.price,
                b.bill,
                b.paid,
                b.payments,
                if b.payments == 1 { "" } else { "s" }
            )
        })
        .collect()
}

/// The refund the ledger reported when `id` completed.
pub fn refund(w: &World, id: JobId) -> Option<Amount> {
    w.events
        .select(|_, e| match e {
            Event::JobCompleted { job, refund } if *job == id => Some(*refund),
            _ => None,
        })
        .into_iter()
        .next()
}

pub(crate) use crate::job::thousands;

/// The first 12 hex digits of a hash.
pub fn short(h: &Hash) -> String {
    h.to_string().chars().take(12).collect()
}

//! The application: builds and verifies blocks (rules 1 and 2 of [`crate::consensus`]).
//!
//! Marshal's `Deferred` wrapper calls it with the consensus context and a stream of the
//! block's ancestry (newest first). It reads the chain and the mempool but never writes them:
//! execution happens only at finalization, in the executor.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use agentic_protocol::referee::AVAILABILITY_PROBE;
use agentic_protocol::state::{Dispute, DisputePhase, Job, JobStatus, State};
use agentic_protocol::{verify_batch, Address, Finding, Height as LedgerHeight, SignedTx, Verdict};
use commonware_consensus::{
    marshal::ancestry::Ancestry,
    simplex::scheme::bls12381_threshold::vrf::Seed,
    types::{Round, View},
    Heightable,
};
use commonware_cryptography::{Digested, Digestible};
use commonware_parallel::Sequential;
use commonware_runtime::{Clock, Metrics, Spawner};
use commonware_utils::SystemTimeExt;
use futures::StreamExt;
use tracing::{debug, warn};

use super::referee::{Arbiter, Question};
use super::{seeds::Seeds, Block, BlockLimits, Context, Scheme, SeedSignature, Variant};
use crate::{SharedChain, SharedMempool};

/// How often a proposer waiting for its parent's seed looks again.
const SEED_POLL: Duration = Duration::from_millis(20);
/// How many times (every `SEED_POLL`) a voter looks for a verdict's dispute (or, for an
/// availability probe, its job) in its applied state before refereeing with what it has.
const SOURCE_WAIT_POLLS: usize = 100;

/// Builds blocks from the mempool and checks others' blocks.
#[derive(Clone)]
pub struct Application {
    chain: SharedChain,
    mempool: SharedMempool,
    seeds: Seeds,
    scheme: Scheme,
    limits: BlockLimits,
    max_future_ms: u64,
    block_interval_ms: u64,
    arbiter: Arbiter,
}

/// Why a block is invalid (logged; consensus only sees `false`).
#[derive(Debug, thiserror::Error)]
pub enum InvalidBlock {
    /// The ancestry stream ended early.
    #[error("missing block or parent")]
    Missing,
    /// Height or parent digest do not follow the parent.
    #[error("does not extend its parent")]
    NotChild,
    /// Timestamp not above the parent's.
    #[error("timestamp {got} is not above the parent's {parent}")]
    Timestamp {
        /// The block's.
        got: u64,
        /// The parent's.
        parent: u64,
    },
    /// Too many transactions or bytes.
    #[error("{txs} transactions / {bytes} bytes exceed the block limits")]
    TooLarge {
        /// Transactions.
        txs: usize,
        /// Bytes.
        bytes: usize,
    },
    /// A transaction's signature does not verify.
    #[error("transaction {0} has a bad signature")]
    BadSignature(usize),
    /// The same transaction twice.
    #[error("transaction {0} appears twice")]
    Duplicate(usize),
    /// The parent seed is missing or does not verify.
    #[error("bad parent seed")]
    BadSeed,
    /// Too many verdicts, or two for the same question.
    #[error("verdict {0} is one too many or repeats a question")]
    Verdicts(usize),
    /// This validator's own refereeing disagrees with a verdict.
    #[error("verdict {0} disagrees with this validator's referee")]
    Verdict(usize),
}

impl Application {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        chain: SharedChain,
        mempool: SharedMempool,
        seeds: Seeds,
        scheme: Scheme,
        limits: BlockLimits,
        max_future_ms: u64,
        block_interval: Duration,
        arbiter: Arbiter,
    ) -> Application {
        Application {
            arbiter,
            chain,
            mempool,
            seeds,
            scheme,
            limits,
            max_future_ms,
            block_interval_ms: block_interval.as_millis() as u64,
        }
    }

    /// The transactions of ancestors not yet applied to the chain, oldest first. `first` is
    /// the newest ancestor; `ancestry` yields the older ones.
    async fn in_flight(
        &self,
        first: &Digested<Block>,
        ancestry: &mut impl Ancestry<Block>,
    ) -> Option<Vec<SignedTx>> {
        let applied = self.applied_height();
        let mut pending = Vec::new();
        let mut current = first.clone();
        while current.height().get() > applied {
            pending.push(current.inner_shared());
            current = ancestry.next().await?;
        }
        Some(
            pending
                .iter()
                .rev()
                .flat_map(|b| b.txs.iter().cloned())
                .collect(),
        )
    }

    fn applied_height(&self) -> u64 {
        self.chain.read().map(|c| c.height().0).unwrap_or(0)
    }

    /// The seed signature the block at `context` must carry: the seed of the parent's round
    /// (none when the parent is genesis, at view 0).
    fn parent_round(context: &Context) -> Option<Round> {
        let parent_view = context.parent.0;
        (parent_view != View::zero()).then(|| Round::new(context.round.epoch(), parent_view))
    }

    fn check_seed(&self, context: &Context, seed: Option<SeedSignature>) -> bool {
        match (Self::parent_round(context), seed) {
            (None, None) => true,
            (Some(round), Some(signature)) => {
                Seed::<Variant>::new(round, signature).verify(&self.scheme)
            }
            _ => false,
        }
    }

    /// Rules of rule 2 that need no clock.
    fn check(
        &self,
        block: &Block,
        parent: &Block,
        parent_digest: &super::Digest,
    ) -> Result<(), InvalidBlock> {
        if block.height != parent.height.next() || block.parent != *parent_digest {
            return Err(InvalidBlock::NotChild);
        }
        if block.timestamp_ms <= parent.timestamp_ms {
            return Err(InvalidBlock::Timestamp {
                got: block.timestamp_ms,
                parent: parent.timestamp_ms,
            });
        }
        let bytes = block.tx_bytes();
        if block.txs.len() > self.limits.max_txs || bytes > self.limits.max_bytes {
            return Err(InvalidBlock::TooLarge {
                txs: block.txs.len(),
                bytes,
            });
        }
        let ids: Vec<_> = block.txs.iter().map(SignedTx::id).collect();
        let mut seen = BTreeSet::new();
        for (i, id) in ids.iter().enumerate() {
            if !seen.insert(*id) {
                return Err(InvalidBlock::Duplicate(i));
            }
        }
        // A transaction this validator admitted to its mempool was verified then, and
        // its id commits to the signer, the signed bytes and the signature: only the
        // others are checked (in one batch).
        let unknown: Vec<usize> = match self.mempool.lock() {
            Ok(m) => (0..block.txs.len())
                .filter(|&i| !m.contains(&ids[i]))
                .collect(),
            Err(_) => (0..block.txs.len()).collect(),
        };
        let to_check: Vec<SignedTx> = unknown.iter().map(|&i| block.txs[i].clone()).collect();
        if let Some(j) = verify_batch(&to_check).iter().position(|ok| !ok) {
            return Err(InvalidBlock::BadSignature(unknown[j]));
        }
        if !self.check_seed(&block.context, block.parent_seed) {
            return Err(InvalidBlock::BadSeed);
        }
        let mut questions = BTreeSet::new();
        for (i, v) in block.verdicts.iter().enumerate() {
            if i >= self.limits.max_verdicts || !questions.insert(Question::of(v)) {
                return Err(InvalidBlock::Verdicts(i));
            }
        }
        Ok(())
    }

    /// The questions the ledger asks the referee in `state`
    /// ([`State::referee_questions`]: the layer of each dispute awaiting the referee and
    /// the availability probe of each job under a claim), each with where its data can be
    /// fetched and the last height at which the ledger would still wait for the data.
    /// The ledger's queues name the questions; only when there are some are the
    /// disputes and claims behind them looked up for their parties.
    fn questions(state: &State) -> Vec<(Question, Vec<String>, LedgerHeight)> {
        let asked = state.referee_questions();
        if asked.is_empty() {
            return Vec::new();
        }
        let probes = asked
            .iter()
            .any(|(_, layer, _)| *layer == AVAILABILITY_PROBE);
        let layers = asked
            .iter()
            .any(|(_, layer, _)| *layer != AVAILABILITY_PROBE);
        // Question → (sources, earliest deadline among the disputes or claims asking it).
        let mut parties: BTreeMap<Question, (Vec<String>, LedgerHeight)> = BTreeMap::new();
        let mut note = |q: Question, sources: Vec<String>, deadline: LedgerHeight| {
            let e = parties.entry(q).or_insert((Vec::new(), deadline));
            for src in sources {
                if !e.0.contains(&src) {
                    e.0.push(src);
                }
            }
            if deadline < e.1 {
                e.1 = deadline;
            }
        };
        if layers {
            for (_, d) in state.disputes() {
                if d.phase != DisputePhase::AwaitingReferee {
                    continue;
                }
                if let Some((q, sources)) = Self::dispute_question(state, d) {
                    note(q, sources, d.deadline);
                }
            }
        }
        if probes {
            let patience = state.params().dispute_timeout;
            for (_, j) in state.jobs() {
                let Some(claim) = j.claim else { continue };
                if j.status != JobStatus::Active {
                    continue;
                }
                note(
                    Self::probe_question(j),
                    Self::job_sources(state, j),
                    claim.since.plus(patience),
                );
            }
        }
        asked
            .into_iter()
            .map(|(model, layer, input)| {
                let q = Question {
                    model,
                    layer,
                    input,
                };
                let (sources, deadline) = parties
                    .get(&q)
                    .cloned()
                    // (Every question comes from a dispute or claim found above; were one
                    // not, it would never be answered "unavailable".)
                    .unwrap_or((Vec::new(), LedgerHeight(u64::MAX)));
                (q, sources, deadline)
            })
            .collect()
    }

    /// A provider's published data-plane endpoint, if any.
    fn endpoint(state: &State, a: &Address) -> Option<String> {
        state
            .provider(a)
            .map(|p| p.offer.endpoint.0.clone())
            .filter(|e| !e.is_empty())
    }

    /// The question a dispute asks (layer `first_layer + lo` on the agreed activation, or
    /// for a training stage the flat unit `step × step_units + lo` on the agreed carry:
    /// [`Dispute::referee_layer`]), with the data planes of its two parties (where that
    /// activation can be fetched).
    fn dispute_question(state: &State, d: &Dispute) -> Option<(Question, Vec<String>)> {
        let job = state.job(d.job)?;
        let stage = job.spec.stages.get(d.stage as usize)?;
        let q = Question {
            model: job.spec.model,
            layer: d.referee_layer(stage.first_layer)?,
            input: d.agreed,
        };
        let sources = [
            Self::endpoint(state, &d.defendant),
            Self::endpoint(state, &d.challenger),
        ]
        .into_iter()
        .flatten()
        .collect();
        Some((q, sources))
    }

    /// The availability probe of a job: its model and its input.
    fn probe_question(j: &Job) -> Question {
        Question {
            model: j.spec.model,
            layer: AVAILABILITY_PROBE,
            input: j.spec.input,
        }
    }

    /// The data planes of every provider holding a role in a job (replica slots and
    /// auditors, the claimant included: a false claimant that serves the data refutes
    /// itself). The requester has no data plane; what it uploaded is on the nodes.
    fn job_sources(state: &State, j: &Job) -> Vec<String> {
        let mut holders: Vec<Address> = Vec::new();
        for st in &j.stages {
            let slots = st.slots.iter().filter_map(|x| x.assignment.as_ref());
            for a in slots
                .map(|a| a.provider)
                .chain(st.audit.as_ref().map(|a| a.auditor))
            {
                if !holders.contains(&a) {
                    holders.push(a);
                }
            }
        }
        holders
            .iter()
            .filter_map(|a| Self::endpoint(state, a))
            .collect()
    }

    /// Where a voter fetches the data of a verdict's question from, as its applied
    /// state knows it (any dispute asking it, resolved or not; any job whose probe it
    /// is): `None` while that state knows no such dispute or job.
    fn sources_for(state: &State, q: &Question) -> Option<Vec<String>> {
        let mut found: Option<Vec<String>> = None;
        let mut add = |sources: Vec<String>| {
            let all = found.get_or_insert_with(Vec::new);
            for src in sources {
                if !all.contains(&src) {
                    all.push(src);
                }
            }
        };
        if q.layer == AVAILABILITY_PROBE {
            for (_, j) in state.jobs() {
                if j.spec.model == q.model && j.spec.input == q.input {
                    add(Self::job_sources(state, j));
                }
            }
        } else {
            for (_, d) in state.disputes() {
                if let Some((x, sources)) = Self::dispute_question(state, d) {
                    if x == *q {
                        add(sources);
                    }
                }
            }
        }
        found
    }

    /// The verdicts a block at `height` carries: every question this validator has
    /// settled. An "unavailable" finding goes in only once the ledger's patience has run
    /// out (before that the parties may still publish; the ledger would ignore it anyway).
    fn verdicts_for(&self, height: u64) -> Vec<Verdict> {
        let questions = match self.chain.read() {
            Ok(c) => Self::questions(c.state()),
            Err(_) => return Vec::new(),
        };
        let mut out: Vec<Verdict> = Vec::new();
        for (q, sources, deadline) in questions {
            if out.len() >= self.limits.max_verdicts {
                break;
            }
            if out.iter().any(|v| Question::of(v) == q) {
                continue;
            }
            match self.arbiter.finding(&q, &sources) {
                Some(f @ (Finding::Output(_) | Finding::LayerOutOfRange)) => out.push(q.verdict(f)),
                Some(f) if height > deadline.0 => out.push(q.verdict(f)),
                _ => {}
            }
        }
        out
    }

    /// Whether this validator's own refereeing agrees with every verdict of `block`.
    /// Where to fetch from comes from this validator's applied state, which may lag the
    /// proposer's by a block or two: it waits (briefly) for the dispute (or the probed
    /// job) to appear there.
    async fn check_verdicts<E: Clock>(
        &self,
        runtime: &E,
        block: &Block,
    ) -> Result<(), InvalidBlock> {
        for (i, v) in block.verdicts.iter().enumerate() {
            let q = Question::of(v);
            let mut sources = Vec::new();
            for _ in 0..SOURCE_WAIT_POLLS {
                let found = match self.chain.read() {
                    Ok(c) => Self::sources_for(c.state(), &q),
                    Err(_) => None,
                };
                if let Some(s) = found {
                    sources = s;
                    break;
                }
                runtime.sleep(SEED_POLL).await;
            }
            if !self.arbiter.agrees(v, &sources).await {
                return Err(InvalidBlock::Verdict(i));
            }
        }
        Ok(())
    }
}

impl<E> commonware_consensus::Application<E> for Application
where
    E: Clock + Spawner + Metrics,
{
    type SigningScheme = Scheme;
    type Context = Context;
    type Block = Block;
    type Input = ();

    async fn propose(
        &mut self,
        (runtime, context): (E, Context),
        mut ancestry: impl Ancestry<Block>,
        _input: (),
    ) -> Option<Digested<Block>> {
        let parent = ancestry.next().await?;
        // Pace the chain: no child before `block_interval` after its parent.
        let earliest = parent
            .inner()
            .timestamp_ms
            .saturating_add(self.block_interval_ms);
        let now = runtime.current().epoch_millis();
        if now < earliest {
            runtime.sleep(Duration::from_millis(earliest - now)).await;
        }
        let in_flight = self.in_flight(&parent, &mut ancestry).await?;

        // The parent's seed: the certificate that let us build on the parent carries it.
        let parent_seed = match Self::parent_round(&context) {
            None => None,
            Some(round) => loop {
                if let Some(seed) = self.seeds.get(round.view()) {
                    break Some(seed);
                }
                runtime.sleep(SEED_POLL).await;
            },
        };

        let txs = {
            let chain = self.chain.read().ok()?;
            let mempool = self.mempool.lock().ok()?;
            mempool.select(
                chain.state(),
                &in_flight,
                self.limits.max_txs,
                self.limits.max_bytes,
            )
        };
        let verdicts = self.verdicts_for(parent.height().next().get());
        let timestamp_ms = runtime
            .current()
            .epoch_millis()
            .max(parent.inner().timestamp_ms + 1);
        let block = Block::new(
            context,
            parent.digest(),
            parent.height().next(),
            timestamp_ms,
            parent_seed,
            txs,
            verdicts,
        );
        debug!(height = %block.height, txs = block.txs.len(), verdicts = block.verdicts.len(), "proposing");
        Some(Digested::compute(block, &Sequential).await)
    }

    async fn verify(
        &mut self,
        (runtime, _context): (E, Context),
        mut ancestry: impl Ancestry<Block>,
    ) -> bool {
        let Some(block) = ancestry.next().await else {
            return false;
        };
        let Some(parent) = ancestry.next().await else {
            return false;
        };
        if let Err(e) = self.check(block.inner(), parent.inner(), &parent.digest()) {
            warn!(height = %block.height(), error = %e, "invalid block");
            return false;
        }
        if let Err(e) = self.check_verdicts(&runtime, block.inner()).await {
            warn!(height = %block.height(), error = %e, "refusing block");
            return false;
        }
        // A block from the future is not invalid yet: wait until it is within the bound
        // (consensus drops this future if the view moves on first).
        let ts = block.inner().timestamp_ms;
        loop {
            let now = runtime.current().epoch_millis();
            if ts <= now.saturating_add(self.max_future_ms) {
                return true;
            }
            runtime
                .sleep(Duration::from_millis(ts - now - self.max_future_ms))
                .await;
        }
    }
}

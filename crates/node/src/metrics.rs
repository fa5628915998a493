//! What an operator watches: the node's metrics, served with everything commonware registers
//! as one Prometheus text exposition at `GET /metrics`.
//!
//! Every metric is registered once, through the commonware runtime
//! ([`Metrics::register`]), in the context of the actor that updates it. The runtime prefixes
//! a metric's name with its context's label and attaches the context's attributes as labels,
//! so one [`Metrics::encode`] holds ours next to those of consensus, marshal, the broadcast
//! buffer, p2p, storage and the runtime's own task and I/O metrics:
//!
//! ```text
//!   <validator context>            (`validator` under `agentic node run`; `validator{validator="i"}` in a local network)
//!    ├─ api_*                      ApiMetrics       requests by route, method and status; latency
//!    ├─ mempool_*                  MempoolMetrics   size, admitted, rejected by reason, removed
//!    ├─ ledger_*                   LedgerMetrics    the finalized state: jobs, stages, disputes,
//!    │                                              providers, proposals, supply, burned, slashes
//!    ├─ engine_executor_*          ExecutorMetrics  blocks and transactions applied, apply time
//!    ├─ engine_gossip_*            GossipMetrics    transactions sent to and received from peers
//!    ├─ engine_consensus_*, engine_marshal_*, engine_buffer_*, engine_backfill_*, engine_finalized_*
//!    └─ p2p_*                      (commonware)
//!   runtime_*                      (commonware: tasks, storage, network)
//! ```
//!
//! Rules:
//! - counters only go up while the process lives (`_total` is appended by the encoder);
//! - every `ledger_*` value is a gauge read from the ledger after the last applied block
//!   (`ledger_height`): counts and escrow come from a scan of the state (once per block),
//!   supply, issuance, burned and bonded from its `Meta`, slash and missed-deadline totals
//!   from the events of every applied block. The chain replays every block from
//!   genesis on start, so these are chain-wide totals, not totals since the process started;
//! - amounts are in base units. The ledger's amounts are `u128`; a Prometheus sample is a
//!   float64, so amounts are exported as `f64` gauges (exact up to 2^53). Nothing here feeds
//!   back into the ledger.
//!
//! See the crate README for the table of names.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use agentic_protocol::state::{DisputePhase, JobStatus, ProposalStatus, StagePhase};
use agentic_protocol::{Event, EventRecord, State};
use commonware_runtime::telemetry::metrics::{
    histogram::Buckets, raw, Counter, CounterFamily, EncodeLabelSet, Gauge, GaugeFamily, Histogram,
    MetricsExt as _, Registered,
};
use commonware_runtime::Metrics;

use crate::mempool::AdmitError;

/// A gauge of an amount of base units (see the module docs for why `f64`).
pub type AmountGauge = Registered<raw::Gauge<f64, AtomicU64>>;

/// Registers an [`AmountGauge`].
fn amount_gauge(context: &impl Metrics, name: &str, help: &str) -> AmountGauge {
    context.register(name, help, raw::Gauge::<f64, AtomicU64>::default())
}

/// Sets an [`AmountGauge`] to `amount` base units.
fn set_amount(gauge: &AmountGauge, amount: u128) {
    gauge.set(amount as f64);
}

/// Sets a gauge to a count, saturating at the gauge's range.
fn set_count(gauge: &raw::Gauge, n: usize) {
    gauge.set(i64::try_from(n).unwrap_or(i64::MAX));
}

// ---------------------------------------------------------------------------------------------
// Mempool
// ---------------------------------------------------------------------------------------------

/// `reason` label of `mempool_rejected`: [`AdmitError::code`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabel {
    /// Why the transaction was refused.
    pub reason: &'static str,
}

/// `reason` label of `mempool_removed`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RemoveLabel {
    /// `finalized` (its block was finalized) or `stale` (its nonce was used).
    pub reason: &'static str,
}

/// The mempool's metrics (context label `mempool`).
#[derive(Clone, Debug)]
pub struct MempoolMetrics {
    txs: Gauge,
    bytes: Gauge,
    admitted: Counter,
    rejected: CounterFamily<RejectLabel>,
    removed: CounterFamily<RemoveLabel>,
}

impl Default for MempoolMetrics {
    /// Metrics that go nowhere (a mempool outside a runtime, as in unit tests).
    fn default() -> Self {
        MempoolMetrics {
            txs: Registered::detached(raw::Gauge::default()),
            bytes: Registered::detached(raw::Gauge::default()),
            admitted: Registered::detached(raw::Counter::default()),
            rejected: Registered::detached(raw::Family::default()),
            removed: Registered::detached(raw::Family::default()),
        }
    }
}

impl MempoolMetrics {
    /// Registers the mempool's metrics in `context`.
    pub fn register(context: &impl Metrics) -> MempoolMetrics {
        MempoolMetrics {
            txs: context.gauge("txs", "Transactions waiting in the mempool."),
            bytes: context.gauge("bytes", "Encoded bytes waiting in the mempool."),
            admitted: context.counter(
                "admitted",
                "Transactions admitted (from the API and from peers).",
            ),
            rejected: context.family(
                "rejected",
                "Transactions refused at admission, by reason (the API's error code).",
            ),
            removed: context.family(
                "removed",
                "Transactions dropped from the mempool: finalized in a block, or stale.",
            ),
        }
    }

    pub(crate) fn size(&self, txs: usize, bytes: usize) {
        set_count(&self.txs, txs);
        set_count(&self.bytes, bytes);
    }

    pub(crate) fn admitted(&self) {
        self.admitted.inc();
    }

    pub(crate) fn rejected(&self, e: &AdmitError) {
        self.rejected
            .get_or_create(&RejectLabel { reason: e.code() })
            .inc();
    }

    pub(crate) fn removed(&self, reason: &'static str, n: usize) {
        if n > 0 {
            self.removed
                .get_or_create(&RemoveLabel { reason })
                .inc_by(n as u64);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Executor and gossip
// ---------------------------------------------------------------------------------------------

/// The executor's metrics (context label `engine_executor`).
#[derive(Clone, Debug)]
pub struct ExecutorMetrics {
    /// Finalized blocks applied to the chain (replayed ones included).
    pub blocks: Counter,
    /// Of those, blocks replayed from storage on start.
    pub replayed: Counter,
    /// Transactions the ledger applied.
    pub txs_applied: Counter,
    /// Transactions the ledger rejected (a failed receipt; nothing changed).
    pub txs_failed: Counter,
    /// Height of the last applied block.
    pub height: Gauge,
    /// Time to apply one block to the chain and prune the mempool.
    pub apply: Histogram,
}

impl ExecutorMetrics {
    /// Registers the executor's metrics in `context`.
    pub fn register(context: &impl Metrics) -> ExecutorMetrics {
        ExecutorMetrics {
            blocks: context.counter(
                "blocks_applied",
                "Finalized blocks applied to the ledger (replayed blocks included).",
            ),
            replayed: context.counter(
                "blocks_replayed",
                "Finalized blocks re-applied from storage on start.",
            ),
            txs_applied: context.counter(
                "txs_applied",
                "Transactions in finalized blocks that the ledger applied.",
            ),
            txs_failed: context.counter(
                "txs_failed",
                "Transactions in finalized blocks that the ledger rejected (failed receipt).",
            ),
            height: context.gauge("height", "Height of the last applied block."),
            apply: context.histogram(
                "apply_duration",
                "Seconds to apply one finalized block to the ledger and prune the mempool.",
                Buckets::LOCAL,
            ),
        }
    }
}

/// The transaction gossip's metrics (context label `engine_gossip`).
#[derive(Clone, Debug)]
pub struct GossipMetrics {
    /// Transactions sent to peers.
    pub sent: Counter,
    /// Transactions received from peers.
    pub received: Counter,
    /// Received transactions that were too large or did not decode.
    pub invalid: Counter,
}

impl GossipMetrics {
    /// Registers the gossip's metrics in `context`.
    pub fn register(context: &impl Metrics) -> GossipMetrics {
        GossipMetrics {
            sent: context.counter("sent", "Admitted transactions sent to peers."),
            received: context.counter("received", "Transactions received from peers."),
            invalid: context.counter(
                "invalid",
                "Transactions from peers that were too large or did not decode.",
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Ledger
// ---------------------------------------------------------------------------------------------

/// `status` label of `ledger_jobs` and `ledger_proposals`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// The status's name.
    pub status: &'static str,
}

/// `phase` label of `ledger_stages` and `ledger_disputes`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    /// The phase's name.
    pub phase: &'static str,
}

/// A job status's label value.
pub fn job_status_name(s: JobStatus) -> &'static str {
    match s {
        JobStatus::Active => "active",
        JobStatus::Completed => "completed",
        JobStatus::Failed => "failed",
        JobStatus::Cancelled => "cancelled",
    }
}
const JOB_STATUSES: [&str; 4] = ["active", "completed", "failed", "cancelled"];

/// A dispute phase's label value.
pub fn dispute_phase_name(p: DisputePhase) -> &'static str {
    match p {
        DisputePhase::Bisecting => "bisecting",
        DisputePhase::StepRoots => "step_roots",
        DisputePhase::AwaitingReferee => "awaiting_referee",
        DisputePhase::Resolved => "resolved",
    }
}
const DISPUTE_PHASES: [&str; 4] = ["bisecting", "step_roots", "awaiting_referee", "resolved"];

/// A proposal status's label value.
pub fn proposal_status_name(s: &ProposalStatus) -> &'static str {
    match s {
        ProposalStatus::Voting => "voting",
        ProposalStatus::Passed { .. } => "passed",
        ProposalStatus::Rejected => "rejected",
        ProposalStatus::Enacted => "enacted",
        ProposalStatus::Voided => "voided",
    }
}
const PROPOSAL_STATUSES: [&str; 5] = ["voting", "passed", "rejected", "enacted", "voided"];

/// The stage phases' label values ([`StagePhase::name`]).
const STAGE_PHASES: [&str; 7] = [
    "matching",
    "running",
    "auditing",
    "challengeable",
    "disputed",
    "finalized",
    "cancelled",
];

/// Counts by label value, every known value present (so a count that drops to zero is
/// exported as 0, not left at its last value).
struct Tally(Vec<(&'static str, usize)>);

impl Tally {
    fn of(known: &[&'static str]) -> Tally {
        Tally(known.iter().map(|k| (*k, 0)).collect())
    }

    fn add(&mut self, name: &'static str) {
        match self.0.iter_mut().find(|(k, _)| *k == name) {
            Some((_, n)) => *n += 1,
            None => self.0.push((name, 1)),
        }
    }
}

/// The ledger's metrics (context label `ledger`), read from the finalized state after every
/// applied block ([`Chain::apply`](crate::Chain::apply)).
#[derive(Debug)]
pub struct LedgerMetrics {
    height: Gauge,
    jobs: GaugeFamily<StatusLabel>,
    stages: GaugeFamily<PhaseLabel>,
    disputes: GaugeFamily<PhaseLabel>,
    proposals: GaugeFamily<StatusLabel>,
    providers: Gauge,
    providers_active: Gauge,
    supply: AmountGauge,
    issued: AmountGauge,
    burned: AmountGauge,
    bonded: AmountGauge,
    escrow: AmountGauge,
    slashes: Gauge,
    slashed: AmountGauge,
    misses: Gauge,
    miss_penalties: AmountGauge,
    // Exact running totals behind the four gauges above.
    slash_count: u64,
    slashed_total: u128,
    miss_count: u64,
    miss_penalty_total: u128,
}

impl LedgerMetrics {
    /// Registers the ledger's metrics in `context`.
    pub fn register(context: &impl Metrics) -> LedgerMetrics {
        LedgerMetrics {
            height: context.gauge("height", "Height of the last finalized block applied."),
            jobs: context.family("jobs", "Jobs in the ledger, by status."),
            stages: context.family("stages", "Stages of every job in the ledger, by phase."),
            disputes: context.family("disputes", "Disputes in the ledger, by phase."),
            proposals: context.family(
                "proposals",
                "Governance proposals in the ledger, by status.",
            ),
            providers: context.gauge(
                "providers",
                "Providers registered (retired ones included).",
            ),
            providers_active: context.gauge(
                "providers_active",
                "Providers registered and not retired.",
            ),
            supply: amount_gauge(
                context,
                "supply",
                "Tokens in existence: genesis supply plus issuance (base units; burned tokens included).",
            ),
            issued: amount_gauge(context, "issued", "Tokens minted since genesis (base units)."),
            burned: amount_gauge(
                context,
                "burned",
                "Tokens burned: fees, slash remainders, forfeited bonds (base units).",
            ),
            bonded: amount_gauge(context, "bonded", "Sum of every account's bonded stake (base units)."),
            escrow: amount_gauge(context, "escrow", "Tokens held in jobs' escrow (base units)."),
            slashes: context.gauge("slashes", "Stake slashings since genesis (Slashed events)."),
            slashed: amount_gauge(
                context,
                "slashed",
                "Bonded stake slashed since genesis (base units, sum of Slashed events).",
            ),
            misses: context.gauge(
                "deadline_misses",
                "Providers that missed a commit or reveal deadline since genesis (DeadlineMissed events).",
            ),
            miss_penalties: amount_gauge(
                context,
                "deadline_penalties",
                "Stake taken from providers for missed deadlines since genesis (base units; a late reveal of an audited stage is a slash and is also in `slashed`).",
            ),
            slash_count: 0,
            slashed_total: 0,
            miss_count: 0,
            miss_penalty_total: 0,
        }
    }

    /// Updates every gauge from `state`, after a block whose events were `events` (the
    /// genesis state has none).
    pub fn observe(&mut self, state: &State, events: &[EventRecord]) {
        for record in events {
            match &record.event {
                Event::Slashed { amount, .. } => {
                    self.slash_count += 1;
                    self.slashed_total = self.slashed_total.saturating_add(amount.0);
                }
                Event::DeadlineMissed { penalty, .. } => {
                    self.miss_count += 1;
                    self.miss_penalty_total = self.miss_penalty_total.saturating_add(penalty.0);
                }
                _ => {}
            }
        }
        self.height
            .set(i64::try_from(state.height().0).unwrap_or(i64::MAX));
        self.slashes
            .set(i64::try_from(self.slash_count).unwrap_or(i64::MAX));
        set_amount(&self.slashed, self.slashed_total);
        self.misses
            .set(i64::try_from(self.miss_count).unwrap_or(i64::MAX));
        set_amount(&self.miss_penalties, self.miss_penalty_total);

        let meta = state.meta();
        set_amount(
            &self.supply,
            meta.genesis_supply.0.saturating_add(meta.issued.0),
        );
        set_amount(&self.issued, meta.issued.0);
        set_amount(&self.burned, meta.burned.0);
        set_amount(&self.bonded, meta.total_bonded.0);

        // The census: one scan of jobs, disputes, proposals and providers per block.
        let mut jobs = Tally::of(&JOB_STATUSES);
        let mut stages = Tally::of(&STAGE_PHASES);
        let mut escrow: u128 = 0;
        for (_, job) in state.jobs() {
            jobs.add(job_status_name(job.status));
            escrow = escrow.saturating_add(job.escrow.0);
            for stage in &job.stages {
                stages.add(StagePhase::name(&stage.phase));
            }
        }
        set_amount(&self.escrow, escrow);
        let mut disputes = Tally::of(&DISPUTE_PHASES);
        for (_, d) in state.disputes() {
            disputes.add(dispute_phase_name(d.phase));
        }
        let mut proposals = Tally::of(&PROPOSAL_STATUSES);
        for (_, p) in state.proposals() {
            proposals.add(proposal_status_name(&p.status));
        }
        let (mut providers, mut active) = (0usize, 0usize);
        for (_, p) in state.providers() {
            providers += 1;
            active += usize::from(!p.retired);
        }
        set_count(&self.providers, providers);
        set_count(&self.providers_active, active);
        for (status, n) in jobs.0 {
            set_count(&self.jobs.get_or_create(&StatusLabel { status }), n);
        }
        for (phase, n) in stages.0 {
            set_count(&self.stages.get_or_create(&PhaseLabel { phase }), n);
        }
        for (phase, n) in disputes.0 {
            set_count(&self.disputes.get_or_create(&PhaseLabel { phase }), n);
        }
        for (status, n) in proposals.0 {
            set_count(&self.proposals.get_or_create(&StatusLabel { status }), n);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// API and the exposition
// ---------------------------------------------------------------------------------------------

/// Labels of `api_requests`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route's pattern (`/v1/jobs/{id}`), or `unmatched` (bounded: never the raw path).
    pub route: String,
    /// `GET`, `POST`, `PUT`, `HEAD`, …, or `other`.
    pub method: &'static str,
    /// The response's HTTP status.
    pub status: u16,
}

/// Encodes every metric the runtime holds ([`Metrics::encode`]).
type Encoder = Arc<dyn Fn() -> String + Send + Sync>;

/// The API's metrics (context label `api`) and what `GET /metrics` serves.
#[derive(Clone)]
pub struct ApiMetrics {
    requests: CounterFamily<RequestLabels>,
    duration: Histogram,
    registry: Option<Encoder>,
}

impl std::fmt::Debug for ApiMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiMetrics")
            .field("requests", &self.requests)
            .field("registry", &self.registry.is_some())
            .finish()
    }
}

impl Default for ApiMetrics {
    /// Metrics that go nowhere, and an exposition with only the node's summary gauges (an
    /// API served outside a runtime, as in tests of the API alone).
    fn default() -> Self {
        ApiMetrics {
            requests: Registered::detached(raw::Family::default()),
            duration: Registered::detached(raw::Histogram::new(Buckets::LOCAL)),
            registry: None,
        }
    }
}

impl ApiMetrics {
    /// Registers the API's metrics in `context`, and keeps it: `/metrics` then serves
    /// everything registered in `context`'s runtime (its encoding covers the whole registry).
    pub fn register<E: Metrics>(context: E) -> ApiMetrics {
        ApiMetrics {
            requests: context.family(
                "requests",
                "HTTP requests answered, by route pattern, method and status.",
            ),
            duration: context.histogram(
                "request_duration",
                "Seconds from a request's arrival to its response head.",
                Buckets::LOCAL,
            ),
            registry: Some(Arc::new(move || context.encode())),
        }
    }

    /// Counts one answered request.
    pub fn request(&self, route: String, method: &'static str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method,
                status,
            })
            .inc();
        self.duration.observe(took.as_secs_f64());
    }

    /// One exposition: the runtime's metrics (when registered in one), then `extra`
    /// (families not in the runtime's registry), then a single `# EOF`.
    pub fn exposition(&self, extra: &str) -> String {
        let mut out = self.registry.as_ref().map(|e| e()).unwrap_or_default();
        while let Some(body) = out
            .strip_suffix("# EOF\n")
            .or_else(|| out.strip_suffix("# EOF"))
        {
            out.truncate(body.len());
        }
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(extra);
        if !extra.is_empty() && !extra.ends_with('\n') {
            out.push('\n');
        }
        out.push_str("# EOF\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_runtime::{deterministic, Runner, Supervisor};

    #[test]
    fn one_exposition_with_one_eof() {
        deterministic::Runner::default().start(|context| async move {
            let node = context.child("validator");
            let api = ApiMetrics::register(node.child("api"));
            let mempool = MempoolMetrics::register(&node.child("mempool"));
            mempool.admitted();
            mempool.rejected(&AdmitError::Duplicate);
            api.request("/v1/status".into(), "GET", 200, Duration::from_millis(1));
            let text = api.exposition("# TYPE extra gauge\nextra 1\n");
            assert_eq!(text.matches("# EOF").count(), 1, "{text}");
            assert!(text.ends_with("extra 1\n# EOF\n"), "{text}");
            assert!(text.contains("validator_mempool_admitted_total 1"), "{text}");
            assert!(
                text.contains("validator_mempool_rejected_total{reason=\"duplicate\"} 1"),
                "{text}"
            );
            assert!(
                text.contains(
                    "validator_api_requests_total{route=\"/v1/status\",method=\"GET\",status=\"200\"} 1"
                ),
                "{text}"
            );
            // Outside a runtime: only what the API adds.
            assert_eq!(ApiMetrics::default().exposition(""), "# EOF\n");
        });
    }
}

//! One market run: a cast of providers and requesters on a fresh ledger, block by block.
//!
//! ```text
//!   every block (height h):
//!     accounts   registrations due at h; bonds restoring each provider's stake after
//!                slashes and penalties
//!     submit     the next jobs_per_block jobs of the workload, placed on honest
//!                providers or (a share f) on the next cheating target
//!     act        every party's next move on the open jobs (act.rs): commit, reveal,
//!                audit commit and report, dispute moves, claims, and the cheaters'
//!                doomed attempts; predicts the audit draw of every stage whose last
//!                commitment lands in this block
//!     produce    the ledger applies the block (State::apply_block)
//!     absorb     receipts and events become per-(stage, party) flows (absorb.rs)
//!     finish     jobs whose every stage is final leave the open set
//!   at the end: the supply check, and every account reconciled against its flows
//! ```
//!
//! Every rule is the ledger's: the market only chooses which transactions each party
//! sends, and records what the ledger did with them.

use std::collections::{BTreeMap, HashMap, HashSet};

use agentic_protocol::bisection::max_rounds;
use agentic_protocol::reputation::ReputationParams;
use agentic_protocol::state::{JobStatus, StagePhase};
use agentic_protocol::test_utils::{
    address_of, key, offer, GenesisBuilder, TestReferee, Trace as TestTrace,
};
use agentic_protocol::tx::StageResult;
use agentic_protocol::types::{Amount, VerificationLevel};
use agentic_protocol::{Address, DisputeId, Hash, JobId, Params, TxBody};
use commonware_cryptography::ed25519::PrivateKey;

use crate::cast::{Actor, Cast, Coalition, Target};
use crate::ledger::{Ledger, Tag};
use crate::strategy::Strategy;
use crate::workload::{Span, Workload};
use crate::{Error, Observer};

mod absorb;
mod act;

/// The chain id of every market run.
const CHAIN: u64 = 66;
/// Offer capacity of every provider.
const CAPACITY: u32 = 100_000;
/// Every identity's spendable balance at genesis.
const BALANCE: u128 = 1_000_000_000_000;
/// Blocks a market run may take past its last submission.
const TAIL_BLOCKS: u64 = 1_000;

/// What one party did for one stage, fixed when it first acts.
pub(crate) struct Work {
    /// The trace it can open in a dispute (none for random output and blind commitments).
    pub(crate) trace: Option<TestTrace>,
    /// What it reveals or reports (none for a blind commitment).
    pub(crate) result: Option<StageResult>,
    pub(crate) salt: Hash,
    pub(crate) commitment: Hash,
    pub(crate) computed_ops: u64,
}

/// Which transaction a party sent (each at most once per stage, round or dispute).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Act {
    Commit,
    Reveal,
    AuditCommit,
    AuditReport,
    Move,
    Claim,
    Unbond,
    Exit,
}

/// One market job.
pub(crate) struct JobRun {
    pub(crate) id: Option<JobId>,
    pub(crate) units: Vec<usize>,
    /// Posted by the farming requester over an input nobody can fetch.
    pub(crate) farmed: bool,
    /// The farming requester's flows on it.
    pub(crate) escrow: u128,
    pub(crate) refund: u128,
    pub(crate) fee: u128,
    pub(crate) status: Option<JobStatus>,
}

/// The audit draw of a stage at the block its last commitment landed, as the bench
/// computed it from the ledger's state.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Draw {
    pub(crate) p_ppm: u32,
    /// The placed provider's reputation and slashable stake.
    pub(crate) score_ppm: u32,
    pub(crate) slashable: u128,
    /// Its coalition partners' share of the stake qualified for the auditor draw.
    pub(crate) share: f64,
}

/// One stage of a market job.
#[derive(Clone, Debug, Default)]
pub(crate) struct Unit {
    pub(crate) job: usize,
    pub(crate) span: Span,
    /// The stage's honest output.
    pub(crate) truth: Hash,
    /// The provider first matched to replica 0 (the placed one unless it no longer
    /// qualified at matching).
    pub(crate) provider: usize,
    pub(crate) matched: bool,
    /// Whether it was placed for a cheating target.
    pub(crate) cheat: bool,
    /// Replica 0's bill: ops × its price.
    pub(crate) value: u128,
    /// The draw at the commit block that included the placed provider.
    pub(crate) draw: Option<Draw>,
    /// Whether that draw audited the stage.
    pub(crate) audited: Option<bool>,
    /// `auditor_sybil` coalitions' shares of the qualified stake at the latest draw.
    pub(crate) shares: Vec<(usize, f64)>,
    pub(crate) auditor: Option<usize>,
    /// The auditor was a partner of the placed provider's coalition.
    pub(crate) self_audited: bool,
    pub(crate) audit_committed: bool,
    pub(crate) audit_settled: bool,
    pub(crate) revealed: bool,
    pub(crate) dispute: Option<DisputeId>,
    pub(crate) rounds: u32,
    /// The stage's final phase and its job's final status.
    pub(crate) phase: &'static str,
    pub(crate) status: Option<JobStatus>,
}

impl Unit {
    pub(crate) fn failed(&self) -> bool {
        self.status == Some(JobStatus::Failed) && self.phase == "cancelled"
    }
}

/// One party's flows on one stage (base units).
#[derive(Clone, Debug, Default)]
pub(crate) struct Flow {
    pub(crate) auditor: bool,
    /// It approved its own coalition worker's result as the auditor.
    pub(crate) approved_partner: bool,
    pub(crate) price: u128,
    pub(crate) paid: u128,
    pub(crate) audit_fee: u128,
    /// Its share of a loser's slash.
    pub(crate) share: u128,
    pub(crate) compensation: u128,
    pub(crate) slashed: u128,
    pub(crate) penalty: u128,
    pub(crate) fees: u128,
    pub(crate) computed_ops: u64,
    pub(crate) revealed: Option<Hash>,
    pub(crate) reported: bool,
    pub(crate) missed_under_audit: bool,
}

impl Flow {
    pub(crate) fn income(&self) -> i128 {
        (self.paid + self.audit_fee + self.share + self.compensation) as i128
            - (self.slashed + self.penalty) as i128
    }
}

/// A transaction an actor sends next: `(actor, body, tag)`.
pub(crate) type Action = (usize, TxBody, Tag);

/// Figures and state of one market run.
pub(crate) struct Market {
    pub(crate) label: &'static str,
    pub(crate) level: VerificationLevel,
    pub(crate) cheater_share: f64,
    pub(crate) compute_cost: u64,
    pub(crate) params: Params,
    pub(crate) rp: ReputationParams,
    pub(crate) actors: Vec<Actor>,
    pub(crate) coalitions: Vec<Coalition>,
    pub(crate) targets: Vec<Target>,
    pub(crate) index: HashMap<Address, usize>,
    pub(crate) ledger: Ledger,
    pub(crate) referee: TestReferee,
    pub(crate) requester: PrivateKey,
    pub(crate) farmer: PrivateKey,
    pub(crate) registered: Vec<bool>,
    pub(crate) jobs: Vec<JobRun>,
    pub(crate) units: Vec<Unit>,
    pub(crate) flows: HashMap<(usize, usize), Flow>,
    /// Fees of transactions that belong to no stage (registration, top-ups, exits).
    pub(crate) overhead_fees: Vec<u128>,
    pub(crate) by_id: HashMap<JobId, usize>,
    pub(crate) by_dispute: HashMap<DisputeId, usize>,
    pub(crate) active: Vec<JobId>,
    pub(crate) works: HashMap<(JobId, u32, Address), Work>,
    pub(crate) sent: HashSet<(u64, Address, Act, u32)>,
    pub(crate) next_plan: usize,
    pub(crate) next_target: usize,
    // Figures.
    pub(crate) blocks: u64,
    pub(crate) stage_ops: u128,
    pub(crate) audited_ops: u128,
    pub(crate) audited_stages: usize,
    pub(crate) honest_slashed: usize,
    pub(crate) honest_missed: usize,
    /// Refused doomed attempts, by `strategy/refusal`.
    pub(crate) rejections: BTreeMap<String, usize>,
    /// Refused doomed attempts, by actor and refusal.
    pub(crate) refused_by: BTreeMap<(usize, &'static str), usize>,
    pub(crate) disputes: usize,
    pub(crate) predictions: usize,
    pub(crate) predictions_wrong: usize,
    pub(crate) refills_after_reveal: usize,
    pub(crate) partner_refills: usize,
    /// Per `auditor_sybil` coalition: Σ of its qualified-stake share over every audit
    /// drawn in the run, and how many of them drew one of its partners.
    pub(crate) partner_draws: BTreeMap<usize, (f64, usize)>,
    pub(crate) auditor_commitments_unpaid: (usize, u128),
    pub(crate) payer_compensated: u128,
    pub(crate) claims: usize,
    pub(crate) unavailable: usize,
    /// Per actor: accepted unbonds and the amount.
    pub(crate) unbonded: BTreeMap<usize, (usize, u128)>,
    pub(crate) anomalies: Vec<String>,
    pub(crate) unreconciled: Vec<String>,
    pub(crate) supply_ok: bool,
    pub(crate) rounds_bound: u32,
}

impl Market {
    /// Runs the workload `w` on a fresh ledger with `cast` at `level`, placing
    /// `cheater_share` of the jobs on the cast's cheating targets.
    pub(crate) fn run(
        w: &Workload,
        cast: Cast,
        level: VerificationLevel,
        cheater_share: f64,
        label: &'static str,
        observer: &mut dyn Observer,
    ) -> Result<Market, Error> {
        observer.market_started(label, w.jobs.len());
        let params = Params::default();
        let (requester, farmer) = (key(1), key(2));
        let mut genesis = GenesisBuilder::new(CHAIN)
            .params(params.clone())
            .account(address_of(&requester), u128::from(u64::MAX), 0)
            .account(address_of(&farmer), u128::from(u64::MAX), 0);
        for a in &cast.actors {
            genesis = genesis.account(a.addr, BALANCE, a.bonded);
        }
        let ledger = Ledger::new(&genesis.build(), w.seed)?;
        let index = cast
            .actors
            .iter()
            .enumerate()
            .map(|(i, a)| (a.addr, i))
            .collect();
        let n = cast.actors.len();
        let mut m = Market {
            label,
            level,
            cheater_share,
            compute_cost: w.compute_cost,
            rp: ReputationParams {
                half_life_blocks: params.reputation_half_life,
                stake_per_value_ppm: params.reputation_stake_ratio,
                ..ReputationParams::default()
            },
            params,
            actors: cast.actors,
            coalitions: cast.coalitions,
            targets: cast.targets,
            index,
            ledger,
            referee: TestReferee::default(),
            requester,
            farmer,
            registered: vec![false; n],
            jobs: Vec::with_capacity(w.jobs.len()),
            units: Vec::with_capacity(w.jobs.len() * 2),
            flows: HashMap::new(),
            overhead_fees: vec![0; n],
            by_id: HashMap::new(),
            by_dispute: HashMap::new(),
            active: Vec::new(),
            works: HashMap::new(),
            sent: HashSet::new(),
            next_plan: 0,
            next_target: 0,
            blocks: 0,
            stage_ops: 0,
            audited_ops: 0,
            audited_stages: 0,
            honest_slashed: 0,
            honest_missed: 0,
            rejections: BTreeMap::new(),
            refused_by: BTreeMap::new(),
            disputes: 0,
            predictions: 0,
            predictions_wrong: 0,
            refills_after_reveal: 0,
            partner_refills: 0,
            partner_draws: BTreeMap::new(),
            auditor_commitments_unpaid: (0, 0),
            payer_compensated: 0,
            claims: 0,
            unavailable: 0,
            unbonded: BTreeMap::new(),
            anomalies: Vec::new(),
            unreconciled: Vec::new(),
            supply_ok: false,
            rounds_bound: max_rounds(w.layers + 1),
        };
        let last_block = w.first_job + w.submit_blocks() + TAIL_BLOCKS;
        loop {
            let height = m.ledger.state.height().0 + 1;
            if height > last_block {
                return Err(Error::Stalled {
                    run: label,
                    open: m.active.len(),
                    blocks: height - 1,
                });
            }
            let topped = m.accounts(height);
            if height >= w.first_job {
                m.submit(w, &topped)?;
            }
            let completing = m.act(w, height, &topped);
            let (out, tags) = m.ledger.produce(&m.referee)?;
            m.blocks = out.height.0;
            m.absorb(&out, &tags, &completing)?;
            observer.jobs_finished(m.finish_jobs());
            if m.next_plan == w.jobs.len() && m.active.is_empty() {
                break;
            }
        }
        m.supply_ok = m.ledger.state.total_supply_check();
        m.reconcile();
        tracing::info!(
            label,
            blocks = m.blocks,
            audited = m.audited_stages,
            disputes = m.disputes,
            "market run finished"
        );
        Ok(m)
    }

    pub(crate) fn flow(&mut self, unit: usize, who: usize) -> &mut Flow {
        self.flows.entry((unit, who)).or_default()
    }

    fn unit_of(&self, job: JobId, stage: u32) -> Result<usize, Error> {
        let j = self
            .by_id
            .get(&job)
            .ok_or(Error::Untracked("an event of an unknown job"))?;
        self.jobs[*j]
            .units
            .get(stage as usize)
            .copied()
            .ok_or(Error::Untracked("an event of an unknown stage"))
    }

    /// Registrations due this block, and bonds that restore each provider's slashable
    /// stake after slashes and penalties (returned per address, as they apply before
    /// anything else in the block).
    fn accounts(&mut self, height: u64) -> HashMap<Address, u128> {
        for (i, a) in self.actors.iter().enumerate() {
            if !self.registered[i] && a.join <= height {
                self.registered[i] = true;
                self.ledger.push(
                    &a.key,
                    TxBody::RegisterProvider {
                        offer: offer(a.price, CAPACITY),
                        stake: Amount::ZERO,
                    },
                    Tag::none(),
                );
                if a.strategy == Strategy::RetireWhileDisputed {
                    self.ledger.push(
                        &a.key,
                        TxBody::Unbond {
                            amount: Amount(a.stake / 2),
                        },
                        Tag::none(),
                    );
                }
            }
        }
        let mut topped = HashMap::new();
        for a in &self.actors {
            let slashable = self.ledger.state.slashable(&a.addr).0;
            if slashable < a.stake {
                topped.insert(a.addr, a.stake - slashable);
                self.ledger.push(
                    &a.key,
                    TxBody::Bond {
                        amount: Amount(a.stake - slashable),
                    },
                    Tag::none(),
                );
            }
        }
        topped
    }

    fn audit_fee(&self, u: usize, auditor: usize) -> u128 {
        Amount::cost(self.units[u].span.ops, Amount(self.actors[auditor].price))
            .unwrap_or_default()
            .0
    }

    /// The ledger paid an auditor its fee without an event of its own (a won dispute, or
    /// its release when the replicas disputed among themselves); the reconciliation of
    /// every account checks these.
    fn settle_audit(&mut self, u: usize, auditor: usize) {
        let fee = self.audit_fee(u, auditor);
        self.flow(u, auditor).audit_fee += fee;
        self.units[u].audit_settled = true;
    }

    /// Jobs whose every stage is final leave the open set; returns how many.
    fn finish_jobs(&mut self) -> usize {
        let state = &self.ledger.state;
        let mut finished = Vec::new();
        self.active.retain(|id| {
            let Some(job) = state.job(*id) else {
                return false;
            };
            let done = job.status != JobStatus::Active
                && job
                    .stages
                    .iter()
                    .all(|s| matches!(s.phase, StagePhase::Finalized | StagePhase::Cancelled));
            if done {
                finished.push(*id);
            }
            !done
        });
        for id in &finished {
            let Some(job) = self.ledger.state.job(*id) else {
                continue;
            };
            let j = self.by_id[id];
            self.jobs[j].status = Some(job.status);
            for (s, st) in job.stages.iter().enumerate() {
                let u = self.jobs[j].units[s];
                self.units[u].phase = st.phase.name();
                self.units[u].status = Some(job.status);
            }
        }
        finished.len()
    }

    /// Every identity's balance + slashable stake against its genesis amount and the flows
    /// the bench attributed to it; the farming requester's balance against its jobs.
    fn reconcile(&mut self) {
        let mut sums = vec![0i128; self.actors.len()];
        for ((_, who), f) in &self.flows {
            sums[*who] += f.income() - f.fees as i128;
        }
        for (i, a) in self.actors.iter().enumerate() {
            let state = &self.ledger.state;
            let end = (state.balance(&a.addr).0 + state.slashable(&a.addr).0) as i128;
            let start = (BALANCE + a.bonded) as i128;
            let attributed = sums[i] - self.overhead_fees[i] as i128;
            if end - start != attributed {
                self.unreconciled.push(format!(
                    "{} #{i}: changed by {}, flows say {attributed}",
                    a.strategy.name(),
                    end - start
                ));
            }
        }
        let farmer = address_of(&self.farmer);
        let change = self.ledger.state.balance(&farmer).0 as i128 - i128::from(u64::MAX);
        let attributed: i128 = self
            .jobs
            .iter()
            .filter(|j| j.farmed)
            .map(|j| j.refund as i128 - j.escrow as i128 - j.fee as i128)
            .sum();
        if change != attributed {
            self.unreconciled.push(format!(
                "farming requester: changed by {change}, its jobs say {attributed}"
            ));
        }
    }
}

//! The providers and requesters: they watch their home validator's finalized chain (one
//! one-way city latency late), do metered work (a sleep of `ops / speed`, no
//! computation beyond the test model's hashes), and send signed transactions back
//! through the same validator (one more one-way latency).
//!
//! One driver task runs every agent: each tick it reads the blocks every validator
//! applied since the last tick (finality samples), hands each agent the events of its
//! home validator's new blocks, checks the stages it waits on, and sends the actions
//! that fell due. An agent sends a transaction only when the ledger will take it; a
//! rejected one (it should not happen) is counted and the agent resyncs its nonce.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::time::{Duration, UNIX_EPOCH};

use agentic_node::{SharedChain, Submit};
use agentic_protocol::state::{Job, Stage, StagePhase};
use agentic_protocol::test_utils::salt_for;
use agentic_protocol::tx::StageResult;
use agentic_protocol::{
    Address, Amount, ChainId, Event, Hash, Height, JobId, Leaves, SignedTx, State, Tx, TxBody,
};
use commonware_cryptography::ed25519::PrivateKey;
use commonware_runtime::{deterministic, Clock};

use super::net::Validator;
use super::world::{Behaviour, ProviderSpec, World};
use super::{Samples, Tally};

/// How often the driver looks at the validators.
pub const TICK: Duration = Duration::from_millis(10);

/// Who acts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Agent {
    Provider(usize),
    Requester(usize),
}

/// A transaction an agent will send when it falls due.
#[derive(Clone, Debug)]
enum Action {
    /// The provider stops acting, for good (not a transaction).
    Crash,
    /// The provider decides to leave: it retires once it holds nothing open (not a
    /// transaction).
    Leave,
    Register,
    Retire,
    Submit(usize),
    Commit {
        job: JobId,
        stage: u32,
        commitment: Hash,
    },
    Reveal {
        job: JobId,
        stage: u32,
        result: StageResult,
    },
    AuditCommit {
        job: JobId,
        stage: u32,
        commitment: Hash,
    },
    AuditReport {
        job: JobId,
        stage: u32,
        result: StageResult,
    },
}

/// A stage a provider works on, or audits.
#[derive(Clone, Debug, Default)]
struct Work {
    result: Option<StageResult>,
    committed: bool,
    done: bool,
}

/// What every agent knows and waits for.
struct AgentState {
    nonce: u64,
    in_flight: u32,
    registered: bool,
    retired: bool,
    crashed: bool,
}

/// A job from its requester's side.
struct Bought {
    requester: usize,
    decided_at: Duration,
    job: Option<JobId>,
}

/// The driver's record of the run.
pub struct Driver<'w> {
    world: &'w World,
    chain_id: ChainId,
    validators: &'w [Validator],
    state: HashMap<Agent, AgentState>,
    by_addr: HashMap<Address, usize>,
    queue: BinaryHeap<Reverse<(Duration, u64)>>,
    actions: HashMap<u64, (Agent, Action)>,
    seq: u64,
    /// Provider work by home validator, then (job, stage, provider).
    work: Vec<BTreeMap<(JobId, u32, usize), Work>>,
    /// Audits by home validator, then (job, stage, auditor).
    audits: Vec<BTreeMap<(JobId, u32, usize), Work>>,
    /// Providers due to leave that have not retired yet, by home validator.
    leaving: Vec<BTreeSet<usize>>,
    /// Every transaction sent, by id (for the replay of the chain).
    pub sent: HashMap<Hash, SignedTx>,
    mine: HashMap<Hash, (Agent, Action)>,
    bought: Vec<Bought>,
    job_of: BTreeMap<JobId, usize>,
    seen: Vec<u64>,
    next_arrival: usize,
    /// What happened.
    pub tally: Tally,
    /// Finality (ms from the block's timestamp to its application), every validator.
    pub finality_ms: Samples,
    /// Job latency (ms from the requester's decision to its seeing the job paid).
    pub job_latency_ms: Samples,
    /// Price paid / the cheapest offer qualified for the job, at the assignment.
    pub price_ratio: Samples,
}

fn now_since_epoch(context: &deterministic::Context) -> Duration {
    context
        .current()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

impl<'w> Driver<'w> {
    /// A driver for `world` on `validators` (indexed as the world's validator cities).
    pub fn new(world: &'w World, validators: &'w [Validator], chain_id: ChainId) -> Driver<'w> {
        let mut state = HashMap::new();
        let mut queue = BinaryHeap::new();
        let mut actions = HashMap::new();
        let mut seq = 0;
        let mut at = |t: Duration, a: Agent, action: Action| {
            queue.push(Reverse((t, seq)));
            actions.insert(seq, (a, action));
            seq += 1;
        };
        for (i, p) in world.providers.iter().enumerate() {
            let a = Agent::Provider(i);
            let mut s = AgentState::new();
            match p.join_at {
                Some(t) => at(t, a, Action::Register),
                None => s.registered = true,
            }
            state.insert(a, s);
            if let Some(t) = p.crash_at {
                at(t, a, Action::Crash);
            }
            if let Some(t) = p.leave_at {
                at(t, a, Action::Leave);
            }
        }
        for i in 0..world.requesters.len() {
            state.insert(Agent::Requester(i), AgentState::new());
        }
        Driver {
            world,
            validators,
            chain_id,
            state,
            by_addr: world
                .providers
                .iter()
                .enumerate()
                .map(|(i, p)| (p.addr, i))
                .collect(),
            queue,
            actions,
            seq,
            work: vec![BTreeMap::new(); validators.len()],
            audits: vec![BTreeMap::new(); validators.len()],
            leaving: vec![BTreeSet::new(); validators.len()],
            sent: HashMap::new(),
            mine: HashMap::new(),
            bought: Vec::new(),
            job_of: BTreeMap::new(),
            seen: vec![0; validators.len()],
            next_arrival: 0,
            tally: Tally::default(),
            finality_ms: Samples::default(),
            job_latency_ms: Samples::default(),
            price_ratio: Samples::default(),
        }
    }

    /// Runs the agents until `end` (virtual time since the start), calling `progress`
    /// with the virtual time reached about once a virtual second.
    pub async fn run(
        &mut self,
        context: &deterministic::Context,
        start: Duration,
        end: Duration,
        progress: &mut dyn FnMut(Duration, u64),
    ) {
        let mut last_report = Duration::ZERO;
        loop {
            let now = now_since_epoch(context).saturating_sub(start);
            if now >= end {
                break;
            }
            self.arrivals(now);
            self.observe(now, start);
            self.send_due(now);
            if now >= last_report + Duration::from_secs(1) {
                last_report = now;
                progress(now, self.seen.first().copied().unwrap_or(0));
            }
            context.sleep(TICK).await;
        }
    }

    fn push(&mut self, at: Duration, agent: Agent, action: Action) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.actions.insert(self.seq, (agent, action));
    }

    /// The one-way latency between an agent and its home validator.
    fn leg(&self, agent: Agent) -> Duration {
        let (city, home) = match agent {
            Agent::Provider(i) => (self.world.providers[i].city, self.world.providers[i].home),
            Agent::Requester(i) => (self.world.requesters[i].city, self.world.requesters[i].home),
        };
        self.world
            .cities
            .one_way(city, self.world.validator_cities[home])
    }

    fn home(&self, agent: Agent) -> usize {
        match agent {
            Agent::Provider(i) => self.world.providers[i].home,
            Agent::Requester(i) => self.world.requesters[i].home,
        }
    }

    fn arrivals(&mut self, now: Duration) {
        while let Some(a) = self.world.arrivals.get(self.next_arrival) {
            if a.at > now {
                break;
            }
            let agent = Agent::Requester(a.requester);
            let due = a.at + self.leg(agent);
            self.bought.push(Bought {
                requester: a.requester,
                decided_at: a.at,
                job: None,
            });
            self.push(due, agent, Action::Submit(self.next_arrival));
            self.next_arrival += 1;
        }
    }

    /// Reads the blocks every validator applied since the last tick.
    fn observe(&mut self, now: Duration, start: Duration) {
        for v in 0..self.validators.len() {
            let chain: SharedChain = self.validators[v].chain.clone();
            let Ok(chain) = chain.read() else { continue };
            let height = chain.height().0;
            let changed = self.seen[v] < height;
            while self.seen[v] < height {
                let h = self.seen[v] + 1;
                self.seen[v] = h;
                let Some(record) = chain.block(Height(h)) else {
                    continue;
                };
                let applied = now + start;
                let stamped = Duration::from_millis(record.timestamp_ms);
                self.finality_ms
                    .push(applied.saturating_sub(stamped).as_secs_f64() * 1e3);
                if v == 0 {
                    self.tally.blocks += 1;
                    self.tally.txs += record.tx_ids.len() as u64;
                    self.cheapest_check(chain.state(), &record.events);
                }
                // Receipts first (a failed transaction resyncs its sender's nonce), then
                // events, for the agents homed here.
                for id in &record.tx_ids {
                    let Some((agent, action)) = self.mine.get(id).cloned() else {
                        continue;
                    };
                    if self.home(agent) != v {
                        continue;
                    }
                    self.receipt(chain.state(), &chain.receipt(id), agent, &action);
                }
                for ev in &record.events {
                    self.event(v, now, &ev.event, ev.tx, &record.tx_ids);
                }
            }
            if changed {
                self.watch(chain.state(), v, now);
            }
        }
    }

    fn receipt(
        &mut self,
        state: &State,
        receipt: &Option<agentic_node::TxReceipt>,
        agent: Agent,
        action: &Action,
    ) {
        let Some(receipt) = receipt else { return };
        if let Some(s) = self.state.get_mut(&agent) {
            s.in_flight = s.in_flight.saturating_sub(1);
        }
        if let Err(e) = &receipt.result {
            *self
                .tally
                .rejected
                .entry(format!("{}: {e}", action.name()))
                .or_default() += 1;
            let addr = self.addr(agent);
            if let Some(s) = self.state.get_mut(&agent) {
                s.nonce = state.nonce(&addr);
            }
            if let (Agent::Provider(i), Action::Retire) = (agent, action) {
                // Matched in the same block: stay, and try again once free.
                if let Some(s) = self.state.get_mut(&agent) {
                    s.retired = false;
                }
                self.leaving[self.world.providers[i].home].insert(i);
            }
        }
    }

    fn addr(&self, agent: Agent) -> Address {
        match agent {
            Agent::Provider(i) => self.world.providers[i].addr,
            Agent::Requester(i) => self.world.requesters[i].addr,
        }
    }

    fn key(&self, agent: Agent) -> &PrivateKey {
        match agent {
            Agent::Provider(i) => &self.world.providers[i].key,
            Agent::Requester(i) => &self.world.requesters[i].key,
        }
    }

    /// The price paid against the cheapest offer that qualified for the same job, at
    /// every assignment (read at validator 0, after the block): the providers the job's
    /// requirements (price cap, reputation, stake, region, capability, free capacity,
    /// exclusions) admit, plus the one assigned (whose capacity the assignment may have
    /// used up). The ledger draws by stake among them, so the ratio says what the draw
    /// costs a requester over the cheapest seller it would have accepted.
    fn cheapest_check(&mut self, state: &State, events: &[agentic_protocol::EventRecord]) {
        let assigned: Vec<(JobId, Amount)> = events
            .iter()
            .filter_map(|e| match e.event {
                Event::StageAssigned { job, price, .. } => Some((job, price)),
                _ => None,
            })
            .collect();
        let mut cheapest: BTreeMap<JobId, u128> = BTreeMap::new();
        for (job, price) in assigned {
            let floor = *cheapest.entry(job).or_insert_with(|| {
                state
                    .providers()
                    .filter(|(a, _)| state.qualifies_for(job, a))
                    .map(|(_, p)| p.offer.price.0)
                    .min()
                    .unwrap_or(u128::MAX)
            });
            let floor = floor.min(price.0).max(1);
            self.price_ratio.push(price.0 as f64 / floor as f64);
        }
    }

    fn event(&mut self, v: usize, now: Duration, event: &Event, tx: Option<u32>, tx_ids: &[Hash]) {
        match *event {
            Event::JobSubmitted { job, .. } => {
                let Some(id) = tx.and_then(|t| tx_ids.get(t as usize)) else {
                    return;
                };
                if let Some((agent @ Agent::Requester(_), Action::Submit(k))) =
                    self.mine.get(id).cloned()
                {
                    if self.home(agent) == v {
                        self.bought[k].job = Some(job);
                        self.job_of.insert(job, k);
                        self.tally.jobs_submitted += 1;
                    }
                }
            }
            Event::StageAssigned {
                job,
                stage,
                provider,
                ..
            } => {
                let Some(p) = self.homed_provider(&provider, v) else {
                    return;
                };
                self.tally.assignments += 1;
                self.work[v].insert((job, stage, p), Work::default());
            }
            Event::AuditAssigned {
                job,
                stage,
                auditor,
                ..
            } => {
                let Some(p) = self.homed_provider(&auditor, v) else {
                    return;
                };
                self.tally.audits += 1;
                self.audits[v].insert((job, stage, p), Work::default());
            }
            Event::JobCompleted { job, .. } | Event::JobSettled { job, .. } => {
                self.finish(v, now, job, true);
            }
            Event::JobFailed { job, .. } | Event::JobCancelled { job, .. } => {
                self.finish(v, now, job, false);
            }
            Event::DeadlineMissed { .. } if v == 0 => self.tally.deadlines_missed += 1,
            Event::AuditMissed { .. } if v == 0 => self.tally.audits_missed += 1,
            Event::Slashed { amount, .. } if v == 0 => self.tally.slashed += amount.0,
            Event::StagePaid { .. } if v == 0 => self.tally.stages_paid += 1,
            Event::ProviderRegistered { .. } if v == 0 => self.tally.registered += 1,
            Event::ProviderRetired { .. } if v == 0 => self.tally.retired += 1,
            _ => {}
        }
    }

    /// The provider at `addr`, if its home validator is `v`.
    fn homed_provider(&self, addr: &Address, v: usize) -> Option<usize> {
        let &p = self.by_addr.get(addr)?;
        (self.world.providers[p].home == v).then_some(p)
    }

    fn finish(&mut self, v: usize, now: Duration, job: JobId, paid: bool) {
        let Some(&k) = self.job_of.get(&job) else {
            return;
        };
        let b = &self.bought[k];
        if self.world.requesters[b.requester].home != v {
            return;
        }
        let seen = now + self.leg(Agent::Requester(b.requester));
        if paid {
            self.tally.jobs_completed += 1;
            self.job_latency_ms
                .push(seen.saturating_sub(b.decided_at).as_secs_f64() * 1e3);
        } else {
            self.tally.jobs_failed += 1;
        }
        self.job_of.remove(&job);
    }

    /// Checks the stages the agents homed at `v` wait on, against `v`'s state.
    fn watch(&mut self, state: &State, v: usize, now: Duration) {
        let mut due = Vec::new();
        self.work[v].retain(|_, w| !w.done);
        self.audits[v].retain(|_, w| !w.done);
        for (&(job, stage, p), w) in self.work[v].iter_mut() {
            let spec = &self.world.providers[p];
            let Some((j, st)) = job_stage(state, job, stage) else {
                w.done = true;
                continue;
            };
            let mine = st
                .slots
                .iter()
                .filter_map(|s| s.assignment.as_ref())
                .find(|a| a.provider == spec.addr);
            let Some(assignment) = mine else {
                w.done = true;
                continue;
            };
            if !w.committed {
                let Some((result, commitment, compute)) = honest_work(j, job, stage, spec) else {
                    continue;
                };
                w.result = Some(result);
                w.committed = true;
                if spec.behaviour != Behaviour::NoShow {
                    due.push((
                        compute,
                        Agent::Provider(p),
                        Action::Commit {
                            job,
                            stage,
                            commitment,
                        },
                    ));
                }
                continue;
            }
            if assignment.result.is_some() {
                w.done = true;
                continue;
            }
            if let StagePhase::Running {
                reveal_deadline: Some(_),
            } = st.phase
            {
                if assignment.commitment.is_some() {
                    w.done = true;
                    if spec.behaviour == Behaviour::Honest {
                        if let Some(result) = w.result {
                            due.push((
                                Duration::ZERO,
                                Agent::Provider(p),
                                Action::Reveal { job, stage, result },
                            ));
                        }
                    }
                }
            }
        }
        for (&(job, stage, p), w) in self.audits[v].iter_mut() {
            let spec = &self.world.providers[p];
            let Some((j, st)) = job_stage(state, job, stage) else {
                w.done = true;
                continue;
            };
            if !w.committed {
                let waiting = st
                    .audit
                    .as_ref()
                    .is_some_and(|a| a.auditor == spec.addr && a.commitment.is_none());
                if !waiting {
                    w.done = true;
                    continue;
                }
                let Some((result, commitment, compute)) = honest_work(j, job, stage, spec) else {
                    continue;
                };
                w.result = Some(result);
                w.committed = true;
                if spec.behaviour == Behaviour::Honest {
                    due.push((
                        compute,
                        Agent::Provider(p),
                        Action::AuditCommit {
                            job,
                            stage,
                            commitment,
                        },
                    ));
                }
                continue;
            }
            if let StagePhase::Auditing { auditor, .. } = st.phase {
                if auditor == spec.addr {
                    w.done = true;
                    if spec.behaviour == Behaviour::Honest {
                        if let Some(result) = w.result {
                            due.push((
                                Duration::ZERO,
                                Agent::Provider(p),
                                Action::AuditReport { job, stage, result },
                            ));
                        }
                    }
                }
            } else if !matches!(st.phase, StagePhase::Running { .. }) {
                w.done = true;
            }
        }
        for (extra, agent, action) in due {
            // Seen one leg late, worked on, sent one leg later.
            let at = now + self.leg(agent) * 2 + extra;
            self.push(at, agent, action);
        }
        // Leaves: a provider due to leave retires once it holds nothing open.
        let leaving: Vec<usize> = self.leaving[v].iter().copied().collect();
        for i in leaving {
            let p = &self.world.providers[i];
            let Some(s) = self.state.get(&Agent::Provider(i)) else {
                continue;
            };
            if s.retired || s.crashed || s.in_flight > 0 || !s.registered {
                continue;
            }
            let free = state
                .provider(&p.addr)
                .is_some_and(|x| x.active == 0 && x.open == 0);
            if free {
                if let Some(s) = self.state.get_mut(&Agent::Provider(i)) {
                    s.retired = true;
                }
                self.leaving[v].remove(&i);
                self.push(
                    now + self.leg(Agent::Provider(i)),
                    Agent::Provider(i),
                    Action::Retire,
                );
            }
        }
    }

    fn send_due(&mut self, now: Duration) {
        while let Some(&Reverse((at, seq))) = self.queue.peek() {
            if at > now {
                break;
            }
            self.queue.pop();
            let Some((agent, action)) = self.actions.remove(&seq) else {
                continue;
            };
            if self.state.get(&agent).is_some_and(|s| s.crashed) {
                continue;
            }
            match (agent, action) {
                (Agent::Provider(_), Action::Crash) => {
                    if let Some(s) = self.state.get_mut(&agent) {
                        s.crashed = true;
                    }
                    self.tally.crashed += 1;
                }
                (Agent::Provider(i), Action::Leave) => {
                    self.leaving[self.world.providers[i].home].insert(i);
                }
                (agent, action) => self.send(agent, action),
            }
        }
    }

    fn body(&self, agent: Agent, action: &Action) -> Option<TxBody> {
        Some(match (agent, action) {
            (Agent::Provider(i), Action::Register) => TxBody::RegisterProvider {
                offer: self.world.providers[i].offer(&self.world.cities),
                stake: Amount::ZERO,
            },
            (_, Action::Retire) => TxBody::Retire,
            (_, Action::Submit(k)) => TxBody::SubmitJob {
                spec: self.world.arrivals[*k].spec.clone(),
            },
            (
                _,
                &Action::Commit {
                    job,
                    stage,
                    commitment,
                },
            ) => TxBody::CommitResult {
                job,
                stage,
                commitment,
            },
            (Agent::Provider(p), &Action::Reveal { job, stage, result }) => TxBody::RevealResult {
                job,
                stage,
                result,
                salt: salt_for(&self.world.providers[p].addr, job, stage),
            },
            (
                _,
                &Action::AuditCommit {
                    job,
                    stage,
                    commitment,
                },
            ) => TxBody::AuditCommit {
                job,
                stage,
                commitment,
            },
            (Agent::Provider(p), &Action::AuditReport { job, stage, result }) => {
                TxBody::AuditReport {
                    job,
                    stage,
                    result,
                    salt: salt_for(&self.world.providers[p].addr, job, stage),
                }
            }
            _ => return None,
        })
    }

    fn send(&mut self, agent: Agent, action: Action) {
        let Some(body) = self.body(agent, &action) else {
            return;
        };
        let home = self.home(agent);
        let validator = &self.validators[home];
        let fee = match validator.chain.read() {
            Ok(c) => c.state().params().required_fee(&body),
            Err(_) => return,
        };
        let nonce = self.state.get(&agent).map(|s| s.nonce).unwrap_or(0);
        let tx = SignedTx::sign(
            self.key(agent),
            Tx {
                chain_id: self.chain_id,
                nonce,
                fee,
                body,
            },
        );
        match validator.submitter.submit(tx.clone()) {
            Ok(id) => {
                if let Some(s) = self.state.get_mut(&agent) {
                    s.nonce += 1;
                    s.in_flight += 1;
                    if matches!(action, Action::Register) {
                        s.registered = true;
                    }
                }
                self.sent.insert(id, tx);
                self.mine.insert(id, (agent, action));
                self.tally.sent += 1;
            }
            Err(e) => {
                *self.tally.refused.entry(e.code().to_string()).or_default() += 1;
            }
        }
    }

    /// The jobs bought and not yet seen finished.
    pub fn open_jobs(&self) -> usize {
        self.job_of.len()
    }

    /// Jobs the requesters decided to buy.
    pub fn decided(&self) -> usize {
        self.bought.len()
    }
}

/// Job `job` and its stage `stage` in `state`, if both exist.
fn job_stage(state: &State, job: JobId, stage: u32) -> Option<(&Job, &Stage)> {
    let j = state.job(job)?;
    Some((j, j.stages.get(stage as usize)?))
}

/// What an honest provider computes for a stage once its input is known: the test
/// model's result, its commitment (salted with [`salt_for`]), and how long the metered
/// work takes at the provider's speed.
fn honest_work(
    j: &Job,
    job: JobId,
    stage: u32,
    spec: &ProviderSpec,
) -> Option<(StageResult, Hash, Duration)> {
    let input = match stage {
        0 => j.spec.input,
        _ => j.stages.get(stage as usize - 1)?.result?.output,
    };
    let s = j.spec.stages.get(stage as usize)?;
    let result = Leaves::honest(&j.spec.model, s.first_layer, s.layers, input).result();
    let salt = salt_for(&spec.addr, job, stage);
    let commitment = result.commitment(job, stage, &salt, &spec.addr);
    let compute = Duration::from_micros(s.ops / spec.mops_per_s.max(1));
    Some((result, commitment, compute))
}

impl Action {
    /// The action's name (for the tally of rejections).
    fn name(&self) -> &'static str {
        match self {
            Action::Crash => "crash",
            Action::Leave => "leave",
            Action::Register => "register",
            Action::Retire => "retire",
            Action::Submit(_) => "submit",
            Action::Commit { .. } => "commit",
            Action::Reveal { .. } => "reveal",
            Action::AuditCommit { .. } => "audit_commit",
            Action::AuditReport { .. } => "audit_report",
        }
    }
}

impl AgentState {
    fn new() -> AgentState {
        AgentState {
            nonce: 0,
            in_flight: 0,
            registered: false,
            retired: false,
            crashed: false,
        }
    }
}

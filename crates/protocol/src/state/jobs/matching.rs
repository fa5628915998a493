//! Matching: which provider may take a replica slot, and filling the slots
//! of waiting stages in the per-block step.
//!
//! Replica 0 of a stage is the best-ranked qualified offer (or the job's
//! named placement); every further replica is drawn by stake from the
//! block's beacon ([`replica_seed`]), and an auditor is drawn the same way
//! (`jobs::audit`). A job never gets the same provider twice. A stage with
//! an empty slot past `match_timeout` cancels the job. A generation job is
//! matched whole (every stage in the same block, all with the deadline
//! `now + deadline`) or not at all; a stage re-matched after `ReplaceStage`
//! moves every running stage's deadline to the replacement's.
//!
//! Slots also leave: `vacate` empties the slots of replicas that
//! were penalized (missed deadline, broken chain) and, before any reveal,
//! sends the stage back here.

use crate::event::Event;
use crate::matching::{self, Candidate, Requirement};
use crate::state::{Assignment, BlockCtx, Job, JobStatus, Provider, StagePhase, State, Timer};
use crate::types::{limits, Address, Amount, Hash, JobId};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Draws from the offer index before a stake draw falls back to collecting
/// the qualified offers ([`State::draw`]).
pub const DRAW_ATTEMPTS: u32 = 16;

/// The seed of attempt `attempt` of a stake draw: the draw's own seed first,
/// then `H(seed, attempt)`.
fn redraw_seed(seed: &[u8; 32], attempt: u32) -> [u8; 32] {
    if attempt == 0 {
        return *seed;
    }
    Hash::digest("agentic redraw v1", &[seed, &attempt.to_be_bytes()]).0
}

/// `u128(seed[..16])`, little-endian (the draw's point before the modulo).
fn seed_point(seed: &[u8; 32]) -> u128 {
    let mut b = [0u8; 16];
    b.copy_from_slice(&seed[..16]);
    u128::from_le_bytes(b)
}

impl State {
    /// Whether provider `a` may take a slot of `job` now (requirements,
    /// price, stake, reputation, free capacity, not excluded); returns the
    /// matching candidate.
    pub(crate) fn qualify(
        &self,
        job: &Job,
        a: &Address,
        exclude: &[Address],
    ) -> Option<Candidate<Address>> {
        if exclude.contains(a) || job.excluded.contains(a) {
            return None;
        }
        let p = self.providers.get(a)?;
        let c = self.candidate(a, p)?;
        let req = self.requirement(job);
        matching::qualifies(&c, &req).then_some(c)
    }

    fn candidate(&self, a: &Address, p: &Provider) -> Option<Candidate<Address>> {
        if p.retired {
            return None;
        }
        let stake = self.account(a).bonded;
        if stake < self.params.min_provider_stake {
            return None;
        }
        Some(Candidate {
            id: *a,
            price: p.offer.price.0,
            reputation_ppm: self.score(p, a),
            coord: p.offer.coord,
            stake: stake.0,
            free_capacity: p.offer.capacity.saturating_sub(p.active),
            region: p.offer.region.0,
            capabilities: p.offer.capabilities.0,
        })
    }

    fn requirement(&self, job: &Job) -> Requirement {
        let r = &job.spec.requirements;
        Requirement {
            max_price: job.spec.max_price.0,
            min_reputation_ppm: r.min_reputation_ppm,
            min_stake: r.min_stake.0,
            regions: r.regions.iter().map(|x| x.0).collect(),
            capabilities: r.capabilities.0,
            requester: job.spec.coord,
        }
    }

    /// The best qualified provider for a slot of `job`, not in `exclude`, by
    /// the ranking of [`matching::best`] (default weights, as seen from the
    /// requester); with its price. `work` counts the offers examined.
    ///
    /// Branch and bound over the offer index: the accepted groups' offers are
    /// merged cheapest first, and the scan stops once the lowest effective
    /// price the next offer could have ([`matching::effective_price_floor`])
    /// exceeds the best key found, so the choice equals a scan of every
    /// provider ([`State::select_by_scan`], kept as the test oracle). The
    /// index must be flushed ([`State::flush_offers`]).
    pub(crate) fn select(
        &self,
        job: &Job,
        exclude: &[Address],
        work: &mut u64,
    ) -> Option<(Address, Amount)> {
        let req = self.requirement(job);
        let weights = matching::MatchWeights::default();
        let mut iters: Vec<_> = self
            .offers
            .groups_for(&req.regions, req.capabilities)
            .map(|(_, t)| t.iter())
            .collect();
        let mut heads = BinaryHeap::with_capacity(iters.len());
        for (g, it) in iters.iter_mut().enumerate() {
            if let Some(((price, a), _)) = it.next() {
                if price <= req.max_price {
                    heads.push(Reverse((price, a, g)));
                }
            }
        }
        let mut best: Option<(u128, u64, Address)> = None;
        while let Some(Reverse((price, a, g))) = heads.pop() {
            if best.is_some_and(|b| matching::effective_price_floor(price, &weights) > b.0) {
                break;
            }
            *work += 1;
            if let Some(((next, b), _)) = iters[g].next() {
                if next <= req.max_price {
                    heads.push(Reverse((next, b, g)));
                }
            }
            if exclude.contains(&a) || job.excluded.contains(&a) {
                continue;
            }
            let Some(c) = self.providers.get(&a).and_then(|p| self.candidate(&a, p)) else {
                continue;
            };
            if !matching::qualifies(&c, &req) {
                continue;
            }
            let k = matching::rank_key(&c, &req.requester, &weights);
            if best.is_none_or(|b| k < b) {
                best = Some(k);
            }
        }
        let (_, _, a) = best?;
        Some((a, self.providers.get(&a)?.offer.price))
    }

    /// The ranking of [`State::select`] by a scan of every provider: the rule
    /// before the offer index, kept as the oracle the index is tested against.
    #[cfg(any(test, feature = "test-utils"))]
    pub fn select_by_scan(&self, job: &Job, exclude: &[Address]) -> Option<(Address, Amount)> {
        let candidates: Vec<Candidate<Address>> = self
            .providers
            .iter()
            .filter(|(a, _)| !exclude.contains(a) && !job.excluded.contains(a))
            .filter_map(|(a, p)| self.candidate(a, p))
            .collect();
        let req = self.requirement(job);
        let best = matching::best(&candidates, &req, &[])?;
        let price = self.providers.get(&best)?.offer.price;
        Some((best, price))
    }

    /// [`State::select`] for tests: flushes the index first; returns the
    /// choice and the offers examined.
    #[cfg(any(test, feature = "test-utils"))]
    pub fn select_indexed(
        &mut self,
        job: JobId,
        exclude: &[Address],
    ) -> (Option<(Address, Amount)>, u64) {
        self.flush_offers();
        let mut work = 0;
        let pick = self
            .jobs
            .get(&job)
            .and_then(|j| self.select(j, exclude, &mut work));
        (pick, work)
    }

    /// [`State::draw`] for tests: flushes the index first; returns the draw
    /// and its work.
    #[cfg(any(test, feature = "test-utils"))]
    pub fn draw_indexed(
        &mut self,
        job: JobId,
        exclude: &[Address],
        seed: &[u8; 32],
    ) -> (Option<(Address, Amount)>, u64) {
        self.flush_offers();
        let mut work = 0;
        let pick = self
            .jobs
            .get(&job)
            .and_then(|j| self.draw(j, exclude, seed, &mut work));
        (pick, work)
    }

    /// Whether `a` may take a slot of `job` now (the qualification the
    /// draws apply), for tests.
    #[cfg(any(test, feature = "test-utils"))]
    pub fn qualifies_for(&self, job: JobId, a: &Address) -> bool {
        self.jobs
            .get(&job)
            .is_some_and(|j| self.qualify(j, a, &[]).is_some())
    }

    /// A qualified provider for a slot of `job`, not in `exclude`, drawn
    /// with probability proportional to its bonded stake; with its price.
    ///
    /// The draw runs on the offer index: the point `u128(seed[..16]) mod W`
    /// (W the stake of the offers in the accepted groups priced at most the
    /// job's `max_price`) names an offer through the treaps' stake sums; an
    /// offer that fails the job's other requirements (reputation, stake,
    /// exclusions) is rejected and the draw repeats from
    /// `H(seed, attempt)`. After [`DRAW_ATTEMPTS`] rejections the qualified
    /// offers are collected and drawn from exactly
    /// ([`matching::draw_by_stake`]). Rejection keeps the distribution exact:
    /// a provider's odds are its share of the qualified stake, as with the
    /// scan this replaced (whose order, addresses, differs, so a given seed
    /// may name someone else). `work` counts draws and offers examined.
    pub(crate) fn draw(
        &self,
        job: &Job,
        exclude: &[Address],
        seed: &[u8; 32],
        work: &mut u64,
    ) -> Option<(Address, Amount)> {
        let req = self.requirement(job);
        let groups: Vec<_> = self
            .offers
            .groups_for(&req.regions, req.capabilities)
            .map(|(_, t)| (t, t.weight_up_to(req.max_price)))
            .filter(|(_, w)| *w > 0)
            .collect();
        let total = groups.iter().fold(0u128, |s, (_, w)| s.saturating_add(*w));
        if total == 0 {
            return None;
        }
        let qualified = |a: &Address| -> Option<Candidate<Address>> {
            if exclude.contains(a) || job.excluded.contains(a) {
                return None;
            }
            let c = self.candidate(a, self.providers.get(a)?)?;
            (c.stake > 0 && matching::qualifies(&c, &req)).then_some(c)
        };
        for attempt in 0..DRAW_ATTEMPTS {
            *work += 1;
            let s = redraw_seed(seed, attempt);
            let mut point = seed_point(&s) % total;
            let mut pick = None;
            for (t, w) in &groups {
                if point < *w {
                    pick = t.at_weight(point);
                    break;
                }
                point -= *w;
            }
            if let Some(c) = pick.and_then(|a| qualified(&a)) {
                return Some((c.id, Amount(c.price)));
            }
        }
        let mut candidates = Vec::new();
        for (t, _) in &groups {
            for ((price, a), _) in t.iter() {
                if price > req.max_price {
                    break;
                }
                *work += 1;
                candidates.extend(qualified(&a));
            }
        }
        let s = redraw_seed(seed, DRAW_ATTEMPTS);
        let drawn = matching::draw_by_stake(&candidates, &req, &[], &s)?;
        Some((drawn, self.providers.get(&drawn)?.offer.price))
    }

    /// Providers currently holding a slot of `job` (any stage) — a job never
    /// gets the same provider twice, so replicas and auditors are independent.
    pub(super) fn job_providers(job: &Job) -> Vec<Address> {
        let mut out = Vec::new();
        for s in &job.stages {
            if matches!(s.phase, StagePhase::Cancelled) {
                continue;
            }
            for slot in &s.slots {
                if let Some(a) = &slot.assignment {
                    out.push(a.provider);
                }
            }
            if let StagePhase::Auditing { auditor, .. } = s.phase {
                out.push(auditor);
            }
            if let Some(a) = &s.audit {
                out.push(a.auditor);
            }
        }
        out
    }

    /// Queues `job` for matching now (a new job, or a stage sent back to
    /// matching) and schedules its match timeout.
    pub(crate) fn enqueue_match(&mut self, job: JobId) {
        self.waiting.remove(&job);
        self.matching.insert(job);
        let at = self.now().plus(self.params.match_timeout).plus(1);
        self.schedule(at, Timer::Match(job));
    }

    /// Sends `stages` of `job` back to matching (their slots already emptied
    /// and the providers who left them excluded): a stage taken over by
    /// `ReplaceStage` or a generation stage that missed its deadline.
    pub(crate) fn requeue_stages(&mut self, job: JobId, stages: &[u32]) {
        let now = self.now();
        if let Some(jm) = self.job_mut(job) {
            for &s in stages {
                if let Some(st) = jm.stages.get_mut(s as usize) {
                    st.phase = StagePhase::Matching { since: now };
                }
            }
        }
        self.enqueue_match(job);
    }

    /// Takes `job` out of matching (cancelled, failed or done).
    pub(crate) fn dequeue_match(&mut self, job: JobId) {
        self.matching.remove(&job);
        self.waiting.remove(&job);
    }

    /// A job's match timeout: a waiting job is queued once more, so this
    /// block's matching either fills it or cancels it.
    pub(crate) fn check_match_timeout(&mut self, job: JobId) {
        if self.waiting.remove(&job) {
            self.matching.insert(job);
        }
    }

    /// Queues the waiting jobs that an offer which entered the index or got
    /// better (cheaper, more stake, a better record) since the last block
    /// might now serve: its group accepts the job and its price is within
    /// the job's maximum. A job nobody new could serve is not looked at.
    fn wake_waiting(&mut self) {
        let woken = self.offers.take_woken();
        if woken.is_empty() || self.waiting.is_empty() {
            return;
        }
        let wake: Vec<JobId> = self
            .waiting
            .iter()
            .copied()
            .filter(|id| {
                self.jobs.get(id).is_some_and(|job| {
                    let r = &job.spec.requirements;
                    let regions: Vec<u16> = r.regions.iter().map(|x| x.0).collect();
                    woken.iter().any(|(g, price)| {
                        *price <= job.spec.max_price.0 && g.accepts(&regions, r.capabilities.0)
                    })
                })
            })
            .collect();
        for id in wake {
            self.waiting.remove(&id);
            self.matching.insert(id);
        }
    }

    /// Queues every waiting job (after a parameter change).
    pub(crate) fn wake_all_waiting(&mut self) {
        let waiting = std::mem::take(&mut self.waiting);
        self.matching.extend(waiting);
    }

    /// Per-block: fill empty slots of queued jobs, in job-id order, within
    /// [`limits::MATCH_WORK_PER_BLOCK`] (slots tried, offers examined and
    /// draws); jobs
    /// the budget did not reach stay queued for the next block.
    ///
    /// Replica 0 is the best-ranked offer (or the named placement); every
    /// further replica is drawn by stake from the block's beacon, so nobody
    /// can place itself as the replica that checks its own work. A job left
    /// with an empty slot waits, unexamined, until an offer that could serve
    /// it gets better ([`State::wake_waiting`]) or its match timeout fires.
    pub(crate) fn match_jobs(&mut self, ctx: &mut BlockCtx) {
        self.flush_offers();
        self.wake_waiting();
        let now = self.now();
        let mut work: u64 = 0;
        while work < limits::MATCH_WORK_PER_BLOCK {
            let Some(id) = self.matching.pop_first() else {
                break;
            };
            let Some(job) = self.jobs.get(&id) else {
                continue;
            };
            if job.status != JobStatus::Active {
                continue;
            }
            let mut waiting = false;
            let mut cancel = false;
            let mut oldest = now;
            let mut assigned: Vec<(usize, usize, Address, Amount)> = Vec::new();
            let mut used = State::job_providers(job);
            for (s, stage) in job.stages.iter().enumerate() {
                let StagePhase::Matching { since } = stage.phase else {
                    continue;
                };
                let mut filled = true;
                for (r, slot) in stage.slots.iter().enumerate() {
                    if slot.assignment.is_some() {
                        continue;
                    }
                    // The attempt itself counts, whatever it examines.
                    work += 1;
                    let pick = if r == 0 {
                        job.spec
                            .placement
                            .get(s)
                            .and_then(|a| {
                                self.qualify(job, a, &used).map(|c| (c.id, Amount(c.price)))
                            })
                            .or_else(|| self.select(job, &used, &mut work))
                    } else {
                        let seed = replica_seed(&ctx.beacon, id, s as u32, r as u8);
                        self.draw(job, &used, &seed, &mut work)
                    };
                    match pick {
                        Some((p, price)) => {
                            // Capacity is consumed by earlier picks in this loop.
                            let taken = assigned.iter().filter(|x| x.2 == p).count() as u32;
                            let prov = self.providers.get(&p);
                            let free = prov
                                .map(|pp| pp.offer.capacity.saturating_sub(pp.active))
                                .unwrap_or(0);
                            if taken >= free {
                                filled = false;
                                continue;
                            }
                            used.push(p);
                            assigned.push((s, r, p, price));
                        }
                        None => filled = false,
                    }
                }
                if !filled {
                    waiting = true;
                    oldest = oldest.min(since);
                    if now.0 > since.0.saturating_add(self.params.match_timeout) {
                        cancel = true;
                    }
                }
            }
            if cancel {
                // Give back nothing assigned this round: the job is cancelled —
                // or, a session some of whose stages committed (a lapsed stage
                // nobody could take over), salvaged: what committed is paid.
                if job.is_generation() && job.any_committed() {
                    self.salvage_session(id, ctx);
                } else {
                    self.cancel_job(id, ctx);
                }
                self.dequeue_match(id);
                continue;
            }
            if waiting && job.is_generation() {
                // A session runs all its stages at once: it is matched whole
                // or not at all, so every stage's deadline counts from the
                // block the session can start and no provider idles meanwhile.
                assigned.clear();
            }
            let deadline = now.plus(job.spec.deadline);
            for &(s, r, p, price) in &assigned {
                if let Some(prov) = self.provider_mut(p) {
                    prov.active += 1;
                    prov.open += 1;
                }
                self.add_role(p, id);
                if let Some(job) = self.job_mut(id) {
                    if let Some(slot) = job.stages.get_mut(s).and_then(|st| st.slots.get_mut(r)) {
                        slot.assignment = Some(Assignment {
                            provider: p,
                            price,
                            deadline,
                            commitment: None,
                            result: None,
                            input: None,
                        });
                    }
                }
                ctx.emit(Event::StageAssigned {
                    job: id,
                    stage: s as u32,
                    replica: r as u8,
                    provider: p,
                    price,
                    deadline,
                });
            }
            let mut timers = Vec::new();
            if let Some(job) = self.job_mut(id) {
                if job.is_generation() && !assigned.is_empty() {
                    // A replacement (`ReplaceStage`) restarts the session: every
                    // stage still running gets the new deadline.
                    for (s, stage) in job.stages.iter_mut().enumerate() {
                        let StagePhase::Running { .. } = stage.phase else {
                            continue;
                        };
                        for a in stage.slots.iter_mut().filter_map(|x| x.assignment.as_mut()) {
                            if a.commitment.is_none() && a.deadline < deadline {
                                a.deadline = deadline;
                                timers.push(s as u32);
                            }
                        }
                    }
                }
                for (s, stage) in job.stages.iter_mut().enumerate() {
                    if matches!(stage.phase, StagePhase::Matching { .. })
                        && stage.slots.iter().all(|x| x.assignment.is_some())
                    {
                        stage.phase = StagePhase::Running {
                            reveal_deadline: None,
                        };
                        timers.push(s as u32);
                    }
                }
            }
            timers.dedup();
            for s in timers {
                self.schedule(deadline.plus(1), Timer::Stage(id, s));
            }
            if waiting {
                self.waiting.insert(id);
                // The timeout as the parameter stands now (governance may
                // have moved it since the job was queued).
                let at = oldest.plus(self.params.match_timeout).plus(1);
                if at > now {
                    self.schedule(at, Timer::Match(id));
                }
            }
            // Assignments used capacity: re-index those providers.
            self.flush_offers();
        }
    }

    /// Empties the given slots of a stage (their providers were already
    /// penalized and released) and excludes those providers from the job.
    ///
    /// Before any replica of the stage revealed, the slots go back to
    /// matching: a replacement commits before any result is public. Once a
    /// replica revealed, a replacement could only echo a public result, so
    /// the slots stay empty and the stage goes on with the replicas left;
    /// if those all revealed, the stage is judged now.
    pub(super) fn vacate(&mut self, job: JobId, stage: u32, slots: &[usize], ctx: &mut BlockCtx) {
        let now = self.now();
        let mut release_audit = false;
        let mut judge = false;
        let mut rematch = false;
        if let Some(j) = self.job_mut(job) {
            let st = &mut j.stages[stage as usize];
            let mut gone = Vec::new();
            for &r in slots {
                if let Some(a) = st.slots.get_mut(r).and_then(|s| s.assignment.take()) {
                    gone.push(a.provider);
                }
            }
            let revealed = st
                .slots
                .iter()
                .filter_map(|s| s.assignment.as_ref())
                .any(|a| a.result.is_some());
            if revealed {
                judge = st
                    .slots
                    .iter()
                    .filter_map(|s| s.assignment.as_ref())
                    .all(|a| a.result.is_some());
            } else {
                st.phase = StagePhase::Matching { since: now };
                // A fresh commit phase draws its own audit.
                release_audit = st.audit.is_some();
                rematch = true;
            }
            for who in gone {
                j.exclude(who);
            }
        }
        if release_audit {
            self.release_auditor(job, stage, false);
        }
        if rematch {
            self.enqueue_match(job);
        }
        if judge {
            self.on_stage_revealed(job, stage, ctx);
        }
    }
}

/// The seed of the stake-weighted draw of replica `replica` (≥ 1) of a stage.
pub fn replica_seed(beacon: &[u8; 32], job: JobId, stage: u32, replica: u8) -> [u8; 32] {
    Hash::digest(
        "agentic replica draw v1",
        &[
            beacon,
            &job.0.to_be_bytes(),
            &stage.to_be_bytes(),
            &[replica],
        ],
    )
    .0
}

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

    /// The best qualified provider for a slot of `job`, not in `exclude`.
    pub(crate) fn select(&self, job: &Job, exclude: &[Address]) -> Option<(Address, Amount)> {
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

    /// A qualified provider for a slot of `job`, not in `exclude`, drawn by
    /// stake from `seed` ([`matching::draw_by_stake`]); with its price.
    pub(crate) fn draw(
        &self,
        job: &Job,
        exclude: &[Address],
        seed: &[u8; 32],
    ) -> Option<(Address, Amount)> {
        let candidates: Vec<Candidate<Address>> = self
            .providers
            .iter()
            .filter(|(a, _)| !exclude.contains(a) && !job.excluded.contains(a))
            .filter_map(|(a, p)| self.candidate(a, p))
            .collect();
        let req = self.requirement(job);
        let drawn = matching::draw_by_stake(&candidates, &req, &[], seed)?;
        let price = self.providers.get(&drawn)?.offer.price;
        Some((drawn, price))
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

    /// Per-block: fill empty slots of waiting jobs, in job-id order.
    ///
    /// Replica 0 is the best-ranked offer (or the named placement); every
    /// further replica is drawn by stake from the block's beacon, so nobody
    /// can place itself as the replica that checks its own work.
    pub(crate) fn match_jobs(&mut self, ctx: &mut BlockCtx) {
        let queue: Vec<JobId> = self.matching.iter().copied().collect();
        let now = self.now();
        for id in queue {
            let Some(job) = self.jobs.get(&id) else {
                self.matching.remove(&id);
                continue;
            };
            if job.status != JobStatus::Active {
                self.matching.remove(&id);
                continue;
            }
            let mut waiting = false;
            let mut cancel = false;
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
                    let pick = if r == 0 {
                        job.spec
                            .placement
                            .get(s)
                            .and_then(|a| {
                                self.qualify(job, a, &used).map(|c| (c.id, Amount(c.price)))
                            })
                            .or_else(|| self.select(job, &used))
                    } else {
                        let seed = replica_seed(&ctx.beacon, id, s as u32, r as u8);
                        self.draw(job, &used, &seed)
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
                    if now.0 > since.0.saturating_add(self.params.match_timeout) {
                        cancel = true;
                    }
                }
            }
            if cancel {
                // Give back nothing assigned this round: the job is cancelled.
                self.cancel_job(id, ctx);
                self.matching.remove(&id);
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
            if !waiting {
                self.matching.remove(&id);
            }
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
                if !j.excluded.contains(&who) && j.excluded.len() < limits::MAX_EXCLUDED {
                    j.excluded.push(who);
                }
            }
        }
        if release_audit {
            self.release_auditor(job, stage, false);
        }
        if rematch {
            self.matching.insert(job);
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

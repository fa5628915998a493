//! What every party sends next: the jobs submitted this block ([`Market::submit`]),
//! every party's move on the open jobs ([`Market::act`]), and what each strategy
//! computes and reveals for a stage ([`make_work`], [`audit_work`]).
//!
//! ```text
//!   Running      commit (its Work, fixed when it first acts) ─▶ reveal once reveals open
//!                copy_replica: reveal the other replica's result (doomed)
//!                echo_withholder: keep the reveal back
//!                last commitment in this block ─▶ predict the audit draw
//!                  (audit_probability, state::audit_draw on the next beacon)
//!                drawn auditor ─▶ audit commit (audit_work) before any reveal
//!                unbond_then_lose ─▶ unbond what it may, then the rest (doomed)
//!   Auditing     the auditor reports its committed result
//!   Disputed     both parties move with their traces; random_output's moves carry no
//!                proof (doomed); silent_in_dispute stays silent;
//!                retire_while_disputed tries retire, withdraw, unbond (doomed)
//!   farmed jobs  the assigned provider claims the input unavailable
//! ```
//!
//! Accepted transactions go first in the block (commitments before the other moves, so
//! the predicted draws see the reputation and stake the ledger sees), doomed ones last.

use std::collections::HashMap;

use agentic_protocol::reputation::ReputationParams;
use agentic_protocol::state::{audit_draw, DisputePhase, Job, JobStatus, StagePhase};
use agentic_protocol::test_utils::{job_spec, layer_output, salt_for, Trace as TestTrace};
use agentic_protocol::tx::StageResult;
use agentic_protocol::types::{Amount, VerificationLevel, PPM};
use agentic_protocol::{Address, Hash, JobId, Params, State, TxBody};

use super::{Act, Action, Draw, JobRun, Market, Unit, Work};
use crate::cast::{Actor, Coalition, Target, MAX_PRICE};
use crate::ledger::{Expect, Tag};
use crate::strategy::{CoalitionKind, Replica, Strategy};
use crate::workload::{Span, Workload};
use crate::Error;

impl Market {
    /// This block's new jobs.
    pub(super) fn submit(
        &mut self,
        w: &Workload,
        topped: &HashMap<Address, u128>,
    ) -> Result<(), Error> {
        let state = &self.ledger.state;
        let min_stake = self.params.min_provider_stake.0;
        let qualified = |i: usize| {
            let a = &self.actors[i];
            self.registered[i]
                && state.provider(&a.addr).is_some_and(|p| !p.retired)
                && state.account(&a.addr).bonded.0 + topped.get(&a.addr).unwrap_or(&0) >= min_stake
        };
        let honest: Vec<usize> = (0..self.actors.len())
            .filter(|&i| self.actors[i].strategy == Strategy::Honest && qualified(i))
            .collect();
        if honest.is_empty() {
            return Err(Error::NoHonestProvider { run: self.label });
        }
        let mut submissions = Vec::new();
        let end = (self.next_plan + w.jobs_per_block).min(w.jobs.len());
        while self.next_plan < end {
            let p = self.next_plan;
            let plan = &w.jobs[p];
            let mut target = None;
            if plan.cheat_draw < self.cheater_share && !self.targets.is_empty() {
                let n = self.targets.len();
                for k in 0..n {
                    let t = self.targets[(self.next_target + k) % n];
                    if match t {
                        Target::Provider(i) => qualified(i),
                        Target::Farmer(_) => true,
                    } {
                        target = Some(t);
                        self.next_target = (self.next_target + k + 1) % n;
                        break;
                    }
                }
            }
            let farmed = matches!(target, Some(Target::Farmer(_)));
            let n = honest.len();
            let stages = if plan.pipeline && !farmed && (n >= 2 || target.is_some()) {
                2
            } else {
                1
            };
            let first_pick = (plan.pick % n as u64) as usize;
            let first = honest[first_pick];
            let placement: Vec<usize> = match (stages, target) {
                (1, Some(Target::Provider(i))) => vec![i],
                (1, _) => vec![first],
                (_, Some(Target::Provider(i))) => vec![first, i],
                _ => {
                    let mut second = (plan.pick2 % (n as u64 - 1)) as usize;
                    if second >= first_pick {
                        second += 1;
                    }
                    vec![first, honest[second]]
                }
            };
            let replicas = match target {
                Some(Target::Provider(i)) if self.actors[i].strategy.needs_two_replicas() => 2,
                _ => 1,
            };
            let input = if farmed {
                let input = Hash::digest(
                    "agentic bench verify unavailable input",
                    &[&(p as u64).to_be_bytes()],
                );
                self.referee.unavailable_inputs.insert(input);
                input
            } else {
                plan.input
            };
            let spans = plan.spans(stages);
            let shape: Vec<(u32, u64)> = spans.iter().map(|s| (s.layers, s.ops)).collect();
            let mut spec = job_spec(w.model, input, &shape, MAX_PRICE, self.level);
            spec.requirements.replicas = replicas;
            spec.placement = placement.iter().map(|&i| self.actors[i].addr).collect();
            let j = self.jobs.len();
            let mut units = Vec::with_capacity(spans.len());
            let mut x = input;
            let last = spans.len() - 1;
            for (s, span) in spans.into_iter().enumerate() {
                let truth = TestTrace::honest(&w.model, span.first, span.layers, x)
                    .result()
                    .output;
                x = truth;
                let provider = placement[s];
                self.stage_ops += u128::from(span.ops);
                units.push(self.units.len());
                self.units.push(Unit {
                    job: j,
                    value: Amount::cost(span.ops, Amount(self.actors[provider].price))
                        .unwrap_or_default()
                        .0,
                    span,
                    truth,
                    provider,
                    cheat: s == last && matches!(target, Some(Target::Provider(_))),
                    phase: "open",
                    ..Unit::default()
                });
            }
            self.jobs.push(JobRun {
                id: None,
                units,
                farmed,
                escrow: 0,
                refund: 0,
                fee: 0,
                status: None,
            });
            submissions.push((farmed, spec, j));
            self.next_plan += 1;
        }
        for (farmed, spec, j) in submissions {
            let who = if farmed {
                self.farmer.clone()
            } else {
                self.requester.clone()
            };
            self.ledger.push(
                &who,
                TxBody::SubmitJob { spec },
                Tag {
                    job: Some(j),
                    ..Tag::none()
                },
            );
        }
        Ok(())
    }

    /// Every party's next move on the open jobs; returns the stages whose last commitment
    /// goes in this block, with the bench's prediction of the ledger's audit draw and
    /// whether the draw is the one the placed provider takes part in.
    pub(super) fn act(
        &mut self,
        w: &Workload,
        height: u64,
        topped: &HashMap<Address, u128>,
    ) -> Vec<(usize, bool, bool)> {
        let state = &self.ledger.state;
        let mut regular: Vec<Action> = Vec::new();
        let mut exits: Vec<Action> = Vec::new();
        let mut doomed: Vec<Action> = Vec::new();
        let mut completing = Vec::new();
        let mut unbonding: HashMap<Address, u128> = HashMap::new();
        let min_stake = self.params.min_provider_stake.0;
        for &id in &self.active {
            let Some(job) = state.job(id) else { continue };
            let jr = self.by_id[&id];
            if self.jobs[jr].farmed {
                // The assigned provider cannot fetch the input: it claims so, once.
                let claimant = job
                    .stages
                    .iter()
                    .flat_map(|s| s.slots.iter())
                    .filter_map(|s| s.assignment.as_ref())
                    .find(|a| a.commitment.is_none());
                if let (None, JobStatus::Active, Some(a)) = (job.claim, job.status, claimant) {
                    if self.sent.insert((id.0, a.provider, Act::Claim, 0)) {
                        regular.push((
                            self.index[&a.provider],
                            TxBody::ClaimUnavailable { job: id },
                            Tag::unit(self.jobs[jr].units[0]),
                        ));
                    }
                }
                continue;
            }
            for (s, st) in job.stages.iter().enumerate() {
                let stage = s as u32;
                let u = self.jobs[jr].units[s];
                // The stage's input: the job's, or the previous stage's agreed output once
                // no dispute hangs over it.
                let input = if s == 0 {
                    Some(job.spec.input)
                } else {
                    let prev = &job.stages[s - 1];
                    prev.result
                        .filter(|_| !matches!(prev.phase, StagePhase::Disputed { .. }))
                        .map(|r| r.output)
                };
                match st.phase {
                    StagePhase::Running { reveal_deadline } => {
                        let Some(input) = input else { continue };
                        let span = self.units[u].span.clone();
                        let revealed: Vec<StageResult> = st
                            .slots
                            .iter()
                            .filter_map(|x| x.assignment.as_ref()?.result)
                            .collect();
                        let mut committing = false;
                        let mut complete = st.slots.iter().all(|x| x.assignment.is_some());
                        for a in st.slots.iter().filter_map(|x| x.assignment.as_ref()) {
                            let who = self.index[&a.provider];
                            let strategy = self.actors[who].strategy;
                            let work =
                                self.works
                                    .entry((id, stage, a.provider))
                                    .or_insert_with(|| {
                                        make_work(strategy, &a.provider, id, stage, input, &span, w)
                                    });
                            if a.commitment.is_none() {
                                if self.sent.insert((id.0, a.provider, Act::Commit, stage)) {
                                    self.flows.entry((u, who)).or_default().computed_ops =
                                        work.computed_ops;
                                    regular.push((
                                        who,
                                        TxBody::CommitResult {
                                            job: id,
                                            stage,
                                            commitment: work.commitment,
                                        },
                                        Tag::unit(u),
                                    ));
                                    committing = true;
                                } else {
                                    complete = false;
                                }
                                continue;
                            }
                            if reveal_deadline.is_none()
                                || a.result.is_some()
                                || !self.sent.insert((id.0, a.provider, Act::Reveal, stage))
                            {
                                continue;
                            }
                            match (work.result, strategy) {
                                (None, Strategy::CopyReplica) => {
                                    // Copy once the other replica has revealed.
                                    match revealed.first() {
                                        Some(copied) => doomed.push((
                                            who,
                                            TxBody::RevealResult {
                                                job: id,
                                                stage,
                                                result: *copied,
                                                salt: work.salt,
                                            },
                                            Tag::doomed(Some(u), Expect::CommitmentMismatch),
                                        )),
                                        None => {
                                            self.sent.remove(&(
                                                id.0,
                                                a.provider,
                                                Act::Reveal,
                                                stage,
                                            ));
                                        }
                                    }
                                }
                                // Keeps its reveal back (it has nothing of its own).
                                (None, _) => {}
                                (Some(result), _) => regular.push((
                                    who,
                                    TxBody::RevealResult {
                                        job: id,
                                        stage,
                                        result,
                                        salt: work.salt,
                                    },
                                    Tag::unit(u),
                                )),
                            }
                        }
                        if committing && complete {
                            // The last commitment: this block's beacon draws the audit.
                            let p = audit_probability(
                                state,
                                &self.params,
                                &self.rp,
                                job,
                                s,
                                height,
                                topped,
                            );
                            let predicted = audit_draw(&self.ledger.next_beacon, id, stage) < p;
                            let shares =
                                sybil_shares(state, &self.actors, &self.coalitions, job, topped);
                            let unit = &mut self.units[u];
                            let placed = self.actors[unit.provider].addr;
                            let first = unit.draw.is_none()
                                && st.slots.iter().any(|x| {
                                    x.assignment.as_ref().is_some_and(|a| a.provider == placed)
                                });
                            if first {
                                let top = topped.get(&placed).copied().unwrap_or(0);
                                let bonded = state.account(&placed).bonded.0 + top;
                                let own = self.actors[unit.provider].coalition;
                                unit.draw = Some(Draw {
                                    p_ppm: p,
                                    score_ppm: state
                                        .provider(&placed)
                                        .map(|x| x.reputation.score_ppm(height, bonded, &self.rp))
                                        .unwrap_or(0),
                                    slashable: state.slashable(&placed).0 + top,
                                    share: shares
                                        .iter()
                                        .find(|(c, _)| Some(*c) == own)
                                        .map_or(0.0, |x| x.1),
                                });
                            }
                            unit.shares = shares;
                            completing.push((u, predicted, first));
                        }
                        let Some(audit) = &st.audit else { continue };
                        // The drawn auditor commits before anyone reveals.
                        if audit.commitment.is_none()
                            && reveal_deadline.is_none()
                            && self
                                .sent
                                .insert((id.0, audit.auditor, Act::AuditCommit, stage))
                        {
                            let who = self.index[&audit.auditor];
                            let work = audit_work(
                                &self.actors,
                                &self.coalitions,
                                &self.works,
                                who,
                                (id, stage, st),
                                input,
                                &span,
                                w,
                            );
                            let f = self.flows.entry((u, who)).or_default();
                            f.computed_ops = work.computed_ops;
                            regular.push((
                                who,
                                TxBody::AuditCommit {
                                    job: id,
                                    stage,
                                    commitment: work.commitment,
                                },
                                Tag::unit(u),
                            ));
                            self.works.insert((id, stage, audit.auditor), work);
                        }
                        // unbond_then_lose: an audit is drawn on it; it unbonds what it may.
                        for a in st.slots.iter().filter_map(|x| x.assignment.as_ref()) {
                            let who = self.index[&a.provider];
                            if self.actors[who].strategy != Strategy::UnbondThenLose
                                || !self.sent.insert((id.0, a.provider, Act::Unbond, stage))
                            {
                                continue;
                            }
                            // Several of its stages may be audited in one block.
                            let planned = unbonding.entry(a.provider).or_default();
                            let bonded = state.account(&a.provider).bonded.0
                                + topped.get(&a.provider).unwrap_or(&0)
                                - *planned;
                            let keep = min_stake.max(job.spec.requirements.min_stake.0);
                            if bonded > keep {
                                *planned += bonded - keep;
                                exits.push((
                                    who,
                                    TxBody::Unbond {
                                        amount: Amount(bonded - keep),
                                    },
                                    Tag::unit(u),
                                ));
                            }
                            // …and then the rest, below the minimum.
                            doomed.push((
                                who,
                                TxBody::Unbond {
                                    amount: Amount(bonded.min(keep).max(1)),
                                },
                                Tag::doomed(Some(u), Expect::UnbondBelowMinimum),
                            ));
                        }
                    }
                    StagePhase::Auditing { auditor, .. } => {
                        if !self.sent.insert((id.0, auditor, Act::AuditReport, stage)) {
                            continue;
                        }
                        if let Some(result) = self
                            .works
                            .get(&(id, stage, auditor))
                            .and_then(|x| x.result.map(|r| (r, x.salt)))
                        {
                            regular.push((
                                self.index[&auditor],
                                TxBody::AuditReport {
                                    job: id,
                                    stage,
                                    result: result.0,
                                    salt: result.1,
                                },
                                Tag::unit(u),
                            ));
                        }
                    }
                    StagePhase::Disputed { dispute } => {
                        let Some(d) = state.dispute(dispute) else {
                            continue;
                        };
                        if d.phase != DisputePhase::Bisecting {
                            continue;
                        }
                        // retire_while_disputed, as the defendant, tries every way out.
                        let party = d.defendant;
                        let who = self.index[&party];
                        if self.actors[who].strategy == Strategy::RetireWhileDisputed
                            && self.sent.insert((dispute.0, party, Act::Exit, 0))
                        {
                            doomed.push((
                                who,
                                TxBody::Retire,
                                Tag::doomed(Some(u), Expect::RetireObligated),
                            ));
                            let acct = state.account(&party);
                            if acct.withdrawable.0 > 0 {
                                doomed.push((
                                    who,
                                    TxBody::Withdraw {
                                        amount: acct.withdrawable,
                                    },
                                    Tag::doomed(Some(u), Expect::WithdrawObligated),
                                ));
                            }
                            let bonded = acct.bonded.0 + topped.get(&party).unwrap_or(&0);
                            if bonded > 0 {
                                doomed.push((
                                    who,
                                    TxBody::Unbond {
                                        amount: Amount(bonded),
                                    },
                                    Tag::doomed(Some(u), Expect::UnbondBelowMinimum),
                                ));
                            }
                        }
                        if d.game.midpoint().is_none() {
                            continue;
                        }
                        let round = d.game.round();
                        for (party, moved) in [
                            (d.defendant, d.defendant_move.is_some()),
                            (d.challenger, d.challenger_move.is_some()),
                        ] {
                            if moved || !self.sent.insert((dispute.0, party, Act::Move, round)) {
                                continue;
                            }
                            let who = self.index[&party];
                            let strategy = self.actors[who].strategy;
                            let auditor = self.flows.get(&(u, who)).is_some_and(|f| f.auditor);
                            let trace = self
                                .works
                                .get(&(id, stage, party))
                                .and_then(|x| x.trace.clone());
                            match (auditor || strategy.plays(), trace) {
                                (true, Some(t)) => {
                                    if let Ok(Some(tx)) = t.next_move(dispute, d, party) {
                                        regular.push((who, tx, Tag::unit(u)));
                                    }
                                }
                                _ if !auditor && strategy == Strategy::Random => {
                                    // It answers, but nothing it says opens its root.
                                    let depth =
                                        (u32::BITS - d.game.leaves().leading_zeros()) as usize;
                                    let junk = Hash::digest(
                                        "agentic bench verify junk",
                                        &[&dispute.0.to_be_bytes(), &round.to_be_bytes()],
                                    );
                                    doomed.push((
                                        who,
                                        TxBody::Bisect {
                                            dispute,
                                            leaf: junk,
                                            proof: vec![junk; depth],
                                        },
                                        Tag::doomed(Some(u), Expect::BadProof),
                                    ));
                                }
                                _ => {} // silent
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        // Accepted transactions first: commitments (so the draws above see the reputation
        // and stake the ledger sees: an agreed audit report raises its auditor's score),
        // the other stage moves, exits; then the doomed ones, which spend no nonce.
        let (commits, moves): (Vec<Action>, Vec<Action>) = regular
            .into_iter()
            .partition(|a| matches!(a.1, TxBody::CommitResult { .. }));
        for (who, body, tag) in commits.into_iter().chain(moves).chain(exits) {
            let k = self.actors[who].key.clone();
            self.ledger.push(&k, body, tag);
        }
        for (who, body, tag) in doomed {
            let k = self.actors[who].key.clone();
            self.ledger.push_doomed(&k, body, tag);
        }
        completing
    }
}

/// The ledger's audit probability (ppm) for a stage whose last commitment lands at
/// `height`: the maximum over its replicas of `State::audit_probability_for` at each
/// one's reputation, bill and slashable stake (with this block's top-ups).
fn audit_probability(
    state: &State,
    params: &Params,
    rp: &ReputationParams,
    job: &Job,
    stage: usize,
    height: u64,
    topped: &HashMap<Address, u128>,
) -> u32 {
    match job.spec.requirements.verification {
        VerificationLevel::Optimistic => 0,
        VerificationLevel::Audited => PPM,
        VerificationLevel::Sampled => {
            let ops = job.spec.stages[stage].ops;
            job.stages[stage]
                .slots
                .iter()
                .filter_map(|s| s.assignment.as_ref())
                .filter_map(|a| {
                    let p = state.provider(&a.provider)?;
                    let top = topped.get(&a.provider).copied().unwrap_or(0);
                    let bonded = state.account(&a.provider).bonded.0 + top;
                    Some(State::audit_probability_for(
                        params,
                        p.reputation.score_ppm(height, bonded, rp),
                        Amount::cost(ops, a.price).unwrap_or(Amount(u128::MAX)),
                        Amount::cost(ops, job.spec.max_price).unwrap_or(Amount(u128::MAX)),
                        Amount(state.slashable(&a.provider).0 + top),
                    ))
                })
                .max()
                .unwrap_or(params.audit_ppm)
        }
    }
}

/// Each `auditor_sybil` coalition's share of the stake the auditor draw of `job` may pick
/// from now: registered providers with the minimum bonded, within the job's price, not
/// excluded from it and holding no role in it (as `matching::draw_by_stake` weighs them).
fn sybil_shares(
    state: &State,
    actors: &[Actor],
    coalitions: &[Coalition],
    job: &Job,
    topped: &HashMap<Address, u128>,
) -> Vec<(usize, f64)> {
    let sybils: Vec<usize> = (0..coalitions.len())
        .filter(|&c| coalitions[c].kind == CoalitionKind::AuditorSybil)
        .collect();
    if sybils.is_empty() {
        return Vec::new();
    }
    let mut used: Vec<Address> = Vec::new();
    for st in &job.stages {
        if st.phase == StagePhase::Cancelled {
            continue;
        }
        used.extend(
            st.slots
                .iter()
                .filter_map(|s| s.assignment.as_ref().map(|a| a.provider)),
        );
        if let StagePhase::Auditing { auditor, .. } = st.phase {
            used.push(auditor);
        }
        if let Some(a) = &st.audit {
            used.push(a.auditor);
        }
    }
    let min = state.params().min_provider_stake.0;
    let mut total = 0u128;
    let mut by: HashMap<usize, u128> = HashMap::new();
    for (i, a) in actors.iter().enumerate() {
        let Some(p) = state.provider(&a.addr) else {
            continue;
        };
        let bonded = state.account(&a.addr).bonded.0 + topped.get(&a.addr).unwrap_or(&0);
        if p.retired
            || bonded < min
            || bonded == 0
            || p.offer.price > job.spec.max_price
            || p.offer.capacity <= p.active
            || used.contains(&a.addr)
            || job.excluded.contains(&a.addr)
        {
            continue;
        }
        total += bonded;
        if let Some(c) = a.coalition {
            if coalitions[c].partners.contains(&i) {
                *by.entry(c).or_default() += bonded;
            }
        }
    }
    sybils
        .into_iter()
        .map(|c| {
            let share = by.get(&c).copied().unwrap_or(0) as f64 / total.max(1) as f64;
            (c, share)
        })
        .collect()
}

/// What a provider of `strategy` computes, reveals and can open for a stage.
fn make_work(
    strategy: Strategy,
    who: &Address,
    job: JobId,
    stage: u32,
    input: Hash,
    span: &Span,
    w: &Workload,
) -> Work {
    let salt = salt_for(who, job, stage);
    let made_up = |i: u32| {
        Hash::digest(
            "agentic bench verify made-up leaf",
            &[
                &job.0.to_be_bytes(),
                &stage.to_be_bytes(),
                &who.0,
                &i.to_be_bytes(),
            ],
        )
    };
    let (first, layers) = (span.first, span.layers);
    let (trace, computed_ops) = match strategy.replica() {
        Replica::Honest => (
            Some(TestTrace::honest(&w.model, first, layers, input)),
            span.ops,
        ),
        Replica::MadeUp => {
            let mut leaves = vec![input];
            leaves.extend((1..=layers).map(made_up));
            (Some(TestTrace::new(leaves)), 0)
        }
        Replica::Perturbed => {
            let bad = u32::from(
                Hash::digest(
                    "agentic bench verify bad layer",
                    &[&job.0.to_be_bytes(), &stage.to_be_bytes()],
                )
                .0[0],
            ) % layers.max(1);
            (
                Some(TestTrace::cheating(&w.model, first, layers, input, bad)),
                span.ops,
            )
        }
        Replica::Smaller => {
            // The embeddings and the head run; the decoder blocks between are skipped.
            let mut leaves = vec![input];
            let mut x = input;
            let mut ops = 0;
            for l in first..first + layers {
                if l == 0 || l + 1 == w.layers {
                    x = layer_output(&w.model, l, &x);
                    ops += span
                        .layer_ops
                        .get((l - first) as usize)
                        .copied()
                        .unwrap_or(0);
                }
                leaves.push(x);
            }
            (Some(TestTrace::new(leaves)), ops)
        }
        Replica::Random | Replica::Blind => (None, 0),
    };
    let result = match (strategy.replica(), &trace) {
        (_, Some(t)) => Some(t.result()),
        (Replica::Random, None) => Some(StageResult {
            input,
            output: made_up(u32::MAX),
            trace_root: made_up(u32::MAX - 1),
            steps: 0,
        }),
        _ => None,
    };
    let commitment = match result {
        Some(res) => res.commitment(job, stage, &salt, who),
        // A blind commitment: it has nothing to commit to.
        None => made_up(u32::MAX - 2),
    };
    Work {
        trace,
        result,
        salt,
        commitment,
        computed_ops,
    }
}

/// What a drawn auditor commits to: the honest result, computed from the stage's agreed
/// input — unless it is an `auditor_sybil` partner and its coalition's worker holds a
/// replica slot of the stage, in which case it commits to the worker's claim unchecked.
#[allow(clippy::too_many_arguments)]
fn audit_work(
    actors: &[Actor],
    coalitions: &[Coalition],
    works: &HashMap<(JobId, u32, Address), Work>,
    auditor: usize,
    (job, stage, st): (JobId, u32, &agentic_protocol::state::Stage),
    input: Hash,
    span: &Span,
    w: &Workload,
) -> Work {
    let who = actors[auditor].addr;
    let worker = (actors[auditor].strategy == Strategy::SybilPartner)
        .then(|| actors[auditor].coalition)
        .flatten()
        .and_then(|c| coalitions[c].worker)
        .map(|i| actors[i].addr)
        .filter(|wa| {
            st.slots
                .iter()
                .any(|s| s.assignment.as_ref().is_some_and(|a| a.provider == *wa))
        });
    let claim = worker
        .and_then(|wa| works.get(&(job, stage, wa)))
        .and_then(|x| Some((x.result?, x.trace.clone())));
    match claim {
        Some((result, trace)) => {
            let salt = salt_for(&who, job, stage);
            Work {
                trace,
                result: Some(result),
                commitment: result.commitment(job, stage, &salt, &who),
                salt,
                computed_ops: 0,
            }
        }
        None => make_work(Strategy::Honest, &who, job, stage, input, span, w),
    }
}

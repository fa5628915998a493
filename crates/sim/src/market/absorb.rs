//! What the ledger did with a block: receipts (fees, and the refusals the cheaters'
//! doomed attempts must meet) and events (assignments, audit draws, reveals, disputes,
//! slashes, payments, claims, refunds), turned into per-(stage, party) [`Flow`]s and the
//! run's counters; and the audit draws the market predicted, checked against the
//! ledger's `AuditAssigned`.
//!
//! A `Slashed` event waits for the event that says what it was for: a `DeadlineMissed`
//! of the same amount (a missed reveal under audit) or the `DisputeResolved` after it.
//! Auditor fees the ledger pays without an event of their own (a won dispute, a release
//! when the replicas dispute among themselves) are settled here too.

use std::collections::HashSet;

use agentic_protocol::state::DisputeKind;
use agentic_protocol::test_utils::address_of;
use agentic_protocol::types::Amount;
use agentic_protocol::{Address, BlockOutcome, Event};

use super::Market;
use crate::ledger::Tag;
use crate::strategy::{Replica, Strategy};
use crate::Error;

impl Market {
    /// Receipts and events of a block.
    pub(super) fn absorb(
        &mut self,
        out: &BlockOutcome,
        tags: &[Tag],
        completing: &[(usize, bool, bool)],
    ) -> Result<(), Error> {
        let farmer = address_of(&self.farmer);
        let mut unexpected: Vec<String> = Vec::new();
        for (receipt, tag) in out.receipts.iter().zip(tags) {
            match receipt {
                Ok(()) => {
                    if let Some(&who) = self.index.get(&tag.signer) {
                        match tag.unit {
                            Some(u) => self.flow(u, who).fees += tag.fee,
                            None => self.overhead_fees[who] += tag.fee,
                        }
                    } else if tag.signer == farmer {
                        if let Some(j) = tag.job {
                            self.jobs[j].fee += tag.fee;
                        }
                    }
                }
                Err(e) => {
                    let strategy = self
                        .index
                        .get(&tag.signer)
                        .map_or("requester", |&i| self.actors[i].strategy.name());
                    match tag.expect.and_then(|x| x.refused(e)) {
                        Some(name) => {
                            *self
                                .rejections
                                .entry(format!("{strategy}/{name}"))
                                .or_default() += 1;
                            if let Some(&i) = self.index.get(&tag.signer) {
                                *self.refused_by.entry((i, name)).or_default() += 1;
                            }
                        }
                        None => unexpected
                            .push(format!("{strategy}: {e:?} (expected {:?})", tag.expect)),
                    }
                }
            }
        }
        if !unexpected.is_empty() {
            return Err(Error::UnexpectedRejections {
                run: self.label,
                height: out.height.0,
                rejections: unexpected,
            });
        }
        let mut audited_now: HashSet<usize> = HashSet::new();
        // Slashes wait for the event that says what they were for.
        let mut slashes: Vec<(Address, u128, u128)> = Vec::new();
        for rec in &out.events {
            match &rec.event {
                Event::JobSubmitted { job, escrow, .. } => {
                    let j = rec
                        .tx
                        .and_then(|t| tags.get(t as usize))
                        .and_then(|t| t.job)
                        .ok_or(Error::Untracked("a job from an untagged transaction"))?;
                    self.jobs[j].id = Some(*job);
                    self.jobs[j].escrow = escrow.0;
                    self.by_id.insert(*job, j);
                    self.active.push(*job);
                }
                Event::StageAssigned {
                    job,
                    stage,
                    replica,
                    provider,
                    price,
                    ..
                } => {
                    let u = self.unit_of(*job, *stage)?;
                    let who = self.index[provider];
                    if self.units[u].revealed {
                        self.refills_after_reveal += 1;
                        if self.actors[who].strategy == Strategy::EchoPartner {
                            self.partner_refills += 1;
                        }
                    }
                    let unit = &mut self.units[u];
                    if *replica == 0 && !unit.matched {
                        // A placed provider that no longer qualified when matched is
                        // replaced by the matcher: the stage is its replacement's.
                        unit.matched = true;
                        unit.provider = who;
                        unit.value = Amount::cost(unit.span.ops, *price).unwrap_or_default().0;
                    }
                    self.flow(u, who).price = price.0;
                }
                Event::AuditAssigned {
                    job,
                    stage,
                    auditor,
                    ..
                } => {
                    let u = self.unit_of(*job, *stage)?;
                    let who = self.index[auditor];
                    audited_now.insert(u);
                    self.audited_stages += 1;
                    self.audited_ops += u128::from(self.units[u].span.ops);
                    for &(c, q) in &self.units[u].shares {
                        let e = self.partner_draws.entry(c).or_default();
                        e.0 += q;
                        if self.coalitions[c].partners.contains(&who) {
                            e.1 += 1;
                        }
                    }
                    // A partner drawn to audit a stage its coalition's worker holds.
                    let approves = self.actors[who].strategy == Strategy::SybilPartner
                        && self.actors[who]
                            .coalition
                            .and_then(|c| self.coalitions[c].worker)
                            .is_some_and(|wk| self.flows.contains_key(&(u, wk)));
                    let price = self.actors[who].price;
                    let unit = &mut self.units[u];
                    unit.auditor = Some(who);
                    unit.audit_committed = false;
                    unit.audit_settled = false;
                    if approves
                        && self.actors[unit.provider].coalition == self.actors[who].coalition
                    {
                        unit.self_audited = true;
                    }
                    let f = self.flow(u, who);
                    f.auditor = true;
                    f.approved_partner = approves;
                    f.price = price;
                }
                Event::AuditCommitted { job, stage, .. } => {
                    let u = self.unit_of(*job, *stage)?;
                    self.units[u].audit_committed = true;
                }
                Event::ResultRevealed {
                    job,
                    stage,
                    provider,
                    output,
                } => {
                    let u = self.unit_of(*job, *stage)?;
                    self.units[u].revealed = true;
                    let who = self.index[provider];
                    self.flow(u, who).revealed = Some(*output);
                }
                Event::DisputeOpened {
                    dispute,
                    job,
                    stage,
                    challenger,
                    ..
                } => {
                    let u = self.unit_of(*job, *stage)?;
                    self.by_dispute.insert(*dispute, u);
                    self.units[u].dispute = Some(*dispute);
                    self.disputes += 1;
                    let kind = self.ledger.state.dispute(*dispute).map(|d| d.kind);
                    // An auditor that disagrees reported: it is the challenger.
                    if kind == Some(DisputeKind::Audit) {
                        if let Some(a) = self.index.get(challenger).copied() {
                            self.flow(u, a).reported = true;
                        }
                    }
                    // Replicas that disagree release a committed auditor with its fee.
                    let unit = &self.units[u];
                    if kind == Some(DisputeKind::Replica)
                        && unit.audit_committed
                        && !unit.audit_settled
                    {
                        if let Some(a) = unit.auditor {
                            self.settle_audit(u, a);
                        }
                    }
                }
                Event::BisectionNarrowed { dispute, .. } => {
                    if let Some(&u) = self.by_dispute.get(dispute) {
                        self.units[u].rounds += 1;
                    }
                }
                Event::Slashed {
                    who,
                    amount,
                    to_winner,
                    ..
                } => {
                    if self
                        .index
                        .get(who)
                        .is_some_and(|&i| self.actors[i].strategy == Strategy::Honest)
                    {
                        self.honest_slashed += 1;
                    }
                    slashes.push((*who, amount.0, to_winner.0));
                }
                Event::DeadlineMissed {
                    job,
                    stage,
                    provider,
                    penalty,
                } => {
                    let u = self.unit_of(*job, *stage)?;
                    let who = self.index[provider];
                    // Under audit a missed reveal is slashed (the slash came just before).
                    match slashes
                        .iter()
                        .position(|s| s.0 == *provider && s.1 == penalty.0)
                    {
                        Some(k) => {
                            let (_, amount, _) = slashes.remove(k);
                            let f = self.flow(u, who);
                            f.slashed += amount;
                            f.missed_under_audit = true;
                        }
                        None => self.flow(u, who).penalty += penalty.0,
                    }
                    if self.actors[who].strategy.replica() == Replica::Honest {
                        self.honest_missed += 1;
                    }
                    // Before any reveal the stage goes back to matching and its audit slot
                    // is released unpaid.
                    let unit = &self.units[u];
                    if !unit.revealed && unit.audit_committed && !unit.audit_settled {
                        if let Some(a) = unit.auditor {
                            let fee = self.audit_fee(u, a);
                            self.auditor_commitments_unpaid.0 += 1;
                            self.auditor_commitments_unpaid.1 += fee;
                            self.units[u].audit_settled = true;
                        }
                    }
                }
                Event::DisputeResolved {
                    dispute, winner, ..
                } => {
                    let u = *self
                        .by_dispute
                        .get(dispute)
                        .ok_or(Error::Untracked("an unknown dispute resolved"))?;
                    let w = winner.and_then(|a| self.index.get(&a).copied());
                    for (who, amount, to_winner) in std::mem::take(&mut slashes) {
                        let loser = *self
                            .index
                            .get(&who)
                            .ok_or(Error::Untracked("a slash of a non-provider"))?;
                        self.flow(u, loser).slashed += amount;
                        if to_winner > 0 {
                            match w {
                                Some(w) => self.flow(u, w).share += to_winner,
                                None => self
                                    .anomalies
                                    .push(format!("a winner's share without a winner: {rec:?}")),
                            }
                        }
                    }
                    // An auditor that disputed and won is paid its fee.
                    let d = self
                        .ledger
                        .state
                        .dispute(*dispute)
                        .map(|d| (d.kind, d.challenger));
                    if let Some((DisputeKind::Audit, challenger)) = d {
                        if *winner == Some(challenger) {
                            self.settle_audit(u, self.index[&challenger]);
                        }
                    }
                }
                Event::StagePaid {
                    job,
                    stage,
                    provider,
                    amount,
                } => {
                    let u = self.unit_of(*job, *stage)?;
                    let who = self.index[provider];
                    self.flow(u, who).paid += amount.0;
                }
                Event::AuditAgreed {
                    job,
                    stage,
                    auditor,
                    fee,
                } => {
                    let u = self.unit_of(*job, *stage)?;
                    let who = self.index[auditor];
                    let f = self.flow(u, who);
                    f.audit_fee += fee.0;
                    f.reported = true;
                    self.units[u].audit_settled = true;
                }
                Event::PayerCompensated { amount, .. } => self.payer_compensated += amount.0,
                Event::UnavailabilityClaimed { .. } => self.claims += 1,
                Event::DataUnavailable {
                    job,
                    compensation,
                    refund,
                } => {
                    self.unavailable += 1;
                    let j = self.by_id[job];
                    self.jobs[j].refund += refund.0;
                    // The farmed job's one assigned provider receives the compensation.
                    let parties: Vec<Address> = self
                        .ledger
                        .state
                        .job(*job)
                        .map(|x| {
                            x.stages
                                .iter()
                                .flat_map(|s| s.slots.iter())
                                .filter_map(|s| s.assignment.as_ref().map(|a| a.provider))
                                .collect()
                        })
                        .unwrap_or_default();
                    match parties.as_slice() {
                        [p] => {
                            let (u, who) = (self.jobs[j].units[0], self.index[p]);
                            self.flow(u, who).compensation += compensation.0;
                        }
                        _ => self
                            .anomalies
                            .push(format!("compensation among {parties:?}: {rec:?}")),
                    }
                }
                Event::JobCompleted { job, refund }
                | Event::JobFailed { job, refund }
                | Event::JobCancelled { job, refund }
                | Event::JobSettled { job, refund } => {
                    let j = self.by_id[job];
                    self.jobs[j].refund += refund.0;
                }
                Event::UnbondStarted { who, amount, .. } => {
                    if let Some(&i) = self.index.get(who) {
                        if self.actors[i].strategy == Strategy::UnbondThenLose {
                            let e = self.unbonded.entry(i).or_default();
                            e.0 += 1;
                            e.1 += amount.0;
                        }
                    }
                }
                Event::AuditMissed { .. }
                | Event::ChainBroken { .. }
                | Event::ClaimRejected { .. } => {
                    self.anomalies.push(format!("{:?}", rec.event));
                }
                _ => {}
            }
        }
        if !slashes.is_empty() {
            self.anomalies.push(format!(
                "slashes with no cause at block {}: {slashes:?}",
                out.height.0
            ));
        }
        for &(u, predicted, first) in completing {
            let actual = audited_now.contains(&u);
            self.predictions += 1;
            if actual != predicted {
                self.predictions_wrong += 1;
                tracing::warn!(
                    run = self.label,
                    height = out.height.0,
                    predicted,
                    unit = ?self.units[u],
                    "the ledger's audit draw differs from the bench's prediction"
                );
            }
            if first {
                self.units[u].audited = Some(actual);
            }
        }
        Ok(())
    }
}

//! `agentic demo`: the whole story of the ledger, in one process.
//!
//! This is the ledger-only scenario (issue #2): every transaction is really
//! signed, batch-verified and applied by `agentic_protocol::State`, block by
//! block, and the state root and supply invariant are checked at the end. What
//! is scripted for now is the world around the ledger: the providers' "models"
//! are the protocol's deterministic test layers (`layer(l, x) = blake3(model,
//! l, x)`), and one process plays every party. Later work replaces those parts
//! with the compute runtime, the validator network and the provider daemons.
//!
//! The acts:
//! 1. providers bond stake and register offers (price, region, coordinate);
//! 2. a requester buys a two-stage pipeline job; both stages commit-then-reveal,
//!    the challenge window closes and each provider is paid exactly ops × price;
//! 3. a principal grants its agent a mandate; the agent buys a job under it, and
//!    a purchase beyond the mandate's per-job cap is refused by the ledger;
//! 4. a cut-rate newcomer wins an audited job and fakes one layer; the auditor
//!    disagrees, the bisection game narrows the dispute to that layer, the
//!    referee re-executes it and the cheater is slashed;
//! 5. stakers vote a parameter change that takes effect at its activation height.

use agentic_protocol::event::Event;
use agentic_protocol::params::{ParamChange, ParamKey};
use agentic_protocol::state::{DisputePhase, JobStatus, StagePhase};
use agentic_protocol::test_utils::{
    address_of, fast_params, job_spec, key, GenesisBuilder, TestChain, Trace,
};
use agentic_protocol::tx::{MandateTerms, Offer, TxBody};
use agentic_protocol::types::VerificationLevel;
use agentic_protocol::types::{Capabilities, Endpoint, Region};
use agentic_protocol::{coord::Coord, Address, Amount, Hash, JobId, ProposalId, TxError};
use anyhow::{bail, ensure, Context};
use commonware_cryptography::ed25519::PrivateKey;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct Args {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One party of the story.
struct Actor {
    name: &'static str,
    role: &'static str,
    key: PrivateKey,
    addr: Address,
}

/// The parties: (seed, name, role, balance, genesis bond).
const CAST: &[(u64, &str, &str, u128, u128)] = &[
    (1, "alice", "requester", 1_000_000, 0),
    (2, "bob", "principal", 1_000_000, 0),
    (3, "bob-agent", "agent", 1_000, 0),
    (11, "frankfurt", "provider", 200_000, 0),
    (12, "virginia", "provider", 200_000, 0),
    (13, "singapore", "provider", 200_000, 0),
    (14, "cut-rate", "provider (cheats)", 200_000, 0),
    (21, "val-1", "validator", 50_000, 40_000),
    (22, "val-2", "validator", 50_000, 40_000),
    (23, "val-3", "validator", 50_000, 40_000),
    (24, "val-4", "validator", 50_000, 40_000),
];

const STAKE: u128 = 50_000;

struct Demo {
    chain: TestChain,
    cast: Vec<Actor>,
    acts: Vec<Value>,
    lines: Vec<String>,
    progress: ProgressBar,
    model: Hash,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let progress = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(5).with_style(
            ProgressStyle::with_template("{spinner} act {pos}/{len}: {msg}")
                .context("progress template")?,
        )
    };
    let cast: Vec<Actor> = CAST
        .iter()
        .map(|&(seed, name, role, _, _)| {
            let key = key(seed);
            Actor {
                name,
                role,
                addr: address_of(&key),
                key,
            }
        })
        .collect();
    let mut genesis = GenesisBuilder::new(1).params(fast_params());
    for (actor, &(_, _, _, balance, bonded)) in cast.iter().zip(CAST) {
        genesis = genesis.account(actor.addr, balance, bonded);
    }
    let mut demo = Demo {
        chain: TestChain::new(&genesis.build()),
        cast,
        acts: Vec::new(),
        lines: Vec::new(),
        progress,
        model: Hash::digest("agentic demo model", &[b"tiny-gpt, 8 layers"]),
    };
    demo.register_providers()?;
    let pipeline = demo.pipeline_job()?;
    let agent_job = demo.agent_under_mandate()?;
    let dispute = demo.cheater_caught()?;
    let governance = demo.governance()?;
    demo.progress.finish_and_clear();

    let state = &demo.chain.state;
    ensure!(state.total_supply_check(), "supply invariant broken");
    let (held, expected) = state.supply();
    let burned = state.meta().burned.0;
    let accounts: Vec<Value> = demo
        .cast
        .iter()
        .map(|a| {
            let acct = state.account(&a.addr);
            json!({
                "name": a.name, "role": a.role, "address": a.addr.to_string(),
                "balance": acct.balance.0.to_string(), "bonded": acct.bonded.0.to_string(),
                "reputation_ppm": state.provider(&a.addr).map(|_| state.reputation_ppm(&a.addr)),
            })
        })
        .collect();
    let report = json!({
        "scenario": "ledger-only (issue #2): real signed transactions and state machine; layers simulated by the protocol's deterministic test referee",
        "height": state.height().0,
        "state_root": state.root().to_string(),
        "supply_conserved": true,
        "supply_held": held.to_string(),
        "supply_expected": expected.to_string(),
        "burned": burned.to_string(),
        "acts": demo.acts,
        "pipeline_job": pipeline,
        "agent_job": agent_job,
        "dispute": dispute,
        "governance": governance,
        "accounts": accounts,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "Agentic demo — {}",
        report["scenario"].as_str().unwrap_or_default()
    );
    for line in &demo.lines {
        println!("{line}");
    }
    println!(
        "\nFinal accounts (height {}, state root {}):",
        state.height().0,
        state.root()
    );
    println!(
        "  {:<12} {:<18} {:>10} {:>10} {:>12}",
        "name", "role", "balance", "bonded", "reputation"
    );
    for a in &demo.cast {
        let acct = state.account(&a.addr);
        let rep = state
            .provider(&a.addr)
            .map(|_| format!("{:.3}", f64::from(state.reputation_ppm(&a.addr)) / 1e6))
            .unwrap_or_else(|| "-".into());
        println!(
            "  {:<12} {:<18} {:>10} {:>10} {:>12}",
            a.name, a.role, acct.balance.0, acct.bonded.0, rep
        );
    }
    println!("\nSupply conserved: balances + bonded + unbonding + escrow + bonds + burned = {held} = genesis + issuance = {expected} ({burned} burned by fees and slashing).");
    Ok(())
}

impl Demo {
    fn actor(&self, name: &str) -> anyhow::Result<&Actor> {
        self.cast
            .iter()
            .find(|a| a.name == name)
            .with_context(|| format!("no actor {name}"))
    }

    fn name_of(&self, addr: &Address) -> &'static str {
        self.cast
            .iter()
            .find(|a| a.addr == *addr)
            .map_or("?", |a| a.name)
    }

    fn key_of(&self, addr: &Address) -> anyhow::Result<PrivateKey> {
        self.cast
            .iter()
            .find(|a| a.addr == *addr)
            .map(|a| a.key.clone())
            .with_context(|| format!("unknown party {addr}"))
    }

    fn act(&mut self, title: &str, lines: Vec<String>) {
        self.lines.push(format!("\n== {title}"));
        self.lines.extend(lines.iter().map(|l| format!("   {l}")));
        self.acts.push(json!({ "title": title, "log": lines }));
        self.progress.inc(1);
    }

    /// Applies one transaction in its own block, failing the demo if it is rejected.
    fn step(&mut self, who: &str, body: TxBody) -> anyhow::Result<Vec<Event>> {
        let key = self.actor(who)?.key.clone();
        self.chain.push(&key, body);
        let out = self.chain.produce();
        if let Some(Err(e)) = out.receipts.first() {
            bail!("{who}'s transaction was rejected: {e}");
        }
        Ok(out.events.into_iter().map(|e| e.event).collect())
    }

    /// Produces `n` empty blocks and returns their events.
    fn advance(&mut self, n: u64) -> Vec<Event> {
        self.chain
            .advance(n)
            .into_iter()
            .flat_map(|o| o.events.into_iter().map(|e| e.event))
            .collect()
    }

    fn assigned(&self, job: JobId, stage: usize) -> anyhow::Result<Address> {
        self.chain
            .state
            .job(job)
            .and_then(|j| j.stages.get(stage))
            .and_then(|s| s.slots.first())
            .and_then(|s| s.assignment.as_ref())
            .map(|a| a.provider)
            .with_context(|| format!("job {job} stage {stage} is not assigned"))
    }

    fn paid_lines(&self, events: &[Event]) -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::StagePaid {
                    job,
                    stage,
                    provider,
                    amount,
                } => Some(format!(
                    "job {job} stage {stage}: {} paid {}",
                    self.name_of(provider),
                    amount.0
                )),
                Event::JobCompleted { job, refund } => Some(format!(
                    "job {job} completed; requester refunded {}",
                    refund.0
                )),
                _ => None,
            })
            .collect()
    }

    fn register_providers(&mut self) -> anyhow::Result<()> {
        self.progress.set_message("providers bond and register");
        // (name, price per mega-op, region, coordinate, measured ops/s)
        let offers = [
            (
                "frankfurt",
                5u128,
                1u16,
                Coord::new(0, 0, 500),
                2_000_000_000u64,
            ),
            ("virginia", 6, 2, Coord::new(45_000, 0, 800), 3_000_000_000),
            (
                "singapore",
                7,
                3,
                Coord::new(-30_000, 60_000, 900),
                1_500_000_000,
            ),
        ];
        let mut lines = Vec::new();
        for (name, price, region, coord, speed) in offers {
            let key = self.actor(name)?.key.clone();
            // The embedded network has no data plane, so no endpoint.
            let offer = Offer {
                capabilities: Capabilities::CPU,
                price: Amount(price),
                region: Region(region),
                coord,
                capacity: 4,
                endpoint: Endpoint::NONE,
                speed,
            };
            self.chain.push(
                &key,
                TxBody::RegisterProvider {
                    offer,
                    stake: Amount(STAKE),
                },
            );
            lines.push(format!("{name}: bonds {STAKE}, offers {price}/mega-op in region {region}, coordinate ({}, {}) µs", coord.x, coord.y));
        }
        let out = self.chain.produce();
        for r in &out.receipts {
            if let Err(e) = r {
                bail!("registration rejected: {e}");
            }
        }
        lines.push(format!("block {}: 3 providers registered", out.height.0));
        self.act("Providers bond stake and register offers", lines);
        Ok(())
    }

    fn pipeline_job(&mut self) -> anyhow::Result<Value> {
        self.progress
            .set_message("a requester buys a two-stage pipeline job");
        let input = Hash::digest("agentic demo input", &[b"Once upon a time"]);
        // Two stages of 4 layers, 20 mega-ops each, at most 10 per mega-op.
        let spec = job_spec(
            self.model,
            input,
            &[(4, 20_000_000), (4, 20_000_000)],
            10,
            VerificationLevel::Optimistic,
        );
        let job = self.chain.state.meta().next_job;
        let alice = self.actor("alice")?.addr;
        let before = self.chain.state.balance(&alice);
        let events = self.step("alice", TxBody::SubmitJob { spec })?;
        let escrow = self
            .chain
            .state
            .job(job)
            .map(|j| j.escrow.0)
            .unwrap_or_default();
        let mut lines = vec![format!(
            "alice submits job {job}: 2 stages × 20 mega-ops, max price 10 → escrow {escrow}"
        )];
        for e in &events {
            if let Event::StageAssigned {
                stage,
                provider,
                price,
                ..
            } = e
            {
                lines.push(format!(
                    "stage {stage} matched to {} at {}/mega-op",
                    self.name_of(provider),
                    price.0
                ));
            }
        }
        let p0 = self.assigned(job, 0)?;
        let p1 = self.assigned(job, 1)?;
        let t0 = Trace::honest(&self.model, 0, 4, input);
        let t1 = Trace::honest(&self.model, 4, 4, t0.result().output);
        self.chain
            .deliver(&self.key_of(&p0)?, job, 0, &t0)
            .map_err(tx_err)?;
        self.chain
            .deliver(&self.key_of(&p1)?, job, 1, &t1)
            .map_err(tx_err)?;
        lines.push(format!(
            "both stages commit, then reveal; stage 0's output {} is stage 1's input",
            short(&t0.result().output)
        ));
        let events = self.advance(self.chain.state.params().challenge_window + 2);
        lines.extend(self.paid_lines(&events));
        let j = self.chain.state.job(job).context("job vanished")?;
        ensure!(
            j.status == JobStatus::Completed,
            "pipeline job did not complete: {:?}",
            j.status
        );
        let spent = before.0 - self.chain.state.balance(&alice).0;
        lines.push(format!(
            "alice spent {spent} (bill + 1 fee); no challenge in the window"
        ));
        self.act("A requester buys a partitioned (2-stage) job", lines);
        Ok(
            json!({ "job": job.0, "escrow": escrow, "providers": [self.name_of(&p0), self.name_of(&p1)], "requester_spent": spent }),
        )
    }

    fn agent_under_mandate(&mut self) -> anyhow::Result<Value> {
        self.progress.set_message("an agent buys under a mandate");
        let agent = self.actor("bob-agent")?.addr;
        let bob = self.actor("bob")?.addr;
        let mandate = self.chain.state.meta().next_mandate;
        let expiry = self.chain.state.height().plus(40);
        let terms = MandateTerms {
            agent,
            total_cap: Amount(500),
            per_job_cap: Amount(300),
            max_unit_price: Amount(8),
            expiry,
            min_verification: VerificationLevel::Optimistic,
        };
        self.step("bob", TxBody::GrantMandate { terms })?;
        let mut lines = vec![format!(
            "bob grants mandate {mandate} to bob-agent: total ≤ 500, per job ≤ 300, unit price ≤ 8, expires at height {}",
            expiry.0
        )];
        let input = Hash::digest("agentic demo input", &[b"agent sentence batch"]);
        let mut spec = job_spec(
            self.model,
            input,
            &[(8, 30_000_000)],
            8,
            VerificationLevel::Optimistic,
        );
        spec.mandate = Some(mandate);
        let job = self.chain.state.meta().next_job;
        let bob_before = self.chain.state.balance(&bob);
        self.step("bob-agent", TxBody::SubmitJob { spec: spec.clone() })?;
        lines.push(format!(
            "bob-agent submits job {job} (30 mega-ops × ≤ 8 = 240 escrow, drawn from bob)"
        ));
        // Beyond the per-job cap: the ledger refuses, nothing changes.
        let mut big = spec;
        big.stages[0].ops = 50_000_000;
        let key = self.actor("bob-agent")?.key.clone();
        self.chain.push(&key, TxBody::SubmitJob { spec: big });
        let out = self.chain.produce();
        let refusal = match out.receipts.first() {
            Some(Err(e)) => e.to_string(),
            _ => bail!("the ledger accepted a job beyond the mandate's per-job cap"),
        };
        lines.push(format!(
            "bob-agent tries 50 mega-ops (escrow 400 > cap 300): refused by the ledger — {refusal}"
        ));
        let p = self.assigned(job, 0)?;
        let t = Trace::honest(&self.model, 0, 8, input);
        self.chain
            .deliver(&self.key_of(&p)?, job, 0, &t)
            .map_err(tx_err)?;
        let events = self.advance(self.chain.state.params().challenge_window + 2);
        lines.extend(self.paid_lines(&events));
        let spent = bob_before.0 - self.chain.state.balance(&bob).0;
        let mandate_spent = self
            .chain
            .state
            .mandate(mandate)
            .context("mandate vanished")?
            .spent
            .0;
        lines.push(format!(
            "bob paid {spent} in total; mandate spent {mandate_spent} of 500"
        ));
        self.act("An agent buys compute under an on-chain mandate", lines);
        Ok(
            json!({ "job": job.0, "mandate": mandate.0, "principal_paid": spent, "mandate_spent": mandate_spent.to_string(), "refused": refusal }),
        )
    }

    fn cheater_caught(&mut self) -> anyhow::Result<Value> {
        self.progress
            .set_message("a cheater is caught, disputed and slashed");
        let cheater = self.actor("cut-rate")?.addr;
        let offer = Offer {
            capabilities: Capabilities::CPU,
            price: Amount(3),
            region: Region(1),
            coord: Coord::new(1_000, 0, 400),
            capacity: 4,
            endpoint: Endpoint::NONE,
            speed: 2_000_000_000,
        };
        self.step(
            "cut-rate",
            TxBody::RegisterProvider {
                offer,
                stake: Amount(STAKE),
            },
        )?;
        let mut lines = vec![format!(
            "cut-rate registers at 3/mega-op, undercutting everyone (stake {STAKE})"
        )];
        let input = Hash::digest("agentic demo input", &[b"an audited request"]);
        let spec = job_spec(
            self.model,
            input,
            &[(8, 40_000_000)],
            10,
            VerificationLevel::Audited,
        );
        let job = self.chain.state.meta().next_job;
        self.step("alice", TxBody::SubmitJob { spec })?;
        let p = self.assigned(job, 0)?;
        ensure!(
            p == cheater,
            "the cheapest provider should have won the job"
        );
        let bad_layer = 5;
        let bad = Trace::cheating(&self.model, 0, 8, input, bad_layer);
        let honest = Trace::honest(&self.model, 0, 8, input);
        lines.push(format!("alice submits audited job {job}; cut-rate wins it and fakes layer {bad_layer}'s output"));
        let bonded_before = self.chain.state.account(&cheater).bonded;
        self.chain
            .deliver(&self.actor("cut-rate")?.key.clone(), job, 0, &bad)
            .map_err(tx_err)?;
        let auditor = match self.chain.state.job(job).map(|j| &j.stages[0].phase) {
            Some(StagePhase::Auditing { auditor, .. }) => *auditor,
            other => bail!("stage should be under audit, is {other:?}"),
        };
        lines.push(format!(
            "the block beacon assigns {} to audit; it re-executes and disagrees",
            self.name_of(&auditor)
        ));
        let dispute = self.chain.state.meta().next_dispute;
        let auditor_key = self.key_of(&auditor)?;
        self.chain.push(
            &auditor_key,
            TxBody::AuditReport {
                job,
                stage: 0,
                result: honest.result(),
            },
        );
        self.chain.produce();
        ensure!(
            self.chain.state.dispute(dispute).is_some(),
            "the disagreement did not open a dispute"
        );
        lines.push(format!(
            "dispute {dispute} opened: trace roots {} (cut-rate) vs {} (auditor)",
            short(&bad.result().trace_root),
            short(&honest.result().trace_root)
        ));
        let cheater_key = self.actor("cut-rate")?.key.clone();
        let mut rounds = 0;
        let mut outcome = Vec::new();
        while let Some(d) = self.chain.state.dispute(dispute) {
            if d.phase != DisputePhase::Bisecting {
                break;
            }
            let Some(mid) = d.game.midpoint() else { break };
            for (k, t) in [(&cheater_key, &bad), (&auditor_key, &honest)] {
                let (leaf, proof) = t.open(mid);
                self.chain.push(
                    k,
                    TxBody::Bisect {
                        dispute,
                        leaf,
                        proof,
                    },
                );
            }
            let out = self.chain.produce();
            if let Some(Err(e)) = out.receipts.iter().find(|r| r.is_err()) {
                bail!("bisection move rejected: {e}");
            }
            rounds += 1;
            for e in out.events {
                match e.event {
                    Event::BisectionNarrowed { lo, hi, .. } => {
                        lines.push(format!("round {rounds}: both open leaf {mid} → they agree up to leaf {lo}, disagree from leaf {hi}"));
                    }
                    other @ (Event::DisputeResolved { .. } | Event::Slashed { .. }) => {
                        outcome.push(other)
                    }
                    _ => {}
                }
            }
        }
        let d = self
            .chain
            .state
            .dispute(dispute)
            .context("dispute vanished")?;
        ensure!(
            d.phase == DisputePhase::Resolved,
            "dispute not resolved: {:?}",
            d.phase
        );
        let layer = d.game.lo();
        lines.push(format!("one layer left: validators re-execute layer {layer} alone from the agreed input; the auditor's output matches"));
        let mut slash = json!(null);
        for e in &outcome {
            if let Event::Slashed {
                who,
                amount,
                to_winner,
                to_requester,
                burned,
            } = e
            {
                lines.push(format!(
                    "{} slashed {} of {} bonded: {} to the auditor, {} to alice, {} burned",
                    self.name_of(who),
                    amount.0,
                    bonded_before.0,
                    to_winner.0,
                    to_requester.0,
                    burned.0
                ));
                slash = json!({ "who": self.name_of(who), "amount": amount.0.to_string(), "to_winner": to_winner.0.to_string(), "to_requester": to_requester.0.to_string(), "burned": burned.0.to_string() });
            }
        }
        ensure!(!slash.is_null(), "the cheater was not slashed");
        ensure!(
            layer == bad_layer,
            "the game found layer {layer}, the faked one is {bad_layer}"
        );
        let j = self.chain.state.job(job).context("job vanished")?;
        lines.push(format!(
            "job {job} is {:?}; alice's unpaid escrow is returned",
            j.status
        ));
        self.act(
            "An audit catches a cheating provider; the dispute game slashes it",
            lines,
        );
        Ok(
            json!({ "job": job.0, "dispute": dispute.0, "rounds": rounds, "disputed_layer": layer, "slash": slash, "auditor": self.name_of(&auditor) }),
        )
    }

    fn governance(&mut self) -> anyhow::Result<Value> {
        self.progress.set_message("stakers vote a parameter change");
        let change = ParamChange {
            key: ParamKey::AuditPpm,
            value: 150_000,
        };
        let before = self.chain.state.params().audit_ppm;
        let proposal: ProposalId = self.chain.state.meta().next_proposal;
        self.step("val-1", TxBody::Propose { change })?;
        let mut lines = vec![format!(
            "val-1 proposes audit probability {} → {} ppm",
            before, change.value
        )];
        for (who, approve) in [
            ("val-1", true),
            ("val-2", true),
            ("val-3", true),
            ("val-4", false),
            ("frankfurt", true),
        ] {
            let key = self.actor(who)?.key.clone();
            self.chain.push(&key, TxBody::Vote { proposal, approve });
        }
        let out = self.chain.produce();
        for e in out.events.iter().map(|e| &e.event) {
            if let Event::Voted {
                voter,
                approve,
                weight,
                ..
            } = e
            {
                lines.push(format!(
                    "{} votes {} with weight {}",
                    self.name_of(voter),
                    if *approve { "yes" } else { "no" },
                    weight.0
                ));
            }
        }
        let mut activated = None;
        for _ in 0..64 {
            for e in self.advance(1) {
                match e {
                    Event::ProposalPassed { activates, .. } => lines.push(format!(
                        "tally: quorum and threshold met; takes effect at height {}",
                        activates.0
                    )),
                    Event::ParamChanged { .. } => activated = Some(self.chain.state.height()),
                    _ => {}
                }
            }
            if activated.is_some() {
                break;
            }
        }
        let at = activated.context("the proposal never took effect")?;
        let after = self.chain.state.params().audit_ppm;
        ensure!(
            u128::from(after) == change.value,
            "parameter did not change"
        );
        lines.push(format!(
            "height {}: audit probability is now {after} ppm",
            at.0
        ));
        self.act("Token holders govern a parameter", lines);
        Ok(
            json!({ "proposal": proposal.0, "param": "audit_ppm", "before": before, "after": after, "effective_height": at.0 }),
        )
    }
}

fn tx_err(e: TxError) -> anyhow::Error {
    anyhow::anyhow!("transaction rejected: {e}")
}

fn short(h: &Hash) -> String {
    h.to_string().chars().take(12).collect()
}

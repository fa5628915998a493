//! Act 5: an audit catches a cheating provider and the dispute game slashes it.
//!
//! A newcomer joins at the lowest price, running the real daemon told to cheat
//! (`--misbehave perturb-ulp`: one element of one middle layer's output is one
//! ulp off, and it computes on from there, so its trace is self-consistent). The
//! requester names it for a one-stage job that asks for `Audited` verification.
//! When the cheater commits, the ledger draws an independent auditor by stake
//! from the block's beacon; the auditor's daemon recomputes the stage and
//! commits to its own result (`AuditCommit`) — the cheater may reveal only
//! after that, so the auditor cannot copy it. Once the cheater revealed, the
//! auditor opens its commitment (`AuditReport`), which disagrees and opens a
//! dispute. Both daemons play the bisection game (each round a trace leaf with
//! its Merkle proof) down to one layer; the validators fetch that layer's
//! agreed input from the parties, re-execute the single layer, and put the
//! verdict in a block. The cheater loses `slash_ppm` of its stake (split
//! winner / requester / burn), the job fails, and the requester gets its escrow
//! back, less the auditor's fee, plus its share. (A failed job refunds in up
//! to two steps — at failure, and when its last delivered stage settles — both
//! counted.)

use std::time::Instant;

use agentic_agent::requester::{JobInput, JobRequest, PlacementChoice};
use agentic_protocol::event::{Event, Resolution};
use agentic_protocol::state::JobStatus;
use agentic_protocol::types::VerificationLevel;
use agentic_protocol::{Amount, DisputeId, Height, JobId};
use anyhow::{bail, Context};
use serde::Serialize;

use crate::demo::acts::open::{self, ProviderReport};
use crate::demo::cast;
use crate::demo::purchase::{short, Reference};
use crate::demo::world::World;

/// The texts of the job.
const TEXTS: &[&str] = &["A cheater sells a wrong answer", "The auditor checks it"];

/// One round of the bisection game, as the chain recorded it.
#[derive(Clone, Debug, Serialize)]
pub struct Round {
    /// Height of the block that narrowed the game.
    pub height: Height,
    /// The leaf both parties agree on after the round.
    pub lo: u32,
    /// The first leaf they disagree on.
    pub hi: u32,
}

/// What the dispute act did.
#[derive(Clone, Debug, Serialize)]
pub struct DisputeReport {
    /// The cheating provider.
    pub cheater: ProviderReport,
    /// Its misbehaviour.
    pub misbehaviour: String,
    /// The job.
    pub job: JobId,
    /// Layers in the stage.
    pub layers: u32,
    /// The auditor the beacon chose.
    pub auditor: String,
    /// Height at which the auditor committed to its result (before the cheater's
    /// reveal).
    pub audit_committed_at: Height,
    /// Height of the cheater's reveal.
    pub revealed_at: Height,
    /// The dispute.
    pub dispute: DisputeId,
    /// Height it opened at.
    pub opened_at: Height,
    /// The bisection rounds.
    pub rounds: Vec<Round>,
    /// `⌈log2(layers + 1)⌉`: the most rounds the game may take.
    pub max_rounds: u32,
    /// The single layer the validators re-executed.
    pub refereed_layer: u32,
    /// Height of the verdict.
    pub resolved_at: Height,
    /// Slash parameters in force (ppm).
    pub slash_ppm: u32,
    /// Winner's share (ppm).
    pub slash_winner_ppm: u32,
    /// Requester's share (ppm).
    pub slash_requester_ppm: u32,
    /// The cheater's stake before and after.
    pub bonded_before: Amount,
    /// After.
    pub bonded_after: Amount,
    /// Slashed in all.
    pub slashed: Amount,
    /// To the auditor.
    pub to_winner: Amount,
    /// To the requester.
    pub to_requester: Amount,
    /// Burned.
    pub burned: Amount,
    /// The job's escrow.
    pub escrow: Amount,
    /// Refunded when the job failed (and, if a delivered stage was still being
    /// verified, when it settled).
    pub refund: Amount,
    /// The auditor's fee, paid from the escrow (ops × its price).
    pub auditor_fee: Amount,
    /// The `SubmitJob` fee: the minimum fee plus one per replica and auditor slot.
    pub fee: Amount,
    /// The requester's balance drop: fee + auditor fee − its slash share.
    pub requester_spent: Amount,
    /// The honest local run's output, and the cheater's claim.
    pub honest_output: agentic_protocol::Hash,
    /// What the cheater claimed.
    pub claimed_output: agentic_protocol::Hash,
}

/// The act's title.
pub const TITLE: &str = "An audit catches a cheating provider; the dispute game slashes it";

pub async fn run(w: &mut World) -> anyhow::Result<DisputeReport> {
    w.progress.begin(TITLE);
    let profile = cast::CHEATER;
    let mode = profile
        .misbehave
        .context("the cheater's profile names no misbehaviour")?;
    w.progress.step(format!(
        "{} joins the market (--misbehave {})",
        profile.name,
        mode.name()
    ));
    w.start_provider(&profile).await?;
    let cheater_report = open::describe(w, &profile)?;
    let cheater = cheater_report.address;
    let mut log = vec![format!(
        "{} joins: {}",
        profile.name,
        open::line(&cheater_report, profile.about)
    )];

    let texts: Vec<String> = TEXTS.iter().map(|t| t.to_string()).collect();
    let alice = w.requester(cast::REQUESTER)?;
    let mut req = JobRequest::new(cast::MODEL, JobInput::Texts(texts.clone()));
    req.stages = 1;
    req.max_price = Amount(cast::MAX_PRICE);
    req.deadline = cast::DEADLINE;
    req.verification = VerificationLevel::Audited;
    // Auditors must have a record: the provider that crashed in act 4 does not qualify.
    req.min_reputation_ppm = cast::AUDIT_MIN_REPUTATION_PPM;
    req.placement = PlacementChoice::Named(vec![cheater]);
    let prepared = alice.prepare(&req).await.context("preparing the job")?;
    let (slash_ppm, winner_ppm, requester_ppm) = w.state(|s| {
        let p = s.params();
        (p.slash_ppm, p.slash_winner_ppm, p.slash_requester_ppm)
    });
    let alice0 = w.account(&alice.address()).balance;
    let bonded0 = w.account(&cheater).bonded;
    let t0 = Instant::now();
    let sub = alice
        .submit_detailed(&prepared)
        .await
        .context("submitting the job")?;
    let job_id = sub.job;
    log.push(format!(
        "{} buys job {job_id}: one stage on {} (named), verification Audited",
        cast::REQUESTER,
        profile.name,
    ));
    w.progress.step(
        "the cheater commits; the beacon draws an auditor, which commits first; the game is played",
    );
    let job = w.follow(&alice, job_id).await?;
    let seconds = t0.elapsed().as_secs_f64();
    let layers = job.spec.stages[0].layers;
    let escrow = sub.escrow;

    // What the chain recorded.
    let auditor = w
        .events
        .select(|_, e| match e {
            Event::AuditAssigned { job, auditor, .. } if *job == job_id => Some(*auditor),
            _ => None,
        })
        .into_iter()
        .next()
        .context("no audit was assigned")?;
    let (dispute, opened_at, challenger) = w
        .events
        .select(|h, e| match e {
            Event::DisputeOpened {
                dispute,
                job,
                challenger,
                ..
            } if *job == job_id => Some((*dispute, h, *challenger)),
            _ => None,
        })
        .into_iter()
        .next()
        .context("the audit opened no dispute")?;
    let rounds: Vec<Round> = w.events.select(|h, e| match e {
        Event::BisectionNarrowed { dispute: d, lo, hi } if *d == dispute => Some(Round {
            height: h,
            lo: *lo,
            hi: *hi,
        }),
        _ => None,
    });
    let (resolved_at, winner, resolution) = w
        .events
        .select(|h, e| match e {
            Event::DisputeResolved {
                dispute: d,
                winner,
                resolution,
            } if *d == dispute => Some((h, *winner, *resolution)),
            _ => None,
        })
        .into_iter()
        .next()
        .context("the dispute was not resolved")?;
    let (slashed, to_winner, to_requester, burned) = w
        .events
        .select(|_, e| match e {
            Event::Slashed {
                who,
                amount,
                to_winner,
                to_requester,
                burned,
            } if *who == cheater => Some((*amount, *to_winner, *to_requester, *burned)),
            _ => None,
        })
        .into_iter()
        .next()
        .unwrap_or_default();
    // A failed job refunds at failure and, if a delivered stage was still being
    // verified, the rest when it settles.
    let refund = w
        .events
        .select(|_, e| match e {
            Event::JobFailed { job, refund } | Event::JobSettled { job, refund }
                if *job == job_id =>
            {
                Some(*refund)
            }
            _ => None,
        })
        .into_iter()
        .fold(Amount::ZERO, Amount::saturating_add);
    let audit_committed_at = w
        .events
        .select(|h, e| match e {
            Event::AuditCommitted {
                job, auditor: a, ..
            } if *job == job_id && *a == auditor => Some(h),
            _ => None,
        })
        .into_iter()
        .next()
        .context("the auditor never committed")?;
    let revealed_at = w
        .events
        .select(|h, e| match e {
            Event::ResultRevealed { job, provider, .. }
                if *job == job_id && *provider == cheater =>
            {
                Some(h)
            }
            _ => None,
        })
        .into_iter()
        .next()
        .context("the cheater never revealed")?;
    let auditor_price = w
        .state(|s| s.provider(&auditor).map(|p| p.offer.price))
        .context("the auditor is no provider")?;
    let expected_auditor_fee = Amount::cost(job.spec.stages[0].ops, auditor_price)
        .context("the auditor's fee overflows")?;
    let refereed_layer = match resolution {
        Resolution::Refereed { layer } => layer,
        other => bail!("the dispute ended {other:?}, not by the referee"),
    };
    let bonded1 = w.account(&cheater).bonded;
    let alice1 = w.account(&alice.address()).balance;
    let requester_spent = alice0.saturating_sub(alice1);
    let auditor_fee = escrow.saturating_sub(refund);
    let claimed_output = job.stages[0].result.map(|r| r.output).unwrap_or_default();
    let reference = Reference::run(cast::MODEL, &texts)?;
    let honest_output = reference.output_hash();
    let max_rounds = u32::BITS - layers.leading_zeros(); // ⌈log2(layers + 1)⌉
    let auditor_name = w.name(&auditor);

    log.push(format!(
        "{} committed; the beacon picked {auditor_name} to audit, which committed to its own result at height {audit_committed_at}",
        profile.name,
    ));
    log.push(format!(
        "height {revealed_at}: {} revealed output {} (the honest run gives {})",
        profile.name,
        short(&claimed_output),
        short(&honest_output)
    ));
    log.push(format!(
        "height {opened_at}: {auditor_name}'s AuditReport disagrees — dispute {} opened over {layers} layers",
        dispute.0
    ));
    for (i, r) in rounds.iter().enumerate() {
        log.push(format!(
            "height {}: round {} — both agree up to leaf {}, differ at leaf {}",
            r.height,
            i + 1,
            r.lo,
            r.hi
        ));
    }
    log.push(format!(
        "height {resolved_at}: the validators fetched layer {refereed_layer}'s agreed input, re-executed that one layer, and found for {}",
        winner.map_or("nobody".to_string(), |a| w.name(&a))
    ));
    log.push(format!(
        "{} slashed {slashed} ({slash_ppm} ppm of its {bonded0} stake): {to_winner} to {auditor_name}, {to_requester} to {}, {burned} burned",
        profile.name,
        cast::REQUESTER
    ));
    log.push(format!(
        "job {job_id} failed in {seconds:.1} s: {} refunded {refund} of the {escrow} escrow ({auditor_fee} paid {auditor_name} for the audit); spent {requester_spent} = fee {} + audit {auditor_fee} − slash share {to_requester}",
        cast::REQUESTER,
        sub.fee
    ));

    let expected_slash = bonded0.mul_ppm(slash_ppm);
    w.check(
        "dispute: the audit caught the cheater and the game ended at one layer in at most ⌈log2(layers+1)⌉ rounds",
        job.status == JobStatus::Failed
            && challenger == auditor
            && winner == Some(auditor)
            && claimed_output != honest_output
            && audit_committed_at <= revealed_at
            && !rounds.is_empty()
            && rounds.len() as u32 <= max_rounds
            && rounds.last().is_some_and(|r| r.hi == r.lo + 1),
        format!(
            "{} rounds (max {max_rounds}) over {layers} layers; refereed layer {refereed_layer}; winner {}",
            rounds.len(),
            winner.map_or("none".into(), |a| w.name(&a))
        ),
    );
    w.check(
        "dispute: the cheater lost exactly slash_ppm of its stake, split by the governed shares",
        slashed == expected_slash
            && bonded1.0 == bonded0.0 - slashed.0
            && to_winner == slashed.mul_ppm(winner_ppm)
            && to_requester == slashed.mul_ppm(requester_ppm)
            && burned.0 == slashed.0 - to_winner.0 - to_requester.0,
        format!(
            "{bonded0} × {slash_ppm} ppm = {slashed}: {to_winner} + {to_requester} + {burned}; bonded {bonded0} → {bonded1}"
        ),
    );
    w.check(
        "dispute: the requester paid only the fee and the audit, and got its share of the slash",
        requester_spent.0 + to_requester.0 == sub.fee.0 + auditor_fee.0
            && auditor_fee == expected_auditor_fee,
        format!(
            "spent {requester_spent} = {} + {auditor_fee} − {to_requester}; audit fee = ops × the auditor's price {auditor_price}",
            sub.fee
        ),
    );
    w.act(TITLE, log);
    Ok(DisputeReport {
        cheater: cheater_report,
        misbehaviour: mode.name().to_string(),
        job: job_id,
        layers,
        auditor: auditor_name,
        audit_committed_at,
        revealed_at,
        dispute,
        opened_at,
        rounds,
        max_rounds,
        refereed_layer,
        resolved_at,
        slash_ppm,
        slash_winner_ppm: winner_ppm,
        slash_requester_ppm: requester_ppm,
        bonded_before: bonded0,
        bonded_after: bonded1,
        slashed,
        to_winner,
        to_requester,
        burned,
        escrow,
        refund,
        auditor_fee,
        fee: sub.fee,
        requester_spent,
        honest_output,
        claimed_output,
    })
}

//! Act 2: a requester buys a partitioned inference job through the SDK. The
//! partitioner places the model's layers on three providers from their
//! offers (speed, coordinates, price); the stages run on three daemons that
//! push activations to each other, commit, reveal and get paid. The output is
//! checked against one local run, bit for bit, and the bill to the base unit.

use std::time::Instant;

use agentic_agent::requester::{JobInput, JobRequest, PlacementChoice};
use agentic_protocol::state::JobStatus;
use agentic_protocol::{Address, Amount, JobId};
use anyhow::{bail, Context};
use serde::Serialize;

use crate::demo::cast;
use crate::demo::purchase::{self, short, thousands, Identity, Reference, StageBill};
use crate::demo::world::World;

/// The texts the requester sends.
pub const TEXTS: &[&str] = &["The Fox and the Crow", "A stage per provider"];

/// One provider's takings from the job.
#[derive(Clone, Debug, Serialize)]
pub struct Takings {
    /// The provider.
    pub provider: String,
    /// Balance before the job.
    pub before: Amount,
    /// Balance after the job.
    pub after: Amount,
    /// Transactions it sent meanwhile (its nonce's rise): commit and reveal, and any
    /// offer update the daemon made.
    pub txs: u64,
    /// Their fees (`txs` × the minimum fee).
    pub fees: Amount,
    /// Reputation before the job (ppm).
    pub reputation_before_ppm: u32,
    /// Reputation after: a success is on its record.
    pub reputation_after_ppm: u32,
}

/// What the pipeline job did.
#[derive(Clone, Debug, Serialize)]
pub struct PipelineReport {
    /// The job.
    pub job: JobId,
    /// Who bought it.
    pub requester: String,
    /// How it was placed.
    pub placement: String,
    /// The partitioner's predicted end-to-end latency (s).
    pub predicted_latency_s: Option<f64>,
    /// The texts.
    pub texts: Vec<String>,
    /// Escrow locked at submission.
    pub escrow: Amount,
    /// The `SubmitJob` fee.
    pub fee: Amount,
    /// Per stage.
    pub stages: Vec<StageBill>,
    /// Paid to providers.
    pub paid: Amount,
    /// Escrow returned.
    pub refund: Amount,
    /// The requester's balance drop.
    pub requester_spent: Amount,
    /// Each provider's balance before and after.
    pub providers: Vec<Takings>,
    /// Compared with one local run.
    pub identity: Identity,
    /// Blocks from submission to completion.
    pub blocks: u64,
    /// Seconds from submission to completion.
    pub seconds: f64,
}

pub async fn run(w: &mut World) -> anyhow::Result<PipelineReport> {
    let title = "A requester buys a three-stage inference job";
    w.progress.begin(title);
    let texts: Vec<String> = TEXTS.iter().map(|t| t.to_string()).collect();
    let alice = w.requester(cast::REQUESTER)?;
    let mut req = JobRequest::new(cast::MODEL, JobInput::Texts(texts.clone()));
    req.stages = 3;
    req.max_price = Amount(cast::MAX_PRICE);
    req.deadline = cast::DEADLINE;
    req.placement = PlacementChoice::Auto;

    w.progress
        .step("the partitioner places the layers on the offers");
    let prepared = alice.prepare(&req).await.context("preparing the job")?;
    let mut log = vec![format!(
        "{} asks {} to continue {:?}: {} layers, {} ops metered before anything is sent",
        cast::REQUESTER,
        cast::MODEL,
        TEXTS,
        prepared.layer_ops.len(),
        thousands(prepared.total_ops())
    )];
    let plan = prepared
        .placement
        .clone()
        .context("automatic placement returned no plan")?;
    for (i, s) in plan.stages.iter().enumerate() {
        log.push(format!(
            "plan: stage {i} = layers {}..{} ({} ops) on {} at {} per mega-op, {} ops/s → {} compute",
            s.first_layer,
            s.first_layer + s.layers,
            thousands(s.ops),
            w.name(&s.provider),
            s.price.map_or("?".into(), |p| p.to_string()),
            s.speed_ops_per_s
                .map_or("?".into(), thousands),
            s.compute_s.map_or("?".into(), duration)
        ));
    }
    if let Some(l) = plan.latency_s {
        log.push(format!(
            "predicted {} end to end (compute + transfers) over {} candidate offers; the ledger checks the named placement",
            duration(l),
            plan.candidates
        ));
    }

    let alice_addr = alice.address();
    let planned: Vec<Address> = plan.stages.iter().map(|s| s.provider).collect();
    let before_alice = w.account(&alice_addr).balance;
    let before: Vec<(Amount, u64, u32)> = planned
        .iter()
        .map(|a| {
            w.state(|s| {
                let acct = s.account(a);
                (acct.balance, acct.nonce, s.reputation_ppm(a))
            })
        })
        .collect();

    w.progress
        .step("uploading the model and input, submitting the job");
    let h0 = w.height();
    let t0 = Instant::now();
    let sub = alice
        .submit_detailed(&prepared)
        .await
        .context("submitting the job")?;
    log.push(format!(
        "job {} submitted: escrow {} = {} ops × max price {} / 10^6, fee {}, {} bytes uploaded",
        sub.job,
        sub.escrow,
        thousands(prepared.total_ops()),
        cast::MAX_PRICE,
        sub.fee,
        thousands(sub.uploaded_bytes)
    ));
    w.progress
        .step(format!("job {} runs on three providers", sub.job));
    let job = w.follow(&alice, sub.job).await?;
    let seconds = t0.elapsed().as_secs_f64();
    let blocks = w.height().saturating_sub(h0);
    if job.status != JobStatus::Completed {
        bail!("job {} ended {:?}: {job:#?}", sub.job, job.status);
    }
    let result = alice.result(sub.job).await.context("fetching the output")?;
    w.progress.step("running the model once locally to compare");
    let reference = Reference::run(cast::MODEL, &texts)?;
    let identity = Identity::of(&job, &result, &reference);
    let bills = purchase::bills(w, sub.job, &job);
    let paid = Amount(bills.iter().map(|b| b.paid.0).sum());
    let refund = purchase::refund(w, sub.job).unwrap_or(Amount::ZERO);
    let after_alice = w.account(&alice_addr).balance;
    let requester_spent = before_alice.saturating_sub(after_alice);

    log.push(format!(
        "job {} completed in {seconds:.1} s ({blocks} blocks); output {} ({} × {})",
        sub.job,
        short(&result.output_hash),
        result.output.rows(),
        result.output.width()
    ));
    log.extend(purchase::bill_lines(&bills));
    log.push(format!(
        "{} paid {paid} + fee {} = {requester_spent}; refund {refund} of the {} escrow",
        cast::REQUESTER,
        sub.fee,
        sub.escrow
    ));

    let takings: Vec<Takings> = planned
        .iter()
        .zip(&before)
        .map(|(addr, (balance, nonce, rep))| {
            let now = w.account(addr);
            let txs = now.nonce.saturating_sub(*nonce);
            Takings {
                provider: w.name(addr),
                before: *balance,
                after: now.balance,
                txs,
                fees: Amount(u128::from(txs) * w.fee.0),
                reputation_before_ppm: *rep,
                reputation_after_ppm: w.state(|s| s.reputation_ppm(addr)),
            }
        })
        .collect();
    log.push(format!(
        "reputation moves with delivered value: {}",
        takings
            .iter()
            .map(|t| format!(
                "{} {:.3} → {:.3}",
                t.provider,
                f64::from(t.reputation_before_ppm) / 1e6,
                f64::from(t.reputation_after_ppm) / 1e6
            ))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    // The checks.
    w.check(
        "pipeline: output bit-identical to one local run (output hash, bytes, every stage's trace root)",
        identity.bit_identical,
        format!(
            "output {} vs local {}; stage roots {} vs local {}",
            short(&identity.output_hash),
            short(&identity.local_output_hash),
            identity.trace_roots.iter().map(short).collect::<Vec<_>>().join(","),
            identity
                .local_trace_roots
                .iter()
                .map(short)
                .collect::<Vec<_>>()
                .join(",")
        ),
    );
    let mut distinct: Vec<Address> = bills.iter().map(|b| b.address).collect();
    distinct.sort();
    distinct.dedup();
    w.check(
        "pipeline: three stages on three different providers, as placed",
        distinct.len() == 3 && bills.iter().map(|b| b.address).eq(planned.iter().copied()),
        bills
            .iter()
            .map(|b| b.provider.clone())
            .collect::<Vec<_>>()
            .join(" → "),
    );
    w.check(
        "pipeline: each stage paid exactly ops × price / 10^6, once",
        purchase::exact(&bills),
        bills
            .iter()
            .map(|b| format!("{} = {}", b.paid, b.bill))
            .collect::<Vec<_>>()
            .join(", "),
    );
    w.check(
        "pipeline: requester spent exactly the bills plus its fee; the rest of the escrow came back",
        requester_spent.0 == paid.0 + sub.fee.0 && refund.0 + paid.0 == sub.escrow.0,
        format!(
            "spent {requester_spent} = {paid} + {}; refund {refund} = {} − {paid}",
            sub.fee, sub.escrow
        ),
    );
    let takings_ok = bills
        .iter()
        .zip(&takings)
        .all(|(b, t)| t.txs >= 2 && t.after.0 + t.fees.0 == t.before.0 + b.bill.0);
    w.check(
        "pipeline: each provider's balance rose by its bill less its transaction fees (commit, reveal)",
        takings_ok,
        takings
            .iter()
            .map(|t| {
                format!(
                    "{} +{} = bill − {} fees",
                    t.provider,
                    t.after.0 as i128 - t.before.0 as i128,
                    t.txs
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
    );
    w.act(title, log);
    Ok(PipelineReport {
        job: sub.job,
        requester: cast::REQUESTER.to_string(),
        placement: "auto (the partitioner over the current offers)".into(),
        predicted_latency_s: plan.latency_s,
        texts,
        escrow: sub.escrow,
        fee: sub.fee,
        stages: bills,
        paid,
        refund,
        requester_spent,
        providers: takings,
        identity,
        blocks,
        seconds,
    })
}

/// Seconds as µs, ms or s.
fn duration(s: f64) -> String {
    match s {
        s if s < 1e-3 => format!("{:.0} µs", s * 1e6),
        s if s < 1.0 => format!("{:.1} ms", s * 1e3),
        s => format!("{s:.2} s"),
    }
}

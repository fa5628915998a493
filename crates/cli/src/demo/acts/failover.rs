//! Act 4: a stage provider crashes mid-job. A newcomer on an old machine takes
//! the middle stage of a job (the requester names it), and dies while
//! computing. Its commit deadline passes; the ledger penalizes it (a share of
//! its stake: part to the payer, the rest burned), records a failure in its
//! reputation, excludes it from the job and re-routes the stage to the best
//! remaining offer. The job completes with the same bits, and the requester
//! pays each stage once.

use std::time::Instant;

use agentic_agent::requester::{JobInput, JobRequest, PlacementChoice};
use agentic_protocol::event::Event;
use agentic_protocol::state::{JobStatus, StagePhase};
use agentic_protocol::{Address, Amount, Height, JobId};
use anyhow::{bail, Context};
use serde::Serialize;

use crate::demo::acts::open::{self, ProviderReport};
use crate::demo::cast;
use crate::demo::purchase::{self, short, Identity, Reference, StageBill};
use crate::demo::world::World;

/// The texts of the job.
const TEXTS: &[&str] = &["A provider crashes", "The job goes on"];
/// The stage the victim takes.
const STAGE: u32 = 1;

/// What the failover act did.
#[derive(Clone, Debug, Serialize)]
pub struct FailoverReport {
    /// The job.
    pub job: JobId,
    /// The provider that died.
    pub victim: ProviderReport,
    /// The stage it held.
    pub stage: u32,
    /// The providers named at submission, in stage order.
    pub placement: Vec<String>,
    /// Height at which it was killed.
    pub killed_at: Height,
    /// Stages it had finished computing when killed.
    pub victim_stages_computed: u64,
    /// Height at which the ledger found its deadline missed.
    pub deadline_missed_at: Height,
    /// The provider the stage was re-routed to.
    pub replacement: String,
    /// The miss penalty (ppm of stake) in force.
    pub miss_penalty_ppm: u32,
    /// The share of a penalty paid to the payer (ppm).
    pub slash_requester_ppm: u32,
    /// Stake before the miss.
    pub bonded_before: Amount,
    /// Stake after.
    pub bonded_after: Amount,
    /// The penalty the ledger took.
    pub penalty: Amount,
    /// Paid from it to the requester.
    pub to_requester: Amount,
    /// Burned from it.
    pub burned: Amount,
    /// Reputation before (ppm).
    pub reputation_before_ppm: u32,
    /// Reputation after (ppm).
    pub reputation_after_ppm: u32,
    /// Failure weight on its record after (value units).
    pub reputation_failure: u128,
    /// The job's bill.
    pub stages: Vec<StageBill>,
    /// Paid to providers.
    pub paid: Amount,
    /// The `SubmitJob` fee.
    pub fee: Amount,
    /// The requester's balance drop: paid + fee − its share of the penalty.
    pub requester_spent: Amount,
    /// Compared with one local run.
    pub identity: Identity,
    /// Seconds from submission to completion.
    pub seconds: f64,
}

pub async fn run(w: &mut World) -> anyhow::Result<FailoverReport> {
    let title = "A stage provider dies mid-job; the stage is re-routed";
    w.progress.begin(title);
    let profile = cast::VICTIM;
    w.progress.step(format!(
        "{} joins the market (an old machine, ×{} slower)",
        profile.name, profile.slowdown
    ));
    w.start_provider(&profile).await?;
    let victim_report = open::describe(w, &profile)?;
    let victim = victim_report.address;
    let mut log = vec![format!(
        "{} joins: {}",
        profile.name,
        open::line(&victim_report, profile.about)
    )];

    // The requester names the providers: the victim in the middle.
    let first = cast::PROVIDERS[0].name;
    let last = cast::PROVIDERS[1].name;
    let names = [first, profile.name, last];
    let placement: Vec<Address> = names
        .iter()
        .map(|n| w.address(n))
        .collect::<anyhow::Result<_>>()?;
    let texts: Vec<String> = TEXTS.iter().map(|t| t.to_string()).collect();
    let alice = w.requester(cast::REQUESTER)?;
    let mut req = JobRequest::new(cast::MODEL, JobInput::Texts(texts.clone()));
    req.stages = 3;
    req.max_price = Amount(cast::MAX_PRICE);
    req.deadline = cast::DEADLINE;
    req.placement = PlacementChoice::Named(placement.clone());
    let prepared = alice.prepare(&req).await.context("preparing the job")?;
    let (miss_ppm, requester_ppm) =
        w.state(|s| (s.params().miss_penalty_ppm, s.params().slash_requester_ppm));
    let alice0 = w.account(&alice.address()).balance;
    let t0 = Instant::now();
    let sub = alice
        .submit_detailed(&prepared)
        .await
        .context("submitting the job")?;
    log.push(format!(
        "{} buys job {} with the stages named: {} (deadline {} blocks per stage)",
        cast::REQUESTER,
        sub.job,
        names.join(" → "),
        cast::DEADLINE
    ));

    // Kill the victim once its input is agreed and it is computing.
    w.progress.step(format!(
        "waiting for {} to start stage {STAGE}",
        profile.name
    ));
    let stage = STAGE as usize;
    w.job_when(
        sub.job,
        &format!("{} to start stage {STAGE}", profile.name),
        |job| {
            let holds = job.stages[stage]
                .slots
                .first()
                .and_then(|s| s.assignment.as_ref())
                .is_some_and(|a| a.provider == victim);
            let input_agreed = job.stages[stage - 1].result.is_some();
            if holds
                && input_agreed
                && matches!(job.stages[stage].phase, StagePhase::Running { .. })
            {
                return Ok(true);
            }
            if job.status != JobStatus::Active {
                bail!(
                    "{} never started stage {STAGE} of job {}: {job:#?}",
                    profile.name,
                    sub.job
                );
            }
            Ok(false)
        },
    )
    .await?;
    let (bonded0, rep0) = w.state(|s| (s.account(&victim).bonded, s.reputation_ppm(&victim)));
    let provider = w
        .providers
        .remove(profile.name)
        .context("the victim is not running")?;
    let computed = provider.status().stages_computed;
    provider.kill();
    let killed_at = Height(w.height());
    log.push(format!(
        "height {killed_at}: stage {}'s output is agreed and {} is computing stage {STAGE} (stages finished: {computed}) — killed",
        STAGE - 1,
        profile.name
    ));

    w.progress.step(format!(
        "{}'s deadline runs out; the ledger re-routes stage {STAGE}",
        profile.name
    ));
    let job = w.follow(&alice, sub.job).await?;
    let seconds = t0.elapsed().as_secs_f64();
    if job.status != JobStatus::Completed {
        bail!("job {} ended {:?}", sub.job, job.status);
    }
    let (missed_at, penalty) = w
        .events
        .select(|h, e| match e {
            Event::DeadlineMissed {
                job,
                stage,
                provider,
                penalty,
            } if *job == sub.job && *stage == STAGE && *provider == victim => Some((h, *penalty)),
            _ => None,
        })
        .into_iter()
        .next()
        .unwrap_or((Height(0), Amount::ZERO));
    let assigned: Vec<Address> = w.events.select(|_, e| match e {
        Event::StageAssigned {
            job,
            stage,
            provider,
            ..
        } if *job == sub.job && *stage == STAGE => Some(*provider),
        _ => None,
    });
    let result = alice.result(sub.job).await.context("fetching the output")?;
    let reference = Reference::run(cast::MODEL, &texts)?;
    let identity = Identity::of(&job, &result, &reference);
    let bills = purchase::bills(w, sub.job, &job);
    let paid = Amount(bills.iter().map(|b| b.paid.0).sum());
    let replacement = bills
        .get(STAGE as usize)
        .map(|b| b.address)
        .unwrap_or(victim);
    let (bonded1, rep1, failure) = w.state(|s| {
        (
            s.account(&victim).bonded,
            s.reputation_ppm(&victim),
            s.provider(&victim).map_or(0, |p| p.reputation.failure),
        )
    });
    let alice1 = w.account(&alice.address()).balance;
    let requester_spent = alice0.saturating_sub(alice1);
    let to_requester = penalty.mul_ppm(requester_ppm);
    let burned = penalty.saturating_sub(to_requester);
    log.push(format!(
        "height {}: {} missed its deadline — penalty {penalty} ({} ppm of its {bonded0} stake): {to_requester} to {}, {burned} burned; reputation {:.3} → {:.3}",
        missed_at,
        profile.name,
        miss_ppm,
        cast::REQUESTER,
        f64::from(rep0) / 1e6,
        f64::from(rep1) / 1e6
    ));
    log.push(format!(
        "stage {STAGE} re-routed to {} (the best remaining offer); job {} completed in {seconds:.1} s, output {} identical to the local run: {}",
        w.name(&replacement),
        sub.job,
        short(&identity.output_hash),
        identity.bit_identical
    ));
    log.extend(purchase::bill_lines(&bills));
    log.push(format!(
        "{} paid once: {paid} + fee {} − its penalty share {to_requester} = {requester_spent}",
        cast::REQUESTER,
        sub.fee
    ));

    w.check(
        "failover: the killed provider's stage was re-routed and the job completed with the same bits",
        job.excluded.contains(&victim)
            && replacement != victim
            && assigned == vec![victim, replacement]
            && identity.bit_identical,
        format!(
            "stage {STAGE}: {} → {}; output {} vs local {}",
            profile.name,
            w.name(&replacement),
            short(&identity.output_hash),
            short(&identity.local_output_hash)
        ),
    );
    w.check(
        "failover: the dead provider lost exactly miss_penalty_ppm of its stake",
        penalty.0 > 0 && penalty == bonded0.mul_ppm(miss_ppm) && bonded1.0 == bonded0.0 - penalty.0,
        format!("{bonded0} × {miss_ppm} ppm = {penalty}; bonded {bonded0} → {bonded1}"),
    );
    w.check(
        "failover: a failure is on the dead provider's record and its reputation fell",
        failure > 0 && rep1 < rep0,
        format!("failure weight {failure}; reputation {rep0} → {rep1} ppm"),
    );
    w.check(
        "failover: the requester paid each stage once, and got its share of the penalty",
        purchase::exact(&bills) && requester_spent.0 + to_requester.0 == paid.0 + sub.fee.0,
        format!(
            "spent {requester_spent} = {paid} + {} − {to_requester}",
            sub.fee
        ),
    );
    w.act(title, log);
    Ok(FailoverReport {
        job: sub.job,
        victim: victim_report,
        stage: STAGE,
        placement: names.iter().map(|n| n.to_string()).collect(),
        killed_at,
        victim_stages_computed: computed,
        deadline_missed_at: missed_at,
        replacement: w.name(&replacement),
        miss_penalty_ppm: miss_ppm,
        slash_requester_ppm: requester_ppm,
        bonded_before: bonded0,
        bonded_after: bonded1,
        penalty,
        to_requester,
        burned,
        reputation_before_ppm: rep0,
        reputation_after_ppm: rep1,
        reputation_failure: failure,
        stages: bills,
        paid,
        fee: sub.fee,
        requester_spent,
        identity,
        seconds,
    })
}

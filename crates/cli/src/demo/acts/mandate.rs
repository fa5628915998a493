//! Act 3: an agent spends its principal's tokens under an on-chain mandate.
//! The principal grants caps (per job, in total, unit price, expiry); the
//! agent buys a job within them and the principal pays exactly its bill; a
//! purchase over the per-job cap is refused by the ledger itself, and the
//! principal loses nothing.

use agentic_agent::requester::{JobInput, JobRequest, PlacementChoice, RequesterError};
use agentic_protocol::state::JobStatus;
use agentic_protocol::tx::MandateTerms;
use agentic_protocol::types::VerificationLevel;
use agentic_protocol::{Amount, Height, JobId, MandateId};
use anyhow::{bail, Context};
use serde::Serialize;

use crate::demo::cast;
use crate::demo::purchase::{self, thousands, StageBill};
use crate::demo::world::World;

/// What the agent buys within its caps.
const SMALL: &[&str] = &["An agent buys on a budget"];
/// What it then tries to buy: far more tokens, far more ops.
const BIG: &[&str] = &[
    "The principal set a per-job cap on purpose.",
    "An agent that goes rogue cannot spend more.",
    "The ledger checks every job against the caps.",
    "Six long texts cost more than the cap allows.",
    "So this purchase never locks a single token.",
    "And the principal's balance does not move.",
];

/// The mandate's terms as the report shows them.
#[derive(Clone, Debug, Serialize)]
pub struct Terms {
    /// Most escrow one job may lock.
    pub per_job_cap: Amount,
    /// Most escrow plus spending in total.
    pub total_cap: Amount,
    /// Highest price per mega-op.
    pub max_unit_price: Amount,
    /// First height it no longer authorizes jobs.
    pub expiry: Height,
}

/// What the mandate act did.
#[derive(Clone, Debug, Serialize)]
pub struct MandateReport {
    /// The mandate.
    pub mandate: MandateId,
    /// Who pays.
    pub principal: String,
    /// Who spends.
    pub agent: String,
    /// Its caps.
    pub terms: Terms,
    /// The job bought within the caps.
    pub job: JobId,
    /// Its escrow (drawn from the principal).
    pub escrow: Amount,
    /// Its stages, matched by the ledger.
    pub stages: Vec<StageBill>,
    /// Paid to providers.
    pub paid: Amount,
    /// The principal's balance drop for the job.
    pub principal_paid: Amount,
    /// The agent's balance drop (its fee only).
    pub agent_paid: Amount,
    /// The `SubmitJob` fee the agent paid: the minimum fee plus one per replica and
    /// auditor slot the ledger matched.
    pub fee: Amount,
    /// The mandate's `spent` after the job (escrow refunds give room back).
    pub mandate_spent: Amount,
    /// The escrow of the purchase over the cap.
    pub refused_escrow: Amount,
    /// The ledger's reason for refusing it.
    pub refused: String,
    /// What the principal lost to the refused purchase.
    pub principal_lost_on_refusal: Amount,
    /// What the agent lost to it (a refused transaction costs nothing).
    pub agent_lost_on_refusal: Amount,
}

/// `x × 3/2`, rounded up to two significant digits.
fn cap_for(escrow: Amount) -> Amount {
    let x = escrow.0 * 3 / 2;
    let mut unit = 1u128;
    while x / unit >= 100 {
        unit *= 10;
    }
    Amount(x.div_ceil(unit) * unit)
}

pub async fn run(w: &mut World) -> anyhow::Result<MandateReport> {
    let title = "An agent buys compute under its principal's mandate";
    w.progress.begin(title);
    let agent = w.requester(cast::AGENT)?;
    let principal = w.address(cast::PRINCIPAL)?;
    let request = |texts: &[&str]| {
        let mut r = JobRequest::new(
            cast::MODEL,
            JobInput::Texts(texts.iter().map(|t| t.to_string()).collect()),
        );
        r.stages = 2;
        r.max_price = Amount(cast::MANDATE_UNIT_PRICE);
        r.deadline = cast::DEADLINE;
        r.placement = PlacementChoice::Ledger;
        r
    };
    // Size the caps from what the two purchases will lock.
    let small_escrow = agent.prepare(&request(SMALL)).await?.escrow;
    let per_job_cap = cap_for(small_escrow);
    let terms = MandateTerms {
        agent: agent.address(),
        total_cap: Amount(per_job_cap.0 * 4),
        per_job_cap,
        max_unit_price: Amount(cast::MANDATE_UNIT_PRICE),
        expiry: Height(w.height() + 10_000),
        min_verification: VerificationLevel::Optimistic,
    };
    w.progress.step("bob grants bob-agent a mandate");
    let mandate = w.grant_mandate(cast::PRINCIPAL, terms.clone()).await?;
    let mut log = vec![format!(
        "{} grants {} mandate {mandate}: ≤ {per_job_cap} escrow per job, ≤ {} in total, ≤ {} per mega-op, until height {}",
        cast::PRINCIPAL,
        cast::AGENT,
        terms.total_cap,
        terms.max_unit_price,
        terms.expiry
    )];

    // Within the caps.
    let mut small = request(SMALL);
    small.mandate = Some(mandate);
    let small = agent.prepare(&small).await?;
    let big_req = {
        let mut r = request(BIG);
        r.mandate = Some(mandate);
        r
    };
    let big = agent.prepare(&big_req).await?;
    if !(small.escrow <= per_job_cap && big.escrow > per_job_cap) {
        bail!(
            "the demo's inputs do not straddle the cap: {} and {} against {per_job_cap}",
            small.escrow,
            big.escrow
        );
    }
    let (bob0, agent0) = (
        w.account(&principal).balance,
        w.account(&agent.address()).balance,
    );
    w.progress.step("bob-agent buys a job within its caps");
    let sub = agent
        .submit_detailed(&small)
        .await
        .context("the agent's purchase within its caps")?;
    log.push(format!(
        "{} buys job {} ({} ops, ledger-matched, 2 stages): escrow {} ≤ cap, locked from {}'s balance",
        cast::AGENT,
        sub.job,
        thousands(small.total_ops()),
        sub.escrow,
        w.name(&sub.payer)
    ));
    w.progress.step(format!("job {} runs", sub.job));
    let job = w.follow(&agent, sub.job).await?;
    if job.status != JobStatus::Completed {
        bail!("job {} ended {:?}", sub.job, job.status);
    }
    let bills = purchase::bills(w, sub.job, &job);
    let paid = Amount(bills.iter().map(|b| b.paid.0).sum());
    let (bob1, agent1) = (
        w.account(&principal).balance,
        w.account(&agent.address()).balance,
    );
    let spent = w
        .state(|s| s.mandate(mandate).map(|m| m.spent))
        .context("the mandate vanished")?;
    log.extend(purchase::bill_lines(&bills));
    log.push(format!(
        "{} paid {} (the bills; the rest of the escrow came back); {} paid only its fee {}; mandate spent {spent} of {}",
        cast::PRINCIPAL,
        bob0.saturating_sub(bob1),
        cast::AGENT,
        agent0.saturating_sub(agent1),
        terms.total_cap
    ));

    // Over the per-job cap.
    w.progress
        .step("bob-agent tries a purchase over its per-job cap");
    let refused = match agent.submit_detailed(&big).await {
        Err(RequesterError::Rejected { reason, .. }) => reason,
        Err(e) => return Err(e).context("the purchase over the cap failed otherwise"),
        Ok(s) => bail!(
            "the ledger accepted job {} beyond the mandate's per-job cap",
            s.job
        ),
    };
    let (bob2, agent2) = (
        w.account(&principal).balance,
        w.account(&agent.address()).balance,
    );
    let spent2 = w
        .state(|s| s.mandate(mandate).map(|m| m.spent))
        .context("the mandate vanished")?;
    log.push(format!(
        "{} tries {} texts ({} ops, escrow {} > cap {per_job_cap}): the ledger refuses — \"{refused}\"",
        cast::AGENT,
        BIG.len(),
        thousands(big.total_ops()),
        big.escrow
    ));
    log.push(format!(
        "{} lost {}, {} lost {}, mandate spent still {spent2}",
        cast::PRINCIPAL,
        bob1.saturating_sub(bob2),
        cast::AGENT,
        agent1.saturating_sub(agent2)
    ));

    w.check(
        "mandate: the principal paid exactly the bills, the agent only its fee",
        sub.payer == principal
            && purchase::exact(&bills)
            && bob0.0 - bob1.0 == paid.0
            && agent0.0 - agent1.0 == sub.fee.0
            && spent == paid,
        format!(
            "principal −{} = paid {paid}; agent −{} = fee {}; mandate spent {spent}",
            bob0.0 - bob1.0,
            agent0.0 - agent1.0,
            sub.fee
        ),
    );
    let reason_ok = refused.contains("per-job cap") && refused.contains(&per_job_cap.to_string());
    w.check(
        "mandate: the purchase over the per-job cap is refused by the ledger, naming the cap",
        reason_ok,
        refused.clone(),
    );
    w.check(
        "mandate: the refusal cost the principal and the agent nothing",
        bob2 == bob1 && agent2 == agent1 && spent2 == spent,
        format!(
            "principal {bob1} → {bob2}, agent {agent1} → {agent2}, mandate spent {spent} → {spent2}"
        ),
    );
    w.act(title, log);
    Ok(MandateReport {
        mandate,
        principal: cast::PRINCIPAL.into(),
        agent: cast::AGENT.into(),
        terms: Terms {
            per_job_cap,
            total_cap: terms.total_cap,
            max_unit_price: terms.max_unit_price,
            expiry: terms.expiry,
        },
        job: sub.job,
        escrow: sub.escrow,
        stages: bills,
        paid,
        principal_paid: bob0.saturating_sub(bob1),
        agent_paid: agent0.saturating_sub(agent1),
        fee: sub.fee,
        mandate_spent: spent,
        refused_escrow: big.escrow,
        refused,
        principal_lost_on_refusal: bob1.saturating_sub(bob2),
        agent_lost_on_refusal: agent1.saturating_sub(agent2),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_are_round_and_above_one_and_a_half_escrows() {
        assert_eq!(cap_for(Amount(1_234)), Amount(1_900));
        assert_eq!(cap_for(Amount(60)), Amount(90));
        assert_eq!(cap_for(Amount(100_001)), Amount(160_000));
    }
}

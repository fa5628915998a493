//! A failed verification refunds the principal: the procurement agent, signing
//! with its own key under a principal's mandate and checking every stage on
//! its own machine (`verify_locally = true`), buys from the cheapest provider —
//! a liar that reveals a made-up output. The agent recomputes the stage, finds
//! it differs, challenges it (its own key locks the bond) and answers the
//! bisection round; the liar stays silent and loses on time (no referee
//! needed). The ledger slashes the liar, fails the job and returns the escrow
//! to the principal with its share of the slash; the agent buys again from an
//! honest provider and completes. Every amount is checked to the base unit.

mod common;

use std::time::{Duration, Instant};

use agentic_agent::procure::{Check, Goal, OpenedBy, Outcome, ProcurementAgent, Verdict};
use agentic_agent::requester::Requester;
use agentic_compute::registry;
use agentic_protocol::state::JobStatus;
use agentic_protocol::tx::MandateTerms;
use agentic_protocol::types::VerificationLevel;
use agentic_protocol::{Amount, Height};
use agentic_provider::local::{self, MarketSpec};
use common::{account, balance, grant_mandate, height, mandate, params, LyingProvider};

const TEXT: &str = "The Fox and the Crow";

#[test]
fn a_lie_the_agent_catches_is_disputed_and_the_principal_refunded() {
    let dir = std::env::temp_dir().join(format!("agentic-verify-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let spec = MarketSpec::new(1, &["principal", "agent", "p1", "p2", "liar"])
        .param("reveal_window", 500)
        .param("challenge_window", 40)
        .param("match_timeout", 20)
        .param("audit_window", 20);
    local::run(&dir, spec, |net| async move {
        let t0 = Instant::now();
        let c = net.client();
        let p1 = net.provider("p1", 1_000, |_| {}).await.unwrap();
        let _p2 = net.provider("p2", 1_500, |_| {}).await.unwrap();
        let liar = LyingProvider::register(&net, "liar", 500).await;
        let lying = liar.lie_on_every_job(c.clone());
        let principal = net.key("principal");
        let agent_key = net.key("agent");
        let agent_addr = agent_key.address();

        let h = height(&c).await;
        let mid = grant_mandate(
            &c,
            &principal.key,
            MandateTerms {
                agent: agent_addr,
                total_cap: Amount(10_000_000),
                per_job_cap: Amount(1_000_000),
                max_unit_price: Amount(2_000),
                expiry: Height(h + 100_000),
                min_verification: VerificationLevel::Optimistic,
            },
        )
        .await;
        let goal = Goal::parse(&format!(
            r#"
            model = "tiny-gpt"
            texts = ["{TEXT}"]
            stages = 1
            budget = 5000000
            max_price = 2000
            deadline_secs = 120
            deadline_blocks = 100
            attempts = 3
            mandate = {}
            verify_locally = true
            [preferences]
            cost = 1.0
            latency = 0.0
            reputation = 0.0
            "#,
            mid.0
        ))
        .unwrap();

        let p = params(&c).await;
        // A challenge and a bisection move match no slots and stay under a KiB: each
        // costs the minimum fee. A `SubmitJob` costs more (its slots): `a.fee`.
        let fee = p.min_fee;
        let pb0 = balance(&c, &principal.address()).await;
        let a0 = account(&c, &agent_addr).await;
        let mut req = Requester::new(c.clone(), agent_key.key.clone());
        req.poll_interval = Duration::from_millis(200);
        let report = ProcurementAgent::new(req)
            .run(&goal, |_| {})
            .await
            .unwrap();
        lying.abort();
        for a in &report.attempts {
            for line in a.lines() {
                eprintln!("{line}");
            }
        }

        // It completed, with the bits a local run gives, on the second attempt.
        let local = {
            let m = registry::load("tiny-gpt").unwrap();
            m.model.run(m.encode(&[TEXT]).unwrap()).unwrap()
        };
        let ours = local.trace.output_hash();
        let Outcome::Completed { output_hash, .. } = &report.outcome else {
            panic!("not completed: {report:#?}");
        };
        assert_eq!(*output_hash, ours);
        assert_eq!(report.attempts.len(), 2, "{report:#?}");
        let (a1, a2) = (&report.attempts[0], &report.attempts[1]);

        // Attempt 1: bought from the liar (cheapest), checked here, challenged, won.
        assert_eq!(a1.providers, vec![liar.address()]);
        assert_eq!(a1.status, JobStatus::Failed);
        assert_eq!(a1.cost.paid, Amount::ZERO);
        assert_eq!(a1.cost.refund, Some(a1.escrow), "the escrow came back whole");
        assert!(
            matches!(&a1.checks[..], [c] if c.stage == 0 && matches!(c.check, Check::Challenged { agreed, ours: o, dispute: Some(_) } if agreed == LyingProvider::CLAIM && o == ours)),
            "{:#?}",
            a1.checks
        );
        let [d] = &a1.disputes[..] else {
            panic!("one dispute: {:#?}", a1.disputes)
        };
        assert_eq!(d.opened_by, OpenedBy::ThisAgent);
        assert_eq!(d.defendant, liar.address());
        assert_eq!(d.verdict, Verdict::ProviderLost);
        assert!(d.moves >= 1, "it answered the bisection: {d:#?}");
        assert_eq!(d.fees.0, fee.0 * (1 + u128::from(d.moves)));
        assert_eq!(d.bond, p.challenge_bond);
        // The ledger's split of the slash, from the parameters.
        let slashed = Amount(LyingProvider::STAKE).mul_ppm(p.slash_ppm);
        let to_payer = slashed.mul_ppm(p.slash_requester_ppm);
        let to_winner = slashed.mul_ppm(p.slash_winner_ppm);
        assert_eq!(d.slashed, slashed);
        assert_eq!(d.to_payer, to_payer);
        assert_eq!(d.to_agent.0, p.challenge_bond.0 + to_winner.0, "bond back + winner's share");
        assert_eq!(d.agent_cost(), d.fees);
        assert_eq!(
            account(&c, &liar.address()).await.bonded.0,
            LyingProvider::STAKE - slashed.0
        );
        let job1 = common::job(&c, a1.job).await;
        assert!(job1.excluded.contains(&liar.address()));

        // Attempt 2: not the liar; verified here; paid.
        assert_eq!(a2.status, JobStatus::Completed);
        assert_eq!(a2.providers, vec![p1.address()], "the next cheapest");
        assert!(
            matches!(&a2.checks[..], [c] if c.check == Check::Agrees { output: ours }),
            "{:#?}",
            a2.checks
        );
        assert!(a2.disputes.is_empty());
        assert!(a2.cost.paid.0 > 0);

        // The principal: the first escrow back in full plus its share of the
        // slash; it pays only the honest bill.
        let pb1 = balance(&c, &principal.address()).await;
        assert_eq!(
            pb1.0 as i128 - pb0.0 as i128,
            to_payer.0 as i128 - a2.cost.paid.0 as i128
        );
        // The mandate counts only what was paid: the failed job's escrow was given back.
        let m = mandate(&c, mid).await;
        assert_eq!(m.spent, a2.cost.paid);
        // The agent's own key: its fees, and the winner's share; the bond came back.
        let a1_ = account(&c, &agent_addr).await;
        let txs = a1_.nonce - a0.nonce;
        assert_eq!(txs, 2 + 1 + u64::from(d.moves), "two submissions, a challenge, the moves");
        assert_eq!(a1.fee, a2.fee, "the same one-stage purchase");
        assert_eq!(
            a1.fee.0,
            p.min_fee.0 + p.fee_per_slot.0,
            "one stage, one replica slot, no auditor (optimistic verification)"
        );
        assert_eq!(
            a1_.balance.0 as i128 - a0.balance.0 as i128,
            to_winner.0 as i128
                - (fee.0 * u128::from(1 + d.moves) + a1.fee.0 + a2.fee.0) as i128
        );
        // The goal's accounting.
        assert_eq!(a1.spent.0, a1.fee.0 + d.fees.0);
        assert_eq!(a2.spent.0, a2.fee.0 + a2.cost.paid.0);
        assert_eq!(report.spent.0, a1.spent.0 + a2.spent.0);
        assert!(report.spent <= goal.budget);
        // The report says what happened and what it cost.
        let text = a1.lines().join("\n");
        for needle in [
            "Failed",
            &format!("{} refunded to the payer", a1.escrow),
            "challenged",
            "opened by this agent",
            &format!("bond {}", p.challenge_bond),
            &format!("{slashed} of its stake slashed, {to_payer} of it to the payer"),
            "the job failed",
        ] {
            assert!(text.contains(needle), "{needle:?} not in\n{text}");
        }
        assert!(a2.lines().join("\n").contains("verified, nothing posted"));
        eprintln!("whole scenario: {:?}", t0.elapsed());
    })
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

//! The procurement agent on a local market (real consensus, real provider
//! daemons): it buys within its budget and mandate and reports what it paid; a
//! purchase its budget or mandate forbids is refused before anything is signed,
//! and the same purchase forced past the agent is refused by the ledger.

mod common;
/// Generation goals (`[generate]`).
#[path = "procure/generate.rs"]
mod generate;

use std::time::{Duration, Instant};

use agentic_agent::procure::{Goal, Outcome, ProcurementAgent};
use agentic_agent::requester::{prepare, Requester, RequesterError};
use agentic_compute::registry;
use agentic_protocol::tx::MandateTerms;
use agentic_protocol::types::VerificationLevel;
use agentic_protocol::{Amount, Height, MandateId};
use agentic_provider::local::{self, MarketSpec};
use common::{balance, grant_mandate, height};

const TEXT: &str = "The Fox and the Crow";

fn goal(mandate: Option<MandateId>, budget: u128) -> Goal {
    let mandate = mandate
        .map(|m| format!("mandate = {}", m.0))
        .unwrap_or_default();
    Goal::parse(&format!(
        r#"
        model = "tiny-gpt"
        texts = ["{TEXT}"]
        stages = 2
        budget = {budget}
        max_price = 2000
        deadline_secs = 90
        deadline_blocks = 100
        {mandate}
        [preferences]
        cost = 1.0
        latency = 0.2
        reputation = 0.1
        "#
    ))
    .unwrap()
}

#[test]
fn the_agent_buys_within_its_mandate_and_refuses_what_it_forbids() {
    let dir = std::env::temp_dir().join(format!("agentic-procure-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let spec = MarketSpec::new(1, &["principal", "agent", "p1", "p2", "p3"])
        .param("reveal_window", 500)
        .param("challenge_window", 4)
        .param("match_timeout", 20)
        .param("audit_window", 20);
    local::run(&dir, spec, |net| async move {
        let c = net.client();
        // Cheap and slow, middling, dear and fast.
        let _p1 = net.provider("p1", 1_000, |c| c.slowdown = 8).await.unwrap();
        let _p2 = net.provider("p2", 1_500, |c| c.slowdown = 3).await.unwrap();
        let p3 = net.provider("p3", 2_000, |_| {}).await.unwrap();
        let principal = net.key("principal");
        let agent_key = net.key("agent");
        let agent_addr = agent_key.address();

        // What the job meters to, and so what its escrow is at each price.
        let ops: u64 = prepare(&goal(None, 1).request(), &[]).unwrap().total_ops();
        let escrow_at = |price: u128| Amount::cost(ops, Amount(price)).unwrap();
        // The mandate allows jobs priced up to 1,500 per mega-op: the cheapest plan
        // (p1 + p2) fits; plans naming p3 (2,000) would lock more than the cap.
        let h = height(&c).await;
        let terms = MandateTerms {
            agent: agent_addr,
            total_cap: Amount(escrow_at(1_500).0 * 3),
            per_job_cap: escrow_at(1_500),
            max_unit_price: Amount(2_000),
            expiry: Height(h + 10_000),
            min_verification: VerificationLevel::Optimistic,
        };
        let mandate = grant_mandate(&c, &principal.key, terms.clone()).await;

        let agent = ProcurementAgent::new(Requester::new(c.clone(), agent_key.key.clone()));
        let pb0 = balance(&c, &principal.address()).await;
        let ab0 = balance(&c, &agent_addr).await;
        let report = agent
            .run(&goal(Some(mandate), escrow_at(2_000).0 * 2), |_| {})
            .await
            .unwrap();
        let Outcome::Completed { output_hash, .. } = &report.outcome else {
            panic!("not completed: {report:#?}");
        };
        // The output is the bits a local run gives.
        let m = registry::load("tiny-gpt").unwrap();
        let local = m.model.run(m.encode(&[TEXT]).unwrap()).unwrap();
        assert_eq!(output_hash.0, local.trace.output_hash().0);
        // It bought the plan the mandate allows, and says why.
        assert_eq!(report.attempts.len(), 1);
        let a = &report.attempts[0];
        assert!(report.quotes.len() >= 2, "it compared quotes: {report:#?}");
        assert!(
            !a.providers.contains(&p3.address()) && a.escrow <= terms.per_job_cap,
            "{report:#?}"
        );
        // The principal paid exactly the bill; the agent only its fee.
        let pb1 = balance(&c, &principal.address()).await;
        let ab1 = balance(&c, &agent_addr).await;
        assert_eq!(pb0.0 - pb1.0, a.cost.paid.0);
        assert_eq!(ab0.0 - ab1.0, a.fee.0);
        assert_eq!(report.spent.0, a.cost.paid.0 + a.fee.0);
        assert!(report.spent.0 <= report.goal.budget.0);

        // Over budget: refused by the agent, nothing signed.
        let nonce = c.nonce(&agent_addr).await.unwrap();
        let r = agent.run(&goal(Some(mandate), 10), |_| {}).await.unwrap();
        match &r.outcome {
            Outcome::Refused { reason } => assert!(reason.contains("over budget"), "{reason}"),
            o => panic!("{o:?}"),
        }
        assert!(r.attempts.is_empty());
        assert_eq!(c.nonce(&agent_addr).await.unwrap(), nonce);

        // Forced past the agent: a job above the per-job cap is refused by the ledger
        // and the principal loses nothing.
        let mut req = goal(Some(mandate), 1).request();
        req.max_price = Amount(2_000);
        let job = prepare(&req, &[]).unwrap();
        let pb = balance(&c, &principal.address()).await;
        let err = Requester::new(c.clone(), agent_key.key.clone())
            .submit(&job)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, RequesterError::Rejected { reason, .. } if reason.contains("per-job cap")),
            "{err}"
        );
        assert_eq!(balance(&c, &principal.address()).await, pb);

        // An expired mandate: the agent refuses, and the ledger would too.
        let h = height(&c).await;
        let short = grant_mandate(
            &c,
            &principal.key,
            MandateTerms {
                expiry: Height(h + 3),
                ..terms
            },
        )
        .await;
        let pb = balance(&c, &principal.address()).await;
        let t = Instant::now();
        while height(&c).await < h + 3 {
            assert!(t.elapsed() < Duration::from_secs(30));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let r = agent
            .run(&goal(Some(short), escrow_at(2_000).0 * 2), |_| {})
            .await
            .unwrap();
        match &r.outcome {
            Outcome::Refused { reason } => assert!(reason.contains("expired"), "{reason}"),
            o => panic!("{o:?}"),
        }
        let mut req = goal(Some(short), 1).request();
        req.max_price = Amount(1_000);
        let job = prepare(&req, &[]).unwrap();
        let err = Requester::new(c.clone(), agent_key.key.clone())
            .submit(&job)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, RequesterError::Rejected { reason, .. } if reason.contains("expired")),
            "{err}"
        );
        assert_eq!(balance(&c, &principal.address()).await, pb);
    })
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

//! The procurement agent buys generated text on a local market (one validator with
//! real consensus, provider daemons with their data planes): a `[generate]` goal
//! for smollm2-135m over two stages is quoted, bought, streamed token by token,
//! checked against the chain and against a local run of the same request, and
//! reported with the exact bill — what the ledger paid the stages' providers. A
//! cheap provider that perturbs one layer at one step (`perturb-step`) is not audited
//! under optimistic verification, but its tokens differ from the agent's own run: the
//! agent replays each stage from the streamed transcript as an auditor would, finds
//! the stage that lied, challenges it (the descent, the referee, the slash), does not
//! accept the text and buys it again from other providers.

use std::time::Instant;

use crate::common::balance;
use agentic_agent::procure::{
    Check, Goal, LocalCheck, OpenedBy, Outcome, ProcurementAgent, Step, TranscriptCheck, Verdict,
};
use agentic_agent::requester::generate::load_llm;
use agentic_agent::requester::{prepare, Requester};
use agentic_compute::llm::stage::GenerationRequest;
use agentic_protocol::event::Event;
use agentic_protocol::state::JobStatus;
use agentic_protocol::Amount;
use agentic_provider::local::{self, MarketSpec};
use agentic_provider::misbehave::Misbehaviour;

const TOKENS: u32 = 8;

fn goal(budget: u128) -> Goal {
    goal_with(budget, "")
}

fn goal_with(budget: u128, extra: &str) -> Goal {
    Goal::parse(&format!(
        r#"
        model = "smollm2-135m"
        stages = 2
        budget = "{budget}"
        max_price = 2000
        deadline_secs = 240
        deadline_blocks = 400
        verify_locally = true
        {extra}
        [generate]
        prompt = "Name three colours of the rainbow."
        max_tokens = {TOKENS}
        seed = 7
        stop = []
        "#
    ))
    .unwrap()
}

#[test]
fn the_agent_buys_a_generation_streams_it_and_pays_exactly_the_ledgers_bill() {
    let t0 = Instant::now();
    let dir = std::env::temp_dir().join(format!("agentic-procure-gen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let spec = MarketSpec::new(1, &["agent", "p1", "p2", "p3"])
        .param("reveal_window", 500)
        .param("challenge_window", 4)
        .param("match_timeout", 40)
        .param("audit_window", 100);
    local::run(&dir, spec, |net| async move {
        let c = net.client();
        let mut providers = Vec::new();
        for (i, name) in ["p1", "p2", "p3"].iter().enumerate() {
            providers.push(
                net.provider(name, 1_000 + 100 * i as u128, |_| {})
                    .await
                    .unwrap(),
            );
        }
        let key = net.key("agent");
        // The escrow at the goal's max price bounds any plan's: budget for two.
        let escrow = prepare(&goal(1).request(), &[]).unwrap().escrow;
        let goal = goal(escrow.0 * 2);
        let agent = ProcurementAgent::new(Requester::new(c.clone(), key.key.clone()));
        let before = balance(&c, &key.address()).await;
        let mut streamed = Vec::new();
        let mut text = String::new();
        let report = agent
            .run(&goal, |step| {
                if let Step::Token {
                    index,
                    token,
                    text: t,
                    ..
                } = step
                {
                    assert_eq!(index as usize, streamed.len(), "each token once, in order");
                    streamed.push(token);
                    text.push_str(t);
                }
            })
            .await
            .unwrap();
        let Outcome::Generated {
            job,
            text: got,
            tokens,
            token_ids,
            paid,
            ..
        } = &report.outcome
        else {
            panic!("not generated: {report:#?}");
        };
        eprintln!("{tokens} tokens: {got:?}");
        for a in &report.attempts {
            for l in a.lines() {
                eprintln!("{l}");
            }
        }

        // The tokens are a local run's of the same request, reported as they came.
        let (m, _, _) = load_llm("smollm2-135m").unwrap();
        let g = report.attempts[0].generation.as_ref().unwrap();
        let prepared = prepare(&goal.request(), &[]).unwrap();
        let request = GenerationRequest::decode(&prepared.input).unwrap();
        let local = m.generate_request(&request, |_| {}).unwrap();
        assert_eq!(
            *token_ids, local.tokens,
            "the market's tokens are a local run's"
        );
        assert_eq!(*tokens, TOKENS as usize);
        assert_eq!(*got, m.tokenizer.decode(&local.tokens).unwrap());
        assert_eq!(streamed, local.tokens);
        assert_eq!(text, *got);
        assert_eq!(g.local, Some(LocalCheck::Agrees));
        assert!(matches!(g.transcript, TranscriptCheck::Matches { .. }));

        // One attempt, completed and settled: the bill is what the ledger paid, each
        // stage exactly its ops over the tokens generated × its provider's price.
        assert_eq!(report.attempts.len(), 1, "{report:#?}");
        let a = &report.attempts[0];
        assert_eq!(a.status, JobStatus::Completed);
        assert_eq!(a.providers.len(), 2, "a named plan: {report:#?}");
        let j = c.job(*job).await.unwrap();
        assert_eq!(j.escrow, Amount::ZERO, "settled");
        let events = agent.requester().job_events(*job).await.unwrap();
        let mut ledger_paid = 0u128;
        for (s, st) in j.stages.iter().enumerate() {
            let who = st.slots[0].assignment.as_ref().unwrap();
            assert_eq!(st.result.unwrap().steps, TOKENS);
            let stage_paid: u128 = events
                .iter()
                .filter_map(|e| match e {
                    Event::StagePaid {
                        stage,
                        provider,
                        amount,
                        ..
                    } if *stage as usize == s && *provider == who.provider => Some(amount.0),
                    _ => None,
                })
                .sum();
            assert_eq!(
                stage_paid,
                Amount::cost(j.billed_ops(s), who.price).unwrap().0,
                "stage {s} paid its metered ops × price"
            );
            ledger_paid += stage_paid;
        }
        assert_eq!(paid.0, ledger_paid, "the report's bill is the ledger's");
        assert_eq!(a.cost.paid, *paid);
        assert!(
            a.cost.refund.is_some_and(|r| r.0 > 0),
            "unused escrow came back"
        );
        // The payer (the agent, without a mandate) lost exactly the bill and the fee.
        let after = balance(&c, &key.address()).await;
        assert_eq!(before.0 - after.0, paid.0 + a.fee.0);
        assert_eq!(report.spent.0, paid.0 + a.fee.0);
        assert!(report.spent <= goal.budget);
    })
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("took {:?}", t0.elapsed());
}

#[test]
fn tokens_that_differ_from_a_local_run_are_not_accepted_and_bought_again() {
    let t0 = Instant::now();
    let dir =
        std::env::temp_dir().join(format!("agentic-procure-gen-cheat-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // A challenge window the agent's replay (and its wake-up) fits in.
    let spec = MarketSpec::new(1, &["agent", "cheat", "p1", "p2", "p3"])
        .param("reveal_window", 500)
        .param("challenge_window", 40)
        .param("match_timeout", 40)
        .param("audit_window", 100)
        .param("dispute_timeout", 20);
    local::run(&dir, spec, |net| async move {
        let c = net.client();
        // The cheapest provider lies at one layer of one step and generates on from it.
        let cheat = net
            .provider("cheat", 500, |cfg| {
                cfg.misbehave = Some(Misbehaviour::PerturbStep)
            })
            .await
            .unwrap();
        let mut honest = Vec::new();
        for (i, name) in ["p1", "p2", "p3"].iter().enumerate() {
            honest.push(
                net.provider(name, 1_000 + 100 * i as u128, |_| {})
                    .await
                    .unwrap(),
            );
        }
        let key = net.key("agent");
        let escrow = prepare(&goal(1).request(), &[]).unwrap().escrow;
        // Cost is all that matters: the cheapest plan (the cheater and p1) first.
        let goal = goal_with(
            escrow.0 * 3,
            "[preferences]\ncost = 1.0\nlatency = 0.0\nreputation = 0.0\n",
        );
        let agent = ProcurementAgent::new(Requester::new(c.clone(), key.key.clone()));
        let before = balance(&c, &key.address()).await;
        let report = agent.run(&goal, |_| {}).await.unwrap();
        for a in &report.attempts {
            for l in a.lines() {
                eprintln!("{l}");
            }
        }
        let Outcome::Generated { token_ids, .. } = &report.outcome else {
            panic!("not generated: {report:#?}");
        };
        assert_eq!(report.attempts.len(), 2, "{report:#?}");
        let (first, second) = (&report.attempts[0], &report.attempts[1]);
        // Attempt 1: bought from the cheater (nobody audits an optimistic job); not
        // this machine's tokens; the agent replayed each stage from the streamed
        // transcript, challenged the cheater's and won: the job failed.
        assert!(first.providers.contains(&cheat.address()), "{report:#?}");
        assert_eq!(first.status, JobStatus::Failed, "{report:#?}");
        let g = first.generation.as_ref().unwrap();
        let Some(LocalCheck::Differs { at, ours }) = &g.local else {
            panic!("the cheater's tokens were accepted: {report:#?}");
        };
        assert!(*at >= 3, "the lie starts at step 3: {at}");
        assert_eq!(&g.tokens[..*at], &ours[..*at]);
        let job1 = c.job(first.job).await.unwrap();
        let cheat_stage = job1
            .spec
            .placement
            .iter()
            .position(|a| *a == cheat.address())
            .expect("the cheater was named") as u32;
        let challenged: Vec<u32> = first
            .checks
            .iter()
            .filter(|c| {
                matches!(
                    c.check,
                    Check::Challenged {
                        dispute: Some(_),
                        ..
                    }
                )
            })
            .map(|c| c.stage)
            .collect();
        assert_eq!(challenged, vec![cheat_stage], "{:#?}", first.checks);
        // A stage before the cheater's agrees; one after it computed on what the
        // cheater passed on (its input differs): neither is challenged.
        for c in first.checks.iter().filter(|c| c.stage != cheat_stage) {
            let expected_ok = if c.stage < cheat_stage {
                matches!(c.check, Check::Agrees { .. })
            } else {
                matches!(c.check, Check::InputDiffers { .. })
            };
            assert!(expected_ok, "{:#?}", first.checks);
        }
        let [d] = &first.disputes[..] else {
            panic!("one dispute: {:#?}", first.disputes)
        };
        assert_eq!(d.opened_by, OpenedBy::ThisAgent);
        assert_eq!(d.defendant, cheat.address());
        assert_eq!(d.verdict, Verdict::ProviderLost, "{d:#?}");
        assert!(d.moves >= 1, "it played the descent: {d:#?}");
        let p = c.params().await.unwrap();
        assert!(d.slashed.0 > 0);
        assert_eq!(
            d.to_agent.0,
            p.challenge_bond.0 + d.slashed.mul_ppm(p.slash_winner_ppm).0,
            "bond back + the winner's share"
        );
        assert!(job1.excluded.contains(&cheat.address()));
        assert!(first.lines().iter().any(|l| l.contains("not accepted")));
        // Attempt 2: not the cheater (the dispute pinned the lie on it, so the
        // honest provider of the first job may serve again); the honest tokens.
        assert!(!second.providers.contains(&cheat.address()));
        assert_eq!(token_ids, ours, "the text bought is the local run's");
        assert_eq!(
            second.generation.as_ref().unwrap().local,
            Some(LocalCheck::Agrees)
        );
        // Both attempts count against the budget. The agent (payer and challenger)
        // paid the bills, the submissions' fees and the dispute's fees, and got back
        // its bond, the winner's share, the payer's share of the slash and the
        // payer's compensation for the failed job.
        let after = balance(&c, &key.address()).await;
        let paid: u128 = report
            .attempts
            .iter()
            .map(|a| a.cost.paid.0 + a.fee.0)
            .sum();
        let events = agent.requester().job_events(first.job).await.unwrap();
        let compensated: u128 = events
            .iter()
            .filter_map(|e| match e {
                Event::PayerCompensated { amount, .. } => Some(amount.0),
                _ => None,
            })
            .sum();
        assert_eq!(
            after.0 as i128 - before.0 as i128,
            (d.to_agent.0 + d.to_payer.0 + compensated) as i128
                - (paid + d.fees.0 + d.bond.0) as i128
        );
        assert_eq!(report.spent.0, paid + d.agent_cost().0);
    })
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("took {:?}", t0.elapsed());
}

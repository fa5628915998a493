//! End to end on a local network: validators with real consensus, provider daemons
//! with their data planes, a requester. Partitioned jobs return exactly the bits of a
//! single local run and every base unit is accounted for — also when a stage provider
//! dies mid-job or restarts, or cannot fetch an input the requester never published.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use agentic_compute::trace::Trace;
use agentic_protocol::event::Event;
use agentic_protocol::state::{JobStatus, StagePhase, State};
use agentic_protocol::{Address, Amount, Hash};
use common::*;

const VALIDATORS: usize = 1;

/// Who holds each stage (replica 0) and at what price.
fn holders(j: &agentic_protocol::state::Job) -> Vec<(Address, Amount)> {
    j.stages
        .iter()
        .map(|s| {
            let a = s.slots[0].assignment.as_ref().expect("assigned");
            (a.provider, a.price)
        })
        .collect()
}

#[test]
fn three_stage_job_matches_a_local_run_and_pays_exactly() {
    with_network(
        "three-stage",
        VALIDATORS,
        &["alice", "p1", "p2", "p3"],
        |net| async move {
            let c = net.client();
            let providers = [
                net.provider("p1", 1_000, |_| {}).await.unwrap(),
                net.provider("p2", 2_000, |_| {}).await.unwrap(),
                net.provider("p3", 3_000, |_| {}).await.unwrap(),
            ];
            let alice = net.key("alice");
            let mut before = BTreeMap::new();
            for a in providers
                .iter()
                .map(|p| p.address())
                .chain([alice.address()])
            {
                before.insert(a, balances(&c, &a).await);
            }

            let p = prepare(
                &["The Fox and the Crow", "A stage per provider"],
                &[1, 2],
                10_000,
                200,
            );
            let id = submit(&c, &alice, &p).await.unwrap();
            let t0 = std::time::Instant::now();
            let h0 = c.status().await.unwrap().height.0;
            let j = wait_finished(&c, id, Duration::from_secs(120)).await;
            let h1 = c.status().await.unwrap().height.0;
            eprintln!("job took {:?}, {} blocks", t0.elapsed(), h1 - h0);
            assert_eq!(j.status, JobStatus::Completed, "{j:#?}");

            // Same bits as one local run: every stage's result, the output blob, and
            // the whole trace.
            let mut stage_traces = Vec::new();
            for (s, local) in p.local.iter().enumerate() {
                let r = j.stages[s].result.expect("agreed result");
                assert_eq!(r.input, local.trace.input_hash, "stage {s} input");
                assert_eq!(r.output, local.trace.output_hash(), "stage {s} output");
                assert_eq!(r.trace_root, local.trace.root, "stage {s} trace root");
                stage_traces.push(local.trace.clone());
            }
            let whole = bundle_run(&p);
            assert_eq!(
                Trace::concat(&stage_traces).unwrap().root,
                whole.trace.root,
                "the stages chain into the single-run trace"
            );
            let out = j.stages[2].result.unwrap().output;
            let bytes = c.get_blob(&out).await.expect("the output is on the node");
            assert_eq!(bytes, whole.output.canonical_bytes());
            // A capped read takes a blob of its size and refuses a smaller cap.
            let n = bytes.len() as u64;
            assert_eq!(c.get_blob_at_most(&out, n).await.unwrap(), bytes);
            assert!(c.get_blob_at_most(&out, n - 1).await.is_err());

            // Three different providers, each paid ops × its price, to the base unit;
            // the requester paid exactly that plus its fee, the rest came back.
            let h = holders(&j);
            let mut distinct: Vec<Address> = h.iter().map(|x| x.0).collect();
            distinct.sort();
            distinct.dedup();
            assert_eq!(distinct.len(), 3);
            let mut paid_total = 0u128;
            for (s, (provider, price)) in h.iter().enumerate() {
                let bill = Amount::cost(p.spec.stages[s].ops, *price).unwrap();
                assert!(bill.0 > 0);
                paid_total += bill.0;
                let (b0, _) = before[provider];
                let (b1, _) = balances(&c, provider).await;
                // Two transactions (commit, reveal) at the minimum fee.
                assert_eq!(b1.0, b0.0 + bill.0 - 2 * min_fee().0, "stage {s} provider");
            }
            let (a0, _) = before[&alice.address()];
            let (a1, _) = balances(&c, &alice.address()).await;
            assert_eq!(a1.0, a0.0 - paid_total - submit_fee(&p.spec));
            assert_eq!(
                submit_fee(&p.spec),
                4,
                "three stages of one replica, no audit"
            );
            let escrow = State::escrow_for(&p.spec).unwrap();
            assert!(escrow.0 > paid_total, "a refund was due");
            assert_eq!(j.escrow, Amount::ZERO);
            // Each daemon notices its payment.
            for pr in &providers {
                let t = std::time::Instant::now();
                while pr.status().stages_paid < 1 && t.elapsed() < Duration::from_secs(10) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let st = pr.status();
                assert_eq!(st.stages_paid, 1, "{st:?}");
            }

            // A requester that cannot pay is refused and loses nothing.
            let poor = net.key("p3");
            let (pb, pbond) = balances(&c, &poor.address()).await;
            let mut big = prepare(&["too expensive"], &[2], 100, 200);
            big.spec.max_price = Amount(pb.0 * 1_000_000);
            let err = submit(&c, &poor, &big).await.unwrap_err();
            assert!(err.contains("insufficient"), "{err}");
            assert_eq!(balances(&c, &poor.address()).await, (pb, pbond));

            // A job no provider qualifies for (max price below every offer) is
            // cancelled after the match timeout with the whole escrow back.
            let (a0, _) = balances(&c, &alice.address()).await;
            let cheap = prepare(&["nobody takes this"], &[], 1, 200);
            let id = submit(&c, &alice, &cheap).await.unwrap();
            let j = wait_finished(&c, id, Duration::from_secs(60)).await;
            assert_eq!(j.status, JobStatus::Cancelled);
            assert_eq!(j.escrow, Amount::ZERO);
            let (a1, _) = balances(&c, &alice.address()).await;
            assert_eq!(
                a1.0,
                a0.0 - submit_fee(&cheap.spec),
                "only the fee is spent"
            );
        },
    );
}

/// The whole model run locally in one piece.
fn bundle_run(p: &Prepared) -> agentic_compute::RunOutput {
    let m = agentic_compute::bundle::Bundle::of("tiny-gpt")
        .unwrap()
        .load()
        .unwrap();
    m.model.run(p.input.clone()).unwrap()
}

#[test]
fn a_stage_provider_that_dies_is_replaced_and_the_requester_pays_once() {
    with_network(
        "dies",
        VALIDATORS,
        &["alice", "p1", "p2", "victim", "spare"],
        |net| async move {
            let c = net.client();
            let p1 = net.provider("p1", 1_000, |_| {}).await.unwrap();
            let p2 = net.provider("p2", 1_000, |_| {}).await.unwrap();
            // The victim is the cheapest, so matching prefers it; it is slowed down so
            // that it is still computing when it dies.
            let victim = net
                .provider("victim", 500, |c| c.slowdown = 1_000)
                .await
                .unwrap();
            let victim_addr = victim.address();
            let alice = net.key("alice");

            // 50 blocks (~10 s at 5 blocks/s): how long the dead provider holds the stage.
            let mut p = prepare(&["The Fox and the Crow"], &[1, 2], 10_000, 50);
            p.spec.placement = vec![p1.address(), victim_addr, p2.address()];
            let id = submit(&c, &alice, &p).await.unwrap();
            // Wait until the victim holds stage 1 and has started, then kill it.
            wait_job(&c, id, Duration::from_secs(60), |j| {
                matches!(j.stages[1].phase, StagePhase::Running { .. })
            })
            .await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let (a0, _) = balances(&c, &alice.address()).await;
            let (_, vbond0) = balances(&c, &victim_addr).await;
            victim.kill();
            // A spare provider joins; the dead one's deadline passes and the stage is
            // re-routed to it.
            let spare = net.provider("spare", 1_000, |_| {}).await.unwrap();
            let (s0, _) = balances(&c, &spare.address()).await;

            let j = wait_finished(&c, id, Duration::from_secs(120)).await;
            assert_eq!(j.status, JobStatus::Completed, "{j:#?}");
            assert!(j.excluded.contains(&victim_addr));
            let h = holders(&j);
            assert_eq!(h[1].0, spare.address(), "stage 1 was re-routed");
            let whole = bundle_run(&p);
            let out = j.stages[2].result.unwrap().output;
            assert_eq!(out, whole.trace.output_hash(), "same output");
            for (s, local) in p.local.iter().enumerate() {
                assert_eq!(j.stages[s].result.unwrap().trace_root, local.trace.root);
            }

            // The victim lost miss_penalty_ppm (1 %) of its stake; the requester got
            // slash_requester_ppm (30 %) of that, paid each stage once, and nothing else.
            let penalty = Amount(vbond0.0 / 100);
            let (_, vbond1) = balances(&c, &victim_addr).await;
            assert_eq!(vbond1.0, vbond0.0 - penalty.0);
            let to_payer = penalty.mul_ppm(300_000);
            let paid: u128 = h
                .iter()
                .enumerate()
                .map(|(s, (_, price))| Amount::cost(p.spec.stages[s].ops, *price).unwrap().0)
                .sum();
            // a0 was taken with the escrow locked: the refund is what was not paid.
            let escrow = State::escrow_for(&p.spec).unwrap();
            let (a1, _) = balances(&c, &alice.address()).await;
            assert_eq!(a1.0, a0.0 + to_payer.0 + (escrow.0 - paid));
            let (s1, _) = balances(&c, &spare.address()).await;
            let bill = Amount::cost(p.spec.stages[1].ops, h[1].1).unwrap();
            assert_eq!(s1.0, s0.0 + bill.0 - 2 * min_fee().0);
            let rep = c.provider(&victim_addr).await.unwrap().provider.reputation;
            assert!(
                format!("{rep:?}").contains("fail"),
                "a failure is on record: {rep:?}"
            );
        },
    );
}

#[test]
fn a_provider_restarted_mid_job_finishes_and_is_paid_once() {
    with_network(
        "restart",
        VALIDATORS,
        &["alice", "p1", "p2"],
        |net| async move {
            let c = net.client();
            let p1 = net.provider("p1", 1_000, |_| {}).await.unwrap();
            let p2 = net.provider("p2", 1_000, |_| {}).await.unwrap();
            let alice = net.key("alice");
            let p2_addr = p2.address();
            let mut p = prepare(&["restart me"], &[2], 10_000, 1_000);
            p.spec.placement = vec![p1.address(), p2_addr];
            let (b0, _) = balances(&c, &p2_addr).await;
            let id = submit(&c, &alice, &p).await.unwrap();
            // Kill p2 as soon as it has committed (before or after its reveal lands).
            wait_job(&c, id, Duration::from_secs(60), |j| {
                j.stages[1].slots[0]
                    .assignment
                    .as_ref()
                    .is_some_and(|a| a.commitment.is_some())
            })
            .await;
            p2.kill();
            tokio::time::sleep(Duration::from_millis(300)).await;
            // Same key, same data directory.
            let p2 = net.provider("p2", 1_000, |_| {}).await.unwrap();
            let j = wait_finished(&c, id, Duration::from_secs(120)).await;
            assert_eq!(j.status, JobStatus::Completed, "{j:#?}");
            assert_eq!(
                j.stages[1].result.unwrap().output,
                Hash(bundle_run(&p).trace.output_hash().0)
            );
            // Paid exactly once: one bill, two transactions (commit, reveal); the
            // restart's re-registration found its offer unchanged but its endpoint
            // moved, so one UpdateProvider fee too.
            let bill = Amount::cost(
                p.spec.stages[1].ops,
                j.stages[1].slots[0].assignment.as_ref().unwrap().price,
            )
            .unwrap();
            let (b1, _) = balances(&c, &p2_addr).await;
            assert_eq!(b1.0, b0.0 + bill.0 - 3 * min_fee().0);
            let journal =
                agentic_provider::journal::Journal::open(net.dir.join("p2").join("journal.json"))
                    .unwrap();
            let rec = journal.get(id, 1).unwrap();
            assert!(rec.committed && rec.revealed);
            // The restarted daemon recorded the payment once.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let rec =
                agentic_provider::journal::Journal::open(net.dir.join("p2").join("journal.json"))
                    .unwrap()
                    .get(id, 1)
                    .cloned()
                    .unwrap();
            assert_eq!(rec.paid, Some(bill));
            drop(p2);
        },
    );
}

/// Collects every ledger event validator 0 applies from now on (block-level events,
/// such as a claim's outcome, are in no transaction's receipt).
fn follow_events(net: &Net) -> std::sync::Arc<std::sync::Mutex<Vec<Event>>> {
    let mut rx = net.validators[0].chain.read().unwrap().subscribe();
    let log: std::sync::Arc<std::sync::Mutex<Vec<Event>>> = Default::default();
    let sink = log.clone();
    tokio::spawn(async move {
        while let Ok(e) = rx.recv().await {
            if let agentic_node::ChainEvent::Ledger { record, .. } = e {
                sink.lock().unwrap().push(record.event);
            }
        }
    });
    log
}

/// A requester that never uploads its input: the assigned provider cannot fetch it,
/// claims it unavailable (`ClaimUnavailable`) instead of missing its deadline, the
/// validators cannot fetch it either, and once the ledger's patience runs out the job
/// is cancelled with the provider compensated from the escrow (`miss_penalty_ppm` of
/// its stake) and the rest refunded. A requester that uploads the input only after the
/// claim: the validators fetch it, the claim is rejected (the claimant pays the miss
/// penalty), and the job goes on to completion.
#[test]
fn a_provider_claims_an_unpublished_input_unavailable() {
    // A challenge window longer than the claim's check (the arbiter retries a missing
    // blob every second): the second job cannot complete before its claim is judged.
    with_market(
        "unavailable",
        VALIDATORS,
        &["alice", "p1"],
        &[("challenge_window", 30), ("reveal_window", 20)],
        |net| async move {
            let c = net.client();
            let params = params(&c).await;
            let p1 = net.provider("p1", 1_000, |_| {}).await.unwrap();
            let alice = net.key("alice");
            let log = follow_events(&net);
            let events_of = |job| {
                let all = log.lock().unwrap().clone();
                all.into_iter()
                    .filter(|e| mentions(e, job))
                    .collect::<Vec<Event>>()
            };

            // 1. Never published: the job is cancelled, the provider compensated.
            let p = prepare(&["nobody will ever see this input"], &[], 10_000, 200);
            let (a0, pr0) = (
                snapshot(&c, &alice.address()).await,
                snapshot(&c, &p1.address()).await,
            );
            let id = submit_spec(&c, &alice, &p.spec, &[&p.bundle])
                .await
                .unwrap();
            let j = wait_finished(&c, id, Duration::from_secs(60)).await;
            assert_eq!(j.status, JobStatus::Cancelled, "{j:#?}");
            assert_eq!(j.escrow, Amount::ZERO);
            assert_eq!(p1.status().claims_sent, 1, "{:?}", p1.status());
            let (a1, pr1) = (
                snapshot(&c, &alice.address()).await,
                snapshot(&c, &p1.address()).await,
            );
            let due = Amount(pr0.bonded).mul_ppm(params.miss_penalty_ppm).0;
            assert!(due > 0);
            let events = events_of(id);
            assert!(
                events.iter().any(|e| matches!(e,
                    Event::UnavailabilityClaimed { claimant, .. } if *claimant == p1.address())),
                "{events:#?}"
            );
            let escrow = State::escrow_for(&p.spec).unwrap().0;
            assert!(
                events.iter().any(|e| matches!(e,
                    Event::DataUnavailable { compensation, refund, .. }
                        if compensation.0 == due && refund.0 == escrow - due)),
                "{events:#?}"
            );
            // The provider: one transaction (the claim), the compensation, its stake whole.
            assert_eq!(pr1.nonce, pr0.nonce + 1, "the claim only");
            assert_eq!(pr1.bonded, pr0.bonded);
            assert_eq!(pr1.balance, pr0.balance + due - pr1.fees_since(&pr0));
            // The requester: its fee and the compensation, nothing else.
            assert_eq!(a1.balance, a0.balance - submit_fee(&p.spec) - due);

            // 2. Published after the claim: the claim is rejected, the job completes.
            let p = prepare(&["an input that arrives late"], &[], 10_000, 200);
            let (a0, pr0) = (
                snapshot(&c, &alice.address()).await,
                snapshot(&c, &p1.address()).await,
            );
            let id = submit_spec(&c, &alice, &p.spec, &[&p.bundle])
                .await
                .unwrap();
            wait_job(&c, id, Duration::from_secs(60), |j| j.claim.is_some()).await;
            c.put_blob(p.input.canonical_bytes()).await.unwrap();
            let j = wait_finished(&c, id, Duration::from_secs(120)).await;
            assert_eq!(j.status, JobStatus::Completed, "{j:#?}");
            assert_eq!(
                j.stages[0].result.unwrap().output,
                p.local[0].trace.output_hash()
            );
            assert_eq!(p1.status().claims_sent, 2, "one claim per job");
            let (a1, pr1) = (
                snapshot(&c, &alice.address()).await,
                snapshot(&c, &p1.address()).await,
            );
            let penalty = Amount(pr0.bonded).mul_ppm(params.miss_penalty_ppm).0;
            let to_payer = Amount(penalty).mul_ppm(params.slash_requester_ppm).0;
            let events = events_of(id);
            assert!(
                events.iter().any(|e| matches!(e,
                    Event::ClaimRejected { claimant, penalty: x, .. }
                        if *claimant == p1.address() && x.0 == penalty)),
                "{events:#?}"
            );
            let price = j.stages[0].slots[0].assignment.as_ref().unwrap().price;
            let bill = Amount::cost(p.spec.stages[0].ops, price).unwrap().0;
            // The provider: the claim, the commit and the reveal; paid its bill; the miss
            // penalty off its stake.
            assert_eq!(pr1.nonce, pr0.nonce + 3);
            assert_eq!(pr1.bonded, pr0.bonded - penalty);
            assert_eq!(pr1.balance, pr0.balance + bill - pr1.fees_since(&pr0));
            // The requester: its fee and the bill, less its share of the penalty.
            assert_eq!(
                a1.balance,
                a0.balance - submit_fee(&p.spec) - bill + to_payer
            );
        },
    );
}

/// Whether a ledger event concerns `job`.
fn mentions(e: &Event, job: agentic_protocol::JobId) -> bool {
    matches!(e,
        Event::UnavailabilityClaimed { job: j, .. }
        | Event::ClaimRejected { job: j, .. }
        | Event::DataUnavailable { job: j, .. } if *j == job)
}

//! Verification end to end: every named cheat of `agentic_provider::misbehave`, run by a
//! real provider daemon on a local market (validators with consensus, data planes,
//! auditors and dispute players that are daemons too), is caught and costs the cheater
//! exactly the governed amounts; the requester gets back everything but what honest
//! work earned, plus its share of the slash; the auditor (or the honest defendant) is
//! paid its fee and the winner's share; a frivolous challenger loses its bond.
//!
//! Two markets, each running its scenarios one after the other (so that the one cheap
//! honest auditor is the one the ledger draws, and a cheater caught earlier — its stake
//! now below the provider minimum — is never matched again):
//!
//! * without a referee: `silent` (loses the bisection by timeout), `copy-replica`
//!   (cannot open a copied commitment, misses the reveal);
//! * with the validators' referee: `collude` (the downstream's broken chain is slashed
//!   at its reveal; the upstream's false output is caught by its audit),
//!   `wrong-output`, `perturb-ulp`, `smaller-model`, `random` (each audited, bisected to
//!   the layer its module names, refereed), `wrong-output` again as a replica against
//!   an honest replica (a replica dispute), and a frivolous outside challenge (whose
//!   honest defendant restarts mid-dispute and plays on from its journal).
//!
//! Every balance is checked to the base unit: the fees a provider paid are its nonce
//! rise times the minimum fee (a refused transaction costs nothing); a requester's one
//! transaction, the submission, costs its work (`submit_fee`: the minimum fee plus one
//! per replica and auditor slot).

mod common;
/// A generation stage lying about one layer at one step, caught and slashed.
#[path = "verify/generation.rs"]
mod generation;

use std::time::{Duration, Instant};

use agentic_compute::bundle::Bundle;
use agentic_protocol::event::Event;
use agentic_protocol::params::Params;
use agentic_protocol::state::{Dispute, DisputeKind, DisputePhase, JobStatus, StagePhase};
use agentic_protocol::types::VerificationLevel;
use agentic_protocol::{Address, Amount, DisputeId, Hash, JobId, Leaves, TxBody};
use agentic_provider::misbehave::{self, perturb_ulp};
use agentic_provider::{Misbehaviour, Provider};
use common::*;

/// The honest auditor's price: the cheapest offer, so the ledger draws it for audits.
const AUDITOR_PRICE: u128 = 100;
/// A cheater's price.
const CHEAT_PRICE: u128 = 1_000;
/// What the requester offers.
const MAX_PRICE: u128 = 10_000;
/// tiny-gpt: embeddings, two blocks, head.
const LAYERS: u32 = 4;
const TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn cheats_caught_without_a_referee() {
    with_market(
        "verify-timeouts",
        1,
        &["alice", "aud", "silent", "copier", "spare"],
        &[
            ("reveal_window", 10),
            ("challenge_window", 2),
            ("audit_window", 20),
            ("dispute_timeout", 10),
            ("match_timeout", 50),
        ],
        |net| async move {
            let t = Instant::now();
            let c = net.client();
            let params = params(&c).await;
            let aud = net.provider("aud", AUDITOR_PRICE, |_| {}).await.unwrap();

            // silent: audited, the auditor disagrees and moves, the cheater never does.
            let s = Instant::now();
            let (d, cheat) = caught_by_audit(
                &net,
                &aud,
                &params,
                "silent",
                Misbehaviour::Silent,
                "Silence is not an answer",
            )
            .await;
            assert!(
                !d.game.is_finished() && d.challenger_move.is_some() && d.defendant_move.is_none(),
                "lost by timeout in the first round: {d:?}"
            );
            assert_eq!(cheat.status().bisect_moves, 0);
            eprintln!("silent: {:?}", s.elapsed());

            let s = Instant::now();
            copy_replica(&net, &aud, &params).await;
            eprintln!("copy-replica: {:?}", s.elapsed());
            eprintln!("market without a referee: {:?}", t.elapsed());
        },
    );
}

#[test]
fn cheats_caught_by_the_referee() {
    with_market(
        "verify-referee",
        3,
        &[
            "alice", "aud", "cu", "cd", "wrong", "ulp", "smaller", "random", "twin", "honest",
            "mallory",
        ],
        REFEREED,
        |net| async move {
            let t = Instant::now();
            let c = net.client();
            let params = params(&c).await;
            let aud = net.provider("aud", AUDITOR_PRICE, |_| {}).await.unwrap();

            let s = Instant::now();
            collude(&net, &aud, &params).await;
            eprintln!("collude: {:?}", s.elapsed());

            // Each single-stage cheat is bisected down to the layer where its trace
            // first leaves the honest one, and the referee re-runs that layer.
            for (name, mode, text, lo) in [
                (
                    "wrong",
                    Misbehaviour::WrongOutput,
                    "A wrong answer",
                    LAYERS - 1,
                ),
                (
                    "ulp",
                    Misbehaviour::PerturbUlp,
                    "One ulp is enough",
                    perturb_ulp::layer(LAYERS as usize) as u32,
                ),
                ("smaller", Misbehaviour::SmallerModel, "Half a model", 1),
                ("random", Misbehaviour::Random, "Dice instead of work", 0),
            ] {
                let s = Instant::now();
                let (d, _cheat) = caught_by_audit(&net, &aud, &params, name, mode, text).await;
                assert!(
                    d.game.is_finished(),
                    "{mode}: refereed, not timed out: {d:?}"
                );
                assert_eq!(d.game.lo(), lo, "{mode}: the disputed layer");
                eprintln!("{mode}: {:?}", s.elapsed());
            }

            let s = Instant::now();
            replica_dispute(&net, &aud, &params).await;
            eprintln!("wrong-output against a replica: {:?}", s.elapsed());

            let s = Instant::now();
            frivolous_challenge(&net, &params).await;
            eprintln!("frivolous challenge: {:?}", s.elapsed());
            eprintln!("market with the referee: {:?}", t.elapsed());
        },
    );
}

/// A single-stage tiny-gpt job (all four layers) on `text`.
fn one_stage(text: &str, placement: Address, verification: VerificationLevel) -> Prepared {
    let mut p = prepare(&[text], &[], MAX_PRICE, 200);
    p.spec.placement = vec![placement];
    p.spec.requirements.verification = verification;
    p
}

/// `cost(ops, price)`.
fn bill(ops: u64, price: u128) -> u128 {
    Amount::cost(ops, Amount(price)).unwrap().0
}

/// The one dispute over `job`.
async fn the_dispute(c: &agentic_client::Client, job: JobId) -> (DisputeId, Dispute) {
    let mut all = disputes_of(c, job).await;
    assert_eq!(all.len(), 1, "one dispute over job {}: {all:?}", job.0);
    all.remove(0)
}

/// Starts a daemon cheating in `mode`, has it take an audited single-stage job, and
/// checks that the audit catches it: the honest auditor disputes, the cheater loses
/// `slash_ppm` of its stake (the auditor gets its fee and `slash_winner_ppm` of the
/// slash, the requester everything back but the auditor's fee, plus
/// `slash_requester_ppm` of the slash), and the job fails. Returns the resolved dispute.
async fn caught_by_audit(
    net: &Net,
    aud: &Provider,
    params: &Params,
    name: &str,
    mode: Misbehaviour,
    text: &str,
) -> (Dispute, Provider) {
    let c = net.client();
    let cheat = net
        .provider(name, CHEAT_PRICE, |cfg| cfg.misbehave = Some(mode))
        .await
        .unwrap();
    let alice = net.key("alice");
    let p = one_stage(text, cheat.address(), VerificationLevel::Audited);
    let (a0, c0, u0) = (
        snapshot(&c, &alice.address()).await,
        snapshot(&c, &cheat.address()).await,
        snapshot(&c, &aud.address()).await,
    );
    let id = submit(&c, &alice, &p).await.unwrap();
    let j = wait_finished(&c, id, TIMEOUT).await;
    assert_eq!(j.status, JobStatus::Failed, "{mode}: {j:#?}");
    let (_, d) = the_dispute(&c, id).await;
    assert_eq!(d.phase, DisputePhase::Resolved, "{mode}");
    assert_eq!(d.kind, DisputeKind::Audit, "{mode}");
    assert_eq!(
        (d.defendant, d.challenger),
        (cheat.address(), aud.address()),
        "{mode}: the cheater against the auditor"
    );
    assert!(j.excluded.contains(&cheat.address()), "{mode}");

    let (a1, c1, u1) = (
        snapshot(&c, &alice.address()).await,
        snapshot(&c, &cheat.address()).await,
        snapshot(&c, &aud.address()).await,
    );
    let slash = Amount(c0.bonded).mul_ppm(params.slash_ppm).0;
    assert!(slash > 0);
    let to_winner = Amount(slash).mul_ppm(params.slash_winner_ppm).0;
    let to_requester = Amount(slash).mul_ppm(params.slash_requester_ppm).0;
    let fee = bill(p.spec.stages[0].ops, AUDITOR_PRICE);
    // The cheater: slashed, never paid.
    assert_eq!(c1.bonded, c0.bonded - slash, "{mode}: cheater slashed");
    assert_eq!(
        c1.balance,
        c0.balance - c1.fees_since(&c0),
        "{mode}: cheater unpaid"
    );
    // The auditor: its fee and the winner's share; its stake untouched.
    assert_eq!(u1.bonded, u0.bonded, "{mode}: auditor's stake");
    assert_eq!(
        u1.balance,
        u0.balance + fee + to_winner - u1.fees_since(&u0),
        "{mode}: auditor paid its fee and the winner's share"
    );
    // The requester: the escrow back but the auditor's fee, plus its share; it sent
    // one transaction, the submission (its fee by its two slots: replica + auditor).
    assert_eq!(a1.nonce, a0.nonce + 1);
    assert_eq!(
        a1.balance,
        a0.balance - submit_fee(&p.spec) - fee + to_requester,
        "{mode}: requester refunded"
    );
    assert_eq!(j.escrow, Amount::ZERO);
    // The honest auditor's daemon committed to its result before the cheater revealed,
    // opened it, and played.
    let st = aud.status();
    assert!(
        st.audits_committed >= 1 && st.audits_reported >= 1 && st.bisect_moves >= 1,
        "{st:?}"
    );
    (d, cheat)
}

/// `copy-replica` on a two-replica stage next to the honest auditor: it copies the
/// auditor's commitment, cannot open it, misses the reveal deadline and is penalized
/// `miss_penalty_ppm`. The other replica revealed, so a replacement could only echo a
/// public result: the slot stays empty (the spare is not drawn), the stage goes on
/// with the honest replica, which alone is paid.
async fn copy_replica(net: &Net, aud: &Provider, params: &Params) {
    let c = net.client();
    let copier = net
        .provider("copier", CHEAT_PRICE, |cfg| {
            cfg.misbehave = Some(Misbehaviour::CopyReplica)
        })
        .await
        .unwrap();
    let alice = net.key("alice");
    let mut p = one_stage(
        "Two replicas, one of them lazy",
        copier.address(),
        VerificationLevel::Optimistic,
    );
    p.spec.requirements.replicas = 2;
    let mut before = Vec::new();
    for a in [alice.address(), copier.address(), aud.address()] {
        before.push(snapshot(&c, &a).await);
    }
    let id = submit(&c, &alice, &p).await.unwrap();
    // The second replica is drawn by stake among the qualified providers: the auditor
    // alone here. A spare joins once both slots are held, in time to replace the copier
    // — but the slot of a replica that misses its reveal after another revealed stays
    // empty.
    wait_job(&c, id, TIMEOUT, |j| {
        j.stages[0].slots.iter().all(|s| s.assignment.is_some())
    })
    .await;
    let spare = net.provider("spare", 2_000, |_| {}).await.unwrap();
    before.push(snapshot(&c, &spare.address()).await);
    let parties = [
        alice.address(),
        copier.address(),
        aud.address(),
        spare.address(),
    ];
    let j = wait_finished(&c, id, TIMEOUT).await;
    assert_eq!(j.status, JobStatus::Completed, "{j:#?}");
    let holders: Vec<Option<Address>> = j.stages[0]
        .slots
        .iter()
        .map(|s| s.assignment.as_ref().map(|a| a.provider))
        .collect();
    assert_eq!(
        holders,
        vec![None, Some(aud.address())],
        "the copier's slot stays empty"
    );
    assert!(j.excluded.contains(&copier.address()));
    assert!(
        disputes_of(&c, id).await.is_empty(),
        "no dispute: the copy never opened"
    );
    let mut after = Vec::new();
    for a in &parties {
        after.push(snapshot(&c, a).await);
    }
    let (a0, k0, u0, s0) = (before[0], before[1], before[2], before[3]);
    let (a1, k1, u1, s1) = (after[0], after[1], after[2], after[3]);
    let penalty = Amount(k0.bonded).mul_ppm(params.miss_penalty_ppm).0;
    assert!(penalty > 0);
    let to_requester = Amount(penalty).mul_ppm(params.slash_requester_ppm).0;
    let ops = p.spec.stages[0].ops;
    // The copier: its (copied) commitment landed, its reveal was refused for free.
    assert_eq!(
        k1.nonce,
        k0.nonce + 1,
        "one successful transaction: the commit"
    );
    assert_eq!(
        k1.bonded,
        k0.bonded - penalty,
        "penalized for the missed reveal"
    );
    assert_eq!(k1.balance, k0.balance - k1.fees_since(&k0));
    // The honest replica: paid ops × its price. The spare: untouched.
    assert_eq!(
        u1.balance,
        u0.balance + bill(ops, AUDITOR_PRICE) - u1.fees_since(&u0)
    );
    assert_eq!(s1, s0, "the spare took no part");
    assert_eq!(u1.bonded, u0.bonded);
    // The requester: paid the one honest bill, got the requester's share.
    assert_eq!(a1.nonce, a0.nonce + 1);
    assert_eq!(
        a1.balance,
        a0.balance - submit_fee(&p.spec) - bill(ops, AUDITOR_PRICE) + to_requester
    );
}

/// `wrong-output` on a two-replica stage whose other replica is honest: the replicas
/// disagree, the honest one (the challenger) plays the bisection, the referee convicts
/// the cheater, and the honest replica is paid its bill and the winner's share.
async fn replica_dispute(net: &Net, aud: &Provider, params: &Params) {
    let c = net.client();
    let twin = net
        .provider("twin", CHEAT_PRICE, |cfg| {
            cfg.misbehave = Some(Misbehaviour::WrongOutput)
        })
        .await
        .unwrap();
    let alice = net.key("alice");
    let mut p = one_stage(
        "Two replicas, one of them lying",
        twin.address(),
        VerificationLevel::Optimistic,
    );
    p.spec.requirements.replicas = 2;
    let (a0, t0, u0) = (
        snapshot(&c, &alice.address()).await,
        snapshot(&c, &twin.address()).await,
        snapshot(&c, &aud.address()).await,
    );
    let id = submit(&c, &alice, &p).await.unwrap();
    let j = wait_finished(&c, id, TIMEOUT).await;
    assert_eq!(j.status, JobStatus::Failed, "{j:#?}");
    let (_, d) = the_dispute(&c, id).await;
    assert_eq!(
        (d.kind, d.defendant, d.challenger),
        (DisputeKind::Replica, twin.address(), aud.address())
    );
    assert!(d.game.is_finished());
    assert_eq!(d.game.lo(), LAYERS - 1);
    let (a1, t1, u1) = (
        snapshot(&c, &alice.address()).await,
        snapshot(&c, &twin.address()).await,
        snapshot(&c, &aud.address()).await,
    );
    let slash = Amount(t0.bonded).mul_ppm(params.slash_ppm).0;
    let honest_bill = bill(p.spec.stages[0].ops, AUDITOR_PRICE);
    assert_eq!(t1.bonded, t0.bonded - slash);
    assert_eq!(t1.balance, t0.balance - t1.fees_since(&t0));
    assert_eq!(u1.bonded, u0.bonded);
    assert_eq!(
        u1.balance,
        u0.balance + honest_bill + Amount(slash).mul_ppm(params.slash_winner_ppm).0
            - u1.fees_since(&u0)
    );
    assert_eq!(a1.nonce, a0.nonce + 1);
    assert_eq!(
        a1.balance,
        a0.balance - submit_fee(&p.spec) - honest_bill
            + Amount(slash).mul_ppm(params.slash_requester_ppm).0
    );
}

/// Two colluders on consecutive stages: the upstream reveals a false output and pushes
/// the true activation, the downstream commits on the pushed activation (as soon as the
/// ledger takes it: once the upstream revealed). The downstream's reveal breaks the
/// chain (slashed at once, no winner, its slot re-matched); the upstream's audit
/// disputes its false output and the referee convicts it; the job fails.
///
/// Who takes the downstream stage again is the honest auditor (the only other
/// qualified provider once it is free), computing from the chain's agreed input. If it
/// delivered before the upstream's verdict failed the job, that delivered stage lives
/// on: it is paid its bill at the end of its challenge window, the payer is repaid that
/// bill from the upstream's slash first (what would have been burned), and the rest of
/// the escrow comes back when it settles; otherwise the stage is cancelled unpaid.
/// Either way every base unit is checked.
async fn collude(net: &Net, aud: &Provider, params: &Params) {
    let c = net.client();
    let collude = |cfg: &mut agentic_provider::Config| cfg.misbehave = Some(Misbehaviour::Collude);
    let up = net.provider("cu", CHEAT_PRICE, collude).await.unwrap();
    let down = net.provider("cd", CHEAT_PRICE, collude).await.unwrap();
    let alice = net.key("alice");
    let mut p = prepare(&["Between the two of us"], &[2], MAX_PRICE, 200);
    p.spec.placement = vec![up.address(), down.address()];
    p.spec.requirements.verification = VerificationLevel::Audited;
    let (a0, up0, dn0, u0) = (
        snapshot(&c, &alice.address()).await,
        snapshot(&c, &up.address()).await,
        snapshot(&c, &down.address()).await,
        snapshot(&c, &aud.address()).await,
    );
    let id = submit(&c, &alice, &p).await.unwrap();

    // The downstream's reveal: its input is the true activation, the chain agreed on
    // the upstream's false output. Slashed (no winner), excluded, stage re-routed.
    // The downstream's reveal window opens only once the auditor drawn for its stage
    // committed too; on a loaded machine the upstream's verdict can fail the job
    // first, and then the downstream's undelivered stage is cancelled (no pay, no
    // penalty). Both orders are the protocol's; each is checked.
    let j = wait_job(&c, id, TIMEOUT, |j| {
        j.excluded.contains(&down.address()) || j.status != JobStatus::Active
    })
    .await;
    let chain_broken = j.excluded.contains(&down.address());
    let false_out = j.stages[0].result.expect("the upstream revealed").output;
    assert_ne!(false_out, p.local[0].trace.output_hash());
    let dn1 = snapshot(&c, &down.address()).await;
    let down_slash = if chain_broken {
        Amount(dn0.bonded).mul_ppm(params.slash_ppm).0
    } else {
        eprintln!("collude: the upstream's verdict came before the downstream's reveal");
        assert!(
            j.stages[1].slots[0]
                .assignment
                .as_ref()
                .is_some_and(|a| a.provider == down.address() && a.result.is_none()),
            "{j:#?}"
        );
        0
    };
    assert_eq!(
        dn1.bonded,
        dn0.bonded - down_slash,
        "the broken chain is slashed (and only a broken chain)"
    );
    assert_eq!(
        dn1.balance,
        dn0.balance - dn1.fees_since(&dn0),
        "and never paid"
    );

    // The upstream's false output: audited, disputed, refereed at its last layer. The
    // job fails; it is settled once its delivered stages are (no escrow held).
    let j = wait_job(&c, id, TIMEOUT, |j| {
        j.status != JobStatus::Active && j.escrow == Amount::ZERO
    })
    .await;
    assert_eq!(j.status, JobStatus::Failed, "{j:#?}");
    let (_, d) = the_dispute(&c, id).await;
    assert_eq!(
        (d.kind, d.stage, d.defendant, d.challenger),
        (DisputeKind::Audit, 0, up.address(), aud.address())
    );
    assert!(d.game.is_finished());
    assert_eq!(d.game.lo(), p.spec.stages[0].layers - 1, "the last layer");
    // The downstream stage: delivered by the auditor (on the chain's agreed input) and
    // paid, or cancelled before it delivered.
    let st1 = &j.stages[1];
    let delivered = st1.phase == StagePhase::Finalized;
    if delivered {
        let a = st1.slots[0].assignment.as_ref().expect("a replacement");
        assert_eq!(
            a.provider,
            aud.address(),
            "the auditor took the stage again"
        );
        assert_eq!(
            st1.result.unwrap().input,
            false_out,
            "it chained onto the agreed input"
        );
    } else {
        assert_eq!(st1.phase, StagePhase::Cancelled, "{j:#?}");
    }
    let bill1 = if delivered {
        bill(p.spec.stages[1].ops, AUDITOR_PRICE)
    } else {
        0
    };
    let (a1, up1, u1) = (
        snapshot(&c, &alice.address()).await,
        snapshot(&c, &up.address()).await,
        snapshot(&c, &aud.address()).await,
    );
    let up_slash = Amount(up0.bonded).mul_ppm(params.slash_ppm).0;
    assert_eq!(up1.bonded, up0.bonded - up_slash);
    assert_eq!(up1.balance, up0.balance - up1.fees_since(&up0));
    let fee = bill(p.spec.stages[0].ops, AUDITOR_PRICE);
    let up_to_winner = Amount(up_slash).mul_ppm(params.slash_winner_ppm).0;
    let up_to_requester = Amount(up_slash).mul_ppm(params.slash_requester_ppm).0;
    // The auditor: its audit fee, the winner's share, and the downstream bill if it
    // delivered that stage; its stake untouched.
    assert_eq!(u1.bonded, u0.bonded);
    assert_eq!(
        u1.balance,
        u0.balance + fee + up_to_winner + bill1 - u1.fees_since(&u0)
    );
    // The requester: its fee, the audit, the downstream bill repaid from what the
    // upstream's slash would have burned, and its shares of both slashes.
    let up_burned = up_slash - up_to_winner - up_to_requester;
    let compensated = up_burned.min(bill1);
    let to_requester = up_to_requester + Amount(down_slash).mul_ppm(params.slash_requester_ppm).0;
    assert_eq!(a1.nonce, a0.nonce + 1);
    assert_eq!(
        a1.balance,
        a0.balance - submit_fee(&p.spec) - fee - bill1 + compensated + to_requester
    );
}

/// An outside account challenges an honest result with a false one and plays the
/// bisection faithfully for its false trace: the referee sides with the honest
/// provider, the bond is forfeited (`slash_winner_ppm` of it to the provider,
/// `slash_requester_ppm` to the requester, the rest burned), and the job completes.
/// The honest provider's daemon is restarted once the dispute is open, so the game is
/// won from what its journal kept.
async fn frivolous_challenge(net: &Net, params: &Params) {
    let c = net.client();
    let honest = net.provider("honest", 1_500, |_| {}).await.unwrap();
    let alice = net.key("alice");
    let mallory = net.key("mallory");
    let p = one_stage(
        "Honest work, wrongly accused",
        honest.address(),
        VerificationLevel::Optimistic,
    );
    // Mallory's false trace: honest up to the last leaf.
    let model = Bundle::of("tiny-gpt").unwrap().load().unwrap().model;
    let lie = misbehave::execute(
        Some(Misbehaviour::WrongOutput),
        &model,
        0..LAYERS as usize,
        p.input.clone(),
        &[0; 32],
    )
    .unwrap();
    let (a0, h0, m0) = (
        snapshot(&c, &alice.address()).await,
        snapshot(&c, &honest.address()).await,
        snapshot(&c, &mallory.address()).await,
    );
    let id = submit(&c, &alice, &p).await.unwrap();
    wait_job(&c, id, TIMEOUT, |j| {
        matches!(j.stages[0].phase, StagePhase::Challengeable { .. })
    })
    .await;
    let receipt = c
        .send(
            &mallory.key,
            TxBody::Challenge {
                job: id,
                stage: 0,
                result: lie.result,
            },
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    let dispute = receipt
        .events
        .iter()
        .find_map(|e| match e.event {
            Event::DisputeOpened { dispute, .. } => Some(dispute),
            _ => None,
        })
        .expect("the challenge opened a dispute");
    // The defendant's daemon restarts mid-dispute (same key, same data directory): it
    // plays on from the trace leaves in its journal, and replays its computation to
    // publish the agreed activation.
    honest.kill();
    let honest = net.provider("honest", 1_500, |_| {}).await.unwrap();
    play_challenger(&c, &mallory.key, dispute, &lie.leaves).await;

    let j = wait_finished(&c, id, TIMEOUT).await;
    assert_eq!(j.status, JobStatus::Completed, "{j:#?}");
    assert_eq!(
        j.stages[0].result.unwrap().output,
        p.local[0].trace.output_hash()
    );
    let (_, d) = the_dispute(&c, id).await;
    assert_eq!(d.phase, DisputePhase::Resolved);
    assert_eq!(
        d.kind,
        DisputeKind::External {
            bond: params.challenge_bond
        }
    );
    assert!(d.game.is_finished());
    assert_eq!(d.game.lo(), LAYERS - 1);
    let (a1, h1, m1) = (
        snapshot(&c, &alice.address()).await,
        snapshot(&c, &honest.address()).await,
        snapshot(&c, &mallory.address()).await,
    );
    let bond = params.challenge_bond;
    let stage_bill = bill(p.spec.stages[0].ops, 1_500);
    assert_eq!(
        m1.balance,
        m0.balance - bond.0 - m1.fees_since(&m0),
        "bond lost"
    );
    assert_eq!(h1.bonded, h0.bonded, "the honest provider keeps its stake");
    assert_eq!(
        h1.balance,
        h0.balance + stage_bill + bond.mul_ppm(params.slash_winner_ppm).0 - h1.fees_since(&h0),
        "paid for the stage, and the winner's share of the bond"
    );
    assert_eq!(a1.nonce, a0.nonce + 1);
    assert_eq!(
        a1.balance,
        a0.balance - submit_fee(&p.spec) - stage_bill + bond.mul_ppm(params.slash_requester_ppm).0
    );
    let st = honest.status();
    assert!(
        st.bisect_moves >= 1 && st.activations_provided >= 1,
        "{st:?}"
    );
}

/// An outside challenger's side of the bisection game: its leaf at each round's
/// midpoint with the Merkle proof, until the game leaves the bisection phase. It does
/// not publish the agreed activation: the honest defendant's daemon must.
async fn play_challenger(
    c: &agentic_client::Client,
    key: &commonware_cryptography::ed25519::PrivateKey,
    dispute: DisputeId,
    leaves: &[Hash],
) {
    let leaves = Leaves::new(leaves.to_vec());
    let me = Address::from(&commonware_cryptography::Signer::public_key(key));
    let start = Instant::now();
    loop {
        let d: Dispute = c.dispute(dispute).await.unwrap();
        if d.phase != DisputePhase::Bisecting {
            return;
        }
        if let Some(tx) = leaves.next_move(dispute, &d, me).unwrap() {
            c.send(key, tx, Duration::from_secs(30)).await.unwrap();
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "dispute {} still bisecting",
            dispute.0
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

//! JSON: every type the node API writes reads back into the same value
//! (`from_value(to_value(x)) == x`), over the state a realistic chain
//! produces — a pipeline job under a mandate with assignments and results,
//! an audited job in dispute, a proposal with votes, the blocks' events and
//! receipts — and over every variant of the small enums. Malformed input is
//! a clear error, never a panic.

use agentic_protocol::bisection::{
    Bisection, BisectionError, DisputedStep, Level, Probe, TwoLevel,
};
use agentic_protocol::coord::{Coord, VivaldiNode, VivaldiParams};
use agentic_protocol::event::{Event, EventRecord, Resolution};
use agentic_protocol::matching::{Candidate, Disqualified, MatchError, MatchWeights, Requirement};
use agentic_protocol::params::{ParamChange, ParamError, ParamKey, Params};
use agentic_protocol::reputation::{Reputation, ReputationParams};
use agentic_protocol::state::{
    DisputeKind, DisputePhase, Genesis, GenesisError, Job, JobStatus, ProposalStatus, StagePhase,
    StateKey,
};
use agentic_protocol::test_utils::{
    address_of, fast_params, job_spec, key, offer, GenesisBuilder, TestChain, Trace,
};
use agentic_protocol::tx::{MandateTerms, Offer, Tx, TxBody};
use agentic_protocol::types::{
    Address, Amount, Capabilities, ChainId, DisputeId, Endpoint, Hash, Height, JobId, MandateId,
    ProposalId, Region, VerificationLevel,
};
use agentic_protocol::{BlockError, BlockOutcome, RefereeError, TxError};
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use std::fmt::Debug;

/// Round-trips `x` through a `Value` and through text.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(x: &T) {
    let v = serde_json::to_value(x).expect("serializes");
    let back: T = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"));
    assert_eq!(&back, x, "through {v}");
    let text = serde_json::to_string(x).expect("serializes");
    let back: T = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(&back, x, "through {text}");
}

/// The error reading `v` as a `T`.
fn error<T: DeserializeOwned + Debug>(v: Value) -> String {
    match serde_json::from_value::<T>(v.clone()) {
        Ok(x) => panic!("{v} read as {x:?}"),
        Err(e) => e.to_string(),
    }
}

const REQUESTER: u64 = 1;
const AGENT: u64 = 2;
const VOTER: u64 = 3;
const P1: u64 = 11;
const P2: u64 = 12;
const P3: u64 = 13;

fn model() -> Hash {
    Hash::digest("model", &[b"json"])
}
fn input() -> Hash {
    Hash::digest("input", &[b"json"])
}

/// A chain with some of everything, and every block outcome it produced.
fn busy_chain() -> (TestChain, Vec<BlockOutcome>) {
    let mut g = GenesisBuilder::new(9)
        .params(fast_params())
        .account(address_of(&key(REQUESTER)), 1_000_000, 0)
        .account(address_of(&key(AGENT)), 10_000, 0)
        .account(address_of(&key(VOTER)), 10_000, 50_000);
    for p in [P1, P2, P3] {
        g = g.account(address_of(&key(p)), 100_000, 20_000);
    }
    let mut c = TestChain::new(&g.build());
    let mut outs = Vec::new();
    // Three providers with their data-plane endpoints and measured speeds.
    for (i, p) in [P1, P2, P3].into_iter().enumerate() {
        let o = Offer {
            capabilities: Capabilities::CPU | Capabilities::GPU,
            region: Region(250 + i as u16),
            coord: Coord::new(1_000 * i as i32, -500 * i as i32, 300 + i as u32),
            endpoint: Endpoint::new(format!("10.1.0.{}:7400", i + 1)).unwrap(),
            speed: 1_000_000_000 * (i as u64 + 1),
            ..offer(5 + i as u128, 4)
        };
        c.push(
            &key(p),
            TxBody::RegisterProvider {
                offer: o,
                stake: Amount(1_000),
            },
        );
    }
    // A few rejections, so receipts carry errors.
    c.push(
        &key(AGENT),
        TxBody::Transfer {
            to: address_of(&key(P1)),
            amount: Amount(u128::from(u64::MAX)),
        },
    );
    c.push(&key(REQUESTER), TxBody::CancelJob { job: JobId(77) });
    outs.push(c.produce());
    let mut bad = job_spec(
        model(),
        input(),
        &[(2, 1)],
        1,
        VerificationLevel::Optimistic,
    );
    bad.stages.clear();
    c.push(&key(REQUESTER), TxBody::SubmitJob { spec: bad });
    outs.push(c.produce());
    // The requester lets an agent spend for it.
    let agent = address_of(&key(AGENT));
    c.push(
        &key(REQUESTER),
        TxBody::GrantMandate {
            terms: MandateTerms {
                agent,
                total_cap: Amount(500_000),
                per_job_cap: Amount(100_000),
                max_unit_price: Amount(20),
                expiry: Height(10_000),
                min_verification: VerificationLevel::Sampled,
            },
        },
    );
    outs.push(c.produce());
    assert_eq!(outs.last().unwrap().receipts, vec![Ok(())]);

    // Governance: a proposal with a vote.
    c.push(
        &key(VOTER),
        TxBody::Propose {
            change: ParamChange {
                key: ParamKey::ChallengeWindow,
                value: 7,
            },
        },
    );
    outs.push(c.produce());
    c.push(
        &key(VOTER),
        TxBody::Vote {
            proposal: ProposalId(0),
            approve: true,
        },
    );
    outs.push(c.produce());
    // A three-stage pipeline under the mandate: stages 0 and 1 delivered,
    // stage 2 committed only.
    let mut spec = job_spec(
        model(),
        input(),
        &[(3, 2_000_000), (2, 1_000_000), (4, 3_000_000)],
        10,
        VerificationLevel::Sampled,
    );
    spec.mandate = Some(MandateId(0));
    spec.requirements.regions = vec![Region(250), Region(251), Region(252)];
    spec.requirements.min_stake = Amount(10_000);
    spec.coord = Coord::new(-40, 70, 25);
    let pipeline = c.state.meta().next_job;
    c.push(&key(AGENT), TxBody::SubmitJob { spec: spec.clone() });
    outs.push(c.produce());
    assert_eq!(outs.last().unwrap().receipts, vec![Ok(())]);
    let provider_key = |c: &TestChain, job: JobId, stage: usize| {
        let a = c.state.job(job).unwrap().stages[stage].slots[0]
            .assignment
            .as_ref()
            .expect("assigned")
            .provider;
        [P1, P2, P3]
            .into_iter()
            .find(|p| address_of(&key(*p)) == a)
            .unwrap()
    };
    let mut stage_input = input();
    for (s, st) in spec.stages.iter().enumerate().take(2) {
        let t = Trace::honest(&model(), st.first_layer, st.layers, stage_input);
        let k = provider_key(&c, pipeline, s);
        c.deliver(&key(k), pipeline, s as u32, &t).unwrap();
        stage_input = t.result().output;
    }

    // An audited job whose provider cheats: a dispute, one move made.
    let audited = c.state.meta().next_job;
    c.push(
        &key(REQUESTER),
        TxBody::SubmitJob {
            spec: job_spec(
                model(),
                input(),
                &[(8, 10_000_000)],
                10,
                VerificationLevel::Audited,
            ),
        },
    );
    outs.push(c.produce());
    let k = provider_key(&c, audited, 0);
    let cheat = Trace::cheating(&model(), 0, 8, input(), 2);
    c.deliver(&key(k), audited, 0, &cheat).unwrap();
    let StagePhase::Auditing { .. } = c.state.job(audited).unwrap().stages[0].phase else {
        panic!("audited jobs are audited");
    };
    let dispute = c.state.meta().next_dispute;
    c.audit_report(audited, 0).unwrap();
    // Stage 2 of the pipeline: committed, not yet revealed.
    let st = spec.stages[2];
    let k = provider_key(&c, pipeline, 2);
    let t = Trace::honest(&model(), st.first_layer, st.layers, stage_input);
    let salt = Hash([2; 32]);
    c.push(
        &key(k),
        TxBody::CommitResult {
            job: pipeline,
            stage: 2,
            commitment: t
                .result()
                .commitment(pipeline, 2, &salt, &address_of(&key(k))),
        },
    );
    outs.push(c.produce());
    // The auditor makes the first move of the dispute game.
    let mid = c.state.dispute(dispute).unwrap().game.midpoint().unwrap();
    let honest = Trace::honest(&model(), 0, 8, input());
    let (leaf, proof) = honest.open(mid).unwrap();
    let auditor = c.state.dispute(dispute).unwrap().challenger;
    let ka = c.keys[&auditor].clone();
    c.push(
        &ka,
        TxBody::Bisect {
            dispute,
            leaf,
            proof,
        },
    );
    outs.push(c.produce());

    (c, outs)
}

#[test]
fn the_state_of_a_busy_chain_round_trips() {
    let (c, outs) = busy_chain();
    let s = &c.state;

    // What the scenario was meant to produce.
    let pipeline = s.job(JobId(0)).unwrap();
    assert_eq!(pipeline.stages.len(), 3);
    assert!(pipeline.stages[..2].iter().all(|st| st.result.is_some()));
    assert!(pipeline.stages[2].slots[0]
        .assignment
        .as_ref()
        .unwrap()
        .commitment
        .is_some());
    let d = s.dispute(DisputeId(0)).unwrap();
    assert!(d.challenger_move.is_some() && d.defendant_move.is_none());
    assert!(s.proposal(ProposalId(0)).unwrap().yes > Amount::ZERO);
    assert!(outs.iter().any(|o| o.receipts.iter().any(Result::is_err)));

    for (a, acct) in s.accounts() {
        round_trip(a);
        round_trip(acct);
    }
    for (a, p) in s.providers() {
        round_trip(a);
        round_trip(p);
        round_trip(&p.offer);
        round_trip(&p.reputation);
        assert!(!p.offer.endpoint.is_none());
    }
    for (id, m) in s.mandates() {
        round_trip(id);
        round_trip(m);
        round_trip(&m.terms);
    }
    for (id, j) in s.jobs() {
        round_trip(id);
        round_trip(j);
        round_trip(&j.spec);
        for st in &j.stages {
            round_trip(st);
            round_trip(&st.phase);
            for slot in &st.slots {
                round_trip(slot);
            }
        }
    }
    for (id, d) in s.disputes() {
        round_trip(id);
        round_trip(d);
        round_trip(&d.game);
    }
    for (id, p) in s.proposals() {
        round_trip(id);
        round_trip(p);
        let v = s.vote_record(*id, &address_of(&key(VOTER))).unwrap();
        round_trip(&v);
    }
    round_trip(s.params());
    round_trip(s.meta());
    for o in &outs {
        round_trip(o);
        for r in &o.events {
            round_trip(r);
            round_trip(&r.event);
        }
    }
}

#[test]
fn every_transaction_kind_and_genesis_round_trip() {
    let (c, _) = busy_chain();
    let job = c.state.job(JobId(0)).unwrap().clone();
    let t = Trace::honest(&model(), 0, 6, input());
    let (leaf, proof) = t.open(3).unwrap();
    let bodies = vec![
        TxBody::Transfer {
            to: address_of(&key(4)),
            amount: Amount(12_345_678_901_234_567_890_123),
        },
        TxBody::Bond { amount: Amount(1) },
        TxBody::Unbond { amount: Amount(2) },
        TxBody::Withdraw { amount: Amount(3) },
        TxBody::RegisterProvider {
            offer: c
                .state
                .provider(&address_of(&key(P2)))
                .unwrap()
                .offer
                .clone(),
            stake: Amount(9),
        },
        TxBody::UpdateProvider { offer: offer(5, 3) },
        TxBody::Retire,
        TxBody::GrantMandate {
            terms: c.state.mandate(MandateId(0)).unwrap().terms.clone(),
        },
        TxBody::RevokeMandate {
            mandate: MandateId(1),
        },
        TxBody::SubmitJob { spec: job.spec },
        TxBody::CommitResult {
            job: JobId(1),
            stage: 2,
            commitment: Hash([7; 32]),
        },
        TxBody::CommitSession {
            job: JobId(1),
            stage: 1,
            commitment: Hash([7; 32]),
            input: Hash([16; 32]),
        },
        TxBody::RevealResult {
            job: JobId(1),
            stage: 0,
            result: t.result(),
            salt: Hash([8; 32]),
        },
        TxBody::AuditReport {
            job: JobId(2),
            stage: 1,
            result: t.result(),
            salt: Hash([9; 32]),
        },
        TxBody::AuditCommit {
            job: JobId(2),
            stage: 1,
            commitment: Hash([10; 32]),
        },
        TxBody::ClaimUnavailable { job: JobId(4) },
        TxBody::Challenge {
            job: JobId(3),
            stage: 0,
            result: t.result(),
        },
        TxBody::Bisect {
            dispute: DisputeId(4),
            leaf,
            proof,
        },
        TxBody::StepRoot {
            dispute: DisputeId(5),
            root: Hash([11; 32]),
            first_proof: vec![Hash([12; 32]), Hash([13; 32])],
            last_proof: vec![Hash([14; 32])],
        },
        TxBody::ReplaceStage {
            job: JobId(6),
            stage: 2,
            provider: Address([15; 32]),
        },
        TxBody::Propose {
            change: ParamChange {
                key: ParamKey::QuorumPpm,
                value: 400_000,
            },
        },
        TxBody::Vote {
            proposal: ProposalId(5),
            approve: false,
        },
        TxBody::CancelJob { job: JobId(6) },
    ];
    for body in bodies {
        round_trip(&body);
        round_trip(&Tx {
            chain_id: ChainId(9),
            nonce: 3,
            fee: Amount(2),
            body,
        });
    }
    let genesis: Genesis = GenesisBuilder::new(4)
        .params(fast_params())
        .account(address_of(&key(1)), 5, 6)
        .treasury(address_of(&key(2)))
        .build();
    round_trip(&genesis);
    round_trip(&genesis.accounts[0]);
}

#[test]
fn every_variant_of_the_small_enums_round_trips() {
    let a = address_of(&key(1));
    for phase in [
        StagePhase::Matching { since: Height(3) },
        StagePhase::Running {
            reveal_deadline: None,
        },
        StagePhase::Running {
            reveal_deadline: Some(Height(9)),
        },
        StagePhase::Auditing {
            auditor: a,
            price: Amount(6),
            deadline: Height(12),
        },
        StagePhase::Challengeable { until: Height(15) },
        StagePhase::Disputed {
            dispute: DisputeId(2),
        },
        StagePhase::Finalized,
        StagePhase::Cancelled,
    ] {
        round_trip(&phase);
    }
    for s in [
        JobStatus::Active,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ] {
        round_trip(&s);
    }
    for k in [
        DisputeKind::Replica,
        DisputeKind::Audit,
        DisputeKind::External { bond: Amount(500) },
    ] {
        round_trip(&k);
    }
    for p in [
        DisputePhase::Bisecting,
        DisputePhase::AwaitingReferee,
        DisputePhase::Resolved,
        DisputePhase::StepRoots,
    ] {
        round_trip(&p);
    }
    for s in [
        ProposalStatus::Voting,
        ProposalStatus::Passed {
            activates: Height(40),
        },
        ProposalStatus::Rejected,
        ProposalStatus::Enacted,
        ProposalStatus::Voided,
    ] {
        round_trip(&s);
    }
    for k in [
        StateKey::Account(a),
        StateKey::Provider(a),
        StateKey::Mandate(MandateId(1)),
        StateKey::Job(JobId(2)),
        StateKey::Dispute(DisputeId(3)),
        StateKey::Proposal(ProposalId(4)),
        StateKey::Vote(ProposalId(5), a),
        StateKey::Unbonding(Height(6), a),
        StateKey::Params,
        StateKey::Meta,
    ] {
        round_trip(&k);
    }
    for v in [
        VerificationLevel::Optimistic,
        VerificationLevel::Sampled,
        VerificationLevel::Audited,
    ] {
        round_trip(&v);
    }
    for r in [
        Resolution::Refereed { layer: 4 },
        Resolution::InputUnavailable,
        Resolution::Timeout,
        Resolution::Annulled,
    ] {
        round_trip(&r);
    }
    round_trip(&EventRecord {
        tx: None,
        event: Event::Issued {
            to: a,
            amount: Amount(1),
        },
    });
    round_trip(&Event::JobCancelled {
        job: JobId(1),
        refund: Amount(60),
    });
    round_trip(&Event::SessionBroken {
        job: JobId(1),
        stage: 2,
    });
    round_trip(&Event::SessionCharged {
        job: JobId(1),
        steps: 3,
        burned: Amount(40),
    });
    round_trip(&Event::SessionSalvaged {
        job: JobId(1),
        stages: vec![0, 2],
    });
    for key in ParamKey::ALL {
        round_trip(key);
        round_trip(&ParamChange {
            key: *key,
            value: key.range().1.min(u128::from(u64::MAX)),
        });
    }
    round_trip(&Params::default());
    round_trip(&Endpoint::NONE);
    round_trip(&Endpoint::new("node-3.example.org:443").unwrap());
    round_trip(&Capabilities(u64::MAX));
    round_trip(&Amount(u128::MAX));
    round_trip(&Hash::digest("x", &[]));
}

#[test]
fn errors_round_trip() {
    let a = address_of(&key(1));
    let errors = vec![
        TxError::BadSignature,
        TxError::WrongChain {
            expected: ChainId(1),
            got: ChainId(2),
        },
        TxError::FeeTooLow {
            fee: Amount(0),
            min: Amount(1),
        },
        TxError::InsufficientBalance {
            need: Amount(10),
            have: Amount(3),
        },
        TxError::NotProvider(a),
        TxError::InvalidOffer("price must be positive".into()),
        TxError::InvalidMandate("caps must be positive".into()),
        TxError::InvalidJob("stage count".into()),
        TxError::WrongPhase("running".into()),
        TxError::PlacementUnqualified {
            stage: 1,
            provider: a,
        },
        TxError::UnknownStage {
            job: JobId(1),
            stage: 4,
        },
        TxError::BadProof { index: 3 },
        TxError::InvalidParam(ParamError::OutOfRange {
            key: ParamKey::SlashPpm,
            value: 2_000_000,
            lo: 0,
            hi: 1_000_000,
        }),
        TxError::InvalidParam(ParamError::SlashSharesExceedWhole),
        TxError::NotRequester,
        TxError::JobNotActive(JobId(5)),
        TxError::JobStarted,
        TxError::GenerationReplicas(3),
        TxError::InvalidSteps { steps: 0, max: 20 },
        TxError::SessionCommitNeeded,
        TxError::NotASession,
    ];
    for e in &errors {
        round_trip(e);
        round_trip(&Err::<(), TxError>(e.clone()));
    }
    round_trip(&BlockError::WrongHeight {
        expected: Height(2),
        got: Height(5),
    });
    round_trip(&BlockError::TooManyTxs(9));
    round_trip(&GenesisError::DuplicateAccount(a));
    round_trip(&GenesisError::Params(ParamError::AuditFloorAboveBase));
    round_trip(&GenesisError::DuplicateProvider(a));
    round_trip(&GenesisError::ProviderStake(a));
    round_trip(&GenesisError::ProviderOffer(a));
    round_trip(&RefereeError::LayerOutOfRange(12));
    round_trip(&BisectionError::WrongLevel {
        expected: Level::Step,
        got: Level::Layer,
    });
    round_trip(&Disqualified::PriceTooHigh { price: 9, max: 5 });
    round_trip(&MatchError::Disqualified {
        stage: 2,
        reason: Disqualified::WrongRegion(7),
    });
}

#[test]
fn off_chain_helpers_round_trip() {
    round_trip(&Candidate {
        id: address_of(&key(1)),
        price: 5,
        reputation_ppm: 700_000,
        coord: Coord::new(-3, 4, 5),
        stake: 20_000,
        free_capacity: 2,
        region: 250,
        capabilities: 3,
    });
    round_trip(&Requirement {
        max_price: 10,
        min_reputation_ppm: 1,
        min_stake: 2,
        regions: vec![1, 2],
        capabilities: 1,
        requester: Coord::new(1, 2, 3),
    });
    round_trip(&MatchWeights::default());
    round_trip(&VivaldiParams::default());
    round_trip(&VivaldiNode::default());
    round_trip(&ReputationParams::default());
    round_trip(&Reputation::new(7));
    let mut game = Bisection::new(9).unwrap();
    game.record(game.midpoint().unwrap(), true).unwrap();
    round_trip(&game);
    let mut two = TwoLevel::new(3, 5).unwrap();
    round_trip(&two);
    while let Some(probe) = two.midpoint() {
        round_trip(&probe);
        two.record(probe, false).unwrap();
        round_trip(&two);
    }
    round_trip(&Probe {
        level: Level::Layer,
        leaf: 3,
    });
    round_trip(&DisputedStep { step: 1, layer: 2 });
}

#[test]
fn malformed_json_is_a_clear_error() {
    // Hashes and addresses: 64 hex digits, either case.
    let upper = "AB".repeat(32);
    assert_eq!(
        serde_json::from_value::<Hash>(json!(upper)).unwrap(),
        Hash([0xab; 32])
    );
    assert!(error::<Hash>(json!("ab")).contains("64 hex digits, got 2 characters"));
    let mut bad = "0".repeat(64);
    bad.replace_range(5..6, "g");
    let e = error::<Address>(json!(bad));
    assert!(e.contains("'g' at position 5 is not a hex digit"), "{e}");
    let e = error::<Hash>(json!("é".repeat(32)));
    assert!(e.contains("not a hex digit"), "{e}");
    assert!(error::<Address>(json!(7)).contains("64 hex digits"));

    // Amounts: decimal strings (a JSON integer is accepted too).
    assert_eq!(
        serde_json::from_value::<Amount>(json!("340282366920938463463374607431768211455")).unwrap(),
        Amount(u128::MAX)
    );
    assert_eq!(
        serde_json::from_value::<Amount>(json!(42)).unwrap(),
        Amount(42)
    );
    for (v, says) in [
        (json!("12a"), "not a decimal number"),
        (json!("-5"), "not a decimal number"),
        (json!("+5"), "not a decimal number"),
        (json!(" 5"), "not a decimal number"),
        (json!("1e3"), "not a decimal number"),
        (json!(""), "empty amount"),
        (
            json!("340282366920938463463374607431768211456"),
            "does not fit in 128 bits",
        ),
        (json!(-5), "must not be negative"),
        (json!(1.5), "decimal digits"),
        (json!(null), "decimal digits"),
    ] {
        let e = error::<Amount>(v.clone());
        assert!(e.contains(says), "{v}: {e}");
    }
    // Integers stay integers.
    assert!(error::<Height>(json!("5")).contains("u64"));

    // Endpoints: short printable ASCII without spaces.
    assert!(error::<Endpoint>(json!("a b:1")).contains("not printable ASCII"));
    assert!(error::<Endpoint>(json!("x".repeat(129))).contains("more than the 128 allowed"));
    assert!(error::<Endpoint>(json!(5)).contains("string"));

    // A bisection game must be consistent.
    let e = error::<Bisection>(json!({"leaves": 9, "lo": 5, "hi": 3, "round": 0}));
    assert!(e.contains("inconsistent bisection"), "{e}");
    let e = error::<TwoLevel>(json!({
        "outer": {"leaves": 3, "lo": 0, "hi": 2, "round": 0},
        "inner_leaves": 4,
        "inner": {"leaves": 4, "lo": 0, "hi": 3, "round": 0},
    }));
    assert!(e.contains("inconsistent two-level game"), "{e}");

    // Inside a larger value the error still names the problem.
    let (c, _) = busy_chain();
    let mut v = serde_json::to_value(c.state.job(JobId(0)).unwrap()).unwrap();
    v["spec"]["stages"][1]["ops"] = json!("many");
    assert!(error::<Job>(v.clone()).contains("u64"));
    v["spec"]["stages"][1]["ops"] = json!(5);
    v["escrow"] = json!("ten");
    assert!(error::<Job>(v.clone()).contains("not a decimal number"));
    v["escrow"] = json!("10");
    v["stages"][0]["phase"] = json!({"Sleeping": {}});
    assert!(error::<Job>(v).contains("unknown variant"));
}

proptest! {
    #[test]
    fn arbitrary_strings_never_panic(s in ".{0,80}", hexish in "[0-9a-fA-Fg ]{60,68}") {
        let _ = serde_json::from_value::<Amount>(json!(s));
        let _ = serde_json::from_value::<Hash>(json!(s));
        let _ = serde_json::from_value::<Endpoint>(json!(s));
        let _ = serde_json::from_value::<Address>(json!(hexish));
    }

    #[test]
    fn mutated_job_json_never_panics(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let spec = job_spec(model(), input(), &[(2, 10), (3, 20)], 7, VerificationLevel::Sampled);
        let mut text = serde_json::to_vec(&TxBody::SubmitJob { spec }).unwrap();
        let p = pos.index(text.len());
        text[p] = byte;
        let _ = serde_json::from_slice::<TxBody>(&text);
    }
}

/// `u128` fields (a parameter value, reputation weights) are decimal strings like
/// amounts: beyond `u64::MAX` they survive text, `serde_json::Value` and serde's
/// buffered forms (`flatten`, untagged enums) that the API's typed client uses; a JSON
/// integer is still read.
#[test]
fn huge_plain_integers_round_trip_through_text() {
    let change = ParamChange {
        key: ParamKey::MinFee,
        value: u128::MAX,
    };
    let text = serde_json::to_string(&change).unwrap();
    assert!(text.contains(&format!("\"{}\"", u128::MAX)), "{text}");
    assert_eq!(serde_json::from_str::<ParamChange>(&text).unwrap(), change);
    let v = serde_json::to_value(change).unwrap();
    assert_eq!(serde_json::from_value::<ParamChange>(v).unwrap(), change);
    let number = serde_json::from_str::<ParamChange>(r#"{"key":"MinFee","value":7}"#).unwrap();
    assert_eq!(number.value, 7);
    assert!(serde_json::from_str::<ParamChange>(r#"{"key":"MinFee","value":"-7"}"#).is_err());
}

#[test]
fn generation_fields_are_optional_in_json() {
    let plain = job_spec(
        Hash([1; 32]),
        Hash([2; 32]),
        &[(2, 10), (3, 20)],
        7,
        VerificationLevel::Sampled,
    );
    // JSON written before generation jobs (no `generation`, no `step_ops` or
    // `key_ops`, no `steps`) reads as a plain job and a plain result.
    let mut v = serde_json::to_value(&plain).unwrap();
    let obj = v.as_object_mut().unwrap();
    assert_eq!(obj.remove("generation"), Some(Value::Null));
    for s in obj["stages"].as_array_mut().unwrap() {
        let s = s.as_object_mut().unwrap();
        assert_eq!(s.remove("step_ops"), Some(json!(0)));
        assert_eq!(s.remove("key_ops"), Some(json!(0)));
    }
    assert_eq!(
        serde_json::from_value::<agentic_protocol::tx::JobSpec>(v).unwrap(),
        plain
    );
    let r = Trace::honest(&Hash([1; 32]), 0, 3, Hash([2; 32])).result();
    let mut v = serde_json::to_value(r).unwrap();
    assert_eq!(v.as_object_mut().unwrap().remove("steps"), Some(json!(0)));
    assert_eq!(
        serde_json::from_value::<agentic_protocol::tx::StageResult>(v).unwrap(),
        r
    );
    // An assignment written before `CommitSession` (no `input`) reads with none.
    let a = agentic_protocol::state::Assignment {
        provider: address_of(&key(1)),
        price: Amount(3),
        deadline: Height(9),
        commitment: Some(Hash([4; 32])),
        result: None,
        input: None,
    };
    let mut v = serde_json::to_value(&a).unwrap();
    assert_eq!(
        v.as_object_mut().unwrap().remove("input"),
        Some(Value::Null)
    );
    assert_eq!(
        serde_json::from_value::<agentic_protocol::state::Assignment>(v).unwrap(),
        a
    );
    round_trip(&agentic_protocol::state::Assignment {
        input: Some(Hash([5; 32])),
        ..a
    });
    let generation = agentic_protocol::test_utils::generation_job(plain, 3, 4, 5, 6);
    round_trip(&generation);
    assert_eq!(
        serde_json::to_value(&generation).unwrap()["generation"],
        json!({"prompt_tokens": 5, "max_tokens": 6})
    );
}

//! One test per transaction kind: the effect when it applies, and every
//! rejection path — each checked to leave the state root exactly as an
//! empty block would (`TestChain::reject`).

use agentic_protocol::event::Event;
use agentic_protocol::params::{ParamChange, ParamKey};
use agentic_protocol::state::{DisputePhase, JobStatus, StagePhase};
use agentic_protocol::test_utils::{
    address_of, fast_params, job_spec, key, offer, salt_for, GenesisBuilder, TestChain, Trace,
};
use agentic_protocol::tx::{MandateTerms, SignedTx, Tx, TxBody};
use agentic_protocol::types::{
    Amount, ChainId, DisputeId, Endpoint, Hash, Height, JobId, MandateId, ProposalId,
    VerificationLevel,
};
use agentic_protocol::TxError;

const A: u64 = 1;
const B: u64 = 2;
const P1: u64 = 11;
const P2: u64 = 12;

fn model() -> Hash {
    Hash([5; 32])
}
fn input() -> Hash {
    Hash([6; 32])
}

fn chain() -> TestChain {
    let g = GenesisBuilder::new(3)
        .params(agentic_protocol::params::Params {
            dispute_timeout: 10,
            unbonding_delay: 20,
            ..fast_params()
        })
        .account(address_of(&key(A)), 100_000, 0)
        .account(address_of(&key(B)), 1_000, 0)
        .account(address_of(&key(P1)), 50_000, 20_000)
        .account(address_of(&key(P2)), 50_000, 20_000)
        .build();
    TestChain::new(&g)
}

fn with_providers() -> TestChain {
    let mut c = chain();
    c.step(
        &key(P1),
        TxBody::RegisterProvider {
            offer: offer(5, 2),
            stake: Amount::ZERO,
        },
    )
    .unwrap();
    c.step(
        &key(P2),
        TxBody::RegisterProvider {
            offer: offer(6, 2),
            stake: Amount::ZERO,
        },
    )
    .unwrap();
    c
}

#[test]
fn transfer() {
    let mut c = chain();
    let (a, b) = (address_of(&key(A)), address_of(&key(B)));
    c.step(
        &key(A),
        TxBody::Transfer {
            to: b,
            amount: Amount(300),
        },
    )
    .unwrap();
    assert_eq!(c.state.balance(&b), Amount(1_300));
    assert_eq!(c.state.balance(&a), Amount(100_000 - 301));
    assert_eq!(c.state.nonce(&a), 1);
    assert_eq!(
        c.reject(
            &key(A),
            TxBody::Transfer {
                to: b,
                amount: Amount(100_000)
            }
        ),
        TxError::InsufficientBalance {
            need: Amount(100_001),
            have: Amount(99_699)
        }
    );
    assert_eq!(
        c.reject(
            &key(A),
            TxBody::Transfer {
                to: b,
                amount: Amount(0)
            }
        ),
        TxError::ZeroAmount
    );
    assert_eq!(
        c.reject(
            &key(A),
            TxBody::Transfer {
                to: b,
                amount: Amount(u128::MAX)
            }
        ),
        TxError::Overflow
    );
    // An account that never received anything cannot pay a fee.
    assert!(matches!(
        c.reject(
            &key(99),
            TxBody::Transfer {
                to: a,
                amount: Amount(1)
            }
        ),
        TxError::InsufficientBalance { .. }
    ));
    // Self-transfer costs only the fee.
    c.step(
        &key(B),
        TxBody::Transfer {
            to: b,
            amount: Amount(100),
        },
    )
    .unwrap();
    assert_eq!(c.state.balance(&b), Amount(1_299));
}

#[test]
fn envelope_rules() {
    let mut c = chain();
    let b = address_of(&key(B));
    let tx = |nonce: u64, fee: u128, chain: u64| {
        SignedTx::sign(
            &key(A),
            Tx {
                chain_id: ChainId(chain),
                nonce,
                fee: Amount(fee),
                body: TxBody::Transfer {
                    to: b,
                    amount: Amount(1),
                },
            },
        )
    };
    for (t, err) in [
        (
            tx(0, 0, 3),
            TxError::FeeTooLow {
                fee: Amount(0),
                min: Amount(1),
            },
        ),
        (
            tx(1, 1, 3),
            TxError::BadNonce {
                expected: 0,
                got: 1,
            },
        ),
        (
            tx(0, 1, 4),
            TxError::WrongChain {
                expected: ChainId(3),
                got: ChainId(4),
            },
        ),
    ] {
        let root = c.state.root();
        let mut copy = c.state.clone();
        c.pending.push(t);
        let out = c.produce();
        assert_eq!(out.receipts, vec![Err(err)]);
        copy.apply_block(
            &agentic_protocol::Block {
                height: out.height,
                beacon: agentic_protocol::Hash::digest(
                    "agentic test beacon",
                    &[&out.height.0.to_be_bytes()],
                )
                .0,
                txs: vec![],
            },
            &c.referee,
        )
        .unwrap();
        assert_eq!(copy.root(), c.state.root());
        assert_ne!(root, c.state.root());
    }
}

#[test]
fn bond_unbond_withdraw() {
    let mut c = chain();
    let a = address_of(&key(A));
    c.step(
        &key(A),
        TxBody::Bond {
            amount: Amount(5_000),
        },
    )
    .unwrap();
    assert_eq!(c.state.account(&a).bonded, Amount(5_000));
    assert_eq!(c.state.meta().total_bonded, Amount(45_000));
    assert_eq!(
        c.reject(&key(A), TxBody::Bond { amount: Amount(0) }),
        TxError::ZeroAmount
    );
    assert!(matches!(
        c.reject(
            &key(A),
            TxBody::Bond {
                amount: Amount(1_000_000)
            }
        ),
        TxError::InsufficientBalance { .. }
    ));
    c.step(
        &key(A),
        TxBody::Unbond {
            amount: Amount(2_000),
        },
    )
    .unwrap();
    let release = c.state.height().plus(c.state.params().unbonding_delay);
    assert_eq!(c.state.account(&a).bonded, Amount(3_000));
    assert_eq!(
        c.state.unbonding().next(),
        Some((&(release, a), &Amount(2_000)))
    );
    assert!(matches!(
        c.reject(
            &key(A),
            TxBody::Unbond {
                amount: Amount(3_001)
            }
        ),
        TxError::InsufficientStake { .. }
    ));
    // Not withdrawable before the delay.
    assert_eq!(
        c.reject(&key(A), TxBody::Withdraw { amount: Amount(1) }),
        TxError::InsufficientWithdrawable {
            need: Amount(1),
            have: Amount(0)
        }
    );
    c.advance_to(release);
    assert_eq!(c.state.account(&a).withdrawable, Amount(2_000));
    let bal = c.state.balance(&a);
    c.step(
        &key(A),
        TxBody::Withdraw {
            amount: Amount(2_000),
        },
    )
    .unwrap();
    assert_eq!(c.state.balance(&a).0, bal.0 + 2_000 - 1);
    assert_eq!(
        c.reject(&key(A), TxBody::Withdraw { amount: Amount(0) }),
        TxError::ZeroAmount
    );
    assert!(c.state.total_supply_check());
}

#[test]
fn register_update_retire() {
    let mut c = chain();
    let p = address_of(&key(P1));
    assert_eq!(
        c.reject(
            &key(P1),
            TxBody::RegisterProvider {
                offer: offer(0, 1),
                stake: Amount::ZERO
            }
        ),
        TxError::InvalidOffer("price must be positive".into())
    );
    assert_eq!(
        c.reject(
            &key(P1),
            TxBody::RegisterProvider {
                offer: offer(1, 0),
                stake: Amount::ZERO
            }
        ),
        TxError::InvalidOffer("capacity must be positive".into())
    );
    // A needs 10,000 bonded: bonding 5,000 is not enough.
    assert!(matches!(
        c.reject(
            &key(A),
            TxBody::RegisterProvider {
                offer: offer(1, 1),
                stake: Amount(5_000)
            }
        ),
        TxError::InsufficientStake { .. }
    ));
    c.step(
        &key(A),
        TxBody::RegisterProvider {
            offer: offer(1, 1),
            stake: Amount(10_000),
        },
    )
    .unwrap();
    assert_eq!(c.state.account(&address_of(&key(A))).bonded, Amount(10_000));
    c.step(
        &key(P1),
        TxBody::RegisterProvider {
            offer: offer(5, 2),
            stake: Amount::ZERO,
        },
    )
    .unwrap();
    assert_eq!(
        c.reject(
            &key(P1),
            TxBody::RegisterProvider {
                offer: offer(5, 2),
                stake: Amount::ZERO
            }
        ),
        TxError::AlreadyRegistered
    );
    c.step(&key(P1), TxBody::UpdateProvider { offer: offer(9, 3) })
        .unwrap();
    assert_eq!(c.state.provider(&p).unwrap().offer.price, Amount(9));
    // The data-plane endpoint and measured speed are stored as offered.
    let mut fast = offer(9, 3);
    fast.endpoint = Endpoint::new("10.0.0.7:7400").unwrap();
    fast.speed = 2_500_000_000;
    c.step(
        &key(P1),
        TxBody::UpdateProvider {
            offer: fast.clone(),
        },
    )
    .unwrap();
    assert_eq!(c.state.provider(&p).unwrap().offer, fast);
    // An endpoint that could never have been decoded (built through the
    // public field) is refused like any malformed offer.
    for bad in [
        "has space:1".to_string(),
        "é:1".to_string(),
        "x".repeat(129),
    ] {
        let mut o = offer(9, 3);
        o.endpoint = Endpoint(bad);
        assert!(matches!(
            c.reject(&key(P1), TxBody::UpdateProvider { offer: o }),
            TxError::InvalidOffer(_)
        ));
    }
    assert_eq!(
        c.reject(&key(B), TxBody::UpdateProvider { offer: offer(9, 3) }),
        TxError::NotProvider(address_of(&key(B)))
    );
    // A registered provider keeps the minimum stake bonded.
    assert!(matches!(
        c.reject(
            &key(P1),
            TxBody::Unbond {
                amount: Amount(15_000)
            }
        ),
        TxError::InsufficientStake { .. }
    ));
    c.step(
        &key(P1),
        TxBody::Unbond {
            amount: Amount(10_000),
        },
    )
    .unwrap();
    // Open work blocks retirement.
    c.step(&key(A), TxBody::Retire).unwrap();
    let job_spec = job_spec(
        model(),
        input(),
        &[(2, 1_000_000)],
        10,
        VerificationLevel::Optimistic,
    );
    c.step(&key(B), TxBody::Retire).unwrap_err();
    c.step(&key(A), TxBody::SubmitJob { spec: job_spec })
        .unwrap();
    assert_eq!(
        c.reject(&key(P1), TxBody::Retire),
        TxError::OpenAssignments(1)
    );
    assert_eq!(
        c.reject(&key(B), TxBody::Retire),
        TxError::NotProvider(address_of(&key(B)))
    );
    // A retired provider may register again and keeps its record.
    c.step(
        &key(A),
        TxBody::RegisterProvider {
            offer: offer(2, 1),
            stake: Amount::ZERO,
        },
    )
    .unwrap();
    assert!(!c.state.provider(&address_of(&key(A))).unwrap().retired);
}

/// Providers registered at genesis: in the state (and its root) from height 0,
/// in the offer index, matched by the first job like providers registered by
/// transaction; a genesis provider without the minimum bond, listed twice, or
/// with an offer `RegisterProvider` refuses is refused with a typed error.
#[test]
fn genesis_providers() {
    use agentic_protocol::{GenesisError, State};
    let base = || {
        GenesisBuilder::new(3)
            .params(fast_params())
            .account(address_of(&key(A)), 100_000, 0)
            .account(address_of(&key(P1)), 50_000, 20_000)
            .account(address_of(&key(P2)), 50_000, 0)
    };
    let g = base().provider(address_of(&key(P1)), offer(5, 2)).build();
    let mut c = TestChain::new(&g);
    let p = c.state.provider(&address_of(&key(P1))).expect("registered");
    assert_eq!(
        (p.offer.clone(), p.retired, p.open),
        (offer(5, 2), false, 0)
    );
    assert_eq!(c.state.root(), c.state.full_root());
    c.state.check_offer_index().unwrap();
    assert_ne!(
        c.state.root(),
        TestChain::new(&base().build()).state.root(),
        "the provider is in the genesis root"
    );
    // JSON: the section round-trips, and a genesis without providers has no key.
    let json = serde_json::to_string(&g).unwrap();
    assert_eq!(
        serde_json::from_str::<agentic_protocol::Genesis>(&json).unwrap(),
        g
    );
    assert!(!serde_json::to_string(&base().build())
        .unwrap()
        .contains("providers"));
    // The first job is matched to it.
    let spec = job_spec(
        model(),
        input(),
        &[(2, 1_000_000)],
        10,
        VerificationLevel::Optimistic,
    );
    c.step(&key(A), TxBody::SubmitJob { spec }).unwrap();
    let j = c.state.job(JobId(0)).unwrap();
    assert_eq!(
        j.stages[0].slots[0].assignment.as_ref().map(|a| a.provider),
        Some(address_of(&key(P1)))
    );
    // Refusals.
    let err = |g: agentic_protocol::Genesis| State::new(&g).err().expect("refused");
    let p2 = address_of(&key(P2));
    assert_eq!(
        err(base().provider(p2, offer(5, 2)).build()),
        GenesisError::ProviderStake(p2)
    );
    let stranger = address_of(&key(99));
    assert_eq!(
        err(base().provider(stranger, offer(5, 2)).build()),
        GenesisError::ProviderStake(stranger)
    );
    let p1 = address_of(&key(P1));
    assert_eq!(
        err(base()
            .provider(p1, offer(5, 2))
            .provider(p1, offer(6, 2))
            .build()),
        GenesisError::DuplicateProvider(p1)
    );
    assert_eq!(
        err(base().provider(p1, offer(0, 2)).build()),
        GenesisError::ProviderOffer(p1)
    );
}

#[test]
fn grant_and_revoke_mandate() {
    let mut c = chain();
    let terms = |agent, total: u128, per: u128, expiry: u64| MandateTerms {
        agent,
        total_cap: Amount(total),
        per_job_cap: Amount(per),
        max_unit_price: Amount(10),
        expiry: Height(expiry),
        min_verification: VerificationLevel::Optimistic,
    };
    let a = address_of(&key(A));
    let b = address_of(&key(B));
    for (t, err) in [
        (
            terms(a, 10, 5, 50),
            TxError::InvalidMandate("agent must differ from principal".into()),
        ),
        (
            terms(b, 10, 20, 50),
            TxError::InvalidMandate("per-job cap exceeds total cap".into()),
        ),
        (
            terms(b, 0, 0, 50),
            TxError::InvalidMandate("caps must be positive".into()),
        ),
        (
            terms(b, 10, 5, 0),
            TxError::InvalidMandate("expiry is in the past".into()),
        ),
    ] {
        assert_eq!(c.reject(&key(A), TxBody::GrantMandate { terms: t }), err);
    }
    c.step(
        &key(A),
        TxBody::GrantMandate {
            terms: terms(b, 10, 5, 50),
        },
    )
    .unwrap();
    let m = c.state.mandate(MandateId(0)).unwrap();
    assert_eq!((m.principal, m.spent, m.revoked), (a, Amount::ZERO, false));
    assert_eq!(
        c.reject(
            &key(A),
            TxBody::RevokeMandate {
                mandate: MandateId(7)
            }
        ),
        TxError::UnknownMandate(MandateId(7))
    );
    c.step(
        &key(A),
        TxBody::RevokeMandate {
            mandate: MandateId(0),
        },
    )
    .unwrap();
    assert_eq!(
        c.reject(
            &key(A),
            TxBody::RevokeMandate {
                mandate: MandateId(0)
            }
        ),
        TxError::MandateRevoked(MandateId(0))
    );
}

#[test]
fn submit_job_validation() {
    let mut c = with_providers();
    let base = || {
        job_spec(
            model(),
            input(),
            &[(2, 1_000_000), (2, 1_000_000)],
            10,
            VerificationLevel::Optimistic,
        )
    };
    type Edit = Box<dyn Fn(&mut agentic_protocol::tx::JobSpec)>;
    let cases: Vec<(Edit, TxError)> = vec![
        (
            Box::new(|s| s.stages.clear()),
            TxError::InvalidJob("stage count".into()),
        ),
        (
            Box::new(|s| s.stages[0].layers = 0),
            TxError::InvalidJob("stage layer count".into()),
        ),
        (
            Box::new(|s| s.stages[1].ops = 0),
            TxError::InvalidJob("stage ops must be positive".into()),
        ),
        (
            Box::new(|s| s.stages[1].first_layer = 3),
            TxError::InvalidJob("stages must be contiguous".into()),
        ),
        (
            Box::new(|s| s.requirements.replicas = 0),
            TxError::InvalidJob("replicas".into()),
        ),
        (
            Box::new(|s| s.deadline = 0),
            TxError::InvalidJob("deadline".into()),
        ),
        (
            Box::new(|s| s.max_price = Amount(0)),
            TxError::InvalidJob("max price must be positive".into()),
        ),
        (
            Box::new(|s| s.requirements.min_reputation_ppm = 2_000_000),
            TxError::InvalidJob("min reputation above 1,000,000 ppm".into()),
        ),
        (
            Box::new(|s| s.placement = vec![address_of(&key(P1))]),
            TxError::InvalidJob("placement must name one provider per stage".into()),
        ),
        (
            Box::new(|s| s.placement = vec![address_of(&key(P1)); 2]),
            TxError::InvalidJob("placement names a provider twice".into()),
        ),
        (
            Box::new(|s| s.stages.iter_mut().for_each(|x| x.ops = 1)),
            TxError::InvalidJob("escrow rounds to zero".into()),
        ),
        (
            Box::new(|s| s.mandate = Some(MandateId(4))),
            TxError::UnknownMandate(MandateId(4)),
        ),
        (
            Box::new(|s| s.placement = vec![address_of(&key(P1)), address_of(&key(B))]),
            TxError::PlacementUnqualified {
                stage: 1,
                provider: address_of(&key(B)),
            },
        ),
    ];
    for (edit, err) in cases {
        let mut s = base();
        edit(&mut s);
        assert_eq!(c.reject(&key(A), TxBody::SubmitJob { spec: s }), err);
    }
    let mut big = base();
    big.stages[0].ops = 1_000_000_000_000;
    assert!(matches!(
        c.reject(&key(A), TxBody::SubmitJob { spec: big }),
        TxError::InsufficientBalance { .. }
    ));
    c.step(&key(A), TxBody::SubmitJob { spec: base() }).unwrap();
    let j = c.state.job(JobId(0)).unwrap();
    assert_eq!(j.escrow, Amount(20));
    assert!(j
        .stages
        .iter()
        .all(|s| matches!(s.phase, StagePhase::Running { .. })));
}

#[test]
fn commit_and_reveal_rules() {
    let mut c = with_providers();
    let spec = job_spec(
        model(),
        input(),
        &[(3, 1_000_000)],
        10,
        VerificationLevel::Optimistic,
    );
    c.step(&key(A), TxBody::SubmitJob { spec }).unwrap();
    let job = JobId(0);
    let p1 = address_of(&key(P1));
    let t = Trace::honest(&model(), 0, 3, input());
    let salt = salt_for(&p1, job, 0);
    let commitment = t.result().commitment(job, 0, &salt, &p1);
    let commit = TxBody::CommitResult {
        job,
        stage: 0,
        commitment,
    };
    let reveal = |r, salt| TxBody::RevealResult {
        job,
        stage: 0,
        result: r,
        salt,
    };
    assert_eq!(c.reject(&key(P2), commit.clone()), TxError::NotAssigned);
    assert_eq!(
        c.reject(
            &key(P1),
            TxBody::CommitResult {
                job: JobId(9),
                stage: 0,
                commitment
            }
        ),
        TxError::UnknownJob(JobId(9))
    );
    assert_eq!(
        c.reject(
            &key(P1),
            TxBody::CommitResult {
                job,
                stage: 3,
                commitment
            }
        ),
        TxError::UnknownStage { job, stage: 3 }
    );
    c.step(&key(P1), commit.clone()).unwrap();
    assert_eq!(c.reject(&key(P1), commit), TxError::AlreadyCommitted);
    assert_eq!(
        c.reject(&key(P1), reveal(t.result(), Hash([0; 32]))),
        TxError::CommitmentMismatch
    );
    let wrong = Trace::honest(&model(), 0, 3, Hash([1; 32]));
    let wsalt = salt;
    let mut c2 = with_providers();
    let spec = job_spec(
        model(),
        input(),
        &[(3, 1_000_000)],
        10,
        VerificationLevel::Optimistic,
    );
    c2.step(&key(A), TxBody::SubmitJob { spec }).unwrap();
    c2.step(
        &key(P1),
        TxBody::CommitResult {
            job,
            stage: 0,
            commitment: wrong.result().commitment(job, 0, &wsalt, &p1),
        },
    )
    .unwrap();
    // A result built on another input than the job's opens as evidence of a
    // broken chain: accepted, and its provider slashed and excluded.
    let bonded = c2.state.account(&p1).bonded;
    c2.step(&key(P1), reveal(wrong.result(), wsalt)).unwrap();
    let slash = bonded.mul_ppm(c2.state.params().slash_ppm);
    assert!(slash.0 > 0);
    assert_eq!(c2.state.account(&p1).bonded.0, bonded.0 - slash.0);
    assert!(c2.state.job(job).unwrap().excluded.contains(&p1));
    c.step(&key(P1), reveal(t.result(), salt)).unwrap();
    assert_eq!(
        c.reject(&key(P1), reveal(t.result(), salt)),
        TxError::WrongPhase("running".into())
    );
    // Deadlines: a late commit is refused.
    let mut c3 = with_providers();
    let spec = job_spec(
        model(),
        input(),
        &[(3, 1_000_000)],
        10,
        VerificationLevel::Optimistic,
    );
    c3.step(&key(A), TxBody::SubmitJob { spec }).unwrap();
    let deadline = c3.state.job(job).unwrap().stages[0].slots[0]
        .assignment
        .as_ref()
        .unwrap()
        .deadline;
    c3.advance_to(deadline);
    let late = TxBody::CommitResult {
        job,
        stage: 0,
        commitment,
    };
    // Transactions of the block after the deadline come before its re-route step.
    assert_eq!(
        c3.reject(&key(P1), late.clone()),
        TxError::DeadlinePassed(deadline)
    );
    // After that step the slot belongs to someone else.
    assert_eq!(c3.reject(&key(P1), late), TxError::NotAssigned);
}

#[test]
fn reveal_waits_for_every_replica() {
    let mut c = with_providers();
    let mut spec = job_spec(
        model(),
        input(),
        &[(3, 1_000_000)],
        10,
        VerificationLevel::Optimistic,
    );
    spec.requirements.replicas = 2;
    c.step(&key(A), TxBody::SubmitJob { spec }).unwrap();
    let job = JobId(0);
    let p1 = address_of(&key(P1));
    let t = Trace::honest(&model(), 0, 3, input());
    let salt = salt_for(&p1, job, 0);
    c.step(
        &key(P1),
        TxBody::CommitResult {
            job,
            stage: 0,
            commitment: t.result().commitment(job, 0, &salt, &p1),
        },
    )
    .unwrap();
    assert_eq!(
        c.reject(
            &key(P1),
            TxBody::RevealResult {
                job,
                stage: 0,
                result: t.result(),
                salt
            }
        ),
        TxError::RevealTooEarly
    );
}

#[test]
fn audit_report_rules() {
    let mut c = with_providers();
    let spec = job_spec(
        model(),
        input(),
        &[(3, 1_000_000)],
        10,
        VerificationLevel::Audited,
    );
    c.step(&key(A), TxBody::SubmitJob { spec }).unwrap();
    let job = JobId(0);
    let t = Trace::honest(&model(), 0, 3, input());
    let (p1, p2) = (address_of(&key(P1)), address_of(&key(P2)));
    let report = |t: &Trace| TxBody::AuditReport {
        job,
        stage: 0,
        result: t.result(),
        salt: salt_for(&p2, job, 0),
    };
    let commit = |t: &Trace| TxBody::AuditCommit {
        job,
        stage: 0,
        commitment: t.result().commitment(job, 0, &salt_for(&p2, job, 0), &p2),
    };
    assert_eq!(
        c.reject(&key(P2), report(&t)),
        TxError::WrongPhase("auditing".into())
    );
    assert_eq!(c.reject(&key(P2), commit(&t)), TxError::NotAuditor);
    // P1's commitment is final: the block's beacon draws P2 (the only other
    // qualified provider) to audit, before anyone reveals.
    c.step(
        &key(P1),
        TxBody::CommitResult {
            job,
            stage: 0,
            commitment: t.result().commitment(job, 0, &salt_for(&p1, job, 0), &p1),
        },
    )
    .unwrap();
    assert_eq!(c.auditor_of(job, 0), Some(p2));
    let reveal = TxBody::RevealResult {
        job,
        stage: 0,
        result: t.result(),
        salt: salt_for(&p1, job, 0),
    };
    assert_eq!(c.reject(&key(P1), reveal.clone()), TxError::RevealTooEarly);
    assert_eq!(c.reject(&key(P1), commit(&t)), TxError::NotAuditor);
    c.step(&key(P2), commit(&t)).unwrap();
    assert_eq!(
        c.reject(&key(P2), commit(&t)),
        TxError::AuditAlreadyCommitted
    );
    c.step(&key(P1), reveal).unwrap();
    assert!(matches!(
        c.state.job(job).unwrap().stages[0].phase,
        StagePhase::Auditing { .. }
    ));
    assert_eq!(c.reject(&key(P1), report(&t)), TxError::NotAuditor);
    // A report must open the auditor's own commitment: no copying the
    // revealed result after the fact.
    let other = Trace::honest(&model(), 0, 3, Hash([9; 32]));
    assert_eq!(
        c.reject(&key(P2), report(&other)),
        TxError::AuditCommitmentMismatch
    );
    let before = c.state.balance(&p2);
    c.step(&key(P2), report(&t)).unwrap();
    // Agreement pays the audit fee: 1 mega-op × 6.
    assert_eq!(c.state.balance(&p2).0, before.0 + 6 - 1);
    assert!(matches!(
        c.state.job(job).unwrap().stages[0].phase,
        StagePhase::Challengeable { .. }
    ));
}

#[test]
fn bisect_rules() {
    let mut c = with_providers();
    let spec = job_spec(
        model(),
        input(),
        &[(6, 1_000_000)],
        10,
        VerificationLevel::Audited,
    );
    c.step(&key(A), TxBody::SubmitJob { spec }).unwrap();
    let job = JobId(0);
    let honest = Trace::honest(&model(), 0, 6, input());
    let bad = Trace::cheating(&model(), 0, 6, input(), 4);
    c.deliver(&key(P1), job, 0, &bad).unwrap();
    c.audit_report(job, 0).unwrap();
    let d = DisputeId(0);
    let mid = c.state.dispute(d).unwrap().game.midpoint().unwrap();
    let (leaf, proof) = honest.open(mid).unwrap();
    let mv = |leaf, proof| TxBody::Bisect {
        dispute: d,
        leaf,
        proof,
    };
    assert_eq!(
        c.reject(
            &key(P2),
            TxBody::Bisect {
                dispute: DisputeId(5),
                leaf,
                proof: proof.clone()
            }
        ),
        TxError::UnknownDispute(DisputeId(5))
    );
    c.step(&key(P2), mv(leaf, proof.clone())).unwrap();
    assert_eq!(c.reject(&key(P2), mv(leaf, proof)), TxError::AlreadyMoved);
    // The defendant's leaf must open against its own root.
    let (bl, bp) = bad.open(mid).unwrap();
    assert_eq!(
        c.reject(&key(P1), mv(Hash([9; 32]), bp.clone())),
        TxError::BadProof { index: mid }
    );
    c.step(&key(P1), mv(bl, bp)).unwrap();
    let dd = c.state.dispute(d).unwrap().clone();
    assert_eq!(dd.game.round(), 1);
    let errs = c.play_dispute(d, (&key(P1), &bad), (&key(P2), &honest));
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(c.state.dispute(d).unwrap().phase, DisputePhase::Resolved);
    let (leaf, proof) = honest.open(1).unwrap();
    assert_eq!(c.reject(&key(P2), mv(leaf, proof)), TxError::DisputeNotOpen);
}

#[test]
fn propose_and_vote_rules() {
    let mut c = chain();
    let change = ParamChange {
        key: ParamKey::ChallengeBond,
        value: 7,
    };
    assert!(matches!(
        c.reject(&key(A), TxBody::Propose { change }),
        TxError::InsufficientStake { .. }
    ));
    assert_eq!(
        c.reject(
            &key(P1),
            TxBody::Propose {
                change: ParamChange {
                    key: ParamKey::UnbondingDelay,
                    value: 1
                }
            }
        ),
        TxError::InvalidParam(agentic_protocol::params::ParamError::VotingOutlastsUnbonding)
    );
    c.step(&key(P1), TxBody::Propose { change }).unwrap();
    let p = ProposalId(0);
    assert_eq!(
        c.reject(
            &key(P1),
            TxBody::Vote {
                proposal: ProposalId(3),
                approve: true
            }
        ),
        TxError::UnknownProposal(ProposalId(3))
    );
    c.step(
        &key(P1),
        TxBody::Vote {
            proposal: p,
            approve: true,
        },
    )
    .unwrap();
    assert_eq!(
        c.state
            .vote_record(p, &address_of(&key(P1)))
            .unwrap()
            .weight,
        Amount(20_000)
    );
    let ends = c.state.proposal(p).unwrap().voting_ends;
    c.advance_to(ends);
    assert_eq!(
        c.reject(
            &key(P2),
            TxBody::Vote {
                proposal: p,
                approve: false
            }
        ),
        TxError::VotingClosed
    );
}

/// Applies `body` from `key` alone in a block; returns the block's events
/// after checking the transaction applied and the supply is conserved.
fn apply(c: &mut TestChain, k: u64, body: TxBody) -> Vec<Event> {
    c.push(&key(k), body);
    let out = c.produce();
    assert_eq!(out.receipts, vec![Ok(())]);
    assert!(c.state.total_supply_check());
    out.events.into_iter().map(|e| e.event).collect()
}

fn provider_load(c: &TestChain, seed: u64) -> (u32, u32) {
    let p = c.state.provider(&address_of(&key(seed))).unwrap();
    (p.active, p.open)
}

#[test]
fn cancel_job_while_matching_refunds_the_whole_escrow() {
    // No provider registered: the job waits in matching.
    let mut c = chain();
    let a = address_of(&key(A));
    let before = c.state.balance(&a);
    let spec = job_spec(
        model(),
        input(),
        &[(2, 1_000_000), (3, 2_000_000)],
        10,
        VerificationLevel::Sampled,
    );
    c.step(&key(A), TxBody::SubmitJob { spec }).unwrap();
    let job = JobId(0);
    // (1 + 2) mega-ops × 10 × (1 replica + 1 auditor's fee).
    let escrow = c.state.job(job).unwrap().escrow;
    assert_eq!(escrow, Amount(60));
    assert_eq!(
        c.reject(&key(A), TxBody::CancelJob { job: JobId(9) }),
        TxError::UnknownJob(JobId(9))
    );
    let events = apply(&mut c, A, TxBody::CancelJob { job });
    assert_eq!(
        events,
        vec![Event::JobCancelled {
            job,
            refund: escrow
        }]
    );
    let j = c.state.job(job).unwrap();
    assert_eq!(j.status, JobStatus::Cancelled);
    assert_eq!(j.escrow, Amount::ZERO);
    assert!(j.stages.iter().all(|s| s.phase == StagePhase::Cancelled));
    // Everything back but the two fees (SubmitJob: min_fee + 2 stages ×
    // (1 replica + 1 auditor) slots = 5; CancelJob: 1).
    assert_eq!(c.state.balance(&a).0, before.0 - 6);
    // It left the matching queue: a provider that registers now gets nothing.
    apply(
        &mut c,
        P1,
        TxBody::RegisterProvider {
            offer: offer(5, 2),
            stake: Amount::ZERO,
        },
    );
    c.advance(2);
    let j = c.state.job(job).unwrap();
    assert!(j
        .stages
        .iter()
        .all(|s| s.slots.iter().all(|x| x.assignment.is_none())));
    assert_eq!(provider_load(&c, P1), (0, 0));
    // Cancelling twice is refused.
    assert_eq!(
        c.reject(&key(A), TxBody::CancelJob { job }),
        TxError::JobNotActive(job)
    );
}

#[test]
fn cancel_job_after_assignment_releases_the_providers_without_penalty() {
    let mut c = chain();
    // Each provider takes one assignment at a time.
    for (seed, price) in [(P1, 5), (P2, 6)] {
        apply(
            &mut c,
            seed,
            TxBody::RegisterProvider {
                offer: offer(price, 1),
                stake: Amount::ZERO,
            },
        );
    }
    let (p1, p2) = (address_of(&key(P1)), address_of(&key(P2)));
    let two_stages = job_spec(
        model(),
        input(),
        &[(2, 1_000_000), (2, 1_000_000)],
        10,
        VerificationLevel::Optimistic,
    );
    apply(&mut c, A, TxBody::SubmitJob { spec: two_stages });
    let first = JobId(0);
    assert!(c
        .state
        .job(first)
        .unwrap()
        .stages
        .iter()
        .all(|s| matches!(s.phase, StagePhase::Running { .. })));
    assert_eq!(provider_load(&c, P1), (1, 1));
    assert_eq!(provider_load(&c, P2), (1, 1));
    // A second job waits: both providers are full.
    let one_stage = job_spec(
        model(),
        input(),
        &[(3, 1_000_000)],
        10,
        VerificationLevel::Optimistic,
    );
    apply(&mut c, A, TxBody::SubmitJob { spec: one_stage });
    let second = JobId(1);
    assert!(matches!(
        c.state.job(second).unwrap().stages[0].phase,
        StagePhase::Matching { .. }
    ));
    let bonded = (c.state.account(&p1).bonded, c.state.account(&p2).bonded);
    let reputation = (
        c.state.provider(&p1).unwrap().reputation,
        c.state.provider(&p2).unwrap().reputation,
    );
    let a = address_of(&key(A));
    let before = c.state.balance(&a);

    let events = apply(&mut c, A, TxBody::CancelJob { job: first });
    assert!(events.contains(&Event::JobCancelled {
        job: first,
        refund: Amount(20)
    }));
    assert_eq!(c.state.balance(&a).0, before.0 + 20 - 1);
    assert_eq!(c.state.job(first).unwrap().status, JobStatus::Cancelled);
    // Released at once: the waiting job got the cheapest one in the same block.
    assert!(events.iter().any(|e| matches!(
        e,
        Event::StageAssigned { job, provider, .. } if *job == second && *provider == p1
    )));
    assert_eq!(provider_load(&c, P1), (1, 1));
    assert_eq!(provider_load(&c, P2), (0, 0));
    // No penalty, no record of failure.
    assert_eq!(
        (c.state.account(&p1).bonded, c.state.account(&p2).bonded),
        bonded
    );
    assert_eq!(
        (
            c.state.provider(&p1).unwrap().reputation,
            c.state.provider(&p2).unwrap().reputation
        ),
        reputation
    );
    // The cancelled job's old deadlines pass without effect.
    c.deliver(&key(P1), second, 0, &Trace::honest(&model(), 0, 3, input()))
        .unwrap();
    let events: Vec<Event> = c
        .advance(12)
        .into_iter()
        .flat_map(|o| o.events.into_iter().map(|e| e.event))
        .collect();
    assert!(!events
        .iter()
        .any(|e| matches!(e, Event::DeadlineMissed { .. })));
    assert_eq!(c.state.account(&p2).bonded, bonded.1);
    assert_eq!(c.state.job(second).unwrap().status, JobStatus::Completed);
    assert_eq!(provider_load(&c, P1), (0, 0));
    assert!(c.state.total_supply_check());
}

#[test]
fn cancel_job_is_refused_once_work_is_committed_and_to_others() {
    let mut c = with_providers();
    let spec = job_spec(
        model(),
        input(),
        &[(2, 1_000_000), (2, 1_000_000)],
        10,
        VerificationLevel::Optimistic,
    );
    c.step(&key(A), TxBody::SubmitJob { spec }).unwrap();
    let job = JobId(0);
    // Only the requester may cancel: not another account, not a provider.
    for other in [B, P1] {
        assert_eq!(
            c.reject(&key(other), TxBody::CancelJob { job }),
            TxError::NotRequester
        );
    }
    // P1 commits stage 0: from now on the job runs to its end.
    let p1 = address_of(&key(P1));
    let t = Trace::honest(&model(), 0, 2, input());
    let salt = salt_for(&p1, job, 0);
    c.step(
        &key(P1),
        TxBody::CommitResult {
            job,
            stage: 0,
            commitment: t.result().commitment(job, 0, &salt, &p1),
        },
    )
    .unwrap();
    assert_eq!(
        c.reject(&key(A), TxBody::CancelJob { job }),
        TxError::JobStarted
    );
    // Past running (revealed, in its challenge window): still refused.
    c.step(
        &key(P1),
        TxBody::RevealResult {
            job,
            stage: 0,
            result: t.result(),
            salt,
        },
    )
    .unwrap();
    assert!(matches!(
        c.state.job(job).unwrap().stages[0].phase,
        StagePhase::Challengeable { .. }
    ));
    assert_eq!(
        c.reject(&key(A), TxBody::CancelJob { job }),
        TxError::JobStarted
    );
    assert_eq!(c.state.job(job).unwrap().status, JobStatus::Active);
}

#[test]
fn cancel_job_under_a_mandate_gives_the_mandate_its_room_back() {
    let mut c = with_providers();
    let (a, b) = (address_of(&key(A)), address_of(&key(B)));
    c.step(
        &key(A),
        TxBody::GrantMandate {
            terms: MandateTerms {
                agent: b,
                total_cap: Amount(1_000),
                per_job_cap: Amount(500),
                max_unit_price: Amount(10),
                expiry: Height(1_000),
                min_verification: VerificationLevel::Optimistic,
            },
        },
    )
    .unwrap();
    let mandate = MandateId(0);
    let (a_before, b_before) = (c.state.balance(&a), c.state.balance(&b));
    let mut spec = job_spec(
        model(),
        input(),
        &[(2, 3_000_000)],
        10,
        VerificationLevel::Optimistic,
    );
    spec.mandate = Some(mandate);
    c.step(&key(B), TxBody::SubmitJob { spec }).unwrap();
    let job = JobId(0);
    let escrow = c.state.job(job).unwrap().escrow;
    assert_eq!(escrow, Amount(30));
    assert_eq!(c.state.mandate(mandate).unwrap().spent, escrow);
    assert_eq!(c.state.balance(&a).0, a_before.0 - 30);
    assert_eq!(provider_load(&c, P1), (1, 1));
    // The principal pays for the job but did not submit it.
    assert_eq!(
        c.reject(&key(A), TxBody::CancelJob { job }),
        TxError::NotRequester
    );
    let events = apply(&mut c, B, TxBody::CancelJob { job });
    assert!(events.contains(&Event::JobCancelled {
        job,
        refund: escrow
    }));
    assert_eq!(c.state.mandate(mandate).unwrap().spent, Amount::ZERO);
    assert_eq!(c.state.balance(&a), a_before);
    // The agent paid the two fees (SubmitJob: min_fee + one slot).
    assert_eq!(c.state.balance(&b).0, b_before.0 - 3);
    assert_eq!(provider_load(&c, P1), (0, 0));
}

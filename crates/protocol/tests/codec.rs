//! The transaction decoder never panics on arbitrary bytes, rejects
//! trailing data, and round-trips every transaction kind.

use agentic_protocol::params::{ParamChange, ParamKey};
use agentic_protocol::test_utils::{address_of, generation_job, job_spec, key, offer, Trace};
use agentic_protocol::tx::{JobSpec, MandateTerms, Offer, SignedTx, StageResult, Tx, TxBody};
use agentic_protocol::types::{
    limits, Amount, ChainId, DisputeId, Endpoint, Hash, Height, JobId, MandateId, ProposalId,
    VerificationLevel,
};
use commonware_codec::{Copying, DecodeExt, Encode};
use proptest::prelude::*;

fn samples() -> Vec<TxBody> {
    let t = Trace::honest(&Hash([1; 32]), 0, 6, Hash([2; 32]));
    let (leaf, proof) = t.open(3).unwrap();
    let mut spec = job_spec(
        Hash([1; 32]),
        Hash([2; 32]),
        &[(3, 10), (3, 20)],
        7,
        VerificationLevel::Sampled,
    );
    spec.mandate = Some(MandateId(3));
    spec.placement = vec![address_of(&key(1)), address_of(&key(2))];
    spec.requirements.regions = vec![agentic_protocol::types::Region(4)];
    vec![
        TxBody::Transfer {
            to: address_of(&key(9)),
            amount: Amount(5),
        },
        TxBody::Bond { amount: Amount(1) },
        TxBody::Unbond { amount: Amount(2) },
        TxBody::Withdraw { amount: Amount(3) },
        TxBody::RegisterProvider {
            offer: offer(4, 2),
            stake: Amount(9),
        },
        TxBody::UpdateProvider {
            offer: Offer {
                endpoint: Endpoint::new("provider-7.example.net:7400").unwrap(),
                speed: 3_000_000_000,
                ..offer(5, 3)
            },
        },
        TxBody::Retire,
        TxBody::GrantMandate {
            terms: MandateTerms {
                agent: address_of(&key(3)),
                total_cap: Amount(10),
                per_job_cap: Amount(5),
                max_unit_price: Amount(2),
                expiry: Height(100),
                min_verification: VerificationLevel::Audited,
            },
        },
        TxBody::RevokeMandate {
            mandate: MandateId(1),
        },
        TxBody::SubmitJob { spec },
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
            provider: agentic_protocol::Address([15; 32]),
        },
        TxBody::Propose {
            change: ParamChange {
                key: ParamKey::QuorumPpm,
                value: 400_000,
            },
        },
        TxBody::Vote {
            proposal: ProposalId(5),
            approve: true,
        },
        TxBody::CancelJob { job: JobId(6) },
        TxBody::SubmitJob {
            spec: generation_job(
                job_spec(
                    Hash([1; 32]),
                    Hash([2; 32]),
                    &[(3, 10), (3, 20)],
                    7,
                    VerificationLevel::Audited,
                ),
                5,
                u64::MAX,
                12,
                u32::MAX,
            ),
        },
        TxBody::RevealResult {
            job: JobId(7),
            stage: 1,
            result: StageResult {
                steps: 0x0102_0304,
                ..t.result()
            },
            salt: Hash([15; 32]),
        },
    ]
}

#[test]
fn generation_fields_round_trip_and_decode_strictly() {
    let spec = generation_job(
        job_spec(
            Hash([1; 32]),
            Hash([2; 32]),
            &[(3, 10), (3, 20)],
            7,
            VerificationLevel::Sampled,
        ),
        9,
        11,
        13,
        17,
    );
    let bytes = spec.encode();
    assert_eq!(JobSpec::decode(bytes.clone()).unwrap(), spec);
    // A plain job encodes `generation: None` as one zero byte: dropping the
    // option's tag or giving it an unknown value is an error.
    let plain = job_spec(
        Hash([1; 32]),
        Hash([2; 32]),
        &[(3, 10)],
        7,
        VerificationLevel::Sampled,
    );
    let plain_bytes = plain.encode().to_vec();
    assert_eq!(plain_bytes.last(), Some(&0));
    assert!(JobSpec::decode(Copying(&plain_bytes[..plain_bytes.len() - 1])).is_err());
    let mut bad_tag = plain_bytes.clone();
    *bad_tag.last_mut().unwrap() = 2;
    assert!(JobSpec::decode(Copying(&bad_tag[..])).is_err());
    // Truncated anywhere inside the generation fields: an error, no panic.
    for cut in 0..bytes.len() {
        assert!(JobSpec::decode(Copying(&bytes[..cut])).is_err());
    }
    let r = StageResult {
        steps: 42,
        ..Trace::honest(&Hash([1; 32]), 0, 3, Hash([2; 32])).result()
    };
    let rb = r.encode();
    assert_eq!(rb.len(), 3 * 32 + 4);
    assert_eq!(StageResult::decode(rb.clone()).unwrap(), r);
    // Steps are part of the commitment.
    let who = address_of(&key(1));
    let other = StageResult { steps: 43, ..r };
    assert_ne!(
        r.commitment(JobId(1), 0, &Hash([3; 32]), &who),
        other.commitment(JobId(1), 0, &Hash([3; 32]), &who)
    );
}

fn signed(body: TxBody) -> SignedTx {
    SignedTx::sign(
        &key(1),
        Tx {
            chain_id: ChainId(1),
            nonce: 7,
            fee: Amount(2),
            body,
        },
    )
}

#[test]
fn every_kind_round_trips_and_verifies() {
    for body in samples() {
        let tx = signed(body);
        let bytes = tx.to_bytes();
        let back = SignedTx::from_bytes(&bytes).expect("decodes");
        assert_eq!(back, tx);
        assert_eq!(back.tx(), tx.tx());
        assert!(back.verify());
        // Trailing bytes and truncation are errors.
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(SignedTx::from_bytes(&longer).is_err());
        assert!(SignedTx::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    }
    let all: Vec<_> = samples().into_iter().map(signed).collect();
    assert!(agentic_protocol::verify_batch(&all).iter().all(|ok| *ok));
}

fn decode_offer(bytes: &[u8]) -> Result<Offer, commonware_codec::Error> {
    Offer::decode(Copying(bytes))
}

/// The canonical encoding of an offer whose endpoint bytes are `raw`
/// (length prefix included), bypassing the checks a real `Endpoint` has.
fn offer_bytes_with_endpoint(raw: &[u8]) -> Vec<u8> {
    let o = offer(4, 2);
    let mut bytes = o.encode().to_vec();
    // The empty endpoint is the 4-byte length before the 8-byte speed.
    let at = bytes.len() - 8 - 4;
    assert_eq!(&bytes[at..at + 4], &[0, 0, 0, 0]);
    let mut field = (raw.len() as u32).to_be_bytes().to_vec();
    field.extend_from_slice(raw);
    bytes.splice(at..at + 4, field);
    bytes
}

#[test]
fn endpoints_decode_only_when_short_printable_ascii() {
    // A good one round-trips, inside an offer and alone.
    let good = Endpoint::new("[2001:db8::1]:7400").unwrap();
    let o = Offer {
        endpoint: good.clone(),
        speed: 7,
        ..offer(4, 2)
    };
    assert_eq!(Offer::decode(o.encode()).unwrap(), o);
    assert_eq!(Endpoint::decode(good.encode()).unwrap(), good);
    let at_limit = "a".repeat(limits::MAX_ENDPOINT);
    let decoded = decode_offer(&offer_bytes_with_endpoint(at_limit.as_bytes())).unwrap();
    assert_eq!(decoded.endpoint.as_str(), at_limit);
    // Longer than the limit, a space, a control byte, non-ASCII UTF-8 and
    // invalid UTF-8: codec errors, never a panic.
    let too_long = "a".repeat(limits::MAX_ENDPOINT + 1);
    for raw in [
        too_long.as_bytes(),
        b"host name:1".as_slice(),
        b"host:1\n".as_slice(),
        "h\u{f6}st:1".as_bytes(),
        b"host:\xff".as_slice(),
    ] {
        let bytes = offer_bytes_with_endpoint(raw);
        assert!(
            decode_offer(&bytes).is_err(),
            "{:?} decoded",
            String::from_utf8_lossy(raw)
        );
    }
    // A length prefix claiming more than the limit is refused before reading.
    let mut huge = offer(4, 2).encode().to_vec();
    let at = huge.len() - 12;
    huge[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(decode_offer(&huge).is_err());
    // The constructor applies the same rules.
    assert!(Endpoint::new("").is_ok());
    assert!(Endpoint::new("a b:1").is_err());
    assert!(Endpoint::new(too_long).is_err());
    assert!(Endpoint::new("ü:1").is_err());
}

#[test]
fn batch_verification_finds_the_bad_signature() {
    let mut txs: Vec<_> = (0..300u64)
        .map(|i| {
            SignedTx::sign(
                &key(i),
                Tx {
                    chain_id: ChainId(1),
                    nonce: i,
                    fee: Amount(1),
                    body: TxBody::Retire,
                },
            )
        })
        .collect();
    let t = &txs[200];
    txs[200] = SignedTx::from_parts(
        t.signer().clone(),
        Tx {
            chain_id: ChainId(1),
            nonce: 0,
            fee: Amount(1),
            body: TxBody::Retire,
        },
        t.signature().clone(),
    );
    let ok = agentic_protocol::verify_batch(&txs);
    assert_eq!(ok.iter().filter(|x| !**x).count(), 1);
    assert!(!ok[200]);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = SignedTx::from_bytes(&bytes);
    }

    #[test]
    fn mutated_encodings_never_panic(i in any::<prop::sample::Index>(), pos in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let mut all = samples();
        let body = all.swap_remove(i.index(all.len()));
        let mut bytes = signed(body).to_bytes();
        let p = pos.index(bytes.len());
        bytes[p] = byte;
        let _ = SignedTx::from_bytes(&bytes);
        let c = cut.index(bytes.len());
        let _ = SignedTx::from_bytes(&bytes[..c]);
    }
}

proptest! {
    #[test]
    fn job_specs_and_results_round_trip(
        step_ops in any::<u64>(),
        key_ops in any::<u64>(),
        prompt in any::<u32>(),
        max in any::<u32>(),
        steps in any::<u32>(),
        generation in any::<bool>(),
    ) {
        let mut spec = job_spec(Hash([1; 32]), Hash([2; 32]), &[(3, 10), (2, 5)], 7, VerificationLevel::Optimistic);
        if generation {
            spec = generation_job(spec, step_ops, key_ops, prompt, max);
        }
        prop_assert_eq!(JobSpec::decode(spec.encode()).unwrap(), spec.clone());
        let json = serde_json::to_value(&spec).unwrap();
        prop_assert_eq!(serde_json::from_value::<JobSpec>(json).unwrap(), spec);
        let r = StageResult { steps, ..Trace::honest(&Hash([1; 32]), 0, 3, Hash([2; 32])).result() };
        prop_assert_eq!(StageResult::decode(r.encode()).unwrap(), r);
    }

    #[test]
    fn mutated_job_specs_never_panic(pos in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let spec = generation_job(
            job_spec(Hash([1; 32]), Hash([2; 32]), &[(3, 10), (2, 5)], 7, VerificationLevel::Sampled),
            3, 4, 5, 6,
        );
        let mut bytes = spec.encode().to_vec();
        let p = pos.index(bytes.len());
        bytes[p] = byte;
        let _ = JobSpec::decode(Copying(&bytes[..]));
        let c = cut.index(bytes.len());
        let _ = JobSpec::decode(Copying(&bytes[..c]));
        let _ = StageResult::decode(Copying(&bytes[..c.min(100)]));
    }
}

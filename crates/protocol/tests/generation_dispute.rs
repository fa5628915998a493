//! The dispute game of a generation stage (`state::disputes`, "Generation stages"): an
//! audit that disagrees with a stage's session opens a descent over the two committed
//! (step, layer) trace trees; every move is checked against the party's node (its root
//! at the top); the descent ends at the first differing leaf with everything before it
//! agreed; the defendant names the prefix rows; the referee's finding decides, bound to
//! the question, and a silent defendant loses. Supply and roots are checked after every
//! block.

use agentic_protocol::bisection::descent_children;
use agentic_protocol::event::{Event, Resolution};
use agentic_protocol::referee::{GenerationQuestion, Referee, RefereeError};
use agentic_protocol::state::{Block, DisputeKind, DisputePhase, JobStatus};
use agentic_protocol::test_utils::{
    address_of, fast_params, generation_job, job_spec, key, offer, salt_for, session_results,
    GenesisBuilder, TestChain,
};
use agentic_protocol::tx::{JobSpec, StageResult, TxBody};
use agentic_protocol::types::{Address, Amount, DisputeId, Hash, JobId, VerificationLevel};
use agentic_protocol::{leaves::root_of, merkle, TxError};
use commonware_cryptography::ed25519::PrivateKey;

const REQUESTER: u64 = 1;
const PROVIDERS: [(u64, u128); 6] = [(11, 5), (12, 6), (13, 7), (14, 8), (15, 9), (16, 10)];
const STAKE: u128 = 20_000;
const PROMPT: u32 = 10;
const STEPS: u32 = 6;
/// Layers per stage: leaves per step are 5.
const LAYERS: u32 = 4;
/// The cheater's first wrong leaf: step 2, position 3 (its stage's third layer).
const FIRST_BAD: u32 = 2 * (LAYERS + 1) + 3;

fn model() -> Hash {
    Hash::digest("model", &[b"llama"])
}

fn network() -> TestChain {
    // Room for a few refused moves inside a round.
    let mut params = fast_params();
    params.dispute_timeout = 8;
    params.unbonding_delay = params.unbonding_delay.max(params.challenge_window + 8);
    let mut g =
        GenesisBuilder::new(7)
            .params(params)
            .account(address_of(&key(REQUESTER)), 1_000_000, 0);
    for (seed, _) in PROVIDERS {
        g = g.account(address_of(&key(seed)), 100_000, 0);
    }
    let mut chain = TestChain::new(&g.build());
    chain.check_invariants = true;
    for &(seed, price) in &PROVIDERS {
        chain.push(
            &key(seed),
            TxBody::RegisterProvider {
                offer: offer(price, 4),
                stake: Amount(STAKE),
            },
        );
    }
    ok(&mut chain);
    chain
}

fn ok(chain: &mut TestChain) -> Vec<Event> {
    let out = chain.produce();
    assert!(out.receipts.iter().all(Result::is_ok), "{:?}", out.receipts);
    out.events.into_iter().map(|e| e.event).collect()
}

fn key_of(addr: Address) -> PrivateKey {
    PROVIDERS
        .iter()
        .map(|&(seed, _)| key(seed))
        .find(|k| address_of(k) == addr)
        .expect("a provider")
}

fn spec() -> JobSpec {
    generation_job(
        job_spec(
            model(),
            Hash::digest("input", &[b"request"]),
            &[(LAYERS, 2_000_000); 3],
            10,
            VerificationLevel::Audited,
        ),
        100_000,
        1_000,
        PROMPT,
        20,
    )
}

/// The auditor's (honest) leaves of stage 2, and the cheater's: equal before
/// [`FIRST_BAD`], different there and at some later leaves (it generated on from it).
fn traces(first_bad: u32) -> (Vec<Hash>, Vec<Hash>) {
    let n = STEPS * (LAYERS + 1);
    let honest: Vec<Hash> = (0..n)
        .map(|i| Hash::digest("leaf", &[&i.to_be_bytes()]))
        .collect();
    let cheat = honest
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let i = i as u32;
            if i == first_bad || (i > first_bad && i.is_multiple_of(2)) {
                Hash::digest("lie", &[&h.0])
            } else {
                *h
            }
        })
        .collect();
    (honest, cheat)
}

/// A referee that knows one answer: for the named rows `blob`.
struct Answer {
    blob: Hash,
    answer: Result<Hash, RefereeError>,
}

impl Referee for Answer {
    fn execute_layer(&self, _: &Hash, _: u32, input: &Hash) -> Result<Hash, RefereeError> {
        if *input == self.blob {
            self.answer.clone()
        } else {
            Err(RefereeError::Pending)
        }
    }
}

/// One block refereed by `referee` (the chain's own referee otherwise).
fn produce_with(chain: &mut TestChain, referee: &dyn Referee) -> Vec<Event> {
    let height = chain.state.height().plus(1);
    let block = Block {
        height,
        beacon: Hash::digest("agentic test beacon", &[&height.0.to_be_bytes()]).0,
        txs: std::mem::take(&mut chain.pending),
    };
    let out = chain.state.apply_block(&block, referee).unwrap();
    let (held, expected) = chain.state.supply();
    assert_eq!(held, expected);
    out.events.into_iter().map(|e| e.event).collect()
}

/// A disputed generation: the last stage's session (defendant) against its auditor.
struct Disputed {
    chain: TestChain,
    job: JobId,
    id: DisputeId,
    defendant: Address,
    auditor: Address,
    honest: Vec<Hash>,
    cheat: Vec<Hash>,
}

fn disputed() -> Disputed {
    disputed_at(FIRST_BAD)
}

fn disputed_at(first_bad: u32) -> Disputed {
    disputed_on(2, first_bad)
}

/// A disputed generation on `stage`: its session provider (defendant) against
/// the stage's auditor, whose trace first differs at `first_bad`.
fn disputed_on(stage: usize, first_bad: u32) -> Disputed {
    disputed_with(stage, first_bad, false)
}

/// [`disputed_on`]; with `same_output` the auditor claims the defendant's output
/// (public before the audit) over its own trace root.
fn disputed_with(stage: usize, first_bad: u32, same_output: bool) -> Disputed {
    let mut chain = network();
    let spec = spec();
    let job = chain.state.meta().next_job;
    chain
        .step(&key(REQUESTER), TxBody::SubmitJob { spec })
        .unwrap();
    let (honest, cheat) = traces(first_bad);
    let mut results = session_results(Hash::digest("transcript", &[b"t"]), 3, STEPS);
    results[stage].trace_root = root_of(&cheat);
    let audit2 = StageResult {
        output: if same_output {
            results[stage].output
        } else {
            Hash::digest("other tokens", &[b"t"])
        },
        trace_root: root_of(&honest),
        ..results[stage]
    };
    let holder = |chain: &TestChain, s: usize| {
        chain.state.job(job).unwrap().stages[s].slots[0]
            .assignment
            .as_ref()
            .unwrap()
            .provider
    };
    for s in 0..3u32 {
        let p = holder(&chain, s as usize);
        let c = results[s as usize].commitment(job, s, &salt_for(&p, job, s), &p);
        chain.push(
            &key_of(p),
            TxBody::CommitSession {
                job,
                stage: s,
                commitment: c,
                input: results[s as usize].input,
            },
        );
    }
    ok(&mut chain);
    let auditors: Vec<Address> = (0..3).map(|s| chain.auditor_of(job, s).unwrap()).collect();
    let claimed = |s: usize| if s == stage { audit2 } else { results[s] };
    for (s, a) in auditors.iter().enumerate() {
        let c = claimed(s).commitment(job, s as u32, &salt_for(a, job, s as u32), a);
        chain.push(
            &key_of(*a),
            TxBody::AuditCommit {
                job,
                stage: s as u32,
                commitment: c,
            },
        );
    }
    ok(&mut chain);
    for s in 0..3u32 {
        let p = holder(&chain, s as usize);
        chain.push(
            &key_of(p),
            TxBody::RevealResult {
                job,
                stage: s,
                result: results[s as usize],
                salt: salt_for(&p, job, s),
            },
        );
    }
    ok(&mut chain);
    for (s, a) in auditors.iter().enumerate() {
        chain.push(
            &key_of(*a),
            TxBody::AuditReport {
                job,
                stage: s as u32,
                result: claimed(s),
                salt: salt_for(a, job, s as u32),
            },
        );
    }
    let events = ok(&mut chain);
    let id = events
        .iter()
        .find_map(|e| match e {
            Event::DisputeOpened {
                dispute, stage: s, ..
            } => {
                assert_eq!(*s as usize, stage);
                Some(*dispute)
            }
            _ => None,
        })
        .expect("the last stage's audit disagrees");
    let d = chain.state.dispute(id).unwrap().clone();
    assert_eq!(d.kind, DisputeKind::Audit);
    assert_eq!(d.phase, DisputePhase::Bisecting);
    assert_eq!(d.game.descent_leaves(), STEPS * (LAYERS + 1));
    Disputed {
        defendant: holder(&chain, stage),
        auditor: auditors[stage],
        chain,
        job,
        id,
        honest,
        cheat,
    }
}

impl Disputed {
    fn leaves_of(&self, who: Address) -> &[Hash] {
        if who == self.defendant {
            &self.cheat
        } else {
            &self.honest
        }
    }

    /// `who`'s honest descent move now.
    fn descent_move(&self, who: Address) -> TxBody {
        let d = self.chain.state.dispute(self.id).unwrap();
        let (left, right) = descent_children(self.leaves_of(who), &d.game).unwrap();
        TxBody::Bisect {
            dispute: self.id,
            leaf: left,
            proof: vec![right],
        }
    }

    /// Plays the descent to its end; returns the narrowing events.
    fn descend(&mut self) -> Vec<(u32, u32)> {
        self.descend_events()
            .into_iter()
            .filter_map(|e| match e {
                Event::BisectionNarrowed { dispute, lo, hi } => {
                    assert_eq!(dispute, self.id);
                    Some((lo, hi))
                }
                _ => None,
            })
            .collect()
    }

    /// Plays the descent to its end; returns every event of its blocks.
    fn descend_events(&mut self) -> Vec<Event> {
        let mut all = Vec::new();
        while self.chain.state.dispute(self.id).unwrap().phase == DisputePhase::Bisecting {
            for who in [self.defendant, self.auditor] {
                let body = self.descent_move(who);
                self.chain.push(&key_of(who), body);
            }
            all.extend(ok(&mut self.chain));
        }
        all
    }

    fn question(&self) -> GenerationQuestion {
        let d = self.chain.state.dispute(self.id).unwrap();
        GenerationQuestion::of(d, &self.chain.state.job(self.job).unwrap().spec).unwrap()
    }

    /// The finding that upholds `who`'s leaf at the disputed position.
    fn finding_for(&self, who: Address) -> Hash {
        let q = self.question();
        let leaf = self.leaves_of(who)[q.leaf as usize];
        q.finding(&Hash(merkle::hash_leaf(&leaf.0)))
    }

    /// The defendant names `blob` (the chain's own referee cannot fetch it).
    fn name_rows(&mut self, blob: Hash) {
        self.chain.referee.unavailable_inputs.insert(blob);
        let body = TxBody::StepRoot {
            dispute: self.id,
            root: blob,
            first_proof: Vec::new(),
            last_proof: Vec::new(),
        };
        self.chain.step(&key_of(self.defendant), body).unwrap();
        assert_eq!(
            self.chain.state.dispute(self.id).unwrap().phase,
            DisputePhase::AwaitingReferee
        );
    }
}

fn resolution(events: &[Event], id: DisputeId) -> Option<(Option<Address>, Resolution)> {
    events.iter().find_map(|e| match e {
        Event::DisputeResolved {
            dispute,
            winner,
            resolution,
        } if *dispute == id => Some((*winner, *resolution)),
        _ => None,
    })
}

#[test]
fn the_descent_lands_on_the_first_differing_leaf_and_the_referee_slashes_the_cheater() {
    let mut t = disputed();
    let (defendant, auditor, id) = (t.defendant, t.auditor, t.id);
    // Moves are checked against the party's root: a swapped pair, a proof of the wrong
    // length, a move by an outsider are refused.
    let Some(TxBody::Bisect { leaf, proof, .. }) = Some(t.descent_move(defendant)) else {
        unreachable!()
    };
    let swapped = TxBody::Bisect {
        dispute: id,
        leaf: proof[0],
        proof: vec![leaf],
    };
    assert!(matches!(
        t.chain.reject(&key_of(defendant), swapped),
        TxError::BadProof { .. }
    ));
    let long = TxBody::Bisect {
        dispute: id,
        leaf,
        proof: vec![proof[0], proof[0]],
    };
    assert!(matches!(
        t.chain.reject(&key_of(defendant), long),
        TxError::BadProof { .. }
    ));
    // The auditor cannot play the cheater's nodes (they are not its root's).
    let theirs = t.descent_move(defendant);
    assert!(matches!(
        t.chain.reject(&key_of(auditor), theirs),
        TxError::BadProof { .. }
    ));

    let narrowed = t.descend();
    let n = STEPS * (LAYERS + 1);
    assert!(narrowed.len() as u32 <= u32::BITS - (n - 1).leading_zeros());
    assert_eq!(narrowed.last(), Some(&(FIRST_BAD, FIRST_BAD + 1)));
    let d = t.chain.state.dispute(id).unwrap().clone();
    assert_eq!(d.phase, DisputePhase::StepRoots);
    assert_eq!(d.game.descent_leaf(), Some(FIRST_BAD));
    assert_eq!(d.step, Some(FIRST_BAD / (LAYERS + 1)));
    let q = t.question();
    assert_eq!((q.step(), q.position()), (2, 3));
    // Stage 2 starts at layer 8: its third layer is trace layer 10.
    assert_eq!(q.layer(), Some(10));
    assert_eq!(q.root, d.defendant_root);

    // Only the defendant names the rows, with no proofs in the transaction.
    let blob = Hash::digest("prefix rows", &[b"rows"]);
    let by_auditor = TxBody::StepRoot {
        dispute: id,
        root: blob,
        first_proof: Vec::new(),
        last_proof: Vec::new(),
    };
    assert_eq!(
        t.chain.reject(&key_of(auditor), by_auditor),
        TxError::NotParty
    );
    let with_proofs = TxBody::StepRoot {
        dispute: id,
        root: blob,
        first_proof: vec![blob],
        last_proof: Vec::new(),
    };
    assert!(matches!(
        t.chain.reject(&key_of(defendant), with_proofs),
        TxError::BadProof { .. }
    ));
    t.name_rows(blob);
    assert_eq!(t.chain.state.dispute(id).unwrap().agreed, blob);

    // The validators' finding is the auditor's: the cheater is slashed.
    let bonded = t.chain.state.account(&defendant).bonded;
    let referee = Answer {
        blob,
        answer: Ok(t.finding_for(auditor)),
    };
    let events = produce_with(&mut t.chain, &referee);
    assert_eq!(
        resolution(&events, id),
        Some((Some(auditor), Resolution::Refereed { layer: 10 }))
    );
    let p = t.chain.state.params().clone();
    let slash = bonded.mul_ppm(p.slash_ppm);
    assert!(events.contains(&Event::Slashed {
        who: defendant,
        amount: slash,
        to_winner: slash.mul_ppm(p.slash_winner_ppm),
        to_requester: slash.mul_ppm(p.slash_requester_ppm),
        burned: Amount(
            slash.0 - slash.mul_ppm(p.slash_winner_ppm).0 - slash.mul_ppm(p.slash_requester_ppm).0
        ),
    }));
    assert_eq!(
        t.chain.state.account(&defendant).bonded,
        bonded.saturating_sub(slash)
    );
    assert_eq!(t.chain.state.job(t.job).unwrap().status, JobStatus::Failed);
}

#[test]
fn the_finding_decides_and_binds_the_question() {
    // The referee upholds the defendant: the auditor (challenger) loses.
    let mut t = disputed();
    t.descend();
    let blob = Hash::digest("prefix rows", &[b"a"]);
    t.name_rows(blob);
    let referee = Answer {
        blob,
        answer: Ok(t.finding_for(t.defendant)),
    };
    let events = produce_with(&mut t.chain, &referee);
    assert_eq!(
        resolution(&events, t.id),
        Some((Some(t.defendant), Resolution::Refereed { layer: 10 }))
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Slashed { who, .. } if *who == t.auditor)));

    // A finding for another question (another leaf of the same trace: a blob the
    // defendant made for the wrong position) matches neither party: the defendant,
    // who named it, loses.
    let mut t = disputed();
    t.descend();
    let blob = Hash::digest("prefix rows", &[b"b"]);
    t.name_rows(blob);
    let mut q = t.question();
    q.leaf -= 1;
    let leaf = t.cheat[q.leaf as usize];
    let referee = Answer {
        blob,
        answer: Ok(q.finding(&Hash(merkle::hash_leaf(&leaf.0)))),
    };
    let events = produce_with(&mut t.chain, &referee);
    assert_eq!(
        resolution(&events, t.id),
        Some((Some(t.auditor), Resolution::InputUnavailable))
    );

    // Rows nobody can fetch: the referee waits for the parties' patience, then the
    // defendant loses.
    let mut t = disputed();
    t.descend();
    let blob = Hash::digest("prefix rows", &[b"c"]);
    t.name_rows(blob);
    let gone = Answer {
        blob,
        answer: Err(RefereeError::InputUnavailable),
    };
    let events = produce_with(&mut t.chain, &gone);
    assert_eq!(resolution(&events, t.id), None, "patient first");
    let timeout = t.chain.state.params().dispute_timeout;
    let mut found = None;
    for _ in 0..=timeout + 1 {
        let events = produce_with(&mut t.chain, &gone);
        if let Some(r) = resolution(&events, t.id) {
            found = Some(r);
            break;
        }
    }
    assert_eq!(found, Some((Some(t.auditor), Resolution::InputUnavailable)));
}

#[test]
fn a_defendant_that_names_no_rows_loses_by_timeout() {
    let mut t = disputed();
    t.descend();
    assert_eq!(
        t.chain.state.dispute(t.id).unwrap().phase,
        DisputePhase::StepRoots
    );
    let timeout = t.chain.state.params().dispute_timeout;
    let mut found = None;
    for _ in 0..=timeout + 1 {
        let events = ok(&mut t.chain);
        if let Some(r) = resolution(&events, t.id) {
            found = Some(r);
            break;
        }
    }
    assert_eq!(found, Some((Some(t.auditor), Resolution::Timeout)));
}

#[test]
fn a_silent_party_in_the_descent_loses() {
    // Only the defendant moves: the auditor, silent, loses its own dispute.
    let mut t = disputed();
    let body = t.descent_move(t.defendant);
    t.chain.step(&key_of(t.defendant), body).unwrap();
    let timeout = t.chain.state.params().dispute_timeout;
    let mut found = None;
    for _ in 0..=timeout + 1 {
        let events = ok(&mut t.chain);
        if let Some(r) = resolution(&events, t.id) {
            found = Some(r);
            break;
        }
    }
    assert_eq!(found, Some((Some(t.defendant), Resolution::Timeout)));
}

#[test]
fn a_first_difference_at_an_input_leaf_past_stage_0_is_annulled() {
    // Step 3's input leaf of stage 2: the previous stage's output, agreed by the
    // session chain, so nothing to ask.
    let first = 3 * (LAYERS + 1);
    let mut t = disputed_at(first);
    let events = t.descend_events();
    let d = t.chain.state.dispute(t.id).unwrap();
    assert_eq!(d.game.descent_leaf(), Some(first));
    assert_eq!(
        d.phase,
        DisputePhase::Resolved,
        "judged at once, no rows named"
    );
    assert_eq!(
        resolution(&events, t.id),
        Some((None, Resolution::Annulled))
    );
    assert!(!events.iter().any(|e| matches!(e, Event::Slashed { .. })));
}

/// Stage 0's input leaf at a step is derived by the referee from the job's
/// request and the transcript: the question names both blobs, and the party
/// whose leaf node equals the answer wins (the cheater is slashed).
#[test]
fn a_stage0_input_leaf_is_derived_from_the_request_and_the_transcript() {
    let first = 3 * (LAYERS + 1);
    let mut t = disputed_on(0, first);
    let transcript = Hash::digest("transcript", &[b"t"]);
    // The chain's own referee cannot fetch the transcript: the question waits.
    t.chain.referee.unavailable_inputs.insert(transcript);
    t.descend();
    let d = t.chain.state.dispute(t.id).unwrap().clone();
    assert_eq!(d.game.descent_leaf(), Some(first));
    assert_eq!(d.phase, DisputePhase::AwaitingReferee);
    let request = t.chain.state.job(t.job).unwrap().spec.input;
    let questions = t.chain.state.referee_questions();
    let layer = agentic_protocol::referee::INPUT_LEAF_BASE + 3;
    assert_eq!(questions, vec![(request, layer, transcript)]);
    assert_eq!(agentic_protocol::referee::input_leaf_step(layer), Some(3));
    // The validators derive the honest leaf.
    let honest_node = Hash(merkle::hash_leaf(&t.honest[first as usize].0));
    let referee = Answer {
        blob: transcript,
        answer: Ok(honest_node),
    };
    let events = produce_with(&mut t.chain, &referee);
    assert_eq!(
        resolution(&events, t.id),
        Some((Some(t.auditor), Resolution::Refereed { layer: 0 }))
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Slashed { who, .. } if *who == t.defendant)));
    assert_eq!(t.chain.state.root(), t.chain.state.full_root());
}

/// An auditor that claims the session's output over its own trace disputes the
/// stage like one with another output (`state::disputes`, "Generation stages"):
/// the descent finds the first differing leaf, the referee upholds the auditor,
/// and the defendant is slashed and paid nothing although its output equals the
/// winner's.
#[test]
fn an_audit_with_the_same_output_but_its_own_root_wins_the_descent() {
    let mut t = disputed_with(2, FIRST_BAD, true);
    let d = t.chain.state.dispute(t.id).unwrap();
    assert_eq!(d.defendant_output, d.challenger_output);
    assert_ne!(d.defendant_root, d.challenger_root);
    let narrowed = t.descend();
    assert_eq!(narrowed.last(), Some(&(FIRST_BAD, FIRST_BAD + 1)));
    let blob = Hash::digest("prefix rows", &[b"same output"]);
    t.name_rows(blob);
    let referee = Answer {
        blob,
        answer: Ok(t.finding_for(t.auditor)),
    };
    let events = produce_with(&mut t.chain, &referee);
    assert_eq!(
        resolution(&events, t.id),
        Some((Some(t.auditor), Resolution::Refereed { layer: 10 }))
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Slashed { who, .. } if *who == t.defendant)));
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::AuditPaid { auditor, .. } if *auditor == t.auditor)));
    let mut later = events;
    later.extend((0..10).flat_map(|_| ok(&mut t.chain)));
    assert!(
        !later
            .iter()
            .any(|e| matches!(e, Event::StagePaid { provider, .. } if *provider == t.defendant)),
        "{later:?}"
    );
    assert_eq!(t.chain.state.job(t.job).unwrap().status, JobStatus::Failed);
}

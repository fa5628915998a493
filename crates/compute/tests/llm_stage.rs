//! Pipeline-stage generation on SmolLM2-135M: a generation split over stages (rows passed
//! from one to the next, the last one's logits sampled, the token back to the first) is
//! bit-identical to the whole model's — tokens, leaves, ops — the auditor's per-stage
//! replay reproduces each stage's trace, the closed-form cost equals the metered ops, and
//! bad input (to a stage, or a request's bytes) is a typed error.

use std::sync::OnceLock;

use agentic_compute::llm::generate::{GenerateParams, Generation};
use agentic_compute::llm::stage::{
    chain_hash, ends, input_rows_bytes, input_rows_from_bytes, input_rows_len, replay_claim,
    replay_claim_from_rows, replay_stage, replay_stage_from_rows, rows_input_claim, stage_cost,
    tokens_hash, tokens_leaf, GenerationRequest, StageInput, StageOutput, StageRange, StageSession,
    StageTrace, MAX_STOP_TOKENS,
};
use agentic_compute::llm::{self, LlmModel, Sampler};
use agentic_compute::registry;
use agentic_compute::ComputeError;
use proptest::prelude::*;

fn smollm2() -> &'static LlmModel {
    static M: OnceLock<LlmModel> = OnceLock::new();
    M.get_or_init(|| {
        let path = registry::fetch_smollm2(&registry::smollm2_dir()).expect("fetch SmolLM2");
        llm::generate::load_gguf(&path).expect("load SmolLM2")
    })
}

/// Three stages over the 32 trace layers: [0, 11), [11, 21), [21, 32).
fn three_stages() -> Vec<StageRange> {
    vec![
        StageRange::new(0, 11),
        StageRange::new(11, 10),
        StageRange::new(21, 11),
    ]
}

const SEEDED: Sampler = Sampler::Sample {
    seed: 7,
    temperature: 0.8,
    top_k: 40,
    top_p: 0.95,
};

fn request(m: &LlmModel, max_tokens: u32, sampler: Sampler) -> GenerationRequest {
    GenerationRequest {
        prompt: m
            .encode_prompt("Tell me a long story about a brave little robot.", true)
            .unwrap(),
        max_tokens,
        sampler,
        stop: Vec::new(),
    }
}

/// A generation driven stage by stage.
struct Split {
    tokens: Vec<u32>,
    traces: Vec<StageTrace>,
    /// `step_ops[stage][step]`.
    step_ops: Vec<Vec<u64>>,
    /// Each session's input rows at the end (`StageSession::input_rows`).
    inputs: Vec<Vec<f32>>,
}

/// Drives one session per range: tokens into the first, rows from each to the next, the
/// last one's logits sampled, the token back to the first; stops by `ends`.
fn run_split(m: &LlmModel, ranges: &[StageRange], req: &GenerationRequest) -> Split {
    let model = &m.model;
    let context = model.config().context;
    let capacity = req.prompt.len() + req.max_tokens as usize;
    let mut sessions: Vec<StageSession<'_>> = ranges
        .iter()
        .map(|&r| StageSession::with_capacity(model, r, capacity).unwrap())
        .collect();
    let mut s = Split {
        tokens: Vec::new(),
        traces: vec![StageTrace::default(); ranges.len()],
        step_ops: vec![Vec::new(); ranges.len()],
        inputs: Vec::new(),
    };
    let mut input = req.prompt.clone();
    loop {
        let step = s.tokens.len();
        let mut next = Some(StageInput::Tokens(input));
        let mut logits = None;
        for (i, session) in sessions.iter_mut().enumerate() {
            let r = session.step(next.take().unwrap()).unwrap();
            assert_eq!(r.leaves.len(), ranges[i].count + 1);
            s.traces[i].push(&r);
            s.step_ops[i].push(r.ops);
            match r.output {
                StageOutput::Rows(rows) => next = Some(StageInput::Rows(rows)),
                StageOutput::Logits(l) => logits = Some(l),
            }
        }
        let tok = req.sampler.pick(&logits.unwrap(), step as u64);
        s.tokens.push(tok);
        if ends(req, context, step, tok) {
            break;
        }
        input = vec![tok];
    }
    s.inputs = sessions.iter().map(|x| x.input_rows().to_vec()).collect();
    s
}

/// Each stage's leaves are the whole generation's for its layers, its input leaf the
/// previous layer's (or the step's tokens), its ops the whole generation's for its layers.
fn assert_slices(g: &Generation, ranges: &[StageRange], split: &Split) {
    assert_eq!(split.tokens, g.tokens);
    for (r, trace) in ranges.iter().zip(&split.traces) {
        assert_eq!(trace.steps(), g.tokens.len());
        let mut ops = 0;
        for (t, leaves) in trace.leaves.iter().enumerate() {
            let input = if r.first == 0 {
                let fed = if t == 0 {
                    g.prompt.clone()
                } else {
                    vec![g.tokens[t - 1]]
                };
                tokens_leaf(&fed)
            } else {
                g.leaves[t][r.first - 1]
            };
            assert_eq!(leaves[0], input, "input leaf, stage {r:?}, step {t}");
            assert_eq!(
                &leaves[1..],
                &g.leaves[t][r.layers()],
                "stage {r:?}, step {t}"
            );
            ops += g.ops[t][r.layers()].iter().sum::<u64>();
        }
        assert_eq!(trace.ops, ops, "ops of stage {r:?}");
    }
    let total: u64 = split.traces.iter().map(|t| t.ops).sum();
    assert_eq!(total, g.total_ops());
}

#[test]
fn a_split_generation_equals_the_whole_model() {
    let m = smollm2();
    let ranges = three_stages();
    for sampler in [Sampler::Greedy, SEEDED] {
        let req = request(m, 24, sampler);
        let g = m.generate_request(&req, |_| {}).unwrap();
        assert_eq!(g.tokens.len(), 24);
        let split = run_split(m, &ranges, &req);
        assert_slices(&g, &ranges, &split);

        // `generate` (the model's stop tokens) is the same run, up to where it stops.
        let old = m
            .generate(
                &req.prompt,
                &GenerateParams {
                    max_tokens: 24,
                    sampler,
                },
                |_| {},
            )
            .unwrap();
        let k = old.tokens.len();
        assert_eq!(old.tokens, g.tokens[..k]);
        assert_eq!(old.leaves, g.leaves[..k]);

        // Adjacent stages chain: stage i's output claim is stage i+1's input claim.
        let layers = m.model.config().layers();
        let claims: Vec<_> = ranges
            .iter()
            .zip(&split.traces)
            .map(|(r, t)| t.claim(r, layers, &split.tokens))
            .collect();
        assert_eq!(claims[0].0, tokens_hash(&split.tokens));
        assert_eq!(claims[2].1, tokens_hash(&split.tokens));
        for w in claims.windows(2) {
            assert_eq!(w[0].1, w[1].0);
        }
    }
}

#[test]
fn a_split_run_and_a_local_run_share_the_stop_rule() {
    let m = smollm2();
    let mut req = request(m, 40, Sampler::Greedy);
    req.prompt = m.encode_prompt("Say hi.", true).unwrap();
    req.stop = m.stop_tokens.clone();
    let g = m.generate_request(&req, |_| {}).unwrap();
    assert!(
        g.tokens.len() < 40,
        "the answer should end before 40 tokens"
    );
    assert!(req.stop.contains(g.tokens.last().unwrap()));
    assert_eq!(g.stop, llm::StopReason::StopToken);
    let split = run_split(m, &three_stages(), &req);
    assert_slices(&g, &three_stages(), &split);
}

#[test]
fn one_stage_and_edge_stages_equal_the_whole_model() {
    let m = smollm2();
    let l = m.model.config().n_layer;
    let req = request(m, 6, SEEDED);
    let g = m.generate_request(&req, |_| {}).unwrap();
    for ranges in [
        vec![StageRange::new(0, l + 2)],
        // The embedding alone, the blocks, the head alone.
        vec![
            StageRange::new(0, 1),
            StageRange::new(1, l),
            StageRange::new(l + 1, 1),
        ],
    ] {
        let split = run_split(m, &ranges, &req);
        assert_slices(&g, &ranges, &split);
        for (r, trace) in ranges.iter().zip(&split.traces) {
            let (replayed, picks) =
                replay_stage(&m.model, r, &req.prompt, &split.tokens, &req.sampler).unwrap();
            assert_eq!(&replayed, trace, "stage {r:?}");
            assert_eq!(picks.is_some(), r.end() == l + 2);
        }
    }
    let whole = run_split(m, &[StageRange::new(0, l + 2)], &req);
    assert_eq!(whole.traces[0].leaves[0][1..], g.leaves[0]);
}

#[test]
fn replaying_a_stage_reproduces_its_trace() {
    let m = smollm2();
    let ranges = three_stages();
    let layers = m.model.config().layers();
    for sampler in [Sampler::Greedy, SEEDED] {
        let req = request(m, 24, sampler);
        let split = run_split(m, &ranges, &req);
        for (r, trace) in ranges.iter().zip(&split.traces) {
            let (replayed, picks) =
                replay_stage(&m.model, r, &req.prompt, &split.tokens, &sampler).unwrap();
            assert_eq!(replayed.leaves, trace.leaves, "stage {r:?}");
            assert_eq!(replayed.ops, trace.ops);
            assert_eq!(replayed.root(), trace.root());
            assert_eq!(replayed.flat(), trace.flat());
            assert_eq!(
                replayed.claim(r, layers, &split.tokens),
                trace.claim(r, layers, &split.tokens)
            );
            if r.end() == layers {
                assert_eq!(picks.as_deref(), Some(&split.tokens[..]));
            } else {
                assert_eq!(picks, None);
            }
        }

        // A transcript with token k altered: the last stage's picks agree up to k and
        // disagree at k; stage 0's leaves differ from step k + 1 on.
        let k = 10;
        let mut altered = split.tokens.clone();
        altered[k] = (altered[k] + 1) % m.model.config().vocab as u32;
        let (_, picks) =
            replay_stage(&m.model, &ranges[2], &req.prompt, &altered, &sampler).unwrap();
        let picks = picks.unwrap();
        let first_diff = picks.iter().zip(&altered).position(|(a, b)| a != b);
        assert_eq!(first_diff, Some(k));
        let (t0, _) = replay_stage(&m.model, &ranges[0], &req.prompt, &altered, &sampler).unwrap();
        let honest = &split.traces[0];
        assert_eq!(t0.leaves[..=k], honest.leaves[..=k]);
        assert_ne!(t0.leaves[k + 1], honest.leaves[k + 1]);
        assert_ne!(t0.root(), honest.root());
        // The middle stage's input chain no longer matches either.
        let (t1, _) = replay_stage(&m.model, &ranges[1], &req.prompt, &altered, &sampler).unwrap();
        assert_ne!(
            t1.claim(&ranges[1], layers, &altered).0,
            split.traces[1].claim(&ranges[1], layers, &split.tokens).0
        );
    }
}

#[test]
fn the_closed_form_cost_equals_the_metered_ops() {
    let m = smollm2();
    let ranges = three_stages();
    let l = m.model.config().n_layer;
    let mut all = ranges.clone();
    all.extend([
        StageRange::new(0, l + 2),
        StageRange::new(0, 1),
        StageRange::new(l + 1, 1),
    ]);
    let req = request(m, 24, Sampler::Greedy);
    let p = req.prompt.len();
    let split = run_split(m, &all[..3], &req);
    let g = m.generate_request(&req, |_| {}).unwrap();
    for r in &all {
        let cost = stage_cost(&m.model, r, p);
        for n in [1usize, 2, 24] {
            let metered: u64 = g.ops[..n]
                .iter()
                .map(|s| s[r.layers()].iter().sum::<u64>())
                .sum();
            assert_eq!(
                cost.ops(p as u64, n as u64),
                Some(metered),
                "{r:?}, n = {n}"
            );
        }
    }
    for (i, r) in ranges.iter().enumerate() {
        let cost = stage_cost(&m.model, r, p);
        for n in [1usize, 2, 24] {
            let metered: u64 = split.step_ops[i][..n].iter().sum();
            assert_eq!(cost.ops(p as u64, n as u64), Some(metered));
        }
    }
    let cost = stage_cost(&m.model, &ranges[0], p);
    assert_eq!(cost.ops(p as u64, 0), Some(0));
    assert_eq!(cost.ops(u64::MAX, 3), None);
    assert_eq!(cost.ops(1, u64::MAX), None);
}

#[test]
fn bad_stage_input_is_a_typed_error_and_changes_nothing() {
    let m = smollm2();
    let c = m.model.config();
    let (d, vocab, context) = (c.dim, c.vocab, c.context);
    let ranges = three_stages();
    let layers = c.layers();
    for r in [
        StageRange::new(0, 0),
        StageRange::new(5, layers - 4),
        StageRange::new(usize::MAX, 2),
        StageRange::new(layers, 1),
    ] {
        assert!(matches!(
            StageSession::new(&m.model, r),
            Err(ComputeError::LayerOutOfRange { .. })
        ));
    }

    let req = request(m, 8, Sampler::Greedy);
    let g = m.generate_request(&req, |_| {}).unwrap();
    let mut sessions: Vec<StageSession<'_>> = ranges
        .iter()
        .map(|&r| StageSession::new(&m.model, r).unwrap())
        .collect();
    let mut traces = vec![StageTrace::default(); 3];
    let mut input = req.prompt.clone();
    for step in 0..g.tokens.len() {
        // Bad input to every stage, at every step: typed errors, nothing changes.
        let bad0 = [
            StageInput::Rows(vec![0.0; d]),
            StageInput::Tokens(vec![]),
            StageInput::Tokens(vec![1, vocab as u32]),
            StageInput::Tokens(vec![u32::MAX]),
            StageInput::Tokens(vec![1; context + 1 - sessions[0].positions()]),
        ];
        for bad in bad0 {
            let e = sessions[0].step(bad).unwrap_err();
            assert!(
                matches!(
                    e,
                    ComputeError::BadActivation { .. }
                        | ComputeError::EmptyInput(_)
                        | ComputeError::TokenOutOfRange { .. }
                        | ComputeError::InputTooLong { .. }
                ),
                "{e}"
            );
        }
        for s in &mut sessions[1..] {
            let before = s.positions();
            for bad in [
                StageInput::Tokens(vec![1]),
                StageInput::Rows(vec![]),
                StageInput::Rows(vec![0.0; d - 1]),
                StageInput::Rows(vec![0.0; 2 * d + 1]),
                StageInput::Rows(vec![0.0; (context + 1 - before) * d]),
            ] {
                let e = s.step(bad).unwrap_err();
                assert!(
                    matches!(
                        e,
                        ComputeError::BadActivation { .. }
                            | ComputeError::EmptyInput(_)
                            | ComputeError::InputTooLong { .. }
                    ),
                    "{e}"
                );
            }
            assert_eq!(s.positions(), before);
        }
        let mut next = Some(StageInput::Tokens(input));
        let mut logits = None;
        for (i, s) in sessions.iter_mut().enumerate() {
            let r = s.step(next.take().unwrap()).unwrap();
            traces[i].push(&r);
            match r.output {
                StageOutput::Rows(rows) => next = Some(StageInput::Rows(rows)),
                StageOutput::Logits(l) => logits = Some(l),
            }
        }
        let tok = Sampler::Greedy.pick(&logits.unwrap(), step as u64);
        assert_eq!(tok, g.tokens[step]);
        input = vec![tok];
    }
    let clean = run_split(m, &ranges, &req);
    assert_eq!(traces, clean.traces);
    assert_eq!(
        sessions[0].positions(),
        req.prompt.len() + g.tokens.len() - 1
    );

    // Specific variants.
    let mut s0 = StageSession::new(&m.model, ranges[0]).unwrap();
    let mut s1 = StageSession::new(&m.model, ranges[1]).unwrap();
    assert!(matches!(
        s0.step(StageInput::Tokens(vec![vocab as u32])),
        Err(ComputeError::TokenOutOfRange { .. })
    ));
    assert!(matches!(
        s0.step(StageInput::Tokens(vec![1; context + 1])),
        Err(ComputeError::InputTooLong { .. })
    ));
    assert!(matches!(
        s1.step(StageInput::Rows(vec![0.0; d + 1])),
        Err(ComputeError::BadActivation { layer: 11, .. })
    ));
    assert!(matches!(
        s1.step(StageInput::Rows(vec![])),
        Err(ComputeError::EmptyInput(_))
    ));
    // A non-finite row is computed on (the referee's business), never a panic.
    let r = s1.step(StageInput::Rows(vec![f32::NAN; d])).unwrap();
    assert_eq!(s1.positions(), 1);
    assert!(matches!(r.output, StageOutput::Rows(ref x) if x.len() == d));

    // The auditor's bad input.
    let sampler = Sampler::Greedy;
    assert!(replay_stage(&m.model, &ranges[0], &req.prompt, &[], &sampler).is_err());
    assert!(replay_stage(&m.model, &ranges[0], &[], &[1], &sampler).is_err());
    assert!(matches!(
        replay_stage(&m.model, &ranges[1], &req.prompt, &[vocab as u32], &sampler),
        Err(ComputeError::TokenOutOfRange { .. })
    ));
    assert!(matches!(
        replay_stage(
            &m.model,
            &StageRange::new(0, 0),
            &req.prompt,
            &[1],
            &sampler
        ),
        Err(ComputeError::LayerOutOfRange { .. })
    ));
    let long = vec![1; context];
    assert!(matches!(
        replay_stage(&m.model, &ranges[2], &req.prompt, &long, &sampler),
        Err(ComputeError::InputTooLong { .. })
    ));
}

fn sample_requests() -> Vec<GenerationRequest> {
    vec![
        GenerationRequest {
            prompt: vec![1, 2, 3],
            max_tokens: 16,
            sampler: Sampler::Greedy,
            stop: vec![2],
        },
        GenerationRequest {
            prompt: vec![9; 40],
            max_tokens: 1,
            sampler: SEEDED,
            stop: vec![],
        },
        GenerationRequest {
            prompt: vec![0],
            max_tokens: u32::MAX,
            sampler: Sampler::Sample {
                seed: u64::MAX,
                temperature: 1.0,
                top_k: 0,
                top_p: 1.0,
            },
            stop: vec![u32::MAX, 0, 5],
        },
    ]
}

#[test]
fn a_request_round_trips_and_bad_bytes_are_errors() {
    for req in sample_requests() {
        let b = req.encode();
        assert!(GenerationRequest::is_request(&b));
        assert_eq!(GenerationRequest::decode(&b).unwrap(), req);
        // Every truncation, every extension, every single-byte change that breaks it.
        for cut in 0..b.len() {
            assert!(matches!(
                GenerationRequest::decode(&b[..cut]),
                Err(ComputeError::MalformedRequest(_))
            ));
        }
        let mut long = b.clone();
        long.push(0);
        assert!(GenerationRequest::decode(&long).is_err());
        for i in 0..b.len() {
            let mut e = b.clone();
            e[i] ^= 0x80;
            if let Ok(d) = GenerationRequest::decode(&e) {
                assert_eq!(d.encode(), e, "byte {i}");
            }
        }
    }
    // Over-long counts: refused before allocating.
    let mut b = b"AGGENRQ1".to_vec();
    b.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(GenerationRequest::decode(&b).is_err());
    let mut req = sample_requests().remove(0);
    req.stop = vec![1; MAX_STOP_TOKENS + 1];
    assert!(GenerationRequest::decode(&req.encode()).is_err());
    // Unknown sampler tag, wrong magic.
    let mut b = sample_requests()[0].encode();
    let tag = 8 + 4 + 3 * 4 + 4;
    b[tag] = 2;
    assert!(GenerationRequest::decode(&b).is_err());
    assert!(!GenerationRequest::is_request(b"AGGENRQ2"));
    assert!(GenerationRequest::decode(b"AGGENRQ2\0\0\0\0").is_err());
    assert!(GenerationRequest::decode(&[]).is_err());
}

#[test]
fn a_request_is_validated_against_the_model() {
    let m = smollm2();
    let c = m.model.config();
    let ok = request(m, 24, SEEDED);
    ok.validate(&m.model).unwrap();
    let bad = |edit: &dyn Fn(&mut GenerationRequest)| {
        let mut r = ok.clone();
        edit(&mut r);
        r.validate(&m.model).unwrap_err()
    };
    assert!(matches!(
        bad(&|r| r.prompt.clear()),
        ComputeError::EmptyInput(_)
    ));
    assert!(matches!(
        bad(&|r| r.prompt.push(c.vocab as u32)),
        ComputeError::TokenOutOfRange { .. }
    ));
    assert!(matches!(
        bad(&|r| r.stop.push(c.vocab as u32)),
        ComputeError::TokenOutOfRange { .. }
    ));
    assert!(matches!(
        bad(&|r| r.max_tokens = 0),
        ComputeError::InvalidConfig(_)
    ));
    assert!(matches!(
        bad(&|r| r.max_tokens = (c.context - r.prompt.len() + 1) as u32),
        ComputeError::InputTooLong { .. }
    ));
    assert!(matches!(
        bad(&|r| r.sampler = Sampler::Sample {
            seed: 1,
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0
        }),
        ComputeError::InvalidConfig(_)
    ));
    assert!(m
        .generate_request(
            &GenerationRequest {
                max_tokens: 0,
                ..ok.clone()
            },
            |_| {}
        )
        .is_err());

    // The stop rule.
    let mut r = ok.clone();
    r.stop = vec![42];
    let p = r.prompt.len();
    assert!(ends(&r, c.context, 0, 42));
    assert!(!ends(&r, c.context, 0, 41));
    assert!(!ends(&r, c.context, 22, 41));
    assert!(ends(&r, c.context, 23, 41));
    assert!(ends(&r, p + 5, 4, 41));
    assert!(!ends(&r, p + 5, 3, 41));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..96),
                                             magic in any::<bool>()) {
        let mut b = if magic { b"AGGENRQ1".to_vec() } else { Vec::new() };
        b.extend_from_slice(&bytes);
        if let Ok(req) = GenerationRequest::decode(&b) {
            prop_assert_eq!(req.encode(), b);
        }
    }

    #[test]
    fn any_request_round_trips(prompt in proptest::collection::vec(any::<u32>(), 0..64),
                               stop in proptest::collection::vec(any::<u32>(), 0..8),
                               max_tokens in any::<u32>(), seed in any::<u64>(),
                               temperature in 0.01f32..4.0, top_k in any::<u32>(),
                               top_p in 0.01f32..=1.0, greedy in any::<bool>()) {
        let sampler = if greedy {
            Sampler::Greedy
        } else {
            Sampler::Sample { seed, temperature, top_k: top_k as usize, top_p }
        };
        let req = GenerationRequest { prompt, max_tokens, sampler, stop };
        prop_assert_eq!(GenerationRequest::decode(&req.encode()).unwrap(), req);
    }
}

#[test]
fn hashes_are_domain_separated() {
    let t = [1u32, 2, 3];
    assert_ne!(tokens_leaf(&t), tokens_hash(&t));
    assert_ne!(tokens_leaf(&t), tokens_leaf(&t[..2]));
    let h = [tokens_leaf(&t), tokens_hash(&t)];
    assert_ne!(chain_hash(&h), chain_hash(&h[..1]));
    assert_ne!(chain_hash(&[]), tokens_hash(&[]));
}

/// Teacher-forces steps `from..to` through `sessions` (stage order) with the
/// generation's `tokens`, checking each stage's leaves against `split` and the last
/// stage's pick against the token the generation sampled.
fn continue_split(
    sessions: &mut [StageSession<'_>],
    req: &GenerationRequest,
    split: &Split,
    (from, to): (usize, usize),
) {
    for t in from..to {
        let mut x = if t == 0 {
            StageInput::Tokens(req.prompt.clone())
        } else {
            StageInput::Tokens(vec![split.tokens[t - 1]])
        };
        for (i, sess) in sessions.iter_mut().enumerate() {
            let r = sess.step(x.clone()).unwrap();
            assert_eq!(r.leaves, split.traces[i].leaves[t], "stage {i} step {t}");
            assert_eq!(r.ops, split.step_ops[i][t], "stage {i} step {t} ops");
            x = match r.output {
                StageOutput::Rows(rows) => StageInput::Rows(rows),
                StageOutput::Logits(l) => {
                    assert_eq!(req.sampler.pick(&l, t as u64), split.tokens[t], "step {t}");
                    break;
                }
            };
        }
    }
}

/// A replacement stage rebuilt by one prefill of the tokens so far
/// (`StageSession::resume`) and a survivor rolled back to an agreed step
/// (`StageSession::truncate`) go on bit for bit as if nothing happened.
#[test]
fn a_stage_rebuilt_or_rolled_back_mid_session_goes_on_bit_for_bit() {
    let m = smollm2();
    let model = &m.model;
    let req = request(m, 12, SEEDED);
    let ranges = three_stages();
    let split = run_split(m, &ranges, &req);
    let n = split.tokens.len();
    let cap = req.prompt.len() + req.max_tokens as usize;
    for t in [0usize, 1, 5] {
        // Rebuilt: every stage from the first t tokens.
        let mut rebuilt = Vec::new();
        for (i, &r) in ranges.iter().enumerate() {
            let (sess, steps) =
                StageSession::resume(model, r, &req.prompt, &split.tokens[..t], &req.sampler, cap)
                    .unwrap();
            assert_eq!(sess.steps(), t);
            assert_eq!(steps.len(), t);
            for (k, st) in steps.iter().enumerate() {
                assert_eq!(st.leaves, split.traces[i].leaves[k], "stage {i} step {k}");
                assert_eq!(st.ops, split.step_ops[i][k], "stage {i} step {k} ops");
            }
            rebuilt.push(sess);
        }
        continue_split(&mut rebuilt, &req, &split, (t, n));

        // Rolled back: run three steps past t, cut back to t, go on.
        let mut rolled: Vec<StageSession<'_>> = ranges
            .iter()
            .map(|&r| StageSession::with_capacity(model, r, cap).unwrap())
            .collect();
        continue_split(&mut rolled, &req, &split, (0, t + 3));
        for s in &mut rolled {
            s.truncate(t);
            assert_eq!(s.steps(), t);
            s.truncate(t + 1); // more steps than it holds: nothing changes
            assert_eq!(s.steps(), t);
        }
        continue_split(&mut rolled, &req, &split, (t, n));
    }
    // A transcript the head stage would not have sampled is refused.
    let mut wrong = split.tokens[..4].to_vec();
    wrong[2] = (wrong[2] + 1) % model.config().vocab as u32;
    assert!(
        StageSession::resume(model, ranges[2], &req.prompt, &wrong, &req.sampler, cap).is_err()
    );
    // Out-of-vocabulary tokens are a typed error, not a panic.
    assert!(StageSession::resume(
        model,
        ranges[0],
        &req.prompt,
        &[u32::MAX],
        &req.sampler,
        cap
    )
    .is_err());
}

/// A stage past 0 replayed from the input rows it received — what its auditor fetches
/// and checks against the stage's published input claim — gives its trace and claim bit
/// for bit; a resumed or rolled-back session holds the same rows; rows of the wrong
/// shape, or for stage 0, are typed errors.
#[test]
fn a_stage_replays_from_its_input_rows() {
    let m = smollm2();
    let model = &m.model;
    let req = request(m, 10, SEEDED);
    let ranges = three_stages();
    let split = run_split(m, &ranges, &req);
    let (n, p, d) = (split.tokens.len(), req.prompt.len(), model.config().dim);
    let tokens = &split.tokens;
    assert!(
        split.inputs[0].is_empty(),
        "stage 0's input is the transcript"
    );
    for (i, (r, rows)) in ranges.iter().zip(&split.inputs).enumerate().skip(1) {
        assert_eq!(rows.len(), (p + n - 1) * d);
        let (full, fi, fo) = replay_claim(model, r, &req.prompt, tokens, &req.sampler).unwrap();
        let (fast, ri, ro) =
            replay_claim_from_rows(model, r, &req.prompt, tokens, rows, &req.sampler).unwrap();
        assert_eq!(fast, full, "stage {i}: leaves and ops");
        assert_eq!(fast.leaves, split.traces[i].leaves);
        assert_eq!((ri, ro), (fi, fo));
        assert_eq!(rows_input_claim(model, r, p, n, rows).unwrap(), fi);

        let bytes = input_rows_bytes(rows, d);
        assert_eq!(
            bytes.len() as u64,
            input_rows_len(p + n - 1, d),
            "the auditor's cap"
        );
        assert_eq!(input_rows_from_bytes(&bytes, d).as_deref(), Some(&rows[..]));
        assert!(input_rows_from_bytes(&bytes, d + 1).is_none());
        assert!(input_rows_from_bytes(&bytes[..bytes.len() - 1], d).is_none());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(input_rows_from_bytes(&longer, d).is_none());

        // One changed value (step 1's row) changes the claim the auditor checks.
        let mut bad = rows.clone();
        bad[p * d] += 1.0;
        assert_ne!(rows_input_claim(model, r, p, n, &bad).unwrap(), fi);
        // Rows that do not fit the prompt and the steps are refused.
        let short = &rows[..rows.len() - d];
        assert!(
            replay_stage_from_rows(model, r, &req.prompt, tokens, short, &req.sampler).is_err()
        );
        assert!(rows_input_claim(model, r, p, n + 1, rows).is_err());
        assert!(rows_input_claim(model, r, p, 0, &[]).is_err());
    }
    let rows = &split.inputs[1];
    assert!(
        replay_stage_from_rows(model, &ranges[0], &req.prompt, tokens, rows, &req.sampler).is_err()
    );
    assert!(rows_input_claim(model, &ranges[0], p, n, rows).is_err());

    // A replacement rebuilt from the first t tokens, and a session rolled back to step t,
    // hold the rows of those t steps.
    let cap = p + req.max_tokens as usize;
    let t = 4;
    let mut rolled: Vec<StageSession<'_>> = ranges
        .iter()
        .map(|&r| StageSession::with_capacity(model, r, cap).unwrap())
        .collect();
    continue_split(&mut rolled, &req, &split, (0, t + 3));
    for (i, &r) in ranges.iter().enumerate().skip(1) {
        let prefix = &split.inputs[i][..(p + t - 1) * d];
        let (sess, _) =
            StageSession::resume(model, r, &req.prompt, &tokens[..t], &req.sampler, cap).unwrap();
        assert_eq!(sess.input_rows(), prefix, "resumed stage {i}");
        rolled[i].truncate(t);
        assert_eq!(rolled[i].input_rows(), prefix, "rolled-back stage {i}");
    }
}

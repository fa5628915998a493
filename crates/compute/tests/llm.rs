//! SmolLM2-135M-Instruct (Q4_1 GGUF) on the deterministic runtime: fidelity against an
//! independent f32 reference, determinism across threads and SIMD paths, batch
//! invariance (decode = prefill = batched), single-layer re-execution, bad input.
//!
//! The reference (`tests/fixtures/smollm2/`) was written by `scripts/smollm2_reference.py`:
//! numpy in f32 over weights dequantized by llama.cpp's `gguf` package, tokenized by
//! Hugging Face `tokenizers` (Python) — no code shared with the runtime.

mod common;

use std::sync::OnceLock;

use agentic_compute::kernels::set_force_scalar;
use agentic_compute::llm::generate::{GenerateParams, TextStream};
use agentic_compute::llm::llama::SeqInput;
use agentic_compute::llm::{self, KvCache, LlmModel, Sampler};
use agentic_compute::registry;
use agentic_compute::ComputeError;
use common::with_threads;

fn smollm2() -> &'static LlmModel {
    static M: OnceLock<LlmModel> = OnceLock::new();
    M.get_or_init(|| {
        let path = registry::fetch_smollm2(&registry::smollm2_dir()).expect("fetch SmolLM2");
        llm::generate::load_gguf(&path).expect("load SmolLM2")
    })
}

struct Case {
    prompt: String,
    ids: Vec<u32>,
    greedy: Vec<u32>,
}

fn reference() -> (Vec<Case>, Vec<Vec<f32>>) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/smollm2");
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{dir}/reference.json")).unwrap()).unwrap();
    let vocab = j["vocab"].as_u64().unwrap() as usize;
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let cases: Vec<Case> = j["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            prompt: c["prompt"].as_str().unwrap().to_string(),
            ids: ids(&c["ids"]),
            greedy: ids(&c["greedy"]),
        })
        .collect();
    let raw = std::fs::read(format!("{dir}/first_logits.f32")).unwrap();
    let all: Vec<f32> = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let logits = all.chunks(vocab).map(<[f32]>::to_vec).collect();
    (cases, logits)
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        ab += x as f64 * y as f64;
        aa += x as f64 * x as f64;
        bb += y as f64 * y as f64;
    }
    ab / (aa.sqrt() * bb.sqrt())
}

fn greedy(n: usize) -> GenerateParams {
    GenerateParams {
        max_tokens: n,
        sampler: Sampler::Greedy,
    }
}

#[test]
fn matches_an_independent_f32_reference() {
    let m = smollm2();
    let (cases, ref_logits) = reference();
    assert_eq!(cases.len(), 8);
    let mut same_greedy = 0;
    for (c, want) in cases.iter().zip(&ref_logits) {
        let ids = m.tokenizer.encode(&c.prompt).unwrap();
        assert_eq!(ids, c.ids, "token ids of {:?}", c.prompt);
        let mut cache = KvCache::new(m.model.config());
        let steps = [ids.len()];
        let out = m
            .model
            .forward(&mut [SeqInput {
                cache: &mut cache,
                tokens: &ids,
                steps: &steps,
            }])
            .unwrap();
        let cos = cosine(&out[0].logits[0], want);
        eprintln!(
            "{:<40?} cosine {cos:.8}",
            &c.prompt[..c.prompt.len().min(40)]
        );
        assert!(
            cos >= 0.9999,
            "first-token logits cosine {cos} for {:?}",
            c.prompt
        );
        // Without a stop token: the reference generated 32 tokens regardless.
        let mut params = greedy(c.greedy.len());
        params.max_tokens = c.greedy.len();
        let mut m2_tokens = Vec::new();
        let mut cache = KvCache::new(m.model.config());
        let mut input = ids.clone();
        for t in 0..c.greedy.len() {
            let steps = [input.len()];
            let o = m
                .model
                .forward(&mut [SeqInput {
                    cache: &mut cache,
                    tokens: &input,
                    steps: &steps,
                }])
                .unwrap();
            let tok = params.sampler.pick(&o[0].logits[0], t as u64);
            m2_tokens.push(tok);
            input = vec![tok];
        }
        if m2_tokens == c.greedy {
            same_greedy += 1;
        } else {
            eprintln!("greedy differs for {:?}", c.prompt);
        }
    }
    assert!(
        same_greedy >= 7,
        "{same_greedy} of 8 greedy continuations equal"
    );
}

#[test]
fn trace_is_the_same_at_every_thread_count_and_on_the_scalar_path() {
    let m = smollm2();
    let prompt = m
        .encode_prompt("Write one sentence about rivers.", true)
        .unwrap();
    let params = GenerateParams {
        max_tokens: 6,
        sampler: Sampler::Sample {
            seed: 11,
            temperature: 0.9,
            top_k: 40,
            top_p: 0.95,
        },
    };
    let run = |threads: usize| {
        with_threads(threads, || {
            let g = m.generate(&prompt, &params, |_| {}).unwrap();
            (g.tokens.clone(), g.trace_root())
        })
    };
    let base = run(1);
    assert_eq!(run(2), base);
    assert_eq!(run(3), base);
    set_force_scalar(true);
    let scalar = run(2);
    set_force_scalar(false);
    assert_eq!(scalar, base, "forced scalar path");
}

#[test]
fn decode_prefill_and_batches_give_the_same_leaves() {
    let m = smollm2();
    let prompt = m
        .encode_prompt("The three primary colors are", false)
        .unwrap();
    let g = m.generate(&prompt, &greedy(5), |_| {}).unwrap();
    assert_eq!(g.leaves.len(), g.tokens.len());
    // One teacher-forced prefill reproduces every (step, layer) leaf and every token.
    let (leaves, picks) = m.replay(&prompt, &g.tokens, &Sampler::Greedy).unwrap();
    assert_eq!(leaves, g.leaves);
    assert_eq!(picks, g.tokens);

    // In a batch with two other sequences of other lengths and cache states.
    let cfg = m.model.config();
    let other1 = m.encode_prompt("Bonjour, je m'appelle", false).unwrap();
    let other2 = m
        .encode_prompt("fn add(a: u32, b: u32) -> u32 { a + b }", false)
        .unwrap();
    let mut c0 = KvCache::new(cfg);
    let mut c1 = KvCache::new(cfg);
    let mut c2 = KvCache::new(cfg);
    // Sequence 2 already holds a prefix in its cache.
    let (pre, rest) = other2.split_at(5);
    m.model
        .forward(&mut [SeqInput {
            cache: &mut c2,
            tokens: pre,
            steps: &[pre.len()],
        }])
        .unwrap();
    let mut full = prompt.clone();
    full.extend_from_slice(&g.tokens[..g.tokens.len() - 1]);
    let steps: Vec<usize> = (prompt.len()..=full.len()).collect();
    let out = m
        .model
        .forward(&mut [
            SeqInput {
                cache: &mut c1,
                tokens: &other1,
                steps: &[other1.len()],
            },
            SeqInput {
                cache: &mut c0,
                tokens: &full,
                steps: &steps,
            },
            SeqInput {
                cache: &mut c2,
                tokens: rest,
                steps: &[rest.len()],
            },
        ])
        .unwrap();
    assert_eq!(out[1].leaves, g.leaves, "batched with other sequences");
    // And the others equal their solo runs.
    let mut solo = KvCache::new(cfg);
    let alone = m
        .model
        .forward(&mut [SeqInput {
            cache: &mut solo,
            tokens: &other1,
            steps: &[other1.len()],
        }])
        .unwrap();
    assert_eq!(alone[0].leaves, out[0].leaves);
}

#[test]
fn one_block_re_executes_from_its_inputs_for_the_prefix() {
    let m = smollm2();
    let cfg = m.model.config();
    let ids = m
        .encode_prompt("A referee checks one layer", false)
        .unwrap();
    let d = cfg.dim;
    // Capture block 3's input rows (= the output of trace layer 3) by running layers.
    let n = ids.len();
    let mut cache = KvCache::new(cfg);
    let steps: Vec<usize> = (1..=n).collect();
    let out = m
        .model
        .forward(&mut [SeqInput {
            cache: &mut cache,
            tokens: &ids,
            steps: &steps,
        }])
        .unwrap();
    let inputs = m.model.hidden_after(&ids, 3).unwrap();
    assert_eq!(inputs.len(), n * d);
    // Re-execute trace layer 4 (block 3) for the step of the last position only.
    let rows = m.model.reexecute_block(4, &inputs, n - 1..n).unwrap();
    let leaf = llm::llama::rows_hash(4, &rows, d);
    assert_eq!(leaf, out[0].leaves[n - 1][4]);
    // A flipped bit in the inputs changes the leaf.
    let mut bad = inputs.clone();
    bad[0] = f32::from_bits(bad[0].to_bits() ^ 1);
    let rows = m.model.reexecute_block(4, &bad, n - 1..n).unwrap();
    assert_ne!(llm::llama::rows_hash(4, &rows, d), out[0].leaves[n - 1][4]);
}

#[test]
fn bad_input_is_a_typed_error() {
    let m = smollm2();
    assert!(matches!(
        m.encode_prompt("", false),
        Err(ComputeError::EmptyInput(_))
    ));
    let cfg = m.model.config();
    let too_long = vec![1u32; cfg.context + 1];
    assert!(matches!(
        m.generate(&too_long, &greedy(1), |_| {}),
        Err(ComputeError::InputTooLong { .. })
    ));
    let out_of_range = vec![cfg.vocab as u32];
    assert!(matches!(
        m.generate(&out_of_range, &greedy(1), |_| {}),
        Err(ComputeError::TokenOutOfRange { .. })
    ));
    assert!(m.generate(&[1, 2], &greedy(0), |_| {}).is_err());
    let bad_t = GenerateParams {
        max_tokens: 1,
        sampler: Sampler::Sample {
            seed: 0,
            temperature: f32::NAN,
            top_k: 0,
            top_p: 1.0,
        },
    };
    assert!(m.generate(&[1, 2], &bad_t, |_| {}).is_err());
}

#[test]
fn text_streams_whole_characters() {
    let m = smollm2();
    let ids = m.tokenizer.encode("Grüße aus Köln 🌍!").unwrap();
    let mut s = TextStream::default();
    let text: String = ids.iter().map(|&id| s.push(&m.tokenizer, id)).collect();
    assert_eq!(text, "Grüße aus Köln 🌍!");
}

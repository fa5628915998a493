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

/// The SmolLM2 file's bytes with `edit` applied, loaded from memory.
fn load_edited(edit: impl FnOnce(&mut Vec<u8>)) -> Result<LlmModel, ComputeError> {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    let bytes = BYTES.get_or_init(|| {
        smollm2();
        std::fs::read(registry::smollm2_dir().join(registry::SMOLLM2_FILE)).unwrap()
    });
    let mut b = bytes.clone();
    edit(&mut b);
    llm::generate::load_gguf_from(&mut std::io::Cursor::new(b))
}

/// Byte offset just after the tensor-directory entry's name `name`.
fn after_name(b: &[u8], name: &str) -> usize {
    let mut key = (name.len() as u64).to_le_bytes().to_vec();
    key.extend(name.as_bytes());
    b.windows(key.len())
        .position(|w| w == key.as_slice())
        .unwrap()
        + key.len()
}

#[test]
fn corrupt_gguf_files_are_typed_errors_that_say_where() {
    // Truncated: in the header, in the metadata, in the tensor data.
    for cut in [3usize, 100, 1_000_000, 50_000_000] {
        let e = load_edited(|b| b.truncate(cut)).unwrap_err();
        assert!(matches!(e, ComputeError::Gguf { .. }), "cut {cut}: {e}");
    }
    let e = load_edited(|b| b[..4].copy_from_slice(b"GGML")).unwrap_err();
    assert!(e.to_string().contains("not a GGUF file"), "{e}");
    // An unknown tensor type is named.
    let e = load_edited(|b| {
        let at = after_name(b, "blk.0.ffn_up.weight") + 4 + 16;
        b[at..at + 4].copy_from_slice(&12u32.to_le_bytes());
    })
    .unwrap_err();
    assert!(
        e.to_string().contains("Q4_K") && e.to_string().contains("blk.0.ffn_up.weight"),
        "{e}"
    );
    // Wrong shape (same element count, so the data still fits the file).
    let e = load_edited(|b| {
        let at = after_name(b, "blk.0.ffn_up.weight") + 4;
        b[at..at + 8].copy_from_slice(&288u64.to_le_bytes());
        b[at + 8..at + 16].copy_from_slice(&3072u64.to_le_bytes());
    })
    .unwrap_err();
    assert!(
        matches!(e, ComputeError::TensorShape { ref name, .. } if name == "blk.0.ffn_up.weight"),
        "{e}"
    );
    // A missing tensor.
    let e = load_edited(|b| {
        let at = after_name(b, "blk.3.attn_q.weight") - "q.weight".len();
        b[at] = b'X';
    })
    .unwrap_err();
    assert!(
        matches!(e, ComputeError::MissingTensor { ref name } if name == "blk.3.attn_q.weight"),
        "{e}"
    );
    // An architecture the runtime does not implement.
    let e = load_edited(|b| {
        let at = after_name(b, "general.architecture") + 4 + 8;
        b[at..at + 5].copy_from_slice(b"mamba");
    })
    .unwrap_err();
    assert!(
        matches!(e, ComputeError::UnknownArchitecture(ref a) if a == "mamba"),
        "{e}"
    );
}

mod hf {
    //! A small Qwen2-style Hugging Face checkpoint (q/k/v biases, tied embeddings,
    //! bf16 and f16 weights, rotation of halves), built here.
    use super::*;
    use agentic_compute::llm::llama::Llama;
    use common::values;
    use safetensors::tensor::TensorView;
    use safetensors::Dtype;

    fn config(model_type: &str) -> serde_json::Value {
        serde_json::json!({
            "model_type": model_type, "hidden_size": 64, "intermediate_size": 96,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "vocab_size": 100, "max_position_embeddings": 48, "rms_norm_eps": 1e-6,
            "rope_theta": 10000.0, "tie_word_embeddings": true,
        })
    }

    fn checkpoint(skip: Option<&str>, bad_shape: Option<&str>) -> Vec<u8> {
        let mut rng = agentic_compute::models::gpt::SplitMix64::new(9);
        let (d, kv, f, v) = (64usize, 32usize, 96usize, 100usize);
        let mut shapes: Vec<(String, Vec<usize>)> = vec![
            ("model.embed_tokens.weight".into(), vec![v, d]),
            ("model.norm.weight".into(), vec![d]),
        ];
        for l in 0..2 {
            let p = |s: &str| format!("model.layers.{l}.{s}");
            shapes.extend([
                (p("input_layernorm.weight"), vec![d]),
                (p("post_attention_layernorm.weight"), vec![d]),
                (p("self_attn.q_proj.weight"), vec![d, d]),
                (p("self_attn.q_proj.bias"), vec![d]),
                (p("self_attn.k_proj.weight"), vec![kv, d]),
                (p("self_attn.k_proj.bias"), vec![kv]),
                (p("self_attn.v_proj.weight"), vec![kv, d]),
                (p("self_attn.v_proj.bias"), vec![kv]),
                (p("self_attn.o_proj.weight"), vec![d, d]),
                (p("mlp.gate_proj.weight"), vec![f, d]),
                (p("mlp.up_proj.weight"), vec![f, d]),
                (p("mlp.down_proj.weight"), vec![d, f]),
            ]);
        }
        let mut data: Vec<(String, Vec<usize>, Dtype, Vec<u8>)> = Vec::new();
        for (i, (name, mut shape)) in shapes.into_iter().enumerate() {
            if skip == Some(name.as_str()) {
                continue;
            }
            if bad_shape == Some(name.as_str()) {
                shape[0] += 1;
            }
            let n: usize = shape.iter().product();
            let norm = name.contains("norm");
            let vals: Vec<f32> = values(&mut rng, n, if norm { 0.1 } else { 0.5 })
                .into_iter()
                .map(|x| if norm { 1.0 + x } else { x })
                .collect();
            // Alternate storage formats: bf16, f16, f32.
            let (dtype, bytes) = match i % 3 {
                0 => (
                    Dtype::BF16,
                    vals.iter()
                        .flat_map(|x| x.to_le_bytes()[2..].to_vec())
                        .collect(),
                ),
                1 => (
                    Dtype::F32,
                    vals.iter().flat_map(|x| x.to_le_bytes()).collect(),
                ),
                _ => (
                    Dtype::F16,
                    vals.iter()
                        .flat_map(|x| f32_to_f16(*x).to_le_bytes())
                        .collect(),
                ),
            };
            data.push((name, shape, dtype, bytes));
        }
        let views: Vec<(String, TensorView<'_>)> = data
            .iter()
            .map(|(n, s, dt, b)| (n.clone(), TensorView::new(*dt, s.clone(), b).unwrap()))
            .collect();
        safetensors::serialize(views, None).unwrap()
    }

    /// Round to nearest f16 for normal values of moderate size (test data only).
    fn f32_to_f16(x: f32) -> u16 {
        let b = x.to_bits();
        let sign = ((b >> 31) as u16) << 15;
        let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
        if exp <= 0 {
            return sign;
        }
        let man = ((b >> 13) & 0x3ff) as u16;
        sign | ((exp as u16) << 10) | man
    }

    #[test]
    fn a_qwen2_checkpoint_runs_batch_invariantly() {
        let m = Llama::from_safetensors(&config("qwen2"), &checkpoint(None, None)).unwrap();
        let cfg = m.config();
        assert!(cfg.qkv_bias && cfg.tied_embeddings);
        let ids: Vec<u32> = (0..12).map(|i| (i * 7 + 3) % 100).collect();
        // Token by token with the cache vs one prefill cut into the same steps.
        let mut cache = KvCache::new(cfg);
        let mut stepwise = Vec::new();
        for i in 0..ids.len() {
            let o = m
                .forward(&mut [SeqInput {
                    cache: &mut cache,
                    tokens: &ids[i..i + 1],
                    steps: &[1],
                }])
                .unwrap();
            stepwise.extend(o[0].leaves.clone());
        }
        let steps: Vec<usize> = (1..=ids.len()).collect();
        let mut fresh = KvCache::new(cfg);
        let pre = m
            .forward(&mut [SeqInput {
                cache: &mut fresh,
                tokens: &ids,
                steps: &steps,
            }])
            .unwrap();
        assert_eq!(pre[0].leaves, stepwise);
        let threaded = with_threads(3, || {
            let mut c = KvCache::new(cfg);
            m.forward(&mut [SeqInput {
                cache: &mut c,
                tokens: &ids,
                steps: &steps,
            }])
            .unwrap()
        });
        assert_eq!(threaded[0].leaves, stepwise);
        // Context overflow is refused before the cache changes.
        let long = vec![1u32; 49];
        let mut c = KvCache::new(cfg);
        assert!(matches!(
            m.forward(&mut [SeqInput {
                cache: &mut c,
                tokens: &long,
                steps: &[49]
            }]),
            Err(ComputeError::InputTooLong { len: 49, max: 48 })
        ));
        assert!(c.is_empty());
    }

    #[test]
    fn bad_checkpoints_are_typed_errors() {
        let name = "model.layers.1.self_attn.k_proj.bias";
        assert!(matches!(
            Llama::from_safetensors(&config("qwen2"), &checkpoint(Some(name), None)),
            Err(ComputeError::MissingTensor { name: n }) if n == name
        ));
        let name = "model.layers.0.mlp.up_proj.weight";
        assert!(matches!(
            Llama::from_safetensors(&config("qwen2"), &checkpoint(None, Some(name))),
            Err(ComputeError::TensorShape { name: n, .. }) if n == name
        ));
        assert!(matches!(
            Llama::from_safetensors(&config("phi3"), &checkpoint(None, None)),
            Err(ComputeError::UnknownArchitecture(a)) if a == "phi3"
        ));
        let mut bad = config("llama");
        bad["num_key_value_heads"] = 3.into();
        assert!(matches!(
            Llama::from_safetensors(&bad, &checkpoint(None, None)),
            Err(ComputeError::InvalidConfig(_))
        ));
        assert!(Llama::from_safetensors(&config("qwen2"), b"not safetensors").is_err());
    }
}

/// The fuzz seed (a one-block Llama written by llama.cpp's `gguf` package with Q4_0,
/// Q4_1, Q8_0, F16 and F32 tensors) loads, tokenizes and generates deterministically.
#[test]
fn the_fuzz_seed_is_a_working_model() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/tiny-llama.gguf");
    let m = llm::generate::load_gguf(std::path::Path::new(path)).unwrap();
    assert_eq!(m.tokenizer.encode("ab a").unwrap(), vec![4, 6]);
    let params = GenerateParams {
        max_tokens: 5,
        sampler: Sampler::Sample {
            seed: 1,
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
        },
    };
    let g = m.generate(&[1, 2, 3], &params, |_| {}).unwrap();
    let (leaves, picks) = m.replay(&[1, 2, 3], &g.tokens, &params.sampler).unwrap();
    assert_eq!((leaves, picks), (g.leaves.clone(), g.tokens.clone()));
    set_force_scalar(true);
    let scalar = m.generate(&[1, 2, 3], &params, |_| {}).unwrap();
    set_force_scalar(false);
    assert_eq!(scalar.trace_root(), g.trace_root());
}

/// Rolling a cache back to an earlier position and decoding again gives the same leaves
/// (a stage resuming from the last agreed step).
#[test]
fn a_truncated_cache_decodes_the_same_steps_again() {
    let m = smollm2();
    let cfg = m.model.config();
    let prompt = m.encode_prompt("Seven plus five is", false).unwrap();
    let g = m.generate(&prompt, &greedy(6), |_| {}).unwrap();
    let mut cache = KvCache::new(cfg);
    let mut full = prompt.clone();
    full.extend_from_slice(&g.tokens[..g.tokens.len() - 1]);
    let steps: Vec<usize> = (prompt.len()..=full.len()).collect();
    m.model
        .forward(&mut [SeqInput {
            cache: &mut cache,
            tokens: &full,
            steps: &steps,
        }])
        .unwrap();
    // Back to just after step 2 (prompt + 2 fed tokens), then decode steps 3.. again.
    let keep = prompt.len() + 2;
    cache.truncate(keep);
    assert_eq!(cache.positions(), keep);
    for (t, &tok) in full[keep..].iter().enumerate() {
        let o = m
            .model
            .forward(&mut [SeqInput {
                cache: &mut cache,
                tokens: &[tok],
                steps: &[1],
            }])
            .unwrap();
        assert_eq!(o[0].leaves[0], g.leaves[3 + t], "step {}", 3 + t);
    }
}

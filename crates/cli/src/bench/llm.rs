//! `agentic bench llm`: SmolLM2-135M-Instruct (Q4_1 GGUF) prefill and decode tokens per
//! second, ours against candle's quantized Llama on the same file in the same run.
//!
//! * Prompt: 128 tokens of fixed English text (the same ids for both engines).
//! * Prefill: one forward pass over the 128 tokens into an empty KV cache (ours also
//!   hashes every layer's rows into the trace, as a provider must).
//! * Decode: batch 1, 128 new tokens after the prompt, greedy, one forward pass per
//!   token with the KV cache; stop tokens are ignored so both engines do 128 steps.
//! * candle: `candle_transformers::models::quantized_llama::ModelWeights` on the CPU
//!   device; it quantizes activations to 8 bits for integer dot products, ours keeps them
//!   f32 (the child reports how many of the 128 greedy tokens the two engines agree on).
//! * Each (engine, threads) runs in a child process with `RAYON_NUM_THREADS` set (rayon
//!   and candle size their pools once per process); the best of `--reps` passes after a
//!   warm-up. Peak resident memory is the child's `VmHWM` (Linux).
//!
//! Top-level `ratio` = our decode tokens/s / candle's, on 2 threads.

use std::time::Instant;

use agentic_compute::llm::generate::load_gguf;
use agentic_compute::llm::gguf::Gguf;
use agentic_compute::llm::llama::SeqInput;
use agentic_compute::llm::vocab;
use agentic_compute::llm::{KvCache, Sampler};
use agentic_compute::registry;
use anyhow::{bail, Context};
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct Args {
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
    /// Prompt tokens for the prefill.
    #[arg(long, default_value_t = 128)]
    pub prompt_tokens: usize,
    /// New tokens decoded.
    #[arg(long, default_value_t = 128)]
    pub new_tokens: usize,
    /// Timed passes per engine and thread count; the best is reported.
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Internal: run one engine (`ours`, `candle`) in this process.
    #[arg(long, hide = true)]
    pub child: Option<String>,
}

const THREADS: [usize; 2] = [1, 2];

const TEXT: &str =
    "The network sells spare compute to anyone who needs it. A provider bonds stake, \
runs the job, and commits to a trace of every layer; an auditor re-runs a sample of jobs and a \
referee settles any dispute by re-executing a single layer. Requesters pay for the operations \
they use, agents spend under mandates that cap their losses, and token holders govern the \
parameters. Models can be split across providers as pipeline stages, each holding a range of \
layers and a cache of keys and values, so that text streams from the last stage as soon as \
each token exists. ";

pub fn run(args: &Args) -> anyhow::Result<()> {
    super::require_baselines("llm", "candle")?;
    if let Some(engine) = &args.child {
        let v = child(engine, args)?;
        println!("{v}");
        return Ok(());
    }
    let path = registry::fetch_smollm2(&registry::smollm2_dir())
        .context("SmolLM2 is needed for this bench")?;
    let file_bytes = std::fs::metadata(&path)?.len();
    let mut rows = Vec::new();
    for t in THREADS {
        let mut ours = spawn("ours", t, args)?;
        let mut candle = spawn("candle", t, args)?;
        let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(0.0);
        let same_prefix = ours["tokens"]
            .as_array()
            .into_iter()
            .flatten()
            .zip(candle["tokens"].as_array().into_iter().flatten())
            .take_while(|(a, b)| a == b)
            .count();
        for v in [&mut ours, &mut candle] {
            if let Some(o) = v.as_object_mut() {
                o.remove("tokens");
            }
        }
        rows.push(json!({
            "greedy_tokens_equal_prefix": same_prefix,
            "threads": t,
            "ours": ours,
            "candle": candle,
            "prefill_ratio": f(&ours, "prefill_tokens_per_s") / f(&candle, "prefill_tokens_per_s").max(1e-9),
            "decode_ratio": f(&ours, "decode_tokens_per_s") / f(&candle, "decode_tokens_per_s").max(1e-9),
        }));
    }
    let two = rows
        .iter()
        .find(|r| r["threads"] == 2)
        .cloned()
        .unwrap_or_default();
    let ratio = two["decode_ratio"].as_f64().unwrap_or(0.0);
    let kv = two["ours"]["kv_cache_bytes"].as_u64().unwrap_or(0);
    let rss = rows
        .iter()
        .filter_map(|r| r["ours"]["peak_rss_bytes"].as_u64())
        .max()
        .unwrap_or(0);
    let budget = 1.5 * file_bytes as f64 + kv as f64;
    let report = json!({
        "bench": "llm",
        "workload": {
            "model": "smollm2-135m (SmolLM2-135M-Instruct, Q4_1 GGUF)",
            "gguf_bytes": file_bytes,
            "prompt_tokens": args.prompt_tokens,
            "new_tokens": args.new_tokens,
            "batch": 1,
            "sampling": "greedy",
        },
        "runs": rows,
        "memory": {
            "ours_peak_rss_bytes": rss,
            "kv_cache_bytes": kv,
            "budget_bytes": budget as u64,
            "peak_over_gguf_plus_kv": (rss as f64 - kv as f64) / file_bytes as f64,
            "within_budget": (rss as f64) <= budget,
        },
        "ratio": ratio,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "smollm2-135m, prompt {} tokens, {} new tokens (batch 1, greedy):",
            args.prompt_tokens, args.new_tokens
        );
        for r in &rows {
            let g = |e: &str, k: &str| r[e][k].as_f64().unwrap_or(0.0);
            println!(
                "  {} thread(s): prefill ours {:>7.1} tok/s  candle {:>7.1} tok/s | decode ours {:>6.1} tok/s  candle {:>6.1} tok/s  (ratio {:.2})",
                r["threads"],
                g("ours", "prefill_tokens_per_s"),
                g("candle", "prefill_tokens_per_s"),
                g("ours", "decode_tokens_per_s"),
                g("candle", "decode_tokens_per_s"),
                r["decode_ratio"].as_f64().unwrap_or(0.0)
            );
        }
        println!(
            "  peak RSS ours {:.1} MiB (budget 1.5 × GGUF + KV = {:.1} MiB)",
            rss as f64 / 1048576.0,
            budget / 1048576.0
        );
        println!("ratio (our decode / candle's, 2 threads): {ratio:.2}");
    }
    Ok(())
}

fn spawn(engine: &str, threads: usize, args: &Args) -> anyhow::Result<Value> {
    let child_args: [String; 6] = [
        "--prompt-tokens".into(),
        args.prompt_tokens.to_string(),
        "--new-tokens".into(),
        args.new_tokens.to_string(),
        "--reps".into(),
        args.reps.to_string(),
    ];
    super::spawn_child("llm", engine, threads, &child_args)
}

/// Peak resident set size of this process (Linux `VmHWM`), in bytes.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// The prompt: `n` token ids of [`TEXT`] repeated.
fn prompt_ids(n: usize) -> anyhow::Result<Vec<u32>> {
    let path = registry::smollm2_dir().join(registry::SMOLLM2_FILE);
    let mut r = std::io::BufReader::new(std::fs::File::open(&path)?);
    let g = Gguf::parse(&mut r)?;
    let one = vocab::from_gguf(&g)?.tokenizer.encode(TEXT)?;
    anyhow::ensure!(!one.is_empty(), "empty prompt");
    Ok(one.iter().copied().cycle().take(n).collect())
}

fn child(engine: &str, args: &Args) -> anyhow::Result<Value> {
    let prompt = prompt_ids(args.prompt_tokens)?;
    let reps = args.reps.max(1);
    let path = registry::smollm2_dir().join(registry::SMOLLM2_FILE);
    match engine {
        "ours" => {
            let m = load_gguf(&path)?;
            let cfg = m.model.config();
            let prefill = |cache: &mut KvCache| -> anyhow::Result<Vec<f32>> {
                let steps = [prompt.len()];
                let mut o = m.model.forward(&mut [SeqInput {
                    cache,
                    tokens: &prompt,
                    steps: &steps,
                }])?;
                Ok(o.pop()
                    .and_then(|o| o.logits.into_iter().next())
                    .unwrap_or_default())
            };
            let mut best_prefill = f64::INFINITY;
            let mut best_decode = f64::INFINITY;
            let mut tokens = Vec::new();
            let mut kv_bytes = 0;
            for _ in 0..reps + 1 {
                let mut cache = KvCache::with_capacity(cfg, prompt.len() + args.new_tokens);
                let t0 = Instant::now();
                let mut logits = prefill(&mut cache)?;
                best_prefill = best_prefill.min(t0.elapsed().as_secs_f64());
                let t1 = Instant::now();
                tokens.clear();
                for step in 0..args.new_tokens {
                    let tok = Sampler::Greedy.pick(&logits, step as u64);
                    tokens.push(tok);
                    if step + 1 == args.new_tokens {
                        break;
                    }
                    let input = [tok];
                    let mut o = m.model.forward(&mut [SeqInput {
                        cache: &mut cache,
                        tokens: &input,
                        steps: &[1],
                    }])?;
                    logits = o
                        .pop()
                        .and_then(|o| o.logits.into_iter().next())
                        .unwrap_or_default();
                }
                best_decode = best_decode.min(t1.elapsed().as_secs_f64());
                kv_bytes = cache.bytes();
            }
            Ok(json!({
                "engine": "ours",
                "prefill_tokens_per_s": prompt.len() as f64 / best_prefill,
                "decode_tokens_per_s": args.new_tokens as f64 / best_decode,
                "weight_bytes": m.model.weight_bytes(),
                "kv_cache_bytes": kv_bytes,
                "peak_rss_bytes": peak_rss(),
                "tokens": tokens,
            }))
        }
        "candle" => candle_child(&path, &prompt, args, reps),
        other => bail!("unknown engine {other}"),
    }
}

#[cfg(not(feature = "baselines"))]
fn candle_child(_: &std::path::Path, _: &[u32], _: &Args, _: usize) -> anyhow::Result<Value> {
    super::require_baselines("llm", "candle").map(|()| Value::Null)
}

#[cfg(feature = "baselines")]
fn candle_child(
    path: &std::path::Path,
    prompt: &[u32],
    args: &Args,
    reps: usize,
) -> anyhow::Result<Value> {
    use candle_core::quantized::gguf_file;
    use candle_core::{Device, Tensor};
    use candle_transformers::models::quantized_llama::ModelWeights;

    let dev = Device::Cpu;
    let load = || -> anyhow::Result<ModelWeights> {
        let mut f = std::fs::File::open(path)?;
        let ct = gguf_file::Content::read(&mut f)?;
        Ok(ModelWeights::from_gguf(ct, &mut f, &dev)?)
    };
    let argmax = |l: &Tensor| -> anyhow::Result<(u32, Vec<f32>)> {
        let v: Vec<f32> = l.squeeze(0)?.to_vec1()?;
        Ok((Sampler::Greedy.pick(&v, 0), v))
    };
    let mut best_prefill = f64::INFINITY;
    let mut best_decode = f64::INFINITY;
    let mut tokens = Vec::new();
    for _ in 0..reps + 1 {
        // A fresh model clears the KV cache.
        let mut model = load()?;
        let input = Tensor::new(prompt, &dev)?.unsqueeze(0)?;
        let t0 = Instant::now();
        let logits = model.forward(&input, 0)?;
        let (mut tok, _) = argmax(&logits)?;
        best_prefill = best_prefill.min(t0.elapsed().as_secs_f64());
        let t1 = Instant::now();
        tokens.clear();
        for step in 0..args.new_tokens {
            tokens.push(tok);
            if step + 1 == args.new_tokens {
                break;
            }
            let input = Tensor::new(&[tok], &dev)?.unsqueeze(0)?;
            let logits = model.forward(&input, prompt.len() + step)?;
            tok = argmax(&logits)?.0;
        }
        best_decode = best_decode.min(t1.elapsed().as_secs_f64());
    }
    Ok(json!({
        "engine": "candle",
        "prefill_tokens_per_s": prompt.len() as f64 / best_prefill,
        "decode_tokens_per_s": args.new_tokens as f64 / best_decode,
        "peak_rss_bytes": peak_rss(),
        "tokens": tokens,
    }))
}

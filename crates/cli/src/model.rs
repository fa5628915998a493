//! `agentic model run`: run a model locally with the deterministic runtime and print
//! its output, the metered operations (per layer and total) and the trace root.
//!
//! The trace root is the value a provider commits on chain for this job; it is the
//! same on every machine and at every thread count (`RAYON_NUM_THREADS`), with SIMD or
//! the forced scalar path (`AGENTIC_FORCE_SCALAR=1`).

use std::path::Path;

use agentic_compute::models::{GenerateConfig, Sampling};
use agentic_compute::registry::{self, LoadedModel};
use agentic_compute::{Activation, Model as ComputeModel, RunOutput};
use anyhow::Context;
use clap::Subcommand;
use serde_json::json;

#[derive(Subcommand)]
pub enum Model {
    /// Run a model locally: output, metered operations, trace root.
    Run(RunArgs),
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// Registry name (`smollm2-135m`, `tiny-gpt`, `minilm`), a `.gguf` file, or a
    /// directory with config.json + model.safetensors (+ tokenizer.json).
    #[arg(long, default_value = "tiny-gpt")]
    pub model: String,
    /// The input text, or a file: a prompt for a decoder, one sentence per line for an
    /// encoder, rows of comma/space-separated numbers for an MLP.
    #[arg(long)]
    pub input: String,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
    /// Decoder: maximum number of new tokens.
    #[arg(long, default_value_t = 64)]
    pub max_tokens: usize,
    /// Decoder: sampling seed (sampling is a pure function of it).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Decoder: pick the most likely token instead of sampling.
    #[arg(long)]
    pub greedy: bool,
    /// Decoder: sampling temperature.
    #[arg(long, default_value_t = agentic_compute::llm::Sampler::DEFAULT_TEMPERATURE)]
    pub temperature: f32,
    /// Decoder: sample among the k most likely tokens (0 = all).
    #[arg(long, default_value_t = agentic_compute::llm::Sampler::DEFAULT_TOP_K)]
    pub top_k: usize,
    /// LLM: sample within the smallest set of tokens holding this much probability.
    #[arg(long, default_value_t = agentic_compute::llm::Sampler::DEFAULT_TOP_P)]
    pub top_p: f32,
    /// LLM: wrap the input as one user turn of the model's chat template.
    #[arg(long)]
    pub chat: bool,
}

pub fn run(model: Model) -> anyhow::Result<()> {
    match model {
        Model::Run(args) => run_model(&args),
    }
}

fn run_model(args: &RunArgs) -> anyhow::Result<()> {
    if registry::is_llm(&args.model) {
        return crate::llm_run::run(args);
    }
    anyhow::ensure!(
        !args.chat,
        "--chat applies to LLMs (smollm2-135m, a .gguf file …)"
    );
    let loaded =
        registry::load(&args.model).with_context(|| format!("loading `{}`", args.model))?;
    let input_text = if Path::new(&args.input).is_file() {
        std::fs::read_to_string(&args.input).with_context(|| format!("reading {}", args.input))?
    } else {
        args.input.clone()
    };
    let (output_json, output_human, run) = match &loaded.model {
        ComputeModel::Gpt(gpt) => {
            let tok = loaded
                .tokenizer
                .as_ref()
                .context("this decoder has no tokenizer")?;
            let prompt = tok.encode(&input_text)?;
            let sampling = if args.greedy {
                Sampling::Greedy
            } else {
                Sampling::Seeded {
                    seed: args.seed,
                    temperature: args.temperature,
                    top_k: (args.top_k > 0).then_some(args.top_k),
                }
            };
            let cfg = GenerateConfig {
                max_tokens: args.max_tokens,
                sampling,
                stop_token: loaded.stop_token,
            };
            let g = gpt.generate(&prompt, &cfg)?;
            let text = tok.decode(&g.tokens)?;
            let j = json!({
                "prompt_tokens": prompt.len(),
                "generated_tokens": g.tokens.len(),
                "tokens": g.tokens,
                "text": text,
                "stop": format!("{:?}", g.stop),
                "sampling": match sampling {
                    Sampling::Greedy => json!({"greedy": true}),
                    Sampling::Seeded { seed, temperature, top_k } =>
                        json!({"seed": seed, "temperature": temperature, "top_k": top_k}),
                },
            });
            let h = format!(
                "{input_text}{text}\n({} prompt + {} generated tokens, stop: {:?})",
                prompt.len(),
                g.tokens.len(),
                g.stop
            );
            (j, h, g.run)
        }
        ComputeModel::Bert(_) => {
            let lines: Vec<&str> = input_text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            anyhow::ensure!(!lines.is_empty(), "no sentence in the input");
            let (vecs, run) = loaded.embed(&lines)?;
            let dim = vecs.first().map_or(0, Vec::len);
            let j = json!({
                "sentences": lines.len(),
                "dim": dim,
                "embeddings": vecs,
            });
            let mut h = format!(
                "{} sentence embedding(s), dim {dim}, L2-normalized\n",
                lines.len()
            );
            for (s, v) in lines.iter().zip(&vecs) {
                let head: Vec<String> = v.iter().take(6).map(|x| format!("{x:+.4}")).collect();
                h.push_str(&format!("  [{} …]  {s}\n", head.join(" ")));
            }
            (j, h.trim_end().to_string(), run)
        }
        ComputeModel::Mlp(_) => {
            let rows: Vec<Vec<f32>> = input_text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    l.split(|c: char| c == ',' || c.is_whitespace())
                        .filter(|t| !t.is_empty())
                        .map(|t| {
                            t.parse::<f32>()
                                .with_context(|| format!("not a number: {t}"))
                        })
                        .collect::<anyhow::Result<Vec<f32>>>()
                })
                .collect::<anyhow::Result<_>>()?;
            let width = rows.first().map_or(0, Vec::len);
            anyhow::ensure!(
                rows.iter().all(|r| r.len() == width),
                "rows of different widths"
            );
            let n = rows.len();
            let input = Activation::features(n, width, rows.concat())?;
            let run = loaded.model.run(input)?;
            let out: Vec<Vec<f32>> = run
                .output
                .tensor()
                .data()
                .chunks(run.output.width().max(1))
                .map(<[f32]>::to_vec)
                .collect();
            let h = out
                .iter()
                .map(|r| format!("{r:?}"))
                .collect::<Vec<_>>()
                .join("\n");
            (json!({ "rows": out }), h, run)
        }
    };
    print_report(&loaded, args, output_json, &output_human, &run)
}

fn print_report(
    loaded: &LoadedModel,
    args: &RunArgs,
    output_json: serde_json::Value,
    output_human: &str,
    run: &RunOutput,
) -> anyhow::Result<()> {
    let m = &loaded.model;
    let per_layer: Vec<_> = run
        .ops
        .iter()
        .enumerate()
        .map(|(i, ops)| (m.layer_name(run.trace.first_layer + i), *ops))
        .collect();
    if args.json {
        let j = json!({
            "model": loaded.name,
            "architecture": m.architecture(),
            "layers": m.layers(),
            "output": output_json,
            "ops": {
                "op_model_version": agentic_compute::metering::OP_MODEL_VERSION,
                "per_layer": per_layer.iter().map(|(n, o)| json!({"layer": n, "ops": o})).collect::<Vec<_>>(),
                "total": run.total_ops(),
            },
            "trace": {
                "input_hash": run.trace.input_hash.to_hex(),
                "layer_hashes": run.trace.layer_hashes.iter().map(|h| h.to_hex()).collect::<Vec<_>>(),
                "root": run.trace.root.to_hex(),
            },
        });
        println!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(());
    }
    println!(
        "model: {} ({}, {} layers)",
        loaded.name,
        m.architecture(),
        m.layers()
    );
    println!("\n{output_human}\n");
    println!(
        "metered operations (op model v{}):",
        agentic_compute::metering::OP_MODEL_VERSION
    );
    for ((name, ops), h) in per_layer.iter().zip(&run.trace.layer_hashes) {
        println!("  {name:<16} {ops:>16}   {}", &h.to_hex()[..16]);
    }
    println!("  {:<16} {:>16}", "total", run.total_ops());
    println!("\ntrace root: {}", run.trace.root);
    Ok(())
}

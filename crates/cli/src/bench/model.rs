//! `agentic bench model`: MiniLM sentence embeddings per second, ours against candle's
//! BERT on the same sentences in the same run, and decoder tokens per second.
//!
//! * Workload: 512 short English sentences (built from fixed templates), embedded in
//!   batches of 32 — the setting of the sentence-transformers baseline in
//!   `BASELINES.md` (196 sentences/s on 1 thread, 226 on 2).
//! * Ours: `LoadedModel::embed` — tokenization, the deterministic forward pass over a
//!   ragged batch, mean pooling, L2 normalization, *and* the trace (a blake3 hash per
//!   layer and the Merkle root), i.e. exactly what a provider runs for a job.
//! * candle: `candle_transformers::models::bert::BertModel` on the same token ids,
//!   padded to the batch's longest sentence with an attention mask, then masked mean
//!   pooling and L2 normalization with candle ops.
//! * Decoder: the shipped `tiny-gpt` generating greedily to its 64-token context, the
//!   committed full pass included; plus a real GPT-2 if `AGENTIC_GPT2_DIR` names one.
//!
//! Each (engine, thread count) runs in a child process of this binary with
//! `RAYON_NUM_THREADS` set (rayon and candle size their pools once per process); the
//! figure is the best of `--reps` timed passes after one warm-up. The candle child
//! also embeds the first batch with ours and reports the smallest cosine between the
//! two, so the comparison is known to be of equal work.
//!
//! Top-level `ratio` = ours / candle sentences per second on 2 threads.

use std::time::Instant;

use agentic_compute::models::{GenerateConfig, Sampling};
use agentic_compute::registry::{self, LoadedModel};
use agentic_compute::Model;
use anyhow::{bail, Context};
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct Args {
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
    /// Number of sentences.
    #[arg(long, default_value_t = 512)]
    pub sentences: usize,
    /// Sentences per batch.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Timed passes per engine and thread count; the best is reported.
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Internal: run one engine (`ours`, `candle`, `gpt`) in this process.
    #[arg(long, hide = true)]
    pub child: Option<String>,
}

const THREADS: [usize; 2] = [1, 2];

pub fn run(args: &Args) -> anyhow::Result<()> {
    super::require_baselines("model", "candle")?;
    if let Some(engine) = &args.child {
        let v = child(engine, args)?;
        println!("{v}");
        return Ok(());
    }
    // Make sure MiniLM is on disk before the children need it.
    let dir = registry::minilm_dir();
    registry::fetch_minilm(&dir).context("MiniLM is needed for this bench")?;

    let mut minilm = Vec::new();
    let mut agreement = f64::INFINITY;
    for t in THREADS {
        let ours = spawn("ours", t, args)?;
        let candle = spawn("candle", t, args)?;
        let o = ours["sentences_per_s"].as_f64().unwrap_or(0.0);
        let c = candle["sentences_per_s"].as_f64().unwrap_or(0.0);
        agreement = agreement.min(candle["min_cosine_vs_ours"].as_f64().unwrap_or(f64::NAN));
        minilm.push(json!({
            "threads": t,
            "ours_sentences_per_s": o,
            "candle_sentences_per_s": c,
            "ratio": if c > 0.0 { o / c } else { 0.0 },
            "ours_trace_root_first_batch": ours["trace_root_first_batch"],
        }));
    }
    let mut decoder = Vec::new();
    for t in THREADS {
        let g = spawn("gpt", t, args)?;
        if let Some(list) = g["models"].as_array() {
            for m in list {
                let mut m = m.clone();
                m["threads"] = json!(t);
                decoder.push(m);
            }
        }
    }
    let ratio = minilm
        .iter()
        .find(|e| e["threads"] == 2)
        .and_then(|e| e["ratio"].as_f64())
        .unwrap_or(0.0);
    let report = json!({
        "bench": "model",
        "workload": {"model": "all-MiniLM-L6-v2", "sentences": args.sentences, "batch": args.batch},
        "minilm": minilm,
        "min_cosine_ours_vs_candle": agreement,
        "decoder": decoder,
        "baseline_reference": "sentence-transformers (PyTorch CPU): 196 sentences/s on 1 thread, 226 on 2 (BASELINES.md)",
        "ratio": ratio,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "MiniLM embeddings, {} sentences, batch {}:",
            args.sentences, args.batch
        );
        for e in report["minilm"].as_array().into_iter().flatten() {
            println!(
                "  {} thread(s): ours {:>7.1}/s   candle {:>7.1}/s   ratio {:.2}",
                e["threads"],
                e["ours_sentences_per_s"].as_f64().unwrap_or(0.0),
                e["candle_sentences_per_s"].as_f64().unwrap_or(0.0),
                e["ratio"].as_f64().unwrap_or(0.0)
            );
        }
        println!("  min cosine ours vs candle: {agreement:.6}");
        println!("decoder tokens per second:");
        for d in report["decoder"].as_array().into_iter().flatten() {
            println!(
                "  {} on {} thread(s): {:.1} tokens/s",
                d["model"],
                d["threads"],
                d["tokens_per_s"].as_f64().unwrap_or(0.0)
            );
        }
        println!("ratio (ours / candle, 2 threads): {ratio:.2}");
    }
    Ok(())
}

fn spawn(engine: &str, threads: usize, args: &Args) -> anyhow::Result<Value> {
    let child_args: [String; 6] = [
        "--sentences".into(),
        args.sentences.to_string(),
        "--batch".into(),
        args.batch.to_string(),
        "--reps".into(),
        args.reps.to_string(),
    ];
    super::spawn_child("model", engine, threads, &child_args)
}

/// 512 (or `n`) short sentences from fixed templates.
fn sentences(n: usize) -> Vec<String> {
    const SUBJ: [&str; 8] = [
        "The provider",
        "An autonomous agent",
        "My neighbour",
        "The validator",
        "A small startup",
        "The old fox",
        "Our research team",
        "The city council",
    ];
    const VERB: [&str; 8] = [
        "rented",
        "verified",
        "painted",
        "discussed",
        "bought",
        "ignored",
        "measured",
        "shipped",
    ];
    const OBJ: [&str; 8] = [
        "spare GPU time overnight.",
        "the blue house by the river.",
        "a new embedding model.",
        "three loaves of fresh bread.",
        "the results of the audit.",
        "an unusually long contract.",
        "the tiny garden behind the school.",
        "every block since Tuesday.",
    ];
    (0..n)
        .map(|i| {
            format!(
                "{} {} {}",
                SUBJ[i % 8],
                VERB[(i / 8) % 8],
                OBJ[(i / 64 + i) % 8]
            )
        })
        .collect()
}

fn best_of<T>(reps: usize, mut f: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<(f64, T)> {
    let mut last = f()?; // warm-up
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        last = f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok((best, last))
}

fn child(engine: &str, args: &Args) -> anyhow::Result<Value> {
    let texts = sentences(args.sentences);
    let batches: Vec<Vec<&str>> = texts
        .chunks(args.batch.max(1))
        .map(|c| c.iter().map(String::as_str).collect())
        .collect();
    match engine {
        "ours" => {
            let m = registry::load("minilm")?;
            let (secs, root) = best_of(args.reps, || {
                let mut first = None;
                for b in &batches {
                    let (_, run) = m.embed(b)?;
                    first.get_or_insert(run.trace.root);
                }
                Ok(first)
            })?;
            Ok(json!({
                "sentences_per_s": texts.len() as f64 / secs,
                "trace_root_first_batch": root.map(|r| r.to_hex()),
            }))
        }
        "candle" => candle_engine(args, &texts, &batches),
        "gpt" => {
            let mut models = vec![("tiny-gpt".to_string(), registry::load("tiny-gpt")?)];
            if let Some(d) = std::env::var_os("AGENTIC_GPT2_DIR") {
                let p = std::path::PathBuf::from(d);
                models.push((p.display().to_string(), registry::load_dir(&p)?));
            }
            let mut out = Vec::new();
            for (name, m) in &models {
                out.push(gpt_tokens_per_s(name, m, args.reps)?);
            }
            Ok(json!({ "models": out }))
        }
        other => bail!("unknown bench engine `{other}`"),
    }
}

/// candle's BERT on the same sentences, and the least cosine between its embeddings of
/// the first batch and ours.
#[cfg(feature = "baselines")]
fn candle_engine(args: &Args, texts: &[String], batches: &[Vec<&str>]) -> anyhow::Result<Value> {
    use candle_core::{DType, Device};
    use candle_nn::VarBuilder;
    use candle_transformers::models::bert::{BertModel, Config as BertConfig};
    let ours = registry::load("minilm")?;
    let dir = registry::minilm_dir();
    let cfg: BertConfig = serde_json::from_slice(&std::fs::read(dir.join("config.json"))?)?;
    let weights = std::fs::read(dir.join("model.safetensors"))?;
    let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)?;
    let model = BertModel::load(vb, &cfg)?;
    let (secs, _) = best_of(args.reps, || {
        for b in batches {
            candle_embed(&model, &ours, b)?;
        }
        Ok(())
    })?;
    // Equal work: compare the first batch's embeddings.
    let first = batches.first().context("no sentence")?;
    let theirs = candle_embed(&model, &ours, first)?;
    let (mine, _) = ours.embed(first)?;
    let min_cos = mine
        .iter()
        .zip(&theirs)
        .map(|(a, b)| {
            let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            dot / (na * nb)
        })
        .fold(f64::INFINITY, f64::min);
    Ok(json!({
        "sentences_per_s": texts.len() as f64 / secs,
        "min_cosine_vs_ours": min_cos,
    }))
}

#[cfg(not(feature = "baselines"))]
fn candle_engine(_: &Args, _: &[String], _: &[Vec<&str>]) -> anyhow::Result<Value> {
    super::require_baselines("model", "candle").map(|()| Value::Null)
}

fn gpt_tokens_per_s(name: &str, m: &LoadedModel, reps: usize) -> anyhow::Result<Value> {
    let Model::Gpt(gpt) = &m.model else {
        bail!("`{name}` is not a decoder")
    };
    let tok = m.tokenizer.as_ref().context("decoder without tokenizer")?;
    let prompt = tok.encode("The Fox and the")?;
    let ctx = gpt.config().n_positions;
    let cfg = GenerateConfig {
        max_tokens: ctx.saturating_sub(prompt.len()).min(128),
        sampling: Sampling::Greedy,
        stop_token: None,
    };
    // Repeat so one pass lasts long enough to time.
    let rounds = 10;
    let (secs, n) = best_of(reps, || {
        let mut n = 0;
        for _ in 0..rounds {
            n += gpt.generate(&prompt, &cfg)?.tokens.len();
        }
        Ok(n)
    })?;
    Ok(json!({
        "model": name,
        "tokens_per_s": n as f64 / secs,
        "tokens_per_generation": n / rounds,
        "includes": "KV-cached decode + the committed full pass with its trace",
    }))
}

/// candle: padded batch + mask → BERT → masked mean pool → L2 normalize.
#[cfg(feature = "baselines")]
fn candle_embed(
    model: &candle_transformers::models::bert::BertModel,
    ours: &LoadedModel,
    batch: &[&str],
) -> anyhow::Result<Vec<Vec<f32>>> {
    use candle_core::{DType, Device, Tensor};
    let tok = ours.tokenizer.as_ref().context("MiniLM tokenizer")?;
    let seqs = batch
        .iter()
        .map(|t| tok.encode(t))
        .collect::<Result<Vec<_>, _>>()?;
    let max = seqs.iter().map(Vec::len).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(seqs.len() * max);
    let mut mask = Vec::with_capacity(seqs.len() * max);
    for s in &seqs {
        ids.extend(
            s.iter()
                .copied()
                .chain(std::iter::repeat_n(0, max - s.len())),
        );
        mask.extend(
            std::iter::repeat_n(1u32, s.len()).chain(std::iter::repeat_n(0, max - s.len())),
        );
    }
    let dev = Device::Cpu;
    let ids = Tensor::from_vec(ids, (seqs.len(), max), &dev)?;
    let mask = Tensor::from_vec(mask, (seqs.len(), max), &dev)?;
    let types = ids.zeros_like()?;
    let hidden = model.forward(&ids, &types, Some(&mask))?;
    let maskf = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&maskf)?.sum(1)?;
    let counts = maskf.sum(1)?;
    let mean = summed.broadcast_div(&counts)?;
    let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?;
    let emb = mean.broadcast_div(&norm)?;
    Ok(emb.to_vec2::<f32>()?)
}

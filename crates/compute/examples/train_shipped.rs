//! Regenerates `assets/tiny-gpt` bit for bit: trains the shipped byte-level GPT
//! on `assets/corpus.txt` with the deterministic runtime and writes
//! `model.safetensors` + `config.json`, printing the weights' blake3.
//!
//! ```text
//! cargo run --release -p agentic-compute --example train_shipped [-- --out DIR]
//! ```

use std::path::PathBuf;
use std::time::Instant;

use agentic_compute::train::shipped::{self, Recipe};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut out = shipped::assets_dir().to_path_buf();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--out" => out = PathBuf::from(args.next().ok_or("--out needs a directory")?),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let recipe = Recipe::shipped();
    let corpus = shipped::CORPUS.as_bytes();
    println!(
        "training {:?}\n  on {} bytes of corpus, {} steps × {} × {} tokens, rayon threads: {}",
        recipe.config,
        corpus.len(),
        recipe.steps,
        recipe.batch,
        recipe.seq,
        rayon::current_num_threads()
    );
    let bar = indicatif::ProgressBar::new(recipe.steps);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} {msg} (eta {eta})",
        )?
        .progress_chars("=> "),
    );
    let started = Instant::now();
    let mut first = None;
    let mut recent = Vec::new();
    let shipped = shipped::train_shipped(|s| {
        first.get_or_insert(s.loss);
        recent.push(s.loss);
        if recent.len() > 20 {
            recent.remove(0);
        }
        let avg = recent.iter().sum::<f64>() / recent.len() as f64;
        bar.set_message(format!("loss {avg:.3}"));
        bar.inc(1);
    })?;
    bar.finish();
    let secs = started.elapsed().as_secs_f64();
    let last = shipped.trace.steps.last().map_or(f64::NAN, |s| s.loss);
    let eval = shipped::eval_loss(&shipped.model, corpus, recipe.seq)?;
    let hash = shipped::write_assets(&shipped.model, &out)?;
    println!("trained in {secs:.1}s");
    println!("parameters:        {}", shipped.model.params.num_elements());
    println!(
        "first step loss:   {:.4} nats/byte",
        first.unwrap_or(f64::NAN)
    );
    println!("last step loss:    {last:.4} nats/byte");
    println!("corpus eval loss:  {eval:.4} nats/byte");
    println!(
        "unigram entropy:   {:.4} nats/byte",
        shipped::unigram_entropy(corpus)
    );
    println!("run trace root:    {}", shipped.trace.root());
    println!("parameter root:    {}", shipped.model.params.root());
    println!("wrote {}", out.display());
    println!("model.safetensors blake3: {hash}");
    for (prompt, temp) in [("THE FOX AND THE ", 0.0), ("Once upon a time ", 0.7)] {
        let text = shipped::generate(&shipped.model, prompt.as_bytes(), 200, temp, 7)?;
        println!(
            "--- sample (temperature {temp}) ---\n{}",
            String::from_utf8_lossy(&text)
        );
    }
    Ok(())
}

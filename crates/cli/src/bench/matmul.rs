//! `agentic bench matmul`: our deterministic matmul against the `matrixmultiply`
//! crate's `sgemm`, measured side by side in the same run.
//!
//! For each square size (256, 512, 1024, 2048; `--quick` stops at 1024) and each
//! thread count (1 and 2), both kernels multiply the same LCG-generated matrices
//! (`c = a·b`, all row-major) once to warm up and then `--reps` times, alternating
//! ours and theirs; the figure is `2·n³ / best seconds` in GFLOP/s.
//!
//! # Why child processes
//!
//! `matrixmultiply` reads its thread count from `MATMUL_NUM_THREADS` once per process,
//! and rayon sizes its global pool once too. So the parent re-executes this same
//! binary (`std::env::current_exe()`) once per thread count with the hidden flag
//! `--child-threads N` and both `MATMUL_NUM_THREADS=N` and `RAYON_NUM_THREADS=N` set;
//! the child prints one JSON line per size on stdout, which the parent collects (and
//! turns into progress on stderr).
//!
//! Top-level `ratio` = ours / matrixmultiply at 1024³ on 1 thread.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use agentic_compute::kernels;
use anyhow::{bail, ensure, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
    /// Only sizes 256–1024 (a quick look).
    #[arg(long)]
    pub quick: bool,
    /// Timed repetitions per kernel and size; the best is reported.
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Internal: run the measurements in this process with N threads (set by the parent
    /// together with `MATMUL_NUM_THREADS` and `RAYON_NUM_THREADS`).
    #[arg(long, hide = true)]
    pub child_threads: Option<usize>,
}

const SIZES: [usize; 4] = [256, 512, 1024, 2048];
const QUICK_SIZES: [usize; 3] = [256, 512, 1024];
const THREADS: [usize; 2] = [1, 2];

/// One size at one thread count, as a child reports it.
#[derive(Serialize, Deserialize, Clone, Debug)]
struct Entry {
    size: usize,
    threads: usize,
    ours_gflops: f64,
    matrixmultiply_gflops: f64,
    ratio: f64,
    ours_best_s: f64,
    matrixmultiply_best_s: f64,
    /// Largest |ours − theirs| relative to the largest |c|: a sanity check that both
    /// computed the same product (they differ only by rounding order).
    max_rel_diff: f64,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    super::require_baselines("matmul", "matrixmultiply")?;
    ensure!(args.reps > 0, "--reps must be positive");
    let sizes: &[usize] = if args.quick { &QUICK_SIZES } else { &SIZES };
    if let Some(threads) = args.child_threads {
        return child(sizes, threads, args.reps);
    }

    let progress = ProgressBar::new((sizes.len() * THREADS.len()) as u64);
    progress.set_draw_target(ProgressDrawTarget::stderr());
    progress.set_style(
        ProgressStyle::with_template("{spinner} [{pos}/{len}] {msg}")
            .context("progress template")?,
    );
    let exe = std::env::current_exe().context("locating the agentic binary")?;
    let mut entries = Vec::new();
    for threads in THREADS {
        progress.set_message(format!("{threads} thread(s): starting"));
        let mut cmd = Command::new(&exe);
        cmd.args([
            "bench",
            "matmul",
            "--child-threads",
            &threads.to_string(),
            "--reps",
            &args.reps.to_string(),
        ]);
        if args.quick {
            cmd.arg("--quick");
        }
        let mut child = cmd
            .env("MATMUL_NUM_THREADS", threads.to_string())
            .env("RAYON_NUM_THREADS", threads.to_string())
            .env_remove("AGENTIC_FORCE_SCALAR")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let stdout = child.stdout.take().context("child stdout")?;
        for line in BufReader::new(stdout).lines() {
            let line = line.context("reading child output")?;
            let entry: Entry =
                serde_json::from_str(&line).with_context(|| format!("child printed {line:?}"))?;
            progress.set_message(format!(
                "{} thread(s): {}³ ours {:.1} vs {:.1} GFLOP/s",
                threads, entry.size, entry.ours_gflops, entry.matrixmultiply_gflops
            ));
            progress.inc(1);
            entries.push(entry);
        }
        let status = child.wait().context("waiting for child")?;
        if !status.success() {
            bail!("measurement child for {threads} thread(s) failed: {status}");
        }
    }
    progress.finish_and_clear();

    let headline = entries
        .iter()
        .find(|e| e.size == 1024 && e.threads == 1)
        .context("no 1024³ single-thread entry")?;
    let simd = kernels::detected_simd().name();
    if args.json {
        let out = json!({
            "bench": "matmul",
            "ratio": headline.ratio,
            "ratio_definition": "ours / matrixmultiply sgemm GFLOP/s at 1024x1024x1024, 1 thread",
            "ours": "agentic_compute::kernels::matmul (bitwise deterministic, no FMA)",
            "baseline": "matrixmultiply 0.3 sgemm (threading feature)",
            "simd": simd,
            "cpu": cpu_model(),
            "reps": args.reps,
            "entries": entries,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "deterministic matmul vs matrixmultiply sgemm (SIMD path: {simd}, best of {})",
            args.reps
        );
        println!(
            "{:>6} {:>8} {:>14} {:>16} {:>8}",
            "size", "threads", "ours GFLOP/s", "mm GFLOP/s", "ratio"
        );
        for e in &entries {
            println!(
                "{:>6} {:>8} {:>14.1} {:>16.1} {:>8.3}",
                e.size, e.threads, e.ours_gflops, e.matrixmultiply_gflops, e.ratio
            );
        }
        println!("ratio (1024³, 1 thread): {:.3}", headline.ratio);
    }
    Ok(())
}

#[cfg(not(feature = "baselines"))]
fn child(_: &[usize], _: usize, _: usize) -> anyhow::Result<()> {
    super::require_baselines("matmul", "matrixmultiply")
}

/// Measures every size with the current process's thread settings; one JSON line each.
#[cfg(feature = "baselines")]
fn child(sizes: &[usize], threads: usize, reps: usize) -> anyhow::Result<()> {
    ensure!(
        rayon::current_num_threads() == threads,
        "rayon runs {} threads, expected {threads} (RAYON_NUM_THREADS not applied?)",
        rayon::current_num_threads()
    );
    for &n in sizes {
        let mut g = Lcg(n as u64);
        let a: Vec<f32> = (0..n * n).map(|_| g.next_f32()).collect();
        let b: Vec<f32> = (0..n * n).map(|_| g.next_f32()).collect();
        let mut ours = vec![0.0f32; n * n];
        let mut theirs = vec![0.0f32; n * n];
        let run_ours = |c: &mut [f32]| kernels::matmul(&a, &b, c, n, n, n);
        let run_theirs = |c: &mut [f32]| sgemm(&a, &b, c, n);
        run_ours(&mut ours);
        run_theirs(&mut theirs);
        let (mut best_ours, mut best_theirs) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..reps {
            best_ours = best_ours.min(time(|| run_ours(&mut ours)));
            best_theirs = best_theirs.min(time(|| run_theirs(&mut theirs)));
        }
        let scale = theirs.iter().fold(0.0f32, |m, x| m.max(x.abs())) as f64;
        let diff = ours
            .iter()
            .zip(&theirs)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs())) as f64;
        let flops = 2.0 * (n as f64).powi(3);
        let entry = Entry {
            size: n,
            threads,
            ours_gflops: flops / best_ours / 1e9,
            matrixmultiply_gflops: flops / best_theirs / 1e9,
            ratio: best_theirs / best_ours,
            ours_best_s: best_ours,
            matrixmultiply_best_s: best_theirs,
            max_rel_diff: if scale > 0.0 { diff / scale } else { diff },
        };
        println!("{}", serde_json::to_string(&entry)?);
    }
    Ok(())
}

#[cfg(feature = "baselines")]
fn time(f: impl FnOnce()) -> f64 {
    let t = std::time::Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

#[cfg(feature = "baselines")]
/// `c = a·b` with `matrixmultiply::sgemm` (square `n`, row-major).
fn sgemm(a: &[f32], b: &[f32], c: &mut [f32], n: usize) {
    assert!(a.len() == n * n && b.len() == n * n && c.len() == n * n);
    let ld = n as isize;
    // SAFETY: all three buffers hold n×n floats, row stride n, column stride 1.
    unsafe {
        matrixmultiply::sgemm(
            n,
            n,
            n,
            1.0,
            a.as_ptr(),
            ld,
            1,
            b.as_ptr(),
            ld,
            1,
            0.0,
            c.as_mut_ptr(),
            ld,
            1,
        );
    }
}

/// Deterministic test data (64-bit LCG → [-1, 1)).
#[cfg(feature = "baselines")]
struct Lcg(u64);

#[cfg(feature = "baselines")]
impl Lcg {
    fn next_f32(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

//! Packed, cache-blocked, register-tiled matrix multiplication that reproduces
//! [`super::reference::matmul`] bit for bit.
//!
//! # Why the bits cannot change
//!
//! Every `c[i][j]` is the chain `acc = fma(a[i,p], b[p,j], acc)` for `p = 0, 1, …` from
//! `acc = +0.0`.
//! The blocked kernel keeps exactly that order:
//! - a SIMD lane is one output column `j`; a register row is one output row `i`;
//!   lanes never talk to each other (no horizontal sums);
//! - `k` is cut into blocks of `KC` visited in increasing order; the first block starts
//!   the accumulators at `+0.0`, later blocks re-load the partial sums from `c` (an
//!   f32 store/load is exact) and continue adding in order;
//! - every step is one fused multiply-add, rounded once, in every micro-kernel;
//! - rayon splits `c` into disjoint tiles; each tile runs the same `k` loop.
//!
//! Zero-padded rows and columns of the packed panels only feed outputs that are never
//! stored, so padding changes nothing either.
//!
//! # Blocking
//!
//! ```text
//!   for jc in n by NC                     ─┐
//!     for pc in k by KC (in order)          │  B block [KC×NC] packed into PANEL-wide
//!       pack B[pc.., jc..] → panels         │  column panels (or taken from PackedWeights)
//!       pack A[.., pc..]  → MR-row slivers  │
//!       par for (ic in m by MC) × (column group in NC by NG):   ← rayon, disjoint tiles
//!         for each 32-wide panel jr:
//!           for each MR-row sliver ir:
//!             micro-kernel: C[ir, jr] (+)= Σ_{p in pc block} a[ir, p] · b[p, jr]
//! ```
//!
//! A packed B panel holds `PANEL = 32` columns: `panel[p·32 + c] = B[p, j0 + c]` over the
//! whole `k`, so a `KC` block of it is contiguous. All micro-kernels read that one layout
//! (AVX-512 as two `zmm` per row, AVX2 and NEON as two 16-column halves, the portable
//! kernel as plain arrays), which is why [`PackedWeights`] does not depend on the CPU.
//!
//! Micro-kernels (chosen at run time, [`super::force_scalar`] forces the portable one):
//! - x86-64 AVX-512F: `MR = 8` rows × 32 columns (16 `zmm` accumulators; 12 rows measured no faster on Zen 4);
//! - x86-64 AVX2: `MR = 6` rows × 16 columns (12 `ymm` accumulators);
//! - aarch64 NEON: `MR = 6` rows × 16 columns (24 `q` accumulators);
//! - portable: `MR = 4` rows × 16 columns of plain `f32`.
//!
//! Each has variants for every smaller row count, so the bottom edge of `c` costs no
//! padded work; the right edge is masked (or copied through a small buffer).

use rayon::prelude::*;

/// Columns per packed B panel (all micro-kernels).
pub const PANEL: usize = 32;
/// `k` block: a 32-column panel of `KC` rows is 32 KiB.
const KC: usize = 256;
/// Rows of `c` per parallel task.
const MC: usize = 96;
/// Columns of `c` per outer block (multiple of `PANEL`).
const NC: usize = 2048;
/// Columns of `c` per parallel task (multiple of `PANEL`).
const NG: usize = 256;
/// Below this many multiply-adds a call runs on the calling thread.
const PAR_THRESHOLD: usize = 1 << 25;

/// Which micro-kernel family runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimdPath {
    /// Plain Rust `f32` arithmetic (any CPU).
    Portable,
    /// x86-64 AVX2 (256-bit).
    Avx2,
    /// x86-64 AVX-512F (512-bit).
    Avx512,
    /// aarch64 NEON (128-bit).
    Neon,
}

impl SimdPath {
    /// Short name used by the benches.
    pub fn name(self) -> &'static str {
        match self {
            SimdPath::Portable => "portable",
            SimdPath::Avx2 => "avx2",
            SimdPath::Avx512 => "avx512",
            SimdPath::Neon => "neon",
        }
    }

    /// Rows per register tile.
    fn mr(self) -> usize {
        match self {
            SimdPath::Portable => 4,
            SimdPath::Avx2 | SimdPath::Neon => 6,
            SimdPath::Avx512 => 8,
        }
    }
}

/// The best path this CPU supports (ignoring the scalar switch).
pub fn detected_simd() -> SimdPath {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return SimdPath::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return SimdPath::Avx2;
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            return SimdPath::Neon;
        }
    }
    SimdPath::Portable
}

/// The path kernels use now: [`detected_simd`] unless the scalar path is forced.
pub fn active_simd() -> SimdPath {
    if super::force_scalar() {
        SimdPath::Portable
    } else {
        detected_simd()
    }
}

/// A strided view of the right-hand matrix: `B[p, j] = data[p·rs + j·cs]`.
#[derive(Clone, Copy)]
struct BView<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

/// Where the B panels come from.
#[derive(Clone, Copy)]
enum BSource<'a> {
    /// Pack each block from this view.
    Strided(BView<'a>),
    /// Already packed over the whole `k` (see [`PackedWeights`]).
    Packed(&'a [f32]),
}

/// Weights packed once into 32-column panels for repeated products.
///
/// `matmul_packed(a, &PackedWeights::new(w, n, k), c, m)` gives the bits of
/// `matmul_bt(a, w, c, m, k, n)`, and `PackedWeights::from_kn(w, k, n)` those of
/// `matmul(a, w, c, m, k, n)`, without re-arranging the weights on every call.
#[derive(Clone, Debug)]
pub struct PackedWeights {
    k: usize,
    n: usize,
    /// `ceil(n/32)` panels of `k × 32`, zero-padded on the right.
    panels: Vec<f32>,
}

impl PackedWeights {
    /// Packs `w[n×k]` (Hugging Face `Linear`, `[out, in]`).
    ///
    /// # Panics
    /// If `w.len() != n·k` (a programming error: loaders validate shapes first).
    pub fn new(w: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k, "PackedWeights::new: w must be n×k");
        Self::pack(
            BView {
                data: w,
                rs: 1,
                cs: k,
            },
            k,
            n,
        )
    }

    /// Packs `w[k×n]` (GPT-2 `Conv1D`, `[in, out]`).
    ///
    /// # Panics
    /// If `w.len() != k·n`.
    pub fn from_kn(w: &[f32], k: usize, n: usize) -> Self {
        assert_eq!(w.len(), k * n, "PackedWeights::from_kn: w must be k×n");
        Self::pack(
            BView {
                data: w,
                rs: n,
                cs: 1,
            },
            k,
            n,
        )
    }

    fn pack(b: BView<'_>, k: usize, n: usize) -> Self {
        let np = n.div_ceil(PANEL);
        let mut panels = vec![0.0f32; np * k * PANEL];
        if k > 0 {
            panels
                .par_chunks_mut(k * PANEL)
                .enumerate()
                .for_each(|(s, dst)| {
                    let j0 = s * PANEL;
                    pack_b_panel(b, 0, k, j0, (n - j0).min(PANEL), dst);
                });
        }
        Self { k, n, panels }
    }

    /// Input width `k`.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Output width `n`.
    pub fn n(&self) -> usize {
        self.n
    }
}

/// `c = a · b`, `b` row-major `[k×n]`.
pub fn matmul(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    assert_eq!(a.len(), m * k, "matmul: a must be m×k");
    assert_eq!(b.len(), k * n, "matmul: b must be k×n");
    assert_eq!(c.len(), m * n, "matmul: c must be m×n");
    gemm(
        a,
        BSource::Strided(BView {
            data: b,
            rs: n,
            cs: 1,
        }),
        c,
        m,
        k,
        n,
    );
}

/// `c = a · wᵀ`, `w` row-major `[n×k]`.
pub fn matmul_bt(a: &[f32], w: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    assert_eq!(a.len(), m * k, "matmul_bt: a must be m×k");
    assert_eq!(w.len(), n * k, "matmul_bt: w must be n×k");
    assert_eq!(c.len(), m * n, "matmul_bt: c must be m×n");
    gemm(
        a,
        BSource::Strided(BView {
            data: w,
            rs: 1,
            cs: k,
        }),
        c,
        m,
        k,
        n,
    );
}

/// `c = a · W` for packed weights.
pub fn matmul_packed(a: &[f32], w: &PackedWeights, c: &mut [f32], m: usize) {
    assert_eq!(a.len(), m * w.k, "matmul_packed: a must be m×k");
    assert_eq!(c.len(), m * w.n, "matmul_packed: c must be m×n");
    gemm(a, BSource::Packed(&w.panels), c, m, w.k, w.n);
}

/// Packs columns `j0..j0+nj` (≤ 32) of rows `p0..p0+kc` of `b` into `dst[kc×32]`,
/// zero-filling columns `nj..32`.
fn pack_b_panel(b: BView<'_>, p0: usize, kc: usize, j0: usize, nj: usize, dst: &mut [f32]) {
    debug_assert!(dst.len() >= kc * PANEL && nj <= PANEL);
    if b.cs == 1 {
        for (p, row) in dst.chunks_exact_mut(PANEL).take(kc).enumerate() {
            let src = (p0 + p) * b.rs + j0;
            row[..nj].copy_from_slice(&b.data[src..src + nj]);
            row[nj..].fill(0.0);
        }
    } else {
        // Transposed source (`matmul_bt`): read each column contiguously.
        for row in dst.chunks_exact_mut(PANEL).take(kc) {
            row[nj..].fill(0.0);
        }
        for jj in 0..nj {
            let col = &b.data[(j0 + jj) * b.cs + p0 * b.rs..];
            for p in 0..kc {
                dst[p * PANEL + jj] = col[p * b.rs];
            }
        }
    }
}

/// Packs rows `i0..i0+mc` × cols `p0..p0+kc` of row-major `a` (row stride `lda`) into
/// slivers of `mr` rows: sliver `s` holds `a_pack[p·h + r] = a[i0 + s·mr + r, p0 + p]`
/// where `h = min(mr, rows left)` (no padding rows).
fn pack_a(
    a: &[f32],
    lda: usize,
    i0: usize,
    mc: usize,
    p0: usize,
    kc: usize,
    mr: usize,
    dst: &mut [f32],
) {
    let mut off = 0;
    let mut r0 = 0;
    while r0 < mc {
        let h = mr.min(mc - r0);
        let sl = &mut dst[off..off + h * kc];
        for r in 0..h {
            let src = &a[(i0 + r0 + r) * lda + p0..(i0 + r0 + r) * lda + p0 + kc];
            for (p, &x) in src.iter().enumerate() {
                sl[p * h + r] = x;
            }
        }
        off += h * kc;
        r0 += h;
    }
}

/// A raw pointer to `c` that tasks share; each task writes a disjoint tile.
#[derive(Clone, Copy)]
struct CPtr(*mut f32);
// SAFETY: tasks write disjoint tiles of `c` (disjoint row ranges × disjoint column
// ranges), and the pointer outlives the parallel loop that uses it.
unsafe impl Send for CPtr {}
unsafe impl Sync for CPtr {}

impl CPtr {
    /// The pointer (a method, so closures capture the whole `Send` wrapper).
    fn get(self) -> *mut f32 {
        self.0
    }
}

fn gemm(a: &[f32], b: BSource<'_>, c: &mut [f32], m: usize, k: usize, n: usize) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c.fill(0.0);
        return;
    }
    let path = active_simd();
    let mr = path.mr();
    let parallel = m * n * k >= PAR_THRESHOLD && rayon::current_num_threads() > 1;

    let mut bbuf: Vec<f32> = Vec::new();
    let mut abuf: Vec<f32> = vec![0.0; m * KC.min(k)];
    let cptr = CPtr(c.as_mut_ptr());

    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        let np = nc.div_ceil(PANEL);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            let accumulate = pc > 0;

            // B panels for this block: `panel(jr)` is `kc × 32`, contiguous, row stride 32.
            let (bpanels, bstride): (&[f32], usize) = match b {
                BSource::Packed(all) => (&all[(jc / PANEL) * k * PANEL..], k * PANEL),
                BSource::Strided(view) => {
                    bbuf.resize(np * kc * PANEL, 0.0);
                    let fill = |(s, dst): (usize, &mut [f32])| {
                        let j0 = jc + s * PANEL;
                        pack_b_panel(view, pc, kc, j0, (n - j0).min(PANEL), dst);
                    };
                    if parallel {
                        bbuf.par_chunks_mut(kc * PANEL).enumerate().for_each(fill);
                    } else {
                        bbuf.chunks_mut(kc * PANEL).enumerate().for_each(fill);
                    }
                    (&bbuf[..], kc * PANEL)
                }
            };
            let boff = match b {
                BSource::Packed(_) => pc * PANEL,
                BSource::Strided(_) => 0,
            };

            // A slivers for the whole `m` of this `k` block (packed once per (jc, pc)
            // only when jc == 0 would be enough; n ≤ NC in practice).
            let abuf = &mut abuf[..m * kc];
            let fill_a = |(bi, dst): (usize, &mut [f32])| {
                let i0 = bi * MC;
                pack_a(a, k, i0, MC.min(m - i0), pc, kc, mr, dst);
            };
            if parallel {
                abuf.par_chunks_mut(MC * kc).enumerate().for_each(fill_a);
            } else {
                abuf.chunks_mut(MC * kc).enumerate().for_each(fill_a);
            }
            let apack: &[f32] = abuf;

            let mblocks = m.div_ceil(MC);
            let ngroups = nc.div_ceil(NG);
            let task = |t: usize| {
                let (bi, g) = (t / ngroups, t % ngroups);
                let i0 = bi * MC;
                let mc = MC.min(m - i0);
                let a_block = &apack[i0 * kc..(i0 + mc) * kc];
                let j_lo = g * NG;
                let j_hi = (j_lo + NG).min(nc);
                for jr in (j_lo..j_hi).step_by(PANEL) {
                    let s = jr / PANEL;
                    let bp = &bpanels[s * bstride + boff..s * bstride + boff + kc * PANEL];
                    let ncols = PANEL.min(nc - jr);
                    let mut r0 = 0;
                    while r0 < mc {
                        let h = mr.min(mc - r0);
                        let ap = &a_block[r0 * kc..(r0 + h) * kc];
                        // SAFETY: rows i0+r0..i0+r0+h < m and columns jc+jr..+ncols ≤ n
                        // lie inside `c` (m×n); this task is the only writer of them.
                        unsafe {
                            let cp = cptr.get().add((i0 + r0) * n + jc + jr);
                            micro(path, h, kc, ap, bp, cp, n, ncols, accumulate);
                        }
                        r0 += h;
                    }
                }
            };
            if parallel {
                (0..mblocks * ngroups).into_par_iter().for_each(task);
            } else {
                (0..mblocks * ngroups).for_each(task);
            }
        }
    }
}

/// Runs one register tile: `h ≤ mr` rows × `ncols ≤ 32` columns.
///
/// # Safety
/// `c` must point at `h` rows (stride `ldc`) of at least `ncols` writable floats;
/// `a` holds `h·kc` and `b` `kc·32` floats (checked by the slice types).
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn micro(
    path: SimdPath,
    h: usize,
    kc: usize,
    a: &[f32],
    b: &[f32],
    c: *mut f32,
    ldc: usize,
    ncols: usize,
    acc: bool,
) {
    debug_assert!(a.len() >= h * kc && b.len() >= kc * PANEL);
    // SAFETY (all arms): forwarded from the caller; each arm runs only when the CPU has
    // the feature it was compiled for.
    unsafe {
        match path {
            #[cfg(target_arch = "x86_64")]
            SimdPath::Avx512 => {
                x86::dispatch_avx512(h, kc, a.as_ptr(), b.as_ptr(), c, ldc, ncols, acc)
            }
            #[cfg(target_arch = "x86_64")]
            SimdPath::Avx2 => {
                x86::dispatch_avx2(h, kc, a.as_ptr(), b.as_ptr(), c, ldc, ncols.min(16), acc);
                if ncols > 16 {
                    x86::dispatch_avx2(
                        h,
                        kc,
                        a.as_ptr(),
                        b.as_ptr().add(16),
                        c.add(16),
                        ldc,
                        ncols - 16,
                        acc,
                    );
                }
            }
            #[cfg(target_arch = "aarch64")]
            SimdPath::Neon => {
                neon::dispatch(h, kc, a.as_ptr(), b.as_ptr(), c, ldc, ncols.min(16), acc);
                if ncols > 16 {
                    neon::dispatch(
                        h,
                        kc,
                        a.as_ptr(),
                        b.as_ptr().add(16),
                        c.add(16),
                        ldc,
                        ncols - 16,
                        acc,
                    );
                }
            }
            _ => {
                portable(h, kc, a, b, c, ldc, ncols.min(16), acc);
                if ncols > 16 {
                    portable(h, kc, a, &b[16..], c.add(16), ldc, ncols - 16, acc);
                }
            }
        }
    }
}

/// Portable micro-kernel: up to 4 rows × 16 columns, one sliver of height `h`. On x86-64
/// with FMA it runs a copy compiled with the `fma` feature (one instruction per step);
/// elsewhere [`super::fmadd`] (same bits).
///
/// # Safety
/// As [`micro`], with `ncols ≤ 16`.
#[allow(clippy::too_many_arguments)]
unsafe fn portable(
    h: usize,
    kc: usize,
    a: &[f32],
    b: &[f32],
    c: *mut f32,
    ldc: usize,
    ncols: usize,
    acc: bool,
) {
    #[cfg(target_arch = "x86_64")]
    if super::has_hw_fma() {
        // SAFETY: the CPU has FMA; the rest is forwarded from the caller.
        unsafe { portable_fma(h, kc, a, b, c, ldc, ncols, acc) };
        return;
    }
    // SAFETY: forwarded from the caller.
    unsafe { portable_with::<super::SoftFma>(h, kc, a, b, c, ldc, ncols, acc) }
}

/// # Safety
/// The CPU has FMA; otherwise as [`portable`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn portable_fma(
    h: usize,
    kc: usize,
    a: &[f32],
    b: &[f32],
    c: *mut f32,
    ldc: usize,
    ncols: usize,
    acc: bool,
) {
    // SAFETY: forwarded from the caller.
    unsafe { portable_with::<super::HwFma>(h, kc, a, b, c, ldc, ncols, acc) }
}

/// # Safety
/// As [`portable`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn portable_with<F: super::Fma>(
    h: usize,
    kc: usize,
    a: &[f32],
    b: &[f32],
    c: *mut f32,
    ldc: usize,
    ncols: usize,
    acc: bool,
) {
    let mut r0 = 0;
    while r0 < h {
        let rows = 4.min(h - r0);
        let mut t = [[0.0f32; 16]; 4];
        if acc {
            for (r, tr) in t.iter_mut().enumerate().take(rows) {
                for (j, x) in tr.iter_mut().enumerate().take(ncols) {
                    // SAFETY: inside the tile the caller vouched for.
                    *x = unsafe { *c.add((r0 + r) * ldc + j) };
                }
            }
        }
        for p in 0..kc {
            let brow: &[f32; 16] = b[p * PANEL..p * PANEL + 16].try_into().expect("16 floats");
            for (r, tr) in t.iter_mut().enumerate().take(rows) {
                let av = a[p * h + r0 + r];
                for j in 0..16 {
                    tr[j] = F::fma(av, brow[j], tr[j]);
                }
            }
        }
        for (r, tr) in t.iter().enumerate().take(rows) {
            for (j, x) in tr.iter().enumerate().take(ncols) {
                // SAFETY: inside the tile the caller vouched for.
                unsafe { *c.add((r0 + r) * ldc + j) = *x };
            }
        }
        r0 += rows;
    }
}

// AVX-512 intrinsics are stable since Rust 1.89, the workspace's `rust-version`.
#[cfg(target_arch = "x86_64")]
mod x86 {
    //! AVX-512F and AVX2+FMA micro-kernels: one `fmadd` per step.
    use std::arch::x86_64::*;

    use super::PANEL;

    /// # Safety
    /// AVX-512F available; pointers as in `super::micro`, `h ≤ 12`, `ncols ≤ 32`.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn dispatch_avx512(
        h: usize,
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        ncols: usize,
        acc: bool,
    ) {
        // SAFETY: forwarded.
        unsafe {
            match h {
                12 => avx512::<12>(kc, a, b, c, ldc, ncols, acc),
                11 => avx512::<11>(kc, a, b, c, ldc, ncols, acc),
                10 => avx512::<10>(kc, a, b, c, ldc, ncols, acc),
                9 => avx512::<9>(kc, a, b, c, ldc, ncols, acc),
                8 => avx512::<8>(kc, a, b, c, ldc, ncols, acc),
                7 => avx512::<7>(kc, a, b, c, ldc, ncols, acc),
                6 => avx512::<6>(kc, a, b, c, ldc, ncols, acc),
                5 => avx512::<5>(kc, a, b, c, ldc, ncols, acc),
                4 => avx512::<4>(kc, a, b, c, ldc, ncols, acc),
                3 => avx512::<3>(kc, a, b, c, ldc, ncols, acc),
                2 => avx512::<2>(kc, a, b, c, ldc, ncols, acc),
                1 => avx512::<1>(kc, a, b, c, ldc, ncols, acc),
                _ => unreachable!("sliver height {h} > 12"),
            }
        }
    }

    /// `MR` rows × 32 columns. `a[p·MR + r]`, `b[p·32 + j]`.
    ///
    /// # Safety
    /// AVX-512F available; `a` has `MR·kc`, `b` `32·kc` floats; `c` has `MR` rows of
    /// `ncols ≤ 32` writable floats at stride `ldc`.
    #[target_feature(enable = "avx512f")]
    unsafe fn avx512<const MR: usize>(
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        ncols: usize,
        acc: bool,
    ) {
        let m0: __mmask16 = if ncols >= 16 {
            0xffff
        } else {
            ((1u32 << ncols) - 1) as __mmask16
        };
        let m1: __mmask16 = if ncols >= 32 {
            0xffff
        } else if ncols > 16 {
            ((1u32 << (ncols - 16)) - 1) as __mmask16
        } else {
            0
        };
        let mut t0 = [_mm512_setzero_ps(); MR];
        let mut t1 = [_mm512_setzero_ps(); MR];
        // SAFETY: every pointer below stays inside the regions the caller vouched for;
        // masked loads/stores touch only the `ncols` valid columns.
        unsafe {
            if acc {
                for r in 0..MR {
                    t0[r] = _mm512_maskz_loadu_ps(m0, c.add(r * ldc));
                    t1[r] = _mm512_maskz_loadu_ps(m1, c.add(r * ldc + 16));
                }
            }
            let mut ap = a;
            let mut bp = b;
            for _ in 0..kc {
                let b0 = _mm512_loadu_ps(bp);
                let b1 = _mm512_loadu_ps(bp.add(16));
                for r in 0..MR {
                    let av = _mm512_set1_ps(*ap.add(r));
                    t0[r] = _mm512_fmadd_ps(av, b0, t0[r]);
                    t1[r] = _mm512_fmadd_ps(av, b1, t1[r]);
                }
                ap = ap.add(MR);
                bp = bp.add(PANEL);
            }
            for r in 0..MR {
                _mm512_mask_storeu_ps(c.add(r * ldc), m0, t0[r]);
                _mm512_mask_storeu_ps(c.add(r * ldc + 16), m1, t1[r]);
            }
        }
    }

    /// # Safety
    /// AVX2 and FMA available; pointers as in `super::micro`, `h ≤ 6`, `ncols ≤ 16`.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn dispatch_avx2(
        h: usize,
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        ncols: usize,
        acc: bool,
    ) {
        // SAFETY: forwarded.
        unsafe {
            match h {
                6 => avx2::<6>(kc, a, b, c, ldc, ncols, acc),
                5 => avx2::<5>(kc, a, b, c, ldc, ncols, acc),
                4 => avx2::<4>(kc, a, b, c, ldc, ncols, acc),
                3 => avx2::<3>(kc, a, b, c, ldc, ncols, acc),
                2 => avx2::<2>(kc, a, b, c, ldc, ncols, acc),
                1 => avx2::<1>(kc, a, b, c, ldc, ncols, acc),
                _ => unreachable!("sliver height {h} > 6"),
            }
        }
    }

    #[target_feature(enable = "avx2")]
    fn lane_mask(valid: usize) -> __m256i {
        let v = valid.min(8) as i32;
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(v),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }

    /// `MR` rows × 16 columns. `a[p·MR + r]`, `b[p·32 + j]`.
    ///
    /// # Safety
    /// AVX2 and FMA available; `a` has `MR·kc`, `b` `32·kc` floats; `c` has `MR` rows of
    /// `ncols ≤ 16` writable floats at stride `ldc`.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2<const MR: usize>(
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        ncols: usize,
        acc: bool,
    ) {
        let k0 = lane_mask(ncols);
        let k1 = lane_mask(ncols.saturating_sub(8));
        let mut t0 = [_mm256_setzero_ps(); MR];
        let mut t1 = [_mm256_setzero_ps(); MR];
        // SAFETY: as for `avx512`; masked loads/stores touch only valid columns.
        unsafe {
            if acc {
                for r in 0..MR {
                    t0[r] = _mm256_maskload_ps(c.add(r * ldc), k0);
                    t1[r] = _mm256_maskload_ps(c.add(r * ldc + 8), k1);
                }
            }
            let mut ap = a;
            let mut bp = b;
            for _ in 0..kc {
                let b0 = _mm256_loadu_ps(bp);
                let b1 = _mm256_loadu_ps(bp.add(8));
                for r in 0..MR {
                    let av = _mm256_set1_ps(*ap.add(r));
                    t0[r] = _mm256_fmadd_ps(av, b0, t0[r]);
                    t1[r] = _mm256_fmadd_ps(av, b1, t1[r]);
                }
                ap = ap.add(MR);
                bp = bp.add(PANEL);
            }
            for r in 0..MR {
                _mm256_maskstore_ps(c.add(r * ldc), k0, t0[r]);
                _mm256_maskstore_ps(c.add(r * ldc + 8), k1, t1[r]);
            }
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    //! NEON micro-kernel: one `vfmaq_f32` (fused) per step — never `vmlaq_f32`, which
    //! rounds the product first.
    use std::arch::aarch64::*;

    use super::PANEL;

    /// # Safety
    /// NEON available; pointers as in `super::micro`, `h ≤ 6`, `ncols ≤ 16`.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn dispatch(
        h: usize,
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        ncols: usize,
        acc: bool,
    ) {
        // SAFETY: forwarded.
        unsafe {
            match h {
                6 => kernel::<6>(kc, a, b, c, ldc, ncols, acc),
                5 => kernel::<5>(kc, a, b, c, ldc, ncols, acc),
                4 => kernel::<4>(kc, a, b, c, ldc, ncols, acc),
                3 => kernel::<3>(kc, a, b, c, ldc, ncols, acc),
                2 => kernel::<2>(kc, a, b, c, ldc, ncols, acc),
                1 => kernel::<1>(kc, a, b, c, ldc, ncols, acc),
                _ => unreachable!("sliver height {h} > 6"),
            }
        }
    }

    /// `MR` rows × 16 columns; full tiles go straight to `c`, partial ones via a buffer.
    ///
    /// # Safety
    /// As [`dispatch`].
    #[target_feature(enable = "neon")]
    unsafe fn kernel<const MR: usize>(
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        ncols: usize,
        acc: bool,
    ) {
        let mut t = [[vdupq_n_f32(0.0); 4]; MR];
        let mut buf = [0.0f32; 16];
        // SAFETY: pointers stay inside the caller's regions; partial rows go through
        // `buf` so only `ncols` columns of `c` are read or written.
        unsafe {
            if acc {
                for r in 0..MR {
                    let row = c.add(r * ldc);
                    let src = if ncols == 16 {
                        row as *const f32
                    } else {
                        buf = [0.0; 16];
                        std::ptr::copy_nonoverlapping(row, buf.as_mut_ptr(), ncols);
                        buf.as_ptr()
                    };
                    for q in 0..4 {
                        t[r][q] = vld1q_f32(src.add(4 * q));
                    }
                }
            }
            let mut ap = a;
            let mut bp = b;
            for _ in 0..kc {
                let bv = [
                    vld1q_f32(bp),
                    vld1q_f32(bp.add(4)),
                    vld1q_f32(bp.add(8)),
                    vld1q_f32(bp.add(12)),
                ];
                for r in 0..MR {
                    let av = vdupq_n_f32(*ap.add(r));
                    for q in 0..4 {
                        t[r][q] = vfmaq_f32(t[r][q], av, bv[q]);
                    }
                }
                ap = ap.add(MR);
                bp = bp.add(PANEL);
            }
            for r in 0..MR {
                let row = c.add(r * ldc);
                if ncols == 16 {
                    for q in 0..4 {
                        vst1q_f32(row.add(4 * q), t[r][q]);
                    }
                } else {
                    for q in 0..4 {
                        vst1q_f32(buf.as_mut_ptr().add(4 * q), t[r][q]);
                    }
                    std::ptr::copy_nonoverlapping(buf.as_ptr(), row, ncols);
                }
            }
        }
    }
}

//! Quantized weight matrices and their products with f32 activations.
//!
//! Weights stay in their file's format in memory (Q4_0, Q4_1, Q8_0, F16, BF16, F32); only
//! the layout changes at load time. Activations stay f32: quantizing them to 8 bits (what
//! llama.cpp and candle do to use integer dot products) moved SmolLM2's first-token logits
//! to a cosine of 0.993–0.9999 against an f32 reference and changed greedy tokens, which is
//! not a trade a verifiable market should make.
//!
//! # The product, exactly
//!
//! `out[i][j] = Σ_p x[i][p] · W[j][p]` is evaluated block by block (32 inputs per block,
//! ggml's block size), with every multiply-add fused (`fma`, rounded once):
//!
//! ```text
//! acc = +0
//! for each block b (inputs 32b .. 32b+32), in order:
//!     lo = +0;  for p in  0..16: lo = fma(x[32b+p], q[j][32b+p], lo)
//!     hi = +0;  for p in 16..32: hi = fma(x[32b+p], q[j][32b+p], hi)
//!     acc = fma(d[j][b], lo, acc)
//!     acc = fma(d[j][b], hi, acc)
//!     Q4_1 only: acc = fma(m[j][b], sx[i][b], acc)   where sx[i][b] = x[32b] + x[32b+1] + … (in order)
//! out[i][j] = acc
//! ```
//!
//! `q` is the block's integer (Q4_1: the nibble 0..15; Q4_0: nibble − 8; Q8_0: the signed
//! byte), converted to f32 exactly; `d` and `m` are the block's f16 scale and minimum,
//! converted exactly. For float formats `q` is the weight and `d = 1` (so `fma(1, lo, acc)
//! = acc + lo`). This *is* the definition: [`matmul_reference`] states it as a plain loop
//! over the original file bytes and every fast path equals it bit for bit.
//!
//! Two chains per block (`lo`, `hi`) and 32 output rows per SIMD panel give the CPU 8
//! independent FMA chains, which is what hides FMA latency; no chain ever crosses an
//! output, so SIMD width, thread count and batch composition cannot change a bit — a row
//! of `x` gets the same result alone (decode) as inside a prefill or next to other
//! sequences (batch invariance).
//!
//! # Kernels
//!
//! ```text
//!   rows of x   kernel (x86-64)                          elsewhere
//!   1 ..= 3     AVX2, blocks decoded in registers         panel kernel on 8-lane
//!   ≥ 4         AVX-512F: a block decoded once into a     `Lanes` (NEON, or
//!               tile, each tile load serving 6 rows,      portable scalar)
//!               16 lanes × 2 per panel, x block-major;
//!               AVX2 panel kernel without AVX-512F
//! ```
//!
//! Many rows (a prefill, an audit's replay) are compute-bound: there the tile is decoded
//! once per panel block and reused by every row, and register tiles of several rows
//! share each load. All kernels perform the same operations in the same order per output.
//!
//! # Layout
//!
//! Output rows are grouped in panels of [`PANEL`] (32) rows; a panel's block `b` is one
//! contiguous chunk: the 32 rows' scales (f16), minimums (Q4_1, f16), then the quants
//! transposed so that one load gives the same input position for 32 rows (Q4: byte
//! `i·32 + r` is row `r`'s byte `i`: low nibble input `i`, high nibble input `i+16`, as in
//! the file; Q8_0: byte `p·32 + r`; floats: element `p·32 + r`). Bytes per weight equal
//! the file's. Rows beyond `n` in the last panel are zero and their outputs dropped.

#![allow(clippy::needless_range_loop)]

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use crate::kernels::HwFma;
use crate::kernels::{Fma, SoftFma};
use crate::llm::gguf::GgmlType;
use crate::ComputeError;

/// Inputs per quantization block.
pub const BLOCK: usize = 32;
/// Output rows per panel.
pub const PANEL: usize = 32;
#[cfg(target_arch = "x86_64")]
/// Below this many rows of `x`, AVX2 decodes quantized blocks in registers per row
/// instead of once into a tile shared by the rows.
const FUSED_ROWS: usize = 4;
/// Below this many multiply-adds a product runs on the calling thread.
const PARALLEL_MACS: usize = 1 << 18;

/// The storage format of a weight matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightType {
    F32,
    F16,
    BF16,
    Q8_0,
    Q4_0,
    Q4_1,
}

impl WeightType {
    /// The GGUF type this format stores, if any.
    pub fn from_ggml(t: GgmlType) -> Option<Self> {
        Some(match t {
            GgmlType::F32 => WeightType::F32,
            GgmlType::F16 => WeightType::F16,
            GgmlType::BF16 => WeightType::BF16,
            GgmlType::Q8_0 => WeightType::Q8_0,
            GgmlType::Q4_0 => WeightType::Q4_0,
            GgmlType::Q4_1 => WeightType::Q4_1,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            WeightType::F32 => "F32",
            WeightType::F16 => "F16",
            WeightType::BF16 => "BF16",
            WeightType::Q8_0 => "Q8_0",
            WeightType::Q4_0 => "Q4_0",
            WeightType::Q4_1 => "Q4_1",
        }
    }

    /// Bytes of one file block of 32 weights (for floats: 32 elements).
    fn file_block_bytes(self) -> usize {
        match self {
            WeightType::F32 => 128,
            WeightType::F16 | WeightType::BF16 => 64,
            WeightType::Q8_0 => 34,
            WeightType::Q4_0 => 18,
            WeightType::Q4_1 => 20,
        }
    }

    /// Bytes of one repacked chunk (a panel's block: 32 rows × 32 inputs).
    fn chunk_bytes(self) -> usize {
        self.file_block_bytes() * PANEL
    }

    fn has_min(self) -> bool {
        self == WeightType::Q4_1
    }
}

pub use crate::loader::f16_to_f32;

/// Exact bf16 → f32.
#[inline(always)]
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// A weight matrix `W[n × k]` (PyTorch `[out, in]`), kept in its storage format.
#[derive(Clone, Debug)]
pub struct QMatrix {
    ty: WeightType,
    n: usize,
    k: usize,
    data: Vec<u8>,
}

impl QMatrix {
    /// Builds from file bytes: `n` rows of `k` weights, each row `k/32` consecutive blocks
    /// (GGUF and row-major safetensors layouts alike). `name` is for errors.
    pub fn from_file_bytes(
        name: &str,
        ty: WeightType,
        n: usize,
        k: usize,
        bytes: &[u8],
    ) -> Result<Self, ComputeError> {
        if n == 0 || k == 0 || !k.is_multiple_of(BLOCK) {
            return Err(ComputeError::TensorShape {
                name: name.into(),
                expected: vec![n, k.div_ceil(BLOCK) * BLOCK],
                actual: vec![n, k],
            });
        }
        let blocks = k / BLOCK;
        let fb = ty.file_block_bytes();
        let want = n
            .checked_mul(blocks)
            .and_then(|x| x.checked_mul(fb))
            .ok_or_else(|| ComputeError::config(format!("tensor `{name}` is too large")))?;
        if bytes.len() != want {
            return Err(ComputeError::CorruptCheckpoint(format!(
                "tensor `{name}` ({} [{n}, {k}]) has {} bytes, expected {want}",
                ty.name(),
                bytes.len()
            )));
        }
        let panels = n.div_ceil(PANEL);
        let cb = ty.chunk_bytes();
        let mut data = vec![0u8; panels * blocks * cb];
        for (chunk_index, chunk) in data.chunks_exact_mut(cb).enumerate() {
            let (panel, b) = (chunk_index / blocks, chunk_index % blocks);
            for r in 0..PANEL {
                let row = panel * PANEL + r;
                if row >= n {
                    break;
                }
                let src = &bytes[(row * blocks + b) * fb..][..fb];
                repack_block(ty, src, r, chunk);
            }
        }
        Ok(QMatrix { ty, n, k, data })
    }

    /// Builds from f32 values (row-major `[n, k]`), stored as F32.
    pub fn from_f32(name: &str, n: usize, k: usize, w: &[f32]) -> Result<Self, ComputeError> {
        let bytes: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self::from_file_bytes(name, WeightType::F32, n, k, &bytes)
    }

    /// Stacks matrices of one format and width whose row counts are multiples of
    /// [`PANEL`] (rows of the first, then the second …).
    pub fn stack_rows(parts: Vec<QMatrix>) -> QMatrix {
        let (ty, k) = (parts[0].ty, parts[0].k);
        assert!(
            parts
                .iter()
                .all(|p| p.ty == ty && p.k == k && p.n % PANEL == 0),
            "stack_rows: one format, one width, whole panels"
        );
        let n = parts.iter().map(|p| p.n).sum();
        let mut data = Vec::with_capacity(parts.iter().map(|p| p.data.len()).sum());
        for p in parts {
            data.extend_from_slice(&p.data);
        }
        QMatrix { ty, n, k, data }
    }

    pub fn weight_type(&self) -> WeightType {
        self.ty
    }

    /// Output rows.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Inputs per row.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    fn blocks(&self) -> usize {
        self.k / BLOCK
    }

    fn chunk(&self, panel: usize, b: usize) -> &[u8] {
        let cb = self.ty.chunk_bytes();
        &self.data[(panel * self.blocks() + b) * cb..][..cb]
    }

    /// Row `j` dequantized (an embedding lookup): `d·q` for Q8_0/Q4_0, `fma(d, q, m)` for
    /// Q4_1, the value for floats.
    pub fn row(&self, j: usize, out: &mut [f32]) {
        assert!(j < self.n && out.len() == self.k, "row index or length");
        let (panel, r) = (j / PANEL, j % PANEL);
        let mut tile = Tile::default();
        for b in 0..self.blocks() {
            decode_chunk(self.ty, self.chunk(panel, b), &mut tile);
            for p in 0..BLOCK {
                let q = tile.q[p][r];
                out[b * BLOCK + p] = match self.ty {
                    WeightType::Q4_1 => SoftFma::fma(tile.d[r], q, tile.m[r]),
                    WeightType::Q8_0 | WeightType::Q4_0 => tile.d[r] * q,
                    _ => q,
                };
            }
        }
    }
}

/// Writes row `r`'s file block `src` into a panel chunk.
fn repack_block(ty: WeightType, src: &[u8], r: usize, chunk: &mut [u8]) {
    match ty {
        WeightType::Q4_0 | WeightType::Q4_1 => {
            let scales = if ty == WeightType::Q4_1 { 2 } else { 1 };
            for s in 0..scales {
                chunk[s * 64 + 2 * r..][..2].copy_from_slice(&src[2 * s..2 * s + 2]);
            }
            let qs = &src[2 * scales..];
            let base = scales * 64;
            for (i, &byte) in qs.iter().enumerate() {
                chunk[base + i * PANEL + r] = byte;
            }
        }
        WeightType::Q8_0 => {
            chunk[2 * r..2 * r + 2].copy_from_slice(&src[..2]);
            for (p, &byte) in src[2..].iter().enumerate() {
                chunk[64 + p * PANEL + r] = byte;
            }
        }
        WeightType::F16 | WeightType::BF16 => {
            for p in 0..BLOCK {
                chunk[(p * PANEL + r) * 2..][..2].copy_from_slice(&src[p * 2..p * 2 + 2]);
            }
        }
        WeightType::F32 => {
            for p in 0..BLOCK {
                chunk[(p * PANEL + r) * 4..][..4].copy_from_slice(&src[p * 4..p * 4 + 4]);
            }
        }
    }
}

/// One panel block decoded to f32: `q[p][r]` for input `p`, panel row `r`.
#[derive(Clone)]
#[repr(C, align(32))]
struct Tile {
    q: [[f32; PANEL]; BLOCK],
    d: [f32; PANEL],
    m: [f32; PANEL],
}

impl Default for Tile {
    fn default() -> Self {
        Tile {
            q: [[0.0; PANEL]; BLOCK],
            d: [1.0; PANEL],
            m: [0.0; PANEL],
        }
    }
}

#[inline(always)]
fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// Decodes a chunk into `tile` (exact conversions only).
#[inline(always)]
fn decode_chunk(ty: WeightType, c: &[u8], t: &mut Tile) {
    match ty {
        WeightType::Q4_0 | WeightType::Q4_1 => {
            let scales = if ty == WeightType::Q4_1 { 2 } else { 1 };
            for r in 0..PANEL {
                t.d[r] = f16_to_f32(le16(c, 2 * r));
            }
            if scales == 2 {
                for r in 0..PANEL {
                    t.m[r] = f16_to_f32(le16(c, 64 + 2 * r));
                }
            }
            let off = if ty == WeightType::Q4_0 { 8 } else { 0 };
            let qs = &c[scales * 64..][..16 * PANEL];
            for i in 0..16 {
                let row = &qs[i * PANEL..][..PANEL];
                let (lo, hi) = t.q.split_at_mut(16);
                for r in 0..PANEL {
                    lo[i][r] = ((row[r] & 15) as i32 - off) as f32;
                    hi[i][r] = ((row[r] >> 4) as i32 - off) as f32;
                }
            }
        }
        WeightType::Q8_0 => {
            for r in 0..PANEL {
                t.d[r] = f16_to_f32(le16(c, 2 * r));
            }
            let qs = &c[64..][..BLOCK * PANEL];
            for p in 0..BLOCK {
                for r in 0..PANEL {
                    t.q[p][r] = qs[p * PANEL + r] as i8 as f32;
                }
            }
        }
        WeightType::F16 => {
            for p in 0..BLOCK {
                for r in 0..PANEL {
                    t.q[p][r] = f16_to_f32(le16(c, (p * PANEL + r) * 2));
                }
            }
        }
        WeightType::BF16 => {
            for p in 0..BLOCK {
                for r in 0..PANEL {
                    t.q[p][r] = bf16_to_f32(le16(c, (p * PANEL + r) * 2));
                }
            }
        }
        WeightType::F32 => {
            for p in 0..BLOCK {
                for r in 0..PANEL {
                    let at = (p * PANEL + r) * 4;
                    t.q[p][r] = f32::from_le_bytes([c[at], c[at + 1], c[at + 2], c[at + 3]]);
                }
            }
        }
    }
}

/// Eight f32 lanes with fused multiply-add: the SIMD vocabulary of the panel kernel (and
/// of the attention loops in [`crate::llm::llama`], through [`with_lanes`]). Every
/// operation is per lane and rounded once, so every implementation gives the same bits.
pub(crate) trait Lanes: Copy {
    fn zero() -> Self;
    fn splat(x: f32) -> Self;
    /// The first 8 floats of `p` (panics if there are fewer).
    fn load(p: &[f32]) -> Self;
    /// Into the first 8 floats of `p` (panics if there are fewer).
    fn store(self, p: &mut [f32]);
    /// `a·b + c`, rounded once per lane.
    fn fma(a: Self, b: Self, c: Self) -> Self;
    /// `a·b`.
    fn mul(a: Self, b: Self) -> Self;
}

/// Work written once, generic over [`Lanes`].
pub(crate) trait LaneWork {
    fn run<L: Lanes>(self);
}

/// Runs `w` on the best lanes this CPU has: AVX2 (x86-64 with AVX2 and FMA), NEON
/// (aarch64), else portable lanes (with the FMA instruction where there is one). The
/// scalar switch ([`crate::kernels::force_scalar`]) forces the portable lanes. All give
/// the same bits. `run` should be `#[inline(always)]` so it is compiled for those lanes.
pub(crate) fn with_lanes<W: LaneWork>(w: W) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        fn avx<W: LaneWork>(w: W) {
            w.run::<avx2::Avx>()
        }
        #[target_feature(enable = "fma")]
        fn hw<W: LaneWork>(w: W) {
            w.run::<Scalar8<HwFma>>()
        }
        if crate::kernels::use_avx2() {
            // SAFETY: `use_avx2` checked that the CPU has AVX2 and FMA.
            unsafe { avx(w) };
            return;
        }
        if crate::kernels::has_hw_fma() {
            // SAFETY: the CPU has FMA.
            unsafe { hw(w) };
            return;
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if !crate::kernels::force_scalar() {
            return w.run::<neon::Neon>();
        }
    }
    w.run::<Scalar8<SoftFma>>()
}

/// Portable lanes, generic over how the scalar FMA is done.
struct Scalar8<F>([f32; 8], std::marker::PhantomData<F>);

impl<F> Clone for Scalar8<F> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F> Copy for Scalar8<F> {}

impl<F: Fma> Lanes for Scalar8<F> {
    #[inline(always)]
    fn zero() -> Self {
        Scalar8([0.0; 8], std::marker::PhantomData)
    }
    #[inline(always)]
    fn splat(x: f32) -> Self {
        Scalar8([x; 8], std::marker::PhantomData)
    }
    #[inline(always)]
    fn load(p: &[f32]) -> Self {
        let mut a = [0.0; 8];
        a.copy_from_slice(&p[..8]);
        Scalar8(a, std::marker::PhantomData)
    }
    #[inline(always)]
    fn store(self, p: &mut [f32]) {
        p[..8].copy_from_slice(&self.0);
    }
    #[inline(always)]
    fn fma(a: Self, b: Self, c: Self) -> Self {
        let mut o = [0.0; 8];
        for l in 0..8 {
            o[l] = F::fma(a.0[l], b.0[l], c.0[l]);
        }
        Scalar8(o, std::marker::PhantomData)
    }
    #[inline(always)]
    fn mul(a: Self, b: Self) -> Self {
        let mut o = [0.0; 8];
        for l in 0..8 {
            o[l] = a.0[l] * b.0[l];
        }
        Scalar8(o, std::marker::PhantomData)
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Eight lanes in one AVX2 register. Only used inside `avx2,fma` functions.
    #[derive(Clone, Copy)]
    pub(super) struct Avx(__m256);

    /// One panel of a Q4_0 / Q4_1 / Q8_0 matrix for few rows of `x`, decoding each
    /// block's integers in registers instead of through a tile (decode: one row, where a
    /// tile would be used once). Same operations in the same order as `super::panel`.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn panel_fused(p: &super::Product<'_>, panel: usize, acc: &mut [f32]) {
        use super::{WeightType, BLOCK, PANEL};
        let w = p.w;
        let (k, blocks) = (w.k, w.blocks());
        let ty = w.ty;
        let scales = if ty == WeightType::Q4_1 { 2 } else { 1 };
        assert!(acc.len() >= p.m * PANEL);
        acc[..p.m * PANEL].fill(0.0);
        // SAFETY: the caller guarantees AVX2/FMA/F16C; every pointer below stays inside a
        // chunk whose length was checked against the layout (scales at 0 and 64, quants after).
        unsafe {
            let mask = _mm256_set1_epi32(15);
            let off = _mm256_set1_epi32(if ty == WeightType::Q4_0 { 8 } else { 0 });
            for b in 0..blocks {
                let c = w.chunk(panel, b);
                assert!(c.len() >= w.ty.chunk_bytes());
                // SAFETY (this block): every pointer below stays inside `c`, whose length was
                // checked against the chunk layout (scales at 0 and 64, quants after).
                let cp = c.as_ptr();
                let mut d = [_mm256_setzero_ps(); 4];
                let mut mn = [_mm256_setzero_ps(); 4];
                for v in 0..4 {
                    d[v] = _mm256_cvtph_ps(_mm_loadu_si128(cp.add(16 * v) as *const __m128i));
                    if scales == 2 {
                        mn[v] =
                            _mm256_cvtph_ps(_mm_loadu_si128(cp.add(64 + 16 * v) as *const __m128i));
                    }
                }
                let qs = cp.add(64 * scales);
                for i in 0..p.m {
                    let xr = &p.x[i * k + b * BLOCK..][..BLOCK];
                    let mut lo = [_mm256_setzero_ps(); 4];
                    let mut hi = [_mm256_setzero_ps(); 4];
                    if ty == WeightType::Q8_0 {
                        for q in 0..16 {
                            let a = _mm256_set1_ps(xr[q]);
                            let h = _mm256_set1_ps(xr[q + 16]);
                            for v in 0..4 {
                                let bl =
                                    _mm_loadl_epi64(qs.add(q * PANEL + v * 8) as *const __m128i);
                                let bh = _mm_loadl_epi64(
                                    qs.add((q + 16) * PANEL + v * 8) as *const __m128i
                                );
                                let ql = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bl));
                                let qh = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bh));
                                lo[v] = _mm256_fmadd_ps(a, ql, lo[v]);
                                hi[v] = _mm256_fmadd_ps(h, qh, hi[v]);
                            }
                        }
                    } else {
                        for q in 0..16 {
                            let a = _mm256_set1_ps(xr[q]);
                            let h = _mm256_set1_ps(xr[q + 16]);
                            for v in 0..4 {
                                let bytes =
                                    _mm_loadl_epi64(qs.add(q * PANEL + v * 8) as *const __m128i);
                                let wide = _mm256_cvtepu8_epi32(bytes);
                                let ql = _mm256_sub_epi32(_mm256_and_si256(wide, mask), off);
                                let qh = _mm256_sub_epi32(_mm256_srli_epi32(wide, 4), off);
                                lo[v] = _mm256_fmadd_ps(a, _mm256_cvtepi32_ps(ql), lo[v]);
                                hi[v] = _mm256_fmadd_ps(h, _mm256_cvtepi32_ps(qh), hi[v]);
                            }
                        }
                    }
                    let row = &mut acc[i * PANEL..][..PANEL];
                    let sx = _mm256_set1_ps(if scales == 2 {
                        p.sx[i * blocks + b]
                    } else {
                        0.0
                    });
                    for v in 0..4 {
                        let rp = row[v * 8..][..8].as_mut_ptr();
                        let mut a = _mm256_loadu_ps(rp);
                        a = _mm256_fmadd_ps(d[v], lo[v], a);
                        a = _mm256_fmadd_ps(d[v], hi[v], a);
                        if scales == 2 {
                            a = _mm256_fmadd_ps(mn[v], sx, a);
                        }
                        _mm256_storeu_ps(rp, a);
                    }
                }
            }
        }
    }

    impl super::Lanes for Avx {
        #[inline(always)]
        fn zero() -> Self {
            // SAFETY (all methods): called only from code compiled with avx2+fma on a CPU
            // that has them (checked by the dispatcher); loads/stores are bounds-checked.
            unsafe { Avx(_mm256_setzero_ps()) }
        }
        #[inline(always)]
        fn splat(x: f32) -> Self {
            unsafe { Avx(_mm256_set1_ps(x)) }
        }
        #[inline(always)]
        fn load(p: &[f32]) -> Self {
            assert!(p.len() >= 8);
            unsafe { Avx(_mm256_loadu_ps(p.as_ptr())) }
        }
        #[inline(always)]
        fn store(self, p: &mut [f32]) {
            assert!(p.len() >= 8);
            unsafe { _mm256_storeu_ps(p.as_mut_ptr(), self.0) }
        }
        #[inline(always)]
        fn fma(a: Self, b: Self, c: Self) -> Self {
            unsafe { Avx(_mm256_fmadd_ps(a.0, b.0, c.0)) }
        }
        #[inline(always)]
        fn mul(a: Self, b: Self) -> Self {
            unsafe { Avx(_mm256_mul_ps(a.0, b.0)) }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{decode_chunk, Product, Tile, BLOCK, PANEL};

    /// Rows of `x` per register tile: `4·ROWS` accumulators plus four tile vectors.
    const ROWS: usize = 6;

    /// One panel for many rows of `x` (prefill): each block is decoded once into a tile,
    /// and every tile load serves `ROWS` rows. A 32-row panel is two 16-lane vectors; the
    /// same operations in the same order as `super::panel` (one lane = one output).
    /// Output row `i` of the panel goes to `c[i·ldc .. i·ldc + 32]`.
    ///
    /// # Safety
    /// The CPU has AVX-512F; `c` points at `p.m` rows (stride `ldc`) of 32 writable
    /// floats that nothing else reads or writes meanwhile.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn panel(p: &Product<'_>, panel: usize, c: *mut f32, ldc: usize) {
        let w = p.w;
        assert!(p.xp.len() >= p.m * w.k);
        assert!(!w.ty.has_min() || p.sx.len() >= p.m * w.blocks());
        let mut tile = Tile::default();
        // The panel's outputs, contiguous while they accumulate (rows of `c` may be a
        // multiple of 4 KiB apart, which would make them fight over L1 sets).
        let mut acc = vec![0.0f32; p.m * PANEL];
        let a = acc.as_mut_ptr();
        for b in 0..w.blocks() {
            decode_chunk(w.ty, w.chunk(panel, b), &mut tile);
            let mut i = 0;
            while i < p.m {
                let r = (p.m - i).min(ROWS);
                // SAFETY: rows i..i + r < m of `xp` (asserted above) and of `acc`;
                // AVX-512F.
                unsafe {
                    let a = a.add(i * PANEL);
                    match r {
                        6 => rows::<6>(p, &tile, b, i, a, PANEL),
                        5 => rows::<5>(p, &tile, b, i, a, PANEL),
                        4 => rows::<4>(p, &tile, b, i, a, PANEL),
                        3 => rows::<3>(p, &tile, b, i, a, PANEL),
                        2 => rows::<2>(p, &tile, b, i, a, PANEL),
                        _ => rows::<1>(p, &tile, b, i, a, PANEL),
                    }
                }
                i += r;
            }
        }
        for (i, row) in acc.chunks_exact(PANEL).enumerate() {
            // SAFETY: the caller's `m` rows of 32 floats at stride `ldc`.
            unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), c.add(i * ldc), PANEL) };
        }
    }

    /// Block `b` of rows `i0..i0 + R` into their outputs (`c`, stride `ldc`; block 0
    /// starts them from +0).
    ///
    /// # Safety
    /// AVX-512F; rows `i0..i0 + R` exist in `p.x` and `p.sx` (Q4_1); `c` has `R` rows of
    /// 32 writable floats at stride `ldc`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn rows<const R: usize>(
        p: &Product<'_>,
        t: &Tile,
        b: usize,
        i0: usize,
        c: *mut f32,
        ldc: usize,
    ) {
        let blocks = p.w.blocks();
        let has_min = p.w.ty.has_min();
        // SAFETY: every pointer stays inside the rows the caller vouched for; tile rows
        // are 32 floats.
        unsafe {
            let x = p.xp.as_ptr().add((b * p.m + i0) * BLOCK);
            let mut lo = [[_mm512_setzero_ps(); 2]; R];
            let mut hi = [[_mm512_setzero_ps(); 2]; R];
            for q in 0..16 {
                let l0 = _mm512_loadu_ps(t.q[q].as_ptr());
                let l1 = _mm512_loadu_ps(t.q[q].as_ptr().add(16));
                let h0 = _mm512_loadu_ps(t.q[q + 16].as_ptr());
                let h1 = _mm512_loadu_ps(t.q[q + 16].as_ptr().add(16));
                for r in 0..R {
                    let a = _mm512_set1_ps(*x.add(r * BLOCK + q));
                    let c = _mm512_set1_ps(*x.add(r * BLOCK + q + 16));
                    lo[r][0] = _mm512_fmadd_ps(a, l0, lo[r][0]);
                    lo[r][1] = _mm512_fmadd_ps(a, l1, lo[r][1]);
                    hi[r][0] = _mm512_fmadd_ps(c, h0, hi[r][0]);
                    hi[r][1] = _mm512_fmadd_ps(c, h1, hi[r][1]);
                }
            }
            let d = [
                _mm512_loadu_ps(t.d.as_ptr()),
                _mm512_loadu_ps(t.d.as_ptr().add(16)),
            ];
            let m = [
                _mm512_loadu_ps(t.m.as_ptr()),
                _mm512_loadu_ps(t.m.as_ptr().add(16)),
            ];
            for r in 0..R {
                let row = c.add(r * ldc);
                let s = _mm512_set1_ps(if has_min {
                    *p.sx.as_ptr().add((i0 + r) * blocks + b)
                } else {
                    0.0
                });
                for v in 0..2 {
                    let mut a = if b == 0 {
                        _mm512_setzero_ps()
                    } else {
                        _mm512_loadu_ps(row.add(16 * v))
                    };
                    a = _mm512_fmadd_ps(d[v], lo[r][v], a);
                    a = _mm512_fmadd_ps(d[v], hi[r][v], a);
                    if has_min {
                        a = _mm512_fmadd_ps(m[v], s, a);
                    }
                    _mm512_storeu_ps(row.add(16 * v), a);
                }
            }
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;

    /// Eight lanes in two NEON registers.
    #[derive(Clone, Copy)]
    pub(super) struct Neon(float32x4_t, float32x4_t);

    impl super::Lanes for Neon {
        #[inline(always)]
        fn zero() -> Self {
            // SAFETY (all methods): NEON is always present on aarch64; loads/stores are
            // bounds-checked.
            unsafe { Neon(vdupq_n_f32(0.0), vdupq_n_f32(0.0)) }
        }
        #[inline(always)]
        fn splat(x: f32) -> Self {
            unsafe { Neon(vdupq_n_f32(x), vdupq_n_f32(x)) }
        }
        #[inline(always)]
        fn load(p: &[f32]) -> Self {
            assert!(p.len() >= 8);
            unsafe { Neon(vld1q_f32(p.as_ptr()), vld1q_f32(p.as_ptr().add(4))) }
        }
        #[inline(always)]
        fn store(self, p: &mut [f32]) {
            assert!(p.len() >= 8);
            unsafe {
                vst1q_f32(p.as_mut_ptr(), self.0);
                vst1q_f32(p.as_mut_ptr().add(4), self.1);
            }
        }
        #[inline(always)]
        fn fma(a: Self, b: Self, c: Self) -> Self {
            // vfmaq_f32(c, a, b) = c + a·b, fused.
            unsafe { Neon(vfmaq_f32(c.0, a.0, b.0), vfmaq_f32(c.1, a.1, b.1)) }
        }
        #[inline(always)]
        fn mul(a: Self, b: Self) -> Self {
            unsafe { Neon(vmulq_f32(a.0, b.0), vmulq_f32(a.1, b.1)) }
        }
    }
}

/// The operands of one product.
struct Product<'a> {
    w: &'a QMatrix,
    x: &'a [f32],
    m: usize,
    /// Block sums of `x` (Q4_1 only), `m × blocks`.
    sx: &'a [f32],
    /// `x` block-major for the AVX-512 kernel (`xp[(b·m + i)·32 + p] = x[i][32b + p]`),
    /// else empty.
    xp: &'a [f32],
}

/// Computes one panel: `acc[i·32 + r] = out[i][panel·32 + r]` for every row `i`.
#[inline(always)]
fn panel<L: Lanes>(p: &Product<'_>, panel: usize, acc: &mut [f32]) {
    let w = p.w;
    let (k, blocks) = (w.k, w.blocks());
    let has_min = w.ty.has_min();
    acc.fill(0.0);
    let mut tile = Tile::default();
    for b in 0..blocks {
        decode_chunk(w.ty, w.chunk(panel, b), &mut tile);
        for i in 0..p.m {
            let xr = &p.x[i * k + b * BLOCK..][..BLOCK];
            let mut lo = [L::zero(); 4];
            let mut hi = [L::zero(); 4];
            for q in 0..16 {
                let a = L::splat(xr[q]);
                let c = L::splat(xr[q + 16]);
                for v in 0..4 {
                    lo[v] = L::fma(a, L::load(&tile.q[q][v * 8..]), lo[v]);
                    hi[v] = L::fma(c, L::load(&tile.q[q + 16][v * 8..]), hi[v]);
                }
            }
            let row = &mut acc[i * PANEL..][..PANEL];
            let s = L::splat(if has_min { p.sx[i * blocks + b] } else { 0.0 });
            for v in 0..4 {
                let d = L::load(&tile.d[v * 8..]);
                let mut a = L::load(&row[v * 8..]);
                a = L::fma(d, lo[v], a);
                a = L::fma(d, hi[v], a);
                if has_min {
                    a = L::fma(L::load(&tile.m[v * 8..]), s, a);
                }
                a.store(&mut row[v * 8..]);
            }
        }
    }
}

/// Which code computes a panel (all give the same bits).
#[derive(Clone, Copy)]
enum Path {
    /// AVX2 for few rows, AVX-512F for many.
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    ScalarHwFma,
    #[cfg(target_arch = "aarch64")]
    Neon,
    Scalar,
}

fn path() -> Path {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::kernels::use_avx2() && std::arch::is_x86_feature_detected!("f16c") {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Path::Avx512;
            }
            return Path::Avx2;
        }
        if crate::kernels::has_hw_fma() {
            return Path::ScalarHwFma;
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if !crate::kernels::force_scalar() {
            return Path::Neon;
        }
    }
    Path::Scalar
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn panel_avx2(p: &Product<'_>, j: usize, acc: &mut [f32]) {
    panel::<avx2::Avx>(p, j, acc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
fn panel_scalar_hw(p: &Product<'_>, j: usize, acc: &mut [f32]) {
    panel::<Scalar8<HwFma>>(p, j, acc)
}

fn panel_on(path: Path, p: &Product<'_>, j: usize, acc: &mut [f32]) {
    match path {
        // SAFETY: `path()` chose this arm only on a CPU with AVX-512F, AVX2, FMA and F16C;
        // `acc` holds the panel's `m` rows of 32.
        #[cfg(target_arch = "x86_64")]
        Path::Avx512 if !p.xp.is_empty() => unsafe {
            assert!(acc.len() >= p.m * PANEL);
            avx512::panel(p, j, acc.as_mut_ptr(), PANEL)
        },
        #[cfg(target_arch = "x86_64")]
        Path::Avx512 => panel_on(Path::Avx2, p, j, acc),
        // SAFETY: `path()` chose this arm only on a CPU with AVX2, FMA and F16C.
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => unsafe {
            if p.m < FUSED_ROWS
                && matches!(
                    p.w.ty,
                    WeightType::Q4_0 | WeightType::Q4_1 | WeightType::Q8_0
                )
            {
                avx2::panel_fused(p, j, acc)
            } else {
                panel_avx2(p, j, acc)
            }
        },
        // SAFETY: `path()` chose this arm only on a CPU with FMA.
        #[cfg(target_arch = "x86_64")]
        Path::ScalarHwFma => unsafe { panel_scalar_hw(p, j, acc) },
        #[cfg(target_arch = "aarch64")]
        Path::Neon => panel::<neon::Neon>(p, j, acc),
        Path::Scalar => panel::<Scalar8<SoftFma>>(p, j, acc),
    }
}

/// A raw pointer to a product's output that panel tasks share; each writes its own columns.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: tasks write disjoint column ranges, and the pointer outlives the loop using it.
#[cfg(target_arch = "x86_64")]
unsafe impl Send for OutPtr {}
#[cfg(target_arch = "x86_64")]
unsafe impl Sync for OutPtr {}

#[cfg(target_arch = "x86_64")]
impl OutPtr {
    /// The pointer (a method, so closures capture the whole `Send` wrapper).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Computes every panel into `tmp` (`[panels][m][32]`), in parallel when large.
fn run_panels(p: &Product<'_>, tmp: &mut [f32]) {
    let path = path();
    let chunk = p.m * PANEL;
    if p.m * p.w.n * p.w.k < PARALLEL_MACS {
        tmp.chunks_mut(chunk)
            .enumerate()
            .for_each(|(j, acc)| panel_on(path, p, j, acc));
    } else {
        tmp.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(j, acc)| panel_on(path, p, j, acc));
    }
}

/// `out[m × n] = x[m × k] · Wᵀ`, exactly as the module docs define it.
pub fn matmul(x: &[f32], w: &QMatrix, out: &mut [f32], m: usize) {
    assert_eq!(x.len(), m * w.k, "x is m × k");
    assert_eq!(out.len(), m * w.n, "out is m × n");
    if m == 0 {
        return;
    }
    let blocks = w.blocks();
    let sx: Vec<f32> = if w.ty.has_min() {
        x.chunks_exact(BLOCK)
            .map(|c| c.iter().fold(0.0f32, |s, &v| s + v))
            .collect()
    } else {
        Vec::new()
    };
    debug_assert!(sx.is_empty() || sx.len() == m * blocks);
    #[cfg(target_arch = "x86_64")]
    let wide = matches!(path(), Path::Avx512) && m >= FUSED_ROWS;
    #[cfg(not(target_arch = "x86_64"))]
    let wide = false;
    let xp: Vec<f32> = if wide {
        let mut xp = vec![0.0f32; m * w.k];
        for (b, dst) in xp.chunks_exact_mut(m * BLOCK).enumerate() {
            for (i, d) in dst.chunks_exact_mut(BLOCK).enumerate() {
                d.copy_from_slice(&x[i * w.k + b * BLOCK..][..BLOCK]);
            }
        }
        xp
    } else {
        Vec::new()
    };
    let p = Product {
        w,
        x,
        m,
        sx: &sx,
        xp: &xp,
    };
    let n_panels = w.n.div_ceil(PANEL);
    #[cfg(target_arch = "x86_64")]
    if wide && w.n.is_multiple_of(PANEL) {
        // Whole panels straight into `out`: panel `j` is its columns `32j..32j + 32`.
        let c = OutPtr(out.as_mut_ptr());
        let one = |j: usize| {
            // SAFETY: `path()` checked AVX-512F; panel `j` writes only its 32 columns of
            // the `m` rows of `out` (m × n, n a multiple of 32), no other task does.
            unsafe { avx512::panel(&p, j, c.get().add(j * PANEL), w.n) }
        };
        if m * w.n * w.k < PARALLEL_MACS {
            (0..n_panels).for_each(one);
        } else {
            (0..n_panels).into_par_iter().for_each(one);
        }
        return;
    }
    let mut tmp = vec![0.0f32; n_panels * m * PANEL];
    run_panels(&p, &mut tmp);
    for (j, acc) in tmp.chunks_exact(m * PANEL).enumerate() {
        let cols = PANEL.min(w.n - j * PANEL);
        for i in 0..m {
            out[i * w.n + j * PANEL..][..cols].copy_from_slice(&acc[i * PANEL..][..cols]);
        }
    }
}

/// The specification of [`matmul`] as the plainest loop, over the *file* bytes of `W`
/// (`n` rows of `k/32` blocks of `ty`), one output at a time.
pub fn matmul_reference(
    x: &[f32],
    ty: WeightType,
    file: &[u8],
    n: usize,
    k: usize,
    m: usize,
) -> Vec<f32> {
    let blocks = k / BLOCK;
    let fb = ty.file_block_bytes();
    let mut out = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for b in 0..blocks {
                let blk = &file[(j * blocks + b) * fb..][..fb];
                let (q, d, mn) = reference_block(ty, blk);
                let xs = &x[i * k + b * BLOCK..][..BLOCK];
                let lo = (0..16).fold(0.0f32, |s, p| SoftFma::fma(xs[p], q[p], s));
                let hi = (16..32).fold(0.0f32, |s, p| SoftFma::fma(xs[p], q[p], s));
                acc = SoftFma::fma(d, lo, acc);
                acc = SoftFma::fma(d, hi, acc);
                if ty == WeightType::Q4_1 {
                    let sx = xs.iter().fold(0.0f32, |s, &v| s + v);
                    acc = SoftFma::fma(mn, sx, acc);
                }
            }
            out[i * n + j] = acc;
        }
    }
    out
}

/// One file block as (q values, d, m), straight from ggml's block layouts.
fn reference_block(ty: WeightType, b: &[u8]) -> ([f32; 32], f32, f32) {
    let mut q = [0.0f32; 32];
    match ty {
        WeightType::Q4_0 | WeightType::Q4_1 => {
            let (d, m, qs) = if ty == WeightType::Q4_1 {
                (f16_to_f32(le16(b, 0)), f16_to_f32(le16(b, 2)), &b[4..])
            } else {
                (f16_to_f32(le16(b, 0)), 0.0, &b[2..])
            };
            let off = if ty == WeightType::Q4_0 { 8 } else { 0 };
            for i in 0..16 {
                q[i] = ((qs[i] & 15) as i32 - off) as f32;
                q[i + 16] = ((qs[i] >> 4) as i32 - off) as f32;
            }
            (q, d, m)
        }
        WeightType::Q8_0 => {
            for p in 0..32 {
                q[p] = b[2 + p] as i8 as f32;
            }
            (q, f16_to_f32(le16(b, 0)), 0.0)
        }
        WeightType::F16 | WeightType::BF16 => {
            for p in 0..32 {
                let h = le16(b, 2 * p);
                q[p] = if ty == WeightType::F16 {
                    f16_to_f32(h)
                } else {
                    bf16_to_f32(h)
                };
            }
            (q, 1.0, 0.0)
        }
        WeightType::F32 => {
            for p in 0..32 {
                q[p] = f32::from_le_bytes(b[4 * p..4 * p + 4].try_into().unwrap_or([0; 4]));
            }
            (q, 1.0, 0.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_conversion_is_exact() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
    }
}

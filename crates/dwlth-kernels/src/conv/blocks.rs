//! The building blocks of the CPU kernels: a convolution's [`Geometry`], per-thread scratch
//! buffers, [`matmul`] over strided [`View`]s into [`Store`]d outputs, transposes, and sums
//! over chunks of a batch. The im2col passes (`kernel.rs`), Winograd's
//! ([`winograd`](super::winograd)) and the sparse inference engine (`dwlth-sparse`) are
//! built from them.

use std::cell::Cell;
use std::mem::MaybeUninit;

use gemm::{gemm, Parallelism};
use rayon::prelude::*;

/// Columns a chunk aims for: wide enough for the matrix kernels, small enough that a chunk's
/// patch matrix stays in the last-level cache at ResNet's channel counts.
pub(crate) const TARGET_COLUMNS: usize = 1024;

/// The sizes of one convolution: batch, channels, input and output maps, kernel, stride,
/// leading padding and dilation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Images in the batch.
    pub batch: usize,
    /// Input channels.
    pub c_in: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride (rows, columns).
    pub stride: [usize; 2],
    /// Leading zero padding (rows, columns).
    pub pad: [usize; 2],
    /// Dilation (rows, columns).
    pub dilation: [usize; 2],
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
}

impl Geometry {
    /// Rows of the patch matrix.
    pub fn k(&self) -> usize {
        self.c_in * self.kh * self.kw
    }

    /// Output positions per image.
    pub fn p(&self) -> usize {
        self.oh * self.ow
    }

    /// Width of the zero-padded input plane [`im2col`] reads: leading padding, the image,
    /// and as much trailing padding as the last output column reads.
    pub(crate) fn padded_width(&self) -> usize {
        let reach = (self.ow - 1) * self.stride[1] + (self.kw - 1) * self.dilation[1] + 1;
        (self.w + self.pad[1]).max(reach)
    }

    /// Values of the zero-padded input plane.
    pub(crate) fn padded_len(&self) -> usize {
        let reach = (self.oh - 1) * self.stride[0] + (self.kh - 1) * self.dilation[0] + 1;
        (self.h + self.pad[0]).max(reach) * self.padded_width()
    }

    pub(crate) fn input_len(&self) -> usize {
        self.c_in * self.h * self.w
    }

    pub(crate) fn output_len(&self) -> usize {
        self.c_out * self.p()
    }

    /// A 1×1 convolution with stride 1 and no padding: the input image *is* its patch matrix.
    pub(crate) fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.oh == self.h && self.ow == self.w && self.pad == [0, 0]
    }

    /// Images per chunk: enough for [`TARGET_COLUMNS`], but at least two chunks per thread
    /// while the batch allows it.
    pub(crate) fn images_per_chunk(&self, threads: usize) -> usize {
        let by_width = TARGET_COLUMNS.div_ceil(self.p().max(1));
        let by_balance = self.batch.div_ceil(2 * threads.max(1));
        by_width.min(by_balance).clamp(1, self.batch.max(1))
    }

    /// The output columns `[lo, hi)` whose kernel column `kj` reads inside the input row.
    pub(crate) fn valid_columns(&self, kj: usize) -> (usize, usize) {
        let offset = kj * self.dilation[1];
        let s = self.stride[1];
        let pad = self.pad[1];
        let lo = if offset >= pad {
            0
        } else {
            (pad - offset).div_ceil(s)
        };
        let hi = if self.w + pad > offset {
            (self.w + pad - offset).div_ceil(s)
        } else {
            0
        };
        let hi = hi.min(self.ow);
        (lo.min(hi), hi)
    }

    /// The input row read by output row `oy` at kernel row `ki`, if inside the image.
    pub(crate) fn input_row(&self, oy: usize, ki: usize) -> Option<usize> {
        (oy * self.stride[0] + ki * self.dilation[0])
            .checked_sub(self.pad[0])
            .filter(|&iy| iy < self.h)
    }
}

thread_local! {
    /// Per-thread patch and product buffers, reused across calls (taken out while in use, so
    /// a nested call on the same thread only allocates).
    static PATCHES: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    static PRODUCT: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    static PLANE: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` with this thread's channels-last padded-plane buffer for `g` (`padded_len ·
/// c_in` values) whose padding is zero; the interior holds whatever the last call left.
///
/// Only the border is zeroed: a fresh zeroed plane per chunk wrote 38 MB per pass at
/// ResNet's first stage, a sixth of its patch matrices.
pub(crate) fn with_padded_plane<R>(g: &Geometry, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buffer = PLANE.take();
    let (c, wp) = (g.c_in, g.padded_width());
    let len = g.padded_len() * c;
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    let plane = &mut buffer[..len];
    let (top, bottom) = (g.pad[0], g.pad[0] + g.h);
    let (left, right) = (g.pad[1] * c, (g.pad[1] + g.w) * c);
    for (y, row) in plane.chunks_exact_mut(wp * c).enumerate() {
        if y < top || y >= bottom {
            row.fill(0.0);
        } else {
            row[..left].fill(0.0);
            row[right..].fill(0.0);
        }
    }
    let out = f(plane);
    PLANE.set(buffer);
    out
}

/// Runs `f` with this thread's two scratch buffers, each at least `a` and `b` long.
pub fn with_scratch<R>(a: usize, b: usize, f: impl FnOnce(&mut [f32], &mut [f32]) -> R) -> R {
    let mut patches = PATCHES.take();
    let mut product = PRODUCT.take();
    if patches.len() < a {
        patches.resize(a, 0.0);
    }
    if product.len() < b {
        product.resize(b, 0.0);
    }
    let out = f(&mut patches[..a], &mut product[..b]);
    PATCHES.set(patches);
    PRODUCT.set(product);
    out
}

/// A row-major matrix view for [`matmul`]: base pointer, row stride and column stride.
#[derive(Clone, Copy)]
pub struct View {
    ptr: *const f32,
    row: isize,
    col: isize,
}

impl View {
    /// A row-major matrix with `row_stride`.
    pub fn rows(data: &[f32], row_stride: usize) -> Self {
        Self {
            ptr: data.as_ptr(),
            row: row_stride as isize,
            col: 1,
        }
    }

    /// The transpose of a row-major matrix with `row_stride`.
    pub fn transposed(data: &[f32], row_stride: usize) -> Self {
        Self {
            ptr: data.as_ptr(),
            row: 1,
            col: row_stride as isize,
        }
    }
}

/// How [`matmul`] stores `dst[m, n]`: row-major (`[m][n]`), column-major (`[n][m]`), or
/// column-major with columns `ld ≥ m` apart (`dst[i, j]` at `i + j · ld`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// Row-major, `[m][n]`.
    Rows,
    /// Column-major, `[n][m]`.
    Columns,
    /// Column-major with columns `ld` apart.
    ColumnsApart(usize),
}

impl Store {
    /// (column stride, row stride) of `dst[m, n]`.
    pub(crate) fn strides(self, m: usize, n: usize) -> (isize, isize) {
        match self {
            Store::Rows => (1, n as isize),
            Store::Columns => (m as isize, 1),
            Store::ColumnsApart(ld) => (ld as isize, 1),
        }
    }

    /// Panics unless `dst[m, n]` fits in `len` values without two elements in one place.
    pub(crate) fn check(self, m: usize, n: usize, len: usize) {
        let extent = match self {
            Store::Rows | Store::Columns => m * n,
            Store::ColumnsApart(ld) => {
                assert!(ld >= m, "matmul: destination columns overlap");
                n.saturating_sub(1) * ld + m
            }
        };
        assert!(len >= extent, "matmul: destination too small");
    }
}

/// `dst[m, n] (+)= lhs[m, k] · rhs[k, n]`, `dst` stored as `store` says.
///
/// The caller guarantees that `lhs` and `rhs` address `m × k` and `k × n` elements inside
/// the slices they were made from; `dst` is checked to hold `dst[m, n]`.
pub fn matmul(
    (m, n, k): (usize, usize, usize),
    (dst, store): (&mut [f32], Store),
    accumulate: bool,
    lhs: View,
    rhs: View,
    parallelism: Parallelism,
) {
    store.check(m, n, dst.len());
    // SAFETY: `dst` holds the m × n distinct initialised values `store` addresses (checked).
    unsafe {
        product_into(
            (m, n, k),
            dst.as_mut_ptr(),
            store,
            accumulate,
            lhs,
            rhs,
            parallelism,
        )
    }
}

/// The product of [`matmul`] into `m × n` values at `dst`.
///
/// # Safety
/// `dst` must be valid for writes of the `m × n` values `store` addresses, and for reads of
/// them too when `accumulate` is set; `lhs` and `rhs` must address `m × k` and `k × n` values inside live
/// slices.
pub(crate) unsafe fn product_into(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    store: Store,
    accumulate: bool,
    lhs: View,
    rhs: View,
    parallelism: Parallelism,
) {
    // Empty convolutions never reach the kernels (`extension::geometry` sends them to Burn).
    assert!(m * n * k > 0, "matmul: empty product");
    let (dst_col, dst_row) = store.strides(m, n);
    // SAFETY: guaranteed by the caller (see above); the callers build the views from
    // matching sizes.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst,
            dst_col,
            dst_row,
            accumulate,
            lhs.ptr,
            lhs.col,
            lhs.row,
            rhs.ptr,
            rhs.col,
            rhs.row,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// [`matmul`] overwriting `dst`'s slots (`gemm` never reads the destination when it does
/// not accumulate).
pub(crate) fn matmul_into(
    (m, n, k): (usize, usize, usize),
    (dst, store): (&mut [MaybeUninit<f32>], Store),
    lhs: View,
    rhs: View,
    parallelism: Parallelism,
) {
    store.check(m, n, dst.len());
    // SAFETY: `dst` holds the m × n distinct slots `store` addresses (checked); not
    // accumulating, gemm only writes them (it reads its destination only when told to
    // accumulate).
    unsafe {
        product_into(
            (m, n, k),
            dst.as_mut_ptr().cast(),
            store,
            false,
            lhs,
            rhs,
            parallelism,
        )
    }
}

/// `dst[c][r] = src[r][c]` for a `rows × cols` row-major `src`.
pub(crate) fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [MaybeUninit<f32>]) {
    transpose_strided(src, cols, (rows, cols), dst);
}

/// `values` as slots to overwrite (what the kernels write their outputs into).
pub fn as_slots(values: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, and the slots start initialised;
    // writes through them store initialised values only, so `values` stays initialised.
    unsafe { &mut *(values as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// `slots` once every one of them has been written.
///
/// # Safety
/// Every element of `slots` must be initialised.
pub(crate) unsafe fn assume_written(slots: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: the caller guarantees every element is initialised; the layouts are equal.
    unsafe { &mut *(slots as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// `dst[c · rows + r] = src[r · src_stride + c]` for `r < rows`, `c < cols`: a block of
/// a strided matrix, transposed 4×4 blocks at a time (four loads, eight shuffles, four stores
/// on x86-64; scalar copies of the same blocks took 6 % of an attack's time).
pub(crate) fn transpose_strided(
    src: &[f32],
    src_stride: usize,
    (rows, cols): (usize, usize),
    dst: &mut [MaybeUninit<f32>],
) {
    let (full_rows, full_cols) = (rows / 4 * 4, cols / 4 * 4);
    // Four destination rows at a time, each written front to back: sweeping the source rows
    // instead wrote four rows a map's size apart per block (at 32×32 maps, 4 KiB apart: the
    // same cache set every time).
    for c0 in (0..full_cols).step_by(4) {
        for r0 in (0..full_rows).step_by(4) {
            transpose4(
                &src[r0 * src_stride + c0..],
                src_stride,
                &mut dst[c0 * rows + r0..],
                rows,
            );
        }
    }
    // The ragged right and bottom edges.
    for r in 0..rows {
        let first_col = if r < full_rows { full_cols } else { 0 };
        for c in first_col..cols {
            dst[c * rows + r].write(src[r * src_stride + c]);
        }
    }
}

/// `dst[j · dst_stride + i] = src[i · src_stride + j]` for `i, j < 4`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn transpose4(
    src: &[f32],
    src_stride: usize,
    dst: &mut [MaybeUninit<f32>],
    dst_stride: usize,
) {
    use std::arch::x86_64::{
        _mm_loadu_ps, _mm_movehl_ps, _mm_movelh_ps, _mm_storeu_ps, _mm_unpackhi_ps, _mm_unpacklo_ps,
    };
    let rows: [&[f32]; 4] = std::array::from_fn(|i| &src[i * src_stride..][..4]);
    // SAFETY: SSE is part of the x86-64 baseline, so the intrinsics are always available;
    // each row slice holds the four values a load reads (bounds-checked above).
    let columns = unsafe {
        let [a, b, c, d] = rows.map(|row| _mm_loadu_ps(row.as_ptr()));
        let (ab_lo, cd_lo) = (_mm_unpacklo_ps(a, b), _mm_unpacklo_ps(c, d));
        let (ab_hi, cd_hi) = (_mm_unpackhi_ps(a, b), _mm_unpackhi_ps(c, d));
        [
            _mm_movelh_ps(ab_lo, cd_lo),
            _mm_movehl_ps(cd_lo, ab_lo),
            _mm_movelh_ps(ab_hi, cd_hi),
            _mm_movehl_ps(cd_hi, ab_hi),
        ]
    };
    for (j, column) in columns.into_iter().enumerate() {
        let out = &mut dst[j * dst_stride..][..4];
        // SAFETY: `out` holds the four values the store writes (bounds-checked just above).
        unsafe { _mm_storeu_ps(out.as_mut_ptr().cast(), column) };
    }
}

/// `dst[j · dst_stride + i] = src[i · src_stride + j]` for `i, j < 4`.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub(crate) fn transpose4(
    src: &[f32],
    src_stride: usize,
    dst: &mut [MaybeUninit<f32>],
    dst_stride: usize,
) {
    for i in 0..4 {
        for j in 0..4 {
            dst[j * dst_stride + i].write(src[i * src_stride + j]);
        }
    }
}

/// Values per parallel task when [`sum_over_chunks`] adds its groups' sums.
pub(crate) const SUM_BLOCK: usize = 1 << 16;

/// `Σ` over chunks `0..chunks` of what `add(chunk, acc, accumulate)` adds into a `len`-value
/// accumulator (`accumulate` is false for a group's first chunk: overwrite), the chunks
/// split into one group per thread when `in_parallel`, the groups' sums added at the end.
pub(crate) fn sum_over_chunks(
    chunks: usize,
    in_parallel: bool,
    len: usize,
    add: impl Fn(usize, &mut [f32], bool) + Sync,
) -> Vec<f32> {
    let groups = if in_parallel {
        rayon::current_num_threads().min(chunks).max(1)
    } else {
        1
    };
    let per_group = chunks.div_ceil(groups);
    let group_sum = |group: usize| -> Vec<f32> {
        let mut acc = vec![0.0f32; len];
        let (first, last) = (group * per_group, ((group + 1) * per_group).min(chunks));
        for (n, chunk) in (first..last).enumerate() {
            add(chunk, &mut acc, n > 0);
        }
        acc
    };
    let mut partials: Vec<Vec<f32>> = if groups > 1 {
        (0..groups).into_par_iter().map(group_sum).collect()
    } else {
        vec![group_sum(0)]
    };
    let mut sum = partials.swap_remove(0);
    for partial in &partials {
        // In parallel: 38 MB per partial sum at 512 channels' Winograd weight gradient.
        sum.par_chunks_mut(SUM_BLOCK)
            .zip(partial.par_chunks(SUM_BLOCK))
            .for_each(|(a, b)| {
                for (a, b) in a.iter_mut().zip(b) {
                    *a += *b;
                }
            });
    }
    sum
}

/// The widest instruction set this CPU runs, for kernels compiled once per set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512F with AVX2 and FMA.
    Avx512,
    /// AVX2 with FMA.
    Avx2,
    /// Neither: the portable build.
    Baseline,
}

/// Detects [`Isa`] (cached by the standard library's feature detection).
pub fn isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx2") && has!("fma") {
            return Isa::Avx512;
        }
        if has!("avx2") && has!("fma") {
            return Isa::Avx2;
        }
    }
    Isa::Baseline
}

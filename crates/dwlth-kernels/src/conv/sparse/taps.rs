//! A weight's nonzero values as the kernel reads them: per output row, each tap's offset into
//! the source and its value, in offset order, split by chunks of source channels.

use rayon::prelude::*;

/// How [`Taps::build`] splits each row by chunks of source channels: as many channels as fit
/// `budget` bytes with a tile's `window` values each, channels `channel_len` values apart.
///
/// The kernel runs one chunk for every row before the next, so that the chunk's input window
/// of a tile stays in the L1 cache while all rows read it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Split {
    pub channels: usize,
    pub channel_len: usize,
    pub window: usize,
    pub budget: usize,
}

/// Nonzero taps by output row, compressed: row `r`'s are `starts[r]..starts[r + 1]` of
/// `offsets` and `values`, sorted by offset (so by source channel), and cut by chunks of
/// source channels at `split[r · (chunks + 1) + k]` for `k ≤ chunks`.
///
/// Only [`build`](Self::build) makes one, so that `max_offset` bounds every offset and every
/// row has its `chunks + 1` cuts: the kernel's unchecked reads rely on both.
pub(super) struct Taps {
    starts: Vec<usize>,
    offsets: Vec<u32>,
    values: Vec<f32>,
    max_offset: usize,
    chunks: usize,
    split: Vec<usize>,
}

impl Taps {
    /// The taps of `rows` rows, row `r`'s pushed by `row(r, taps)` as `(offset, value)` and
    /// found in parallel (a 512-channel 3×3 weight is 2.4 M values to scan, on every pass);
    /// `None` if an offset does not fit 32 bits.
    pub fn build(
        rows: usize,
        split: Split,
        row: impl Fn(usize, &mut Vec<(usize, f32)>) + Sync,
    ) -> Option<Self> {
        let found: Vec<Vec<(usize, f32)>> = (0..rows)
            .into_par_iter()
            .map(|r| {
                let mut taps = Vec::new();
                row(r, &mut taps);
                // Strided layers list a channel's phases out of order.
                taps.sort_unstable_by_key(|t| t.0);
                taps
            })
            .collect();
        let total = found.iter().map(Vec::len).sum();
        let mut taps = Taps {
            starts: Vec::with_capacity(rows + 1),
            offsets: Vec::with_capacity(total),
            values: Vec::with_capacity(total),
            max_offset: 0,
            chunks: 0,
            split: Vec::new(),
        };
        taps.starts.push(0);
        for r in found {
            for (offset, value) in r {
                taps.offsets.push(u32::try_from(offset).ok()?);
                taps.values.push(value);
                taps.max_offset = taps.max_offset.max(offset);
            }
            taps.starts.push(taps.offsets.len());
        }
        taps.cut(split);
        Some(taps)
    }

    fn cut(&mut self, s: Split) {
        let per_chunk = (s.budget / (4 * s.window.max(1))).clamp(1, s.channels.max(1));
        let chunks = s.channels.div_ceil(per_chunk).max(1);
        let bound = per_chunk * s.channel_len;
        let mut split = Vec::with_capacity((self.starts.len() - 1) * (chunks + 1));
        for r in self.starts.windows(2) {
            let row = &self.offsets[r[0]..r[1]];
            debug_assert!(row.is_sorted());
            split.push(r[0]);
            for k in 1..chunks {
                split.push(r[0] + row.partition_point(|&o| (o as usize) < k * bound));
            }
            split.push(r[1]);
        }
        self.chunks = chunks;
        self.split = split;
    }

    /// Output rows.
    pub fn rows(&self) -> usize {
        self.starts.len() - 1
    }

    /// Chunks of source channels (at least one).
    pub fn chunks(&self) -> usize {
        self.chunks
    }

    /// The largest offset of any tap.
    pub fn max_offset(&self) -> usize {
        self.max_offset
    }

    /// Row `r`'s taps that read chunk `k`: offsets and values.
    #[inline(always)]
    pub fn chunk(&self, r: usize, k: usize) -> (&[u32], &[f32]) {
        let at = r * (self.chunks + 1) + k;
        let (a, b) = (self.split[at], self.split[at + 1]);
        (&self.offsets[a..b], &self.values[a..b])
    }
}

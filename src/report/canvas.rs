//! A small RGB raster for PNG plots, drawn without system fonts: lines, dots and bands
//! rasterised here, text from the public-domain 8×8 bitmap font of `font8x8` (Latin and Greek,
//! so θ prints).

use font8x8::{UnicodeFonts, BASIC_FONTS, GREEK_FONTS, LATIN_FONTS};

pub(crate) struct Canvas {
    pub w: usize,
    pub h: usize,
    px: Vec<[f32; 3]>,
}

pub(crate) fn rgb(hex: &str) -> [f32; 3] {
    let v = u32::from_str_radix(hex.trim_start_matches('#'), 16).unwrap_or(0);
    [
        (v >> 16 & 255) as f32,
        (v >> 8 & 255) as f32,
        (v & 255) as f32,
    ]
}

impl Canvas {
    pub fn new(w: usize, h: usize) -> Self {
        Self {
            w,
            h,
            px: vec![[255.0; 3]; w * h],
        }
    }

    pub fn blend(&mut self, x: i64, y: i64, c: [f32; 3], alpha: f32) {
        if x < 0 || y < 0 || x as usize >= self.w || y as usize >= self.h {
            return;
        }
        let p = &mut self.px[y as usize * self.w + x as usize];
        for k in 0..3 {
            p[k] = p[k] * (1.0 - alpha) + c[k] * alpha;
        }
    }

    pub fn line(&mut self, (x0, y0): (f64, f64), (x1, y1): (f64, f64), c: [f32; 3], width: f64) {
        let steps = ((x1 - x0).abs().max((y1 - y0).abs()) * 2.0).ceil().max(1.0) as usize;
        let r = (width / 2.0).max(0.5);
        for i in 0..=steps {
            let t = i as f64 / steps as f64;
            let (x, y) = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t);
            self.dot(x, y, r, c, 1.0);
        }
    }

    pub fn dot(&mut self, x: f64, y: f64, r: f64, c: [f32; 3], alpha: f32) {
        let (xi, yi, ri) = (x.round() as i64, y.round() as i64, r.ceil() as i64);
        for dy in -ri..=ri {
            for dx in -ri..=ri {
                let d = ((xi + dx) as f64 - x).hypot((yi + dy) as f64 - y);
                if d <= r {
                    self.blend(xi + dx, yi + dy, c, alpha);
                }
            }
        }
    }

    /// Fills the region between two piecewise-linear curves over the same x values.
    pub fn band(&mut self, upper: &[(f64, f64)], lower: &[(f64, f64)], c: [f32; 3], alpha: f32) {
        for seg in 0..upper.len().saturating_sub(1) {
            let (xa, xb) = (upper[seg].0, upper[seg + 1].0);
            for x in xa.round() as i64..=xb.round() as i64 {
                let t = if xb > xa {
                    ((x as f64 - xa) / (xb - xa)).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let yu = upper[seg].1 + (upper[seg + 1].1 - upper[seg].1) * t;
                let yl = lower[seg].1 + (lower[seg + 1].1 - lower[seg].1) * t;
                for y in yu.round() as i64..=yl.round() as i64 {
                    self.blend(x, y, c, alpha);
                }
            }
        }
    }

    /// Draws `text` with its left edge at `x` (or centred / right-aligned), baseline box top at
    /// `y`, glyphs scaled by `scale`.
    pub fn text(&mut self, text: &str, x: f64, y: f64, align: f64, scale: usize, c: [f32; 3]) {
        let width = text.chars().count() * 8 * scale;
        let x0 = (x - align * width as f64).round() as i64;
        for (i, ch) in text.chars().enumerate() {
            let glyph = BASIC_FONTS
                .get(ch)
                .or_else(|| GREEK_FONTS.get(ch))
                .or_else(|| LATIN_FONTS.get(ch))
                .unwrap_or([0; 8]);
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits >> col & 1 == 1 {
                        for sy in 0..scale {
                            for sx in 0..scale {
                                let px = x0 + ((i * 8 + col) * scale + sx) as i64;
                                let py = y.round() as i64 + (row * scale + sy) as i64;
                                self.blend(px, py, c, 1.0);
                            }
                        }
                    }
                }
            }
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut bytes, self.w as u32, self.h as u32);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            let data: Vec<u8> = self
                .px
                .iter()
                .flat_map(|p| p.map(|v| v.round().clamp(0.0, 255.0) as u8))
                .collect();
            if let Ok(mut writer) = encoder.write_header() {
                let _ = writer.write_image_data(&data);
            }
        }
        bytes
    }
}

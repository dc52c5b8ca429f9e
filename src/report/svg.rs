//! Accuracy–sparsity plots as SVG (paper A, Fig. 3–5): one line per pre-training with a
//! mean ± std band, sparsity levels evenly spaced on the x axis.

use std::fmt::Write as _;

/// One line of a plot.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// (sparsity, mean, std) in [0, 1] units, sorted by sparsity.
    pub points: Vec<(f64, f64, f64)>,
}

const PALETTE: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Geometry shared by the SVG and PNG renderers: canvas, margins, the evenly spaced sparsity
/// levels, and the accuracy range.
pub(crate) struct Frame {
    pub w: f64,
    pub h: f64,
    pub left: f64,
    pub right: f64,
    pub top: f64,
    pub bottom: f64,
    pub levels: Vec<f64>,
    pub lo: f64,
    pub hi: f64,
}

impl Frame {
    pub fn new(series: &[Series]) -> Self {
        let mut levels: Vec<f64> = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .collect();
        levels.sort_by(|a, b| a.total_cmp(b));
        levels.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for s in series {
            for &(_, m, d) in &s.points {
                lo = lo.min(m - d);
                hi = hi.max(m + d);
            }
        }
        if !lo.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        let pad = ((hi - lo) * 0.1).max(0.01);
        Self {
            w: 640.0,
            h: 400.0,
            left: 64.0,
            right: 150.0,
            top: 40.0,
            bottom: 56.0,
            levels,
            lo: (lo - pad).max(0.0),
            hi: (hi + pad).min(1.0),
        }
    }

    pub fn x_of(&self, s: f64) -> f64 {
        let i = self
            .levels
            .iter()
            .position(|l| (l - s).abs() < 1e-9)
            .unwrap_or(0);
        let n = self.levels.len().max(2) - 1;
        self.left + (self.w - self.left - self.right) * i as f64 / n as f64
    }

    pub fn y_of(&self, v: f64) -> f64 {
        self.top
            + (self.h - self.top - self.bottom)
                * (1.0 - (v - self.lo) / (self.hi - self.lo).max(1e-9))
    }

    /// Five grid values from `lo` to `hi`.
    pub fn y_ticks(&self) -> Vec<f64> {
        (0..=5)
            .map(|k| self.lo + (self.hi - self.lo) * k as f64 / 5.0)
            .collect()
    }
}

/// The colour of series `i`.
pub(crate) fn color(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// Renders a plot titled `title` with y label `metric`.
pub fn plot(title: &str, metric: &str, series: &[Series]) -> String {
    let frame = Frame::new(series);
    let Frame {
        w,
        h,
        left,
        right,
        top,
        bottom,
        ..
    } = frame;
    let levels = frame.levels.clone();
    let (lo, hi) = (frame.lo, frame.hi);
    let x_of = |s: f64| frame.x_of(s);
    let y_of = |v: f64| frame.y_of(v);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>
"#,
        (w - right + left) / 2.0,
        escape(title)
    );
    // Axes and grid.
    for k in 0..=5 {
        let v = lo + (hi - lo) * k as f64 / 5.0;
        let y = y_of(v);
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{:.1}</text>"##,
            w - right,
            left - 6.0,
            y + 4.0,
            100.0 * v
        );
    }
    for &s in &levels {
        let x = x_of(s);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{:.1}" stroke="#f0f0f0"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            h - bottom,
            h - bottom + 16.0,
            trim(100.0 * s)
        );
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{left}" y="{top}" width="{:.1}" height="{:.1}" fill="none" stroke="#333"/>
<text x="{:.1}" y="{:.1}" text-anchor="middle">sparsity (%)</text>
<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">{} (%)</text>"##,
        w - left - right,
        h - top - bottom,
        (w - right + left) / 2.0,
        h - 14.0,
        (h - bottom + top) / 2.0,
        escape(metric)
    );
    for (i, s) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        if s.points.is_empty() {
            continue;
        }
        let upper: Vec<String> = s
            .points
            .iter()
            .map(|&(x, m, d)| format!("{:.1},{:.1}", x_of(x), y_of(m + d)))
            .collect();
        let lower: Vec<String> = s
            .points
            .iter()
            .rev()
            .map(|&(x, m, d)| format!("{:.1},{:.1}", x_of(x), y_of(m - d)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polygon points="{} {}" fill="{color}" fill-opacity="0.15" stroke="none"/>"#,
            upper.join(" "),
            lower.join(" ")
        );
        let line: Vec<String> = s
            .points
            .iter()
            .map(|&(x, m, _)| format!("{:.1},{:.1}", x_of(x), y_of(m)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
            line.join(" ")
        );
        for &(x, m, _) in &s.points {
            let _ = writeln!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                x_of(x),
                y_of(m)
            );
        }
        let ly = top + 14.0 + 20.0 * i as f64;
        let lx = w - right + 12.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            lx + 20.0,
            lx + 26.0,
            ly + 4.0,
            escape(&s.label)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

pub(crate) fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plot_has_every_series_and_level() {
        let svg = plot(
            "cifar10 · AT · 100%",
            "RA",
            &[
                Series {
                    label: "θ_AT".into(),
                    points: vec![(0.0, 0.5, 0.01), (0.9, 0.48, 0.02)],
                },
                Series {
                    label: "θ_STD".into(),
                    points: vec![(0.0, 0.45, 0.0), (0.9, 0.30, 0.01)],
                },
            ],
        );
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains(">90<") && svg.contains("θ_STD"));
    }
}

//! The accuracy–sparsity plot (paper A, Fig. 3–5), drawn once for SVG and PNG: one line per
//! series with its mean ± std band, the legend beside the axes.
//!
//! Sparsity levels are evenly spaced on the x axis, labelled with their value: the levels are
//! chosen, not measured, and on a linear axis 80 %, 90 %, 95 % and 98 % would crowd at the
//! right edge.

use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::draw::{text, trim, Area, Drawn, INK};

/// One line of a plot.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// (sparsity, mean, std) in [0, 1] units, sorted by sparsity.
    pub points: Vec<(f64, f64, f64)>,
}

/// matplotlib's first six colours, the papers' figures' palette.
const PALETTE: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x8c, 0x56, 0x4b),
];

/// The colour of series `i`.
pub(crate) fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Width and height in pixels.
pub(crate) const SIZE: (u32, u32) = (640, 400);
/// The legend's column at the right.
const LEGEND: u32 = 150;

/// The x axis of `n` levels: level `i` at `i`, half a step of room at both ends, a tick and a
/// grid line at every level and nowhere else.
struct LevelAxis {
    n: usize,
}

impl Ranged for LevelAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, (from, to): (i32, i32)) -> i32 {
        let t = (v + 0.5) / self.n.max(1) as f64;
        from + (t * f64::from(to - from)).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            return Vec::new();
        }
        (0..self.n).map(|i| i as f64).collect()
    }

    fn range(&self) -> Range<f64> {
        -0.5..self.n as f64 - 0.5
    }
}

/// The distinct sparsity levels of every series, ascending.
fn levels(series: &[Series]) -> Vec<f64> {
    let mut levels: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    levels.sort_by(f64::total_cmp);
    levels.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
    levels
}

/// The y range: every band with a tenth of its span (at least a point) above and below,
/// inside `[0, 1]`.
fn value_range(series: &[Series]) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for &(_, m, d) in series.iter().flat_map(|s| &s.points) {
        if (m - d).is_finite() && (m + d).is_finite() {
            lo = lo.min(m - d);
            hi = hi.max(m + d);
        }
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.1).max(0.01);
    let (lo, hi) = ((lo - pad).max(0.0), (hi + pad).min(1.0));
    if hi > lo {
        (lo, hi)
    } else {
        (lo, lo + 0.01)
    }
}

/// Draws the plot titled `title` with y label `metric` on `root`.
pub(crate) fn draw<DB: DrawingBackend>(
    root: &Area<DB>,
    title: &str,
    metric: &str,
    series: &[Series],
) -> Drawn {
    root.fill(&WHITE)?;
    let levels = levels(series);
    let (lo, hi) = value_range(series);
    let (axes, legend) = root.split_horizontally(SIZE.0 - LEGEND);
    let n = levels.len().max(1);
    let mut chart = ChartBuilder::on(&axes)
        .caption(title, text(17.0, INK, HPos::Center, VPos::Top))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(LevelAxis { n }, lo..hi)?;
    let level_label = |x: &f64| {
        levels
            .get(x.round().max(0.0) as usize)
            .map_or(String::new(), |l| trim(100.0 * l))
    };
    let percent = |v: &f64| format!("{:.1}", 100.0 * v);
    let y_desc = format!("{metric} (%)");
    chart
        .configure_mesh()
        .x_label_formatter(&level_label)
        .y_labels(6)
        .y_label_formatter(&percent)
        .x_desc("sparsity (%)")
        .y_desc(y_desc.as_str())
        .label_style(text(14.0, INK, HPos::Center, VPos::Center))
        .axis_desc_style(text(15.0, INK, HPos::Center, VPos::Center))
        .bold_line_style(RGBColor(0xe4, 0xe4, 0xe4))
        .light_line_style(TRANSPARENT)
        .axis_style(INK)
        .draw()?;
    let x_of = |s: f64| {
        levels
            .iter()
            .position(|l| (l - s).abs() < 1e-9)
            .unwrap_or(0) as f64
    };
    let clamp = |v: f64| v.clamp(lo, hi);
    for (i, s) in series.iter().enumerate() {
        let colour = color(i);
        // Points without a mean are left out, a missing spread is none.
        let points: Vec<(f64, f64, f64)> = s
            .points
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|&(x, m, d)| (x_of(x), m, if d.is_finite() { d } else { 0.0 }))
            .collect();
        let mut band: Vec<(f64, f64)> = points.iter().map(|&(x, m, d)| (x, clamp(m + d))).collect();
        band.extend(points.iter().rev().map(|&(x, m, d)| (x, clamp(m - d))));
        chart.draw_series(std::iter::once(Polygon::new(band, colour.mix(0.15))))?;
        chart.draw_series(
            LineSeries::new(
                points.iter().map(|&(x, m, _)| (x, clamp(m))),
                colour.stroke_width(2),
            )
            .point_size(3),
        )?;
        let y = 52 + 22 * i as i32;
        legend.draw(&PathElement::new([(8, y), (32, y)], colour.stroke_width(2)))?;
        legend.draw(&Circle::new((20, y), 3, colour.filled()))?;
        legend.draw(&Text::new(
            s.label.as_str(),
            (38, y),
            text(14.0, INK, HPos::Left, VPos::Center),
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(points: Vec<(f64, f64, f64)>) -> Series {
        Series {
            label: "θ".into(),
            points,
        }
    }

    #[test]
    fn levels_are_shared_and_ordered() {
        let s = [
            series(vec![(0.5, 0.9, 0.0), (0.9, 0.8, 0.0)]),
            series(vec![(0.0, 0.9, 0.0), (0.9 + 1e-12, 0.7, 0.0)]),
        ];
        assert_eq!(levels(&s), vec![0.0, 0.5, 0.9]);
    }

    #[test]
    fn the_range_holds_every_band_inside_zero_one() {
        let (lo, hi) = value_range(&[series(vec![(0.0, 0.5, 0.1), (0.9, 0.98, 0.05)])]);
        assert!((0.0..0.4).contains(&lo) && hi == 1.0);
        assert_eq!(value_range(&[]), (0.0, 1.0));
        let (lo, hi) = value_range(&[series(vec![(0.0, 1.0, 0.0)])]);
        assert!(hi > lo && hi <= 1.0);
        assert_eq!(
            value_range(&[series(vec![(0.0, f64::NAN, 0.0)])]),
            (0.0, 1.0)
        );
    }
    #[test]
    fn values_outside_the_scale_stay_on_the_canvas() {
        let wild = [series(vec![
            (0.0, f64::NAN, 0.0),
            (0.5, 1e300, f64::INFINITY),
            (0.9, -1e300, f64::NAN),
        ])];
        let svg = super::super::draw::svg(SIZE, |root| draw(root, "wild", "SA", &wild));
        let line = svg
            .lines()
            .find(|l| l.starts_with("<polyline") && l.contains("#1F77B4"))
            .expect("the two points with a mean");
        let points = line.split("points=\"").nth(1).unwrap_or_default();
        let coords: Vec<i32> = points
            .split(&['"', ' ', ','][..])
            .filter_map(|t| t.parse().ok())
            .collect();
        assert_eq!(coords.len(), 2 * 2, "{line}");
        assert!(coords.iter().all(|c| (0..640).contains(c)), "{line}");
    }
}

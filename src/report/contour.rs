//! Contour plots of a loss landscape (paper A Fig. 6 / A9), as SVG and PNG: a heat map of the
//! values, iso-lines by marching squares, a colour bar, and a training trajectory on top.
//!
//! Colours and iso-lines span the lowest value up to the 90th percentile: landscapes rise
//! steeply at their edges, and a scale set by the maximum would hide the basin the plot is
//! about. Larger values take the top colour.

use std::fmt::Write as _;

use super::canvas::{rgb, Canvas};
use super::svg::trim;

/// What a contour plot shows.
#[derive(Debug, Clone, Copy)]
pub struct ContourPlot<'a> {
    /// Title above the plot.
    pub title: &'a str,
    /// Grid coordinates along x (columns), increasing.
    pub xs: &'a [f64],
    /// Grid coordinates along y (rows), increasing.
    pub ys: &'a [f64],
    /// Row-major values (`ys.len() × xs.len()`); `None` where not computed.
    pub values: &'a [Option<f64>],
    /// A path drawn over the landscape (may be empty), a dot at every point.
    pub trajectory: &'a [[f64; 2]],
}

const W: f64 = 580.0;
const H: f64 = 500.0;
const LEFT: f64 = 64.0;
const TOP: f64 = 36.0;
const SIZE: f64 = 400.0;
const BAR_X: f64 = LEFT + SIZE + 22.0;
const LEVELS: usize = 10;
const VIRIDIS: [&str; 5] = ["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"];

fn finite(values: &[Option<f64>]) -> Vec<f64> {
    let mut v: Vec<f64> = values
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

/// The colour scale `(low, high)`: the minimum and the 90th percentile of the finite values.
pub fn value_range(values: &[Option<f64>]) -> Option<(f64, f64)> {
    let v = finite(values);
    let lo = *v.first()?;
    let hi = v[((v.len() - 1) as f64 * 0.9).round() as usize];
    Some((lo, if hi > lo { hi } else { lo + 1e-9 }))
}

/// The iso-line levels: ten values evenly spaced strictly inside the colour scale.
pub fn levels(values: &[Option<f64>]) -> Vec<f64> {
    let Some((lo, hi)) = value_range(values) else {
        return Vec::new();
    };
    (1..=LEVELS)
        .map(|i| lo + (hi - lo) * i as f64 / (LEVELS + 1) as f64)
        .collect()
}

fn colour(t: f64) -> [f32; 3] {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        1.0
    };
    let f = t * (VIRIDIS.len() - 1) as f64;
    let i = (f.floor() as usize).min(VIRIDIS.len() - 2);
    let (a, b) = (rgb(VIRIDIS[i]), rgb(VIRIDIS[i + 1]));
    let u = (f - i as f64) as f32;
    [0, 1, 2].map(|k| a[k] + (b[k] - a[k]) * u)
}

fn hex([r, g, b]: [f32; 3]) -> String {
    format!("#{:02x}{:02x}{:02x}", r as u8, g as u8, b as u8)
}

/// Line segments where the bilinear surface through the grid crosses `level`, in grid
/// coordinates (marching squares; a saddle cell is split by its centre value). Cells with a
/// missing corner have none.
pub fn iso_segments(
    xs: &[f64],
    ys: &[f64],
    values: &[Option<f64>],
    level: f64,
) -> Vec<[(f64, f64); 2]> {
    let (nx, ny) = (xs.len(), ys.len());
    let mut out = Vec::new();
    if values.len() != nx * ny {
        return out;
    }
    for j in 0..ny.saturating_sub(1) {
        for i in 0..nx.saturating_sub(1) {
            let corner = |di: usize, dj: usize| values[(j + dj) * nx + i + di];
            let (Some(a), Some(b), Some(c), Some(d)) =
                (corner(0, 0), corner(1, 0), corner(1, 1), corner(0, 1))
            else {
                continue;
            };
            // Corners counter-clockwise: (x0,y0) a, (x1,y0) b, (x1,y1) c, (x0,y1) d.
            let p = [
                (xs[i], ys[j]),
                (xs[i + 1], ys[j]),
                (xs[i + 1], ys[j + 1]),
                (xs[i], ys[j + 1]),
            ];
            let v = [a, b, c, d];
            let mut crossings = Vec::new();
            for e in 0..4 {
                let (u, w) = (e, (e + 1) % 4);
                if (v[u] < level) != (v[w] < level) {
                    let t = (level - v[u]) / (v[w] - v[u]);
                    crossings.push((
                        p[u].0 + t * (p[w].0 - p[u].0),
                        p[u].1 + t * (p[w].1 - p[u].1),
                    ));
                }
            }
            match crossings.len() {
                2 => out.push([crossings[0], crossings[1]]),
                4 => {
                    // Saddle: the centre decides which corners are connected.
                    let centre = (a + b + c + d) / 4.0;
                    if (centre < level) == (a < level) {
                        out.push([crossings[0], crossings[3]]);
                        out.push([crossings[1], crossings[2]]);
                    } else {
                        out.push([crossings[0], crossings[1]]);
                        out.push([crossings[2], crossings[3]]);
                    }
                }
                _ => {}
            }
        }
    }
    out
}

struct Frame {
    x_lo: f64,
    x_hi: f64,
    y_lo: f64,
    y_hi: f64,
}

impl Frame {
    fn new(p: &ContourPlot) -> Self {
        let lo_hi = |v: &[f64]| {
            let lo = v.first().copied().unwrap_or(0.0);
            let hi = v.last().copied().unwrap_or(1.0);
            if hi > lo {
                (lo, hi)
            } else {
                (lo - 0.5, lo + 0.5)
            }
        };
        let ((x_lo, x_hi), (y_lo, y_hi)) = (lo_hi(p.xs), lo_hi(p.ys));
        Self {
            x_lo,
            x_hi,
            y_lo,
            y_hi,
        }
    }

    fn px(&self, (x, y): (f64, f64)) -> (f64, f64) {
        (
            LEFT + (x - self.x_lo) / (self.x_hi - self.x_lo) * SIZE,
            TOP + SIZE - (y - self.y_lo) / (self.y_hi - self.y_lo) * SIZE,
        )
    }

    fn ticks(lo: f64, hi: f64) -> Vec<f64> {
        (0..5).map(|i| lo + (hi - lo) * i as f64 / 4.0).collect()
    }
}

fn label(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        trim(v)
    } else {
        format!("{v:.3}")
    }
}

/// The plot as SVG.
pub fn contour_svg(p: &ContourPlot) -> String {
    let f = Frame::new(p);
    let range = value_range(p.values);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
        LEFT + SIZE / 2.0,
        p.title.replace('&', "&amp;").replace('<', "&lt;")
    );
    // Heat map: one rectangle per grid point, centred on it.
    let (nx, ny) = (p.xs.len(), p.ys.len());
    let (cw, ch) = (SIZE / nx.max(1) as f64, SIZE / ny.max(1) as f64);
    for j in 0..ny {
        for i in 0..nx {
            let fill = match (p.values.get(j * nx + i).copied().flatten(), range) {
                (Some(v), Some((lo, hi))) => hex(colour((v - lo) / (hi - lo))),
                _ => "#cccccc".into(),
            };
            let _ = writeln!(
                s,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.2}" height="{:.2}" fill="{fill}"/>"#,
                LEFT + i as f64 * cw,
                TOP + SIZE - (j + 1) as f64 * ch,
                cw + 0.3,
                ch + 0.3
            );
        }
    }
    // Iso-lines through the grid points' values: grid coordinates map onto cell centres.
    let centre = |(x, y): (f64, f64)| {
        let gx = (x - f.x_lo) / (f.x_hi - f.x_lo) * (nx.saturating_sub(1)) as f64;
        let gy = (y - f.y_lo) / (f.y_hi - f.y_lo) * (ny.saturating_sub(1)) as f64;
        (LEFT + (gx + 0.5) * cw, TOP + SIZE - (gy + 0.5) * ch)
    };
    for level in levels(p.values) {
        let mut d = String::new();
        for [a, b] in iso_segments(p.xs, p.ys, p.values, level) {
            let (a, b) = (centre(a), centre(b));
            let _ = write!(d, "M{:.1} {:.1}L{:.1} {:.1}", a.0, a.1, b.0, b.1);
        }
        if !d.is_empty() {
            let _ = writeln!(
                s,
                r#"<path d="{d}" stroke="white" stroke-width="1" fill="none" opacity="0.8"><title>{}</title></path>"#,
                label(level)
            );
        }
    }
    if !p.trajectory.is_empty() {
        let points: Vec<String> = p
            .trajectory
            .iter()
            .map(|q| {
                let (x, y) = centre((q[0], q[1]));
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = writeln!(
            s,
            r##"<polyline points="{}" stroke="#d62728" stroke-width="2" fill="none"/>"##,
            points.join(" ")
        );
        for q in p.trajectory {
            let (x, y) = centre((q[0], q[1]));
            let _ = writeln!(
                s,
                r##"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="#d62728"/>"##
            );
        }
    }
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{SIZE}" height="{SIZE}" fill="none" stroke="#333"/>"##
    );
    for x in Frame::ticks(f.x_lo, f.x_hi) {
        let (px, _) = centre((x, f.y_lo));
        let _ = writeln!(
            s,
            r#"<text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            TOP + SIZE + 16.0,
            label(x)
        );
    }
    for y in Frame::ticks(f.y_lo, f.y_hi) {
        let (_, py) = centre((f.x_lo, y));
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            py + 4.0,
            label(y)
        );
    }
    if let Some((lo, hi)) = range {
        for k in 0..50 {
            let t = k as f64 / 49.0;
            let _ = writeln!(
                s,
                r#"<rect x="{BAR_X}" y="{:.1}" width="14" height="{:.1}" fill="{}"/>"#,
                TOP + SIZE - (k + 1) as f64 * SIZE / 50.0,
                SIZE / 50.0 + 0.5,
                hex(colour(t))
            );
        }
        for t in [0.0, 0.25, 0.5, 0.75, 1.0] {
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
                BAR_X + 18.0,
                TOP + SIZE - t * SIZE + 4.0,
                label(lo + t * (hi - lo))
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

/// The plot as PNG bytes (the heat map interpolated bilinearly between grid points).
pub fn contour_png(p: &ContourPlot) -> Vec<u8> {
    let f = Frame::new(p);
    let mut c = Canvas::new(W as usize, H as usize);
    let ink = rgb("#333333");
    let (nx, ny) = (p.xs.len(), p.ys.len());
    let range = value_range(p.values);
    let to_grid = |(px, py): (f64, f64)| {
        (
            (px - LEFT) / SIZE * (nx.saturating_sub(1)) as f64,
            (TOP + SIZE - py) / SIZE * (ny.saturating_sub(1)) as f64,
        )
    };
    let at = |i: usize, j: usize| p.values.get(j * nx + i).copied().flatten();
    for py in TOP as usize..(TOP + SIZE) as usize {
        for px in LEFT as usize..(LEFT + SIZE) as usize {
            let (gx, gy) = to_grid((px as f64 + 0.5, py as f64 + 0.5));
            let (i, j) = (
                (gx.floor().max(0.0) as usize).min(nx.saturating_sub(2)),
                (gy.floor().max(0.0) as usize).min(ny.saturating_sub(2)),
            );
            let (u, v) = (
                (gx - i as f64).clamp(0.0, 1.0),
                (gy - j as f64).clamp(0.0, 1.0),
            );
            let value = if nx < 2 || ny < 2 {
                at(0, 0)
            } else {
                match (at(i, j), at(i + 1, j), at(i, j + 1), at(i + 1, j + 1)) {
                    (Some(a), Some(b), Some(c), Some(d)) => Some(
                        a * (1.0 - u) * (1.0 - v)
                            + b * u * (1.0 - v)
                            + c * (1.0 - u) * v
                            + d * u * v,
                    ),
                    _ => None,
                }
            };
            let col = match (value, range) {
                (Some(v), Some((lo, hi))) => colour((v - lo) / (hi - lo)),
                _ => rgb("#cccccc"),
            };
            c.blend(px as i64, py as i64, col, 1.0);
        }
    }
    for level in levels(p.values) {
        for [a, b] in iso_segments(p.xs, p.ys, p.values, level) {
            c.line(f.px(a), f.px(b), [255.0; 3], 1.0);
        }
    }
    let red = rgb("#d62728");
    let path: Vec<(f64, f64)> = p.trajectory.iter().map(|q| f.px((q[0], q[1]))).collect();
    for pair in path.windows(2) {
        c.line(pair[0], pair[1], red, 2.0);
    }
    for &(x, y) in &path {
        c.dot(x, y, 3.0, red, 1.0);
    }
    let (x1, y1) = (LEFT + SIZE, TOP + SIZE);
    for (a, b) in [
        ((LEFT, TOP), (x1, TOP)),
        ((x1, TOP), (x1, y1)),
        ((x1, y1), (LEFT, y1)),
        ((LEFT, y1), (LEFT, TOP)),
    ] {
        c.line(a, b, ink, 1.0);
    }
    c.text(p.title, LEFT + SIZE / 2.0, 12.0, 0.5, 1, ink);
    for x in Frame::ticks(f.x_lo, f.x_hi) {
        c.text(&label(x), f.px((x, f.y_lo)).0, y1 + 8.0, 0.5, 1, ink);
    }
    for y in Frame::ticks(f.y_lo, f.y_hi) {
        c.text(
            &label(y),
            LEFT - 6.0,
            f.px((f.x_lo, y)).1 - 4.0,
            1.0,
            1,
            ink,
        );
    }
    if let Some((lo, hi)) = range {
        for py in TOP as usize..(TOP + SIZE) as usize {
            let t = (TOP + SIZE - py as f64) / SIZE;
            for px in BAR_X as usize..BAR_X as usize + 14 {
                c.blend(px as i64, py as i64, colour(t), 1.0);
            }
        }
        for t in [0.0, 0.25, 0.5, 0.75, 1.0] {
            let text = label(lo + t * (hi - lo));
            c.text(
                &text,
                BAR_X + 18.0,
                TOP + SIZE - t * SIZE - 4.0,
                0.0,
                1,
                ink,
            );
        }
    }
    c.encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bowl(n: usize) -> (Vec<f64>, Vec<Option<f64>>) {
        let xs: Vec<f64> = (0..n)
            .map(|i| -1.0 + 2.0 * i as f64 / (n - 1) as f64)
            .collect();
        let values = (0..n * n)
            .map(|k| Some(xs[k % n].powi(2) + xs[k / n].powi(2)))
            .collect();
        (xs, values)
    }

    #[test]
    fn iso_lines_of_a_bowl_are_circles() {
        let (xs, values) = bowl(41);
        let segments = iso_segments(&xs, &xs, &values, 0.25);
        assert!(segments.len() > 20);
        for [a, b] in segments {
            for (x, y) in [a, b] {
                let r = x.hypot(y);
                assert!((r - 0.5).abs() < 0.01, "point at radius {r}");
            }
        }
    }

    #[test]
    fn missing_points_break_the_lines_and_grey_the_map() {
        let (xs, mut values) = bowl(11);
        values.iter_mut().take(60).for_each(|v| *v = None);
        let segments = iso_segments(&xs, &xs, &values, 0.25);
        assert!(segments.iter().flatten().all(|(_, y)| *y >= xs[5] - 1e-12));
        let svg = contour_svg(&ContourPlot {
            title: "bowl",
            xs: &xs,
            ys: &xs,
            values: &values,
            trajectory: &[[0.5, 0.5], [0.0, 0.0]],
        });
        assert!(svg.contains("#cccccc") && svg.contains("<polyline"));
    }

    #[test]
    fn the_scale_stops_at_the_90th_percentile() {
        let values: Vec<Option<f64>> = (0..=100).map(|v| Some(v as f64)).collect();
        assert_eq!(value_range(&values), Some((0.0, 90.0)));
        let lv = levels(&values);
        assert_eq!(lv.len(), LEVELS);
        assert!(lv.iter().all(|l| *l > 0.0 && *l < 90.0));
        assert_eq!(value_range(&[None, Some(f64::NAN)]), None);
    }

    #[test]
    fn a_png_contour_is_a_png() {
        let (xs, values) = bowl(9);
        let png = contour_png(&ContourPlot {
            title: "bowl",
            xs: &xs,
            ys: &xs,
            values: &values,
            trajectory: &[],
        });
        assert_eq!(&png[1..4], b"PNG");
    }
}

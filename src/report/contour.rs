//! Contour plots of a loss landscape (paper A Fig. 6 / A9), as SVG and PNG: a heat map of the
//! values, iso-lines by marching squares, a colour bar, and a training trajectory on top, drawn
//! by one plotters function for both formats. The PNG's heat map is interpolated bilinearly
//! pixel by pixel; the SVG's is one rectangle per grid point, which keeps the file small and
//! shows where the values were computed.
//!
//! Colours and iso-lines span the lowest value up to the 90th percentile: landscapes rise
//! steeply at their edges, and a scale set by the maximum would hide the basin the plot is
//! about. Larger values take the top colour.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::draw::{self, rgb, text, trim, Area, Drawn, INK};

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

/// Width and height in pixels.
const SIZE: (u32, u32) = (580, 500);
/// The colour bar's column at the right.
const BAR: u32 = 96;
const LEVELS: usize = 10;
const VIRIDIS: [&str; 5] = ["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"];
/// Where no value was computed.
const MISSING: RGBColor = RGBColor(0xcc, 0xcc, 0xcc);
const TRAJECTORY: RGBColor = RGBColor(0xd6, 0x27, 0x28);

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

/// Viridis at `t` in `[0, 1]` (the top colour for larger or non-finite `t`).
fn colour(t: f64) -> RGBColor {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        1.0
    };
    let f = t * (VIRIDIS.len() - 1) as f64;
    let i = (f.floor() as usize).min(VIRIDIS.len() - 2);
    let (a, b) = (rgb(VIRIDIS[i]), rgb(VIRIDIS[i + 1]));
    let u = f - i as f64;
    let mix = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * u).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// The colour of `value` on the scale `range`, grey where there is none.
fn shade(value: Option<f64>, range: Option<(f64, f64)>) -> RGBColor {
    match (value, range) {
        (Some(v), Some((lo, hi))) => colour((v - lo) / (hi - lo)),
        _ => MISSING,
    }
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

/// The plotted ranges: the grid's first to last coordinate (half a unit around a single one),
/// kept within ±`f64::MAX / 4` so that their spans stay finite for plotters' tick search.
struct Frame {
    x: (f64, f64),
    y: (f64, f64),
}

impl Frame {
    fn new(p: &ContourPlot) -> Self {
        const LIMIT: f64 = f64::MAX / 4.0;
        let clean = |v: f64| {
            if v.is_finite() {
                v.clamp(-LIMIT, LIMIT)
            } else {
                0.0
            }
        };
        let lo_hi = |v: &[f64]| {
            let lo = clean(v.first().copied().unwrap_or(0.0));
            let hi = clean(v.last().copied().unwrap_or(1.0));
            if hi > lo {
                (lo, hi)
            } else {
                (lo - 0.5, lo + 0.5)
            }
        };
        Self {
            x: lo_hi(p.xs),
            y: lo_hi(p.ys),
        }
    }

    /// `(x, y)` moved onto the frame when outside it: plotters does not clip, and a point far
    /// off the grid (a trajectory that left it, an unsorted grid) would overflow its pixel
    /// arithmetic.
    fn inside(&self, (x, y): (f64, f64)) -> (f64, f64) {
        (x.clamp(self.x.0, self.x.1), y.clamp(self.y.0, self.y.1))
    }
}

/// Colour-bar labels: whole numbers from 100 on, two decimals from 1, three below.
fn label(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        trim(v)
    } else {
        format!("{v:.3}")
    }
}

/// The grid interval holding `v` and the position in it, `(i, u)` with `v ≈ axis[i] + u ·
/// (axis[i + 1] − axis[i])`, clamped to the grid.
fn locate(axis: &[f64], v: f64) -> (usize, f64) {
    if axis.len() < 2 {
        return (0, 0.0);
    }
    let i = axis.partition_point(|a| *a <= v).clamp(1, axis.len() - 1) - 1;
    let span = axis[i + 1] - axis[i];
    let u = if span > 0.0 {
        ((v - axis[i]) / span).clamp(0.0, 1.0)
    } else {
        0.0
    };
    (i, u)
}

/// The bilinear surface through the grid at `(x, y)`; none next to a missing value.
fn interpolate(p: &ContourPlot, x: f64, y: f64) -> Option<f64> {
    let (nx, ny) = (p.xs.len(), p.ys.len());
    if nx == 0 || ny == 0 || p.values.len() != nx * ny {
        return None;
    }
    let ((i, u), (j, v)) = (locate(p.xs, x), locate(p.ys, y));
    let (i1, j1) = ((i + 1).min(nx - 1), (j + 1).min(ny - 1));
    let at = |i: usize, j: usize| p.values[j * nx + i];
    let (a, b, c, d) = (at(i, j)?, at(i1, j)?, at(i, j1)?, at(i1, j1)?);
    Some(a * (1.0 - u) * (1.0 - v) + b * u * (1.0 - v) + c * (1.0 - u) * v + d * u * v)
}

/// The span grid point `i` stands for: halfway to its neighbours, the plot's edge at the ends.
fn extent(axis: &[f64], i: usize, (lo, hi): (f64, f64)) -> (f64, f64) {
    let from = if i == 0 {
        lo
    } else {
        (axis[i - 1] + axis[i]) / 2.0
    };
    let to = if i + 1 >= axis.len() {
        hi
    } else {
        (axis[i] + axis[i + 1]) / 2.0
    };
    (from, to)
}

/// Draws the plot on `root`; `smooth` interpolates the heat map per pixel instead of one
/// rectangle per grid point.
fn draw<DB: DrawingBackend>(root: &Area<DB>, p: &ContourPlot, smooth: bool) -> Drawn {
    root.fill(&WHITE)?;
    let f = Frame::new(p);
    let range = value_range(p.values);
    let (axes, bar) = root.split_horizontally(SIZE.0 - BAR);
    let mut chart = ChartBuilder::on(&axes)
        .caption(p.title, text(17.0, INK, HPos::Center, VPos::Top))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(f.x.0..f.x.1, f.y.0..f.y.1)?;
    let (px, py) = chart.plotting_area().get_pixel_range();
    if smooth {
        let (w, h) = (f64::from(px.end - px.start), f64::from(py.end - py.start));
        for row in py.clone() {
            let y = f.y.1 - (f64::from(row - py.start) + 0.5) / h * (f.y.1 - f.y.0);
            for col in px.clone() {
                let x = f.x.0 + (f64::from(col - px.start) + 0.5) / w * (f.x.1 - f.x.0);
                root.draw_pixel((col, row), &shade(interpolate(p, x, y), range))?;
            }
        }
    } else {
        let nx = p.xs.len();
        let cells = (0..p.ys.len()).flat_map(|j| (0..nx).map(move |i| (i, j)));
        chart.draw_series(cells.map(|(i, j)| {
            let (x0, x1) = extent(p.xs, i, f.x);
            let (y0, y1) = extent(p.ys, j, f.y);
            let value = p.values.get(j * nx + i).copied().flatten();
            let corners = [f.inside((x0, y0)), f.inside((x1, y1))];
            Rectangle::new(corners, shade(value, range).filled())
        }))?;
    }
    for level in levels(p.values) {
        let segments = iso_segments(p.xs, p.ys, p.values, level);
        chart.draw_series(
            segments
                .into_iter()
                .map(|[a, b]| PathElement::new([f.inside(a), f.inside(b)], WHITE.mix(0.8))),
        )?;
    }
    if !p.trajectory.is_empty() {
        chart.draw_series(
            LineSeries::new(
                p.trajectory
                    .iter()
                    .filter(|q| q.iter().all(|v| v.is_finite()))
                    .map(|q| f.inside((q[0], q[1]))),
                TRAJECTORY.stroke_width(2),
            )
            .point_size(3),
        )?;
    }
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(5)
        .y_labels(5)
        .label_style(text(14.0, INK, HPos::Center, VPos::Center))
        .axis_style(INK)
        .draw()?;
    chart.draw_series(std::iter::once(Rectangle::new(
        [(f.x.0, f.y.0), (f.x.1, f.y.1)],
        INK,
    )))?;
    if let Some((lo, hi)) = range {
        // The bar spans the plotting area's height, in the bar column's own pixels.
        let (top, height) = (py.start, py.end - py.start);
        let y_of = |t: f64| top + ((1.0 - t) * f64::from(height)).round() as i32;
        let steps = 50;
        for k in 0..steps {
            let (t0, t1) = (k as f64 / steps as f64, (k + 1) as f64 / steps as f64);
            let fill = colour((t0 + t1) / 2.0).filled();
            bar.draw(&Rectangle::new([(14, y_of(t1)), (28, y_of(t0))], fill))?;
        }
        for t in [0.0, 0.25, 0.5, 0.75, 1.0] {
            bar.draw(&Text::new(
                label(lo + t * (hi - lo)),
                (34, y_of(t)),
                text(14.0, INK, HPos::Left, VPos::Center),
            ))?;
        }
    }
    Ok(())
}

/// The plot as SVG.
pub fn contour_svg(p: &ContourPlot) -> String {
    draw::svg(SIZE, |root| draw(root, p, false))
}

/// The plot as PNG bytes (the heat map interpolated bilinearly between grid points).
pub fn contour_png(p: &ContourPlot) -> Vec<u8> {
    draw::png(SIZE, |root| draw(root, p, true))
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
        // Grey where missing, viridis elsewhere, the red trajectory through both points.
        assert!(svg.contains(r##"fill="#CCCCCC""##) && svg.contains(r##"fill="#440154""##));
        let path = svg
            .lines()
            .find(|l| l.starts_with("<polyline") && l.contains("#D62728"))
            .expect("trajectory");
        assert_eq!(path.matches(',').count(), 2);
        // One rectangle per grid point, plus the background, the frame and the colour bar.
        assert_eq!(svg.matches("<rect").count(), 11 * 11 + 1 + 1 + 50);
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
        let (xs, mut values) = bowl(9);
        let png = |values: &[Option<f64>]| {
            let png = contour_png(&ContourPlot {
                title: "bowl",
                xs: &xs,
                ys: &xs,
                values,
                trajectory: &[[0.5, -0.5], [0.0, 0.0]],
            });
            super::super::png::decode(&png)
        };
        let (w, h, pixels) = png(&values);
        assert_eq!((w, h), SIZE);
        let count =
            |pixels: &[u8], c: RGBColor| pixels.chunks(3).filter(|p| *p == [c.0, c.1, c.2]).count();
        // The bowl's bottom is the scale's first colour, its rim past the 90th percentile the
        // last; the trajectory is drawn over it.
        assert!(count(&pixels, colour(0.0)) > 0 && count(&pixels, colour(1.0)) > 1000);
        assert!(count(&pixels, TRAJECTORY) > 50);
        // Grey only in the anti-aliased edges of the text, until values are missing.
        let grey = count(&pixels, MISSING);
        assert!(grey < 200, "{grey}");
        values.iter_mut().take(18).for_each(|v| *v = None);
        let (_, _, pixels) = png(&values);
        assert!(count(&pixels, MISSING) > 10_000);
    }

    #[test]
    fn the_smooth_map_interpolates_between_grid_points() {
        let (xs, values) = bowl(3);
        let p = ContourPlot {
            title: "",
            xs: &xs,
            ys: &xs,
            values: &values,
            trajectory: &[],
        };
        assert_eq!(interpolate(&p, 0.0, 0.0), Some(0.0));
        assert_eq!(interpolate(&p, -1.0, 1.0), Some(2.0));
        assert_eq!(interpolate(&p, 0.5, 0.0), Some(0.5));
        assert_eq!(interpolate(&p, 7.0, 0.0), Some(1.0));
        assert_eq!(extent(&xs, 0, (-1.0, 1.0)), (-1.0, -0.5));
        assert_eq!(extent(&xs, 1, (-1.0, 1.0)), (-0.5, 0.5));
    }
    #[test]
    fn wild_grids_and_trajectories_still_draw() {
        // Coordinates whose span overflows, an unsorted axis, values near the largest float,
        // a trajectory far off the grid: every plot is drawn, nothing panics or hangs.
        let xs = [-1e308, 0.0, 1e308];
        let ys = [1.0, -1.0, 0.5];
        let values: Vec<Option<f64>> = (0..9)
            .map(|k| Some(if k % 2 == 0 { 1e308 } else { -1e308 }))
            .collect();
        let trajectory = [[1e300, -1e300], [f64::NAN, 0.0], [0.0, 0.0]];
        let p = ContourPlot {
            title: "wild",
            xs: &xs,
            ys: &ys,
            values: &values,
            trajectory: &trajectory,
        };
        assert!(contour_svg(&p).contains("wild"));
        let (w, h, _) = super::super::png::decode(&contour_png(&p));
        assert_eq!((w, h), SIZE);
    }
}

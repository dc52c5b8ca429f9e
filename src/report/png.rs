//! The accuracy–sparsity plots as PNG: the same geometry as the SVG plots, drawn on the
//! report's bitmap canvas.

use super::canvas::{rgb, Canvas};
use super::svg::{color, trim, Frame, Series};

/// The plot of [`super::svg::plot`] as PNG bytes.
pub fn plot(title: &str, metric: &str, series: &[Series]) -> Vec<u8> {
    let f = Frame::new(series);
    let mut c = Canvas::new(f.w as usize, f.h as usize);
    let (grid, ink) = (rgb("#dddddd"), rgb("#333333"));
    let (x1, y1) = (f.w - f.right, f.h - f.bottom);
    for v in f.y_ticks() {
        let y = f.y_of(v);
        c.line((f.left, y), (x1, y), grid, 1.0);
        c.text(
            &format!("{:.1}", 100.0 * v),
            f.left - 6.0,
            y - 4.0,
            1.0,
            1,
            ink,
        );
    }
    for &s in &f.levels {
        let x = f.x_of(s);
        c.line((x, f.top), (x, y1), rgb("#f0f0f0"), 1.0);
        c.text(&trim(100.0 * s), x, y1 + 8.0, 0.5, 1, ink);
    }
    for (a, b) in [
        ((f.left, f.top), (x1, f.top)),
        ((x1, f.top), (x1, y1)),
        ((x1, y1), (f.left, y1)),
        ((f.left, y1), (f.left, f.top)),
    ] {
        c.line(a, b, ink, 1.0);
    }
    c.text(title, (f.w - f.right + f.left) / 2.0, 12.0, 0.5, 1, ink);
    c.text(
        "sparsity (%)",
        (f.w - f.right + f.left) / 2.0,
        f.h - 22.0,
        0.5,
        1,
        ink,
    );
    c.text(&format!("{metric} (%)"), 4.0, f.top - 16.0, 0.0, 1, ink);
    for (i, s) in series.iter().enumerate() {
        let col = rgb(color(i));
        let upper: Vec<(f64, f64)> = s
            .points
            .iter()
            .map(|&(x, m, d)| (f.x_of(x), f.y_of(m + d)))
            .collect();
        let lower: Vec<(f64, f64)> = s
            .points
            .iter()
            .map(|&(x, m, d)| (f.x_of(x), f.y_of(m - d)))
            .collect();
        c.band(&upper, &lower, col, 0.15);
        let line: Vec<(f64, f64)> = s
            .points
            .iter()
            .map(|&(x, m, _)| (f.x_of(x), f.y_of(m)))
            .collect();
        for pair in line.windows(2) {
            c.line(pair[0], pair[1], col, 2.0);
        }
        for &(x, y) in &line {
            c.dot(x, y, 3.0, col, 1.0);
        }
        let ly = f.top + 14.0 + 20.0 * i as f64;
        let lx = f.w - f.right + 12.0;
        c.line((lx, ly), (lx + 20.0, ly), col, 2.0);
        c.text(&s.label, lx + 26.0, ly - 4.0, 0.0, 1, ink);
    }
    c.encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_png_plot_is_a_png_with_ink() {
        let bytes = plot(
            "mnist · AT",
            "RA",
            &[Series {
                label: "θ_AT".into(),
                points: vec![(0.0, 0.5, 0.02), (0.9, 0.4, 0.01)],
            }],
        );
        assert_eq!(&bytes[1..4], b"PNG");
        assert!(bytes.len() > 2000);
    }
}

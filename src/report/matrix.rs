//! Small heat-mapped matrices side by side (paper A Fig. A8: the IoU of the tickets of every
//! pair of pre-trainings, one matrix per sparsity), as SVG and PNG. Values in `[0, 1]`, white to
//! dark blue, each printed in its cell.

use std::fmt::Write as _;

use super::canvas::{rgb, Canvas};

/// One matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// Title above it (e.g. the sparsity).
    pub title: String,
    /// Row and column labels.
    pub labels: Vec<String>,
    /// Square matrix, row-major rows.
    pub values: Vec<Vec<f64>>,
}

const CELL: f64 = 46.0;
const LABEL: f64 = 52.0;
const GAP: f64 = 28.0;
const TOP: f64 = 48.0;
const PER_ROW: usize = 4;

struct Layout {
    w: f64,
    h: f64,
    size: f64,
}

fn layout(title: &str, panels: &[Panel]) -> Layout {
    let n = panels.iter().map(|p| p.labels.len()).max().unwrap_or(1) as f64;
    let size = LABEL + n * CELL;
    let cols = panels.len().clamp(1, PER_ROW) as f64;
    let rows = panels.len().div_ceil(PER_ROW).max(1) as f64;
    // The PNG's bitmap font is 8 pixels a character; the title must fit.
    let title_width = 8.0 * title.chars().count() as f64 + 2.0 * GAP;
    Layout {
        w: (GAP + cols * (size + GAP)).max(title_width),
        h: TOP + rows * (size + GAP + 16.0),
        size,
    }
}

fn origin(k: usize, l: &Layout) -> (f64, f64) {
    let (col, row) = ((k % PER_ROW) as f64, (k / PER_ROW) as f64);
    (
        GAP + col * (l.size + GAP),
        TOP + row * (l.size + GAP + 16.0),
    )
}

fn shade(v: f64) -> [f32; 3] {
    let t = if v.is_finite() {
        v.clamp(0.0, 1.0)
    } else {
        0.0
    } as f32;
    let (lo, hi) = ([255.0, 255.0, 255.0], rgb("#08306b"));
    [0, 1, 2].map(|k| lo[k] + (hi[k] - lo[k]) * t)
}

fn ink_on(v: f64) -> &'static str {
    if v > 0.55 {
        "#ffffff"
    } else {
        "#222222"
    }
}

/// The matrices as SVG.
pub fn matrices_svg(title: &str, panels: &[Panel]) -> String {
    let l = layout(title, panels);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{:.0}" height="{:.0}" font-family="sans-serif" font-size="11">"#,
        l.w, l.h
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
        l.w / 2.0,
        title.replace('&', "&amp;").replace('<', "&lt;")
    );
    for (k, p) in panels.iter().enumerate() {
        let (x0, y0) = origin(k, &l);
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x0 + LABEL + p.labels.len() as f64 * CELL / 2.0,
            y0 - 4.0,
            p.title
        );
        for (i, label) in p.labels.iter().enumerate() {
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"#,
                x0 + LABEL - 4.0,
                y0 + (i as f64 + 0.5) * CELL + 4.0
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
                x0 + LABEL + (i as f64 + 0.5) * CELL,
                y0 + p.labels.len() as f64 * CELL + 14.0
            );
        }
        for (i, row) in p.values.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                let [r, g, b] = shade(*v);
                let (x, y) = (x0 + LABEL + j as f64 * CELL, y0 + i as f64 * CELL);
                let _ = writeln!(
                    s,
                    r##"<rect x="{x:.1}" y="{y:.1}" width="{CELL}" height="{CELL}" fill="#{:02x}{:02x}{:02x}" stroke="#ffffff"/>"##,
                    r as u8, g as u8, b as u8
                );
                let _ = writeln!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="{}">{v:.2}</text>"#,
                    x + CELL / 2.0,
                    y + CELL / 2.0 + 4.0,
                    ink_on(*v)
                );
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

/// The matrices as PNG bytes.
pub fn matrices_png(title: &str, panels: &[Panel]) -> Vec<u8> {
    let l = layout(title, panels);
    let mut c = Canvas::new(l.w as usize, l.h as usize);
    let ink = rgb("#333333");
    c.text(title, l.w / 2.0, 10.0, 0.5, 1, ink);
    for (k, p) in panels.iter().enumerate() {
        let (x0, y0) = origin(k, &l);
        let n = p.labels.len() as f64;
        c.text(
            &p.title,
            x0 + LABEL + n * CELL / 2.0,
            y0 - 14.0,
            0.5,
            1,
            ink,
        );
        for (i, label) in p.labels.iter().enumerate() {
            let y = y0 + (i as f64 + 0.5) * CELL - 4.0;
            c.text(label, x0 + LABEL - 4.0, y, 1.0, 1, ink);
            let x = x0 + LABEL + (i as f64 + 0.5) * CELL;
            c.text(label, x, y0 + n * CELL + 4.0, 0.5, 1, ink);
        }
        for (i, row) in p.values.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                let (x, y) = (x0 + LABEL + j as f64 * CELL, y0 + i as f64 * CELL);
                for py in y as i64 + 1..(y + CELL) as i64 {
                    for px in x as i64 + 1..(x + CELL) as i64 {
                        c.blend(px, py, shade(*v), 1.0);
                    }
                }
                let text = format!("{v:.2}");
                c.text(
                    &text,
                    x + CELL / 2.0,
                    y + CELL / 2.0 - 4.0,
                    0.5,
                    1,
                    rgb(ink_on(*v)),
                );
            }
        }
    }
    c.encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panels() -> Vec<Panel> {
        (0..5)
            .map(|k| Panel {
                title: format!("{k}0 %"),
                labels: vec!["STD".into(), "AT".into()],
                values: vec![vec![1.0, 0.1 * k as f64], vec![0.1 * k as f64, 1.0]],
            })
            .collect()
    }

    #[test]
    fn every_value_is_printed_in_its_cell() {
        let svg = matrices_svg("IoU", &panels());
        assert!(svg.contains(">0.30<") && svg.contains(">1.00<") && svg.contains("40 %"));
        assert_eq!(svg.matches("<rect x=").count(), 5 * 4);
    }

    #[test]
    fn panels_wrap_after_four() {
        let l = layout("IoU", &panels());
        assert!(origin(4, &l).1 > origin(3, &l).1);
        assert_eq!(origin(4, &l).0, origin(0, &l).0);
        let png = matrices_png("IoU", &panels());
        assert_eq!(&png[1..4], b"PNG");
    }
}

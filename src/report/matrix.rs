//! Small heat-mapped matrices side by side (paper A Fig. A8: the IoU of the tickets of every
//! pair of pre-trainings, one matrix per sparsity), as SVG and PNG, drawn by one plotters
//! function for both. Values in `[0, 1]`, white to dark blue, each printed in its cell.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::draw::{self, rgb, text, Area, Drawn, INK};
use super::font;

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

const CELL: i32 = 46;
const LABEL: i32 = 52;
const GAP: i32 = 28;
const TOP: i32 = 48;
const PER_ROW: usize = 4;
const TITLE_SIZE: f64 = 17.0;

struct Layout {
    w: u32,
    h: u32,
    size: i32,
}

/// The title's width in pixels in the plots' font (a generous guess if it cannot be measured).
fn title_width(title: &str) -> i32 {
    let measured = font::ensure_registered()
        .ok()
        .and_then(|()| (font::FAMILY, TITLE_SIZE).into_font().box_size(title).ok());
    measured.map_or(10 * title.chars().count() as i32, |(w, _)| w as i32)
}

fn layout(title: &str, panels: &[Panel]) -> Layout {
    let n = panels.iter().map(|p| p.labels.len()).max().unwrap_or(1) as i32;
    let size = LABEL + n * CELL;
    let cols = panels.len().clamp(1, PER_ROW) as i32;
    let rows = panels.len().div_ceil(PER_ROW).max(1) as i32;
    // The title must fit.
    let w = (GAP + cols * (size + GAP)).max(title_width(title) + 2 * GAP);
    Layout {
        w: w as u32,
        h: (TOP + rows * (size + GAP + 16)) as u32,
        size,
    }
}

fn origin(k: usize, l: &Layout) -> (i32, i32) {
    let (col, row) = ((k % PER_ROW) as i32, (k / PER_ROW) as i32);
    (GAP + col * (l.size + GAP), TOP + row * (l.size + GAP + 16))
}

/// White at 0 to dark blue at 1.
fn shade(v: f64) -> RGBColor {
    let t = if v.is_finite() {
        v.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let hi = rgb("#08306b");
    let mix = |h: u8| (255.0 + (f64::from(h) - 255.0) * t).round() as u8;
    RGBColor(mix(hi.0), mix(hi.1), mix(hi.2))
}

/// Text that reads on a cell of value `v`.
fn ink_on(v: f64) -> RGBColor {
    if v > 0.55 {
        WHITE
    } else {
        RGBColor(0x22, 0x22, 0x22)
    }
}

/// Draws the matrices on `root`.
fn draw<DB: DrawingBackend>(root: &Area<DB>, l: &Layout, title: &str, panels: &[Panel]) -> Drawn {
    root.fill(&WHITE)?;
    let centred = |size, colour| text(size, colour, HPos::Center, VPos::Center);
    root.draw(&Text::new(
        title,
        (l.w as i32 / 2, 22),
        centred(TITLE_SIZE, INK),
    ))?;
    for (k, p) in panels.iter().enumerate() {
        let (x0, y0) = origin(k, l);
        let n = p.labels.len() as i32;
        root.draw(&Text::new(
            p.title.as_str(),
            (x0 + LABEL + n * CELL / 2, y0 - 10),
            centred(14.0, INK),
        ))?;
        for (i, label) in p.labels.iter().enumerate() {
            let centre = i as i32 * CELL + CELL / 2;
            root.draw(&Text::new(
                label.as_str(),
                (x0 + LABEL - 4, y0 + centre),
                text(13.0, INK, HPos::Right, VPos::Center),
            ))?;
            root.draw(&Text::new(
                label.as_str(),
                (x0 + LABEL + centre, y0 + n * CELL + 12),
                centred(13.0, INK),
            ))?;
        }
        for (i, row) in p.values.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                let (x, y) = (x0 + LABEL + j as i32 * CELL, y0 + i as i32 * CELL);
                // A pixel of white between cells.
                let cell = [(x + 1, y + 1), (x + CELL - 1, y + CELL - 1)];
                root.draw(&Rectangle::new(cell, shade(*v).filled()))?;
                root.draw(&Text::new(
                    format!("{v:.2}"),
                    (x + CELL / 2, y + CELL / 2),
                    centred(13.0, ink_on(*v)),
                ))?;
            }
        }
    }
    Ok(())
}

/// The matrices as SVG.
pub fn matrices_svg(title: &str, panels: &[Panel]) -> String {
    let l = layout(title, panels);
    draw::svg((l.w, l.h), |root| draw(root, &l, title, panels))
}

/// The matrices as PNG bytes.
pub fn matrices_png(title: &str, panels: &[Panel]) -> Vec<u8> {
    let l = layout(title, panels);
    draw::png((l.w, l.h), |root| draw(root, &l, title, panels))
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
        for text in ["0.30", "1.00", "40 %", "STD", "IoU"] {
            assert!(svg.contains(&format!(">\n{text}\n</text>")), "{text}");
        }
        // The background and one rectangle per cell, shaded by its value.
        assert_eq!(svg.matches("<rect").count(), 1 + 5 * 4);
        assert!(svg.contains(r##"fill="#08306B""##) && svg.contains(r##"fill="#FFFFFF""##));
    }

    #[test]
    fn a_long_title_widens_the_picture() {
        let short = layout("IoU", &panels()[..1]);
        let long = layout(
            &"IoU of the tickets of two pre-trainings ".repeat(3),
            &panels()[..1],
        );
        assert!(long.w > short.w + 400);
    }

    #[test]
    fn panels_wrap_after_four() {
        let l = layout("IoU", &panels());
        assert!(origin(4, &l).1 > origin(3, &l).1);
        assert_eq!(origin(4, &l).0, origin(0, &l).0);
        let png = matrices_png("IoU", &panels());
        let (w, h, pixels) = super::super::png::decode(&png);
        assert_eq!((w, h), (l.w, l.h));
        let dark = pixels
            .chunks(3)
            .filter(|p| *p == [0x08, 0x30, 0x6b])
            .count();
        // The ten diagonal cells of value 1, less the white figures printed on them.
        assert!(dark > 10 * 30 * 30 && dark < 10 * 44 * 44, "{dark}");
    }
}

//! Accuracy–sparsity plots as SVG (paper A, Fig. 3–5): one line per pre-training with a
//! mean ± std band, sparsity levels evenly spaced on the x axis (drawn by `report::lines`).

use super::{draw, lines};

pub use super::lines::Series;

/// Renders a plot titled `title` with y label `metric`.
pub fn plot(title: &str, metric: &str, series: &[Series]) -> String {
    draw::svg(lines::SIZE, |root| lines::draw(root, title, metric, series))
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
        // Each series: its band, and its line through both levels.
        for colour in ["#1F77B4", "#D62728"] {
            let band = format!(r#"<polygon opacity="0.15" fill="{colour}""#);
            assert_eq!(svg.matches(&band).count(), 1, "{colour} band");
            let line = svg
                .lines()
                .find(|l| l.starts_with("<polyline") && l.contains(colour))
                .expect("a line per series");
            assert_eq!(line.matches(',').count(), 2, "{line}");
            let dots = svg
                .lines()
                .filter(|l| l.starts_with("<circle") && l.contains(colour))
                .count();
            assert_eq!(dots, 2 + 1, "{colour}: a dot per point and the legend's");
        }
        // Texts are written as `>\nTEXT\n</text>`.
        for text in ["90", "0", "θ_STD", "θ_AT", "sparsity (%)", "RA (%)"] {
            assert!(svg.contains(&format!(">\n{text}\n</text>")), "{text}");
        }
        assert!(svg.contains("cifar10 · AT · 100%"));
    }

    #[test]
    fn an_empty_plot_is_still_a_document() {
        let svg = plot("nothing", "SA", &[]);
        assert!(svg.starts_with("<svg") && svg.contains("nothing"));
    }
}

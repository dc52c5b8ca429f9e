//! The plots' one font, embedded: Open Sans Regular (Apache-2.0, `assets/fonts/`), registered
//! with plotters' `ab_glyph` text renderer as its sans-serif family.
//!
//! Embedding it keeps PNG text identical on every machine and needs no system fontconfig or
//! freetype (plotters' `ttf` feature would); SVG files name the family and let the viewer pick
//! its own sans-serif, but plotters still measures labels with this font to lay them out.

use std::sync::OnceLock;

use plotters::style::{register_font, FontStyle};

/// The family every plot's text uses.
pub(crate) const FAMILY: &str = "sans-serif";

static OPEN_SANS: &[u8] = include_bytes!("../../assets/fonts/OpenSans-Regular.ttf");

/// Registers the font once per process; later calls return the first call's outcome.
pub(crate) fn ensure_registered() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            register_font(FAMILY, FontStyle::Normal, OPEN_SANS)
                .map_err(|_| "the embedded plot font does not parse".to_string())
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use plotters::style::IntoFont;

    #[test]
    fn the_embedded_font_measures_latin_and_greek() {
        ensure_registered().expect("font");
        let font = (FAMILY, 14.0).into_font();
        let (w, h) = font.box_size("θ_AT · 90 %").expect("layout");
        assert!(w > 40 && h > 8, "{w} × {h}");
        let narrow = font.box_size("i").expect("layout").0;
        let wide = font.box_size("W").expect("layout").0;
        assert!(wide > narrow, "a proportional font");
    }
}

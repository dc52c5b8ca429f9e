//! The documents plots are drawn on — an SVG string or PNG bytes, both through plotters — and
//! what every plot shares: colours, text styles, number labels.
//!
//! Each plot is one function generic over plotters' `DrawingBackend`, called once per format,
//! so the SVG and the PNG of a plot cannot drift apart.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::font;

/// A plot's whole canvas, in pixels from its top-left corner.
pub(crate) type Area<DB> = DrawingArea<DB, Shift>;

/// Why a drawing stopped part-way.
#[derive(Debug)]
pub(crate) struct DrawError(String);

impl<E: std::error::Error + Send + Sync> From<DrawingAreaErrorKind<E>> for DrawError {
    fn from(e: DrawingAreaErrorKind<E>) -> Self {
        Self(e.to_string())
    }
}

impl std::fmt::Display for DrawError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a plot's drawing function returns.
pub(crate) type Drawn = Result<(), DrawError>;

/// An SVG document of `size` pixels drawn by `draw`.
///
/// The plots' only failure is the embedded font not loading (every backend here draws into
/// memory, and a test loads the font), so the document is returned whatever `draw` returns:
/// the public plotting functions stay infallible, as the report's numbers are in its JSON,
/// CSV and Markdown files.
pub(crate) fn svg(size: (u32, u32), draw: impl FnOnce(&Area<SVGBackend<'_>>) -> Drawn) -> String {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        let _ = font::ensure_registered()
            .map_err(DrawError)
            .and_then(|()| draw(&root));
        let _ = root.present();
    }
    out
}

/// PNG bytes (8-bit RGB) of `size` pixels drawn by `draw`; see [`svg`] for why a drawing error
/// still returns the picture.
pub(crate) fn png(
    (w, h): (u32, u32),
    draw: impl FnOnce(&Area<BitMapBackend<'_>>) -> Drawn,
) -> Vec<u8> {
    let mut rgb = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        let _ = font::ensure_registered()
            .map_err(DrawError)
            .and_then(|()| draw(&root));
        let _ = root.present();
    }
    encode_png(w, h, &rgb)
}

/// RGB pixels as PNG bytes (empty if the encoder refuses them, which a buffer of the right
/// length never makes it do).
fn encode_png(w: u32, h: u32, rgb: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    {
        let mut encoder = ::png::Encoder::new(&mut bytes, w, h);
        encoder.set_color(::png::ColorType::Rgb);
        encoder.set_depth(::png::BitDepth::Eight);
        let written = encoder
            .write_header()
            .and_then(|mut writer| writer.write_image_data(rgb));
        if written.is_err() {
            return Vec::new();
        }
    }
    bytes
}

/// Axis lines, tick labels and titles.
pub(crate) const INK: RGBColor = RGBColor(0x33, 0x33, 0x33);

/// The colour of `#rrggbb` (black when malformed: colours here are constants).
pub(crate) fn rgb(hex: &str) -> RGBColor {
    let v = u32::from_str_radix(hex.trim_start_matches('#'), 16).unwrap_or(0);
    RGBColor((v >> 16) as u8, (v >> 8) as u8, v as u8)
}

/// `size`-pixel text in `colour`, anchored at its `h` / `v` side.
pub(crate) fn text(size: f64, colour: RGBColor, h: HPos, v: VPos) -> TextStyle<'static> {
    (font::FAMILY, size)
        .into_font()
        .color(&colour)
        .pos(Pos::new(h, v))
}

/// `v` with at most two decimals and no trailing zeros (`90`, `99.5`).
pub(crate) fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_png_decodes_to_its_size_with_the_drawing() {
        let bytes = png((40, 30), |root| {
            root.draw(&Rectangle::new(
                [(10, 10), (20, 20)],
                rgb("#d62728").filled(),
            ))?;
            Ok(())
        });
        let decoder = ::png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().expect("png header");
        let mut pixels = vec![0; reader.output_buffer_size().expect("size")];
        let info = reader.next_frame(&mut pixels).expect("png data");
        assert_eq!((info.width, info.height), (40, 30));
        let at = |x: usize, y: usize| &pixels[(y * 40 + x) * 3..(y * 40 + x) * 3 + 3];
        assert_eq!(at(15, 15), &[0xd6, 0x27, 0x28]);
        assert_eq!(at(2, 2), &[255, 255, 255]);
    }

    #[test]
    fn labels_drop_trailing_zeros() {
        assert_eq!(trim(90.0), "90");
        assert_eq!(trim(99.5), "99.5");
        assert_eq!(trim(12.345), "12.35");
        assert_eq!(rgb("#1f77b4"), RGBColor(0x1f, 0x77, 0xb4));
    }
}

//! The accuracy–sparsity plots as PNG: the drawing of the SVG plots (`report::lines`) on an
//! RGB bitmap.

use super::svg::Series;
use super::{draw, lines};

/// The plot of [`super::svg::plot`] as PNG bytes.
pub fn plot(title: &str, metric: &str, series: &[Series]) -> Vec<u8> {
    draw::png(lines::SIZE, |root| lines::draw(root, title, metric, series))
}

/// Test helper: the PNG's width, height and RGB pixels.
#[cfg(test)]
pub(crate) fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let decoder = ::png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("png header");
    let mut pixels = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut pixels).expect("png data");
    assert_eq!(info.color_type, ::png::ColorType::Rgb);
    pixels.truncate(info.buffer_size());
    (info.width, info.height, pixels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_png_plot_decodes_with_each_series_drawn() {
        let bytes = plot(
            "mnist · AT",
            "RA",
            &[
                Series {
                    label: "θ_AT".into(),
                    points: vec![(0.0, 0.5, 0.02), (0.9, 0.4, 0.01)],
                },
                Series {
                    label: "θ_STD".into(),
                    points: vec![(0.0, 0.45, 0.0), (0.9, 0.3, 0.01)],
                },
            ],
        );
        let (w, h, pixels) = decode(&bytes);
        assert_eq!((w, h), lines::SIZE);
        let count = |rgb: [u8; 3]| pixels.chunks(3).filter(|p| *p == rgb).count();
        // Lines, dots and legend keys in the series' colours; text in ink.
        assert!(
            count([0x1f, 0x77, 0xb4]) > 200,
            "{}",
            count([0x1f, 0x77, 0xb4])
        );
        assert!(count([0xd6, 0x27, 0x28]) > 200);
        assert!(count([0x33, 0x33, 0x33]) > 500);
    }
}

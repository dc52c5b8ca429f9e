//! The sparse passes against the dense ones (themselves checked against the definition and
//! PyTorch's golden values), on every value of outputs that start as NaN.

use std::mem::MaybeUninit;

use super::super::blocks::Geometry;
use super::super::kernel;
use super::super::test_values as values;
use super::*;

/// A weight of `g` with about `density` of its values kept (a deterministic choice), the
/// output channels in `empty_out` and the input channels in `empty_in` all zero.
fn sparse_weight(g: &Geometry, density: f64, empty_out: &[usize], empty_in: &[usize]) -> Vec<f32> {
    let taps = g.kh * g.kw;
    let mut w = values(g.c_out * g.k(), 7);
    let keep = values(w.len(), 11);
    for (i, v) in w.iter_mut().enumerate() {
        let (o, ci) = (i / g.k(), i / taps % g.c_in);
        let kept = f64::from(keep[i] + 1.0) / 2.0 < density;
        if !kept || empty_out.contains(&o) || empty_in.contains(&ci) {
            *v = 0.0;
        }
    }
    w
}

#[allow(clippy::too_many_arguments)]
fn geometry(
    batch: usize,
    c: [usize; 2],
    hw: [usize; 2],
    k: [usize; 2],
    s: [usize; 2],
    pad: [usize; 2],
) -> Geometry {
    Geometry {
        batch,
        c_in: c[0],
        h: hw[0],
        w: hw[1],
        c_out: c[1],
        kh: k[0],
        kw: k[1],
        stride: s,
        pad,
        dilation: [1, 1],
        oh: (hw[0] + 2 * pad[0] - k[0]) / s[0] + 1,
        ow: (hw[1] + 2 * pad[1] - k[1]) / s[1] + 1,
    }
}

fn nan_filled(n: usize) -> Vec<MaybeUninit<f32>> {
    vec![MaybeUninit::new(f32::NAN); n]
}

fn read(v: Vec<MaybeUninit<f32>>) -> Vec<f32> {
    // Every value was initialised (NaN at least).
    v.into_iter().map(|m| unsafe { m.assume_init() }).collect()
}

/// The largest difference relative to `1 + |b|`; infinite where `a` holds a NaN.
fn close(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
        .map(|d| if d.is_nan() { f32::INFINITY } else { d })
        .fold(0.0, f32::max)
}

fn check(g: &Geometry, w: &[f32], label: &str) {
    let x = values(g.batch * g.input_len(), 3);
    let gy = values(g.batch * g.output_len(), 5);
    check_with(g, w, &x, &gy, label);
    // Inputs after a ReLU and gradients through one: mostly zeros.
    let x: Vec<f32> = x.iter().map(|v| v.max(0.0)).collect();
    let gy: Vec<f32> = gy
        .iter()
        .zip(values(gy.len(), 9))
        .map(|(v, m)| if m > 0.4 { *v } else { 0.0 })
        .collect();
    check_with(g, w, &x, &gy, &format!("{label}, mostly zeros"));
}

fn check_with(g: &Geometry, w: &[f32], x: &[f32], gy: &[f32], label: &str) {
    let mut dense_y = nan_filled(g.batch * g.output_len());
    kernel::forward(g, x, w, &mut dense_y);
    let mut sparse_y = nan_filled(g.batch * g.output_len());
    assert!(forward(g, x, w, &mut sparse_y), "{label}: forward declined");
    let d = close(&read(sparse_y), &read(dense_y));
    assert!(d < 1e-4, "{label}: forward differs by {d}");

    let mut dense_gx = nan_filled(g.batch * g.input_len());
    kernel::backward_input(g, w, gy, &mut dense_gx);
    let mut sparse_gx = nan_filled(g.batch * g.input_len());
    assert!(
        backward_input(g, w, gy, &mut sparse_gx),
        "{label}: input gradient declined"
    );
    let d = close(&read(sparse_gx), &read(dense_gx));
    assert!(d < 1e-4, "{label}: input gradient differs by {d}");
}

#[test]
fn sparse_passes_match_the_dense_ones() {
    let cases = [
        // ResNet's shapes: 3×3 stride 1 and 2, 1×1 stride 2 shortcuts, the 7×7 stem.
        geometry(3, [5, 7], [9, 11], [3, 3], [1, 1], [1, 1]),
        geometry(2, [4, 6], [10, 7], [3, 3], [2, 2], [1, 1]),
        geometry(2, [3, 5], [9, 9], [1, 1], [2, 2], [0, 0]),
        geometry(2, [3, 8], [13, 11], [7, 7], [2, 2], [3, 3]),
        geometry(5, [16, 16], [4, 4], [3, 3], [1, 1], [1, 1]),
        // Odd ones: no padding, 1×1 stride 1, uneven kernels, strides and padding, 1×1 maps.
        geometry(2, [3, 4], [8, 9], [3, 3], [1, 1], [0, 0]),
        geometry(1, [2, 3], [5, 5], [1, 1], [1, 1], [0, 0]),
        geometry(2, [3, 2], [7, 8], [3, 2], [2, 1], [1, 0]),
        geometry(3, [2, 3], [11, 6], [5, 3], [3, 2], [2, 1]),
        geometry(4, [3, 5], [1, 1], [3, 3], [1, 1], [1, 1]),
        geometry(1, [1, 1], [6, 6], [3, 3], [2, 2], [1, 1]),
    ];
    for g in cases {
        for density in [0.0, 0.05, 0.3, 1.0] {
            let w = sparse_weight(&g, density, &[], &[]);
            check(&g, &w, &format!("{g:?} at density {density}"));
        }
        // Empty channels: an output channel without weights, an input channel nothing reads.
        let w = sparse_weight(&g, 0.5, &[0], &[g.c_in - 1]);
        check(&g, &w, &format!("{g:?} with empty channels"));
    }
}

#[test]
fn large_batches_are_split_into_chunks() {
    // Enough images for several groups of lanes and a last, shorter group.
    let g = geometry(37, [32, 48], [16, 16], [3, 3], [1, 1], [1, 1]);
    check(&g, &sparse_weight(&g, 0.1, &[3], &[]), "lanes, 37 images");
    let g = geometry(37, [32, 48], [16, 16], [3, 3], [2, 2], [1, 1]);
    check(
        &g,
        &sparse_weight(&g, 0.1, &[], &[5]),
        "37 images, stride 2",
    );
    // Images in lanes: a partial last group, odd channels, an empty output channel, widths
    // that are not a multiple of the transpositions' 4 or of a tile (the last tile of a row
    // reaches past the map).
    let g = geometry(17, [5, 7], [7, 16], [3, 3], [1, 1], [1, 1]);
    check(&g, &sparse_weight(&g, 0.3, &[2], &[]), "lanes, 17 images");
    let g = geometry(18, [3, 5], [7, 7], [3, 3], [1, 1], [1, 1]);
    check(
        &g,
        &sparse_weight(&g, 0.3, &[], &[1]),
        "lanes, 18 images of 7×7",
    );
    // The grid at stride 1 (maps large enough that its padding costs little; several chunks
    // of source channels), strided, and with an uneven kernel and stride.
    let g = geometry(3, [40, 8], [16, 16], [3, 3], [1, 1], [1, 1]);
    check(&g, &sparse_weight(&g, 0.3, &[], &[]), "grid, stride 1");
    let g = geometry(18, [4, 6], [10, 32], [3, 3], [2, 2], [1, 1]);
    check(
        &g,
        &sparse_weight(&g, 0.3, &[], &[1]),
        "grid, 18 images, stride 2",
    );
    let g = geometry(16, [3, 2], [7, 17], [3, 2], [2, 1], [1, 0]);
    check(
        &g,
        &sparse_weight(&g, 0.5, &[], &[]),
        "grid, uneven kernel and stride",
    );
    // The patch matrix of a 1×1 stride-2 shortcut; a 1×1 kernel padded by more than it
    // reaches (its input gradient cannot be a flipped forward pass: the grid, one phase).
    let g = geometry(33, [6, 4], [9, 16], [1, 1], [2, 2], [0, 0]);
    check(
        &g,
        &sparse_weight(&g, 0.5, &[], &[]),
        "patches, 1×1 stride 2",
    );
    let g = geometry(2, [3, 4], [6, 6], [1, 1], [1, 1], [1, 1]);
    check(&g, &sparse_weight(&g, 0.5, &[], &[]), "1×1 padded by 1");
    // ResNet-18-CIFAR's stem: its input gradient has 3 channels from 64.
    let g = geometry(32, [3, 64], [32, 32], [3, 3], [1, 1], [1, 1]);
    check(&g, &sparse_weight(&g, 0.3, &[], &[]), "the stem");
    // ResNet-18-CIFAR's third stage.
    let g = geometry(32, [128, 256], [16, 16], [3, 3], [2, 2], [1, 1]);
    check(&g, &sparse_weight(&g, 0.17, &[], &[]), "layer3.0.conv1");
    let g = geometry(32, [256, 256], [8, 8], [3, 3], [1, 1], [1, 1]);
    check(&g, &sparse_weight(&g, 0.17, &[], &[]), "layer3.0.conv2");
    let g = geometry(32, [256, 512], [8, 8], [3, 3], [2, 2], [1, 1]);
    check(&g, &sparse_weight(&g, 0.05, &[], &[]), "layer4.0.conv1");
    let g = geometry(32, [512, 512], [4, 4], [3, 3], [1, 1], [1, 1]);
    check(&g, &sparse_weight(&g, 0.05, &[], &[]), "layer4.0.conv2");
    // Enough channels for several chunks of source channels per tile.
    let g = geometry(8, [160, 24], [12, 12], [3, 3], [1, 1], [1, 1]);
    check(&g, &sparse_weight(&g, 0.2, &[], &[]), "160 channels");
}

#[test]
fn the_density_limit_decides() {
    let g = geometry(1, [4, 4], [5, 5], [3, 3], [1, 1], [1, 1]);
    let sparse = sparse_weight(&g, 0.1, &[], &[]);
    let dense = sparse_weight(&g, 1.0, &[], &[]);
    // The measured limits (the default): a grid or patch matrix, at most 0.25.
    assert!(applies(&g, &sparse));
    assert!(!applies(&g, &dense));
    let dilated = Geometry {
        dilation: [2, 2],
        ..g
    };
    assert!(!applies(&dilated, &sparse));
    // 1×1 stride-2 input gradients stay dense.
    let shortcut = geometry(1, [32, 32], [6, 6], [1, 1], [2, 2], [0, 0]);
    let w = sparse_weight(&shortcut, 0.1, &[], &[]);
    assert!(applies(&shortcut, &w) && !applies_to_input_gradient(&shortcut, &w));
}

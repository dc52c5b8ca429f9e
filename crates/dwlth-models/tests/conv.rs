//! The convolution every layer uses (`dwlth_kernels::conv::conv2d`): forward pass and the
//! gradients of the input, weight and bias against PyTorch (`tools/golden_conv.py`), and
//! against Burn's own convolution on the cases the fixture does not hold.

mod common;

use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};
use common::{golden, max_rel_diff, tensor};
use dwlth_kernels::conv::conv2d;
use dwlth_models::io::StateDict;

const CASES: [&str; 7] = [
    "k3_s1",
    "k3_s1_wide",
    "k3_s2",
    "k1_s2",
    "k1_s1",
    "k7_s2",
    "k3x2_asym",
];
const TOL: f32 = 2e-5;

fn options(dict: &StateDict, case: &str) -> ConvOptions<2> {
    let meta: serde_json::Value =
        serde_json::from_str(&dict.metadata()[case]).expect("options of the case");
    let pair = |key: &str| -> [usize; 2] {
        let v = &meta[key];
        [
            v[0].as_u64().unwrap() as usize,
            v[1].as_u64().unwrap() as usize,
        ]
    };
    let padding = &meta["padding"];
    let side = |i: usize, j: usize| padding[i][j].as_u64().unwrap() as usize;
    ConvOptions {
        stride: pair("stride"),
        padding: [(side(0, 0), side(0, 1)), (side(1, 0), side(1, 1))],
        dilation: pair("dilation"),
        groups: 1,
    }
}

#[test]
fn forward_and_gradients_match_pytorch() {
    let dict = StateDict::read(golden("conv2d/conv2d.safetensors")).expect("fixture");
    let device = Device::flex().autodiff();
    let reference = Device::flex();
    for case in CASES {
        let key = |k: &str| format!("{case}.{k}");
        let x = tensor::<4>(&dict, &key("x"), &device).require_grad();
        let w = tensor::<4>(&dict, &key("weight"), &device).require_grad();
        let b = dict
            .contains(&key("bias"))
            .then(|| tensor::<1>(&dict, &key("bias"), &device).require_grad());
        let y = conv2d(x.clone(), w.clone(), b.clone(), options(&dict, case));
        let want = |k: &str| tensor::<4>(&dict, &key(k), &reference);
        let d = max_rel_diff(y.clone().without_autodiff(), want("y"));
        assert!(d < TOL, "{case}: output differs by {d}");

        let grads = (y * tensor::<4>(&dict, &key("grad_y"), &device))
            .sum()
            .backward();
        let d = max_rel_diff(x.grad(&grads).expect("input gradient"), want("grad_x"));
        assert!(d < TOL, "{case}: input gradient differs by {d}");
        let d = max_rel_diff(
            w.grad(&grads).expect("weight gradient"),
            want("grad_weight"),
        );
        assert!(d < TOL, "{case}: weight gradient differs by {d}");
        if let Some(b) = b {
            let d = max_rel_diff(
                b.grad(&grads).expect("bias gradient"),
                tensor::<1>(&dict, &key("grad_bias"), &reference),
            );
            assert!(d < TOL, "{case}: bias gradient differs by {d}");
        }
    }
}

/// `conv2d` and Burn's convolution on the same inputs: outputs and, when tracked, the input
/// and weight gradients of `sum(y * gy)`.
fn compare_with_burn(
    shape: [usize; 4],
    weight: [usize; 4],
    options: ConvOptions<2>,
    track: [bool; 2],
) {
    let device = Device::flex().autodiff();
    device.seed(7);
    let x0 = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let w0 = Tensor::<4>::random(weight, Distribution::Normal(0.0, 0.3), &device);
    let run = |ours: bool| {
        let x = if track[0] {
            x0.clone().require_grad()
        } else {
            x0.clone()
        };
        let w = if track[1] {
            w0.clone().require_grad()
        } else {
            w0.clone()
        };
        let y = if ours {
            conv2d(x.clone(), w.clone(), None, options.clone())
        } else {
            burn::tensor::module::conv2d(x.clone(), w.clone(), None, options.clone())
        };
        let gy = y.clone().without_autodiff().cos().autodiff();
        let grads = (y.clone() * gy).sum().backward();
        (y.without_autodiff(), x.grad(&grads), w.grad(&grads))
    };
    let (y, gx, gw) = run(true);
    let (y_ref, gx_ref, gw_ref) = run(false);
    let what = format!("{shape:?} * {weight:?}, {options:?}");
    let d = max_rel_diff(y, y_ref);
    assert!(d < TOL, "{what}: output differs by {d}");
    assert_eq!(gx.is_some(), track[0], "{what}: input gradient presence");
    assert_eq!(gw.is_some(), track[1], "{what}: weight gradient presence");
    if let (Some(a), Some(b)) = (gx, gx_ref) {
        let d = max_rel_diff(a, b);
        assert!(d < TOL, "{what}: input gradient differs by {d}");
    }
    if let (Some(a), Some(b)) = (gw, gw_ref) {
        let d = max_rel_diff(a, b);
        assert!(d < 1e-4, "{what}: weight gradient differs by {d}");
    }
}

#[test]
fn agrees_with_burn_across_batch_splits_and_tracking() {
    let same = |k: usize| ConvOptions::new([1, 1], [k / 2, k / 2], [1, 1], 1);
    // One image: the product itself runs on every thread.
    compare_with_burn([1, 5, 9, 9], [7, 5, 3, 3], same(3), [true, true]);
    // Many small maps: several images per product.
    compare_with_burn([37, 6, 4, 4], [9, 6, 3, 3], same(3), [true, true]);
    compare_with_burn([33, 8, 2, 2], [4, 8, 1, 1], same(1), [true, true]);
    // An attack: only the input is tracked; fine-tuning a frozen input: only the weight.
    compare_with_burn([4, 3, 8, 8], [5, 3, 3, 3], same(3), [true, false]);
    compare_with_burn([4, 3, 8, 8], [5, 3, 3, 3], same(3), [false, true]);
    // Padding larger than the kernel reach and a kernel as large as the input.
    compare_with_burn(
        [2, 2, 5, 5],
        [3, 2, 3, 3],
        ConvOptions::new([2, 1], [3, 2], [1, 1], 1),
        [true, true],
    );
    compare_with_burn(
        [2, 2, 5, 4],
        [3, 2, 5, 4],
        ConvOptions::new([1, 1], [0, 0], [1, 1], 1),
        [true, true],
    );
    // Stride 1: padding beyond the kernel's reach, dilation, a rectangular kernel.
    compare_with_burn(
        [2, 3, 6, 7],
        [4, 3, 3, 3],
        ConvOptions::new([1, 1], [3, 0], [1, 1], 1),
        [true, true],
    );
    compare_with_burn(
        [2, 3, 9, 8],
        [4, 3, 3, 3],
        ConvOptions::new([1, 1], [2, 1], [2, 2], 1),
        [true, true],
    );
    compare_with_burn(
        [3, 3, 6, 7],
        [4, 3, 1, 3],
        ConvOptions::new([1, 1], [0, 1], [1, 1], 1),
        [true, true],
    );
    // Grouped convolutions are Burn's.
    compare_with_burn(
        [2, 4, 6, 6],
        [6, 2, 3, 3],
        ConvOptions::new([1, 1], [1, 1], [1, 1], 2),
        [true, true],
    );
}

#[test]
fn runs_without_autodiff_and_with_a_non_contiguous_input() {
    let device = Device::flex();
    device.seed(3);
    let x = Tensor::<4>::random([3, 6, 7, 5], Distribution::Default, &device);
    let w = Tensor::<4>::random([4, 6, 3, 3], Distribution::Default, &device);
    let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    // A transposed view: the kernels must not read its storage as if it were contiguous.
    let xt = x.clone().swap_dims(2, 3);
    let y = conv2d(xt.clone(), w.clone(), None, options.clone());
    let y_ref = burn::tensor::module::conv2d(xt, w, None, options);
    let d = max_rel_diff(y, y_ref);
    assert!(d < TOL, "output differs by {d}");
}

#[test]
fn an_empty_batch_gives_an_empty_output() {
    let device = Device::flex().autodiff();
    let x = Tensor::<4>::zeros([0, 3, 8, 8], &device).require_grad();
    let w = Tensor::<4>::ones([4, 3, 3, 3], &device).require_grad();
    let y = conv2d(x, w, None, ConvOptions::new([1, 1], [1, 1], [1, 1], 1));
    assert_eq!(y.dims(), [0, 4, 8, 8]);
}

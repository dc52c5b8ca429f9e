//! Transforms against PyTorch/torchvision semantics. The bilinear golden values come from
//! `tests/fixtures/make_fixtures.py`:
//! `F.interpolate(x[None], size=(oh, ow), mode="bilinear", align_corners=False)[0]`
//! on the input pattern `((i * 37) % 101) / 100` (i = flat index, float32).

mod common;

use dwlth_data::transforms::{
    crop_flip, hflip, resize_bilinear, resize_center_crop, resized_crop_flip, CenterCrop,
    GrayToRgb, RandomCrop, RandomResizedCrop, Resize, ResizeTo, Transform,
};
use dwlth_data::{Image, Rng};

fn pattern(c: usize, h: usize, w: usize) -> Image<f32> {
    let data = (0..c * h * w)
        .map(|i| ((i * 37) % 101) as f32 / 100.0)
        .collect();
    Image::new(data, c, h, w).unwrap()
}

fn golden() -> serde_json::Value {
    let text = std::fs::read_to_string(common::fixture("resize_golden.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn dims(v: &serde_json::Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

#[test]
fn bilinear_matches_pytorch_small_cases() {
    let g = golden();
    for case in g["cases"].as_array().unwrap() {
        let s = dims(&case["shape"]);
        let o = dims(&case["size"]);
        let img = pattern(s[0], s[1], s[2]);
        let input: Vec<f32> = case["input"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(img.data(), input.as_slice(), "input pattern");
        let out = resize_bilinear(&img, o[0], o[1]);
        assert_eq!(out.shape(), [s[0], o[0], o[1]]);
        let want = case["output"].as_array().unwrap();
        for (i, (got, want)) in out.data().iter().zip(want).enumerate() {
            let want = want.as_f64().unwrap() as f32;
            assert!(
                (got - want).abs() < 1e-6,
                "{s:?}->{o:?} [{i}]: {got} vs {want}"
            );
        }
    }
}

#[test]
fn bilinear_matches_pytorch_cifar_to_224_and_256() {
    let g = golden();
    let img = pattern(3, 32, 32);
    for case in g["large"].as_array().unwrap() {
        let o = dims(&case["size"]);
        let out = resize_bilinear(&img, o[0], o[1]);
        let sum: f64 = out.data().iter().map(|&v| f64::from(v)).sum();
        let want = case["sum"].as_f64().unwrap();
        assert!((sum - want).abs() < 1e-2, "sum {sum} vs {want}");
        for s in case["samples"].as_array().unwrap() {
            let (c, y, x) = (
                s[0].as_u64().unwrap() as usize,
                s[1].as_u64().unwrap() as usize,
                s[2].as_u64().unwrap() as usize,
            );
            let got = out.plane(c)[y * o[1] + x];
            let want = s[3].as_f64().unwrap() as f32;
            assert!((got - want).abs() < 1e-6, "({c},{y},{x}) {got} vs {want}");
        }
    }
}

#[test]
fn random_crop_with_padding_is_a_shifted_window() {
    let img = pattern(3, 32, 32);
    let crop = RandomCrop::new(32, 32, 4).unwrap();
    let mut rng = Rng::new(5);
    let mut zeros_seen = false;
    for _ in 0..50 {
        let out = crop.apply(img.clone(), &mut rng);
        assert_eq!(out.shape(), [3, 32, 32]);
        // find the shift (dy, dx) in [-4, 4]^2 that explains the output
        let found = (-4isize..=4)
            .flat_map(|dy| (-4isize..=4).map(move |dx| (dy, dx)))
            .find(|&(dy, dx)| {
                (0..3).all(|c| {
                    (0..32).all(|y| {
                        (0..32).all(|x| {
                            let (sy, sx) = (y as isize + dy, x as isize + dx);
                            let want = if (0..32).contains(&sy) && (0..32).contains(&sx) {
                                img.plane(c)[sy as usize * 32 + sx as usize]
                            } else {
                                0.0
                            };
                            out.plane(c)[y * 32 + x] == want
                        })
                    })
                })
            });
        let (dy, dx) = found.expect("output is a padded window");
        zeros_seen |= dy != 0 || dx != 0;
    }
    assert!(zeros_seen);
    // same seed, same crops
    let a: Vec<_> = (0..5)
        .map(|i| crop.apply(img.clone(), &mut Rng::new(i)))
        .collect();
    let b: Vec<_> = (0..5)
        .map(|i| crop.apply(img.clone(), &mut Rng::new(i)))
        .collect();
    assert_eq!(a, b);
}

#[test]
fn flip_and_crop_flip_pipeline() {
    let img = pattern(2, 3, 4);
    let f = hflip(img.clone());
    assert_eq!(f.plane(1)[4], img.plane(1)[7]);
    assert_eq!(hflip(f), img);
    let p = crop_flip(32, 4).unwrap();
    let mut flips = 0;
    let base = pattern(3, 32, 32);
    let no_pad = dwlth_data::transforms::Pipeline::new()
        .then(RandomCrop::new(32, 32, 0).unwrap())
        .then(dwlth_data::transforms::RandomHorizontalFlip::default());
    for s in 0..200 {
        let out = no_pad.apply(base.clone(), &mut Rng::new(s));
        if out != base {
            assert_eq!(out, hflip(base.clone()));
            flips += 1;
        }
    }
    assert!((70..130).contains(&flips), "{flips} flips of 200");
    assert_eq!(p.output_shape(3, Some((32, 32))), (3, Some((32, 32))));
}

#[test]
fn center_crop_and_resize_follow_torchvision() {
    // 256 -> 224: offset 16
    let img = pattern(1, 256, 256);
    let out = CenterCrop::new(224, 224)
        .unwrap()
        .apply(img.clone(), &mut Rng::new(0));
    assert_eq!(out.plane(0)[0], img.plane(0)[16 * 256 + 16]);
    // odd difference rounds half to even: (5 - 2) / 2 = 1.5 -> 2
    let img = pattern(1, 5, 5);
    let out = CenterCrop::new(2, 2)
        .unwrap()
        .apply(img.clone(), &mut Rng::new(0));
    assert_eq!(out.plane(0)[0], img.plane(0)[2 * 5 + 2]);
    // larger than the image: zero padded, image centred
    let out = CenterCrop::new(7, 7)
        .unwrap()
        .apply(img.clone(), &mut Rng::new(0));
    assert_eq!(out.plane(0)[0], 0.0);
    assert_eq!(out.plane(0)[7 + 1], img.plane(0)[0]);
    // Resize(256) keeps the aspect ratio with int() truncation
    let r = Resize::new(ResizeTo::Shorter(256)).unwrap();
    let out = r.apply(pattern(3, 20, 30), &mut Rng::new(0));
    assert_eq!(out.shape(), [3, 256, 384]);
    let out = r.apply(pattern(3, 33, 20), &mut Rng::new(0));
    assert_eq!(out.shape(), [3, 422, 256]);
    // the papers' test pipeline: 32 -> 256 -> 224, equal to resizing then slicing
    let p = resize_center_crop(256, 224).unwrap();
    let small = pattern(3, 32, 32);
    let out = p.apply(small.clone(), &mut Rng::new(0));
    let full = resize_bilinear(&small, 256, 256);
    assert_eq!(out.shape(), [3, 224, 224]);
    assert_eq!(out.plane(2)[5 * 224 + 9], full.plane(2)[21 * 256 + 25]);
}

#[test]
fn random_resized_crop_windows_obey_scale_and_ratio() {
    let rrc = RandomResizedCrop::new(224, 224).unwrap();
    let mut rng = Rng::new(11);
    let mut areas = Vec::new();
    for _ in 0..500 {
        let (top, left, h, w) = rrc.window(32, 32, &mut rng);
        assert!(h >= 1 && w >= 1 && top + h <= 32 && left + w <= 32);
        let area = (h * w) as f64 / 1024.0;
        areas.push(area);
        let ratio = w as f64 / h as f64;
        // rounding to whole pixels loosens the bounds a little at small sizes
        assert!(area <= 1.0 && ratio > 0.5 && ratio < 2.0, "{h}x{w}");
    }
    let mean = areas.iter().sum::<f64>() / areas.len() as f64;
    assert!((0.45..0.65).contains(&mean), "mean area {mean}");
    // fallback for extreme aspect ratios: centred crop at the allowed ratio
    let narrow = RandomResizedCrop::with_ranges(8, 8, (0.99, 1.0), (1.0, 1.0)).unwrap();
    assert_eq!(narrow.window(10, 100, &mut Rng::new(0)), (0, 45, 10, 10));
    let p = resized_crop_flip(224).unwrap();
    let out = p.apply(pattern(3, 32, 32), &mut Rng::new(3));
    assert_eq!(out.shape(), [3, 224, 224]);
    assert!(out.data().iter().all(|v| (0.0..=1.0).contains(v)));
}

#[test]
fn gray_to_rgb_repeats_the_plane() {
    let g = pattern(1, 2, 3);
    let rgb = GrayToRgb.apply(g.clone(), &mut Rng::new(0));
    assert_eq!(rgb.shape(), [3, 2, 3]);
    for c in 0..3 {
        assert_eq!(rgb.plane(c), g.data());
    }
    let again = GrayToRgb.apply(rgb.clone(), &mut Rng::new(0));
    assert_eq!(again, rgb);
}

#[test]
fn batch_tensors_go_through_the_pipeline() {
    use burn::tensor::{Device, Tensor, TensorData};
    let device = Device::flex();
    let x = Tensor::<4>::from_data(
        TensorData::new(pattern(3, 32, 32).into_data().repeat(2), [2, 3, 32, 32]),
        &device,
    );
    let p = resize_center_crop(40, 36).unwrap();
    let y = p.apply_batch(x, 0).unwrap();
    assert_eq!(y.dims(), [2, 3, 36, 36]);
    let v = y.into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(v[..36 * 36 * 3], v[36 * 36 * 3..]);
}

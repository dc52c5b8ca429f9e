//! Loss landscapes on a tiny ResNet: the value at the origin, filter normalisation, the PCA
//! plane of a trajectory, adversarial surfaces, parallel workers and resuming a killed grid.

use std::collections::BTreeMap;

use burn::tensor::{Device, Distribution, Int, Tensor};
use dwlth::adv::Attack;
use dwlth::analysis::landscape::{
    evaluate_grid, model_loss, pca_plane, shifted, Direction, Grid, GridOptions, Surface,
    WeightTensor, Weights,
};
use dwlth::models::{Arch, ResNet, ResNetConfig, Stem};

type Batches = Vec<(Tensor<4>, Tensor<1, Int>)>;

/// The device's random generator is shared by every thread: each test draws its model and
/// data under this lock after seeding, or parallel tests would interleave their draws and see
/// different models from run to run.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn setup() -> (ResNet, Batches) {
    let device = Device::flex().autodiff();
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    device.seed(5);
    let model = ResNetConfig::new(Arch::ResNet18)
        .with_width(2)
        .with_stem(Stem::Cifar)
        .with_num_classes(3)
        .init(&device);
    let batches = (0..2)
        .map(|b| {
            let x = Tensor::<4>::random([6, 3, 8, 8], Distribution::Uniform(0.0, 1.0), &device);
            let y = Tensor::<1, Int>::from_ints([0, 1, 2, b, 1, 0], &device);
            (x, y)
        })
        .collect();
    (model, batches)
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt()
}

#[test]
fn the_landscape_at_the_origin_is_the_models_own_loss() {
    let (model, batches) = setup();
    let origin = Weights::of(&model);
    let (x, y) = (Direction::random(&origin, 1), Direction::random(&origin, 2));
    let grid = Grid::square(0.5, 3);
    let mut surface = Surface::new(&grid, "random", None);
    let options = GridOptions {
        workers: 1,
        ..Default::default()
    };
    evaluate_grid(&model, &batches, &origin, (&x, &y), &mut surface, &options).unwrap();
    assert!(surface.is_complete(false));
    let (loss, acc) = model_loss(&model, &batches).unwrap();
    let centre = surface.index(1, 1);
    assert!((surface.clean_loss[centre].unwrap() - loss).abs() < 1e-6);
    assert_eq!(surface.clean_acc[centre], Some(acc));
    // Away from the origin the model is a different one.
    let corner = surface.clean_loss[surface.index(0, 0)].unwrap();
    assert!(
        (corner - loss).abs() > 1e-4,
        "corner {corner} vs origin {loss}"
    );
}

#[test]
fn filter_normalisation_gives_each_filter_the_norm_of_its_weight_filter() {
    let (model, _) = setup();
    let origin = Weights::of(&model);
    assert!(origin.tensors.contains_key("conv1.weight"));
    assert!(origin.tensors.contains_key("fc.weight"));
    // BatchNorm and biases are not part of the plane.
    assert!(origin
        .tensors
        .keys()
        .all(|k| k.ends_with("weight") && !k.contains("bn")));
    let d = Direction::random(&origin, 7);
    for (key, w) in &origin.tensors {
        let per = w.values.len() / w.shape[0];
        for (f, (df, wf)) in d.tensors[key]
            .chunks(per)
            .zip(w.values.chunks(per))
            .enumerate()
        {
            let (nd, nw) = (norm(df), norm(wf));
            assert!(
                (nd - nw).abs() <= 1e-4 * nw.max(1e-6),
                "{key} filter {f}: ‖d‖ {nd} vs ‖w‖ {nw}"
            );
        }
    }
    // Same seed, same direction; another seed, another one.
    assert_eq!(Direction::random(&origin, 7), d);
    assert_ne!(Direction::random(&origin, 8), d);
}

#[test]
fn a_masked_layer_moves_only_its_kept_weights() {
    let mut tensors = BTreeMap::new();
    tensors.insert(
        "conv.weight".to_string(),
        WeightTensor {
            shape: vec![2, 1, 1, 3],
            values: vec![1.0, 0.0, 2.0, 0.0, 0.0, 3.0],
            mask: Some(vec![1.0, 0.0, 1.0, 0.0, 0.0, 1.0]),
        },
    );
    let origin = Weights { tensors };
    let d = Direction::random(&origin, 3);
    let v = &d.tensors["conv.weight"];
    assert_eq!([v[1], v[3], v[4]], [0.0; 3]);
    assert!((norm(&v[..3]) - 5f64.sqrt()).abs() < 1e-5);
    assert!((norm(&v[3..]) - 3.0).abs() < 1e-5);
}

#[test]
fn shifting_moves_exactly_the_plane_weights() {
    let (model, _) = setup();
    let origin = Weights::of(&model);
    let (x, y) = (Direction::random(&origin, 1), Direction::random(&origin, 2));
    let moved = Weights::of(&shifted(&model, &origin, (&x, &y), (0.5, -2.0)));
    for (key, w) in &origin.tensors {
        let expected: Vec<f32> = w
            .values
            .iter()
            .zip(x.tensors[key].iter().zip(&y.tensors[key]))
            .map(|(w, (a, b))| w + 0.5 * a - 2.0 * b)
            .collect();
        let got = &moved.tensors[key].values;
        assert!(got
            .iter()
            .zip(&expected)
            .all(|(g, e)| (g - e).abs() <= 1e-5 * (1.0 + e.abs())));
    }
    // The original is untouched.
    assert_eq!(Weights::of(&model), origin);
}

#[test]
fn pca_recovers_a_planar_trajectory() {
    let n = 500;
    let weights = |f: &dyn Fn(usize) -> f32| {
        let mut tensors = BTreeMap::new();
        tensors.insert(
            "w".to_string(),
            WeightTensor {
                shape: vec![n / 10, 10],
                values: (0..n).map(f).collect(),
                mask: None,
            },
        );
        Weights { tensors }
    };
    let origin = weights(&|i| (i as f32 * 0.37).sin());
    // Two orthogonal unit directions u, v and the trajectory's true coordinates.
    let u: Vec<f32> = (0..n).map(|i| if i < n / 2 { 1.0 } else { 0.0 }).collect();
    let v: Vec<f32> = (0..n)
        .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    let (nu, nv) = (norm(&u) as f32, norm(&v) as f32);
    let truth = [(3.0, 1.0), (2.0, 0.2), (1.2, -0.5), (0.5, 0.3), (0.1, 0.05)];
    let checkpoints: Vec<Weights> = truth
        .iter()
        .map(|&(s, t)| weights(&|i| (i as f32 * 0.37).sin() + s * u[i] / nu + t * v[i] / nv))
        .collect();
    let plane = pca_plane(&checkpoints, &origin).unwrap();
    assert!((plane.x.norm() - 1.0).abs() < 1e-5 && (plane.y.norm() - 1.0).abs() < 1e-5);
    assert!((plane.explained[0] + plane.explained[1] - 1.0).abs() < 1e-6);
    assert!(plane.explained[0] > plane.explained[1]);
    // The plane contains the trajectory, so distances between checkpoints are kept.
    for a in 0..truth.len() {
        for b in 0..truth.len() {
            let want = ((truth[a].0 - truth[b].0) as f64).hypot((truth[a].1 - truth[b].1) as f64);
            let (pa, pb) = (plane.path[a], plane.path[b]);
            let got = (pa[0] - pb[0]).hypot(pa[1] - pb[1]);
            assert!((got - want).abs() < 1e-4, "{a}–{b}: {got} vs {want}");
        }
    }
    // A trajectory on one line has no second direction.
    let line: Vec<Weights> = [1.0f32, 2.0, 3.0]
        .iter()
        .map(|&s| weights(&|i| (i as f32 * 0.37).sin() + s * u[i] / nu))
        .collect();
    assert!(pca_plane(&line, &origin).is_err());
    assert!(pca_plane(&checkpoints[..1], &origin).is_err());
}

#[test]
fn adversarial_surfaces_parallel_workers_and_resuming() {
    let (model, batches) = setup();
    let origin = Weights::of(&model);
    let (x, y) = (Direction::random(&origin, 1), Direction::random(&origin, 2));
    let grid = Grid::square(0.3, 3);
    let attack = Attack {
        random_start: false,
        ..Attack::pgd(8.0 / 255.0, 2.0 / 255.0, 3)
    };
    let full = {
        let mut s = Surface::new(&grid, "random", None);
        let options = GridOptions {
            attack: Some(attack.clone()),
            workers: 1,
            ..Default::default()
        };
        evaluate_grid(&model, &batches, &origin, (&x, &y), &mut s, &options).unwrap();
        s
    };
    assert!(full.is_complete(true));
    // The attack raises the loss at every point. Its accuracy is the last iterate's, which at
    // a single point can exceed the clean one (a 12-image batch of an untrained model near
    // chance, where a step that raises the loss can still flip one image to its class), so
    // accuracy is compared over the grid.
    for k in 0..full.len() {
        assert!(full.adv_loss[k].unwrap() >= full.clean_loss[k].unwrap() - 1e-6);
    }
    let total = |v: &[Option<f64>]| v.iter().map(|a| a.unwrap()).sum::<f64>();
    assert!(total(&full.adv_acc) <= total(&full.clean_acc));

    // Two workers, killed after some points: the saved file holds a partial grid.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("landscape.json");
    let options = GridOptions {
        attack: Some(attack.clone()),
        workers: 2,
        save_to: Some(path.clone()),
        progress: false,
    };
    // The points left are marked, so that reusing them (rather than recomputing) shows.
    let missing = [0, 4, 5, 8];
    let mut partial = full.clone();
    for k in 0..partial.len() {
        if missing.contains(&k) {
            partial.clean_loss[k] = None;
            partial.adv_loss[k] = None;
        } else {
            partial.clean_loss[k] = Some(123.0);
        }
    }
    std::fs::write(&path, serde_json::to_vec(&partial).unwrap()).unwrap();
    let mut resumed = Surface::new(&grid, "random", None);
    evaluate_grid(&model, &batches, &origin, (&x, &y), &mut resumed, &options).unwrap();
    assert!(resumed.is_complete(true));
    for k in 0..full.len() {
        if missing.contains(&k) {
            for (a, b) in [
                (resumed.clean_loss[k], full.clean_loss[k]),
                (resumed.adv_loss[k], full.adv_loss[k]),
            ] {
                assert!(
                    (a.unwrap() - b.unwrap()).abs() < 1e-5,
                    "point {k}: {a:?} vs {b:?}"
                );
            }
        } else {
            assert_eq!(
                resumed.clean_loss[k],
                Some(123.0),
                "point {k} was recomputed"
            );
        }
    }
    let saved = Surface::read(&path).unwrap();
    assert_eq!(saved.settings, resumed.settings);
    assert!(saved.is_complete(true));

    // Other images (here: the same ones in another order) make other settings.
    let reordered: Vec<_> = batches.iter().rev().cloned().collect();
    let mut s = Surface::new(&grid, "random", None);
    let err = evaluate_grid(&model, &reordered, &origin, (&x, &y), &mut s, &options);
    assert!(err.unwrap_err().to_string().contains("other settings"));

    // A saved grid with other settings is never overwritten.
    let other = Direction::random(&origin, 3);
    let mut s = Surface::new(&grid, "random", None);
    let err = evaluate_grid(&model, &batches, &origin, (&other, &y), &mut s, &options);
    assert!(err.unwrap_err().to_string().contains("other settings"));
}

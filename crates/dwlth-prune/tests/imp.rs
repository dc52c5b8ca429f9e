//! IMP: sparsity schedule, rewinding to the whole pre-trained state, and resuming a killed run
//! with identical masks.

use std::cell::RefCell;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use dwlth_models::io::resnet_tensors;
use dwlth_models::{Arch, ResNet, ResNetConfig, Stem};
use dwlth_prune::{masked_weights, Imp, ImpConfig, Prunable};

fn theta_p(device: &Device) -> ResNet {
    device.seed(11);
    ResNetConfig::new(Arch::ResNet18)
        .with_width(2)
        .with_stem(Stem::Cifar)
        .with_num_classes(3)
        .init(device)
}

/// A deterministic batch for round `round`.
fn batch(round: usize, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let n = 4 * 3 * 8 * 8;
    let values: Vec<f32> = (0..n)
        .map(|i| (((i * 37 + round * 11) % 101) as f32) / 100.0)
        .collect();
    let x = Tensor::from_data(TensorData::new(values, [4, 3, 8, 8]), device);
    let y = Tensor::from_ints([0, 1, 2, (round % 3) as i32], device);
    (x, y)
}

/// Two SGD steps with a fresh optimiser.
fn retrain(mut model: ResNet, round: usize, device: &Device) -> ResNet {
    let mut optim = SgdConfig::new()
        .with_momentum(Some(
            MomentumConfig::new().with_momentum(0.9).with_dampening(0.0),
        ))
        .init();
    let ce = CrossEntropyLossConfig::new().init(device);
    for _ in 0..2 {
        let (x, y) = batch(round, device);
        let loss = ce.forward(model.forward(x), y);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(0.05, model, grads);
    }
    model
}

fn config(rounds: usize) -> ImpConfig {
    ImpConfig {
        rounds,
        ..ImpConfig::default()
    }
}

#[test]
fn imp_follows_the_schedule_rewinds_and_leaves_theta_p_alone() {
    let device = Device::flex().autodiff();
    let theta = theta_p(&device);
    let theta_state = resnet_tensors(&theta);
    let theta_layers = masked_weights(&theta);
    let dir = tempfile::tempdir().unwrap();
    let imp = Imp::new(config(4), Prunable::convolutions(), dir.path()).unwrap();
    let (_, masks, rounds) = imp
        .run(&theta, |model: ResNet, ctx| {
            // The network handed over is θ_p with the round's mask: kept weights rewound.
            for (layer, original) in masked_weights(&model).iter().zip(&theta_layers) {
                for ((w, m), w0) in layer.weight.iter().zip(&layer.mask).zip(&original.weight) {
                    assert_eq!(
                        *w,
                        if *m { *w0 } else { 0.0 },
                        "round {}: {}",
                        ctx.round,
                        layer.name
                    );
                }
            }
            let trained = retrain(model, ctx.round, &device);
            Ok::<_, String>((trained, serde_json::json!({ "round": ctx.round })))
        })
        .unwrap();
    assert_eq!(rounds.len(), 4);
    for (k, r) in rounds.iter().enumerate() {
        let expected = 1.0 - 0.8f64.powi(k as i32 + 1);
        assert_eq!(r.round, k + 1);
        assert!(
            (r.sparsity - expected).abs() < 1e-3,
            "round {}: {}",
            r.round,
            r.sparsity
        );
    }
    assert_eq!(masks.sparsity(), rounds[3].sparsity);
    assert_eq!(
        resnet_tensors(&theta),
        theta_state,
        "θ_p changed during IMP"
    );
}

#[test]
fn a_killed_run_resumes_with_identical_masks() {
    let device = Device::flex().autodiff();
    let theta = theta_p(&device);
    let full_dir = tempfile::tempdir().unwrap();
    let full = Imp::new(config(4), Prunable::convolutions(), full_dir.path()).unwrap();
    let (_, full_masks, _) = full
        .run(&theta, |m, ctx| {
            Ok::<_, String>((retrain(m, ctx.round, &device), serde_json::Value::Null))
        })
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let imp = Imp::new(config(4), Prunable::convolutions(), dir.path()).unwrap();
    let err = imp
        .run(&theta, |m, ctx| {
            if ctx.round == 3 {
                return Err("killed".to_string());
            }
            Ok((retrain(m, ctx.round, &device), serde_json::Value::Null))
        })
        .unwrap_err();
    assert!(err.to_string().contains("round 3"), "{err}");
    assert_eq!(imp.finished_rounds().unwrap().len(), 2);

    let trained_rounds = RefCell::new(Vec::new());
    let (_, masks, records) = imp
        .run(&theta, |m, ctx| {
            trained_rounds.borrow_mut().push(ctx.round);
            Ok::<_, String>((retrain(m, ctx.round, &device), serde_json::Value::Null))
        })
        .unwrap();
    assert_eq!(
        *trained_rounds.borrow(),
        [3, 4],
        "finished rounds were redone"
    );
    assert_eq!(records.len(), 4);
    assert_eq!(masks, full_masks, "the resumed run ended with other masks");

    // The folder is bound to its settings, θ_p and the caller's inputs.
    let never =
        |_: ResNet, _: &dwlth_prune::RoundContext| -> Result<(ResNet, serde_json::Value), String> {
            panic!("a refused run must not train")
        };
    let mut other = config(5);
    other.rate = 0.3;
    let err = Imp::new(other, Prunable::convolutions(), dir.path())
        .unwrap()
        .run(&theta, never)
        .unwrap_err();
    assert!(
        err.to_string().contains("`imp.rate` was 0.2, now 0.3"),
        "{err}"
    );
    let err = Imp::new(config(4), Prunable::convolutions(), dir.path())
        .unwrap()
        .with_inputs(serde_json::json!({"retrain": "at"}))
        .run(&theta, never)
        .unwrap_err();
    assert!(err.to_string().contains("`inputs`"), "{err}");
}

#[test]
fn a_sparsity_schedule_reaches_each_level_and_keeps_masks_nested() {
    let device = Device::flex().autodiff();
    let theta = theta_p(&device);
    let dir = tempfile::tempdir().unwrap();
    let schedule = vec![0.5, 0.8, 0.95];
    let config = ImpConfig {
        rounds: 3,
        sparsities: schedule.clone(),
        ..ImpConfig::default()
    };
    assert_eq!(config.sparsity_after(2), 0.8);
    let imp = Imp::new(config, Prunable::convolutions(), dir.path()).unwrap();
    let kept = RefCell::new(Vec::new());
    let (_, _, rounds) = imp
        .run(&theta, |model: ResNet, ctx| {
            kept.borrow_mut().push(ctx.masks.clone());
            Ok::<_, String>((retrain(model, ctx.round, &device), serde_json::json!({})))
        })
        .unwrap();
    for (record, target) in rounds.iter().zip(&schedule) {
        // Rounding to whole weights per round: within a weight or two of the target.
        assert!(
            (record.sparsity - target).abs() < 1e-3,
            "round {}: {} for {target}",
            record.round,
            record.sparsity
        );
    }
    let kept = kept.into_inner();
    for pair in kept.windows(2) {
        for (name, later) in pair[1].iter() {
            let earlier = pair[0].get(name).unwrap();
            assert!(
                later.keep.iter().zip(&earlier.keep).all(|(l, e)| !l || *e),
                "{name}: a weight pruned earlier is kept again"
            );
        }
    }
    // A schedule that does not fit the rounds or does not increase is refused.
    for (rounds, sparsities) in [
        (2, vec![0.5, 0.8, 0.9]),
        (2, vec![0.8, 0.5]),
        (1, vec![1.0]),
    ] {
        let config = ImpConfig {
            rounds,
            sparsities,
            ..ImpConfig::default()
        };
        let message = Imp::new(config, Prunable::convolutions(), dir.path())
            .unwrap_err()
            .to_string();
        assert!(message.contains("invalid IMP schedule"), "{message}");
    }
}

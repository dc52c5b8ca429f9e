//! Properties of the attacks: constraints, restarts, eval-mode purity, argument errors, and the
//! gradient-masking sanity suite.

mod common;

use burn::tensor::{Device, Int, Tensor};
use common::{batch, tiny};
use dwlth_adv::{evaluate, parse_fraction, AdvError, Attack, AttackMode, Norm};
use dwlth_models::io::resnet_tensors;

fn max_abs(t: Tensor<4>) -> f32 {
    t.abs().max().into_scalar::<f32>()
}

#[test]
fn perturbations_respect_the_threat_model() {
    let device = Device::flex().autodiff();
    let model = AttackMode::Eval.view(&tiny(&device, 1));
    let (x, y) = batch(&device);
    let xp = x.clone().without_autodiff();
    for attack in [
        Attack::fgsm(8.0 / 255.0),
        Attack::fgsm_rs(8.0 / 255.0, 10.0 / 255.0),
        Attack::pgd(8.0 / 255.0, 2.0 / 255.0, 5),
    ] {
        let xa = attack.perturb(&model, x.clone(), y.clone()).unwrap();
        assert!(
            max_abs(xa.clone() - xp.clone()) <= 8.0 / 255.0 + 1e-6,
            "{attack:?}"
        );
        assert!(xa.clone().min().into_scalar::<f32>() >= 0.0);
        assert!(xa.max().into_scalar::<f32>() <= 1.0);
    }
    let l2 = Attack {
        norm: Norm::L2,
        eps: 0.3,
        alpha: 0.1,
        steps: 5,
        restarts: 1,
        random_start: true,
    };
    let xa = l2.perturb(&model, x.clone(), y).unwrap();
    let [n, _, _, _] = xa.dims();
    let norms = (xa - xp).square().reshape([n as i32, -1]).sum_dim(1).sqrt();
    assert!(norms.max().into_scalar::<f32>() <= 0.3 + 1e-5);
}

#[test]
fn train_mode_attacks_update_running_statistics() {
    let device = Device::flex().autodiff();
    let net = tiny(&device, 3);
    let before = resnet_tensors(&net);
    let view = AttackMode::Train.view(&net);
    let (x, y) = batch(&device);
    Attack::pgd(8.0 / 255.0, 2.0 / 255.0, 2)
        .perturb(&view, x, y)
        .unwrap();
    assert_ne!(
        resnet_tensors(&net),
        before,
        "train mode should move the running statistics"
    );
}

#[test]
fn bad_arguments_are_errors() {
    let device = Device::flex().autodiff();
    let model = AttackMode::Eval.view(&tiny(&device, 4));
    let (x, y) = batch(&device);
    let bad = [
        Attack {
            eps: -0.1,
            ..Attack::fgsm(0.1)
        },
        Attack {
            steps: 0,
            ..Attack::pgd(0.1, 0.01, 1)
        },
        Attack {
            restarts: 0,
            ..Attack::pgd(0.1, 0.01, 1)
        },
        Attack {
            alpha: f64::NAN,
            ..Attack::pgd(0.1, 0.01, 1)
        },
    ];
    for a in bad {
        let err = a.perturb(&model, x.clone(), y.clone()).unwrap_err();
        assert!(
            matches!(err, AdvError::InvalidSetting { .. }),
            "{a:?}: {err}"
        );
    }
    let wrong = Tensor::<1, Int>::from_ints([0, 1, 2, 9, 0, 1], &device);
    let err = evaluate(&model, [(x.clone(), wrong)], None, None, 4).unwrap_err();
    assert!(err.to_string().contains("label 9 of example 3"), "{err}");
    let short = Tensor::<1, Int>::from_ints([0, 1], &device);
    assert!(Attack::fgsm(0.1).perturb(&model, x.clone(), short).is_err());
    let plain = tiny(&Device::flex(), 4);
    let err = Attack::fgsm(0.1)
        .perturb(
            &plain,
            x.clone().without_autodiff(),
            Tensor::<1, Int>::from_ints([0, 1, 2, 3, 0, 1], &Device::flex()),
        )
        .unwrap_err();
    assert!(err.to_string().contains("autodiff"), "{err}");
    // The trainable model itself, not a view: parameter gradients and BatchNorm's mode would be
    // whatever it happens to be.
    let trainable = tiny(&device, 4);
    let err = Attack::fgsm(0.1)
        .perturb(&trainable, x.clone(), y.clone())
        .unwrap_err();
    assert!(err.to_string().contains("AttackMode::Eval.view"), "{err}");
    assert!(parse_fraction("8/255").is_ok() && parse_fraction("x/2").is_err());
}

#[test]
fn labels_outside_the_classes_are_errors_not_panics() {
    let device = Device::flex().autodiff();
    let model = AttackMode::Eval.view(&tiny(&device, 5));
    let (x, _) = batch(&device);
    for labels in [[0, 1, 2, 4, 0, 1], [0, 1, 2, -1, 0, 1]] {
        let y = Tensor::<1, Int>::from_ints(labels, &device);
        for attack in [Attack::fgsm(0.1), Attack::pgd(0.1, 0.05, 2)] {
            let err = attack.perturb(&model, x.clone(), y.clone()).unwrap_err();
            assert!(
                matches!(&err, AdvError::InvalidInput(m) if m.contains("example 3")),
                "{labels:?}: {err}"
            );
            let err = attack
                .perturb_targeted(&model, x.clone(), y.clone())
                .unwrap_err();
            assert!(matches!(err, AdvError::InvalidInput(_)), "{err}");
        }
    }
}

#[test]
fn images_outside_the_unit_range_or_empty_are_errors() {
    let device = Device::flex().autodiff();
    let model = AttackMode::Eval.view(&tiny(&device, 6));
    let (x, y) = batch(&device);
    let attack = Attack::pgd(0.1, 0.05, 1);
    for bad in [f32::NAN, f32::INFINITY, -0.5, 255.0] {
        let poisoned = x.clone().slice_fill([1..2, 0..1, 2..3, 3..4], bad);
        let err = attack.perturb(&model, poisoned, y.clone()).unwrap_err();
        assert!(
            matches!(&err, AdvError::InvalidInput(m) if m.contains("[0, 1]")),
            "{bad}: {err}"
        );
    }
    let empty = Tensor::<4>::zeros([6, 3, 0, 0], &device);
    let err = attack.perturb(&model, empty, y).unwrap_err();
    assert!(matches!(err, AdvError::InvalidInput(_)), "{err}");
}

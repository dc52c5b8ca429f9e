//! Restarts keep each example's worst case, so they never raise robust accuracy; and an
//! eval-mode attack leaves the model untouched. In a file of its own: the comparison reseeds the
//! device's generator, which tests running in parallel threads of one binary would share.

mod common;

use burn::tensor::Device;
use common::{batch, tiny};
use dwlth_adv::{evaluate, Attack, AttackMode};
use dwlth_models::io::resnet_tensors;

#[test]
fn restarts_never_help_the_model_and_eval_mode_keeps_statistics() {
    let device = Device::flex().autodiff();
    let net = tiny(&device, 2);
    let before = resnet_tensors(&net);
    let model = AttackMode::Eval.view(&net);
    let (x, y) = batch(&device);
    let one = Attack {
        restarts: 1,
        ..Attack::pgd(4.0 / 255.0, 1.0 / 255.0, 3)
    };
    let five = Attack {
        restarts: 5,
        ..one.clone()
    };
    device.seed(5);
    let ra1 = evaluate(&model, [(x.clone(), y.clone())], Some(&one), None, 4)
        .unwrap()
        .ra
        .unwrap();
    device.seed(5);
    let ra5 = evaluate(&model, [(x, y)], Some(&five), None, 4)
        .unwrap()
        .ra
        .unwrap();
    assert!(ra5 <= ra1, "restarts raised RA: {ra1} -> {ra5}");
    assert_eq!(
        resnet_tensors(&net),
        before,
        "an eval-mode attack changed the model"
    );
}

//! Load pre-trained weights from PyTorch and predict: the three checkpoints the paper starts
//! from — torchvision (θ_STD), fast_adversarial (θ_FAT), MadryLab robustness (θ_AT) — all end
//! up as the same torchvision-exact ResNet with its input normalisation inside.
//!
//! ```sh
//! cargo run --release --example load_pretrained -- robustness resnet50 imagenet_linf_4.pt
//! ```
//!
//! Without arguments it loads the small `robustness`-layout checkpoint shipped with the tests
//! and compares its logits with the ones PyTorch computed.

use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};
use dwlth::models::io::{import_resnet, save_resnet, CheckpointFormat, ImportOptions, StateDict};
use dwlth::models::Arch;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crates/dwlth-models/tests/golden");
    let (format, arch, path) = match args.as_slice() {
        [f, a, p] => (
            f.parse::<CheckpointFormat>()?,
            a.parse::<Arch>()?,
            PathBuf::from(p),
        ),
        _ => (
            CheckpointFormat::Robustness,
            Arch::ResNet18,
            golden.join("r18_w4_robustness.pt"),
        ),
    };
    let device = Device::flex();
    let options = ImportOptions {
        arch,
        format,
        normalize: None,
    };
    let (model, report) = import_resnet(&path, &options, &device)?;
    println!(
        "{}: {} tensors loaded, {} skipped; {} classes, width {}, normalisation {:?}",
        path.display(),
        report.loaded.len(),
        report.skipped.len(),
        model.num_classes(),
        model.width(),
        model.normalize.to_config()
    );
    let out = std::env::temp_dir().join("dwlth_load_pretrained.safetensors");
    save_resnet(&model, &out)?;
    println!("saved as {}", out.display());

    if args.is_empty() {
        let reference = StateDict::read(golden.join("r18_imagenet_w4.safetensors"))?;
        let shape = reference.get("input").ok_or("no input")?.shape().to_vec();
        let x = Tensor::<4>::from_data(TensorData::new(reference.values("input")?, shape), &device);
        let ours = model.forward(x).into_data().try_to_vec_as::<f32>()?;
        let theirs = reference.values("logits_eval")?;
        let diff = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        println!("logits vs PyTorch: max |difference| {diff:.2e}");
    }
    Ok(())
}

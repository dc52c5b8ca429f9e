//! `dwlth demo`: what the library does today, end to end, offline, in about a minute.
//!
//! 1. Imports a real PyTorch checkpoint in the MadryLab `robustness` layout (a small ResNet-18
//!    shipped with the repository's tests) and compares its logits with the ones PyTorch
//!    computed for the same images.
//! 2. Builds a full-size ResNet (torchvision topology), exports it with torchvision's key
//!    names, imports it back as a torchvision checkpoint and predicts a batch of images.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::{Distribution, Tensor};
use dwlth_models::io::{import_resnet, save_resnet, CheckpointFormat, ImportOptions, StateDict};
use dwlth_models::{Arch, DeviceSpec, NormalizeConfig, ResNetConfig};

use crate::commands::import::summary;

/// Prints a line, ignoring a closed stdout.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
use crate::commands::predict::logits;
use crate::error::{DwlthError, Result};

/// The repository's PyTorch fixtures (present in a source checkout).
pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/dwlth-models/tests/golden")
}

/// Runs the demo, printing as it goes.
pub fn run(arch: Arch, images: usize, device: DeviceSpec, out_dir: &Path) -> Result<()> {
    let device = device.device()?;
    let fixtures = fixture_dir();
    let checkpoint = fixtures.join("r18_w4_robustness.pt");
    if checkpoint.exists() {
        say!(
            "1. Importing a PyTorch `robustness` checkpoint: {}",
            checkpoint.display()
        );
        let options = ImportOptions {
            arch: Arch::ResNet18,
            format: CheckpointFormat::Robustness,
            normalize: None,
        };
        let (model, report) = import_resnet(&checkpoint, &options, &device)?;
        say!("   {}", summary(&report).replace('\n', "\n   "));
        let n = model.normalize.to_config();
        say!(
            "   normaliser read from the file: mean {:?} std {:?}",
            n.mean,
            n.std
        );
        let reference = StateDict::read(fixtures.join("r18_imagenet_w4.safetensors"))?;
        let input = reference
            .get("input")
            .ok_or_else(|| DwlthError::InvalidArgument("reference file lacks `input`".into()))?;
        let ours = logits(
            &model,
            input.shape(),
            &reference.values("input")?,
            64,
            &device,
        )?;
        let theirs = reference.values("logits_eval")?;
        let diff = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        say!(
            "   logits of {} images vs PyTorch's: max |difference| = {diff:.2e}",
            input.shape()[0]
        );
    } else {
        say!("1. (skipped: the PyTorch fixtures of a source checkout are not here)");
    }

    say!("2. A full-size {arch} with torchvision's topology and key names");
    let model = ResNetConfig::new(arch)
        .with_normalize(NormalizeConfig::imagenet())
        .try_init(&device)?;
    let path = out_dir.join(format!("{arch}.safetensors"));
    let start = Instant::now();
    save_resnet(&model, &path)?;
    say!("   exported {} in {:.1?}", path.display(), start.elapsed());
    let options = ImportOptions {
        arch,
        format: CheckpointFormat::Torchvision,
        normalize: None,
    };
    let start = Instant::now();
    let (imported, report) = import_resnet(&path, &options, &device)?;
    say!(
        "   imported it back as a torchvision checkpoint in {:.1?}: {}",
        start.elapsed(),
        summary(&report).replace('\n', "\n   ")
    );
    let x = Tensor::<4>::random(
        [images, 3, 224, 224],
        Distribution::Uniform(0.0, 1.0),
        &device,
    );
    let data = x
        .clone()
        .into_data()
        .try_to_vec_as::<f32>()
        .unwrap_or_default();
    let start = Instant::now();
    let a = logits(&model, &[images, 3, 224, 224], &data, images, &device)?;
    let secs = start.elapsed().as_secs_f64();
    let b = logits(&imported, &[images, 3, 224, 224], &data, images, &device)?;
    let same = a == b;
    let top: Vec<usize> = a
        .chunks(model.num_classes())
        .map(|row| {
            row.iter()
                .enumerate()
                .fold(
                    (0, f32::MIN),
                    |best, (i, v)| if *v > best.1 { (i, *v) } else { best },
                )
                .0
        })
        .collect();
    say!(
        "   predicted {images} random 224×224 images in {secs:.2} s ({:.1} img/s); top classes {top:?}; \
         identical after the round trip: {same}",
        images as f64 / secs
    );
    Ok(())
}

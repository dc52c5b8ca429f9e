//! Module paths and PyTorch state-dict keys.
//!
//! The model's field names are torchvision's, so a Burn parameter path *is* the state-dict key
//! except for three leaf names: BatchNorm's `gamma`/`beta` are PyTorch's `weight`/`bias`, and a
//! masked layer's `mask` is saved as `weight_mask`, the name `torch.nn.utils.prune` gives it.

/// Tracks the module path during a Burn `ModuleVisitor` / `ModuleMapper` traversal: call
/// [`enter`](Self::enter) from `enter_module` and [`exit`](Self::exit) from `exit_module`.
/// When a parameter is visited, the path ends with the parameter's field name.
#[derive(Debug, Default, Clone)]
pub struct PathStack {
    parts: Vec<String>,
}

impl PathStack {
    /// Enters a submodule or field.
    pub fn enter(&mut self, name: &str) {
        self.parts.push(name.to_string());
    }

    /// Leaves the innermost submodule or field.
    pub fn exit(&mut self) {
        self.parts.pop();
    }

    /// The current path components.
    pub fn parts(&self) -> &[String] {
        &self.parts
    }

    /// The current path joined by dots (`layer1.0.conv1.weight`).
    pub fn dotted(&self) -> String {
        self.parts.join(".")
    }
}

/// The PyTorch state-dict key of a Burn parameter path.
///
/// ```
/// use dwlth_models::io::torch_key;
/// let path = |s: &str| s.split('.').map(String::from).collect::<Vec<_>>();
/// assert_eq!(torch_key(&path("layer1.0.bn1.gamma")), "layer1.0.bn1.weight");
/// assert_eq!(torch_key(&path("layer2.0.downsample.0.mask")), "layer2.0.downsample.0.weight_mask");
/// assert_eq!(torch_key(&path("fc.bias")), "fc.bias");
/// ```
pub fn torch_key(path: &[String]) -> String {
    let Some((leaf, parents)) = path.split_last() else {
        return String::new();
    };
    let leaf = match leaf.as_str() {
        "gamma" => "weight",
        "beta" => "bias",
        "mask" => "weight_mask",
        other => other,
    };
    parents
        .iter()
        .map(String::as_str)
        .chain(std::iter::once(leaf))
        .collect::<Vec<_>>()
        .join(".")
}

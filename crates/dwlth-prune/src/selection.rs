//! Which masked tensors pruning may touch.

/// A choice of prunable tensors among a model's masked layers.
///
/// The default follows the reference code: every convolution weight (rank 4: stem and
/// downsample included), never the classification head; BatchNorm parameters are not masked
/// layers at all.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct Prunable {
    kind: Kind,
    exclude: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
enum Kind {
    #[default]
    Convolutions,
    All,
    Only(Vec<String>),
}

impl Prunable {
    /// Every convolution weight (rank-4 masked weights).
    pub fn convolutions() -> Self {
        Self::default()
    }

    /// Every masked weight, linear layers included.
    pub fn all() -> Self {
        Self {
            kind: Kind::All,
            exclude: Vec::new(),
        }
    }

    /// Exactly these layers (weight keys such as `layer1.0.conv1.weight`).
    pub fn only(names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            kind: Kind::Only(names.into_iter().map(Into::into).collect()),
            exclude: Vec::new(),
        }
    }

    /// Leaves out these layers.
    pub fn excluding(mut self, names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.exclude.extend(names.into_iter().map(Into::into));
        self
    }

    /// Whether the layer `name` with weight `shape` is prunable.
    pub fn selects(&self, name: &str, shape: &[usize]) -> bool {
        if self.exclude.iter().any(|e| e == name) {
            return false;
        }
        match &self.kind {
            Kind::Convolutions => shape.len() == 4,
            Kind::All => true,
            Kind::Only(names) => names.iter().any(|n| n == name),
        }
    }
}

//! A fully connected layer whose weight is multiplied by a binary mask in `forward`.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::{Device, Tensor, TensorData};

use super::mask::{frozen_param, replace_value, validate_mask, Masked};
use crate::error::{ModelError, Result};

/// Configuration of a [`MaskedLinear`].
#[derive(Config, Debug)]
pub struct MaskedLinearConfig {
    /// Input features.
    pub d_input: usize,
    /// Output features.
    pub d_output: usize,
    /// Whether the layer has a bias (never masked).
    #[config(default = true)]
    pub bias: bool,
}

/// `y = x (weight ⊙ mask)ᵀ + bias`, with the weight in PyTorch's layout `[out, in]` so that
/// PyTorch checkpoints load without a transpose.
#[derive(Module, Debug)]
pub struct MaskedLinear {
    /// The dense weight `[out, in]`; zero wherever the mask is zero.
    pub weight: Param<Tensor<2>>,
    /// The binary mask (0 = pruned). Never trained.
    pub mask: Param<Tensor<2>>,
    /// Optional bias `[out]` (not masked).
    pub bias: Option<Param<Tensor<1>>>,
}

impl MaskedLinearConfig {
    /// Builds the layer with PyTorch's default `nn.Linear` initialisation
    /// (weight and bias uniform in ±1/sqrt(d_input)) and an all-ones mask.
    pub fn try_init(&self, device: &Device) -> Result<MaskedLinear> {
        if self.d_input == 0 || self.d_output == 0 {
            return Err(ModelError::InvalidConfig(format!(
                "linear layer sizes must be positive: {self:?}"
            )));
        }
        // Weight and mask, in f32; f64 so that absurd sizes cannot overflow.
        crate::device::check_allocation(
            &format!(
                "a linear layer of {} → {} features (weight and mask)",
                self.d_input, self.d_output
            ),
            8.0 * self.d_input as f64 * self.d_output as f64,
        )?;
        let bound = 1.0 / (self.d_input as f64).sqrt();
        let init = Initializer::Uniform {
            min: -bound,
            max: bound,
        };
        let shape = [self.d_output, self.d_input];
        Ok(MaskedLinear {
            weight: crate::random::init_param(&init, shape, None, None, device),
            mask: frozen_param(Tensor::ones(shape, device)),
            bias: self
                .bias
                .then(|| crate::random::init_param(&init, [self.d_output], None, None, device)),
        })
    }

    /// Builds the layer.
    ///
    /// # Panics
    /// If a size is zero; use [`try_init`](Self::try_init) for an error instead.
    pub fn init(&self, device: &Device) -> MaskedLinear {
        match self.try_init(device) {
            Ok(layer) => layer,
            Err(e) => panic!("{e}"),
        }
    }
}

impl MaskedLinear {
    /// `weight ⊙ mask` with the mask detached.
    pub fn effective_weight(&self) -> Tensor<2> {
        self.weight.val() * self.mask.val().detach()
    }

    /// Applies the layer to `input` of shape `[batch, d_input]`.
    pub fn forward(&self, input: Tensor<2>) -> Tensor<2> {
        let out = input.matmul(self.effective_weight().transpose());
        match &self.bias {
            Some(bias) => out + bias.val().unsqueeze_dim(0),
            None => out,
        }
    }

    /// Sets the mask and zeroes the pruned weights; `layer` names the layer in errors.
    pub fn with_mask(self, layer: &str, mask: TensorData) -> Result<Self> {
        validate_mask(layer, &self.weight.shape().dims::<2>(), &mask)?;
        let device = self.weight.device();
        let mask = Tensor::<2>::from_data(mask.convert::<f32>(), &device);
        let weight = replace_value(self.weight, |w| w * mask.clone());
        let mask = replace_value(self.mask, |_| mask);
        Ok(Self {
            weight,
            mask,
            ..self
        })
    }
}

impl Masked for MaskedLinear {
    fn weight_shape(&self) -> Vec<usize> {
        self.weight.shape().dims::<2>().to_vec()
    }

    fn mask_data(&self) -> TensorData {
        self.mask.val().into_data()
    }
}

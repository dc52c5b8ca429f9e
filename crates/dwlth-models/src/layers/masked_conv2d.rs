//! A 2-D convolution whose weight is multiplied by a binary mask in `forward`.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};

use super::mask::{frozen_param, replace_value, validate_mask, Masked};
use crate::error::{ModelError, Result};
use dwlth_kernels::conv::conv2d;

/// Configuration of a [`MaskedConv2d`].
#[derive(Config, Debug)]
pub struct MaskedConv2dConfig {
    /// Input and output channels.
    pub channels: [usize; 2],
    /// Kernel height and width.
    pub kernel_size: [usize; 2],
    /// Stride.
    #[config(default = "[1, 1]")]
    pub stride: [usize; 2],
    /// Symmetric zero padding.
    #[config(default = "[0, 0]")]
    pub padding: [usize; 2],
    /// Dilation.
    #[config(default = "[1, 1]")]
    pub dilation: [usize; 2],
    /// Groups.
    #[config(default = 1)]
    pub groups: usize,
    /// Whether the convolution has a bias (never masked).
    #[config(default = false)]
    pub bias: bool,
    /// Weight initialiser. The default is torchvision's ResNet initialisation,
    /// `kaiming_normal_(mode="fan_out", nonlinearity="relu")`.
    #[config(
        default = "Initializer::KaimingNormal { gain: std::f64::consts::SQRT_2, fan_out_only: true }"
    )]
    pub initializer: Initializer,
}

/// A 2-D convolution `conv2d(x, weight ⊙ mask) + bias`, in PyTorch's weight layout
/// `[out, in / groups, kh, kw]`.
///
/// The mask starts as all ones. Set it with [`MaskedConv2d::with_mask`], which also zeroes the
/// pruned weights so that they stay exactly zero through training.
#[derive(Module, Debug)]
pub struct MaskedConv2d {
    /// The dense weight; zero wherever the mask is zero.
    pub weight: Param<Tensor<4>>,
    /// The binary mask (0 = pruned). Never trained.
    pub mask: Param<Tensor<4>>,
    /// Optional bias (not masked).
    pub bias: Option<Param<Tensor<1>>>,
    /// Stride.
    pub stride: [usize; 2],
    /// Symmetric zero padding.
    pub padding: [usize; 2],
    /// Dilation.
    pub dilation: [usize; 2],
    /// Groups.
    pub groups: usize,
}

impl MaskedConv2dConfig {
    /// Checks the configuration.
    pub fn validate(&self) -> Result<()> {
        let [cin, cout] = self.channels;
        let zero = cin == 0
            || cout == 0
            || self.groups == 0
            || self.kernel_size.contains(&0)
            || self.stride.contains(&0)
            || self.dilation.contains(&0);
        if zero {
            return Err(ModelError::InvalidConfig(format!(
                "convolution sizes must be positive: {self:?}"
            )));
        }
        if cin % self.groups != 0 || cout % self.groups != 0 {
            return Err(ModelError::InvalidConfig(format!(
                "channels {:?} are not divisible by groups {}",
                self.channels, self.groups
            )));
        }
        Ok(())
    }

    /// Builds the layer on `device`, with an all-ones mask.
    pub fn try_init(&self, device: &Device) -> Result<MaskedConv2d> {
        self.validate()?;
        let [cin, cout] = self.channels;
        let shape = [
            cout,
            cin / self.groups,
            self.kernel_size[0],
            self.kernel_size[1],
        ];
        // Weight and mask, in f32; f64 so that absurd sizes cannot overflow.
        let numel: f64 = shape.iter().map(|d| *d as f64).product();
        crate::device::check_allocation(
            &format!("a convolution of shape {shape:?} (weight and mask)"),
            8.0 * numel,
        )?;
        let k: usize = self.kernel_size.iter().product();
        let fan_in = cin / self.groups * k;
        let fan_out = cout / self.groups * k;
        let weight = crate::random::init_param(
            &self.initializer,
            shape,
            Some(fan_in),
            Some(fan_out),
            device,
        );
        // PyTorch initialises a conv bias uniformly in ±1/sqrt(fan_in).
        let bias = self.bias.then(|| {
            let bound = 1.0 / (fan_in as f64).sqrt();
            let init = Initializer::Uniform {
                min: -bound,
                max: bound,
            };
            crate::random::init_param(&init, [cout], None, None, device)
        });
        Ok(MaskedConv2d {
            weight,
            mask: frozen_param(Tensor::ones(shape, device)),
            bias,
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
            groups: self.groups,
        })
    }

    /// Builds the layer on `device`.
    ///
    /// # Panics
    /// If the configuration is invalid; use [`try_init`](Self::try_init) for an error instead.
    pub fn init(&self, device: &Device) -> MaskedConv2d {
        match self.try_init(device) {
            Ok(layer) => layer,
            Err(e) => panic!("{e}"),
        }
    }
}

impl MaskedConv2d {
    /// `weight ⊙ mask`, the weight the convolution actually uses.
    ///
    /// The mask is detached: it never receives a gradient, whatever its parameter's settings.
    pub fn effective_weight(&self) -> Tensor<4> {
        self.weight.val() * self.mask.val().detach()
    }

    /// Applies the convolution to `input` of shape `[batch, in, h, w]`.
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let options = ConvOptions::new(self.stride, self.padding, self.dilation, self.groups);
        conv2d(
            input,
            self.effective_weight(),
            self.bias.as_ref().map(|b| b.val()),
            options,
        )
    }

    /// Sets the mask (a tensor of zeros and ones of the weight's shape) and zeroes the pruned
    /// weights. `layer` names the layer in the error if the mask is not valid.
    pub fn with_mask(self, layer: &str, mask: TensorData) -> Result<Self> {
        validate_mask(layer, &self.weight.shape().dims::<4>(), &mask)?;
        let device = self.weight.device();
        let mask = Tensor::<4>::from_data(mask.convert::<f32>(), &device);
        let weight = replace_value(self.weight, |w| w * mask.clone());
        let mask = replace_value(self.mask, |_| mask);
        Ok(Self {
            weight,
            mask,
            ..self
        })
    }
}

impl Masked for MaskedConv2d {
    fn weight_shape(&self) -> Vec<usize> {
        self.weight.shape().dims::<4>().to_vec()
    }

    fn mask_data(&self) -> TensorData {
        self.mask.val().into_data()
    }
}

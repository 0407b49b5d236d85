//! Where each parameter block sits in the flat parameter vector θ.
//!
//! Dense network (state u ∈ ℝ^w):
//!
//! θ = [ W_in (w × d_in), b_in (w) | K_0 (w × w), b_0 (w) | … | K_{N−1}, b_{N−1} | W_c (C × w), b_c (C) | s ]
//!
//! Convolutional network ([`ConvShape`]: c channels of H × W images, kernel k_h × k_w):
//!
//! θ = [ K_in (c × c_in × k_h × k_w), b_in (c) | K_0 (c × c × k_h × k_w), b_0 (c) | … | W_c (C × F), b_c (C) | s ]
//!
//! with F = c·H·W features for the `flatten` read-out and F = c for global average pooling.
//! With a [`Transition`] (a later block of a chain) K_in is c × c_in × 1 × 1; an inner block
//! of a chain (C = 0) has an empty classifier block.
//! Dense matrices are column-major; convolution kernels are stored \[out\]\[in\]\[row\]\[col\]. With
//! the `replicate` opening the opening block is empty, with the `average` closing the
//! classifier block is empty, and the time scale s is there only when it is learnable
//! ([`Shape::time_scale`]).

use std::ops::Range;

/// How the input X (d_in × B) becomes the first state U_0 (w × B).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Opening {
    /// U_0 = σ(W_in X + b_in 1ᵀ), trainable W_in and b_in.
    Activate,
    /// U_0 = X zero-padded to w rows; no parameters (needs w ≥ d_in).
    Replicate,
}

impl std::str::FromStr for Opening {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "activate" => Ok(Opening::Activate),
            "replicate" => Ok(Opening::Replicate),
            _ => Err(format!(
                "unknown opening \"{s}\" (expected \"activate\" or \"replicate\")"
            )),
        }
    }
}

/// How the last state U_N (w × B) becomes the outputs Z (C × B).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Closing {
    /// Z = W_c U_N + b_c 1ᵀ, trainable W_c and b_c (a classifier, or a linear read-out).
    Affine,
    /// Every output is the mean of the state: Z_k = (1/w) Σ_i U_N\[i\]; no parameters (the
    /// sine experiment's closing).
    Average,
}

impl std::str::FromStr for Closing {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "affine" => Ok(Closing::Affine),
            "average" => Ok(Closing::Average),
            _ => Err(format!(
                "unknown closing \"{s}\" (expected \"affine\" or \"average\")"
            )),
        }
    }
}

/// How a convolutional network's last state (c channels of H × W) becomes the features the
/// affine classifier reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Readout {
    /// All c·H·W values of the state, as they are stored.
    Flatten,
    /// Global average pooling: one mean per channel, c features.
    GlobalAverage,
}

impl std::fmt::Display for Readout {
    /// The configuration's name: `flatten` or `global_average`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Readout::Flatten => "flatten",
            Readout::GlobalAverage => "global_average",
        })
    }
}

impl std::str::FromStr for Readout {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "flatten" => Ok(Readout::Flatten),
            "global_average" => Ok(Readout::GlobalAverage),
            _ => Err(format!(
                "unknown read-out \"{s}\" (expected \"flatten\" or \"global_average\")"
            )),
        }
    }
}

/// The image structure of a convolutional ODE-net: inputs of `in_channels` channels of
/// `height` × `width`, hidden states of `channels` channels of the same size, same-padding
/// convolutions with `kernel_h` × `kernel_w` kernels (the 1-D case: `width` = 1,
/// `kernel_w` = 1). The opening is the convolution c_in → c (activated), every hidden step
/// U_{n+1} = U_n + h σ(K_n ∗ U_n + b_n) a convolution c → c.
///
/// With a [`Transition`] the network is a later block of a chain of ODE blocks: its
/// input is the previous block's last state, `in_channels` channels of
/// `in_height` × `in_width`, and its opening pools that state (or not) to `height` × `width`
/// and changes its channels by an activated 1×1 convolution c_in → c.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    pub in_channels: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub readout: Readout,
    /// The opening of a later block of a chain (`None`: the k_h × k_w opening convolution of
    /// the input images).
    pub transition: Option<Transition>,
}

/// The opening of a later block of a chain: U_0 = σ(K ∗ P(X) + b), X the previous block's
/// last state (c_in channels of `in_height` × `in_width`), P a 2×2 pooling (2×1 for images of
/// width 1) or the identity, K a 1×1 convolution c_in → c.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The pooling before the 1×1 convolution (`None`: none, the sizes stay).
    pub pool: Option<crate::conv::Pool>,
    /// The size of the previous block's images.
    pub in_height: usize,
    pub in_width: usize,
}

impl ConvShape {
    /// Pixels of one channel, H·W.
    pub fn pixels(&self) -> usize {
        self.height * self.width
    }

    /// The opening convolution, c_in → c channels over H × W: the k_h × k_w convolution of
    /// the input images, or with a [`Transition`] the 1×1 convolution of the pooled (or not)
    /// previous state.
    pub fn opening(&self) -> crate::conv::Conv2d {
        let (kernel_h, kernel_w) = match self.transition {
            None => (self.kernel_h, self.kernel_w),
            Some(_) => (1, 1),
        };
        crate::conv::Conv2d {
            in_channels: self.in_channels,
            out_channels: self.channels,
            height: self.height,
            width: self.width,
            kernel_h,
            kernel_w,
        }
    }

    /// The hidden layers' convolution, c → c channels, k_h × k_w kernels.
    pub fn hidden(&self) -> crate::conv::Conv2d {
        crate::conv::Conv2d {
            in_channels: self.channels,
            out_channels: self.channels,
            height: self.height,
            width: self.width,
            kernel_h: self.kernel_h,
            kernel_w: self.kernel_w,
        }
    }

    /// Values of one input example: c_in·H·W, or c_in·H_in·W_in with a [`Transition`].
    pub fn input_len(&self) -> usize {
        match self.transition {
            None => self.in_channels * self.pixels(),
            Some(t) => self.in_channels * t.in_height * t.in_width,
        }
    }

    /// Checks the sizes of a [`Transition`]: with pooling, the pooled input size
    /// ([`crate::conv::pooled_size`]) is H × W; without, the input size is H × W. Always Ok
    /// without a transition.
    pub fn check(&self) -> Result<(), String> {
        let Some(t) = self.transition else {
            return Ok(());
        };
        let got = match t.pool {
            Some(_) => crate::conv::pooled_size(t.in_height, t.in_width),
            None => (t.in_height, t.in_width),
        };
        if got == (self.height, self.width) {
            return Ok(());
        }
        Err(match t.pool {
            Some(_) => {
                let (wh, ww) = crate::conv::pool_window(t.in_width);
                format!(
                    "{wh}×{ww} pooling of {}×{} inputs gives {}×{} images, not the block's {}×{}",
                    t.in_height, t.in_width, got.0, got.1, self.height, self.width
                )
            }
            None => format!(
                "inputs of {}×{} without pooling do not match the block's {}×{} images",
                t.in_height, t.in_width, self.height, self.width
            ),
        })
    }

    /// Features the classifier reads: c·H·W (flatten) or c (global average).
    pub fn features(&self) -> usize {
        match self.readout {
            Readout::Flatten => self.channels * self.pixels(),
            Readout::GlobalAverage => self.channels,
        }
    }
}

impl std::fmt::Display for ConvShape {
    /// `C_in → c channels of H×W, k_h×k_w kernels, <read-out> read-out`; with a transition
    /// `C_in → c channels of H×W after 2×2 average pooling of H_in×W_in, 1×1 opening, …`
    /// (`2×1 max pooling` in 1-D, `without pooling` when there is none). The alternate form
    /// `{:#}` leaves the read-out out (a block of a chain that is not the last has none).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} → {} channels of {}×{}",
            self.in_channels, self.channels, self.height, self.width
        )?;
        if let Some(t) = self.transition {
            match t.pool {
                Some(kind) => {
                    let (wh, ww) = crate::conv::pool_window(t.in_width);
                    let name = match kind {
                        crate::conv::Pool::Average => "average",
                        crate::conv::Pool::Max => "max",
                    };
                    write!(
                        f,
                        " after {wh}×{ww} {name} pooling of {}×{}",
                        t.in_height, t.in_width
                    )?;
                }
                None => write!(f, " without pooling")?,
            }
            write!(f, ", 1×1 opening")?;
        }
        write!(f, ", {}×{} kernels", self.kernel_h, self.kernel_w)?;
        if !f.alternate() {
            write!(f, ", {} read-out", self.readout)?;
        }
        Ok(())
    }
}

/// Sizes of the network: input dimension, width, classes and hidden layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Input features per example, d_in (c_in·H·W for images).
    pub input: usize,
    /// Values of the hidden state per example: the width w of a dense network, c·H·W of a
    /// convolutional one.
    pub width: usize,
    /// Number of classes (outputs) C. C = 0 makes the network an inner block of a chain of
    /// ODE blocks ([`crate::Chain`]): its classifier block is empty (W_c is 0 × F, b_c has
    /// no entries), it has no loss of its own, and its output is its last state U_N, the
    /// input of the next block.
    pub classes: usize,
    /// Number of hidden layers (time steps) N.
    pub layers: usize,
    /// The opening layer kind.
    pub opening: Opening,
    /// The closing layer kind.
    pub closing: Closing,
    /// Whether θ ends with a learnable time scale s, which multiplies every step:
    /// U_{n+1} = U_n + s·h σ(K_n U_n + b_n 1ᵀ) (so the ODE runs to s·T).
    pub time_scale: bool,
    /// The image structure of a convolutional network; `None` for a dense one.
    pub conv: Option<ConvShape>,
}

impl Shape {
    /// A shape with the `activate` opening, the `affine` closing and a fixed time scale.
    pub fn dense(input: usize, width: usize, classes: usize, layers: usize) -> Self {
        Shape {
            input,
            width,
            classes,
            layers,
            opening: Opening::Activate,
            closing: Closing::Affine,
            time_scale: false,
            conv: None,
        }
    }

    /// A convolutional shape: images of `conv`, `classes` outputs, `layers` hidden layers,
    /// the `activate` opening and the `affine` closing.
    pub fn convolutional(conv: ConvShape, classes: usize, layers: usize) -> Self {
        Shape {
            input: conv.input_len(),
            width: conv.channels * conv.pixels(),
            conv: Some(conv),
            ..Shape::dense(0, 0, classes, layers)
        }
    }

    /// Length of the opening weight: w·d_in (dense) or c·c_in·k_h·k_w (convolutional).
    pub fn opening_weight_len(&self) -> usize {
        match self.conv {
            None => self.width * self.input,
            Some(c) => c.opening().weight_len(),
        }
    }

    /// Length of a hidden layer's weight K_n: w² or c²·k_h·k_w.
    pub fn layer_weight_len(&self) -> usize {
        match self.conv {
            None => self.width * self.width,
            Some(c) => c.hidden().weight_len(),
        }
    }

    /// Length of a bias b_n (and b_in): w or c.
    pub fn bias_len(&self) -> usize {
        match self.conv {
            None => self.width,
            Some(c) => c.channels,
        }
    }

    /// Features the classifier reads: w, or [`ConvShape::features`].
    pub fn features(&self) -> usize {
        match self.conv {
            None => self.width,
            Some(c) => c.features(),
        }
    }

    /// The fan-in of the opening, a hidden layer and the classifier (for initial weights):
    /// d_in, w, w for a dense network; c_in·k_h·k_w, c·k_h·k_w, F for a convolutional one
    /// (c_in for the 1×1 opening of a [`Transition`]).
    pub fn fan_in(&self) -> [usize; 3] {
        match self.conv {
            None => [self.input, self.width, self.width],
            Some(c) => [
                c.opening().in_channels * c.opening().kernel_h * c.opening().kernel_w,
                c.channels * c.kernel_h * c.kernel_w,
                c.features(),
            ],
        }
    }
}

/// The ranges of each block in θ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub shape: Shape,
    /// W_in, w × d_in (or the opening kernel K_in).
    pub open_weight: Range<usize>,
    /// b_in, w (or c).
    pub open_bias: Range<usize>,
    /// Start of the hidden controls: layer n starts at `hidden_start + n·layer_len`.
    pub hidden_start: usize,
    /// Parameters per hidden layer, w² + w (or c²·k_h·k_w + c).
    pub layer_len: usize,
    /// W_c, C × F (F = w for a dense network).
    pub class_weight: Range<usize>,
    /// b_c, C.
    pub class_bias: Range<usize>,
    /// The time scale s (one value, or empty when the time scale is fixed at 1).
    pub scale: Range<usize>,
    /// Total length of θ.
    pub len: usize,
}

impl Layout {
    pub fn new(shape: Shape) -> Self {
        let (c, n) = (shape.classes, shape.layers);
        let (open_len, open_bias_len) = match shape.opening {
            Opening::Activate => (shape.opening_weight_len(), shape.bias_len()),
            Opening::Replicate => (0, 0),
        };
        let open_weight = 0..open_len;
        let open_bias = open_len..open_len + open_bias_len;
        let hidden_start = open_bias.end;
        let layer_len = shape.layer_weight_len() + shape.bias_len();
        let class_start = hidden_start + n * layer_len;
        let (cw, cb) = match shape.closing {
            Closing::Affine => (c * shape.features(), c),
            Closing::Average => (0, 0),
        };
        let class_weight = class_start..class_start + cw;
        let class_bias = class_weight.end..class_weight.end + cb;
        let scale = class_bias.end..class_bias.end + usize::from(shape.time_scale);
        let len = scale.end;
        Layout {
            shape,
            open_weight,
            open_bias,
            hidden_start,
            layer_len,
            class_weight,
            class_bias,
            scale,
            len,
        }
    }

    /// The whole control θ_n = (K_n, b_n) of hidden layer n.
    pub fn layer(&self, n: usize) -> Range<usize> {
        let s = self.hidden_start + n * self.layer_len;
        s..s + self.layer_len
    }

    /// K_n, w × w (or c × c × k_h × k_w).
    pub fn layer_weight(&self, n: usize) -> Range<usize> {
        let s = self.hidden_start + n * self.layer_len;
        s..s + self.shape.layer_weight_len()
    }

    /// b_n, w (or c).
    pub fn layer_bias(&self, n: usize) -> Range<usize> {
        let r = self.layer(n);
        r.start + self.shape.layer_weight_len()..r.end
    }

    /// All hidden controls θ_0 … θ_{N−1}.
    pub fn hidden(&self) -> Range<usize> {
        self.hidden_start..self.class_weight.start
    }

    /// The opening block (W_in, b_in).
    pub fn opening(&self) -> Range<usize> {
        self.open_weight.start..self.open_bias.end
    }

    /// The classifier block (W_c, b_c).
    pub fn classifier(&self) -> Range<usize> {
        self.class_weight.start..self.class_bias.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_tile_the_vector() {
        let l = Layout::new(Shape::dense(2, 3, 4, 5));
        assert_eq!(l.open_weight, 0..6);
        assert_eq!(l.open_bias, 6..9);
        assert_eq!(l.layer(0), 9..21);
        assert_eq!(l.layer_weight(1), 21..30);
        assert_eq!(l.layer_bias(1), 30..33);
        assert_eq!(l.hidden(), 9..69);
        assert_eq!(l.class_weight, 69..81);
        assert_eq!(l.class_bias, 81..85);
        assert_eq!(l.scale, 85..85);
        assert_eq!(l.len, 85);
        let l = Layout::new(Shape {
            opening: Opening::Replicate,
            closing: Closing::Average,
            time_scale: true,
            ..Shape::dense(2, 3, 1, 5)
        });
        assert_eq!(l.opening(), 0..0);
        assert_eq!(l.hidden(), 0..60);
        assert_eq!(l.classifier(), 60..60);
        assert_eq!(l.scale, 60..61);
        assert_eq!(l.len, 61);
    }

    #[test]
    fn convolutional_blocks_tile_the_vector() {
        let conv = ConvShape {
            in_channels: 1,
            channels: 4,
            height: 6,
            width: 5,
            kernel_h: 3,
            kernel_w: 3,
            readout: Readout::GlobalAverage,
            transition: None,
        };
        let sh = Shape::convolutional(conv, 10, 2);
        assert_eq!((sh.input, sh.width), (30, 120));
        let l = Layout::new(sh);
        assert_eq!(l.open_weight, 0..36);
        assert_eq!(l.open_bias, 36..40);
        assert_eq!(l.layer_weight(0), 40..184);
        assert_eq!(l.layer_bias(0), 184..188);
        assert_eq!(l.layer(1), 188..336);
        assert_eq!(l.class_weight, 336..376);
        assert_eq!(l.class_bias, 376..386);
        let flat = Layout::new(Shape::convolutional(
            ConvShape {
                readout: Readout::Flatten,
                ..conv
            },
            10,
            2,
        ));
        assert_eq!(flat.class_weight.len(), 10 * 120);
    }
}

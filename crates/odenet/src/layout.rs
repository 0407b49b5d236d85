//! Where each parameter block sits in the flat parameter vector θ.
//!
//! θ = [ W_in (w × d_in), b_in (w) | K_0 (w × w), b_0 (w) | … | K_{N−1}, b_{N−1} | W_c (C × w), b_c (C) | s ]
//!
//! All matrices are column-major. With the `replicate` opening the opening block is empty,
//! with the `average` closing the classifier block is empty, and the time scale s is there
//! only when it is learnable ([`Shape::time_scale`]).

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
    /// Every output is the mean of the state: Z_k = (1/w) Σ_i U_N[i]; no parameters (the
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

/// Sizes of the network: input dimension, width, classes and hidden layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Input features per example, d_in.
    pub input: usize,
    /// Width of the hidden state, w.
    pub width: usize,
    /// Number of classes (outputs) C.
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
        }
    }
}

/// The ranges of each block in θ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub shape: Shape,
    /// W_in, w × d_in.
    pub open_weight: Range<usize>,
    /// b_in, w.
    pub open_bias: Range<usize>,
    /// Start of the hidden controls: layer n starts at `hidden_start + n·layer_len`.
    pub hidden_start: usize,
    /// Parameters per hidden layer, w² + w.
    pub layer_len: usize,
    /// W_c, C × w.
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
        let (w, d, c, n) = (shape.width, shape.input, shape.classes, shape.layers);
        let open_len = match shape.opening {
            Opening::Activate => w * d,
            Opening::Replicate => 0,
        };
        let open_bias_len = match shape.opening {
            Opening::Activate => w,
            Opening::Replicate => 0,
        };
        let open_weight = 0..open_len;
        let open_bias = open_len..open_len + open_bias_len;
        let hidden_start = open_bias.end;
        let layer_len = w * w + w;
        let class_start = hidden_start + n * layer_len;
        let (cw, cb) = match shape.closing {
            Closing::Affine => (c * w, c),
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

    /// K_n, w × w.
    pub fn layer_weight(&self, n: usize) -> Range<usize> {
        let s = self.hidden_start + n * self.layer_len;
        s..s + self.shape.width * self.shape.width
    }

    /// b_n, w.
    pub fn layer_bias(&self, n: usize) -> Range<usize> {
        let r = self.layer(n);
        r.start + self.shape.width * self.shape.width..r.end
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
}

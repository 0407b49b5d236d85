//! Where each parameter block sits in the flat parameter vector θ.
//!
//! θ = [ W_in (w × d_in), b_in (w) | K_0 (w × w), b_0 (w) | … | K_{N−1}, b_{N−1} | W_c (C × w), b_c (C) ]
//!
//! All matrices are column-major. With the `replicate` opening the opening block is empty.

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
        let class_weight = class_start..class_start + c * w;
        let class_bias = class_weight.end..class_weight.end + c;
        let len = class_bias.end;
        Layout {
            shape,
            open_weight,
            open_bias,
            hidden_start,
            layer_len,
            class_weight,
            class_bias,
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
        let l = Layout::new(Shape {
            input: 2,
            width: 3,
            classes: 4,
            layers: 5,
            opening: Opening::Activate,
        });
        assert_eq!(l.open_weight, 0..6);
        assert_eq!(l.open_bias, 6..9);
        assert_eq!(l.layer(0), 9..21);
        assert_eq!(l.layer_weight(1), 21..30);
        assert_eq!(l.layer_bias(1), 30..33);
        assert_eq!(l.hidden(), 9..69);
        assert_eq!(l.class_weight, 69..81);
        assert_eq!(l.class_bias, 81..85);
        assert_eq!(l.len, 85);
    }
}

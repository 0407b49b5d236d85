//! Pointwise activation functions σ and their derivatives σ'.

use std::fmt;
use std::str::FromStr;

/// Half-width η of the quadratic blend in [`Activation::SmoothRelu`].
pub const SMOOTH_RELU_ETA: f64 = 0.1;

/// The activation σ applied elementwise in the opening layer and in every hidden step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// σ(x) = tanh(x).
    Tanh,
    /// σ(x) = max(x, 0).
    Relu,
    /// σ(x) = x²/(4η) + x/2 + η/4 for |x| < η, max(x, 0) otherwise (η = 0.1):
    /// a C¹ ReLU whose derivative is continuous at the kink.
    SmoothRelu,
}

impl Activation {
    /// All activations, in the order the CLI lists them.
    pub const ALL: [Activation; 3] = [Activation::Tanh, Activation::Relu, Activation::SmoothRelu];

    /// σ(x).
    #[inline(always)]
    pub fn value(self, x: f64) -> f64 {
        match self {
            Activation::Tanh => x.tanh(),
            Activation::Relu => x.max(0.0),
            Activation::SmoothRelu => {
                // x²/(4η) + x/2 + η/4 = (x + η)²/(4η), exactly 0 at x = −η; written with
                // one clamp and one select so that it vectorizes.
                let eta = SMOOTH_RELU_ETA;
                let t = x.max(-eta) + eta;
                if x >= eta {
                    x
                } else {
                    t * t * (0.25 / eta)
                }
            }
        }
    }

    /// σ'(x). For ReLU the derivative at 0 is taken as 0.
    #[inline(always)]
    pub fn derivative(self, x: f64) -> f64 {
        match self {
            Activation::Tanh => {
                let t = x.tanh();
                1.0 - t * t
            }
            Activation::Relu => f64::from(u8::from(x > 0.0)),
            Activation::SmoothRelu => {
                // (x + η)/(2η) on (−η, η), 0 below, 1 above.
                let eta = SMOOTH_RELU_ETA;
                let t = x.max(-eta) + eta;
                if x >= eta {
                    1.0
                } else {
                    t * (0.5 / eta)
                }
            }
        }
    }

    /// The name used in configuration files.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Tanh => "tanh",
            Activation::Relu => "relu",
            Activation::SmoothRelu => "smoothrelu",
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Activation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "tanh" => Ok(Activation::Tanh),
            "relu" => Ok(Activation::Relu),
            "smoothrelu" | "smooth_relu" => Ok(Activation::SmoothRelu),
            _ => Err(format!(
                "unknown activation \"{s}\" (expected \"tanh\", \"relu\" or \"smoothrelu\")"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivative_matches_central_difference() {
        let eps = 1e-6;
        for act in Activation::ALL {
            for &x in &[-2.0, -0.3, -0.05, 0.02, 0.07, 0.4, 1.5] {
                let fd = (act.value(x + eps) - act.value(x - eps)) / (2.0 * eps);
                let d = act.derivative(x);
                assert!((fd - d).abs() < 1e-8, "{act} at {x}: fd {fd} vs {d}");
            }
        }
    }

    #[test]
    fn smooth_relu_is_continuous_at_the_blend_edges() {
        let a = Activation::SmoothRelu;
        let eta = SMOOTH_RELU_ETA;
        for &edge in &[-eta, eta] {
            let l = a.value(edge - 1e-12);
            let r = a.value(edge + 1e-12);
            assert!((l - r).abs() < 1e-11);
            let dl = a.derivative(edge - 1e-12);
            let dr = a.derivative(edge + 1e-12);
            assert!((dl - dr).abs() < 1e-10);
        }
    }

    #[test]
    fn names_round_trip() {
        for act in Activation::ALL {
            assert_eq!(act.name().parse::<Activation>().unwrap(), act);
        }
        assert!("sigmoid".parse::<Activation>().is_err());
    }
}

//! Nested iteration (multilevel initialization) as a plan: the networks trained in turn, each
//! `nested.refine` times deeper than the one before with T fixed, the last one with
//! `network.layers` layers; each level starts from the previous one's parameters. A network
//! of several ODE blocks refines every block by the same factor.

use crate::config::{Config, Interp};

/// One level of the plan: what its training run differs in from the configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Level {
    /// ℓ = 0 (the shallowest) … L − 1.
    pub level: usize,
    /// Hidden layers N_ℓ = network.layers / refine^(L − 1 − ℓ).
    pub layers: usize,
    /// The later ODE blocks' hidden layers, each `network.blocks[i].layers` / refine^(L − 1 − ℓ)
    /// (empty for a network of one block).
    pub blocks: Vec<usize>,
    /// Iteration budget: `nested.max_iter[ℓ]`, else `optimizer.max_iter`.
    pub max_iter: usize,
    /// MGRIT levels: `nested.mgrit_levels[ℓ]`, else `mgrit.max_levels`.
    pub mgrit_levels: usize,
    /// Spline coefficient sets M_ℓ (None for per-layer controls): controls.count, and with
    /// knot refinement M_ℓ = 2 M_{ℓ−1} − d (midpoint insertion into every knot interval).
    pub spline_count: Option<usize>,
    /// Accuracy at which the level stops early: `nested.target_acc[ℓ]` (compared with the
    /// accuracy nested.target_measure names).
    pub target_acc: Option<f64>,
}

/// The levels of a run, shallowest first (one level without nested iteration).
#[derive(Clone, Debug, PartialEq)]
pub struct NestedPlan {
    pub levels: Vec<Level>,
}

impl NestedPlan {
    /// The plan of a validated configuration (network.layers and every block's layers are
    /// divisible by refine^(levels − 1); the per-level lists are empty or have one entry per
    /// level).
    pub fn new(config: &Config) -> Self {
        let n = &config.nested;
        let c = &config.controls;
        let knots = config.interp() == Interp::Knots;
        let mut count = c.count;
        let levels = (0..n.levels)
            .map(|level| {
                if knots && level > 0 {
                    count = 2 * count - c.degree;
                }
                let factor = n.refine.pow((n.levels - 1 - level) as u32);
                Level {
                    level,
                    layers: config.network.layers / factor,
                    blocks: config
                        .network
                        .blocks
                        .iter()
                        .map(|b| b.layers / factor)
                        .collect(),
                    max_iter: n
                        .max_iter
                        .get(level)
                        .copied()
                        .unwrap_or(config.optimizer.max_iter),
                    mgrit_levels: n
                        .mgrit_levels
                        .get(level)
                        .copied()
                        .unwrap_or(config.mgrit.max_levels),
                    spline_count: config.is_spline().then_some(count),
                    target_acc: n.target_acc.get(level).copied(),
                }
            })
            .collect();
        NestedPlan { levels }
    }

    /// Whether more than one network is trained.
    pub fn is_nested(&self) -> bool {
        self.levels.len() > 1
    }

    /// The configuration of level ℓ: `base` with the level's depths (of every ODE block),
    /// budget, MGRIT levels and spline coefficient count.
    pub fn config(&self, base: &Config, level: usize) -> Config {
        let l = &self.levels[level];
        let mut cfg = base.clone();
        cfg.network.layers = l.layers;
        for (b, &layers) in cfg.network.blocks.iter_mut().zip(&l.blocks) {
            b.layers = layers;
        }
        cfg.optimizer.max_iter = l.max_iter;
        cfg.mgrit.max_levels = l.mgrit_levels;
        if let Some(m) = l.spline_count {
            cfg.controls.count = m;
        }
        cfg
    }

    /// The name prefix of level ℓ's periodic checkpoints: `ckpt_` or, nested, `ckpt_Lℓ_`.
    pub fn checkpoint_prefix(&self, level: usize) -> String {
        if self.is_nested() {
            format!("ckpt_L{level}_")
        } else {
            "ckpt_".to_string()
        }
    }

    /// The checkpoint that ends level ℓ of a nested run (`levelℓ.h5`); None without nesting.
    pub fn level_file(&self, level: usize) -> Option<String> {
        self.is_nested().then(|| format!("level{level}.h5"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    fn plan(sets: &[&str]) -> (Config, NestedPlan) {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        let c = load_str("", "test", &sets).unwrap();
        let p = NestedPlan::new(&c);
        (c, p)
    }

    #[test]
    fn without_nesting_the_plan_is_the_configuration() {
        let (c, p) = plan(&[]);
        assert_eq!(
            p.levels,
            vec![Level {
                level: 0,
                layers: 30,
                blocks: Vec::new(),
                max_iter: 130,
                mgrit_levels: 1,
                spline_count: None,
                target_acc: None,
            }]
        );
        assert!(!p.is_nested());
        assert_eq!(p.config(&c, 0), c);
        assert_eq!(p.checkpoint_prefix(0), "ckpt_");
        assert_eq!(p.level_file(0), None);
    }

    #[test]
    fn levels_refine_the_depth_and_take_their_own_budgets() {
        let (c, p) = plan(&[
            "network.layers=32",
            "nested.levels=3",
            "nested.max_iter=[40, 20, 10]",
            "nested.mgrit_levels=[1, 2, 3]",
            "nested.target_acc=[0.5, 0.75, 1]",
        ]);
        let got: Vec<_> = p
            .levels
            .iter()
            .map(|l| (l.level, l.layers, l.max_iter, l.mgrit_levels, l.target_acc))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 8, 40, 1, Some(0.5)),
                (1, 16, 20, 2, Some(0.75)),
                (2, 32, 10, 3, Some(1.0)),
            ]
        );
        let c1 = p.config(&c, 1);
        assert_eq!(
            (
                c1.network.layers,
                c1.optimizer.max_iter,
                c1.mgrit.max_levels
            ),
            (16, 20, 2)
        );
        assert_eq!(c1.controls, c.controls);
        assert_eq!(p.checkpoint_prefix(2), "ckpt_L2_");
        assert_eq!(p.level_file(1).as_deref(), Some("level1.h5"));
        // Without lists every level takes the run's budget.
        let (_, p) = plan(&["nested.levels=2", "nested.refine=3", "optimizer.max_iter=7"]);
        let got: Vec<_> = p.levels.iter().map(|l| (l.layers, l.max_iter)).collect();
        assert_eq!(got, vec![(10, 7), (30, 7)]);
    }

    #[test]
    fn knot_refinement_grows_the_spline_count_per_level() {
        let (c, p) = plan(&[
            "controls.kind=spline",
            "nested.levels=3",
            "network.layers=32",
            "nested.interp=knots",
        ]);
        let counts: Vec<_> = p.levels.iter().map(|l| l.spline_count).collect();
        // M → 2M − d with M = 8, d = 3.
        assert_eq!(counts, vec![Some(8), Some(13), Some(23)]);
        assert_eq!(p.config(&c, 2).controls.count, 23);
        // Keeping the coefficients keeps the count.
        let (_, p) = plan(&["controls.kind=spline", "nested.levels=2"]);
        let counts: Vec<_> = p.levels.iter().map(|l| l.spline_count).collect();
        assert_eq!(counts, vec![Some(8), Some(8)]);
    }

    #[test]
    fn every_ode_block_is_refined() {
        let blocks = "[network]\nkind = \"conv\"\nlayers = 8\n\
                      [[network.blocks]]\nlayers = 4\n[[network.blocks]]\nlayers = 12\n";
        let c = load_str(blocks, "test", &["nested.levels=3".to_string()]).unwrap();
        let p = NestedPlan::new(&c);
        let got: Vec<_> = p
            .levels
            .iter()
            .map(|l| (l.layers, l.blocks.clone()))
            .collect();
        assert_eq!(
            got,
            vec![(2, vec![1, 3]), (4, vec![2, 6]), (8, vec![4, 12])]
        );
        let c1 = p.config(&c, 1);
        let depths: Vec<_> = c1.network.blocks.iter().map(|b| b.layers).collect();
        assert_eq!((c1.network.layers, depths), (4, vec![2, 6]));
        assert_eq!(p.config(&c, 2), c);
    }
}

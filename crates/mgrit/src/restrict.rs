//! Restriction from level l to level l+1: injection of the C-point values, the C-point
//! residual, and the FAS right-hand side of the coarse level.
//!
//!   v_I = u_{I·cf},   r_I = g_{I·cf} − (u_{I·cf} − Φ^l(u_{I·cf−1})),
//!   g^{l+1}_I = r_I + v_I − Φ^{l+1}_I(v_{I−1})  (g^{l+1}_0 = v_0),   u^{l+1} = v.
//!
//! v is not stored apart: it is u^{l+1} until the coarse level is solved, and it stays equal
//! to the fine C-point values, which nothing changes before the correction (see
//! `cycle::correct`).

use crate::comm::Comm;
use crate::level::{tag, Ctx, Level, Phase};
use crate::App;

/// Restricts `fine` (level l) onto `coarse` (level l+1). Returns ‖r_I‖² for each owned
/// coarse point I ≥ 1, in order (for the residual norm).
///
/// With `injection_only` (a skipped first down-cycle) only v is formed and the coarse level
/// gets a zero right-hand side: it becomes the coarse initial-value problem.
pub(crate) fn restrict<A: App, C: Comm>(
    ctx: &mut Ctx<A, C>,
    l: usize,
    fine: &mut Level<A::State>,
    coarse: &mut Level<A::State>,
    injection_only: bool,
) -> Vec<f64> {
    let cf = fine.shape.cf;
    // u^{l+1}_I = v_I = u_{I·cf}: injection into the coarse level's storage.
    {
        let count = coarse.range.len();
        let start = coarse.range.start;
        if coarse.u.len() != count {
            coarse.u = (0..count)
                .map(|k| fine.u[fine.at((start + k) * cf)].clone())
                .collect();
        } else {
            for k in 0..count {
                ctx.app
                    .copy(&fine.u[fine.at((start + k) * cf)], &mut coarse.u[k]);
            }
        }
    }
    if injection_only {
        coarse.g = None;
        return Vec::new();
    }
    let v = &coarse.u;
    let shape = fine.shape.clone();
    let (lo, hi) = (fine.range.start, fine.range.end);
    let tu = tag(l, Phase::RestrictU);
    // The F-point before my first C-point may live on the left neighbour.
    if lo < hi && hi < shape.points() && shape.is_cpoint(hi) {
        ctx.send_state(
            fine.right.expect("a right neighbour owns point hi"),
            tu,
            &fine.u[fine.at(hi - 1)],
        );
    }
    let left = if lo < hi && lo > 0 && shape.is_cpoint(lo) {
        Some(ctx.recv_state(fine.left.expect("a left neighbour owns point lo−1"), tu))
    } else {
        None
    };
    // g^{l+1}_I starts as the residual r_I (g_0 = v_0).
    let mut g = coarse
        .g
        .take()
        .filter(|g| g.len() == v.len())
        .unwrap_or_else(|| v.clone());
    let mut norms = Vec::with_capacity(v.len());
    let mut pool = std::mem::take(&mut fine.scratch);
    for (k, gk) in g.iter_mut().enumerate() {
        let c = (coarse.range.start + k) * cf;
        let i = fine.at(c);
        if c == 0 {
            ctx.app.copy(&v[k], gk);
            continue;
        }
        let prev = if c == lo {
            left.as_ref().expect("received")
        } else {
            &fine.u[i - 1]
        };
        ctx.step_from(l, &shape, c, prev, gk);
        if let Some(fg) = &fine.g {
            ctx.app.sum(1.0, &fg[i], 1.0, gk);
        }
        ctx.app.sum(-1.0, &fine.u[i], 1.0, gk);
        ctx.app.norm_parts(gk, &mut norms);
    }
    ctx.comm.wait_sends();

    // Coarse right-hand side: needs v_{I−1} from the coarse left neighbour.
    let tv = tag(l, Phase::RestrictV);
    let (clo, chi) = (coarse.range.start, coarse.range.end);
    if clo < chi {
        if let Some(right) = coarse.right {
            ctx.send_state(right, tv, v.last().expect("non-empty"));
        }
    }
    let vleft = if clo < chi && clo > 0 {
        Some(
            ctx.recv_state(
                coarse
                    .left
                    .expect("a coarse left neighbour owns point clo−1"),
                tv,
            ),
        )
    } else {
        None
    };
    let cshape = coarse.shape.clone();
    let mut tmp: Option<A::State> = pool.pop();
    for (k, gk) in g.iter_mut().enumerate() {
        let i = clo + k;
        if i == 0 {
            continue;
        }
        let vprev = if k == 0 {
            vleft.as_ref().expect("received")
        } else {
            &v[k - 1]
        };
        let t = tmp.get_or_insert_with(|| vprev.clone());
        ctx.step_from(l + 1, &cshape, i, vprev, t);
        ctx.app.sum(1.0, &v[k], 1.0, gk);
        ctx.app.sum(-1.0, t, 1.0, gk);
    }
    if let Some(t) = tmp {
        pool.push(t);
    }
    fine.scratch = pool;
    ctx.comm.wait_sends();
    coarse.g = Some(g);
    norms
}

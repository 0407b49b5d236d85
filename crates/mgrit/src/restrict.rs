//! Restriction from level l to level l+1: injection of the C-point values, the C-point
//! residual, and the FAS right-hand side of the coarse level.
//!
//!   v_I = u_{I·cf},   r_I = g_{I·cf} − (u_{I·cf} − Φ^l(u_{I·cf−1})),
//!   g^{l+1}_I = r_I + v_I − Φ^{l+1}_I(v_{I−1})  (g^{l+1}_0 = v_0),   u^{l+1} = v.

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
    if injection_only {
        let cf = fine.shape.cf;
        let v: Vec<A::State> = coarse.range.clone().map(|i| fine.u[fine.at(i * cf)].clone()).collect();
        coarse.u = v.clone();
        coarse.v = v;
        coarse.g = None;
        return Vec::new();
    }
    let shape = fine.shape.clone();
    let (lo, hi) = (fine.range.start, fine.range.end);
    let tu = tag(l, Phase::RestrictU);
    // The F-point before my first C-point may live on the left neighbour.
    if lo < hi && hi < shape.points() && shape.is_cpoint(hi) {
        ctx.send_state(fine.right.expect("a right neighbour owns point hi"), tu, &fine.u[fine.at(hi - 1)]);
    }
    let left = if lo < hi && lo > 0 && shape.is_cpoint(lo) {
        Some(ctx.recv_state(fine.left.expect("a left neighbour owns point lo−1"), tu))
    } else {
        None
    };
    let mut v = Vec::with_capacity(coarse.range.len());
    let mut r = Vec::with_capacity(coarse.range.len());
    let mut norms = Vec::with_capacity(coarse.range.len());
    let mut c = shape.next_cpoint(lo);
    while c < hi {
        let k = fine.at(c);
        v.push(fine.u[k].clone());
        if c >= 1 {
            let prev = if c == lo { left.as_ref().expect("received") } else { &fine.u[k - 1] };
            let mut res = prev.clone();
            ctx.step(l, &shape, c, &mut res);
            if let Some(g) = &fine.g {
                ctx.app.sum(1.0, &g[k], 1.0, &mut res);
            }
            ctx.app.sum(-1.0, &fine.u[k], 1.0, &mut res);
            let n = ctx.app.norm(&res);
            norms.push(n * n);
            r.push(Some(res));
        } else {
            r.push(None);
        }
        c += shape.cf;
    }
    debug_assert_eq!(v.len(), coarse.range.len(), "coarse points live with their fine C-points");
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
        Some(ctx.recv_state(coarse.left.expect("a coarse left neighbour owns point clo−1"), tv))
    } else {
        None
    };
    let cshape = coarse.shape.clone();
    let mut g = Vec::with_capacity(v.len());
    for (k, (res, vi)) in r.into_iter().zip(&v).enumerate() {
        let i = clo + k;
        match res {
            None => g.push(vi.clone()), // g_0 = v_0
            Some(mut gi) => {
                let vprev = if k == 0 { vleft.as_ref().expect("received") } else { &v[k - 1] };
                let mut coarse_step = vprev.clone();
                ctx.step(l + 1, &cshape, i, &mut coarse_step);
                ctx.app.sum(1.0, vi, 1.0, &mut gi);
                ctx.app.sum(-1.0, &coarse_step, 1.0, &mut gi);
                g.push(gi);
            }
        }
    }
    ctx.comm.wait_sends();
    coarse.u = v.clone();
    coarse.v = v;
    coarse.g = Some(g);
    norms
}

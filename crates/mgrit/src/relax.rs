//! Relaxation on one level: F-relaxation propagates from each C-point through the F-points
//! after it; C-relaxation updates each C-point from the F-point before it.
//!
//! F-points whose C-point lives on the left neighbour need that neighbour's last value after
//! its own F-relaxation; a rank therefore relaxes its trailing interval first and sends its
//! last value at once, so the neighbour waits for at most one interval. Receives are posted
//! before the local work that does not need them, so a large boundary state travels while
//! that work runs; the values computed, and their order, are the same either way.

use crate::comm::Comm;
use crate::level::{tag, Ctx, Level, Phase};
use crate::App;

/// F-relaxation: u_i ← Φ(u_{i−1}) + g_i for every F-point i, in order within each interval.
pub(crate) fn f_relax<A: App, C: Comm>(ctx: &mut Ctx<A, C>, l: usize, lvl: &mut Level<A::State>) {
    let (lo, hi) = (lvl.range.start, lvl.range.end);
    if lo == hi {
        return;
    }
    let shape = lvl.shape.clone();
    let t = tag(l, Phase::FRelax);
    let need_left = lo > 0 && !shape.is_cpoint(lo);
    let send_right = hi < shape.points() && !shape.is_cpoint(hi);
    let first_c = shape.next_cpoint(lo);
    let left = || lvl.left.expect("a left neighbour owns point lo−1");
    if first_c < hi {
        let posted = need_left.then(|| ctx.post_state(left(), t, &lvl.u[0]));
        let last_c = shape.prev_cpoint(hi - 1);
        // Trailing interval first, then the value the right neighbour waits for.
        for i in last_c + 1..hi {
            ctx.propagate(l, lvl, i, None);
        }
        if send_right {
            ctx.send_state(
                lvl.right.expect("a right neighbour owns point hi"),
                t,
                &lvl.u[lvl.at(hi - 1)],
            );
        }
        // The intervals in between.
        let mut c = first_c;
        while c < last_c {
            for i in c + 1..c + shape.cf {
                ctx.propagate(l, lvl, i, None);
            }
            c += shape.cf;
        }
        // Leading F-points, continuing the left neighbour's interval.
        if let Some(posted) = posted {
            let prev = ctx.wait_state(posted);
            ctx.propagate(l, lvl, lo, Some(&prev));
            for i in lo + 1..first_c {
                ctx.propagate(l, lvl, i, None);
            }
        }
    } else {
        // Only F-points here: the interval runs through from the left.
        let prev = ctx.recv_state(left(), t);
        ctx.propagate(l, lvl, lo, Some(&prev));
        for i in lo + 1..hi {
            ctx.propagate(l, lvl, i, None);
        }
        if send_right {
            ctx.send_state(
                lvl.right.expect("a right neighbour owns point hi"),
                t,
                &lvl.u[lvl.at(hi - 1)],
            );
        }
    }
    ctx.comm.wait_sends();
}

/// C-relaxation: u_c ← (1 − ω) u_c + ω (Φ(u_{c−1}) + g_c) for every C-point c ≥ 1.
pub(crate) fn c_relax<A: App, C: Comm>(ctx: &mut Ctx<A, C>, l: usize, lvl: &mut Level<A::State>) {
    let (lo, hi) = (lvl.range.start, lvl.range.end);
    if lo == hi {
        return;
    }
    let shape = lvl.shape.clone();
    let t = tag(l, Phase::CRelax);
    // My first point is a C-point whose F-point lives on the left: post its receive first
    // and update that C-point last (C-points are updated independently of each other).
    let mut posted = (lo > 0 && shape.is_cpoint(lo)).then(|| {
        let left = lvl.left.expect("a left neighbour owns point lo−1");
        ctx.post_state(left, t, &lvl.u[0])
    });
    if hi < shape.points() && shape.is_cpoint(hi) {
        ctx.send_state(
            lvl.right.expect("a right neighbour owns point hi"),
            t,
            &lvl.u[lvl.at(hi - 1)],
        );
    }
    let omega = ctx.opts.c_weight;
    let start = shape.next_cpoint(lo.max(1));
    let mut pool = std::mem::take(&mut lvl.scratch);
    let owned: Vec<usize> = (start..hi).step_by(shape.cf).collect();
    let (remote_first, local) = match owned.split_first() {
        Some((&c, rest)) if c == lo && posted.is_some() => (Some(c), rest),
        _ => (None, &owned[..]),
    };
    let mut left = None;
    for &c in local.iter().chain(remote_first.iter()) {
        if Some(c) == remote_first {
            left = Some(ctx.wait_state(posted.take().expect("posted")));
        }
        let k = lvl.at(c);
        let prev = if c == lo {
            left.as_ref().expect("received")
        } else {
            &lvl.u[k - 1]
        };
        // w = Φ(u_{c−1}) + g_c, computed into a scratch state.
        let mut w = match pool.pop() {
            Some(s) => s,
            None => prev.clone(),
        };
        ctx.step_from(l, &shape, c, prev, &mut w);
        if let Some(g) = &lvl.g {
            ctx.app.sum(1.0, &g[k], 1.0, &mut w);
        }
        if omega == 1.0 {
            // u_c ← w; the old u_c becomes the next scratch state.
            std::mem::swap(&mut lvl.u[k], &mut w);
        } else {
            ctx.app.sum(omega, &w, 1.0 - omega, &mut lvl.u[k]);
        }
        pool.push(w);
    }
    lvl.scratch = pool;
    ctx.comm.wait_sends();
}

/// The relaxation of a down-cycle: F, then `nrelax` × (C, F).
pub(crate) fn relax<A: App, C: Comm>(ctx: &mut Ctx<A, C>, l: usize, lvl: &mut Level<A::State>) {
    let nrelax = ctx.opts.nrelax[l.min(ctx.opts.nrelax.len() - 1)];
    f_relax(ctx, l, lvl);
    for _ in 0..nrelax {
        c_relax(ctx, l, lvl);
        f_relax(ctx, l, lvl);
    }
}

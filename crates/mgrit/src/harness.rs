//! Checks of an application's implementation, in the spirit of XBraid's `braid_Test*`:
//! run them on a new application before trusting a solve.

use crate::comm::Comm;
use crate::{App, StepInfo};

/// Outcome of the checks: a line per check, and whether all passed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub lines: Vec<String>,
    pub passed: bool,
}

impl Report {
    fn check(&mut self, ok: bool, what: String) {
        self.lines
            .push(format!("{} {what}", if ok { "pass" } else { "FAIL" }));
        self.passed &= ok;
    }
}

/// Checks, for the state `app.init(index)` and relative tolerance `tol`:
/// - pack/unpack round-trips exactly (‖x − unpack(pack(x))‖ = 0);
/// - norm is ≥ 0, zero on x − x, and homogeneous: ‖αx‖ = |α|‖x‖;
/// - sum: 2x − x = x, and 0·x + 1·y = y;
/// - a step computed on one rank equals the same step computed on another rank from the
///   packed state (with one rank: on an unpacked copy). Collective over `comm`.
pub fn check_app<A: App, C: Comm>(
    app: &mut A,
    comm: &C,
    index: usize,
    info: &StepInfo,
    tol: f64,
) -> Report {
    let mut rep = Report {
        lines: Vec::new(),
        passed: true,
    };
    let x = app.init(index);
    let nx = app.norm(&x);
    let mut buf = Vec::new();
    app.pack(&x, &mut buf);
    let mut y = app.unpack(&buf);
    app.sum(-1.0, &x, 1.0, &mut y);
    rep.check(
        app.norm(&y) == 0.0,
        format!("pack/unpack round trip (difference {:e})", app.norm(&y)),
    );

    let mut z = x.clone();
    app.sum(-1.0, &x, 1.0, &mut z);
    rep.check(
        nx >= 0.0 && app.norm(&z) == 0.0,
        format!("norm ≥ 0 and ‖x − x‖ = 0 (‖x‖ = {nx:e})"),
    );
    let mut s = x.clone();
    app.sum(-3.0, &x, 0.0, &mut s);
    let err = (app.norm(&s) - 3.0 * nx).abs();
    rep.check(
        err <= tol * nx.max(1e-300),
        format!("‖−3x‖ = 3‖x‖ (error {err:e})"),
    );
    let mut t = x.clone();
    app.sum(1.0, &x, 1.0, &mut t); // 2x
    app.sum(-1.0, &x, 1.0, &mut t); // x
    app.sum(-1.0, &x, 1.0, &mut t); // 0
    let err = app.norm(&t);
    rep.check(
        err <= tol * nx.max(1e-300),
        format!("2x − x − x = 0 (norm {err:e})"),
    );

    // A step here and a step on the neighbour rank from the packed state.
    let mut here = x.clone();
    app.step(&mut here, info);
    let there = if comm.size() == 1 {
        let mut w = app.unpack(&buf);
        app.step(&mut w, info);
        w
    } else {
        let tag = 999;
        match comm.rank() {
            0 => {
                comm.send(1, tag, buf.clone());
                comm.wait_sends();
                app.unpack(&comm.recv(1, tag))
            }
            1 => {
                let mut w = app.unpack(&comm.recv(0, tag));
                app.step(&mut w, info);
                let mut out = Vec::new();
                app.pack(&w, &mut out);
                comm.send(0, tag, out);
                comm.wait_sends();
                w
            }
            _ => here.clone(),
        }
    };
    let mut d = there;
    app.sum(-1.0, &here, 1.0, &mut d);
    let err = app.norm(&d);
    rep.check(
        err == 0.0,
        format!(
            "step on rank 0 = step on rank {} (difference {err:e})",
            comm.size().min(2) - 1
        ),
    );
    rep
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problems::ModelProblem;
    use crate::SerialComm;

    #[test]
    fn model_problems_pass_and_a_broken_pack_fails() {
        let info = StepInfo {
            level: 0,
            from: 0,
            to: 1,
            t_from: 0.0,
            t_to: 0.1,
            fine_steps: 1,
            dt: 0.1,
        };
        for mut p in [
            ModelProblem::scalar(-1.0),
            ModelProblem::linear(4),
            ModelProblem::cubic(),
        ] {
            let r = check_app(&mut p, &SerialComm, 0, &info, 1e-14);
            assert!(r.passed, "{:?}", r.lines);
        }

        struct Lossy(ModelProblem);
        impl App for Lossy {
            type State = Vec<f64>;
            fn step(&mut self, u: &mut Vec<f64>, i: &StepInfo) {
                self.0.step(u, i)
            }
            fn init(&mut self, i: usize) -> Vec<f64> {
                self.0.init(i)
            }
            fn sum(&self, a: f64, x: &Vec<f64>, b: f64, y: &mut Vec<f64>) {
                self.0.sum(a, x, b, y)
            }
            fn norm(&self, x: &Vec<f64>) -> f64 {
                self.0.norm(x)
            }
            fn pack(&self, x: &Vec<f64>, buf: &mut Vec<f64>) {
                buf.extend(x.iter().map(|v| *v as f32 as f64))
            }
            fn unpack(&self, buf: &[f64]) -> Vec<f64> {
                buf.to_vec()
            }
        }
        let mut p = Lossy(ModelProblem::new(
            crate::problems::Rhs::Cubic,
            vec![0.1, 0.3],
        ));
        let r = check_app(&mut p, &SerialComm, 0, &info, 1e-14);
        assert!(!r.passed);
        assert!(r.lines[0].starts_with("FAIL pack/unpack"), "{:?}", r.lines);
    }
}

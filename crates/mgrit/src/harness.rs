//! Checks of an application's implementation, in the spirit of XBraid's `braid_Test*`:
//! run them on a new application before trusting a solve.
//!
//! Every check has three outcomes. It **passes** when the identity it tests holds; it
//! **fails** when the identity is violated; it is **inconclusive** when the identity holds
//! but the test could not have told a right implementation from a wrong one — chiefly on a
//! state of norm zero (0 = 0 proves nothing about `pack`, `sum` or `step`), or a step whose
//! result is zero. A [`Report`] has passed when nothing failed; ask
//! [`Report::inconclusive`] whether it also proved something everywhere.
//!
//! The checks are collective: every rank of the communicator calls [`check_app`] or
//! [`check_state`] (possibly with a state and step of its own), and every rank's step is
//! recomputed on another rank (the next one around a ring) from the packed state, as MGRIT
//! does when a point's predecessor lives on a neighbour.

use crate::comm::Comm;
use crate::{App, StepInfo};
use std::fmt;

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    /// The identity held, but on data that cannot distinguish anything (a zero state).
    Inconclusive,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "FAIL",
            Outcome::Inconclusive => "inconclusive",
        })
    }
}

impl Outcome {
    /// Fail when the identity is violated (`ok` false, also on NaN), otherwise inconclusive
    /// when the data could not have revealed a violation, otherwise pass.
    fn judge(ok: bool, uninformative: bool) -> Outcome {
        match (ok, uninformative) {
            (false, _) => Outcome::Fail,
            (true, true) => Outcome::Inconclusive,
            (true, false) => Outcome::Pass,
        }
    }
}

/// One check: what it tested, what it expected and what it got.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    pub outcome: Outcome,
    pub name: String,
    pub expected: String,
    pub got: String,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: expected {}, got {}",
            self.outcome, self.name, self.expected, self.got
        )
    }
}

/// How many checks had each outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub passed: usize,
    pub failed: usize,
    pub inconclusive: usize,
}

impl std::ops::Add for Counts {
    type Output = Counts;
    fn add(self, o: Counts) -> Counts {
        Counts {
            passed: self.passed + o.passed,
            failed: self.failed + o.failed,
            inconclusive: self.inconclusive + o.inconclusive,
        }
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} pass, {} FAIL, {} inconclusive",
            self.passed, self.failed, self.inconclusive
        )
    }
}

/// The checks of one rank, in the order they ran.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// The rank that ran these checks.
    pub rank: usize,
    pub lines: Vec<Check>,
}

impl Report {
    fn push(&mut self, outcome: Outcome, name: String, expected: String, got: String) {
        self.lines.push(Check {
            outcome,
            name,
            expected,
            got,
        });
    }

    pub fn counts(&self) -> Counts {
        let n = |o| self.lines.iter().filter(|c| c.outcome == o).count();
        Counts {
            passed: n(Outcome::Pass),
            failed: n(Outcome::Fail),
            inconclusive: n(Outcome::Inconclusive),
        }
    }

    /// True when no check failed (inconclusive ones do not count against it).
    pub fn passed(&self) -> bool {
        self.counts().failed == 0
    }

    /// True when some check could not distinguish anything (see [`Outcome::Inconclusive`]).
    pub fn inconclusive(&self) -> bool {
        self.counts().inconclusive > 0
    }

    /// Every rank's counts, in rank order, on every rank (collective over `comm`).
    pub fn counts_by_rank<C: Comm>(&self, comm: &C) -> Vec<Counts> {
        let c = self.counts();
        let local = [c.passed as f64, c.failed as f64, c.inconclusive as f64];
        comm.all_gather(&local)
            .chunks(3)
            .map(|v| Counts {
                passed: v[0] as usize,
                failed: v[1] as usize,
                inconclusive: v[2] as usize,
            })
            .collect()
    }
}

impl fmt::Display for Report {
    /// One line per check, prefixed with the rank.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.lines {
            writeln!(f, "rank {}: {c}", self.rank)?;
        }
        Ok(())
    }
}

/// [`check_state`] on `x = app.init(index)`. Note that an application's initial guess at
/// an interior index is often zero, which makes every check inconclusive; `index` = the
/// first index of the solve (the initial condition) is usually the informative choice.
pub fn check_app<A: App, C: Comm>(
    app: &mut A,
    comm: &C,
    index: usize,
    info: &StepInfo,
    tol: f64,
) -> Report {
    let x = app.init(index);
    check_state(app, comm, &x, info, tol)
}

/// Checks the application on the state `x` with relative tolerance `tol` (ν = ‖x‖):
/// - pack/unpack round-trips exactly: ‖unpack(pack(x)) − x‖ = 0;
/// - the norm: ν ≥ 0 finite, ‖x − x‖ = 0, and ‖−3x‖ = 3ν to within tol·3ν;
/// - sum: (x + x) − x − x = 0 to within tol·ν, and 0·(−3x) + 1·y = y exactly;
/// - copy: copy(x, −3x) = x exactly;
/// - step_from(x) = step(x) exactly (Φ out of place equals Φ in place);
/// - Φ(x) here equals Φ computed on the next rank (around a ring; with one rank, on an
///   unpacked copy) from pack(x) and `info`, sent back packed: exactly.
///
/// Every check on ν = 0 (and the step checks on Φ(x) = 0) is inconclusive unless it fails.
/// Collective over `comm` (one `duplicate` and a ring exchange); each rank may pass its own
/// `x` and `info`.
pub fn check_state<A: App, C: Comm>(
    app: &mut A,
    comm: &C,
    x: &A::State,
    info: &StepInfo,
    tol: f64,
) -> Report {
    let mut rep = Report {
        rank: comm.rank(),
        lines: Vec::new(),
    };
    let nx = app.norm(x);
    let zero = nx == 0.0;
    check_pack(app, x, zero, &mut rep);
    check_norm_and_sum(app, x, nx, tol, &mut rep);
    let mut here = x.clone();
    app.step(&mut here, info);
    let step_zero = app.norm(&here) == 0.0;
    // step_from into a state that holds something else (−3x).
    let mut dst = x.clone();
    app.sum(-3.0, x, 0.0, &mut dst);
    app.step_from(x, &mut dst, info);
    let d = distance(app, &dst, &here);
    rep.push(
        Outcome::judge(d == 0.0, step_zero),
        "step_from(x) = step(x)".into(),
        "‖step_from(x) − step(x)‖ = 0".into(),
        format!("{d:e} (‖Φ(x)‖ = {:e})", app.norm(&here)),
    );
    let (there, by) = step_elsewhere(app, comm, x, info);
    let d = distance(app, &there, &here);
    rep.push(
        Outcome::judge(d == 0.0, step_zero),
        format!("step on rank {} = its recomputation {by}", comm.rank()),
        "‖Φ(x) − Φ(unpack(pack(x)))‖ = 0".into(),
        format!("{d:e} (‖Φ(x)‖ = {:e})", app.norm(&here)),
    );
    rep
}

/// ‖a − b‖.
fn distance<A: App>(app: &A, a: &A::State, b: &A::State) -> f64 {
    let mut d = a.clone();
    app.sum(-1.0, b, 1.0, &mut d);
    app.norm(&d)
}

fn check_pack<A: App>(app: &A, x: &A::State, zero: bool, rep: &mut Report) {
    let mut buf = Vec::new();
    app.pack(x, &mut buf);
    let y = app.unpack(&buf);
    let d = distance(app, &y, x);
    rep.push(
        Outcome::judge(d == 0.0, zero),
        "pack/unpack round trip".into(),
        "‖unpack(pack(x)) − x‖ = 0".into(),
        format!(
            "{d:e} (‖x‖ = {:e}, {} values packed)",
            app.norm(x),
            buf.len()
        ),
    );
}

fn check_norm_and_sum<A: App>(app: &A, x: &A::State, nx: f64, tol: f64, rep: &mut Report) {
    let zero = nx == 0.0;
    let self_diff = distance(app, x, x);
    rep.push(
        Outcome::judge(nx >= 0.0 && nx.is_finite() && self_diff == 0.0, zero),
        "norm".into(),
        "‖x‖ ≥ 0 finite and ‖x − x‖ = 0".into(),
        format!("‖x‖ = {nx:e}, ‖x − x‖ = {self_diff:e}"),
    );
    let mut s = x.clone();
    app.sum(-3.0, x, 0.0, &mut s); // −3x
    let ns = app.norm(&s);
    let err = (ns - 3.0 * nx).abs();
    rep.push(
        Outcome::judge(err <= tol * 3.0 * nx, zero),
        "norm homogeneity".into(),
        format!("‖−3x‖ = 3‖x‖ = {:e} (to {tol:e} relative)", 3.0 * nx),
        format!("{ns:e} (error {err:e})"),
    );
    let mut t = x.clone();
    app.sum(1.0, x, 1.0, &mut t); // 2x
    app.sum(-1.0, x, 1.0, &mut t); // x
    app.sum(-1.0, x, 1.0, &mut t); // 0
    let rest = app.norm(&t);
    let mut y = x.clone();
    app.sum(0.0, &s, 1.0, &mut y); // 0·(−3x) + 1·x
    let kept = distance(app, &y, x);
    rep.push(
        Outcome::judge(rest <= tol * nx && kept == 0.0, zero),
        "sum".into(),
        format!(
            "‖(x + x) − x − x‖ ≤ {:e} and ‖0·(−3x) + x − x‖ = 0",
            tol * nx
        ),
        format!("{rest:e} and {kept:e}"),
    );
    let mut c = s.clone();
    app.copy(x, &mut c);
    let d = distance(app, &c, x);
    rep.push(
        Outcome::judge(d == 0.0, zero),
        "copy".into(),
        "‖copy(x → −3x) − x‖ = 0".into(),
        format!("{d:e}"),
    );
}

/// The fields of a [`StepInfo`] as message values (indices below 2^53 are exact).
fn info_to_buf(info: &StepInfo, buf: &mut Vec<f64>) {
    buf.extend_from_slice(&[
        info.level as f64,
        info.from as f64,
        info.to as f64,
        info.t_from,
        info.t_to,
        info.fine_steps as f64,
        info.dt,
    ]);
}

const INFO_LEN: usize = 7;

fn info_from_buf(b: &[f64]) -> StepInfo {
    StepInfo {
        level: b[0] as usize,
        from: b[1] as usize,
        to: b[2] as usize,
        t_from: b[3],
        t_to: b[4],
        fine_steps: b[5] as usize,
        dt: b[6],
    }
}

/// unpack(pack(Φ(unpack(pack(x))))), with the inner step computed by the next rank around
/// a ring (rank r sends (info, pack(x)) to r + 1 mod P, steps what r − 1 sent, and sends it
/// back); with one rank, computed here on the unpacked copy. Returns the state and a phrase
/// saying where it was computed.
fn step_elsewhere<A: App, C: Comm>(
    app: &mut A,
    comm: &C,
    x: &A::State,
    info: &StepInfo,
) -> (A::State, String) {
    let (rank, size) = (comm.rank(), comm.size());
    let mut msg = Vec::new();
    info_to_buf(info, &mut msg);
    app.pack(x, &mut msg);
    let recompute = |app: &mut A, msg: &[f64]| {
        let mut w = app.unpack(&msg[INFO_LEN..]);
        app.step(&mut w, &info_from_buf(&msg[..INFO_LEN]));
        let mut out = Vec::new();
        app.pack(&w, &mut out);
        out
    };
    if size == 1 {
        let back = recompute(app, &msg);
        return (app.unpack(&back), "on an unpacked copy".into());
    }
    // A message space of its own: the ring's tags cannot meet the caller's messages.
    let ring = comm.duplicate();
    let (next, prev) = ((rank + 1) % size, (rank + size - 1) % size);
    const STATE: i32 = 1;
    const STEPPED: i32 = 2;
    ring.send(next, STATE, msg);
    let theirs = ring.recv(prev, STATE);
    ring.send(prev, STEPPED, recompute(app, &theirs));
    let back = ring.recv(next, STEPPED);
    ring.wait_sends();
    (
        app.unpack(&back),
        format!("on rank {next} from the packed state"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problems::{Fault, Faulty, ModelProblem};
    use crate::SerialComm;

    const INFO: StepInfo = StepInfo {
        level: 0,
        from: 0,
        to: 1,
        t_from: 0.0,
        t_to: 0.1,
        fine_steps: 1,
        dt: 0.1,
    };

    #[test]
    fn the_model_problems_pass_every_check_conclusively() {
        for mut p in [
            ModelProblem::scalar(-1.0),
            ModelProblem::linear(4),
            ModelProblem::cubic(),
        ] {
            let r = check_app(&mut p, &SerialComm, 0, &INFO, 1e-14);
            assert!(r.passed() && !r.inconclusive(), "{r}");
            assert_eq!(r.counts().passed, r.lines.len());
            assert!(r.lines.len() >= 7, "{r}");
        }
    }

    #[test]
    fn a_lossy_pack_fails_the_round_trip_and_the_recomputed_step() {
        let mut p = Faulty::new(ModelProblem::linear(3), Fault::LossyPack);
        p.problem.u0 = vec![0.1, 0.3, -0.7];
        let r = check_app(&mut p, &SerialComm, 0, &INFO, 1e-14);
        assert!(!r.passed(), "{r}");
        let failed: Vec<&str> = r
            .lines
            .iter()
            .filter(|c| c.outcome == Outcome::Fail)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            failed,
            [
                "pack/unpack round trip",
                "step on rank 0 = its recomputation on an unpacked copy"
            ],
            "{r}"
        );
        assert!(r.lines[0]
            .to_string()
            .starts_with("FAIL pack/unpack round trip: expected"));
    }

    #[test]
    fn a_zero_state_is_inconclusive_not_passed() {
        let mut p = ModelProblem::linear(3);
        // The initial guess at an interior point is zero.
        let r = check_app(&mut p, &SerialComm, 5, &INFO, 1e-14);
        assert!(r.passed() && r.inconclusive(), "{r}");
        assert_eq!(r.counts().inconclusive, r.lines.len(), "{r}");
        assert!(r.to_string().contains("inconclusive pack/unpack"), "{r}");
        // The same state given explicitly, and a nonzero one.
        let r = check_state(&mut p, &SerialComm, &vec![0.0; 3], &INFO, 1e-14);
        assert_eq!(r.counts().inconclusive, r.lines.len());
        let r = check_state(&mut p, &SerialComm, &vec![0.2, 0.0, -1.0], &INFO, 1e-14);
        assert!(r.passed() && !r.inconclusive(), "{r}");
    }

    #[test]
    fn a_wrong_step_from_fails_and_counts_add_up() {
        let mut p = Faulty::new(ModelProblem::cubic(), Fault::StepFromSkipsStep);
        let r = check_app(&mut p, &SerialComm, 0, &INFO, 1e-14);
        let c = r.counts();
        assert_eq!(c.failed, 1, "{r}");
        assert_eq!(c.passed + c.failed + c.inconclusive, r.lines.len());
        assert_eq!(r.counts_by_rank(&SerialComm), vec![c]);
    }
}

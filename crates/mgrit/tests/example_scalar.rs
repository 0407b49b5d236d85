//! The `scalar` example's own code path (its `run`), so the example keeps building and
//! keeps doing what it prints: MGRIT converges to the serial sweep, whose error against
//! exp(λ t_f) is backward Euler's O(h).

#[allow(dead_code)]
#[path = "../examples/scalar.rs"]
mod scalar;

use mgrit::SerialComm;

#[test]
fn the_scalar_example_converges_to_the_serial_sweep() {
    for levels in [2, 3] {
        let run = scalar::run(SerialComm, 64, levels).expect("valid options");
        assert!(run.converged && run.iterations > 1, "levels {levels}");
        assert!(*run.residuals.last().unwrap() <= 1e-12);
        assert!(
            run.residuals.windows(2).all(|w| w[1] < w[0]),
            "{:?}",
            run.residuals
        );
        let u = run.final_value.expect("one rank owns the final point");
        // To the solver's tolerance (a residual ≤ 10⁻¹² over 64 steps).
        assert!((u - run.serial).abs() <= 1e-11, "{u} vs {}", run.serial);
        // Backward Euler: u_N − e^{−1} ≈ (h/2) e^{−1} for h = 1/64.
        let err = u - run.exact;
        assert!(err > 0.0 && err < 0.6 * run.exact / 64.0, "error {err}");
    }
}

//! The activations and their derivatives against finite differences, libm and one another.

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

/// Distance in ulps between two doubles of the same sign class (on the ordered integer
/// line of bit patterns); 0 for two NaNs.
fn ulps(a: f64, b: f64) -> u64 {
    if a.is_nan() && b.is_nan() {
        return 0;
    }
    let key = |x: f64| {
        let i = x.to_bits() as i64;
        if i < 0 {
            i64::MIN - i
        } else {
            i
        }
    };
    key(a).abs_diff(key(b))
}

/// Test inputs: a dense sweep of [−20, 20], values around the reduction, quotient and clamp
/// edges, random bit patterns, subnormals and the special values.
fn tanh_inputs() -> Vec<f64> {
    let mut xs = Vec::new();
    let n = 1 << 22;
    for i in 0..=n {
        xs.push(-20.0 + 40.0 * i as f64 / n as f64);
    }
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..1 << 20 {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        xs.push(f64::from_bits(s));
        // Random values of moderate magnitude: |x| in [2⁻³⁰, 2⁵).
        let m = (s >> 12) as f64 / (1u64 << 52) as f64 + 1.0;
        let e = (s % 35) as i32 - 30;
        xs.push(if s >> 63 == 1 { -m } else { m } * 2f64.powi(e));
    }
    for k in 0..60 {
        let edge = (k as f64 + 0.5) * std::f64::consts::LN_2 / 2.0;
        for d in -8i64..=8 {
            xs.push(f64::from_bits((edge.to_bits() as i64 + d) as u64));
        }
    }
    // Around the switch from e/d to 1 − 2/d.
    for d in -8i64..=8 {
        let x = f64::from_bits((UPPER.to_bits() as i64 + d) as u64);
        xs.push(x);
        xs.push(-x);
    }
    for &v in &[
        19.0,
        19.06,
        19.1,
        19.2,
        20.0,
        20.5,
        22.0,
        1e3,
        1e300,
        f64::MAX,
    ] {
        xs.push(v);
        xs.push(-v);
    }
    for &v in &[
        0.0,
        f64::MIN_POSITIVE,
        f64::MIN_POSITIVE / 3.0,
        5e-324,
        1e-310,
        1e-200,
        1e-20,
        1e-9,
        f64::INFINITY,
    ] {
        xs.push(v);
        xs.push(-v);
    }
    xs.push(f64::NAN);
    xs.push(-f64::NAN);
    xs
}

#[test]
fn tanh_is_within_the_stated_ulps_of_libm() {
    let xs = tanh_inputs();
    let mut t = vec![0.0; xs.len()];
    tanh_slice(&xs, &mut t);
    let (mut worst, mut at) = (0, 0.0);
    for (&x, &y) in xs.iter().zip(&t) {
        let d = ulps(y, x.tanh());
        if d > worst {
            (worst, at) = (d, x);
        }
        assert_eq!(y.to_bits(), tanh(x).to_bits(), "slice vs scalar at {x:e}");
    }
    eprintln!("tanh: max error {worst} ulp against libm (at x = {at:e})");
    assert!(worst <= TANH_MAX_ULP, "{worst} ulp at {at:e}");
    // The special values exactly.
    assert_eq!(tanh(0.0).to_bits(), 0.0f64.to_bits());
    assert_eq!(tanh(-0.0).to_bits(), (-0.0f64).to_bits());
    assert_eq!(tanh(f64::INFINITY), 1.0);
    assert_eq!(tanh(f64::NEG_INFINITY), -1.0);
    assert!(tanh(f64::NAN).is_nan());
    assert_eq!(tanh(5e-324), 5e-324);
    assert_eq!(tanh(19.1), 1.0);
    assert_eq!(tanh(-1e300), -1.0);
}

/// Largest absolute error of σ' = 1 − t² against 1 − tanh(x)² from libm: t is within
/// [`TANH_MAX_ULP`] = 4 ulp of libm's (at most 2⁻⁵³ each for |t| < 1), so 1 − t² moves by
/// at most 2 · 4 · 2⁻⁵³, and the roundings add up to 2⁻⁵³ (measured: 4.0 · 2⁻⁵³).
const TANH_DERIVATIVE_MAX_ABS: f64 = 9.0 / (1u64 << 53) as f64;

#[test]
fn tanh_derivative_is_within_the_stated_bound() {
    let xs = tanh_inputs();
    let mut d = vec![0.0; xs.len()];
    tanh_derivative_slice(&xs, &mut d);
    let mut worst: f64 = 0.0;
    for (&x, &di) in xs.iter().zip(&d) {
        assert_eq!(
            di.to_bits(),
            Activation::Tanh.derivative(x).to_bits(),
            "slice vs scalar at {x:e}"
        );
        if x.is_nan() {
            assert!(di.is_nan());
            continue;
        }
        let tl = x.tanh();
        let reference = 1.0 - tl * tl;
        worst = worst.max((di - reference).abs());
        assert!((0.0..=1.0).contains(&di), "σ'({x:e}) = {di}");
    }
    eprintln!(
        "tanh': max absolute error {:.2} × 2⁻⁵³ against 1 − tanh² from libm",
        worst * (1u64 << 53) as f64
    );
    assert!(worst <= TANH_DERIVATIVE_MAX_ABS, "{worst:e}");
}

/// The dispatched variants (AVX-512 or AVX2 + FMA, where this CPU has them) give the same bits
/// as the portable ones, for every pass and activation.
#[test]
fn every_variant_gives_the_same_bits() {
    eprintln!("elementwise passes run the {} variant", isa());
    let mut xs = tanh_inputs();
    xs.truncate(1 << 21);
    xs.extend(tanh_inputs().iter().rev().take(1 << 20));
    let n = xs.len();
    let lam: Vec<f64> = xs.iter().map(|x| (x * 0.37).sin()).collect();
    let u: Vec<f64> = xs.iter().map(|x| (x * 0.91).cos()).collect();
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for act in Activation::ALL {
        let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
        apply(act, &xs, &mut a);
        apply_portable(act, &xs, &mut b);
        assert_eq!(bits(&a), bits(&b), "apply {act}");
        apply_derivative(act, &xs, &mut a);
        apply_derivative_portable(act, &xs, &mut b);
        assert_eq!(bits(&a), bits(&b), "apply_derivative {act}");
        forward(act, 0.3, &xs, &u, &mut a);
        forward_portable(act, 0.3, &xs, &u, &mut b);
        assert_eq!(bits(&a), bits(&b), "forward {act}");
        let (mut c, mut e) = (u.clone(), u.clone());
        forward_in_place(act, 0.3, &xs, &mut c);
        forward_in_place_portable(act, 0.3, &xs, &mut e);
        assert_eq!(bits(&c), bits(&e), "forward_in_place {act}");
        assert_eq!(bits(&c), bits(&a), "forward in and out of place {act}");
        sensitivity(act, 0.3, &xs, &lam, &mut a);
        sensitivity_portable(act, 0.3, &xs, &lam, &mut b);
        assert_eq!(bits(&a), bits(&b), "sensitivity {act}");
        // The passes that keep D = σ'(Z) give the bits of the ones that do not.
        let (mut d, mut d2) = (vec![0.0; n], vec![0.0; n]);
        let (mut o2, mut s2) = (vec![0.0; n], vec![0.0; n]);
        forward(act, 0.3, &xs, &u, &mut o2);
        forward_keeping_derivative(act, 0.3, &xs, &u, &mut b, &mut d);
        assert_eq!(bits(&b), bits(&o2), "forward_keeping_derivative {act}");
        forward_keeping_derivative_portable(act, 0.3, &xs, &u, &mut b, &mut d2);
        assert_eq!(
            bits(&b),
            bits(&o2),
            "forward_keeping_derivative portable {act}"
        );
        apply_derivative(act, &xs, &mut s2);
        assert_eq!(bits(&d), bits(&s2), "the kept derivative {act}");
        assert_eq!(bits(&d2), bits(&s2), "the kept derivative portable {act}");
        let (mut c2, mut d3) = (u.clone(), vec![0.0; n]);
        forward_in_place_keeping_derivative(act, 0.3, &xs, &mut c2, &mut d3);
        assert_eq!(bits(&c2), bits(&o2), "in place keeping derivative {act}");
        assert_eq!(bits(&d3), bits(&s2), "in place kept derivative {act}");
        let mut c3 = u.clone();
        forward_in_place_keeping_derivative_portable(act, 0.3, &xs, &mut c3, &mut d3);
        assert_eq!(
            bits(&c3),
            bits(&o2),
            "in place keeping derivative portable {act}"
        );
        sensitivity_from_derivative(0.3, &d, &lam, &mut b);
        assert_eq!(
            bits(&b),
            bits(&a),
            "sensitivity from the kept derivative {act}"
        );
        sensitivity_from_derivative_portable(0.3, &d, &lam, &mut b);
        assert_eq!(
            bits(&b),
            bits(&a),
            "sensitivity from derivative portable {act}"
        );
        scaled_derivative(act, &xs, &lam, &mut a);
        scaled_derivative_portable(act, &xs, &lam, &mut b);
        assert_eq!(bits(&a), bits(&b), "scaled_derivative {act}");
        for (i, &x) in xs.iter().enumerate().step_by(97) {
            assert_eq!(
                b[i].to_bits(),
                (act.derivative(x) * lam[i]).to_bits(),
                "scalar {act}"
            );
        }
    }
}

/// Where the CPU has AVX-512, the dispatched passes above run the eight-lane variants: the
/// four-lane (AVX2 + FMA) ones must give the portable bits too.
#[test]
fn the_avx2_variants_give_the_portable_bits() {
    let mut xs = tanh_inputs();
    // Both ends of the inputs (the first half are negative).
    xs.truncate(1 << 20);
    xs.extend(tanh_inputs().iter().rev().take(1 << 20));
    let n = xs.len();
    let lam: Vec<f64> = xs.iter().map(|x| (x * 0.37).sin()).collect();
    let u: Vec<f64> = xs.iter().map(|x| (x * 0.91).cos()).collect();
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for act in Activation::ALL {
        let (mut a, mut b, mut d, mut d2) =
            (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        apply_avx2(act, &xs, &mut a);
        apply_portable(act, &xs, &mut b);
        assert_eq!(bits(&a), bits(&b), "apply {act}");
        // Outputs that are all zero would tell no variants apart.
        let nonzero = a.iter().filter(|v| **v != 0.0).count();
        assert!(
            nonzero > n / 4,
            "{act}: only {nonzero} of {n} values of σ nonzero"
        );
        apply_derivative_avx2(act, &xs, &mut a);
        apply_derivative_portable(act, &xs, &mut b);
        assert_eq!(bits(&a), bits(&b), "apply_derivative {act}");
        forward_avx2(act, 0.3, &xs, &u, &mut a);
        forward_portable(act, 0.3, &xs, &u, &mut b);
        assert_eq!(bits(&a), bits(&b), "forward {act}");
        let (mut c, mut e) = (u.clone(), u.clone());
        forward_in_place_avx2(act, 0.3, &xs, &mut c);
        forward_in_place_portable(act, 0.3, &xs, &mut e);
        assert_eq!(bits(&c), bits(&e), "forward_in_place {act}");
        sensitivity_avx2(act, 0.3, &xs, &lam, &mut a);
        sensitivity_portable(act, 0.3, &xs, &lam, &mut b);
        assert_eq!(bits(&a), bits(&b), "sensitivity {act}");
        scaled_derivative_avx2(act, &xs, &lam, &mut a);
        scaled_derivative_portable(act, &xs, &lam, &mut b);
        assert_eq!(bits(&a), bits(&b), "scaled_derivative {act}");
        forward_keeping_derivative_avx2(act, 0.3, &xs, &u, &mut a, &mut d);
        forward_keeping_derivative_portable(act, 0.3, &xs, &u, &mut b, &mut d2);
        assert_eq!(bits(&a), bits(&b), "forward_keeping_derivative {act}");
        assert_eq!(bits(&d), bits(&d2), "the kept derivative {act}");
        let (mut c, mut e) = (u.clone(), u.clone());
        forward_in_place_keeping_derivative_avx2(act, 0.3, &xs, &mut c, &mut d);
        forward_in_place_keeping_derivative_portable(act, 0.3, &xs, &mut e, &mut d2);
        assert_eq!(bits(&c), bits(&e), "in place keeping derivative {act}");
        assert_eq!(bits(&d), bits(&d2), "in place kept derivative {act}");
        sensitivity_from_derivative_avx2(0.3, &d, &lam, &mut a);
        sensitivity_from_derivative_portable(0.3, &d, &lam, &mut b);
        assert_eq!(bits(&a), bits(&b), "sensitivity from derivative {act}");
    }
}

/// Checks that `lanes` (the vector tanh on chunks of `L` inputs) gives the scalar
/// function's bits on every input of the accuracy test.
#[cfg(target_arch = "x86_64")]
fn check_vector_tanh<const L: usize>(name: &str, lanes: impl Fn(&[f64; L]) -> [f64; L]) {
    let xs = tanh_inputs();
    let mut checked = 0;
    for c in xs.chunks_exact(L) {
        let c: &[f64; L] = c.try_into().expect("a chunk of L");
        for (x, t) in c.iter().zip(&lanes(c)) {
            assert_eq!(t.to_bits(), tanh(*x).to_bits(), "{name}({x:e})");
            checked += 1;
        }
    }
    assert!(checked > 1_000_000, "{checked}");
}

/// The four-lane tanh of the fused kernels gives the scalar function's bits on every
/// input of the accuracy test.
#[cfg(target_arch = "x86_64")]
#[test]
fn the_vector_tanh_gives_the_scalar_bits() {
    if !avx2_fma() {
        eprintln!("no AVX2 + FMA on this CPU: the vector tanh is not used");
        return;
    }
    use std::arch::x86_64::*;
    check_vector_tanh::<4>("tanh4", |c| {
        let mut out = [0.0; 4];
        // SAFETY: the CPU has AVX2 and FMA (checked above); `c` and `out` hold 4 doubles.
        unsafe { _mm256_storeu_pd(out.as_mut_ptr(), tanh4(_mm256_loadu_pd(c.as_ptr()))) };
        out
    });
}

/// The eight-lane tanh of the AVX-512 fused kernels gives the scalar function's bits on every
/// input of the accuracy test.
#[cfg(target_arch = "x86_64")]
#[test]
fn the_eight_lane_tanh_gives_the_scalar_bits() {
    if !avx512() {
        eprintln!("inconclusive: no AVX-512 on this CPU, the eight-lane tanh is not used");
        return;
    }
    use std::arch::x86_64::*;
    check_vector_tanh::<8>("tanh8", |c| {
        let mut out = [0.0; 8];
        // SAFETY: the CPU has AVX-512 F, AVX2 and FMA (checked above); `c` and `out` hold 8
        // doubles.
        unsafe { _mm512_storeu_pd(out.as_mut_ptr(), tanh8(_mm512_loadu_pd(c.as_ptr()))) };
        out
    });
}

#[test]
fn names_round_trip() {
    for act in Activation::ALL {
        assert_eq!(act.name().parse::<Activation>().unwrap(), act);
    }
    assert!("sigmoid".parse::<Activation>().is_err());
}

//! `e^x` and `ln(1 + t)` in f32 from plain arithmetic, so that loops over pixels vectorise.
//! The standard library's versions call libm once per value; on the decoder's 64x64x3 outputs
//! those calls were most of the loss's time.
//!
//! Both are accurate to a few units in the last place (tests below check against std).

/// `ln 2` split in two: `HI` has few enough significant bits that `n * HI` is exact for the
/// integers `n` used here, `LO` is the rest.
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
/// Adding and subtracting `1.5 * 2^23` rounds an f32 of magnitude below `2^22` to an integer
/// (ties to even) without a call to `round`.
const ROUND: f32 = 12_582_912.0;

/// `e^x`. Inputs are held to `[-87, 88]`, where the result is a normal f32 (below, the true
/// value is under `1.7e-38`; above, it overflows anyway). NaN stays NaN.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0); // NaN stays NaN
    // x = n ln 2 + r with |r| <= ln 2 / 2; e^x = 2^n e^r.
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Taylor series of e^r to r^7: the first term left out is below 1e-8 for |r| <= 0.35.
    let p = horner(
        r,
        [
            1.0 / 5040.0,
            1.0 / 720.0,
            1.0 / 120.0,
            1.0 / 24.0,
            1.0 / 6.0,
            0.5,
            1.0,
            1.0,
        ],
    );
    // `shifted` is `1.5 * 2^23 + n`, whose bits are those of `1.5 * 2^23` plus `n`: shifted left
    // by 23, the former drop out and `n + 127` lands in the exponent field. (An `as i32`
    // conversion would saturate out-of-range values, which keeps the loop from vectorising.)
    let two_to_n = f32::from_bits(shifted.to_bits().wrapping_add(127) << 23);
    p * two_to_n
}

/// `ln(1 + t)` for `0 <= t <= 1`.
#[inline(always)]
pub(crate) fn ln_1p(t: f32) -> f32 {
    // ln(1 + t) = 2 atanh(s) with s = t / (2 + t) in [0, 1/3]: no cancellation for small t,
    // and the series 2 s (1 + s^2/3 + s^4/5 + ...) needs eight terms for f32 accuracy.
    let s = t / (2.0 + t);
    let z = s * s;
    let p = horner(
        z,
        [
            1.0 / 15.0,
            1.0 / 13.0,
            1.0 / 11.0,
            1.0 / 9.0,
            1.0 / 7.0,
            1.0 / 5.0,
            1.0 / 3.0,
            1.0,
        ],
    );
    2.0 * s * p
}

/// The polynomial with `coefficients` (highest power first) at `x`, by Horner's rule.
#[inline(always)]
fn horner<const N: usize>(x: f32, coefficients: [f32; N]) -> f32 {
    coefficients.into_iter().fold(0.0, |p, c| p * x + c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relative error of `ours` against f64's own function.
    fn worst_relative_error(
        inputs: impl Iterator<Item = f32>,
        ours: fn(f32) -> f32,
        exact: fn(f64) -> f64,
    ) -> f64 {
        inputs
            .map(|x| {
                let truth = exact(x as f64);
                ((ours(x) as f64 - truth) / truth).abs()
            })
            .fold(0.0, f64::max)
    }

    #[test]
    fn exp_matches_std_over_its_range() {
        let inputs = (-870_000..=880_000).map(|i| i as f32 * 1e-4);
        let worst = worst_relative_error(inputs, exp, f64::exp);
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-1000.0), (-87f32).exp());
        assert!(exp(1000.0).is_finite() && exp(1000.0) > 1e38);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn ln_1p_matches_std_on_the_unit_interval() {
        let inputs = (1..=1_000_000)
            .map(|i| i as f32 * 1e-6)
            .chain([1e-30, 1e-12, 1e-7]);
        let worst = worst_relative_error(inputs, ln_1p, f64::ln_1p);
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(ln_1p(0.0), 0.0);
        assert!(ln_1p(f32::NAN).is_nan());
    }
}

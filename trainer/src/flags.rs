//! Value parsers for numeric flags: each checks its flag's range while the command line is
//! parsed, and says the range when a value falls outside it. NaN and infinities never pass.

use std::ops::RangeInclusive;

/// An integer flag's parser: whole numbers in `range` (a negative number is read as a number
/// and refused as one, not taken for a flag).
pub fn whole(range: RangeInclusive<usize>) -> impl Fn(&str) -> Result<usize, String> + Clone {
    move |text| {
        let outside = || {
            format!(
                "must be a whole number in {}..={}",
                range.start(),
                range.end()
            )
        };
        match text.trim().parse::<i128>() {
            Ok(v) => usize::try_from(v)
                .ok()
                .filter(|v| range.contains(v))
                .ok_or_else(outside),
            Err(_) => Err(outside()),
        }
    }
}

/// A float flag's parser: finite numbers in `range`.
pub fn number(range: RangeInclusive<f64>) -> impl Fn(&str) -> Result<f64, String> + Clone {
    move |text| match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && range.contains(&v) => Ok(v),
        _ => Err(format!("must be a number in {}", interval(&range))),
    }
}

/// `[a, b]`, with very small or large ends in scientific notation (`1e-12`, not `0.000000000001`).
pub fn interval(range: &RangeInclusive<f64>) -> String {
    let show = |v: f64| match v != 0.0 && !(1e-3..1e6).contains(&v.abs()) {
        true => format!("{v:e}"),
        false => format!("{v}"),
    };
    format!("[{}, {}]", show(*range.start()), show(*range.end()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_enforced_and_named() {
        let epochs = whole(1..=100);
        assert_eq!(epochs("7"), Ok(7));
        for bad in [
            "0",
            "-1",
            "101",
            "1e3",
            "x",
            "99999999999999999999999999999999999999999",
        ] {
            assert_eq!(
                epochs(bad),
                Err("must be a whole number in 1..=100".into()),
                "{bad}"
            );
        }
        let rate = number(0.0..=1.0);
        assert_eq!(rate("0.25"), Ok(0.25));
        assert_eq!(interval(&(1e-12..=1e6)), "[1e-12, 1e6]");
        for bad in ["nan", "NaN", "inf", "-inf", "1.5", "-0.1", ""] {
            assert_eq!(rate(bad), Err("must be a number in [0, 1]".into()), "{bad}");
        }
    }
}

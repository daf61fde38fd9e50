//! Learning rate: linear warm-up from ~0, then cosine decay to a fraction of the peak over the
//! rest of the planned run (docs/method.md#learning-rate-schedule).

pub fn learning_rate(
    step: usize,
    peak: f64,
    warmup: usize,
    total: usize,
    final_fraction: f64,
) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let floor = peak * final_fraction;
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step - warmup) as f64 / span).min(1.0);
    floor + (peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_then_decays_to_the_floor() {
        let lr = |s| learning_rate(s, 1e-3, 200, 1200, 0.01);
        assert!(lr(0) < 1e-5);
        assert!((lr(199) - 1e-3).abs() < 1e-12);
        assert!((lr(200) - 1e-3).abs() < 1e-12);
        assert!(
            (lr(700) - (1e-5 + (1e-3 - 1e-5) * 0.5)).abs() < 1e-9,
            "half way"
        );
        assert!((lr(1200) - 1e-5).abs() < 1e-12);
        assert!(
            (lr(5000) - 1e-5).abs() < 1e-12,
            "stays at the floor past the plan"
        );
        assert!((1..1200).all(|s| lr(s) > 0.0));
    }
}

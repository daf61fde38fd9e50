//! Wider vectors for the element-wise loops, chosen when the program runs.
//!
//! Our own loops (losses, BatchNorm, the optimizer step) are written to vectorise, but a
//! portable x86_64 build may only use SSE2's four lanes. [`wide_fn!`] compiles a loop a second
//! time for AVX2 (eight lanes) and picks that version on CPUs that have it. Not with FMA: the
//! compiler never fuses a multiply and an add on its own, so both versions round alike and a
//! run gives the same numbers on any CPU.

/// Defines a function whose body is compiled twice, for baseline x86_64 and for AVX2, and runs
/// the AVX2 one where the CPU supports it. The body should be one task's loop, with no parallel
/// work inside: closures handed to other threads are compiled on their own, without AVX2.
macro_rules! wide_fn {
    (
        $(#[$attribute:meta])*
        $visibility:vis fn $name:ident $(<$($generic:ident: $bound:path),*>)?
            ($($arg:ident: $type:ty),* $(,)?) $(-> $output:ty)?
        $body:block
    ) => {
        $(#[$attribute])*
        $visibility fn $name $(<$($generic: $bound),*>)? ($($arg: $type),*) $(-> $output)? {
            #[inline(always)]
            fn body $(<$($generic: $bound),*>)? ($($arg: $type),*) $(-> $output)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                fn avx2 $(<$($generic: $bound),*>)? ($($arg: $type),*) $(-> $output)? {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && !$crate::simd::baseline_only()
                {
                    // SAFETY: the CPU was just found to support AVX2.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

pub(crate) use wide_fn;

/// Whether to run the baseline versions even where AVX2 is available: only tests ask, to check
/// that both versions give the same bits.
#[cfg(all(target_arch = "x86_64", not(test)))]
pub(crate) const fn baseline_only() -> bool {
    false
}

#[cfg(test)]
static BASELINE_ONLY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[cfg(test)]
pub(crate) fn baseline_only() -> bool {
    BASELINE_ONLY.load(std::sync::atomic::Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::BASELINE_ONLY;
    use crate::batch_norm::{self, NormOrder};
    use crate::{AdamStep, adam, bernoulli};
    use std::sync::atomic::Ordering;

    /// The bits of every result of the element-wise kernels on `values`.
    fn results(values: &[f32]) -> Vec<u32> {
        let c = 32;
        let targets: Vec<f32> = values.iter().map(|v| v.abs().min(1.0)).collect();
        let mut out = bernoulli::forward(values, &targets, 4, 16.0);
        out.extend(bernoulli::d_logits(values, &targets, &[0.5; 4], 16.0));
        for order in [NormOrder::ReluThenNorm, NormOrder::NormThenRelu] {
            let (gamma, beta) = (vec![1.3; c], vec![-0.2; c]);
            let (y, stats) = batch_norm::forward(values, c, &gamma, &beta, 1e-5, order);
            let mut d = targets.clone();
            let (d_gamma, d_beta) =
                batch_norm::backward(values, &mut d, c, &gamma, &beta, &stats, 1e-5, order);
            out.extend(y.into_iter().chain(d).chain(d_gamma).chain(d_beta));
        }
        let (mut param, mut m, mut v) = (values.to_vec(), targets.clone(), targets.clone());
        let step = AdamStep {
            learning_rate: 1e-3,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-5,
            time: 2,
        };
        adam::update(&mut param, &targets, &mut m, &mut v, step);
        out.extend(param.into_iter().chain(m).chain(v));
        out.into_iter().map(f32::to_bits).collect()
    }

    #[test]
    fn both_versions_give_the_same_bits() {
        let values: Vec<f32> = (0..4 * 32 * 37)
            .map(|i| ((i * 7919) % 2001) as f32 / 100.0 - 10.0)
            .collect();
        let wide = results(&values);
        BASELINE_ONLY.store(true, Ordering::Relaxed);
        let baseline = results(&values);
        BASELINE_ONLY.store(false, Ordering::Relaxed);
        assert_eq!(wide, baseline);
    }
}

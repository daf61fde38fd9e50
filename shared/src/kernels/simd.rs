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
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU was just found to support AVX2.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

pub(crate) use wide_fn;

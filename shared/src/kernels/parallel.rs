//! Work split over the CPU's cores natively; one thread in the browser (no rayon on wasm).

/// Runs `f(index, chunk)` over `data` split into chunks of `size`.
pub fn for_each_chunk<F>(data: &mut [f32], size: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Send + Sync,
{
    #[cfg(not(target_family = "wasm"))]
    {
        use rayon::prelude::*;
        data.par_chunks_mut(size.max(1))
            .enumerate()
            .for_each(|(i, chunk)| f(i, chunk));
    }
    #[cfg(target_family = "wasm")]
    data.chunks_mut(size.max(1))
        .enumerate()
        .for_each(|(i, chunk)| f(i, chunk));
}

/// Maps every chunk of `data` (chunks of `size`) to a value and sums the values with `add`.
pub fn map_reduce_chunks<T, M, A>(data: &[f32], size: usize, map: M, add: A) -> Option<T>
where
    T: Send,
    M: Fn(usize, &[f32]) -> T + Send + Sync,
    A: Fn(T, T) -> T + Send + Sync,
{
    #[cfg(not(target_family = "wasm"))]
    {
        use rayon::prelude::*;
        data.par_chunks(size.max(1))
            .enumerate()
            .map(|(i, chunk)| map(i, chunk))
            .reduce_with(add)
    }
    #[cfg(target_family = "wasm")]
    data.chunks(size.max(1))
        .enumerate()
        .map(|(i, chunk)| map(i, chunk))
        .reduce(add)
}

/// Rows per parallel task: enough work per task, about four tasks per core.
pub fn rows_per_task(rows: usize) -> usize {
    #[cfg(not(target_family = "wasm"))]
    let threads = rayon::current_num_threads();
    #[cfg(target_family = "wasm")]
    let threads = 1;
    rows.div_ceil(4 * threads).max(1)
}

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

/// Maps every chunk of `data` (chunks of `size`) to a value and sums the values with `add`, in
/// chunk order: the chunks depend only on `size`, so the sum is the same on every run (a
/// training run resumed from a checkpoint retraces the uninterrupted one bit for bit).
pub fn map_reduce_chunks<T, M, A>(data: &[f32], size: usize, map: M, add: A) -> Option<T>
where
    T: Send,
    M: Fn(usize, &[f32]) -> T + Send + Sync,
    A: Fn(T, T) -> T,
{
    #[cfg(not(target_family = "wasm"))]
    let parts: Vec<T> = {
        use rayon::prelude::*;
        data.par_chunks(size.max(1))
            .enumerate()
            .map(|(i, chunk)| map(i, chunk))
            .collect()
    };
    #[cfg(target_family = "wasm")]
    let parts: Vec<T> = data
        .chunks(size.max(1))
        .enumerate()
        .map(|(i, chunk)| map(i, chunk))
        .collect();
    parts.into_iter().reduce(add)
}

/// Threads the work is split over.
pub fn threads() -> usize {
    #[cfg(not(target_family = "wasm"))]
    return rayon::current_num_threads();
    #[cfg(target_family = "wasm")]
    return 1;
}

/// Rows per parallel task: about four tasks per core.
pub fn rows_per_task(rows: usize) -> usize {
    rows.div_ceil(4 * threads()).max(1)
}

/// Per-channel sums over all rows of what `add_row(row, sums)` adds for one row. Each task sums
/// runs of rows in f32 (which vectorises) and carries the running totals in f64.
pub fn channel_sums(
    rows: &[f32],
    c: usize,
    width: usize,
    add_row: impl Fn(usize, &[f32], &mut [f32]) + Sync,
) -> Vec<f64> {
    const RUN: usize = 64;
    let per_task = rows_per_task(rows.len() / c.max(1));
    map_reduce_chunks(
        rows,
        per_task * c,
        |task, chunk| {
            let mut totals = vec![0f64; width];
            let mut run = vec![0f32; width];
            for (i, block) in chunk.chunks(RUN * c).enumerate() {
                run.fill(0.0);
                for (j, row) in block.chunks(c).enumerate() {
                    add_row((task * per_task) + i * RUN + j, row, &mut run);
                }
                totals
                    .iter_mut()
                    .zip(&run)
                    .for_each(|(t, r)| *t += *r as f64);
            }
            totals
        },
        add_elementwise,
    )
    .unwrap_or_else(|| vec![0.0; width])
}

/// `a + b` element by element, reusing `a`: how per-task partial sums combine.
pub fn add_elementwise<T: std::ops::AddAssign>(mut a: Vec<T>, b: Vec<T>) -> Vec<T> {
    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
    a
}

//! Work split over the CPU's cores natively; one thread in the browser (no rayon on wasm).

/// Runs `f(index, chunk)` over `data` split into chunks of `size`.
pub(crate) fn for_each_chunk<T: Send, F>(data: &mut [T], size: usize, f: F)
where
    F: Fn(usize, &mut [T]) + Send + Sync,
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

/// Runs `f(index, [a, b, c])` over three equally long slices cut alike into chunks of `size`.
#[cfg(any(test, feature = "train"))]
pub(crate) fn for_each_chunk_of_three<F>(slices: [&mut [f32]; 3], size: usize, f: F)
where
    F: Fn(usize, [&mut [f32]; 3]) + Send + Sync,
{
    let [a, b, c] = slices;
    assert!(
        a.len() == b.len() && b.len() == c.len(),
        "slices differ in length"
    );
    let size = size.max(1);
    #[cfg(not(target_family = "wasm"))]
    {
        use rayon::prelude::*;
        a.par_chunks_mut(size)
            .zip(b.par_chunks_mut(size))
            .zip(c.par_chunks_mut(size))
            .enumerate()
            .for_each(|(i, ((a, b), c))| f(i, [a, b, c]));
    }
    #[cfg(target_family = "wasm")]
    a.chunks_mut(size)
        .zip(b.chunks_mut(size))
        .zip(c.chunks_mut(size))
        .enumerate()
        .for_each(|(i, ((a, b), c))| f(i, [a, b, c]));
}

/// A new vector of `len` values in chunks of `size` (a multiple of `start.len()`): each chunk
/// starts as `start` repeated and is then handed to `f(index, chunk)`, in parallel.
///
/// The start values are written by the core that works on the chunk, just before it does: a
/// zeroed or bias-filled output made up front is a single-threaded pass over memory (on fresh
/// pages, one that also faults them in) about as long as a layer's own work here.
pub(crate) fn new_in_chunks<F>(len: usize, size: usize, start: &[f32], f: F) -> Vec<f32>
where
    F: Fn(usize, &mut [f32]) + Send + Sync,
{
    let size = size.max(1);
    assert!(
        !start.is_empty() && size.is_multiple_of(start.len()) && len.is_multiple_of(start.len()),
        "chunks must hold whole copies of the start values"
    );
    let mut out: Vec<f32> = Vec::with_capacity(len);
    // `start` repeated to about 1024 values, copied in one piece at a time: copying a few
    // values at a time (a bias of 3 channels) is slower than the layer's own work.
    let pattern: Vec<f32> = match start {
        [_] => Vec::new(),
        _ => start.repeat((1024 / start.len()).max(1)),
    };
    let init = |i: usize, chunk: &mut [std::mem::MaybeUninit<f32>]| {
        match start {
            // One value: a plain fill, which compiles to a memset.
            [value] => chunk.iter_mut().for_each(|slot| {
                slot.write(*value);
            }),
            _ => {
                for piece in chunk.chunks_mut(pattern.len()) {
                    for (slot, v) in piece.iter_mut().zip(&pattern) {
                        slot.write(*v);
                    }
                }
            }
        }
        // SAFETY: the loop above wrote every value of the chunk: its length is a multiple of
        // `start.len()`, and so is the pattern's, so every piece is a whole number of copies.
        let chunk =
            unsafe { std::slice::from_raw_parts_mut(chunk.as_mut_ptr().cast(), chunk.len()) };
        f(i, chunk);
    };
    for_each_chunk(&mut out.spare_capacity_mut()[..len], size, init);
    // SAFETY: every chunk, and so all `len` values, was initialised above (a panic in `f` would
    // have left `out` empty).
    unsafe { out.set_len(len) };
    out
}

/// Maps every chunk of `data` (chunks of `size`) to a value and sums the values with `add`, in
/// chunk order: the chunks depend only on `size`, so the sum is the same on every run (a
/// training run resumed from a checkpoint retraces the uninterrupted one bit for bit).
pub(crate) fn map_reduce_chunks<T, M, A>(data: &[f32], size: usize, map: M, add: A) -> Option<T>
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
pub(crate) fn threads() -> usize {
    #[cfg(not(target_family = "wasm"))]
    return rayon::current_num_threads();
    #[cfg(target_family = "wasm")]
    return 1;
}

/// Rows per parallel task: about four tasks per core.
pub(crate) fn rows_per_task(rows: usize) -> usize {
    rows.div_ceil(4 * threads()).max(1)
}

/// What one row of a `[N, C]` array adds to per-channel sums (see [`channel_sums`]).
///
/// A trait rather than a closure so that implementations can be `#[inline(always)]`: the
/// summing loop is compiled for AVX2 (`wide_fn!`), and only code inlined into it gets the
/// wider vectors.
pub(crate) trait RowSums: Sync {
    /// Adds row number `index` (`row`, `C` values) to `sums`.
    fn add(&self, index: usize, row: &[f32], sums: &mut [f32]);
}

/// Per-channel sums over all rows of `rows` (`[N, c]`) of what `kernel` adds for each, `width`
/// sums in all. Each task sums runs of rows in f32 (which vectorises) and carries the running
/// totals in f64.
pub(crate) fn channel_sums(
    rows: &[f32],
    c: usize,
    width: usize,
    kernel: &impl RowSums,
) -> Vec<f64> {
    let per_task = rows_per_task(rows.len() / c.max(1));
    map_reduce_chunks(
        rows,
        per_task * c,
        |task, chunk| task_sums(chunk, c, width, task * per_task, kernel),
        add_elementwise,
    )
    .unwrap_or_else(|| vec![0.0; width])
}

super::simd::wide_fn! {
    /// [`channel_sums`] of one task's rows, the first of them row `first` of the whole.
    fn task_sums<S: RowSums>(chunk: &[f32], c: usize, width: usize, first: usize, kernel: &S) -> Vec<f64> {
        const RUN: usize = 64;
        let mut totals = vec![0f64; width];
        let mut run = vec![0f32; width];
        for (i, block) in chunk.chunks(RUN * c).enumerate() {
            run.fill(0.0);
            for (j, row) in block.chunks(c).enumerate() {
                kernel.add(first + i * RUN + j, row, &mut run);
            }
            totals
                .iter_mut()
                .zip(&run)
                .for_each(|(t, r)| *t += *r as f64);
        }
        totals
    }
}

/// How one row of a `[N, C]` array updates the same row of another (see [`for_each_row_pair`]);
/// a trait for the reason [`RowSums`] is.
#[cfg(any(test, feature = "train"))]
pub(crate) trait RowUpdate: Sync {
    /// Updates `out` (`C` values) from `row`.
    fn update(&self, row: &[f32], out: &mut [f32]);
}

/// Runs `kernel` over all row pairs of `rows` and `out`, two `[N, c]` arrays, in parallel.
#[cfg(any(test, feature = "train"))]
pub(crate) fn for_each_row_pair(rows: &[f32], out: &mut [f32], c: usize, kernel: &impl RowUpdate) {
    assert_eq!(rows.len(), out.len(), "row arrays differ in size");
    let per_task = rows_per_task(rows.len() / c.max(1));
    for_each_chunk(out, per_task * c, |task, chunk| {
        let rows = &rows[task * per_task * c..][..chunk.len()];
        task_row_pairs(rows, chunk, c, kernel);
    });
}

#[cfg(any(test, feature = "train"))]
super::simd::wide_fn! {
    /// [`for_each_row_pair`] over one task's rows.
    fn task_row_pairs<U: RowUpdate>(rows: &[f32], out: &mut [f32], c: usize, kernel: &U) {
        for (out, row) in out.chunks_mut(c).zip(rows.chunks(c)) {
            kernel.update(&row[..c], &mut out[..c]);
        }
    }
}

/// `a + b` element by element, reusing `a`: how per-task partial sums combine.
pub(crate) fn add_elementwise<T: std::ops::AddAssign>(mut a: Vec<T>, b: Vec<T>) -> Vec<T> {
    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_chunks_start_from_the_pattern() {
        let out = new_in_chunks(12, 4, &[1.0, 2.0], |i, chunk| {
            assert_eq!(chunk, [1.0, 2.0, 1.0, 2.0]);
            chunk[0] += 10.0 * i as f32;
        });
        assert_eq!(
            out,
            [1.0, 2.0, 1.0, 2.0, 11.0, 2.0, 1.0, 2.0, 21.0, 2.0, 1.0, 2.0]
        );
        // A last chunk shorter than `size`, and zeros.
        let out = new_in_chunks(5, 2, &[0.0], |i, chunk| chunk.fill(i as f32));
        assert_eq!(out, [0.0, 0.0, 1.0, 1.0, 2.0]);
    }
}

//! Moving between a channels-last grid and its 4x4 patches (stride 2, padding 1).
//!
//! A gather writes, for pixels of the half-size output grid, the input pixels their kernel
//! covers as one row each (`[ky][kx][c]`). A scatter is its adjoint: it adds every row back
//! onto the pixels it came from. A halving convolution is a gather then a matrix product; a
//! doubling transposed convolution is a matrix product then a scatter; each one's gradient uses
//! the other. Both work one [`Window`] at a time: the half-size pixels whose kernels overlap
//! the grid's edge alike, with only the taps inside the grid in their rows (no padding zeros).

use std::ops::Range;

/// A channels-last grid `[batch, height, width, channels]` (the full-size side of the pair).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Grid {
    pub(crate) batch: usize,
    pub(crate) height: usize,
    pub(crate) width: usize,
    pub(crate) channels: usize,
}

impl Grid {
    pub(crate) fn dims(&self) -> [usize; 4] {
        [self.batch, self.height, self.width, self.channels]
    }

    pub(crate) fn len(&self) -> usize {
        self.batch * self.height * self.width * self.channels
    }

    /// Pixels of the half-size grid, i.e. rows of the patch matrix.
    pub(crate) fn patch_rows(&self) -> usize {
        self.batch * (self.height / 2) * (self.width / 2)
    }

    /// Values in one patch row.
    pub(crate) fn patch_width(&self) -> usize {
        16 * self.channels
    }

    /// Kernel rows `ky` of output row `oy` that land inside the grid, with the input row each
    /// reads.
    fn rows(&self, oy: usize) -> impl Iterator<Item = (usize, usize)> {
        let height = self.height;
        (0..4).filter_map(move |ky| {
            (2 * oy + ky)
                .checked_sub(1)
                .filter(|&y| y < height)
                .map(|y| (ky, y))
        })
    }

    /// The window of taps that half-size pixel `(oy, ox)` has inside the grid.
    fn window(&self, oy: usize, ox: usize) -> Window {
        let (first_kx, _, count) = self.columns(ox);
        let mut kernel_rows = self.rows(oy).map(|(ky, _)| ky);
        let first_ky = kernel_rows
            .next()
            .expect("every pixel has a tap inside the grid");
        let last_ky = kernel_rows.last().unwrap_or(first_ky);
        Window {
            ky: (first_ky, last_ky + 1),
            kx: (first_kx, first_kx + count),
        }
    }

    /// The half-size pixels `(oy, ox)` grouped by their window: the interior (the whole
    /// kernel), each edge and each corner.
    pub(crate) fn windows(&self) -> Vec<(Window, Vec<(usize, usize)>)> {
        let mut groups: Vec<(Window, Vec<(usize, usize)>)> = Vec::new();
        for oy in 0..self.height / 2 {
            for ox in 0..self.width / 2 {
                let window = self.window(oy, ox);
                match groups.iter_mut().find(|(w, _)| *w == window) {
                    Some((_, pixels)) => pixels.push((oy, ox)),
                    None => groups.push((window, vec![(oy, ox)])),
                }
            }
        }
        groups
    }

    /// Where, in one image's values, each run of a window's patch rows starts: the runs of
    /// `window.columns() * C` values that the kernel rows of `window` read, pixel by pixel of
    /// `pixels`, in the order the patch rows hold them.
    fn window_runs<'a>(
        &self,
        window: Window,
        pixels: &'a [(usize, usize)],
    ) -> impl Iterator<Item = usize> + 'a {
        let (width, c) = (self.width, self.channels);
        pixels.iter().flat_map(move |&(oy, ox)| {
            let x = 2 * ox + window.kx.0 - 1;
            (window.ky.0..window.ky.1).map(move |ky| ((2 * oy + ky - 1) * width + x) * c)
        })
    }

    fn image_len(&self) -> usize {
        self.height * self.width * self.channels
    }

    /// For patch column `2 * ox + kx - 1` of kernel columns `0..4`: the first kernel column and
    /// the input column it reads, and how many consecutive kernel columns stay inside the grid.
    fn columns(&self, ox: usize) -> (usize, usize, usize) {
        let first_kx = usize::from(ox == 0);
        let x = 2 * ox + first_kx - 1;
        let count = (4 - first_kx).min(self.width - x);
        (first_kx, x, count)
    }
}

/// The taps of the 4x4 kernel that land inside the grid for one half-size pixel: kernel rows
/// `ky.0..ky.1` and columns `kx.0..kx.1`. Padding leaves an edge pixel 12 of the 16 taps and a
/// corner pixel 9; a product that skips the others does a quarter less work on a 4x4 map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) ky: (usize, usize),
    pub(crate) kx: (usize, usize),
}

impl Window {
    pub(crate) fn rows(&self) -> usize {
        self.ky.1 - self.ky.0
    }

    pub(crate) fn columns(&self) -> usize {
        self.kx.1 - self.kx.0
    }

    pub(crate) fn taps(&self) -> usize {
        self.rows() * self.columns()
    }

    /// The window's taps for `c` channels as runs that are contiguous on both sides: each run's
    /// columns in a window row (`[taps * C]`) and in a full patch row (`[16 C]`, `[ky][kx][c]`).
    /// Whole kernel rows make one run; a window cut at the side, one run per kernel row.
    pub(crate) fn runs(&self, c: usize) -> Vec<(Range<usize>, Range<usize>)> {
        if self.kx == (0, 4) {
            let full = self.ky.0 * 4 * c..self.ky.1 * 4 * c;
            return vec![(0..full.len(), full)];
        }
        let span = self.columns() * c;
        (self.ky.0..self.ky.1)
            .enumerate()
            .map(|(i, ky)| {
                let first = (ky * 4 + self.kx.0) * c;
                (i * span..(i + 1) * span, first..first + span)
            })
            .collect()
    }
}

/// `values [B, H, W, C]` -> the patch rows of the half-size pixels `pixels` of every image,
/// holding only the taps of `window`: `[B * pixels, taps * C]` (taps `[ky][kx]`), image by
/// image. Every value of `patches` is written, so it may hold anything beforehand.
pub(crate) fn gather_window(
    values: &[f32],
    grid: Grid,
    window: Window,
    pixels: &[(usize, usize)],
    patches: &mut [f32],
) {
    let c = grid.channels;
    let (row, span) = (window.taps() * c, window.columns() * c);
    assert_eq!(values.len(), grid.len(), "gather: grid size");
    assert_eq!(
        patches.len(),
        grid.batch * pixels.len() * row,
        "gather: patch matrix size"
    );
    let image_patches = patches.chunks_exact_mut(pixels.len() * row);
    for (image, patches) in values.chunks(grid.image_len()).zip(image_patches) {
        let runs = grid.window_runs(window, pixels);
        for (start, to) in runs.zip(patches.chunks_exact_mut(span)) {
            to.copy_from_slice(&image[start..][..span]);
        }
    }
}

/// Copies the rows of the half-size pixels `pixels` of every image out of `rows`, one row of
/// `width` values per half-size pixel (`[B * H/2 * W/2, width]`), into `to`, image by image.
pub(crate) fn pick_rows(
    rows: &[f32],
    grid: Grid,
    pixels: &[(usize, usize)],
    width: usize,
    to: &mut [f32],
) {
    let (per_image, wo) = ((grid.height / 2) * (grid.width / 2), grid.width / 2);
    assert_eq!(rows.len(), grid.batch * per_image * width, "rows: size");
    assert_eq!(
        to.len(),
        grid.batch * pixels.len() * width,
        "picked rows: size"
    );
    let mut to = to.chunks_exact_mut(width);
    for image in rows.chunks_exact(per_image * width) {
        for (&(oy, ox), to) in pixels.iter().zip(&mut to) {
            to.copy_from_slice(&image[(oy * wo + ox) * width..][..width]);
        }
    }
}

super::simd::wide_fn! {
    /// Adds rows laid out as [`pick_rows`] leaves them back onto their places in `rows`.
    pub(crate) fn add_picked_rows(
        from: &[f32],
        grid: Grid,
        pixels: &[(usize, usize)],
        width: usize,
        rows: &mut [f32],
    ) {
        let (per_image, wo) = ((grid.height / 2) * (grid.width / 2), grid.width / 2);
        assert_eq!(rows.len(), grid.batch * per_image * width, "rows: size");
        assert_eq!(from.len(), grid.batch * pixels.len() * width, "picked rows: size");
        let mut from = from.chunks_exact(width);
        for image in rows.chunks_exact_mut(per_image * width) {
            for (&(oy, ox), from) in pixels.iter().zip(&mut from) {
                let to = &mut image[(oy * wo + ox) * width..][..width];
                to.iter_mut().zip(from).for_each(|(t, f)| *t += f);
            }
        }
    }
}

super::simd::wide_fn! {
    /// Adds patch rows that hold only the taps of `window` onto `values [B, H, W, C]`, summing
    /// where patches overlap: rows `[B * pixels, taps * C]` (taps `[ky][kx]`), image by image
    /// and in each image one per half-size pixel of `pixels`: the adjoint of [`gather_window`].
    pub(crate) fn scatter_add_window(
        patches: &[f32],
        grid: Grid,
        window: Window,
        pixels: &[(usize, usize)],
        values: &mut [f32],
    ) {
        let c = grid.channels;
        let (row, span) = (window.taps() * c, window.columns() * c);
        assert_eq!(
            patches.len(),
            grid.batch * pixels.len() * row,
            "scatter: patch matrix size"
        );
        assert_eq!(values.len(), grid.len(), "scatter: grid size");
        let image_patches = patches.chunks_exact(pixels.len() * row);
        for (image, patches) in values.chunks_mut(grid.image_len()).zip(image_patches) {
            let runs = grid.window_runs(window, pixels);
            for (start, from) in runs.zip(patches.chunks_exact(span)) {
                let to = &mut image[start..][..span];
                to.iter_mut().zip(from).for_each(|(t, f)| *t += f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> Grid {
        Grid {
            batch: 2,
            height: 4,
            width: 6,
            channels: 3,
        }
    }

    fn ramp(n: usize) -> Vec<f32> {
        (0..n).map(|i| i as f32 * 0.5 - 3.0).collect()
    }

    /// Straight from the definition: patch (b, oy, ox) tap (ky, kx) reads pixel
    /// (2 oy + ky - 1, 2 ox + kx - 1) when it lies inside the grid.
    fn gather_by_definition(values: &[f32], g: Grid) -> Vec<f32> {
        let mut out = Vec::new();
        for b in 0..g.batch {
            for oy in 0..g.height / 2 {
                for ox in 0..g.width / 2 {
                    for ky in 0..4 {
                        for kx in 0..4 {
                            for ch in 0..g.channels {
                                let (y, x) = (2 * oy + ky, 2 * ox + kx);
                                let inside =
                                    (1..=g.height).contains(&y) && (1..=g.width).contains(&x);
                                out.push(if inside {
                                    values[((b * g.height + y - 1) * g.width + x - 1) * g.channels
                                        + ch]
                                } else {
                                    0.0
                                });
                            }
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn windows_hold_every_tap_inside_the_grid() {
        for g in [
            grid(),
            Grid {
                batch: 1,
                height: 8,
                width: 2,
                channels: 2,
            },
        ] {
            let values = ramp(g.len());
            let full = gather_by_definition(&values, g);
            let (per_image, wo, c) = ((g.height / 2) * (g.width / 2), g.width / 2, g.channels);
            let mut taps_seen = vec![false; full.len()];
            for (window, pixels) in g.windows() {
                // Whatever the buffer held before is overwritten.
                let mut patches = vec![f32::NAN; g.batch * pixels.len() * window.taps() * c];
                gather_window(&values, g, window, &pixels, &mut patches);
                let mut expected = Vec::new();
                for b in 0..g.batch {
                    for &(oy, ox) in &pixels {
                        let row = ((b * per_image) + oy * wo + ox) * g.patch_width();
                        for ky in window.ky.0..window.ky.1 {
                            let taps =
                                row + (ky * 4 + window.kx.0) * c..row + (ky * 4 + window.kx.1) * c;
                            taps_seen[taps.clone()].fill(true);
                            expected.extend_from_slice(&full[taps]);
                        }
                    }
                }
                assert_eq!(patches, expected, "{window:?}");
            }
            // The taps no window holds are the padding: zeros by definition.
            for (value, seen) in full.iter().zip(taps_seen) {
                assert!(seen || *value == 0.0);
            }
        }
    }

    #[test]
    fn windowed_scatter_is_the_adjoint_of_the_gather() {
        // <gather(v), p> == <v, scatter(p)> for all v, p is what makes one the other's gradient.
        let g = grid();
        let values = ramp(g.len());
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x * y) as f64).sum::<f64>();
        let (mut left, mut scattered) = (0.0, vec![0f32; g.len()]);
        for (window, pixels) in g.windows() {
            let len = g.batch * pixels.len() * window.taps() * g.channels;
            let patches: Vec<f32> = (0..len).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
            let mut gathered = vec![0f32; len];
            gather_window(&values, g, window, &pixels, &mut gathered);
            left += dot(&gathered, &patches);
            scatter_add_window(&patches, g, window, &pixels, &mut scattered);
        }
        let right = dot(&values, &scattered);
        assert!(
            (left - right).abs() < 1e-6 * left.abs().max(1.0),
            "{left} vs {right}"
        );
    }

    #[test]
    fn picked_rows_go_back_to_their_places() {
        let g = grid();
        let width = 2;
        let rows = ramp(g.patch_rows() * width);
        let mut back = vec![0f32; rows.len()];
        for (_, pixels) in g.windows() {
            let mut picked = vec![0f32; g.batch * pixels.len() * width];
            pick_rows(&rows, g, &pixels, width, &mut picked);
            add_picked_rows(&picked, g, &pixels, width, &mut back);
        }
        assert_eq!(back, rows);
    }

    #[test]
    fn windows_of_a_4x4_map() {
        let g = Grid {
            batch: 1,
            height: 8,
            width: 8,
            channels: 1,
        };
        let windows = g.windows();
        // Interior, four edges, four corners.
        assert_eq!(windows.len(), 9);
        let taps: usize = windows
            .iter()
            .map(|(w, pixels)| w.taps() * pixels.len())
            .sum();
        assert_eq!(taps, 14 * 14, "(4 * 4 - 2)^2 taps inside an 8x8 grid");
    }
}

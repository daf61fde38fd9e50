//! Readers of the files a dataset on disk is made of: image files (PNG, JPEG), the `images`
//! array of npz archives, and CSV rows of 784 grey values. Each turns its images into bytes of
//! one shape, channels-first, resized to the size a model is trained at.

use anyhow::{Context as _, Result, bail};
use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageReader};
use intervene::config::ImageShape;
use rayon::prelude::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// MNIST's side, the only one the CSV layout holds.
const CSV_SIDE: usize = 28;
/// A CSV row: 784 pixel values, optionally followed by the paper's two extra columns.
const CSV_FIELDS: [usize; 2] = [CSV_SIDE * CSV_SIDE, CSV_SIDE * CSV_SIDE + 2];
/// Image files decoded in parallel at a time (bounds memory while decoding).
const CHUNK: usize = 1024;

/// Where the images of one context and split are.
pub(crate) enum Source {
    /// Image files, in name order.
    Files(Vec<PathBuf>),
    /// The `images` array of an npz archive: `count` images of `[side, side, channels]` or
    /// `[channels, side, side]`.
    Npz { path: PathBuf, count: usize },
    /// Rows of a CSV file.
    Csv { path: PathBuf, count: usize },
}

impl Source {
    pub fn len(&self) -> usize {
        match self {
            Source::Files(files) => files.len(),
            Source::Npz { count, .. } | Source::Csv { count, .. } => *count,
        }
    }

    /// The files' images split into (kept, held out): one in `one_in` held out, chosen by a
    /// hash of the file name, so adding files moves no other file between splits.
    pub fn split_by_name(self, one_in: u32) -> (Source, Source) {
        match self {
            Source::Files(files) => {
                let (held_out, kept): (Vec<PathBuf>, Vec<PathBuf>) =
                    files.into_iter().partition(|path| {
                        let name = path.file_name().unwrap_or_default().as_encoded_bytes();
                        crc32fast::hash(name).is_multiple_of(one_in)
                    });
                (Source::Files(kept), Source::Files(held_out))
            }
            other => (other, Source::Files(Vec::new())),
        }
    }

    /// The files this source reads.
    pub fn paths(&self) -> Vec<&Path> {
        match self {
            Source::Files(files) => files.iter().map(PathBuf::as_path).collect(),
            Source::Npz { path, .. } | Source::Csv { path, .. } => vec![path.as_path()],
        }
    }
}

/// Reads one file as a dataset on disk would (an image, an npz archive or an MNIST CSV, by its
/// extension) and returns how many images it holds, decoded at `size` px: for the fuzz targets
/// (`fuzz/src/bin/npz.rs`, `csv.rs`).
pub fn read_file(path: &Path, size: usize) -> Result<usize> {
    let source = match path.extension().and_then(|e| e.to_str()) {
        Some("csv") => csv_source(path)?,
        Some("npz") => npz_source(path)?,
        _ => Source::Files(vec![path.to_path_buf()]),
    };
    if source.len() == 0 {
        return Ok(0);
    }
    let (dims, colour) = native(&source)?;
    let channels = if colour && size != 28 { 3 } else { 1 };
    let shape = ImageShape { channels, size };
    let mut count = 0;
    decode(&source, dims, shape, &mut |image| {
        assert_eq!(image.len(), shape.numel());
        count += 1;
        Ok(())
    })?;
    Ok(count)
}

/// One image file (PNG or JPEG) as a model reads it: `shape`'s size (resized if it is not),
/// channels-first values in `[0, 1]`. A grey image is refused for a colour model, whose noise it
/// could not hold; a colour image for a grey model is turned grey.
pub fn read_image(path: &Path, shape: ImageShape) -> Result<Vec<f32>> {
    let image = decode_image(path, image_decoder(path)?)?;
    if shape.channels == 3 && !image.color().has_color() {
        bail!(
            "{}: a grey image, but this model was trained on colour images",
            path.display()
        );
    }
    let bytes = channels_first(image, shape);
    Ok(bytes.iter().map(|&b| f32::from(b) / 255.0).collect())
}

/// The most pixels an image file may have (a 24-megapixel camera's photos fit). Checked from its
/// header before it is decoded: a few hundred bytes of JPEG can declare over 100 megapixels, which
/// took 12 s and 700 MB to decode before this check (found by the `edit_image` fuzz target).
pub const MAX_IMAGE_PIXELS: u64 = 25_000_000;

/// The limit in force in this process: [`MAX_IMAGE_PIXELS`] unless [`limit_image_pixels`] says
/// otherwise.
static PIXEL_LIMIT: AtomicU64 = AtomicU64::new(MAX_IMAGE_PIXELS);

/// Lowers the pixel limit for the rest of the process. For the fuzz targets: reading time grows
/// with the pixels an image declares (a 700-byte JPEG declaring 16 megapixels reads in 0.7 s,
/// in 8 s instrumented on a shared core), and their hang limit is meant for hangs, not for big
/// pictures.
pub fn limit_image_pixels(max: u64) {
    PIXEL_LIMIT.store(max, Ordering::Relaxed);
}

/// An image file's decoder (its header read, the format guessed from its bytes), if the image
/// has at most [`MAX_IMAGE_PIXELS`] (or the lowered limit).
fn image_decoder(path: &Path) -> Result<impl ImageDecoder> {
    let decoder = ImageReader::open(path)
        .and_then(ImageReader::with_guessed_format)
        .with_context(|| format!("cannot read {}", path.display()))?
        .into_decoder()
        .with_context(|| format!("{}: not a readable image", path.display()))?;
    let (w, h) = decoder.dimensions();
    let limit = PIXEL_LIMIT.load(Ordering::Relaxed);
    if u64::from(w) * u64::from(h) > limit {
        bail!(
            "{}: {w}x{h} px, more than the {} megapixels an image may have (scale it down first)",
            path.display(),
            limit as f64 / 1e6
        );
    }
    Ok(decoder)
}

/// The image a decoder reads.
fn decode_image(path: &Path, decoder: impl ImageDecoder) -> Result<DynamicImage> {
    DynamicImage::from_decoder(decoder)
        .with_context(|| format!("{}: not a readable image", path.display()))
}

pub(crate) fn is_image(path: &Path) -> bool {
    path.extension().is_some_and(|e| {
        matches!(
            e.to_ascii_lowercase().to_str(),
            Some("png" | "jpg" | "jpeg")
        )
    })
}

/// The images' own width and height, and whether they have colour, from the first image.
pub(crate) fn native(source: &Source) -> Result<((usize, usize), bool)> {
    match source {
        Source::Files(files) => {
            let path = files.first().context("no images to read")?;
            let decoder = image_decoder(path)?;
            let (w, h) = decoder.dimensions();
            Ok(((w as usize, h as usize), decoder.color_type().has_color()))
        }
        Source::Npz { path, .. } => {
            let layout = NpzLayout::read(path)?;
            Ok(((layout.side, layout.side), layout.channels == 3))
        }
        Source::Csv { .. } => Ok(((CSV_SIDE, CSV_SIDE), false)),
    }
}

/// A CSV source: its rows are counted now and checked when decoded.
pub(crate) fn csv_source(path: &Path) -> Result<Source> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut count = 0;
    for line in BufReader::new(file).split(b'\n') {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        count += usize::from(!line.trim_ascii().is_empty());
    }
    Ok(Source::Csv {
        path: path.to_path_buf(),
        count,
    })
}

/// An npz source: its `images` array's header is read and checked now.
pub(crate) fn npz_source(path: &Path) -> Result<Source> {
    let layout = NpzLayout::read(path)?;
    Ok(Source::Npz {
        path: path.to_path_buf(),
        count: layout.count,
    })
}

/// Decodes every image of `source` into `shape` (channels-first bytes), in order, handing each
/// to `sink`. Every image must be `dims` (width, height) large.
pub(crate) fn decode(
    source: &Source,
    dims: (usize, usize),
    shape: ImageShape,
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    match source {
        Source::Files(files) => {
            for chunk in files.chunks(CHUNK) {
                let images: Vec<Vec<u8>> = chunk
                    .par_iter()
                    .map(|path| decode_file(path, dims, shape))
                    .collect::<Result<_>>()?;
                for image in &images {
                    sink(image)?;
                }
            }
            Ok(())
        }
        Source::Npz { path, count } => decode_npz(path, *count, shape, sink),
        Source::Csv { path, count } => decode_csv(path, *count, shape, sink),
    }
}

fn decode_file(path: &Path, dims: (usize, usize), shape: ImageShape) -> Result<Vec<u8>> {
    let decoder = image_decoder(path)?;
    let (w, h) = decoder.dimensions();
    if (w as usize, h as usize) != dims {
        bail!(
            "{}: {w}x{h} px, but the dataset's first image is {}x{} (all images must be one size)",
            path.display(),
            dims.0,
            dims.1
        );
    }
    Ok(channels_first(decode_image(path, decoder)?, shape))
}

/// How much larger than the model's side an image may be before [`channels_first`] averages
/// boxes of pixels (`thumbnail`) ahead of the Triangle filter, whose cost grows with the source:
/// a camera photo resized straight to 32 px spends as long resizing as decoding.
const PRESHRINK_FACTOR: u32 = 4;

/// An image as `shape`: converted to grey or colour, resized, channels-first bytes.
fn channels_first(image: DynamicImage, shape: ImageShape) -> Vec<u8> {
    let side = shape.size as u32;
    let bound = side.saturating_mul(PRESHRINK_FACTOR);
    let image = match image.width() > bound || image.height() > bound {
        true => image.thumbnail_exact(image.width().min(bound), image.height().min(bound)),
        false => image,
    };
    let fits = image.width() == side && image.height() == side;
    if shape.channels == 1 {
        let grey = image.to_luma8();
        return match fits {
            true => grey.into_raw(),
            false => image::imageops::resize(&grey, side, side, FilterType::Triangle).into_raw(),
        };
    }
    let rgb = image.to_rgb8();
    let rgb = match fits {
        true => rgb,
        false => image::imageops::resize(&rgb, side, side, FilterType::Triangle),
    };
    let pixels = shape.pixels();
    let mut out = vec![0u8; 3 * pixels];
    for (p, value) in rgb.pixels().enumerate() {
        for c in 0..3 {
            out[c * pixels + p] = value.0[c];
        }
    }
    out
}

/// How an npz archive's `images` array is laid out.
struct NpzLayout {
    count: usize,
    side: usize,
    channels: usize,
    /// `[N, C, S, S]` rather than `[N, S, S, C]` (or `[N, S, S]`).
    channels_first: bool,
}

impl NpzLayout {
    fn read(path: &Path) -> Result<Self> {
        let mut archive = npyz::npz::NpzArchive::open(path)
            .with_context(|| format!("{}: not a readable npz archive", path.display()))?;
        let array = archive
            .by_name("images")
            .with_context(|| format!("{}: not a readable npz archive", path.display()))?
            .with_context(|| format!("{}: the archive has no images array", path.display()))?;
        let shape: Vec<usize> = array.shape().iter().map(|&d| d as usize).collect();
        let layout = match shape[..] {
            [n, s, t] if s == t => (n, s, 1, false),
            [n, s, t, c @ (1 | 3)] if s == t => (n, s, c, false),
            [n, c @ (1 | 3), s, t] if s == t => (n, s, c, true),
            _ => bail!(
                "{}: images has shape {shape:?}; expected [N, S, S], [N, S, S, C] or [N, C, S, S] with C 1 or 3",
                path.display()
            ),
        };
        let (count, side, channels, channels_first) = layout;
        if side == 0 || side > 4096 {
            bail!(
                "{}: images are {side} px; 1 to 4096 are read",
                path.display()
            );
        }
        Ok(Self {
            count,
            side,
            channels,
            channels_first,
        })
    }

    fn image_len(&self) -> usize {
        self.channels * self.side * self.side
    }

    /// One image's values (in the array's order) as an image.
    fn image(&self, values: Vec<u8>) -> DynamicImage {
        let (side, pixels) = (self.side as u32, self.side * self.side);
        let interleaved = match (self.channels_first, self.channels) {
            (true, 3) => (0..3 * pixels)
                .map(|i| values[(i % 3) * pixels + i / 3])
                .collect(),
            _ => values,
        };
        match self.channels {
            3 => DynamicImage::ImageRgb8(
                image::RgbImage::from_raw(side, side, interleaved).expect("sized above"),
            ),
            _ => DynamicImage::ImageLuma8(
                image::GrayImage::from_raw(side, side, interleaved).expect("sized above"),
            ),
        }
    }
}

fn decode_npz(
    path: &Path,
    count: usize,
    shape: ImageShape,
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let layout = NpzLayout::read(path)?;
    let mut archive = npyz::npz::NpzArchive::open(path)
        .with_context(|| format!("{}: not a readable npz archive", path.display()))?;
    let array = archive
        .by_name("images")?
        .with_context(|| format!("{}: the archive has no images array", path.display()))?;
    let truncated = || format!("{}: the images array is truncated", path.display());
    // uint8 as it is; floats are read as values in [0, 1].
    let mut values: Box<dyn Iterator<Item = std::io::Result<u8>>> = match array.try_data::<u8>() {
        Ok(data) => Box::new(data),
        Err(array) => match array.try_data::<f32>() {
            Ok(data) => Box::new(data.map(|v| v.map(unit_to_byte))),
            Err(array) => bail!(
                "{}: images are {}; uint8 or float32 are read",
                path.display(),
                array.dtype().descr()
            ),
        },
    };
    let len = layout.image_len();
    for _ in 0..count {
        let image: Vec<u8> = values
            .by_ref()
            .take(len)
            .collect::<std::io::Result<_>>()
            .with_context(truncated)?;
        if image.len() != len {
            bail!(truncated());
        }
        sink(&channels_first(layout.image(image), shape))?;
    }
    Ok(())
}

fn unit_to_byte(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

fn decode_csv(
    path: &Path,
    count: usize,
    shape: ImageShape,
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut rows = 0;
    for record in reader.records() {
        let record = record.with_context(|| format!("cannot read {}", path.display()))?;
        let line = record.position().map_or(rows + 1, |p| p.line() as usize);
        if !CSV_FIELDS.contains(&record.len()) {
            bail!(
                "{}:{line}: {} values; a row holds 784 pixel values (then two extra columns)",
                path.display(),
                record.len()
            );
        }
        let mut pixels = Vec::with_capacity(CSV_FIELDS[0]);
        for field in record.iter().take(CSV_FIELDS[0]) {
            let value: f32 = field
                .trim()
                .parse()
                .ok()
                .filter(|v: &f32| v.is_finite())
                .with_context(|| format!("{}:{line}: '{field}' is not a number", path.display()))?;
            pixels.push(value);
        }
        // Values in [0, 1] (the paper's normalised files) or in [0, 255].
        let scale = if pixels.iter().any(|&v| v > 1.0) {
            1.0
        } else {
            255.0
        };
        let grey: Vec<u8> = pixels
            .iter()
            .map(|&v| (v * scale).clamp(0.0, 255.0).round() as u8)
            .collect();
        let side = CSV_SIDE as u32;
        let image = image::GrayImage::from_raw(side, side, grey).expect("784 values");
        sink(&channels_first(DynamicImage::ImageLuma8(image), shape))?;
        rows += 1;
    }
    if rows != count {
        bail!(
            "{}: {rows} rows, but {count} were counted (the file changed while read)",
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_first_resizes_and_converts() {
        let image = DynamicImage::ImageRgb8(image::RgbImage::from_fn(4, 4, |x, _| {
            image::Rgb([10 * x as u8, 100, 200])
        }));
        let colour = ImageShape {
            channels: 3,
            size: 4,
        };
        let bytes = channels_first(image.clone(), colour);
        assert_eq!(&bytes[..4], &[0, 10, 20, 30], "red plane first, row by row");
        assert!(bytes[16..32].iter().all(|&v| v == 100));
        let grey = ImageShape {
            channels: 1,
            size: 2,
        };
        assert_eq!(channels_first(image, grey).len(), 4);
    }

    #[test]
    fn a_large_image_is_shrunk_to_the_same_picture() {
        // Left half black, right half white, 40 times the model's side: the box pre-shrink keeps
        // the picture (the halves stay apart, the seam stays in the middle).
        let image = DynamicImage::ImageRgb8(image::RgbImage::from_fn(320, 200, |x, _| {
            image::Rgb([if x < 160 { 0 } else { 255 }; 3])
        }));
        let shape = ImageShape {
            channels: 3,
            size: 8,
        };
        let bytes = channels_first(image, shape);
        assert_eq!(bytes.len(), 3 * 64);
        for row in bytes[..64].chunks(8) {
            assert!(row[..3].iter().all(|&v| v < 10), "{row:?}");
            assert!(row[5..].iter().all(|&v| v > 245), "{row:?}");
        }
    }

    #[test]
    fn held_out_files_are_chosen_by_name_alone() {
        let files: Vec<PathBuf> = (0..200)
            .map(|i| PathBuf::from(format!("a/{i}.png")))
            .collect();
        let (kept, held) = Source::Files(files.clone()).split_by_name(10);
        assert_eq!(kept.len() + held.len(), 200);
        assert!((8..=35).contains(&held.len()), "{} held out", held.len());
        let moved: Vec<PathBuf> = files
            .iter()
            .map(|p| PathBuf::from("b").join(p.file_name().unwrap()))
            .collect();
        let (_, held_again) = Source::Files(moved).split_by_name(10);
        assert_eq!(held_again.len(), held.len());
    }

    #[test]
    fn an_image_of_too_many_pixels_is_refused_before_it_is_decoded() {
        let tmp = tempfile::tempdir().unwrap();
        let shape = ImageShape {
            channels: 1,
            size: 28,
        };
        for (side, fits) in [(5000, true), (5001, false)] {
            let path = tmp.path().join(format!("{side}.png"));
            image::GrayImage::new(side, side).save(&path).unwrap();
            match read_image(&path, shape) {
                Ok(image) => assert!(fits && image.len() == 28 * 28),
                Err(e) => assert!(
                    !fits && format!("{e:#}").contains("5001x5001 px, more than the 25 megapixels"),
                    "{e:#}"
                ),
            }
        }
    }
}

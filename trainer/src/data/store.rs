//! The decoded images of a dataset on disk at one size: one uint8 file, channels-first images
//! one after another, memory-mapped. A dataset is decoded once per size; later commands map
//! the file (the paper's quad, 350,000 images at 64 px, is 4.3 GB of bytes, 17 GB as floats).
//!
//! The file's name carries a fingerprint of every source file's path, length and modification
//! time, and of the shape, so a changed dataset is decoded again rather than read stale.

use super::folder::Part;
use super::readers;
use crate::files::stage;
use crate::progress::Progress;
use anyhow::{Context as _, Result, bail};
use intervene::config::ImageShape;
use memmap2::Mmap;
use std::hash::{Hash, Hasher};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Changes whenever the file's contents would (readers, resizing).
const FORMAT_VERSION: u32 = 1;

pub(crate) struct Store {
    map: Mmap,
    image_len: usize,
}

impl Store {
    /// Maps the cached images of `parts` at `shape`, decoding them first if there is no cache.
    pub fn open_or_build(
        cache: &Path,
        root: &Path,
        parts: &[Part],
        dims: (usize, usize),
        shape: ImageShape,
    ) -> Result<Self> {
        let count: usize = parts.iter().map(|p| p.source.len()).sum();
        let image_len = shape.numel();
        let bytes = count
            .checked_mul(image_len)
            .context("the dataset is too large to cache")?;
        let path = cache_path(cache, root, parts, shape)?;
        let fresh = std::fs::metadata(&path).is_ok_and(|m| m.len() == bytes as u64);
        if !fresh {
            build(&path, root, parts, dims, shape, count)?;
        }
        let file = std::fs::File::open(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        // SAFETY: the file is only ever written whole under a temporary name and renamed into
        // place, never modified where it is; its length was checked above.
        let map = unsafe { Mmap::map(&file) }
            .with_context(|| format!("cannot map {}", path.display()))?;
        if map.len() != bytes {
            bail!(
                "{} has the wrong length; delete it to decode again",
                path.display()
            );
        }
        Ok(Self { map, image_len })
    }

    /// Image `index`'s bytes, channels-first.
    pub fn image(&self, index: usize) -> &[u8] {
        &self.map[index * self.image_len..(index + 1) * self.image_len]
    }
}

/// Decodes every part into the cache file, with a progress bar; nothing is left behind on
/// failure.
fn build(
    path: &Path,
    root: &Path,
    parts: &[Part],
    dims: (usize, usize),
    shape: ImageShape,
    count: usize,
) -> Result<()> {
    let folder = path.parent().expect("the cache file is in a folder");
    std::fs::create_dir_all(folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    let progress = Progress::new();
    let started = std::time::Instant::now();
    let bar = progress.bar("decode", count);
    let written = (|| -> Result<()> {
        let cannot = || format!("cannot write {}", path.display());
        let staged = stage(path).with_context(cannot)?;
        let mut out = BufWriter::with_capacity(1 << 20, staged);
        for part in parts {
            readers::decode(&part.source, dims, shape, &mut |image| {
                bar.inc(1);
                out.write_all(image).with_context(cannot)
            })?;
        }
        let staged = out
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(cannot)?;
        staged.as_file().sync_all().with_context(cannot)?;
        staged
            .persist(path)
            .map_err(|e| e.error)
            .with_context(cannot)?;
        Ok(())
    })();
    bar.finish_and_clear();
    // A failed write's staged file is gone with it.
    if written.is_ok() {
        progress.line(format!(
            "decoded {count} images of {} at {} px in {:.1} s, once: cached in {}",
            root.display(),
            shape.size,
            started.elapsed().as_secs_f64(),
            path.display()
        ));
    }
    written
}

/// `<cache>/data/<folder name>-<fingerprint>/<size>px-<channels>ch.u8`.
fn cache_path(cache: &Path, root: &Path, parts: &[Part], shape: ImageShape) -> Result<PathBuf> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (FORMAT_VERSION, root).hash(&mut hasher);
    for part in parts {
        (part.context, part.split == intervene::data::Split::HeldOut).hash(&mut hasher);
        for file in part.source.paths() {
            let meta = std::fs::metadata(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            (file, meta.len(), meta.modified().ok()).hash(&mut hasher);
        }
    }
    let name = root
        .file_name()
        .map_or("data".into(), |n| n.to_string_lossy().into_owned());
    Ok(cache
        .join("data")
        .join(format!("{name}-{:016x}", hasher.finish()))
        .join(format!("{}px-{}ch.u8", shape.size, shape.channels)))
}

/// `$INTERVENE_CACHE`, else the user's cache folder (`$XDG_CACHE_HOME` or `~/.cache`), else the
/// temporary folder.
pub(crate) fn cache_root() -> PathBuf {
    let env = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("INTERVENE_CACHE")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("intervene")))
        .or_else(|| env("HOME").map(|d| d.join(".cache").join("intervene")))
        .unwrap_or_else(|| std::env::temp_dir().join("intervene-cache"))
}

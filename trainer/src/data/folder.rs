//! Datasets read from disk (`--data DIR`): the plain folder layout a user makes, and the
//! layouts of the paper's released data. docs/method.md#your-own-data describes them.
//!
//! Opening a folder only lists it and reads one image header; the images are decoded once per
//! image size into a memory-mapped uint8 cache ([`super::store`]) when a command first needs
//! them ([`Dataset::prepare`]).

use super::readers::{self, Source};
use super::store::Store;
use anyhow::{Context as _, Result, bail};
use intervene::config::ImageShape;
use intervene::context::{Context, MAX_CONCEPTS};
use intervene::data::{Dataset, Examples, Recipes, Split};
use intervene::rng::Rng;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Image sides a dataset on disk can be drawn at: the backbones' (grey at 28, colour at 32 or
/// 64).
const SIZES: [usize; 3] = [28, 32, 64];

/// One held-out image in this many, chosen by a hash of its file name, where a folder does not
/// say which images are held out.
const HELD_OUT_ONE_IN: u32 = 10;

/// Images of one context and split, from one source.
pub(super) struct Part {
    pub context: Context,
    pub split: Split,
    pub source: Source,
}

/// A dataset on disk; the drawn examples share its store.
pub struct FolderDataset(Arc<Folder>);

struct Folder {
    root: PathBuf,
    /// Where decoded images are kept.
    cache: PathBuf,
    /// Which layout the folder was read as, for messages.
    layout: &'static str,
    concepts: Vec<String>,
    composed: Vec<Context>,
    parts: Vec<Part>,
    /// The images' own width and height (every image must have them).
    dims: (usize, usize),
    /// The backbone's shape nearest to the images' own.
    native: ImageShape,
    /// Decoded images, by side; read for every rendered image, so readers do not wait on each
    /// other.
    stores: RwLock<HashMap<usize, Arc<Store>>>,
}

/// What a layout scan finds: a context's folder name (`obs`, a concept, or a composed name),
/// the split its images belong to (`None`: not said), and where they are.
struct Found {
    name: String,
    split: Option<Split>,
    source: Source,
}

impl FolderDataset {
    /// Opens `root`, caching its decoded images under `cache`.
    pub fn open_with_cache(root: &Path, cache: &Path) -> Result<Self> {
        Folder::open(root, cache).map(|folder| Self(Arc::new(folder)))
    }

    /// Which layout the folder was read as.
    pub fn layout(&self) -> &'static str {
        self.0.layout
    }
}

impl Folder {
    fn open(root: &Path, cache: &Path) -> Result<Self> {
        if !root.is_dir() {
            bail!("{} is not a folder", root.display());
        }
        let (layout, found) = scan(root)?;
        let (concepts, composed, parts) = resolve(root, found)?;
        let (dims, colour) = readers::native(&parts[0].source)?;
        // The backbone's size nearest to the images' own.
        let native = match (colour, dims.0.min(dims.1)) {
            (false, _) => ImageShape {
                channels: 1,
                size: 28,
            },
            (true, side) => ImageShape {
                channels: 3,
                size: if side < 48 { 32 } else { 64 },
            },
        };
        Ok(Self {
            root: root.to_path_buf(),
            cache: cache.to_path_buf(),
            layout,
            concepts,
            composed,
            parts,
            dims,
            native,
            stores: RwLock::default(),
        })
    }

    /// The decoded images at `size` px: from the cache, decoding them first if needed.
    fn store(&self, size: usize) -> Result<Arc<Store>> {
        if let Some(store) = self.stores.read().unwrap().get(&size) {
            return Ok(store.clone());
        }
        let shape = image_shape(size).map_err(anyhow::Error::msg)?;
        let mut stores = self.stores.write().unwrap();
        if let Some(store) = stores.get(&size) {
            return Ok(store.clone());
        }
        let store = Arc::new(Store::open_or_build(
            &self.cache,
            &self.root,
            &self.parts,
            self.dims,
            shape,
        )?);
        stores.insert(size, store.clone());
        Ok(store)
    }

    /// The store's image ranges of `context` in `split`.
    fn ranges(&self, context: Context, split: Split) -> Vec<Range<usize>> {
        let mut start = 0;
        let mut ranges = Vec::new();
        for part in &self.parts {
            let len = part.source.len();
            if part.context == context && part.split == split {
                ranges.push(start..start + len);
            }
            start += len;
        }
        ranges
    }

    /// The images a draw picks from: the split's own, or the other split's where it has none
    /// (composed contexts have no training images; a small context may have no held-out ones).
    fn pool(&self, context: Context, split: Split) -> Vec<u32> {
        let other = match split {
            Split::Training => Split::HeldOut,
            Split::HeldOut => Split::Training,
        };
        let mut ranges = self.ranges(context, split);
        if ranges.iter().all(Range::is_empty) {
            ranges = self.ranges(context, other);
        }
        ranges.into_iter().flatten().map(|i| i as u32).collect()
    }
}

impl Dataset for FolderDataset {
    fn name(&self) -> String {
        self.0
            .root
            .file_name()
            .map_or("data".into(), |n| n.to_string_lossy().into_owned())
    }

    fn concepts(&self) -> Vec<String> {
        self.0.concepts.clone()
    }

    fn composed_contexts(&self) -> Vec<Context> {
        self.0.composed.clone()
    }

    fn true_graph(&self) -> Option<Vec<Vec<f32>>> {
        None
    }

    fn native_shape(&self) -> ImageShape {
        self.0.native
    }

    fn image_shape(&self, size: usize) -> Result<ImageShape, String> {
        image_shape(size)
    }

    fn prepare(&self, size: usize) -> Result<(), String> {
        self.0.store(size).map(|_| ()).map_err(|e| format!("{e:#}"))
    }

    fn available(&self, context: Context, split: Split) -> Option<usize> {
        Some(self.0.pool(context, split).len())
    }

    /// Without replacement while the pool lasts, then again in a fresh order.
    fn draw(&self, context: Context, n: usize, split: Split, rng: &mut Rng) -> Examples {
        let mut order = self.0.pool(context, split);
        assert!(
            !order.is_empty(),
            "{} has no images",
            context.name(&self.0.concepts)
        );
        let items = (0..n)
            .map(|i| {
                if i % order.len() == 0 {
                    rng.shuffle(&mut order);
                }
                order[i % order.len()]
            })
            .collect();
        Examples::new(StoredImages {
            folder: self.0.clone(),
            items,
        })
    }
}

/// Drawn images of a dataset on disk: indices into its store.
struct StoredImages {
    folder: Arc<Folder>,
    items: Vec<u32>,
}

impl Recipes for StoredImages {
    fn len(&self) -> usize {
        self.items.len()
    }

    fn image_len(&self, size: usize) -> usize {
        image_shape(size).map_or(0, ImageShape::numel)
    }

    fn render(&self, index: usize, size: usize, out: &mut [f32]) {
        let store = self
            .folder
            .store(size)
            .expect("the dataset was prepared at this size");
        for (value, &byte) in out.iter_mut().zip(store.image(self.items[index] as usize)) {
            *value = f32::from(byte) / 255.0;
        }
    }
}

/// Grey at 28 px (colour images are converted), colour at 32 or 64 (grey ones are repeated over
/// three channels): the shapes the backbones take.
fn image_shape(size: usize) -> Result<ImageShape, String> {
    match size {
        28 => Ok(ImageShape { channels: 1, size }),
        32 | 64 => Ok(ImageShape { channels: 3, size }),
        _ => Err(format!(
            "images read from disk are drawn at {SIZES:?} px, not {size}"
        )),
    }
}

/// Reads the folder as the first layout it matches.
fn scan(root: &Path) -> Result<(&'static str, Vec<Found>)> {
    let entries = list(root)?;
    let has_file = |f: &dyn Fn(&str) -> bool| {
        entries
            .iter()
            .any(|p| p.is_file() && p.file_name().is_some_and(|n| f(&n.to_string_lossy())))
    };
    if has_file(&|n| n.starts_with("normalized_mnist_") && n.ends_with(".csv")) {
        return Ok(("the paper's MNIST CSVs", scan_mnist_csv(&entries)?));
    }
    if entries.iter().any(|p| p.join("dataset.npz").is_file()) {
        return Ok(("the paper's quad npz archives", scan_npz(root, &entries)?));
    }
    let concepts = root.join("3DIdent_Concepts");
    if concepts.is_dir() {
        return Ok(("the 3DIdent download", scan_3dident(root, &concepts)?));
    }
    Ok(("image folders", scan_image_folders(&entries)?))
}

/// A folder's entries, sorted, without hidden ones.
fn list(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("cannot read {}", dir.display()))?
            .path();
        if !path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            entries.push(path);
        }
    }
    entries.sort();
    Ok(entries)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned())
}

/// `DIR/<context>/**/*.{png,jpg}`, each folder optionally `train_` or `holdout_` prefixed.
fn scan_image_folders(entries: &[PathBuf]) -> Result<Vec<Found>> {
    let mut found = Vec::new();
    for dir in entries.iter().filter(|p| p.is_dir()) {
        let name = file_name(dir);
        let (name, split) = match (name.strip_prefix("train_"), name.strip_prefix("holdout_")) {
            (Some(rest), _) => (rest.to_string(), Some(Split::Training)),
            (_, Some(rest)) => (rest.to_string(), Some(Split::HeldOut)),
            _ => (name, None),
        };
        found.push(Found {
            name,
            split,
            source: Source::Files(image_files(dir)?),
        });
    }
    Ok(found)
}

/// Every image file under `dir`, in name order.
fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for path in list(&dir)? {
            if path.is_dir() {
                pending.push(path);
            } else if readers::is_image(&path) {
                files.push(path);
            }
        }
    }
    files.sort();
    if files.is_empty() {
        bail!("{} holds no .png or .jpg images", dir.display());
    }
    Ok(files)
}

/// `normalized_mnist_<context>.csv` and `holdout_normalized_mnist_<context>.csv`.
fn scan_mnist_csv(entries: &[PathBuf]) -> Result<Vec<Found>> {
    let mut found = Vec::new();
    for path in entries.iter().filter(|p| p.is_file()) {
        let name = file_name(path);
        let Some(stem) = name.strip_suffix(".csv") else {
            continue;
        };
        let (context, split) = match stem.strip_prefix("holdout_normalized_mnist_") {
            Some(context) => (context, Split::HeldOut),
            None => match stem.strip_prefix("normalized_mnist_") {
                Some(context) => (context, Split::Training),
                None => continue,
            },
        };
        found.push(Found {
            name: context.to_string(),
            split: Some(split),
            source: readers::csv_source(path)?,
        });
    }
    Ok(found)
}

/// `<folder>/dataset.npz` (`obs1` or `obs`, `ivn_<concept>`) and
/// `holdout/<context>_holdout/dataset.npz`.
fn scan_npz(root: &Path, entries: &[PathBuf]) -> Result<Vec<Found>> {
    let mut found = Vec::new();
    for dir in entries {
        let archive = dir.join("dataset.npz");
        if !archive.is_file() {
            continue;
        }
        let folder = file_name(dir);
        let name = match folder.strip_prefix("ivn_") {
            Some(concept) => concept.to_string(),
            None if folder.starts_with("obs") => "obs".to_string(),
            None => bail!(
                "{}: npz folders are named obs1 or ivn_<concept>",
                dir.display()
            ),
        };
        found.push(Found {
            name,
            split: Some(Split::Training),
            source: readers::npz_source(&archive)?,
        });
    }
    let holdout = root.join("holdout");
    if holdout.is_dir() {
        for dir in list(&holdout)? {
            let archive = dir.join("dataset.npz");
            if !archive.is_file() {
                continue;
            }
            let folder = file_name(&dir);
            let name = folder.strip_suffix("_holdout").unwrap_or(&folder);
            let name = if name.starts_with("obs") { "obs" } else { name };
            found.push(Found {
                name: name.to_string(),
                split: Some(Split::HeldOut),
                source: readers::npz_source(&archive)?,
            });
        }
    }
    Ok(found)
}

/// `3DIdent_Concepts/<label>/images` (training; held-out images by file name) and
/// `3DIdent_Concepts_ood/dataset/<pair>/images` (composed, held out).
fn scan_3dident(root: &Path, concepts: &Path) -> Result<Vec<Found>> {
    let mut found = Vec::new();
    for dir in list(concepts)?.into_iter().filter(|p| p.is_dir()) {
        found.push(Found {
            name: file_name(&dir),
            split: None,
            source: Source::Files(image_files(&dir)?),
        });
    }
    let ood = root.join("3DIdent_Concepts_ood").join("dataset");
    if ood.is_dir() {
        for dir in list(&ood)?.into_iter().filter(|p| p.is_dir()) {
            found.push(Found {
                name: file_name(&dir),
                split: Some(Split::HeldOut),
                source: Source::Files(image_files(&dir)?),
            });
        }
    }
    Ok(found)
}

/// Names the contexts: `obs`, the concepts (every other name that is not composed), and the
/// composed contexts (`a+b`, or `a_b` / `a-b` where both parts are concepts). Images whose
/// split is not said are held out one in ten by file name, except a composed context's, which
/// are all held out.
fn resolve(root: &Path, found: Vec<Found>) -> Result<(Vec<String>, Vec<Context>, Vec<Part>)> {
    let owned: BTreeSet<String> = found.iter().map(|f| f.name.clone()).collect();
    let names: BTreeSet<&str> = owned.iter().map(String::as_str).collect();
    if !names.contains("obs") {
        let seen: Vec<&str> = names.iter().copied().collect();
        bail!(
            "{} has no obs context (found: {}); name the folder of observational images obs",
            root.display(),
            if seen.is_empty() {
                "nothing".into()
            } else {
                seen.join(", ")
            }
        );
    }
    let split_name = |name: &str| -> Option<Vec<String>> {
        for separator in ['+', '_', '-'] {
            let parts: Vec<&str> = name.split(separator).collect();
            let all_known = parts
                .iter()
                .all(|p| *p != "obs" && names.contains(p) && !p.contains(['+', '_', '-']));
            if parts.len() > 1 && (separator == '+' || all_known) {
                return Some(parts.into_iter().map(String::from).collect());
            }
        }
        None
    };
    let concepts: Vec<String> = names
        .iter()
        .filter(|&&n| n != "obs" && split_name(n).is_none())
        .map(|n| n.to_string())
        .collect();
    if concepts.is_empty() {
        bail!("{} has no intervened context besides obs", root.display());
    }
    if concepts.len() > MAX_CONCEPTS {
        bail!(
            "{} has {} concepts; at most {MAX_CONCEPTS} are supported",
            root.display(),
            concepts.len()
        );
    }
    let context_of = |name: &str| -> Result<Context> {
        if name == "obs" {
            return Ok(Context::OBS);
        }
        let parts = split_name(name).unwrap_or_else(|| vec![name.to_string()]);
        let mut context = Context::OBS;
        for part in &parts {
            let k = concepts.iter().position(|c| c == part).with_context(|| {
                format!(
                    "{}: context {name} names an unknown concept {part}; concepts are {}",
                    root.display(),
                    concepts.join(", ")
                )
            })?;
            context = context.compose(Context::single(k));
        }
        Ok(context)
    };
    let mut parts = Vec::new();
    let mut composed = BTreeMap::new();
    let mut trained = BTreeSet::new();
    for Found {
        name,
        split,
        source,
    } in found
    {
        let context = context_of(&name)?;
        if source.len() == 0 {
            bail!("{}: context {name} holds no images", root.display());
        }
        if context.len() > 1 {
            composed.insert(name.clone(), context);
            parts.push(Part {
                context,
                split: Split::HeldOut,
                source,
            });
            continue;
        }
        match split {
            Some(split) => {
                if split == Split::Training {
                    trained.insert(context);
                }
                parts.push(Part {
                    context,
                    split,
                    source,
                });
            }
            None => {
                let count = source.len();
                let (training, held_out) = source.split_by_name(HELD_OUT_ONE_IN);
                if training.len() == 0 {
                    bail!(
                        "{}: context {name} has {count} image(s), all held out for evaluation (one in {HELD_OUT_ONE_IN} by file name); it needs more to train on",
                        root.display()
                    );
                }
                trained.insert(context);
                parts.push(Part {
                    context,
                    split: Split::Training,
                    source: training,
                });
                parts.push(Part {
                    context,
                    split: Split::HeldOut,
                    source: held_out,
                });
            }
        }
    }
    for context in Context::training_contexts(concepts.len()) {
        if !trained.contains(&context) {
            bail!(
                "{}: context {} has no training images (a composed context joins known concepts with +, _ or -)",
                root.display(),
                context.name(&concepts)
            );
        }
    }
    // The store holds the parts in this order: by context, training images first.
    parts.sort_by_key(|p| (p.context, p.split == Split::HeldOut));
    Ok((concepts, composed.into_values().collect(), parts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use intervene_e2e::files_under as walk;

    fn fixture(layout: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/data/datasets")
            .join(layout)
    }

    /// Opens a folder with its cache in a fresh scratch folder.
    fn open(root: &Path) -> (FolderDataset, tempfile::TempDir) {
        let cache = tempfile::tempdir().unwrap();
        let dataset = FolderDataset::open_with_cache(root, cache.path()).unwrap();
        (dataset, cache)
    }

    fn error(root: &Path, size: usize) -> String {
        let cache = tempfile::tempdir().unwrap();
        let opened = FolderDataset::open_with_cache(root, cache.path());
        let message = match opened {
            Err(e) => format!("{e:#}"),
            Ok(dataset) => dataset.prepare(size).expect_err("bad input was accepted"),
        };
        assert!(
            std::fs::read_dir(cache.path()).unwrap().all(|e| {
                let data = e.unwrap().path();
                !walk(&data)
                    .iter()
                    .any(|f| f.extension().is_some_and(|x| x == "u8"))
            }),
            "a cache file was left behind"
        );
        message
    }

    fn names(dataset: &FolderDataset, contexts: Vec<Context>) -> Vec<String> {
        contexts
            .iter()
            .map(|c| c.name(&dataset.concepts()))
            .collect()
    }

    /// Every layout's concepts, composed contexts and image counts, and images that draw.
    #[test]
    fn every_layout_reads_its_fixture() {
        // Folder, layout, concepts, composed contexts, image side.
        type Case<'a> = (&'a str, &'a str, &'a [&'a str], &'a [&'a str], usize);
        let cases: [Case; 5] = [
            ("plain", "image folders", &["a", "b"], &["a+b"], 32),
            (
                "quad_causal",
                "image folders",
                &["quad1", "quad2"],
                &["quad1+quad2"],
                64,
            ),
            (
                "3dident",
                "the 3DIdent download",
                &["bg", "obj"],
                &["bg+obj"],
                32,
            ),
            (
                "quad_npz",
                "the paper's quad npz archives",
                &["quad1", "size"],
                &["quad1+size"],
                64,
            ),
            (
                "mnist_csv",
                "the paper's MNIST CSVs",
                &["shear", "thin"],
                &[],
                28,
            ),
        ];
        // The last column: the backbone size nearest the images' own (16 and 32 px colour: 32).
        for (layout, read_as, concepts, composed, native_size) in cases {
            let (dataset, _cache) = open(&fixture(layout));
            assert_eq!(dataset.layout(), read_as, "{layout}");
            assert_eq!(dataset.concepts(), concepts, "{layout}");
            assert_eq!(
                names(&dataset, dataset.composed_contexts()),
                composed,
                "{layout}"
            );
            let native = dataset.native_shape();
            assert_eq!(native.size, native_size, "{layout}");
            assert_eq!(native.channels, if layout == "mnist_csv" { 1 } else { 3 });
            let size = native.size;
            dataset.prepare(size).unwrap();
            let shape = dataset.image_shape(size).unwrap();
            for context in Context::training_contexts(concepts.len())
                .into_iter()
                .chain(dataset.composed_contexts())
            {
                let images = dataset.images(context, 5, size, Split::HeldOut, &mut Rng::new(1));
                assert_eq!(images.len(), 5 * shape.numel(), "{layout}");
                assert!(images.iter().all(|v| (0.0..=1.0).contains(v)));
                assert!(images.iter().any(|&v| v > 0.0), "{layout}: blank images");
            }
        }
    }

    #[test]
    fn the_paper_split_is_kept_and_plain_folders_hold_out_by_name() {
        let (quad, _cache) = open(&fixture("quad_causal"));
        assert_eq!(quad.available(Context::OBS, Split::Training), Some(3));
        assert_eq!(quad.available(Context::OBS, Split::HeldOut), Some(3));
        let pair = Context::from_indices([0, 1]);
        assert_eq!(
            quad.available(pair, Split::Training),
            Some(3),
            "from held-out"
        );
        let (mnist, _cache) = open(&fixture("mnist_csv"));
        assert_eq!(mnist.available(Context::OBS, Split::Training), Some(3));
        assert_eq!(mnist.available(Context::OBS, Split::HeldOut), Some(2));
    }

    /// The npz reader keeps pixels exactly: the array's first image, channels-first.
    #[test]
    fn npz_images_arrive_unchanged_at_their_own_size() {
        let root = fixture("quad_npz");
        let mut archive = npyz::npz::NpzArchive::open(root.join("obs1/dataset.npz")).unwrap();
        let array = archive.by_name("images").unwrap().unwrap();
        let hwc: Vec<u8> = array.into_vec().unwrap();
        let (dataset, _cache) = open(&root);
        dataset.prepare(64).unwrap();
        let store = dataset.0.store(64).unwrap();
        let chw = store.image(0);
        let pixels = 64 * 64;
        for p in [0, 100, 4095] {
            for c in 0..3 {
                assert_eq!(chw[c * pixels + p], hwc[p * 3 + c]);
            }
        }
    }

    #[test]
    fn a_second_open_maps_the_cache_instead_of_decoding() {
        let cache = tempfile::tempdir().unwrap();
        let root = fixture("plain");
        let first = FolderDataset::open_with_cache(&root, cache.path()).unwrap();
        first.prepare(32).unwrap();
        let files = walk(cache.path());
        assert_eq!(files.len(), 1);
        let written = std::fs::metadata(&files[0]).unwrap().modified().unwrap();
        let second = FolderDataset::open_with_cache(&root, cache.path()).unwrap();
        second.prepare(32).unwrap();
        assert_eq!(walk(cache.path()), files);
        assert_eq!(
            std::fs::metadata(&files[0]).unwrap().modified().unwrap(),
            written
        );
        assert_eq!(files[0].metadata().unwrap().len(), 16 * 3 * 32 * 32);
    }

    /// A folder of contexts, each with `count` PNGs of `side` px.
    fn folders(contexts: &[(&str, usize, u32)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for &(name, count, side) in contexts {
            let folder = dir.path().join(name);
            std::fs::create_dir_all(&folder).unwrap();
            for i in 0..count {
                let image = image::RgbImage::from_pixel(side, side, image::Rgb([i as u8, 9, 200]));
                image.save(folder.join(format!("{i}.png"))).unwrap();
            }
        }
        dir
    }

    #[test]
    fn bad_folders_are_refused_with_the_file_named() {
        let no_obs = folders(&[("a", 2, 8)]);
        assert!(error(no_obs.path(), 32).contains("has no obs context (found: a)"));

        let empty = folders(&[("obs", 2, 8), ("a", 0, 8)]);
        let message = error(empty.path(), 32);
        assert!(
            message.contains("holds no .png or .jpg images"),
            "{message}"
        );
        assert!(message.contains(&format!("{}", empty.path().join("a").display())));

        let unknown = folders(&[("obs", 2, 8), ("a", 2, 8), ("a+zz", 2, 8)]);
        let message = error(unknown.path(), 32);
        assert!(message.contains("names an unknown concept zz"), "{message}");

        let mixed = folders(&[("obs", 2, 8), ("a", 2, 8)]);
        image::RgbImage::new(9, 8)
            .save(mixed.path().join("a/odd.png"))
            .unwrap();
        let message = error(mixed.path(), 32);
        assert!(message.contains("odd.png: 9x8 px"), "{message}");

        let truncated = folders(&[("obs", 2, 8), ("a", 2, 8)]);
        let file = truncated.path().join("a/1.png");
        let bytes = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
        let message = error(truncated.path(), 32);
        assert!(message.contains("1.png: not a readable image"), "{message}");

        // Found by the image_folder fuzz target: a context whose only image is held out had
        // nothing to train on, and opening it indexed an empty list.
        let held_out = folders(&[("obs", 0, 8), ("a", 2, 8)]);
        image::RgbImage::new(8, 8)
            .save(held_out.path().join("obs/000008.png"))
            .unwrap();
        let message = error(held_out.path(), 32);
        assert!(
            message.contains("context obs has 1 image(s), all held out for evaluation"),
            "{message}"
        );
    }

    #[test]
    fn bad_csv_rows_and_npz_archives_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let row = vec!["0.5"; 786].join(",");
        std::fs::write(
            dir.path().join("normalized_mnist_obs.csv"),
            format!("{row}\n"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("normalized_mnist_thin.csv"),
            format!("{row}\n0.1,0.2\n"),
        )
        .unwrap();
        let message = error(dir.path(), 28);
        assert!(
            message.contains("normalized_mnist_thin.csv:2: 2 values"),
            "{message}"
        );

        let dir = tempfile::tempdir().unwrap();
        use npyz::WriterBuilder;
        for folder in ["obs1", "ivn_a"] {
            std::fs::create_dir_all(dir.path().join(folder)).unwrap();
            let mut npz =
                npyz::npz::NpzWriter::create(dir.path().join(folder).join("dataset.npz")).unwrap();
            let mut writer = npz
                .array::<u8>("labels", Default::default())
                .unwrap()
                .default_dtype()
                .shape(&[2])
                .begin_nd()
                .unwrap();
            writer.extend([1u8, 2]).unwrap();
            writer.finish().unwrap();
        }
        let message = error(dir.path(), 64);
        assert!(
            message.contains("dataset.npz: the archive has no images array"),
            "{message}"
        );
    }
}

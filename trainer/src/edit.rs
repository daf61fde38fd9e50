//! `intervene edit`: counterfactuals of the user's own images: what each would look like had
//! some concepts been intervened on, all else equal (docs/method.md#counterfactuals).
//!
//! Every input is read and checked before anything is computed or written, so one bad file
//! costs nothing but its error line.

use crate::data::readers::read_image;
use crate::image_grid::{write_grid, write_image};
use anyhow::{Context as _, Result, bail};
use burn::tensor::{Device, Tensor};
use intervene::config::ImageShape;
use intervene::counterfactual::{self, Edit, Editor, edit};
use intervene::model::Model;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Images edited per batch: bounds memory whatever the number of inputs.
const BATCH: usize = 64;

/// What was written.
pub struct Written {
    pub images: usize,
    pub files: Vec<PathBuf>,
    /// Why the edits cannot be a trained model's, if they cannot
    /// ([`intervene::counterfactual::degenerate`]).
    pub degenerate: Option<String>,
}

/// The images to edit, read and checked, with the names their outputs take.
pub struct Inputs {
    names: Vec<String>,
    images: Vec<f32>,
}

impl Inputs {
    /// Reads every file in `paths` at `shape` (resized where needed): one bad file fails them all
    /// before anything is computed.
    pub fn read(paths: &[PathBuf], shape: ImageShape) -> Result<Self> {
        let names = output_names(paths)?;
        let images = paths
            .iter()
            .map(|path| read_image(path, shape))
            .collect::<Result<Vec<_>>>()?
            .concat();
        Ok(Self { names, images })
    }
}

/// Why `model` cannot edit, in the words a user needs: where its encoder is.
pub fn needs_encoder(model: &Model) -> Result<()> {
    if !model.has_encoder() {
        bail!(
            "{}: edit with the run folder, a file exported without --decoder-only, or give the file's encoder with --encoder",
            intervene::counterfactual::NoEncoder
        );
    }
    Ok(())
}

/// Edits every image of `inputs` and writes `out/<name>.png` (the counterfactual) and
/// `out/<name>.recon.png` (the reconstruction), and, with `grid`, rows of input | reconstruction
/// | counterfactual. The factual model has its encoder ([`needs_encoder`]).
pub fn edit_files(
    editor: Editor,
    inputs: &Inputs,
    request: &Edit,
    out: &Path,
    grid: Option<&Path>,
    device: &Device,
) -> Result<Written> {
    let shape = editor.factual.config.image;
    let Inputs { names, images } = inputs;
    let numel = shape.numel();
    let (mut reconstructions, mut counterfactuals) = (Vec::new(), Vec::new());
    for batch in images.chunks(BATCH * numel) {
        let edited = edit(editor, batch.to_vec(), request, device)?;
        reconstructions.extend(values(edited.reconstruction)?);
        counterfactuals.extend(values(edited.counterfactual)?);
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut files = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let at = i * numel..(i + 1) * numel;
        for (file, pixels) in [
            (format!("{name}.png"), &counterfactuals[at.clone()]),
            (format!("{name}.recon.png"), &reconstructions[at]),
        ] {
            let path = out.join(file);
            write_image(&path, pixels, shape)?;
            files.push(path);
        }
    }
    if let Some(grid) = grid {
        let rows: Vec<f32> = (0..names.len())
            .flat_map(|i| {
                let at = i * numel..(i + 1) * numel;
                [images, &reconstructions, &counterfactuals].map(|set| set[at.clone()].to_vec())
            })
            .flatten()
            .collect();
        write_grid(grid, &rows, shape, 3)?;
        files.push(grid.to_path_buf());
    }
    Ok(Written {
        images: names.len(),
        files,
        degenerate: counterfactual::degenerate(&reconstructions, &counterfactuals, numel),
    })
}

/// Each input's file stem, which must be unique (two `x.png` from two folders would overwrite
/// each other's edits).
fn output_names(inputs: &[PathBuf]) -> Result<Vec<String>> {
    let mut seen = BTreeSet::new();
    inputs
        .iter()
        .map(|path| {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .filter(|s| !s.is_empty())
                .with_context(|| format!("{}: not an image file name", path.display()))?;
            if !seen.insert(stem.clone()) {
                bail!("two inputs are named {stem}: their edits would overwrite each other");
            }
            Ok(stem)
        })
        .collect()
}

fn values(images: Tensor<4>) -> Result<Vec<f32>> {
    images
        .into_data()
        .try_into_vec_as::<f32>()
        .map_err(|e| anyhow::anyhow!("edited images are not f32: {e:?}"))
}

/// `concept=value` pairs as one shift per concept of `concepts` (0 where none is given).
pub fn parse_shifts(pairs: &[String], concepts: &[String]) -> Result<Vec<f32>> {
    let limit = intervene::sampling::SHIFT_LIMIT;
    let mut shifts = vec![0f32; concepts.len()];
    for pair in pairs {
        let Some((name, value)) = pair.split_once('=') else {
            bail!("--shift {pair}: expected concept=value, e.g. size=1.5");
        };
        let k = concepts
            .iter()
            .position(|c| c == name.trim())
            .with_context(|| {
                format!(
                    "--shift {pair}: unknown concept '{}'; valid concepts are: {}",
                    name.trim(),
                    concepts.join(", ")
                )
            })?;
        match value.trim().parse::<f32>() {
            Ok(v) if v.is_finite() && v.abs() <= limit => shifts[k] = v,
            _ => bail!("--shift {pair}: the value must be a number between -{limit} and {limit}"),
        }
    }
    Ok(shifts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn shifts_are_named_by_concept_and_bounded() {
        let concepts = names(&["quad1", "size"]);
        let shifts = parse_shifts(&names(&["size=1.5", " quad1 = -2"]), &concepts).unwrap();
        assert_eq!(shifts, vec![-2.0, 1.5]);
        for bad in ["size", "colour=1", "size=4", "size=NaN", "size=x"] {
            assert!(parse_shifts(&names(&[bad]), &concepts).is_err(), "{bad}");
        }
    }

    #[test]
    fn two_inputs_with_one_name_are_refused() {
        let inputs = [PathBuf::from("a/x.png"), PathBuf::from("b/x.jpg")];
        let err = output_names(&inputs).unwrap_err().to_string();
        assert!(err.contains("two inputs are named x"), "{err}");
    }
}

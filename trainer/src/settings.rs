//! Settings files: `--config FILE` (TOML) for `train` and `experiment`. A file holds the same
//! settings as the command's flags, named as in `config.json`; flags given on the command line
//! win over the file, and `--print-config` writes the resolved settings in the file's format.

use anyhow::{Context as _, Result, bail};
use clap::Args;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// A settings file is read whole; anything this large is not one.
const MAX_FILE_BYTES: u64 = 1 << 20;

#[derive(Args, Clone, Debug, Default)]
pub struct FileFlags {
    /// Read settings from this TOML file; flags given here override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the resolved settings (a file `--config` reads) and do nothing else.
    #[arg(long)]
    pub print_config: bool,
}

/// Settings a file holds. Relative paths in it are taken from the file's folder.
pub trait FromFile: DeserializeOwned + Serialize + Clone {
    /// Makes the file's relative paths relative to `dir`, the file's folder.
    fn rebase(&mut self, dir: &Path);
}

/// The file's settings with `flags` on top (flags alone when no file is given).
pub fn resolve<T: FromFile>(file: Option<&Path>, flags: &T) -> Result<T> {
    let Some(path) = file else {
        return Ok(flags.clone());
    };
    let mut from_file: T = read(path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    from_file.rebase(dir);
    Ok(layered(&from_file, flags))
}

fn read<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if size > MAX_FILE_BYTES {
        bail!(
            "{} is {size} bytes; a settings file is at most {MAX_FILE_BYTES}",
            path.display()
        );
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text).map_err(|e| {
        let message = e.message().trim().to_string();
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        match line {
            Some(line) => anyhow::anyhow!("{}:{line}: {message}", path.display()),
            None => anyhow::anyhow!("{}: {message}", path.display()),
        }
    })
}

/// `path` relative to `dir` when it is relative.
pub fn rebase(path: &mut Option<PathBuf>, dir: &Path) {
    if let Some(p) = path
        && p.is_relative()
    {
        *p = dir.join(&*p);
    }
}

/// `base` with every setting `top` gives put over it (tables merged key by key; a list, like
/// any value, replaced whole).
pub fn layered<T: Serialize + DeserializeOwned>(base: &T, top: &T) -> T {
    fn merge(base: &mut serde_json::Value, top: serde_json::Value) {
        match (base, top) {
            (serde_json::Value::Object(b), serde_json::Value::Object(t)) => {
                for (key, value) in t {
                    match b.get_mut(&key) {
                        Some(slot) => merge(slot, value),
                        None => {
                            b.insert(key, value);
                        }
                    }
                }
            }
            (slot, value) => *slot = value,
        }
    }
    let mut value = serde_json::to_value(base).expect("settings serialise");
    merge(
        &mut value,
        serde_json::to_value(top).expect("settings serialise"),
    );
    serde_json::from_value(value).expect("merged settings have their fields' types")
}

/// `settings` as a settings file.
pub fn to_toml<T: Serialize>(settings: &T) -> String {
    toml::to_string(settings).expect("settings are TOML: tables after plain values")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::training::config::Overrides;

    #[test]
    fn flags_win_over_the_file_and_the_rest_is_kept() {
        let file = Overrides::parse_pairs([("beta", "2"), ("epochs", "7")]).unwrap();
        let flags = Overrides::parse_pairs([("beta", "0.5")]).unwrap();
        let both = layered(&file, &flags);
        assert_eq!(both.beta, Some(0.5));
        assert_eq!(both.max_epochs, Some(7));
    }

    #[test]
    fn a_file_is_read_and_its_mistakes_named_with_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(&path, "beta = 2.0\nmax_epochs = 3\n").unwrap();
        let settings: Overrides = read(&path).unwrap();
        assert_eq!(
            settings,
            Overrides::parse_pairs([("beta", "2"), ("epochs", "3")]).unwrap()
        );
        std::fs::write(&path, "beta = 2.0\nbeat = 3\n").unwrap();
        let err = read::<Overrides>(&path).unwrap_err().to_string();
        assert!(err.contains("s.toml:2") && err.contains("beat"), "{err}");
    }
}

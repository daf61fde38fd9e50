//! File writes that never leave a half-written file behind, and never replace what is not a
//! plain file of ours.

use anyhow::{Context as _, Result, bail};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so a crash
/// or a full disk leaves either the old file or the new one, never a torn one.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    replace(path, None, bytes)
}

/// As [`atomic_write`], and the file being replaced is kept as `previous` (renamed, after the
/// new one is complete on disk and before it takes the name).
pub fn atomic_write_keeping_previous(path: &Path, previous: &Path, bytes: &[u8]) -> Result<()> {
    replace(path, Some(previous), bytes)
}

fn replace(path: &Path, previous: Option<&Path>, bytes: &[u8]) -> Result<()> {
    let path = &writable_target(path)?;
    let tmp = temp_path(path);
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        if let Some(previous) = previous.filter(|_| path.exists()) {
            std::fs::rename(path, previous)?;
        }
        std::fs::rename(&tmp, path)
    })();
    if let Err(err) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(err).with_context(|| {
            format!(
                "cannot write {} (the previous version, if any, is intact)",
                path.display()
            )
        });
    }
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        // Make the renames durable; failure here loses nothing, so it is not an error.
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// Where a write to `path` stages its bytes (`x.bin` -> `x.bin.tmp`): a crash can leave it behind.
pub fn temp_path(path: &Path) -> PathBuf {
    path.with_extension(match path.extension() {
        Some(ext) => format!("{}.tmp", ext.to_string_lossy()),
        None => "tmp".to_string(),
    })
}

/// The file a write to `path` should replace: `path` itself, or the file a symlink points to
/// (the link is followed, never replaced). Anything but a plain file (a device, a folder, a
/// dangling link) is refused.
fn writable_target(path: &Path) -> Result<PathBuf> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(path.to_path_buf()); // nothing there yet
    };
    let target = if meta.file_type().is_symlink() {
        std::fs::canonicalize(path).with_context(|| {
            format!(
                "{} is a symbolic link to nothing; refusing to replace it",
                path.display()
            )
        })?
    } else {
        path.to_path_buf()
    };
    if !target.metadata()?.is_file() {
        bail!(
            "{} is not a plain file; refusing to replace it",
            path.display()
        );
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temp_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let path = dir.join("state.bin");
        atomic_write(&path, b"one").unwrap();
        atomic_write(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert!(!dir.join("state.bin.tmp").exists());
    }

    #[test]
    fn failure_names_the_file_and_keeps_the_old_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let path = dir.join("missing-folder").join("state.bin");
        let err = atomic_write(&path, b"x").unwrap_err();
        assert!(format!("{err:#}").contains("state.bin"));
    }

    #[test]
    fn the_replaced_file_can_be_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (path, previous) = (dir.join("latest.bin"), dir.join("previous.bin"));
        atomic_write_keeping_previous(&path, &previous, b"one").unwrap();
        assert!(!previous.exists(), "nothing to keep the first time");
        atomic_write_keeping_previous(&path, &previous, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read(&previous).unwrap(), b"one");
    }

    #[cfg(unix)]
    #[test]
    fn links_are_followed_and_devices_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (real, link) = (dir.join("real.bin"), dir.join("link.bin"));
        std::fs::write(&real, b"old").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        atomic_write(&link, b"new").unwrap();
        assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&real).unwrap(), b"new");

        let dangling = dir.join("dangling.bin");
        std::os::unix::fs::symlink(dir.join("missing"), &dangling).unwrap();
        let err = atomic_write(&dangling, b"x").unwrap_err().to_string();
        assert!(err.contains("link to nothing"), "{err}");
        assert!(dangling.symlink_metadata().is_ok(), "the link was replaced");

        let err = atomic_write(Path::new("/dev/null"), b"x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a plain file"), "{err}");
        assert!(!Path::new("/dev/null").metadata().unwrap().is_file());
    }
}

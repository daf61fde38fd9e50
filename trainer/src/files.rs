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
    let written = (|| -> std::io::Result<()> {
        let mut staged = stage(path)?;
        staged.write_all(bytes)?;
        staged.as_file().sync_all()?;
        if let Some(previous) = previous.filter(|_| path.exists()) {
            std::fs::rename(path, previous)?;
        }
        staged.persist(path).map_err(|e| e.error)?;
        Ok(())
    })();
    // On failure the staged file is already gone (dropped).
    written.with_context(|| {
        format!(
            "cannot write {} (the previous version, if any, is intact)",
            path.display()
        )
    })?;
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        // Make the renames durable; failure here loses nothing, so it is not an error.
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// A new file beside `path` for a write to stage its bytes in, under a name of its own
/// (`.x.bin.<random>.tmp`), so that writers of one path at once never share it; removed unless
/// persisted. A crash can leave it behind: [`remove_staged`] clears a folder of them.
///
/// tempfile makes files only their owner can read; a finished file should instead be as readable
/// as any new file (the umask decides) or keep the permissions of the file it replaces, so that
/// a collaborator or a web server can read results, runs and weights.
pub fn stage(path: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(STAGED);
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let staged = builder.tempfile_in(dir)?;
    if let Ok(replaced) = std::fs::metadata(path) {
        staged.as_file().set_permissions(replaced.permissions())?;
    }
    Ok(staged)
}

const STAGED: &str = ".tmp";

/// Removes the files that writes staged in `dir` and never finished (a killed writer's). Only for
/// a folder nobody else is writing to.
pub fn remove_staged(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(STAGED) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
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
        let left: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, ["state.bin"], "only the file is left");
    }

    /// A written file gets a new file's permissions, and a replaced one keeps its own.
    #[cfg(unix)]
    #[test]
    fn written_files_are_as_readable_as_new_files_and_keep_their_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let plain = tmp.path().join("plain.txt");
        std::fs::write(&plain, b"x").unwrap();
        let written = tmp.path().join("table.md");
        atomic_write(&written, b"one").unwrap();
        assert_eq!(mode(&written), mode(&plain));
        std::fs::set_permissions(&written, std::fs::Permissions::from_mode(0o640)).unwrap();
        atomic_write(&written, b"two").unwrap();
        assert_eq!(mode(&written), 0o640);
    }

    #[test]
    fn writers_of_one_path_at_once_all_succeed_and_one_whole_file_stays() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("same.bin");
        let contents: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 64 * 1024]).collect();
        std::thread::scope(|scope| {
            for bytes in &contents {
                let path = &path;
                scope.spawn(move || {
                    for _ in 0..20 {
                        atomic_write(path, bytes).unwrap();
                    }
                });
            }
        });
        assert!(contents.contains(&std::fs::read(&path).unwrap()));
        let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "a staged file was left behind");
    }

    #[test]
    fn staged_files_of_a_killed_writer_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("best.bin");
        std::fs::write(&path, b"kept").unwrap();
        stage(&path).unwrap().keep().unwrap();
        remove_staged(tmp.path());
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, ["best.bin"]);
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

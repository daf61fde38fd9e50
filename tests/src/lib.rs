//! What the end-to-end tests share: scratch folders, and skipping a test whose requirement
//! (a browser, a GPU adapter, a built page) this machine lacks. The browser tests in `tests/`
//! also use a small WebDriver client and a static file server.

#![forbid(unsafe_code)]

pub mod static_server;
pub mod webdriver;

use std::io::Write;
use std::path::{Path, PathBuf};

/// Set by the test command (`scripts/test.sh`): every test must run, none may be skipped.
pub const REQUIRE_ALL: &str = "INTERVENE_REQUIRE_ALL_TESTS";

/// Skips the calling test because `reason`: says so on the terminal (test output capture does
/// not hide it), or fails the test when [`REQUIRE_ALL`] is set. Call it and return.
pub fn skip(reason: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    if std::env::var_os(REQUIRE_ALL).is_some() {
        panic!("{test} cannot run: {reason} ({REQUIRE_ALL} is set, so no test may be skipped)");
    }
    // Straight to the process's stderr: libtest captures only `print!` and `eprint!`.
    let _ = writeln!(std::io::stderr(), "skipped {test}: {reason}");
}

/// A fresh empty folder under the system temp dir, in this test process's own
/// `intervene-e2e-<pid>` folder. Tests keep their folders (a failure can be inspected), so the
/// first call also removes the folders of earlier test processes that have exited.
pub fn scratch(name: &str) -> PathBuf {
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(remove_folders_of_exited_runs);
    let dir = std::env::temp_dir()
        .join(format!("intervene-e2e-{}", std::process::id()))
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every file below `dir` (none if it does not exist), sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Removes `intervene-e2e-...-<pid>` folders whose process is gone (Linux: no `/proc/<pid>`).
fn remove_folders_of_exited_runs() {
    let proc = Path::new("/proc");
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    if !proc.join("self").exists() {
        return;
    }
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("intervene-e2e-")
            .and_then(|rest| rest.rsplit('-').next())
            .filter(|pid| pid.parse::<u32>().is_ok())
        else {
            continue;
        };
        if !proc.join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

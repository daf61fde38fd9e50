//! What the end-to-end tests share: scratch folders, and skipping a test whose requirement
//! (a browser, a GPU adapter, a built page) this machine lacks. The browser tests in `tests/`
//! also use a blocking WebDriver client and a static file server, both on one tokio runtime.

#![forbid(unsafe_code)]

pub mod static_server;
pub mod webdriver;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The runtime the WebDriver client and the file server run on, started on first use.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

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

/// Set to keep every scratch folder (to look into a failure); otherwise each is removed when
/// the test that made it ends, passing or failing.
pub const KEEP_SCRATCH: &str = "INTERVENE_KEEP_SCRATCH";

/// A fresh empty folder under the system temp dir, named after `name`; removed on drop unless
/// [`KEEP_SCRATCH`] is set. Hold it for as long as its files are used.
pub fn scratch(name: &str) -> tempfile::TempDir {
    let mut dir = tempfile::Builder::new()
        .prefix(&format!("intervene-e2e-{name}-"))
        .tempdir()
        .expect("a scratch folder in the temp dir");
    if std::env::var_os(KEEP_SCRATCH).is_some() {
        dir.disable_cleanup(true);
        eprintln!("scratch folder kept: {}", dir.path().display());
    }
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

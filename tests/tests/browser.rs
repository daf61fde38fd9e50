//! The web page in Debian's headless Chromium, driven through chromedriver: each scenario once
//! with WebGPU (SwiftShader when there is no GPU) and once with WebGPU off, where the page must
//! fall back to the CPU. The site is built by the test command (`scripts/build-web.sh`, into
//! `www/dist`). One test per scenario (libtest-mimic, so that one site, server and browser per
//! backend are built once and closed at the end); they run one at a time: two browsers at once
//! on a 2-core machine only measure each other. `cargo test --test browser -- cpu::works_offline`
//! runs one.

use intervene_e2e::static_server::StaticServer;
use intervene_e2e::webdriver::{self, Browser, Driver};
use intervene_e2e::{REQUIRE_ALL, scratch, skip};
use libtest_mimic::{Arguments, Trial};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const LOAD: Duration = Duration::from_secs(90);
/// The page's benchmark: 3 warm-up runs, then 20 timed runs or 15 s, on a slow backend up to
/// 8 runs of several seconds each.
const BENCH: Duration = Duration::from_secs(240);

#[derive(Clone, Copy, PartialEq)]
enum Backend {
    WebGpu,
    Cpu,
}

impl Backend {
    fn label(self) -> &'static str {
        match self {
            Backend::WebGpu => "webgpu",
            Backend::Cpu => "cpu",
        }
    }
}

/// What the scenarios share: the site with its test models, its server, chromedriver, and one
/// browser per backend (made on first use).
struct Site {
    /// Holds the site and the browsers' profiles; removed at the end.
    _scratch: tempfile::TempDir,
    root: PathBuf,
    server: StaticServer,
    driver: Driver,
    browsers: Vec<(Backend, Browser)>,
    profiles: usize,
}

impl Site {
    fn new() -> Site {
        let scratch = scratch("browser");
        let root = site_with_test_models(scratch.path());
        let server = StaticServer::start(&root);
        Site {
            _scratch: scratch,
            root,
            server,
            driver: Driver::start(),
            browsers: Vec::new(),
            profiles: 0,
        }
    }

    /// The backend's shared browser.
    fn browser(&mut self, backend: Backend) -> &Browser {
        if !self.browsers.iter().any(|(b, _)| *b == backend) {
            let browser = self.fresh_browser(backend);
            self.browsers.push((backend, browser));
        }
        &self.browsers.iter().find(|(b, _)| *b == backend).unwrap().1
    }

    /// The backend's shared browser showing the page at `query`, once it has drawn.
    fn visit(&mut self, backend: Backend, query: &str) -> &Browser {
        let url = self.page(backend, query);
        let browser = self.browser(backend);
        browser.open(&url);
        settled(browser, 0);
        browser
    }

    /// A browser of its own, with an empty profile (no cache, no service worker, no last view).
    fn fresh_browser(&mut self, backend: Backend) -> Browser {
        self.profiles += 1;
        let profile = self
            .root
            .with_file_name(format!("profile-{}", self.profiles));
        self.driver.browser(backend == Backend::WebGpu, &profile)
    }

    /// The page's address with `query` (`""` or `"?a=b&c=d"`), asking for WebGPU on that backend.
    fn page(&self, backend: Backend, query: &str) -> String {
        let query = match (backend, query) {
            (Backend::Cpu, _) => query.to_string(),
            (Backend::WebGpu, "") => "?backend=webgpu".to_string(),
            (Backend::WebGpu, _) => format!("{query}&backend=webgpu"),
        };
        self.server.url(&format!("/{query}"))
    }
}

/// Made by the first scenario that runs, dropped after the last.
static SITE: Mutex<Option<Site>> = Mutex::new(None);

/// A scenario: its name, whether it runs on the CPU backend only, and its steps.
type Scenario = (&'static str, bool, fn(&mut Site, Backend));

const SCENARIOS: &[Scenario] = &[
    (
        "opens_on_its_backend_and_benchmarks",
        false,
        opens_on_its_backend_and_benchmarks,
    ),
    (
        "composes_drags_and_shares_exact_pixels",
        false,
        composes_drags_and_shares_exact_pixels,
    ),
    (
        "concept_chips_take_the_keyboard_focus",
        false,
        concept_chips_take_the_keyboard_focus,
    ),
    (
        "graphs_show_the_asked_number_of_edges",
        false,
        graphs_show_the_asked_number_of_edges,
    ),
    (
        "broken_link_gives_a_note_and_the_default_view",
        false,
        broken_link_gives_a_note_and_the_default_view,
    ),
    (
        "corrupt_model_in_a_link_is_refused",
        false,
        corrupt_model_in_a_link_is_refused,
    ),
    (
        "corrupt_file_from_disk_keeps_the_model",
        false,
        corrupt_file_from_disk_keeps_the_model,
    ),
    (
        "imported_reference_checkpoint_composes",
        false,
        imported_reference_checkpoint_composes,
    ),
    (
        "folder_trained_model_composes_its_concepts",
        false,
        folder_trained_model_composes_its_concepts,
    ),
    (
        "edits_a_real_image_and_shares_the_edit",
        false,
        edits_a_real_image_and_shares_the_edit,
    ),
    // SwiftShader takes minutes over the scenes model, and the layout and offline checks do not
    // depend on the backend.
    (
        "scenes_model_draws_samples_and_real_scenes",
        true,
        scenes_model_draws_samples_and_real_scenes,
    ),
    (
        "fits_a_desktop_and_a_phone",
        true,
        fits_a_desktop_and_a_phone,
    ),
    (
        "works_offline_after_one_visit",
        true,
        works_offline_after_one_visit,
    ),
];

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let missing = missing_requirement();
    if let Some(reason) = &missing
        && std::env::var_os(REQUIRE_ALL).is_none()
    {
        skip(reason);
    }
    let mut trials = Vec::new();
    for backend in [Backend::WebGpu, Backend::Cpu] {
        for &(name, cpu_only, steps) in SCENARIOS {
            if cpu_only && backend == Backend::WebGpu {
                continue;
            }
            let ignored = missing.is_some() && std::env::var_os(REQUIRE_ALL).is_none();
            let missing = missing.clone();
            let trial = Trial::test(format!("{}::{name}", backend.label()), move || {
                if let Some(reason) = missing {
                    skip(&reason); // fails the test when every test must run
                    return Ok(());
                }
                let mut site = SITE.lock().unwrap_or_else(|e| e.into_inner());
                steps(site.get_or_insert_with(Site::new), backend);
                Ok(())
            });
            trials.push(trial.with_ignored_flag(ignored));
        }
    }
    let conclusion = libtest_mimic::run(&args, trials);
    // Browsers, chromedriver, server and scratch folder go before the process does.
    drop(SITE.lock().unwrap_or_else(|e| e.into_inner()).take());
    conclusion.exit_code()
}

/// `www/dist`, or the folder `INTERVENE_SITE` names.
fn built_site() -> PathBuf {
    std::env::var_os("INTERVENE_SITE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../www/dist"))
}

/// The `intervene` binary cargo built beside this test (`target/<profile>/`).
fn intervene_binary() -> PathBuf {
    let test = std::env::current_exe().unwrap();
    let profile = test.parent().and_then(Path::parent).unwrap();
    profile.join(format!("intervene{}", std::env::consts::EXE_SUFFIX))
}

/// Why the page cannot be tested on this machine, if it cannot.
fn missing_requirement() -> Option<String> {
    if !intervene_binary().exists() {
        return Some(format!(
            "{} is missing (`cargo build --release --bin intervene` builds it)",
            intervene_binary().display()
        ));
    }
    for tool in [webdriver::CHROMIUM, webdriver::CHROMEDRIVER] {
        if !Path::new(tool).exists() {
            return Some(format!(
                "{tool} is missing (`bash scripts/setup-web.sh` installs Chromium and its driver)"
            ));
        }
    }
    let site = built_site();
    match site.join("index.html").exists() {
        true => None,
        false => Some(format!(
            "{} holds no built page (`bash scripts/build-web.sh` builds it)",
            site.display()
        )),
    }
}

/// A copy of the built site plus `corrupt.bin`, the default model with one weight byte flipped,
/// `imported.bin`, the reference checkpoint of `tests/data/torch-reference` as
/// `intervene import-torch` converts it, `folder.bin`, a tiny model trained with `--data` on
/// the image-folder fixture (concepts `a` and `b`), and `edit.bin` with `edit.encoder.bin`, a
/// tiny quad model exported as the shipped ones are (decoder only), with its encoder file.
fn site_with_test_models(scratch: &Path) -> PathBuf {
    let root = scratch.join("site");
    copy_dir(&built_site(), &root);
    let mut bytes = std::fs::read(root.join("models/quad-cm.bin")).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(root.join("corrupt.bin"), bytes).unwrap();
    let tests = Path::new(env!("CARGO_MANIFEST_DIR"));
    let at = |p: &Path| p.to_str().unwrap().to_string();
    let file = |name: &str| at(&root.join(name));
    let checkpoint = at(&tests.join("data/torch-reference/vae.pth"));
    let imported = file("imported.bin");
    let import = [
        "import-torch",
        &checkpoint,
        "--dataset",
        "mnist",
        "--out",
        &imported,
    ];
    intervene(&import, None);
    // Tiny models, trained in seconds.
    let tiny =
        words("--preset quick --epochs 1 --device flex --widths 2.8.4 --hidden 16 --image-size 32");
    let (data, cache) = (
        at(&tests.join("data/datasets/plain")),
        root.join("../cache"),
    );
    let run = file("../folder-run");
    let train = ["train", "--data", &data, "--out", &run, "--batch-size", "2"];
    intervene(
        &[&train[..], &tiny].concat(),
        Some(("INTERVENE_CACHE", &cache)),
    );
    intervene(&["export", &run, "--out", &file("folder.bin")], None);
    let run = file("../edit-run");
    let train = [
        "train",
        "--dataset",
        "quad-dependent",
        "--out",
        &run,
        "--per-context",
        "40",
        "--batch-size",
        "8",
    ];
    intervene(&[&train[..], &tiny].concat(), None);
    let (model, encoder) = (file("edit.bin"), file("edit.encoder.bin"));
    let export = [
        "export",
        &run,
        "--out",
        &model,
        "--decoder-only",
        "--precision",
        "q8",
    ];
    intervene(&[&export[..], &["--encoder-out", &encoder]].concat(), None);
    root
}

/// Runs `intervene args...` (with one more environment variable, if given), insisting on
/// success.
fn intervene(args: &[&str], env: Option<(&str, &Path)>) {
    let mut command = std::process::Command::new(intervene_binary());
    command.args(args);
    if let Some((name, value)) = env {
        command.env(name, value);
    }
    let status = command.status().unwrap();
    assert!(status.success(), "intervene {args:?} failed");
}

/// The words of flags that hold no paths.
fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Waits until the page has drawn at least `after + 1` times and is idle; returns the count.
fn settled(browser: &Browser, after: u64) -> u64 {
    let expression = format!(
        "document.body.dataset.busy === '0' && Number(document.body.dataset.renders) > {after} && Number(document.body.dataset.renders)"
    );
    browser.wait_for(&expression, LOAD).as_u64().unwrap()
}

fn fingerprint(browser: &Browser) -> String {
    browser
        .script("return document.getElementById('samples').dataset.fingerprint;")
        .as_str()
        .unwrap()
        .to_string()
}

/// The edit's fingerprint, once the page has drawn one and is idle.
fn edit_fingerprint(browser: &Browser) -> String {
    browser
        .wait_for(
            "document.body.dataset.busy === '0' && document.getElementById('edit-result').dataset.fingerprint",
            LOAD,
        )
        .as_str()
        .unwrap()
        .to_string()
}

fn edit_caption(browser: &Browser) -> String {
    browser
        .script("return document.getElementById('edit-caption').textContent;")
        .as_str()
        .unwrap()
        .to_string()
}

fn note(browser: &Browser) -> String {
    browser
        .script("const n = document.getElementById('note'); return n.hidden ? '' : n.textContent;")
        .as_str()
        .unwrap()
        .to_string()
}

/// Fails unless the canvas `id` is a sizeable picture, not one flat colour: its width and the
/// range of its colour values.
fn assert_drawn(browser: &Browser, id: &str) {
    assert_drawn_wider_than(browser, id, 200);
}

/// As [`assert_drawn`], for a canvas at least `width` + 1 pixels wide (a 4x4 grid of 28 px
/// MNIST images is 122).
fn assert_drawn_wider_than(browser: &Browser, id: &str, width: u64) {
    let spread = browser.script(&format!(
        "const c = document.getElementById('{id}');
         const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
         let lo = 255, hi = 0;
         for (let i = 0; i < d.length; i++) {{ if (i % 4 < 3) {{ lo = Math.min(lo, d[i]); hi = Math.max(hi, d[i]); }} }}
         return [c.width, hi - lo];"
    ));
    assert!(
        spread[0].as_u64().unwrap() > width,
        "{id} too small: {spread}"
    );
    assert!(spread[1].as_u64().unwrap() > 60, "{id} is blank: {spread}");
}

/// With WebGPU on, a plain visit picks WebGPU on a hardware adapter and the CPU on a software
/// one (SwiftShader, when there is no GPU), and says why. Asked for its backend, the page comes up
/// with a grid, says which backend runs, and benchmarks it.
fn opens_on_its_backend_and_benchmarks(site: &mut Site, backend: Backend) {
    let label = backend.label();
    if backend == Backend::WebGpu {
        let plain = site.server.url("/");
        let browser = site.browser(backend);
        browser.open(&plain);
        settled(browser, 0);
        let line = browser.script("return document.getElementById('backend').textContent;");
        eprintln!("[{label}] plain visit: {}", line.as_str().unwrap());
    }
    let url = site.page(backend, "?bench=1");
    let browser = site.browser(backend);
    let opened = Instant::now();
    browser.open(&url);
    settled(browser, 0);
    eprintln!(
        "[{label}] first grid after {:.2} s",
        opened.elapsed().as_secs_f64()
    );
    let shown = browser.script("return document.getElementById('backend').dataset.backend;");
    assert_eq!(
        shown,
        label,
        "backend line: {}",
        browser.script("return document.getElementById('backend').textContent;")
    );
    assert_drawn(browser, "samples");
    let bench = browser.wait_for(
        "document.getElementById('bench').dataset.medianMs && document.getElementById('bench').textContent",
        BENCH,
    );
    eprintln!("[{label}] {}", bench.as_str().unwrap());
}

/// Toggling two concepts (a composition) and moving a slider changes the pixels; dragging a
/// slider never blocks the page's thread; the share link, opened in a fresh browser, gives the
/// same pixels.
fn composes_drags_and_shares_exact_pixels(site: &mut Site, backend: Backend) {
    let label = backend.label();
    let browser = site.visit(backend, "");
    let mut renders = settled(browser, 0);
    let plain = fingerprint(browser);
    browser.script("document.getElementById('do-quad1').click();");
    renders = settled(browser, renders);
    browser.script("document.getElementById('do-quad2').click();");
    renders = settled(browser, renders);
    let composed = fingerprint(browser);
    assert_ne!(
        plain, composed,
        "intervening on quad1+quad2 left the samples unchanged"
    );
    let caption = browser.script("return document.getElementById('samples-caption').textContent;");
    assert!(
        caption.as_str().unwrap().contains("quad1+quad2"),
        "{caption}"
    );
    browser.script(
        "const s = document.getElementById('shift-size'); s.value = '1.5';
         s.dispatchEvent(new Event('input'));",
    );
    renders = settled(browser, renders);
    assert_ne!(
        fingerprint(browser),
        composed,
        "moving the size noise changed nothing"
    );

    // Dragging a slider: twenty moves, 16 ms apart. The model runs in its worker, so no task on
    // the page's thread takes over 50 ms; redraws coalesce, and the grid that stays is the last
    // value's (the share link's fresh load below must give the same pixels).
    let supported =
        browser.script("return PerformanceObserver.supportedEntryTypes.includes('longtask');");
    assert_eq!(supported, true, "this browser does not report long tasks");
    browser.script(
        "window.longTasks = [];
         new PerformanceObserver((list) => {
           for (const e of list.getEntries()) window.longTasks.push(Math.round(e.duration));
         }).observe({ type: 'longtask' });
         new MutationObserver(() => { window.lastGrid = performance.now(); })
           .observe(document.getElementById('samples'), { attributes: true, attributeFilter: ['data-fingerprint'] });
         const s = document.getElementById('shift-size');
         for (let i = 1; i <= 20; i++) setTimeout(() => {
           s.value = (1.5 - 0.15 * i).toFixed(2);
           s.dispatchEvent(new Event('input'));
           if (i === 20) window.lastInput = performance.now();
         }, 16 * i);",
    );
    browser.wait_for(
        "window.lastInput !== undefined && document.body.dataset.busy === '0' && window.lastGrid > window.lastInput",
        LOAD,
    );
    let drag = browser.script(
        "return [window.longTasks, Math.round(window.lastGrid - window.lastInput), Number(document.body.dataset.renders)];",
    );
    let drawn = drag[2].as_u64().unwrap() - renders;
    eprintln!(
        "[{label}] slider moved 20 times: {drawn} grids drawn, the last {} ms after the last move; main-thread tasks over 50 ms: {}",
        drag[1], drag[0]
    );
    assert_eq!(
        drag[0],
        serde_json::json!([]),
        "the page's thread was blocked while a slider moved"
    );
    assert_eq!(
        browser.script("return document.getElementById('shift-size').value;"),
        "-1.5"
    );
    let shifted = fingerprint(browser);
    assert_ne!(shifted, composed, "moving the size noise changed nothing");

    let link = share_link(browser);
    assert!(
        link.contains("do=quad1,quad2") && link.contains("shift="),
        "{link}"
    );
    let fresh = site.fresh_browser(backend);
    fresh.open(&link);
    settled(&fresh, 0);
    assert_eq!(
        fingerprint(&fresh),
        shifted,
        "the share link drew different pixels"
    );
    assert_eq!(note(&fresh), "", "a good link showed a note");
}

/// Every concept chip is reachable from the keyboard, with a visible focus ring.
fn concept_chips_take_the_keyboard_focus(site: &mut Site, backend: Backend) {
    let browser = site.visit(backend, "");
    let focus = browser.script(
        "const t = document.getElementById('do-quad3'); t.focus();
         const ring = getComputedStyle(t.closest('label')).outlineStyle;
         return [document.activeElement === t, ring];",
    );
    assert_eq!(
        focus[0], true,
        "a concept chip cannot take the keyboard focus"
    );
    assert_ne!(focus[1], "none", "a focused concept chip shows no ring");
}

/// The concept graphs: the learned one shows as many edges as the visitor asks for, the true one
/// of quad sits beside it.
fn graphs_show_the_asked_number_of_edges(site: &mut Site, backend: Backend) {
    let browser = site.visit(backend, "");
    let caption = |b: &Browser| {
        b.script("return document.getElementById('graph-caption').textContent;")
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        caption(browser).contains("the 5 strongest of 30"),
        "{}",
        caption(browser)
    );
    assert_eq!(
        browser.script("return document.getElementById('true-graph-figure').hidden;"),
        false
    );
    assert_drawn(browser, "true-graph");
    let graph_pixels = "const c = document.getElementById('graph');
         return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data).join(',');";
    let few = browser.script(graph_pixels);
    browser.script(
        "const e = document.getElementById('graph-edges'); e.value = '12';
         e.dispatchEvent(new Event('input'));",
    );
    assert!(
        caption(browser).contains("the 12 strongest of 30"),
        "{}",
        caption(browser)
    );
    assert_ne!(
        browser.script(graph_pixels),
        few,
        "more edges drew the same graph"
    );
}

/// A broken link: a note naming what could not be read, and the default view.
fn broken_link_gives_a_note_and_the_default_view(site: &mut Site, backend: Backend) {
    let browser = site.visit(backend, "?model=quad-cm&do=quad1&seed=12ab&grid=99");
    let text = note(browser);
    assert!(
        text.contains("could not be read") && text.contains("12ab") && text.contains("99"),
        "{text}"
    );
    assert_eq!(
        browser.script("return document.getElementById('seed').value;"),
        "0"
    );
}

/// A corrupt model named by the link: its message, then the default model.
fn corrupt_model_in_a_link_is_refused(site: &mut Site, backend: Backend) {
    let browser = site.visit(backend, "?model=corrupt.bin");
    let text = note(browser);
    assert!(
        text.contains("corrupt.bin") && text.contains("checksum"),
        "{text}"
    );
    assert_drawn(browser, "samples");
}

/// A corrupt file from disk: its message, and the model on screen stays.
fn corrupt_file_from_disk_keeps_the_model(site: &mut Site, backend: Backend) {
    let corrupt = site.root.join("corrupt.bin");
    let browser = site.visit(backend, "");
    let renders = settled(browser, 0);
    let before = fingerprint(browser);
    browser.choose_file("#model-file", &corrupt);
    let text = browser.wait_for(
        "!document.getElementById('note').hidden && document.getElementById('note').textContent",
        LOAD,
    );
    assert!(text.as_str().unwrap().contains("checksum"), "{text}");
    assert_eq!(
        settled(browser, renders - 1),
        renders,
        "a refused file redrew the page"
    );
    assert_eq!(fingerprint(browser), before);
}

/// A model trained with the paper's PyTorch code, imported: it loads and draws a composition.
fn imported_reference_checkpoint_composes(site: &mut Site, backend: Backend) {
    let browser = site.visit(backend, "?model=imported.bin&do=thin,shear");
    assert_eq!(note(browser), "", "the imported model showed a note");
    assert_drawn_wider_than(browser, "samples", 100);
}

/// A model trained on images from disk: its own concepts compose; real images are not drawn.
fn folder_trained_model_composes_its_concepts(site: &mut Site, backend: Backend) {
    let browser = site.visit(backend, "?model=folder.bin&do=a,b");
    assert_eq!(note(browser), "", "the folder model showed a note");
    // One epoch on twelve images: a drawn grid, though perhaps a faint one.
    let captions = browser.script(
        "return [document.getElementById('samples-caption').textContent, \
                 document.getElementById('real-caption').textContent, \
                 document.getElementById('samples').width];",
    );
    assert!(captions[2].as_u64().unwrap() > 100, "{captions}");
    assert!(captions[0].as_str().unwrap().contains("a+b"), "{captions}");
    assert!(
        captions[1]
            .as_str()
            .unwrap()
            .contains("trained on plain, read from disk"),
        "{captions}"
    );
}

/// Editing a real image. The link opens the edit panel; the page fetches the decoder-only model's
/// encoder file and shows real image 3 of the seed, its reconstruction, its counterfactual under
/// quad1 and the true counterfactual. A slider edits live (no true counterfactual for moved
/// noise), and the share link gives the same pixels. The visitor's own image is edited in the
/// page and kept out of the link.
fn edits_a_real_image_and_shares_the_edit(site: &mut Site, backend: Backend) {
    let browser = site.visit(backend, "?model=edit.bin&do=quad1&seed=5&edit=2");
    let edited = edit_fingerprint(browser);
    assert_eq!(note(browser), "", "the edit link showed a note");
    assert_drawn(browser, "edit-choices");
    assert_drawn_wider_than(browser, "edit-result", 100);
    let caption = edit_caption(browser);
    assert!(
        caption.contains("real image 3 of seed 5") && caption.contains("true counterfactual"),
        "{caption}"
    );
    let renders = settled(browser, 0);
    browser.script(
        "const s = document.getElementById('shift-size'); s.value = '1.5';
         s.dispatchEvent(new Event('input'));",
    );
    settled(browser, renders);
    let moved = edit_fingerprint(browser);
    assert_ne!(
        moved, edited,
        "moving the size noise left the edit unchanged"
    );
    assert!(!edit_caption(browser).contains("true counterfactual"));
    let link = share_link(browser);
    assert!(link.contains("edit=2") && link.contains("shift="), "{link}");
    let fresh = site.fresh_browser(backend);
    fresh.open(&link);
    settled(&fresh, 0);
    assert_eq!(
        edit_fingerprint(&fresh),
        moved,
        "the edit's share link drew different pixels"
    );
    let own = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/datasets/plain/a/0.png");
    fresh.choose_file("#edit-file", &own);
    fresh.wait_for(
        "document.body.dataset.busy === '0' && document.getElementById('edit-caption').textContent.includes('your image 0.png')",
        LOAD,
    );
    let link = share_link(&fresh);
    assert!(!link.contains("edit="), "{link}");
}

/// The 3D scenes model: a composed pair generated, and real scenes of it rendered in the page.
fn scenes_model_draws_samples_and_real_scenes(site: &mut Site, backend: Backend) {
    let browser = site.visit(backend, "?model=scenes-cm&do=bg,sl&seed=3");
    assert_eq!(note(browser), "", "the scenes link showed a note");
    let caption = browser.script("return document.getElementById('samples-caption').textContent;");
    assert!(caption.as_str().unwrap().contains("bg+sl"), "{caption}");
    assert_drawn(browser, "samples");
    assert_drawn(browser, "real");
}

/// A phone-sized window (390 px) stacks everything with nothing wider than the screen, as does a
/// desktop one. The README's screenshots come from here: INTERVENE_SCREENSHOTS=www writes them.
fn fits_a_desktop_and_a_phone(site: &mut Site, backend: Backend) {
    let browser = site.visit(backend, "?model=quad-cm&do=quad1,quad2&seed=7");
    let shots = std::env::var_os("INTERVENE_SCREENSHOTS").map(PathBuf::from);
    for (name, width, height) in [
        ("screenshot.png", 1280, 1000),
        ("screenshot-390.png", 390, 2400),
    ] {
        browser.set_window(width, height);
        let overflow = browser.script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
        );
        assert_eq!(
            overflow, 0,
            "at {width} px the page is wider than the window"
        );
        let png = browser.screenshot();
        assert_eq!(&png[1..4], b"PNG", "{name} is not a PNG");
        if let Some(dir) = &shots {
            std::fs::write(dir.join(name), png).unwrap();
        }
    }
    browser.set_window(1280, 1000);
}

/// Offline: once the service worker runs, the page and every model it has loaded need no server,
/// share links and edits included, and a plain visit reopens the last view. Served by a server
/// of its own (a new origin, so a fresh service worker), which then goes away.
fn works_offline_after_one_visit(site: &mut Site, backend: Backend) {
    let server = StaticServer::start(&site.root);
    let browser = site.fresh_browser(backend);
    let links = [
        server.url("/?model=quad-cm&do=quad1,quad2&seed=7"),
        server.url("/?model=edit.bin&do=quad1&seed=5&edit=2"),
        server.url("/?model=scenes-cm&do=bg,sl&seed=3"),
    ];
    browser.open(&links[0]);
    settled(&browser, 0);
    browser.wait_for("navigator.serviceWorker.controller !== null", LOAD);
    let online: Vec<String> = links
        .iter()
        .map(|link| {
            browser.open(link);
            settled(&browser, 0);
            if link.contains("edit=") {
                edit_fingerprint(&browser)
            } else {
                fingerprint(&browser)
            }
        })
        .collect();
    server.go_offline();
    for (link, online) in links.iter().zip(&online) {
        browser.open(link);
        settled(&browser, 0);
        let offline = if link.contains("edit=") {
            edit_fingerprint(&browser)
        } else {
            fingerprint(&browser)
        };
        assert_eq!(&offline, online, "offline, {link} drew other pixels");
        assert_eq!(note(&browser), "", "offline, {link} showed a note");
    }
    assert_drawn(&browser, "samples");
    browser.open(&server.url("/"));
    settled(&browser, 0);
    assert_eq!(
        fingerprint(&browser),
        online[2],
        "a plain visit did not reopen the last view"
    );
}

/// The share link the page offers for what it shows.
fn share_link(browser: &Browser) -> String {
    browser
        .script("return document.getElementById('share-link').value;")
        .as_str()
        .unwrap()
        .to_string()
}

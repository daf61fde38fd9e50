//! `?bench=1`: times a 4x4 grid of composed samples (the first two concepts intervened) on the
//! running backend, generation and read-back included, and prints the figures on the page, where
//! the browser test reads them.

use super::{Shared, now};
use crate::link::View;

const WARM_UP: usize = 3;
const RUNS: usize = 20;
/// A slow backend (a software GPU takes seconds a grid) stops after this long, with at least
/// `MIN_RUNS` timed runs, so the benchmark stays bounded.
const TIME_BOX_MS: f64 = 15_000.0;
const MIN_RUNS: usize = 5;

pub async fn run(app: &Shared) {
    let page = &app.page;
    // Let the page draw its first grid before the benchmark takes the thread.
    for _ in 0..1500 {
        if app.state.borrow().renders > 0 {
            break;
        }
        gloo::timers::future::TimeoutFuture::new(20).await;
    }
    let Some(engine) = app.state.borrow().engine.clone() else {
        return;
    };
    let Some(current) = app.state.borrow().view.clone() else {
        return;
    };
    let view = View {
        intervened: engine.concepts().iter().take(2).cloned().collect(),
        grid: 4,
        shifts: Vec::new(),
        ..current
    };
    page.bench.set_hidden(false);
    page.bench.set_text_content(Some("bench: running…"));
    let mut times = Vec::with_capacity(RUNS);
    let mut timed_since = 0.0;
    for i in 0..WARM_UP + RUNS {
        if i == WARM_UP {
            timed_since = now();
        }
        if times.len() >= MIN_RUNS && now() - timed_since > TIME_BOX_MS {
            break;
        }
        let start = now();
        if let Err(e) = engine.generate(&view).await {
            page.bench
                .set_text_content(Some(&format!("bench: failed: {e}")));
            return;
        }
        if i >= WARM_UP {
            times.push(now() - start);
        }
    }
    times.sort_by(f64::total_cmp);
    let runs = times.len();
    let median = times[runs / 2];
    let size = engine.shape().size;
    let text = format!(
        "bench: backend={} samples=16 size={size}px context={} runs={runs} median_ms={median:.2} min_ms={:.2} max_ms={:.2}",
        app.backend.kind.label(),
        engine.context(&view).name(engine.concepts()),
        times[0],
        times[runs - 1],
    );
    let startup: Vec<String> = app
        .state
        .borrow()
        .startup
        .iter()
        .map(|(what, ms)| format!("{what} {ms:.0} ms"))
        .collect();
    let text = format!("{text}\nstartup (since navigation): {}", startup.join(", "));
    page.bench.set_text_content(Some(&text));
    let _ = page
        .bench
        .set_attribute("data-median-ms", &format!("{median:.3}"));
}

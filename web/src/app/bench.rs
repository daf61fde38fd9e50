//! `?bench=1`: times a 4x4 grid of composed samples (the first two concepts intervened) on the
//! running backend, generation and read-back included (the worker times it: `worker.rs`), and
//! prints the figures on the page, where the browser test reads them.

use super::Shared;
use crate::link::View;
use crate::protocol::{BenchFigures, Reply, Request};

pub async fn run(app: &Shared) {
    let page = &app.page;
    // Let the page draw its first grid before the benchmark takes the worker.
    for _ in 0..1500 {
        if app.state.borrow().renders > 0 {
            break;
        }
        gloo::timers::future::TimeoutFuture::new(20).await;
    }
    let (Some(model), Some(current)) = ({
        let state = app.state.borrow();
        (state.model.clone(), state.view.clone())
    }) else {
        return;
    };
    let view = View {
        intervened: model.concepts().iter().take(2).cloned().collect(),
        grid: 4,
        shifts: Vec::new(),
        ..current
    };
    page.bench.set_hidden(false);
    page.bench.set_text_content(Some("bench: running…"));
    let figures = match app
        .worker
        .call(&Request::Bench { view: view.clone() }, None)
        .await
    {
        Ok(answer) => match answer.reply {
            Reply::Benched(figures) => Ok(figures),
            Reply::Failed(e) => Err(e),
            other => Err(format!("the model's worker answered {other:?}")),
        },
        Err(e) => Err(e),
    };
    let BenchFigures {
        runs,
        median_ms,
        min_ms,
        max_ms,
    } = match figures {
        Ok(figures) => figures,
        Err(e) => {
            page.bench
                .set_text_content(Some(&format!("bench: failed: {e}")));
            return;
        }
    };
    let text = format!(
        "bench: backend={} samples=16 size={}px context={} runs={runs} median_ms={median_ms:.2} min_ms={min_ms:.2} max_ms={max_ms:.2}",
        app.backend.label(),
        model.shape().size,
        model.context(&view).name(model.concepts()),
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
        .set_attribute("data-median-ms", &format!("{median_ms:.3}"));
}

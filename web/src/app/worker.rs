//! The model worker: this same wasm module, started in a Web Worker (`www/worker.js`). It owns the
//! backend and the loaded model and answers the page's requests (`crate::protocol`) one at a
//! time, in order, so a load and the draws around it never interleave.

use super::backend::{self, Backend};
use super::engine::Engine;
use super::now;
use crate::link::View;
use crate::picture::{Picture, chw_from_rgba};
use crate::protocol::{self, BenchFigures, Reply, Request};
use js_sys::{Array, Object, Reflect, Uint8Array};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

const BENCH_WARM_UP: usize = 3;
const BENCH_RUNS: usize = 20;
/// A slow backend (a software GPU takes seconds a grid) stops after this long, with at least
/// `BENCH_MIN_RUNS` timed runs, so the benchmark stays bounded.
const BENCH_TIME_BOX_MS: f64 = 15_000.0;
const BENCH_MIN_RUNS: usize = 5;

/// A request not yet answered: its id, the request (or why it could not be read) and what
/// travelled beside it.
struct Queued {
    id: f64,
    request: Result<Request, String>,
    data: JsValue,
}

struct Worker {
    scope: DedicatedWorkerGlobalScope,
    backend: RefCell<Option<Backend>>,
    engine: RefCell<Option<Rc<Engine>>>,
    queue: RefCell<VecDeque<Queued>>,
    busy: Cell<bool>,
}

/// Runs in the worker: listen to the page, then tell it so.
pub fn start(scope: DedicatedWorkerGlobalScope) {
    let worker = Rc::new(Worker {
        scope: scope.clone(),
        backend: RefCell::new(None),
        engine: RefCell::new(None),
        queue: RefCell::new(VecDeque::new()),
        busy: Cell::new(false),
    });
    let panic_scope = scope.clone();
    std::panic::set_hook(Box::new(move |info| {
        console_error_panic_hook::hook(info);
        post(&panic_scope, None, &Reply::Crashed(info.to_string()), &[]);
    }));
    let w = worker.clone();
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        let data = event.data();
        let field = |name: &str| Reflect::get(&data, &JsValue::from_str(name)).unwrap_or_default();
        let id = field("id").as_f64().unwrap_or(0.0);
        let request = field("json")
            .as_string()
            .ok_or_else(|| "a message without a request".to_string())
            .and_then(|text| protocol::decode::<Request>(&text));
        w.queue.borrow_mut().push_back(Queued {
            id,
            request,
            data: field("data"),
        });
        if !w.busy.replace(true) {
            spawn_local(drain(w.clone()));
        }
    });
    scope.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
    post(&scope, None, &Reply::Ready, &[]);
}

/// Answers queued requests until none is left.
async fn drain(worker: Rc<Worker>) {
    loop {
        let next = worker.queue.borrow_mut().pop_front();
        let Some(Queued { id, request, data }) = next else {
            worker.busy.set(false);
            return;
        };
        let (reply, pictures) = match request {
            Ok(request) => answer(&worker, request, data).await,
            Err(e) => (Reply::Failed(e), Vec::new()),
        };
        post(&worker.scope, Some(id), &reply, &pictures);
    }
}

async fn answer(worker: &Worker, request: Request, data: JsValue) -> (Reply, Vec<Vec<u8>>) {
    let no_pictures = |reply| (reply, Vec::new());
    if let Request::Start { preference } = request {
        let backend = backend::choose(preference).await;
        let reply = Reply::Started {
            backend: backend.kind,
            explanation: backend.explanation.clone(),
        };
        *worker.backend.borrow_mut() = Some(backend);
        return no_pictures(reply);
    }
    let Some(device) = worker.backend.borrow().as_ref().map(|b| b.device.clone()) else {
        return no_pictures(Reply::Failed("the worker has no backend yet".into()));
    };
    if let Request::Load = request {
        let Some(bytes) = data.dyn_ref::<Uint8Array>() else {
            return no_pictures(Reply::Failed(
                "no weights file came with the request".into(),
            ));
        };
        return no_pictures(match Engine::load(&bytes.to_vec(), &device).await {
            Ok(engine) => {
                let info = engine.info.clone();
                *worker.engine.borrow_mut() = Some(Rc::new(engine));
                Reply::Loaded(info)
            }
            Err(e) => Reply::Failed(e),
        });
    }
    let Some(engine) = worker.engine.borrow().clone() else {
        return no_pictures(Reply::Failed("no model is loaded".into()));
    };
    match request {
        Request::Draw { view, real } => draw(&engine, &view, real).await,
        Request::Bench { view } => no_pictures(bench(&engine, &view).await),
        Request::LoadEncoder => no_pictures(match data.dyn_ref::<Uint8Array>() {
            None => Reply::Failed("no encoder file came with the request".into()),
            Some(bytes) => match engine.with_encoder(&bytes.to_vec()) {
                Ok(engine) => {
                    *worker.engine.borrow_mut() = Some(Rc::new(engine));
                    Reply::EncoderLoaded
                }
                Err(e) => Reply::Failed(e),
            },
        }),
        Request::Edit { view, own } => edit(&engine, &view, own.then_some(data)).await,
        Request::Start { .. } | Request::Load => unreachable!("answered above"),
    }
}

/// An edit: the choices' RGBA (when there are choices), then the result's.
async fn edit(engine: &Engine, view: &View, own: Option<JsValue>) -> (Reply, Vec<Vec<u8>>) {
    let shape = engine.info.shape();
    let own = match own.map(|data| match data.dyn_ref::<Uint8Array>() {
        Some(rgba) => chw_from_rgba(&rgba.to_vec(), shape),
        None => Err("no image came with the request".into()),
    }) {
        Some(Err(e)) => return (Reply::Failed(e), Vec::new()),
        Some(Ok(image)) => Some(image),
        None => None,
    };
    match engine.edit(view, own).await {
        Err(e) => (Reply::Failed(format!("editing failed: {e}")), Vec::new()),
        Ok(edited) => {
            let mut pictures = Vec::new();
            let choices = edited.choices.map(|picture| {
                let size = picture.size();
                pictures.push(picture.rgba);
                size
            });
            let result = edited.result.map(|(picture, described)| {
                pictures.push(picture.rgba);
                described
            });
            (Reply::Edited { choices, result }, pictures)
        }
    }
}

/// The view's generated grid (and real images when asked): the reply and the RGBA beside it.
async fn draw(engine: &Engine, view: &View, real: bool) -> (Reply, Vec<Vec<u8>>) {
    let start = now();
    let images = match engine.generate(view).await {
        Ok(images) => images,
        Err(e) => return (Reply::Failed(format!("generating failed: {e}")), Vec::new()),
    };
    let elapsed_ms = now() - start;
    let shape = engine.info.shape();
    let samples = Picture::grid(&images, shape, view.grid);
    let mut pictures = Vec::new();
    let real = real.then(|| {
        engine.real_images(view).map(|images| {
            let picture = Picture::grid(&images, shape, view.grid);
            let size = picture.size();
            pictures.push(picture.rgba);
            size
        })
    });
    let reply = Reply::Drawn {
        samples: samples.size(),
        fingerprint: samples.fingerprint(),
        elapsed_ms,
        real,
        warning: intervene::sampling::degenerate(&images, shape.numel()),
    };
    pictures.insert(0, samples.rgba);
    (reply, pictures)
}

/// Times the view's grid (generation and read-back).
async fn bench(engine: &Engine, view: &View) -> Reply {
    let mut times = Vec::with_capacity(BENCH_RUNS);
    let mut timed_since = 0.0;
    for i in 0..BENCH_WARM_UP + BENCH_RUNS {
        if i == BENCH_WARM_UP {
            timed_since = now();
        }
        if times.len() >= BENCH_MIN_RUNS && now() - timed_since > BENCH_TIME_BOX_MS {
            break;
        }
        let start = now();
        if let Err(e) = engine.generate(view).await {
            return Reply::Failed(format!("the benchmark failed: {e}"));
        }
        if i >= BENCH_WARM_UP {
            times.push(now() - start);
        }
    }
    times.sort_by(f64::total_cmp);
    Reply::Benched(BenchFigures {
        runs: times.len(),
        median_ms: times[times.len() / 2],
        min_ms: times[0],
        max_ms: times[times.len() - 1],
    })
}

/// Sends a reply (`id` None: unasked) with its pictures, whose buffers move rather than copy.
fn post(scope: &DedicatedWorkerGlobalScope, id: Option<f64>, reply: &Reply, pictures: &[Vec<u8>]) {
    let message = Object::new();
    let set = |name: &str, value: &JsValue| {
        let _ = Reflect::set(&message, &JsValue::from_str(name), value);
    };
    set("id", &id.map_or(JsValue::NULL, JsValue::from_f64));
    set("json", &JsValue::from_str(&protocol::encode(reply)));
    let arrays = Array::new();
    let transfer = Array::new();
    for picture in pictures {
        let array = Uint8Array::from(picture.as_slice());
        transfer.push(&array.buffer());
        arrays.push(&array);
    }
    set("data", &arrays);
    if scope
        .post_message_with_transfer(&message, &transfer)
        .is_err()
    {
        gloo::console::error!("the model worker could not answer the page");
    }
}

//! The page's handle on its model worker (`worker.rs`): starts the worker with this very module
//! and turns each request into a future of its reply.

use crate::protocol::{self, Reply, Request};
use gloo::events::EventListener;
use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{ErrorEvent, MessageEvent, Worker, WorkerOptions, WorkerType};

/// The worker's entry script (`www/worker.js`), beside the page.
const ENTRY: &str = "worker.js";
/// The id the worker's unasked messages (ready, crashed) wait under.
const UNASKED: u32 = 0;

#[wasm_bindgen]
extern "C" {
    /// The URL of this module's JavaScript bindings, which the worker imports too.
    #[wasm_bindgen(thread_local_v2, js_namespace = ["import", "meta"], js_name = url)]
    static BINDINGS_URL: String;
}

pub struct ModelWorker {
    worker: Worker,
    /// Each request's `resolve`, by id, until its reply comes.
    pending: RefCell<HashMap<u32, Function>>,
    next_id: Cell<u32>,
    /// Why the worker stopped, once it has: later requests fail at once with it.
    stopped: RefCell<Option<String>>,
    /// The worker's message and error listeners, attached for as long as this handle lives.
    listeners: RefCell<Vec<EventListener>>,
}

/// A reply with the byte arrays that came beside it.
pub struct Answer {
    pub reply: Reply,
    pub data: Vec<Vec<u8>>,
}

impl ModelWorker {
    /// Starts the worker and waits until it listens.
    pub async fn spawn() -> Result<Rc<ModelWorker>, String> {
        let options = WorkerOptions::new();
        options.set_type(WorkerType::Module);
        let worker = Worker::new_with_options(ENTRY, &options)
            .map_err(|e| format!("this browser could not start the model's worker ({e:?})"))?;
        let this = Rc::new(ModelWorker {
            worker,
            pending: RefCell::new(HashMap::new()),
            next_id: Cell::new(UNASKED + 1),
            stopped: RefCell::new(None),
            listeners: RefCell::new(Vec::new()),
        });
        let weak = Rc::downgrade(&this);
        let on_message = EventListener::new(&this.worker, "message", move |event| {
            if let (Some(this), Some(event)) = (weak.upgrade(), event.dyn_ref()) {
                this.receive(event);
            }
        });
        // The entry script failed to load, or its module to start.
        let weak = Rc::downgrade(&this);
        let on_error = EventListener::new(&this.worker, "error", move |event| {
            let why = event
                .dyn_ref::<ErrorEvent>()
                .map(|e| e.message())
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| format!("{ENTRY} failed to load"));
            if let Some(this) = weak.upgrade() {
                this.stop(&why);
            }
        });
        *this.listeners.borrow_mut() = vec![on_message, on_error];

        let ready = this.register(UNASKED);
        let start = Object::new();
        let set = |name: &str, value: &JsValue| {
            let _ = Reflect::set(&start, &JsValue::from_str(name), value);
        };
        set(
            "glue",
            &JsValue::from_str(&BINDINGS_URL.with(String::clone)),
        );
        set("module", &wasm_bindgen::module());
        this.worker
            .post_message(&start)
            .map_err(|e| format!("the model's worker refused its module ({e:?})"))?;
        match this.wait(ready).await?.reply {
            Reply::Ready => Ok(this),
            other => Err(format!("the model's worker began with {other:?}")),
        }
    }

    /// Sends a request (with a byte array beside it, whose buffer moves to the worker) and waits
    /// for its reply. A worker that has stopped fails every request with why.
    pub async fn call(
        &self,
        request: &Request,
        data: Option<Uint8Array>,
    ) -> Result<Answer, String> {
        if let Some(why) = self.stopped.borrow().clone() {
            return Err(why);
        }
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1).max(UNASKED + 1));
        let message = Object::new();
        let transfer = Array::new();
        let set = |name: &str, value: &JsValue| {
            let _ = Reflect::set(&message, &JsValue::from_str(name), value);
        };
        set("id", &JsValue::from(id));
        set("json", &JsValue::from_str(&protocol::encode(request)));
        if let Some(data) = data {
            transfer.push(&data.buffer());
            set("data", &data);
        }
        let reply = self.register(id);
        if let Err(e) = self.worker.post_message_with_transfer(&message, &transfer) {
            self.pending.borrow_mut().remove(&id);
            return Err(format!(
                "the request could not reach the model's worker ({e:?})"
            ));
        }
        self.wait(reply).await
    }

    fn register(&self, id: u32) -> Promise {
        Promise::new(&mut |resolve, _reject| {
            self.pending.borrow_mut().insert(id, resolve);
        })
    }

    async fn wait(&self, reply: Promise) -> Result<Answer, String> {
        let message = JsFuture::from(reply).await.unwrap_or_default();
        let field =
            |name: &str| Reflect::get(&message, &JsValue::from_str(name)).unwrap_or_default();
        let json = field("json")
            .as_string()
            .ok_or("the model's worker answered without a reply")?;
        let reply = protocol::decode::<Reply>(&json)?;
        if let Reply::Crashed(why) = reply {
            return Err(crashed(&why));
        }
        let data = Array::from(&field("data"))
            .iter()
            .map(|array| Uint8Array::new(&array).to_vec())
            .collect();
        Ok(Answer { reply, data })
    }

    fn receive(&self, event: &MessageEvent) {
        let message = event.data();
        let id = Reflect::get(&message, &JsValue::from_str("id"))
            .ok()
            .and_then(|id| id.as_f64())
            .map_or(UNASKED, |id| id as u32);
        let json = Reflect::get(&message, &JsValue::from_str("json"))
            .ok()
            .and_then(|j| j.as_string())
            .unwrap_or_default();
        if let Ok(Reply::Crashed(why)) = protocol::decode::<Reply>(&json) {
            self.stop(&why);
            return;
        }
        let resolve = self.pending.borrow_mut().remove(&id);
        if let Some(resolve) = resolve {
            let _ = resolve.call1(&JsValue::NULL, &message);
        }
    }

    /// Marks the worker stopped and fails every request still waiting.
    fn stop(&self, why: &str) {
        let why = self
            .stopped
            .borrow_mut()
            .get_or_insert_with(|| crashed(why))
            .clone();
        let message = Object::new();
        let _ = Reflect::set(
            &message,
            &JsValue::from_str("json"),
            &JsValue::from_str(&protocol::encode(&Reply::Crashed(why))),
        );
        let waiting: Vec<Function> = self.pending.borrow_mut().drain().map(|(_, f)| f).collect();
        for resolve in waiting {
            let _ = resolve.call1(&JsValue::NULL, &message);
        }
        self.worker.terminate();
    }
}

fn crashed(why: &str) -> String {
    if why.starts_with("the model") {
        why.to_owned()
    } else {
        format!("the model's worker stopped on an internal error ({why})")
    }
}

//! Which device runs the model: the browser's WebGPU when it offers an adapter, else burn's flex
//! on the CPU (wasm SIMD). The page says which, and why.

use burn::tensor::Device;
use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    WebGpu,
    Cpu,
}

impl BackendKind {
    pub fn label(self) -> &'static str {
        match self {
            BackendKind::WebGpu => "WebGPU",
            BackendKind::Cpu => "CPU (wasm SIMD)",
        }
    }
}

pub struct Backend {
    pub device: Device,
    pub kind: BackendKind,
    /// One line for the page: what runs, and why.
    pub explanation: String,
}

/// Picks the backend. `force_cpu` comes from `?backend=cpu`.
pub async fn choose(force_cpu: bool) -> Backend {
    if force_cpu {
        return cpu("running on CPU, as the link asks (backend=cpu)".into());
    }
    // Ask for an adapter ourselves first: burn's initialisation is not meant to fail softly when
    // a browser exposes `navigator.gpu` but has no adapter to give.
    if let Err(why) = adapter_available().await {
        return cpu(format!("WebGPU unavailable ({why}): running on CPU"));
    }
    match Device::wgpu_options().init_async().await {
        Ok(device) => Backend {
            device,
            kind: BackendKind::WebGpu,
            explanation: "running on WebGPU".into(),
        },
        Err(e) => cpu(format!("WebGPU failed to start ({e}): running on CPU")),
    }
}

fn cpu(explanation: String) -> Backend {
    Backend {
        device: Device::flex(),
        kind: BackendKind::Cpu,
        explanation,
    }
}

async fn adapter_available() -> Result<(), String> {
    let navigator = gloo::utils::window().navigator();
    let gpu = Reflect::get(&navigator, &JsValue::from_str("gpu")).unwrap_or(JsValue::UNDEFINED);
    if gpu.is_undefined() || gpu.is_null() {
        return Err("this browser has no navigator.gpu".into());
    }
    let request = Reflect::get(&gpu, &JsValue::from_str("requestAdapter"))
        .ok()
        .and_then(|f| f.dyn_into::<Function>().ok())
        .ok_or("navigator.gpu.requestAdapter is missing")?;
    let promise: Promise = request
        .call0(&gpu)
        .map_err(|e| format!("requestAdapter threw {e:?}"))?
        .dyn_into()
        .map_err(|_| "requestAdapter returned no promise")?;
    let adapter = JsFuture::from(promise)
        .await
        .map_err(|e| format!("requestAdapter failed: {e:?}"))?;
    if adapter.is_null() || adapter.is_undefined() {
        return Err("the browser offers no WebGPU adapter".into());
    }
    Ok(())
}

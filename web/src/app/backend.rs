//! Which device runs the model: the browser's WebGPU when it offers an adapter, else burn's flex
//! on the CPU (wasm SIMD). Chosen in the model worker; the page says which, and why.

use crate::protocol::{BackendKind, Preference};
use burn::tensor::Device;
use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

pub struct Backend {
    pub device: Device,
    pub kind: BackendKind,
    /// One line for the page: what runs, and why.
    pub explanation: String,
}

/// Picks the backend.
pub async fn choose(preference: Preference) -> Backend {
    if preference == Preference::Cpu {
        return cpu("running on CPU, as the link asks (backend=cpu)".into());
    }
    // Ask for an adapter ourselves first: burn's initialisation is not meant to fail softly when
    // a browser exposes `navigator.gpu` but has no adapter to give.
    match adapter().await {
        Err(why) => return cpu(format!("WebGPU unavailable ({why}): running on CPU")),
        // A software adapter (Chromium's SwiftShader) emulates the GPU on the CPU, far slower
        // than our own CPU kernels: a 4x4 grid takes seconds instead of tens of milliseconds.
        Ok(Adapter::Software(name)) if preference == Preference::Auto => {
            return cpu(format!(
                "the only WebGPU adapter is a software one ({name}), far slower than the CPU \
                 kernels: running on CPU (backend=webgpu in the link forces WebGPU)"
            ));
        }
        Ok(_) => {}
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

enum Adapter {
    Hardware,
    Software(String),
}

async fn adapter() -> Result<Adapter, String> {
    // A worker's navigator offers WebGPU as a window's does.
    let navigator = Reflect::get(&js_sys::global(), &JsValue::from_str("navigator"))
        .unwrap_or(JsValue::UNDEFINED);
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
    let info = Reflect::get(&adapter, &JsValue::from_str("info")).unwrap_or(JsValue::UNDEFINED);
    let field = |name: &str| {
        Reflect::get(&info, &JsValue::from_str(name))
            .ok()
            .and_then(|v| v.as_string())
            .unwrap_or_default()
    };
    let fallback = Reflect::get(&info, &JsValue::from_str("isFallbackAdapter"))
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let description = [field("vendor"), field("architecture"), field("description")]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if fallback || description.to_ascii_lowercase().contains("swiftshader") {
        let name = if description.is_empty() {
            "fallback adapter".into()
        } else {
            description
        };
        Ok(Adapter::Software(name))
    } else {
        Ok(Adapter::Hardware)
    }
}

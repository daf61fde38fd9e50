//! Debian's headless Chromium driven through chromedriver with the `fantoccini` WebDriver client,
//! behind a blocking interface: the tests read as a visitor's steps, one after another.

use crate::runtime;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long chromedriver may take to start answering.
const DRIVER_START: Duration = Duration::from_secs(20);

/// A running chromedriver; killed on drop.
pub struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    pub fn start() -> Driver {
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + DRIVER_START;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not answer");
            std::thread::sleep(Duration::from_millis(100));
        }
        driver
    }

    /// A fresh browser with its own profile folder; `webgpu` turns on Chromium's WebGPU
    /// (SwiftShader without a GPU), otherwise WebGPU is off and the page must fall back to CPU.
    pub fn browser(&self, webgpu: bool, profile: &Path) -> Browser {
        let mut args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--no-first-run".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1280,1000".into(),
            format!("--user-data-dir={}", profile.display()),
        ];
        if webgpu {
            args.push("--enable-unsafe-webgpu".into());
        } else {
            args.push("--disable-gpu".into());
            args.push("--disable-features=WebGPU".into());
        }
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args }
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let client = runtime()
            .block_on(
                ClientBuilder::new(HttpConnector::new())
                    .capabilities(capabilities)
                    .connect(&self.url),
            )
            .unwrap_or_else(|e| panic!("cannot start Chromium: {e}"));
        Browser { client }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session; closed on drop.
pub struct Browser {
    client: Client,
}

impl Browser {
    pub fn open(&self, url: &str) {
        runtime()
            .block_on(self.client.goto(url))
            .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    }

    /// Runs `body` as a function in the page and returns what it returns.
    pub fn script(&self, body: &str) -> Value {
        runtime()
            .block_on(self.client.execute(body, Vec::new()))
            .unwrap_or_else(|e| panic!("script failed: {e}\n{body}"))
    }

    /// Polls `expression` until it is truthy, returning its value, or panics after `timeout`
    /// with what the page's status line and note say.
    pub fn wait_for(&self, expression: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.script(&format!("return ({expression}) || null;"));
            if !value.is_null() {
                return value;
            }
            if Instant::now() > deadline {
                let status = self.script(
                    "return document.getElementById('status').textContent + ' | note: ' + document.getElementById('note').textContent;",
                );
                panic!("timed out waiting for `{expression}`; page says: {status}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Resizes the browser's window.
    pub fn set_window(&self, width: u32, height: u32) {
        runtime()
            .block_on(self.client.set_window_size(width, height))
            .unwrap_or_else(|e| panic!("cannot resize the window: {e}"));
    }

    /// The viewport as a PNG file.
    pub fn screenshot(&self) -> Vec<u8> {
        runtime()
            .block_on(self.client.screenshot())
            .unwrap_or_else(|e| panic!("no screenshot: {e}"))
    }

    /// Types a file path into a file input (how WebDriver uploads files).
    pub fn choose_file(&self, css: &str, path: &Path) {
        runtime()
            .block_on(async {
                let input = self.client.find(Locator::Css(css)).await?;
                input.send_keys(path.to_str().unwrap()).await
            })
            .unwrap_or_else(|e| panic!("cannot choose {} in {css}: {e}", path.display()));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = runtime().block_on(self.client.clone().close());
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

//! Just enough of the W3C WebDriver protocol to drive Debian's headless Chromium through
//! chromedriver: open a page, run a script, send a file path to an input, resize, take a
//! screenshot, close.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A running chromedriver; killed on drop.
pub struct Driver {
    child: Child,
    port: u16,
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
        let driver = Driver { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while request(port, "GET", "/status", None).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not answer");
            std::thread::sleep(Duration::from_millis(100));
        }
        driver
    }

    /// A fresh browser with its own empty profile; `webgpu` turns on Chromium's WebGPU
    /// (SwiftShader without a GPU), otherwise WebGPU is off and the page must fall back to CPU.
    pub fn browser(&self, webgpu: bool, profile: &std::path::Path) -> Browser {
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
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": { "binary": CHROMIUM, "args": args }
            }}
        });
        let reply = request(self.port, "POST", "/session", Some(&capabilities))
            .unwrap_or_else(|e| panic!("cannot start Chromium: {e}"));
        let session = reply["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session in {reply}"))
            .to_string();
        Browser {
            port: self.port,
            session,
        }
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
    port: u16,
    session: String,
}

impl Browser {
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let reply = request(self.port, method, &path, body)
            .unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"));
        reply["value"].clone()
    }

    pub fn open(&self, url: &str) {
        self.call("POST", "/url", Some(&json!({ "url": url })));
    }

    /// Runs `body` as a function in the page and returns what it returns.
    pub fn script(&self, body: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": body, "args": [] })),
        )
    }

    /// Polls `expression` until it is truthy, returning its value, or panics after `timeout`.
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

    /// Resizes the browser's viewport.
    pub fn set_window(&self, width: u32, height: u32) {
        self.call(
            "POST",
            "/window/rect",
            Some(&json!({ "width": width, "height": height })),
        );
    }

    /// The viewport as a PNG file.
    pub fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let text = self.call("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(text.as_str().expect("a base64 screenshot"))
            .expect("valid base64")
    }

    /// Types a file path into a file input (how WebDriver uploads files).
    pub fn choose_file(&self, css: &str, path: &std::path::Path) {
        let element = self.call(
            "POST",
            "/element",
            Some(&json!({ "using": "css selector", "value": css })),
        );
        let id = element
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {element}"))
            .to_string();
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            Some(&json!({ "text": path.to_str().unwrap() })),
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = request(
            self.port,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request with a JSON body; the JSON answer.
fn request(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(180)))
        .map_err(|e| e.to_string())?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()))
        .map_err(|e| e.to_string())?;
    // chromedriver announces `Connection: close` but keeps the socket open: read by length.
    let mut reader = BufReader::new(stream);
    let mut headers = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 || line == "\r\n" {
            break;
        }
        headers.push_str(&line.to_ascii_lowercase());
    }
    let length = headers
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .ok_or("answer without a Content-Length")?;
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).map_err(|e| e.to_string())?;
    let content = String::from_utf8_lossy(&body);
    let value: Value = serde_json::from_str(&content).map_err(|e| format!("{e}: {content}"))?;
    if let Some(error) = value["value"]["error"].as_str() {
        return Err(format!("{error}: {}", value["value"]["message"]));
    }
    Ok(value)
}

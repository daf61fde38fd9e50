//! The built site on 127.0.0.1 for the browser tests (tiny_http), with the MIME types a browser
//! insists on (`application/wasm` for streaming compilation), and a switch that takes the site
//! off the network to test the page offline.

use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use tiny_http::{Header, Response, Server};

pub struct StaticServer {
    pub port: u16,
    /// Taken by [`StaticServer::go_offline`]; the server closes its socket when the serving
    /// thread lets go of it too.
    server: Mutex<Option<Arc<Server>>>,
}

impl StaticServer {
    /// Serves `root` on a free port from a background thread.
    pub fn start(root: &Path) -> StaticServer {
        let server = Arc::new(Server::http("127.0.0.1:0").expect("bind 127.0.0.1"));
        let port = server.server_addr().to_ip().expect("an IP address").port();
        let root = root.to_path_buf();
        let serving = server.clone();
        thread::spawn(move || {
            for request in serving.incoming_requests() {
                let path = request.url().split('?').next().unwrap_or("/").to_string();
                let found = resolve(&root, &path).and_then(|p| Some((std::fs::read(&p).ok()?, p)));
                let response = match found {
                    Some((body, file)) => {
                        Response::from_data(body).with_header(header("Content-Type", mime(&file)))
                    }
                    None => Response::from_string("not found").with_status_code(404),
                };
                // No kept-alive connections: going offline then leaves nothing to answer on.
                let response = response
                    .with_header(header("Cache-Control", "no-store"))
                    .with_header(header("Connection", "close"));
                let _ = request.respond(response);
            }
        });
        StaticServer {
            port,
            server: Mutex::new(Some(server)),
        }
    }

    /// Closes the listening socket: from now on every request fails as if the network were
    /// down (the connection is refused).
    pub fn go_offline(&self) {
        if let Some(server) = self.server.lock().expect("not poisoned").take() {
            server.unblock();
        }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://127.0.0.1:{}{path_and_query}", self.port)
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("an ASCII header")
}

/// The file a URL path names under `root`; never anything outside it.
fn resolve(root: &Path, url_path: &str) -> Option<PathBuf> {
    let relative = Path::new(url_path.trim_start_matches('/'));
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return None;
    }
    let path = root.join(relative);
    if path.is_dir() {
        Some(path.join("index.html"))
    } else {
        Some(path)
    }
}

fn mime(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css",
        Some("json") => "application/json",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

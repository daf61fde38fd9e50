//! A tiny static file server on 127.0.0.1 for the browser tests: serves the built site with the
//! MIME types a browser insists on (`application/wasm` for streaming compilation).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

pub struct StaticServer {
    pub port: u16,
    /// Set by [`StaticServer::go_offline`]: connections are then closed unanswered.
    offline: Arc<AtomicBool>,
}

impl StaticServer {
    /// Serves `root` on a free port, from background threads that live as long as the process.
    pub fn start(root: &Path) -> StaticServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let root = root.to_path_buf();
        let offline = Arc::new(AtomicBool::new(false));
        let unreachable = offline.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if unreachable.load(Ordering::Relaxed) {
                    continue; // dropped: the browser sees a network error
                }
                let root = root.clone();
                thread::spawn(move || {
                    let _ = serve(stream, &root);
                });
            }
        });
        StaticServer { port, offline }
    }

    /// From now on every request fails as if the network were down.
    pub fn go_offline(&self) {
        self.offline.store(true, Ordering::Relaxed);
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://127.0.0.1:{}{path_and_query}", self.port)
    }
}

fn serve(stream: TcpStream, root: &Path) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Drain the headers; nothing in them changes the answer.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let path = path.split('?').next().unwrap_or("/");
    let (status, mime, body) =
        match resolve(root, path).and_then(|p| Some((std::fs::read(&p).ok()?, p))) {
            Some((body, file)) => ("200 OK", mime(&file), body),
            None => ("404 Not Found", "text/plain", b"not found".to_vec()),
        };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {mime}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(&body)?;
    stream.flush()
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

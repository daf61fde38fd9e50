//! The built site served on 127.0.0.1 for the browser tests: `tower-http`'s `ServeDir` (MIME types
//! a browser insists on, such as `application/wasm`; nothing outside the folder) over `hyper`,
//! with a switch that takes the network away.

use crate::runtime;
use http::{HeaderValue, header};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeader;

pub struct StaticServer {
    pub port: u16,
    /// Set by [`StaticServer::go_offline`]: the listener and every open connection close.
    offline: watch::Sender<bool>,
}

impl StaticServer {
    /// Serves `root` on a free port until [`StaticServer::go_offline`] or the end of the process.
    pub fn start(root: &Path) -> StaticServer {
        let listener = runtime()
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        // Never cached by the browser: what a test sees comes from the server or the service
        // worker, not from the HTTP cache.
        let files = SetResponseHeader::overriding(
            ServeDir::new(root),
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        let (offline, mut gone) = watch::channel(false);
        runtime().spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = gone.changed() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                };
                let service = TowerToHyperService::new(files.clone());
                let mut gone = gone.clone();
                tokio::spawn(async move {
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    // Dropping a kept-alive connection closes its socket.
                    tokio::select! {
                        _ = connection => {}
                        _ = gone.changed() => {}
                    }
                });
            }
        });
        StaticServer { port, offline }
    }

    /// From now on every request fails as if the network were down: connections are refused,
    /// and those the browser kept alive are closed. Returns once the port refuses.
    pub fn go_offline(&self) {
        self.offline.send_replace(true);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "the server still answers");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://127.0.0.1:{}{path_and_query}", self.port)
    }
}

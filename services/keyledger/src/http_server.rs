//! An axum server on a bound listener that stops gracefully on request: the witness and
//! auditd serve their HTTP APIs with it.

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running HTTP server (see [`HttpServer::spawn`]).
#[derive(Debug)]
pub struct HttpServer {
    task: JoinHandle<()>,
    shutdown: watch::Sender<bool>,
}

impl HttpServer {
    /// Serves `app` on `listener` in a task of its own; `name` labels the error logged if
    /// serving fails.
    pub fn spawn(listener: tokio::net::TcpListener, app: axum::Router, name: &'static str) -> Self {
        let (shutdown, mut stop) = watch::channel(false);
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, server = name, "HTTP server failed");
            }
        });
        Self { task, shutdown }
    }

    /// Stops accepting connections and waits for the requests in flight.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }

    /// Stops at once, dropping the requests in flight (what a crash does).
    pub fn abort(self) {
        self.task.abort();
    }
}

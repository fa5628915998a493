//! One way to run an HTTP service in the background: the MCP server's streamable-HTTP
//! endpoint (`mcp::transport::serve_http`) and the OpenAI-compatible gateway
//! (`gateway::serve`) both bind, serve an axum router until asked to stop, and report
//! how the listener ended.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A router served in the background on a bound listener.
#[derive(Debug)]
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Serves `router` on `listener` until [`Running::shutdown`] (or drop); `on_stop`
    /// runs when the stop is asked for (e.g. cancelling the service's own sessions).
    pub fn start(
        listener: TcpListener,
        router: axum::Router,
        on_stop: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<Running> {
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                    on_stop();
                })
                .await
        });
        Ok(Running {
            addr,
            stop: Some(stop),
            task,
        })
    }

    /// Serves until the listener fails (it runs until the process ends otherwise).
    pub async fn wait(mut self) -> std::io::Result<()> {
        // Waiting is not stopping: the stop sender lives until the task ends.
        let _keep = self.stop.take();
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e.to_string())),
        }
    }

    /// Stops accepting connections and waits for the server to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

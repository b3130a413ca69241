//! Shared test support: workers on port 0 with a shutdown handle.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;

use spanline_grpc::Worker;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct Running {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), spanline_grpc::GrpcError>>,
}

impl Running {
    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.task.await;
    }
    /// Stop abruptly: abort the server task (connections drop mid-call).
    pub fn kill(self) {
        self.task.abort();
    }
}

pub async fn start(worker: Worker) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(worker.serve(listener, async {
        let _ = rx.await;
    }));
    Running {
        addr,
        stop: Some(tx),
        task,
    }
}

/// A worker on its own runtime and thread, like another process: `kill`
/// drops the runtime, so its connections die mid-call.
pub struct Isolated {
    pub addr: SocketAddr,
    kill: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Isolated {
    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn kill(mut self) {
        if let Some(k) = self.kill.take() {
            let _ = k.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn start_isolated(worker: Worker) -> Isolated {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (kill, killed) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let _ = worker.serve(listener, std::future::pending()).await;
        });
        // Drive the runtime until told to die, then drop it with every task.
        rt.block_on(async move {
            loop {
                if killed.try_recv().is_ok() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        });
        rt.shutdown_background();
    });
    Isolated {
        addr,
        kill: Some(kill),
        thread: Some(thread),
    }
}

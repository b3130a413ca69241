//! gRPC for spanline: trace context in metadata, tracing tower layers for
//! clients and servers, remote stage workers, and worker pools.
//!
//! A remote stage is a [`spanline_core::Stage`]: a pipeline cannot tell it
//! from a local one, and the trace stays connected across the hop.
//!
//! ```
//! use spanline_core::{Pipeline, RequestContext, StageDescriptor, StageError, StageKind, stage_fn};
//! use spanline_grpc::{RemoteStage, Worker, WorkerChannel};
//! use spanline_testkit::TestTelemetry;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let t = TestTelemetry::new();
//! // The worker process: hosts `upper`.
//! let upper = stage_fn(StageDescriptor::new("upper", StageKind::Custom), |s: String, _ctx| async move {
//!     Ok::<_, StageError>(s.to_uppercase())
//! });
//! let worker = t.build(|| Worker::builder(t.telemetry()).stage(upper).build());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(worker.serve(listener, async { let _ = stopped.await; }));
//!
//! // The caller: the same stage, remote.
//! let channel = WorkerChannel::connect_lazy(&format!("http://{addr}"), t.telemetry())?;
//! let remote: RemoteStage<String, String> =
//!     channel.stage(StageDescriptor::new("upper", StageKind::Custom));
//! let pipeline = t.build(|| Pipeline::builder("demo").telemetry(t.telemetry()).then(remote).build());
//! let out = pipeline.run("hello".to_owned(), &RequestContext::new()).await?;
//! assert_eq!(out, "HELLO");
//! assert_eq!(t.spans().trace_ids().len(), 1); // one trace across the hop
//! let _ = stop.send(());
//! server.await??;
//! # Ok(())
//! # }
//! ```
//!
//! See `docs/grpc.md` for the layers, the worker protocol, pool behaviour and
//! the untrusted-edge mode.

mod call;
pub mod carrier;
pub mod client;
mod pool;
mod remote;
pub mod server;
pub mod status;
mod transport;
pub mod wire;
mod worker;

/// The generated protobuf types and tonic client/server of
/// `spanline.worker.v1` (see `proto/spanline/worker/v1/worker.proto`).
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod proto {
    tonic::include_proto!("spanline.worker.v1");
}

pub use call::{TracedBody, TracedResponse, code_name};
pub use client::{ClientTrace, ClientTraceLayer, ClientTraceLayerBuilder};
pub use pool::{PoolConfig, WorkerPool};
pub use remote::{RemoteStage, WorkerChannel};
pub use server::{
    EdgeMode, ServerTrace, ServerTraceLayer, ServerTraceLayerBuilder, request_context,
};
pub use worker::{DEFAULT_DRAIN_TIMEOUT, DEFAULT_MAX_MESSAGE_SIZE, Worker, WorkerBuilder};

/// Setting up or serving gRPC failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GrpcError {
    /// An endpoint URI did not parse.
    #[error("invalid endpoint URI {0:?}")]
    InvalidEndpoint(String),
    /// A pool needs at least one endpoint.
    #[error("a worker pool needs at least one endpoint")]
    NoEndpoints,
    /// The transport failed (bind, serve).
    #[error("gRPC transport error")]
    Transport(#[source] tonic::transport::Error),
    /// An I/O error (binding a listener).
    #[error("I/O error")]
    Io(#[from] std::io::Error),
}

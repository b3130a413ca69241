//! What a remote stage calls through: the traced transport (one endpoint,
//! unboxed; or a balanced pool, boxed) and the worker protocol's codec.
//!
//! The hot path of a remote call is kept free of per-call boxing and
//! copying that the generated client would add: the single-endpoint
//! transport is the client layer over a tonic channel with no boxed
//! service or re-boxed response body in between, and the request is written
//! by [`WorkerCodec`] from the stage-name field encoded once per remote
//! stage and the payload bytes (the bytes on the wire are exactly the
//! protobuf `RunRequest` the generated client would send).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes};
use http::uri::PathAndQuery;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint};
use tonic::Status;
use tonic::body::Body;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic_prost::ProstDecoder;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Layer, Service};

use crate::call::{TracedBody, TracedResponse};
use crate::client::{ClientTrace, ClientTraceLayer};

/// The response every transport gives: the body ends the CLIENT span.
pub(crate) type TracedHttpResponse = http::Response<TracedBody<Body>>;

/// A pool's transport: balancer and buffer, boxed (its type is long and it
/// already pays a channel hop per call).
pub(crate) type PoolTransport =
    BoxCloneSyncService<http::Request<Body>, TracedHttpResponse, Status>;

/// The traced transport a remote stage calls through: one endpoint
/// ([`WorkerChannel::connect_lazy`](crate::WorkerChannel::connect_lazy)),
/// unboxed, or a balanced pool ([`WorkerPool`](crate::WorkerPool)).
/// Its error is a `Status` (a transport failure is `UNAVAILABLE`).
#[derive(Clone)]
pub(crate) enum Transport {
    /// One worker: the client layer straight over the channel.
    Single(ClientTrace<Channel>),
    /// A pool of workers.
    Pool(PoolTransport),
}

/// A transport error as a status: a `Status` already inside is kept,
/// anything else (connection refused or lost) is `UNAVAILABLE`, with a
/// content-free message.
pub(crate) fn transport_status(error: BoxError) -> Status {
    match error.downcast::<Status>() {
        Ok(status) => *status,
        Err(_) => Status::unavailable("worker unreachable"),
    }
}

/// The client layer over `channel`.
pub(crate) fn traced(channel: Channel, layer: &ClientTraceLayer) -> ClientTrace<Channel> {
    layer.layer(channel)
}

impl Service<http::Request<Body>> for Transport {
    type Response = TracedHttpResponse;
    type Error = Status;
    type Future = TransportFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        match self {
            Transport::Single(s) => s.poll_ready(cx).map_err(|e| transport_status(e.into())),
            Transport::Pool(p) => p.poll_ready(cx),
        }
    }

    fn call(&mut self, req: http::Request<Body>) -> TransportFuture {
        match self {
            Transport::Single(s) => TransportFuture::Single { inner: s.call(req) },
            Transport::Pool(p) => TransportFuture::Pool { inner: p.call(req) },
        }
    }
}

type PoolFuture = Pin<Box<dyn Future<Output = Result<TracedHttpResponse, Status>> + Send>>;

pin_project_lite::pin_project! {
    /// The response future of a [`Transport`].
    #[project = TransportProj]
    pub(crate) enum TransportFuture {
        Single { #[pin] inner: TracedResponse<tonic::transport::channel::ResponseFuture> },
        Pool { inner: PoolFuture },
    }
}

impl Future for TransportFuture {
    type Output = Result<TracedHttpResponse, Status>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            TransportProj::Single { inner } => {
                inner.poll(cx).map_err(|e| transport_status(e.into()))
            }
            TransportProj::Pool { inner } => inner.as_mut().poll(cx),
        }
    }
}

/// `spanline.worker.v1.StageWorker/Run`.
pub(crate) const RUN_PATH: &str = "/spanline.worker.v1.StageWorker/Run";
/// `spanline.worker.v1.StageWorker/Generate`.
pub(crate) const GENERATE_PATH: &str = "/spanline.worker.v1.StageWorker/Generate";

pub(crate) fn run_path() -> PathAndQuery {
    PathAndQuery::from_static(RUN_PATH)
}

pub(crate) fn generate_path() -> PathAndQuery {
    PathAndQuery::from_static(GENERATE_PATH)
}

/// A `RunRequest` ready for the wire: field 1 (`stage`) already encoded,
/// field 2 (`payload`) as bytes.
pub(crate) struct RunCall {
    pub(crate) stage_field: Bytes,
    pub(crate) payload: Bytes,
}

/// Field 1 of `RunRequest` (the stage name) in protobuf encoding: computed
/// once per remote stage. An empty name is omitted, as prost does.
pub(crate) fn stage_field(stage: &str) -> Bytes {
    let mut out = Vec::with_capacity(stage.len() + 6);
    if !stage.is_empty() {
        prost::encoding::string::encode(1, &stage.to_owned(), &mut out);
    }
    Bytes::from(out)
}

/// Writes a [`RunCall`]; decodes `D` (a `RunResponse` or a `GenerateChunk`)
/// with prost.
pub(crate) struct WorkerCodec<D>(std::marker::PhantomData<fn() -> D>);

impl<D> Default for WorkerCodec<D> {
    fn default() -> Self {
        WorkerCodec(std::marker::PhantomData)
    }
}

impl<D: Message + Default + Send + 'static> Codec for WorkerCodec<D> {
    type Encode = RunCall;
    type Decode = D;
    type Encoder = RunEncoder;
    type Decoder = ProstDecoder<D>;

    fn encoder(&mut self) -> RunEncoder {
        RunEncoder
    }

    fn decoder(&mut self) -> ProstDecoder<D> {
        ProstDecoder::default()
    }
}

/// Encodes a [`RunCall`] exactly as prost encodes the `RunRequest`.
pub(crate) struct RunEncoder;

impl Encoder for RunEncoder {
    type Item = RunCall;
    type Error = Status;

    fn encode(&mut self, item: RunCall, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.write(dst);
        Ok(())
    }
}

impl RunCall {
    fn write(&self, dst: &mut impl BufMut) {
        dst.put_slice(&self.stage_field);
        if !self.payload.is_empty() {
            encode_key(2, WireType::LengthDelimited, dst);
            encode_varint(self.payload.len() as u64, dst);
            dst.put_slice(&self.payload);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::RunRequest;

    /// The hand-written encoding is byte for byte what prost writes.
    #[test]
    fn run_call_encodes_like_prost() {
        for (stage, payload) in [
            ("echo", &b"\"hello\""[..]),
            ("", b"null"),
            ("s", b""),
            ("a-much-longer-stage-name", &[b'x'; 300][..]),
        ] {
            let expected = RunRequest {
                stage: stage.to_owned(),
                payload: Bytes::copy_from_slice(payload),
            }
            .encode_to_vec();
            let mut wire = bytes::BytesMut::new();
            RunCall {
                stage_field: stage_field(stage),
                payload: Bytes::copy_from_slice(payload),
            }
            .write(&mut wire);
            assert_eq!(&wire[..], &expected[..], "{stage:?}");
            let back = RunRequest::decode(&wire[..]).expect("decodes");
            assert_eq!(back.stage, stage);
        }
    }
}

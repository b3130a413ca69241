//! The non-blocking hand-off shared by the processors that buffer traces
//! (the tail sampler, the online critical-path analysis): `on_end` does one
//! `try_send` into a bounded queue, a worker thread owns the state, and
//! flush and shutdown are requests the worker acknowledges in bounded time.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::SpanData;

use crate::error::TelemetryError;

/// Extra time granted to the worker beyond a flush or shutdown bound.
const GRACE: Duration = Duration::from_millis(500);

/// What the worker thread does with what it receives.
pub(crate) trait Work: Send + 'static {
    /// One ended span, at `now`.
    fn span(&mut self, span: SpanData, now: Instant);
    /// The provider's resource.
    fn resource(&mut self, _resource: &Resource) {}
    /// Periodic and on flush: let go of what waited too long.
    fn expire(&mut self, now: Instant);
    /// After `expire` on a flush request: flush what lies downstream.
    fn flush(&mut self) -> OTelSdkResult {
        Ok(())
    }
    /// Shutdown: let go of everything, then shut down downstream.
    fn finish(&mut self, timeout: Duration) -> OTelSdkResult;
}

enum Msg {
    Span(Box<SpanData>),
    Resource(Resource),
    Flush(SyncSender<OTelSdkResult>),
    Shutdown(Duration, SyncSender<OTelSdkResult>),
}

/// Why a span was not handed over.
pub(crate) enum Refused {
    /// The queue was full.
    QueueFull,
    /// The worker is gone (shut down).
    Shutdown,
}

/// The sending side, held by the processor.
pub(crate) struct Handoff {
    tx: SyncSender<Msg>,
    is_shutdown: AtomicBool,
    worker: Mutex<Option<JoinHandle<()>>>,
    what: &'static str,
}

impl Handoff {
    /// Start thread `thread` running `work`, with a queue of `capacity`
    /// messages and a periodic `expire` every `tick`.
    pub(crate) fn spawn<W: Work>(
        thread: &str,
        what: &'static str,
        capacity: usize,
        tick: Duration,
        work: W,
    ) -> Result<Self, TelemetryError> {
        let (tx, rx) = mpsc::sync_channel(capacity);
        let worker = std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || worker_loop(work, rx, tick))
            .map_err(|e| TelemetryError::Worker {
                what,
                reason: e.to_string(),
            })?;
        Ok(Handoff {
            tx,
            is_shutdown: AtomicBool::new(false),
            worker: Mutex::new(Some(worker)),
            what,
        })
    }

    /// Hand `span` over without blocking.
    pub(crate) fn try_send(&self, span: SpanData) -> Result<(), Refused> {
        match self.tx.try_send(Msg::Span(Box::new(span))) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(Refused::QueueFull),
            Err(TrySendError::Disconnected(_)) => Err(Refused::Shutdown),
        }
    }

    /// Pass the provider's resource to the worker.
    pub(crate) fn set_resource(&self, resource: &Resource) {
        let _ = self.tx.send(Msg::Resource(resource.clone()));
    }

    /// Everything handed over so far is processed, then the worker flushes.
    pub(crate) fn force_flush(&self) -> OTelSdkResult {
        if self.is_shutdown.load(Ordering::Acquire) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        self.request("force_flush", Duration::from_secs(30), Msg::Flush)
    }

    /// Stop the worker (once), waiting at most `timeout` plus a grace.
    pub(crate) fn shutdown(&self, timeout: Duration) -> OTelSdkResult {
        if self.is_shutdown.swap(true, Ordering::AcqRel) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        let r = self.request("shutdown", timeout, |ack| Msg::Shutdown(timeout, ack));
        let handle = match self.worker.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        if r.is_ok()
            && let Some(h) = handle
        {
            let _ = h.join();
        }
        r
    }

    fn request(
        &self,
        operation: &'static str,
        bound: Duration,
        make: impl FnOnce(SyncSender<OTelSdkResult>) -> Msg,
    ) -> OTelSdkResult {
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        // The worker drains the queue continuously, so this send waits at
        // most for one queue's worth of spans.
        self.tx
            .send(make(ack_tx))
            .map_err(|_| OTelSdkError::AlreadyShutdown)?;
        match ack_rx.recv_timeout(bound + GRACE) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => Err(OTelSdkError::Timeout(bound + GRACE)),
            Err(RecvTimeoutError::Disconnected) => Err(OTelSdkError::InternalFailure(format!(
                "{operation}: the {} worker stopped",
                self.what
            ))),
        }
    }
}

fn worker_loop<W: Work>(mut work: W, rx: mpsc::Receiver<Msg>, tick: Duration) {
    let mut next_expire = Instant::now() + tick;
    loop {
        let msg = rx.recv_timeout(tick);
        let now = Instant::now();
        match msg {
            Ok(Msg::Span(span)) => work.span(*span, now),
            Ok(Msg::Resource(r)) => work.resource(&r),
            Ok(Msg::Flush(ack)) => {
                work.expire(now);
                let _ = ack.send(work.flush());
            }
            Ok(Msg::Shutdown(timeout, ack)) => {
                let _ = ack.send(work.finish(timeout));
                return;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                let _ = work.finish(Duration::from_secs(5));
                return;
            }
        }
        if now >= next_expire {
            work.expire(now);
            next_expire = now + tick;
        }
    }
}

/// The periodic expiry interval for a decision wait.
pub(crate) fn tick_for(decision_wait: Duration) -> Duration {
    (decision_wait / 8).clamp(Duration::from_millis(1), Duration::from_millis(100))
}

//! The non-blocking hand-off shared by the processors that buffer traces
//! (the tail sampler, the online critical-path analysis): `on_end` appends
//! the span to a bounded queue under an uncontended lock, a worker thread
//! owns the state, and flush and shutdown are requests the worker
//! acknowledges in bounded time. As with the export processor
//! (`docs/telemetry.md`, *The export path*), the worker is not woken per
//! span: it drains the queue on its tick, or early when the queue holds
//! `wake_at` spans.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
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
    /// The queue holds `wake_at` spans: drain it now.
    Wake,
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

/// The spans waiting for the worker.
struct Queue {
    spans: Vec<SpanData>,
    /// The worker has finished: later spans are refused.
    closed: bool,
}

/// The queue and its bounds, shared with the worker.
struct Spans {
    queue: Mutex<Queue>,
    capacity: usize,
    wake_at: usize,
}

impl Spans {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Everything queued, in the order it ended; `close` refuses the rest.
    fn take(&self, close: bool) -> Vec<SpanData> {
        let mut q = self.lock();
        q.closed |= close;
        std::mem::take(&mut q.spans)
    }
}

/// The sending side, held by the processor.
pub(crate) struct Handoff {
    spans: Arc<Spans>,
    tx: SyncSender<Msg>,
    is_shutdown: AtomicBool,
    worker: Mutex<Option<JoinHandle<()>>>,
    what: &'static str,
}

impl Handoff {
    /// Start thread `thread` running `work`, with a queue of `capacity`
    /// spans and a periodic drain and `expire` every `tick`.
    pub(crate) fn spawn<W: Work>(
        thread: &str,
        what: &'static str,
        capacity: usize,
        tick: Duration,
        work: W,
    ) -> Result<Self, TelemetryError> {
        let capacity = capacity.max(1);
        let spans = Arc::new(Spans {
            queue: Mutex::new(Queue {
                spans: Vec::new(),
                closed: false,
            }),
            capacity,
            wake_at: (capacity / 2).clamp(1, 512),
        });
        // Control messages only (wakes, flushes, shutdown): a few at a time.
        let (tx, rx) = mpsc::sync_channel(16);
        let worker_spans = spans.clone();
        let worker = std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || worker_loop(work, &worker_spans, rx, tick))
            .map_err(|e| TelemetryError::Worker {
                what,
                reason: e.to_string(),
            })?;
        Ok(Handoff {
            spans,
            tx,
            is_shutdown: AtomicBool::new(false),
            worker: Mutex::new(Some(worker)),
            what,
        })
    }

    /// Hand `span` over without blocking. The worker is woken only when
    /// the queue reaches `wake_at` spans (once per fill, not per span).
    pub(crate) fn try_send(&self, span: SpanData) -> Result<(), Refused> {
        let wake = {
            let mut q = self.spans.lock();
            if q.closed {
                return Err(Refused::Shutdown);
            }
            if q.spans.len() >= self.spans.capacity {
                return Err(Refused::QueueFull);
            }
            q.spans.push(span);
            q.spans.len() == self.spans.wake_at
        };
        if wake {
            // A full control queue already holds a wake-up or a request
            // that drains the spans first.
            let _ = self.tx.try_send(Msg::Wake);
        }
        Ok(())
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
        // The control queue holds a few messages, which the worker answers
        // in bounded time, so this send does not wait long.
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

fn worker_loop<W: Work>(mut work: W, spans: &Spans, rx: mpsc::Receiver<Msg>, tick: Duration) {
    let mut next_expire = Instant::now() + tick;
    let drain = |work: &mut W, close: bool| {
        let now = Instant::now();
        for span in spans.take(close) {
            work.span(span, now);
        }
    };
    loop {
        let msg = rx.recv_timeout(tick);
        // Every wake-up, whatever its reason, first takes what is queued,
        // so a flush or shutdown sees every span handed over before it.
        let closing = matches!(
            msg,
            Ok(Msg::Shutdown(..)) | Err(RecvTimeoutError::Disconnected)
        );
        drain(&mut work, closing);
        let now = Instant::now();
        match msg {
            Ok(Msg::Wake) | Err(RecvTimeoutError::Timeout) => {}
            Ok(Msg::Resource(r)) => work.resource(&r),
            Ok(Msg::Flush(ack)) => {
                work.expire(now);
                let _ = ack.send(work.flush());
            }
            Ok(Msg::Shutdown(timeout, ack)) => {
                let _ = ack.send(work.finish(timeout));
                return;
            }
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

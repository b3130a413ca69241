//! The export worker: a thread of its own with a current-thread tokio
//! runtime (the OTLP gRPC exporter needs one), woken only when a batch's
//! worth of spans is queued, when the schedule delay passes, or by a flush
//! or shutdown. Every export races the deadlines of the flushes and the
//! shutdown waiting on it, so neither waits longer than it asked to.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use tokio::sync::mpsc;

use super::stats::Fate;
use super::{BatchConfig, Shared};

/// The answer a flush or shutdown waits for.
pub(super) type Ack = std_mpsc::SyncSender<Result<(), String>>;

/// What the processor's handle asks of its worker.
pub(super) enum Control {
    SetResource(Resource),
    Flush { deadline: Instant, ack: Ack },
    Shutdown { deadline: Instant, ack: Ack },
}

/// How much of the queue [`State::take`] moves into hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Take {
    Batches,
    All,
    Close,
}

/// A flush or shutdown waiting for the spans in hand to leave.
struct Waiter {
    deadline: Instant,
    ack: Option<Ack>,
    error: Option<String>,
}

impl Waiter {
    fn answer(self) {
        if let Some(ack) = self.ack {
            let _ = ack.send(self.error.map_or(Ok(()), Err));
        }
    }
}

/// Everything the worker owns but the exporter (which an export borrows
/// while the rest of the state keeps answering control messages).
struct State {
    shared: Arc<Shared>,
    control: mpsc::UnboundedReceiver<Control>,
    control_open: bool,
    config: BatchConfig,
    /// Batches taken from the queue, each at most `max_export_batch_size`.
    in_hand: VecDeque<Vec<SpanData>>,
    flushes: Vec<Waiter>,
    shutdown: Option<Waiter>,
    resource: Option<Resource>,
}

pub(super) async fn run<E: SpanExporter>(
    exporter: E,
    shared: Arc<Shared>,
    control: mpsc::UnboundedReceiver<Control>,
    config: BatchConfig,
) {
    let mut exporter = exporter;
    let mut state = State {
        shared,
        control,
        control_open: true,
        config,
        in_hand: VecDeque::new(),
        flushes: Vec::new(),
        shutdown: None,
        resource: None,
    };
    let mut tick = Instant::now() + config.schedule_delay;
    loop {
        if let Some(r) = state.resource.take() {
            exporter.set_resource(&r);
        }
        if let Some(batch) = state.in_hand.pop_front() {
            export(&exporter, &mut state, batch).await;
            continue;
        }
        for waiter in state.flushes.drain(..) {
            waiter.answer();
        }
        if let Some(mut waiter) = state.shutdown.take() {
            let left = waiter.deadline.saturating_duration_since(Instant::now());
            if let (Err(e), None) = (
                exporter.shutdown_with_timeout(left.max(Duration::from_millis(1))),
                &waiter.error,
            ) {
                waiter.error = Some(e.to_string());
            }
            waiter.answer();
            return;
        }
        let shared = state.shared.clone();
        tokio::select! {
            biased;
            msg = state.control.recv() => state.on_control(msg),
            () = shared.ready.notified() => {
                state.take(Take::Batches);
                tick = Instant::now() + config.schedule_delay;
            }
            () = tokio::time::sleep_until(tick.into()) => {
                state.take(Take::All);
                tick = Instant::now() + config.schedule_delay;
            }
        }
    }
}

/// Export one batch, answering control messages meanwhile. The export ends
/// at its own timeout, or when the shutdown deadline passes (its spans then
/// count as dropped in flight).
async fn export<E: SpanExporter>(exporter: &E, state: &mut State, batch: Vec<SpanData>) {
    let n = batch.len();
    let now = Instant::now();
    if state.shutdown.as_ref().is_some_and(|w| w.deadline <= now) {
        state.settle(n, Fate::ShutdownQueued, None);
        return;
    }
    let timeout_at = now + state.config.export_timeout;
    let exporting = exporter.export(batch);
    tokio::pin!(exporting);
    let (fate, why) = loop {
        let wake_at = state.next_deadline(timeout_at);
        tokio::select! {
            biased;
            r = &mut exporting => break match r {
                Ok(()) => (Fate::Exported, None),
                Err(e) => (Fate::ExportFailed, Some(e.to_string())),
            },
            msg = state.control.recv(), if state.control_open => state.on_control(msg),
            () = tokio::time::sleep_until(wake_at.into()) => {
                let now = Instant::now();
                if state.shutdown.as_ref().is_some_and(|w| w.deadline <= now) {
                    break (
                        Fate::ShutdownInFlight,
                        Some("the shutdown deadline passed during an export".to_owned()),
                    );
                }
                if timeout_at <= now {
                    let t = state.config.export_timeout;
                    break (Fate::ExportFailed, Some(format!("export timed out after {t:?}")));
                }
                state.expire_flushes(now);
            }
        }
    };
    state.settle(n, fate, why);
}

impl State {
    fn on_control(&mut self, msg: Option<Control>) {
        match msg {
            Some(Control::SetResource(r)) => self.resource = Some(r),
            Some(Control::Flush { deadline, ack }) => {
                self.take(Take::All);
                self.flushes.push(Waiter {
                    deadline,
                    ack: Some(ack),
                    error: None,
                });
            }
            Some(Control::Shutdown { deadline, ack }) => self.begin_shutdown(deadline, Some(ack)),
            None => {
                // The processor is gone without a shutdown: one last export.
                self.control_open = false;
                let deadline = Instant::now() + self.config.export_timeout;
                self.begin_shutdown(deadline, None);
            }
        }
    }

    fn begin_shutdown(&mut self, deadline: Instant, ack: Option<Ack>) {
        self.take(Take::Close);
        if self.shutdown.is_none() {
            self.shutdown = Some(Waiter {
                deadline,
                ack,
                error: None,
            });
        }
    }

    /// Move queued spans into hand, in batches: whole batches only, or
    /// everything (`Take::All`), or everything and close the queue so that
    /// later spans count as ended after shutdown (`Take::Close`).
    fn take(&mut self, how: Take) {
        let batch_size = self.config.max_export_batch_size;
        let mut spans = {
            let mut q = self.shared.lock();
            q.closed |= how == Take::Close;
            let spans = std::mem::replace(&mut q.spans, Vec::with_capacity(batch_size));
            q.held += spans.len();
            spans
        };
        if how == Take::Batches {
            // The partial batch goes back to wait for more (or the schedule).
            let whole = spans.len() - spans.len() % batch_size;
            let rest = spans.split_off(whole);
            if !rest.is_empty() {
                let mut q = self.shared.lock();
                q.held -= rest.len();
                // In front of what arrived meanwhile, so spans leave in the
                // order they ended (fewer than a batch are moved).
                q.spans.splice(0..0, rest);
                let ready = q.spans.len() >= batch_size;
                drop(q);
                if ready {
                    self.shared.ready.notify_one();
                }
            }
        }
        if spans.len() <= batch_size {
            if !spans.is_empty() {
                self.in_hand.push_back(spans);
            }
            return;
        }
        // Each span moves once (splitting off the tail again and again
        // would move the rest of a large queue once per batch).
        let mut spans = spans.into_iter();
        loop {
            let batch: Vec<SpanData> = spans.by_ref().take(batch_size).collect();
            if batch.is_empty() {
                break;
            }
            self.in_hand.push_back(batch);
        }
    }

    /// The earliest of the export's own timeout and the deadlines waiting.
    fn next_deadline(&self, timeout_at: Instant) -> Instant {
        self.flushes
            .iter()
            .chain(&self.shutdown)
            .map(|w| w.deadline)
            .fold(timeout_at, Instant::min)
    }

    /// Flushes past their deadline are answered now; the export goes on.
    fn expire_flushes(&mut self, now: Instant) {
        let (late, waiting): (Vec<_>, Vec<_>) =
            self.flushes.drain(..).partition(|w| w.deadline <= now);
        self.flushes = waiting;
        for mut w in late {
            w.error = Some("the flush deadline passed with spans still being exported".into());
            w.answer();
        }
    }

    /// Account for `n` spans in hand. A caller that gave up waiting on a
    /// shutdown has already counted everything held; then this counts
    /// nothing, so no span is counted twice.
    fn settle(&mut self, n: usize, fate: Fate, why: Option<String>) {
        {
            let mut q = self.shared.lock();
            if q.abandoned {
                return;
            }
            q.held -= n;
        }
        self.shared.counters.add(fate, n);
        if let Some(why) = why {
            self.shared.counters.set_last_error(&why);
            for w in self.flushes.iter_mut().chain(self.shutdown.as_mut()) {
                w.error.get_or_insert_with(|| why.clone());
            }
        }
    }
}

//! Flush and shutdown are bounded by their own deadlines, including an
//! export already in flight, and at shutdown every span is accounted for:
//! exported, or dropped with a reason. Against a collector that accepts
//! connections and never reads, one that is down, and exporters that hang
//! (asynchronously, and synchronously ignoring every deadline).

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry::trace::{Tracer, TracerProvider};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use spanline_telemetry::{
    BatchConfig, BoundedBatchProcessor, ExportStats, ExporterKind, OtlpProtocol, TelemetryBuilder,
};

/// Generous against a loaded machine; the bounds under test are 1 s.
const BOUND: Duration = Duration::from_secs(8);

/// A TCP endpoint that accepts every connection and never reads from it.
/// The accepted sockets are kept open for the listener's lifetime.
fn accepting_never_reading() -> (String, Arc<Mutex<Vec<std::net::TcpStream>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            keep.lock().expect("held").push(stream);
        }
    });
    (format!("http://{addr}"), held)
}

/// A loopback port with nothing listening.
fn down() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}")
}

fn emit(provider: &SdkTracerProvider, n: usize) {
    let tracer = provider.tracer("t");
    for i in 0..n {
        tracer.in_span(format!("span-{i}"), |_| {});
    }
}

/// 2,000 spans queued against `endpoint` with a 30 s export timeout; the
/// guard's 1 s shutdown must return in bounded time with every span
/// accounted for.
fn shutdown_accounts_for_every_span(endpoint: &str, protocol: OtlpProtocol) -> ExportStats {
    let guard = TelemetryBuilder::new()
        .traces_exporters([ExporterKind::Otlp])
        .otlp_endpoint(endpoint)
        .otlp_protocol(protocol)
        .prometheus(false)
        .max_queue_size(4_096)
        .max_export_batch_size(512)
        .export_timeout(Duration::from_secs(30))
        .schedule_delay(Duration::from_millis(10))
        .shutdown_timeout(Duration::from_secs(1))
        .build()
        .expect("build");
    emit(guard.tracer_provider().expect("enabled"), 2_000);
    let started = Instant::now();
    let result = guard.shutdown();
    let took = started.elapsed();
    assert!(took < BOUND, "shutdown took {took:?}");
    let stats = guard.export_stats();
    assert_eq!(stats.accounted(), 2_000, "{stats:?} ({result:?})");
    assert_eq!(guard.dropped_spans() + stats.exported, 2_000);
    stats
}

#[test]
fn grpc_collector_that_never_reads() {
    let (endpoint, _held) = accepting_never_reading();
    let stats = shutdown_accounts_for_every_span(&endpoint, OtlpProtocol::Grpc);
    assert_eq!(stats.exported, 0, "{stats:?}");
    assert!(stats.dropped_shutdown_in_flight > 0, "{stats:?}");
}

#[test]
fn http_collector_that_never_reads() {
    let (endpoint, _held) = accepting_never_reading();
    let stats = shutdown_accounts_for_every_span(&endpoint, OtlpProtocol::HttpProtobuf);
    assert_eq!(stats.exported, 0, "{stats:?}");
    assert!(stats.dropped_shutdown_in_flight > 0, "{stats:?}");
}

#[test]
fn grpc_collector_down() {
    let stats = shutdown_accounts_for_every_span(&down(), OtlpProtocol::Grpc);
    assert_eq!(stats.exported, 0, "{stats:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn http_collector_down_on_current_thread_runtime() {
    let stats = shutdown_accounts_for_every_span(&down(), OtlpProtocol::HttpProtobuf);
    assert_eq!(stats.exported, 0, "{stats:?}");
}

/// Never completes, but yields: the worker stays responsive.
#[derive(Debug, Clone, Copy)]
struct Pending;

impl SpanExporter for Pending {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        std::future::pending().await
    }
}

/// Blocks its thread and ignores every deadline.
#[derive(Debug, Clone)]
struct Blocking {
    sleep: Duration,
    entered: Arc<AtomicBool>,
}

impl SpanExporter for Blocking {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        self.entered.store(true, Ordering::SeqCst);
        std::thread::sleep(self.sleep); // allow-sleep: an exporter that blocks its thread
        Ok(())
    }
}

fn provider_with<E: SpanExporter + 'static>(
    exporter: E,
    config: BatchConfig,
) -> (SdkTracerProvider, spanline_telemetry::ProcessorStats) {
    let processor = BoundedBatchProcessor::spawn("t", config, move || Ok(exporter)).expect("spawn");
    let stats = processor.stats();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .build();
    (provider, stats)
}

fn config(export_timeout: Duration) -> BatchConfig {
    BatchConfig {
        schedule_delay: Duration::from_millis(10),
        export_timeout,
        max_queue_size: 4_096,
        max_export_batch_size: 100,
    }
}

#[test]
fn flush_is_bounded_by_its_deadline_during_an_export_in_flight() {
    let (provider, stats) = provider_with(Pending, config(Duration::from_secs(1)));
    emit(&provider, 250);
    let started = Instant::now();
    assert!(provider.force_flush().is_err());
    assert!(
        started.elapsed() < BOUND,
        "flush took {:?}",
        started.elapsed()
    );
    // The flush's deadline equals the export timeout: the export in
    // flight failed, the others wait for the next rounds.
    let snap = stats.snapshot();
    assert!(snap.dropped_export_failed >= 100, "{snap:?}");
    let started = Instant::now();
    let _ = provider.shutdown_with_timeout(Duration::from_millis(300));
    assert!(started.elapsed() < BOUND);
    assert_eq!(stats.snapshot().accounted(), 250, "{:?}", stats.snapshot());
}

#[test]
fn shutdown_cuts_an_export_in_flight_and_counts_what_was_queued() {
    let (provider, stats) = provider_with(Pending, config(Duration::from_secs(60)));
    emit(&provider, 250);
    let started = Instant::now();
    let r = provider.shutdown_with_timeout(Duration::from_millis(500));
    assert!(r.is_err(), "spans were lost: shutdown must say so");
    assert!(started.elapsed() < BOUND, "took {:?}", started.elapsed());
    let snap = stats.snapshot();
    assert_eq!(snap.accounted(), 250, "{snap:?}");
    assert_eq!(snap.exported, 0);
    // One batch was in flight at the deadline; the rest never started.
    assert_eq!(snap.dropped_shutdown_in_flight, 100, "{snap:?}");
    assert_eq!(snap.dropped_shutdown_queued, 150, "{snap:?}");
}

#[test]
fn a_worker_stuck_in_a_blocking_exporter_is_accounted_for_by_the_caller() {
    let entered = Arc::new(AtomicBool::new(false));
    let exporter = Blocking {
        sleep: Duration::from_secs(20),
        entered: entered.clone(),
    };
    let (provider, stats) = provider_with(exporter, config(Duration::from_secs(60)));
    emit(&provider, 250);
    let deadline = Instant::now() + BOUND;
    while !entered.load(Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2)); // allow-sleep: polling for the export to start
    }
    assert!(entered.load(Ordering::SeqCst));
    let started = Instant::now();
    assert!(
        provider
            .shutdown_with_timeout(Duration::from_millis(300))
            .is_err()
    );
    assert!(started.elapsed() < BOUND, "took {:?}", started.elapsed());
    let snap = stats.snapshot();
    assert_eq!(snap.accounted(), 250, "{snap:?}");
    assert_eq!(snap.exported, 0, "{snap:?}");
    assert_eq!(
        snap.dropped_shutdown_in_flight + snap.dropped_shutdown_queued,
        250
    );
}

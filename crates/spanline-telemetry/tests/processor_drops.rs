//! The processor never blocks `on_end`: with a stuck exporter and a full
//! queue, spans are dropped and counted (atomics and the
//! `spanline.telemetry.spans.dropped{reason="queue_full"}` counter).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use opentelemetry::trace::{Tracer, TracerProvider};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use spanline_telemetry::prometheus::build_prometheus_recorder;
use spanline_telemetry::{BatchConfig, BoundedBatchProcessor};

/// An exporter that blocks until the gate opens.
#[derive(Debug, Clone, Default)]
struct GatedExporter {
    gate: Arc<(Mutex<bool>, Condvar)>,
    exported: Arc<AtomicUsize>,
}

impl GatedExporter {
    fn open(&self) {
        let (lock, cv) = &*self.gate;
        *lock.lock().expect("gate") = true;
        cv.notify_all();
    }
}

impl SpanExporter for GatedExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let (lock, cv) = &*self.gate;
        let mut open = lock.lock().expect("gate");
        while !*open {
            open = cv.wait(open).expect("gate");
        }
        self.exported.fetch_add(batch.len(), Ordering::SeqCst);
        Ok(())
    }
}

#[test]
fn full_queue_drops_and_counts_without_blocking() {
    let exporter = GatedExporter::default();
    let config = BatchConfig {
        schedule_delay: Duration::from_millis(10),
        export_timeout: Duration::from_secs(30),
        max_queue_size: 8,
        max_export_batch_size: 4,
    };
    let prometheus = build_prometheus_recorder().expect("recorder");
    let handle = prometheus.handle();
    let worker_exporter = exporter.clone();
    let processor = metrics::with_local_recorder(&prometheus, || {
        BoundedBatchProcessor::spawn("gated", config, move || Ok(worker_exporter))
    })
    .expect("spawn");
    let stats = processor.stats();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .build();
    let tracer = provider.tracer("t");

    // The exporter is stuck: at most queue (8) + one batch (4) are held.
    let started = Instant::now();
    for _ in 0..10_000 {
        tracer.in_span("s", |_| {});
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "on_end must never wait for the exporter"
    );
    let snap = stats.snapshot();
    assert!(snap.dropped_queue_full >= 10_000 - 8 - 4, "{snap:?}");
    assert_eq!(snap.exported, 0);

    let text = handle.render();
    assert!(
        text.contains("spanline_telemetry_spans_dropped{reason=\"queue_full\"}"),
        "{text}"
    );

    exporter.open();
    provider.force_flush().expect("flush");
    let snap = stats.snapshot();
    assert_eq!(snap.exported + snap.dropped_queue_full, 10_000, "{snap:?}");
    assert_eq!(
        exporter.exported.load(Ordering::SeqCst) as u64,
        snap.exported
    );
    assert!(
        handle
            .render()
            .contains("spanline_telemetry_spans_exported")
    );
    provider.shutdown().expect("shutdown");

    // After shutdown, ending a span is still non-blocking and counted.
    tracer.in_span("late", |_| {});
}

/// Records the size of every batch it is given.
#[derive(Debug, Clone, Default)]
struct Sizes(Arc<Mutex<Vec<usize>>>);

impl SpanExporter for Sizes {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().expect("sizes").push(batch.len());
        Ok(())
    }
}

#[test]
fn batches_respect_max_size_and_schedule_delay() {
    let sizes = Sizes::default();
    let worker = sizes.clone();
    let config = BatchConfig {
        schedule_delay: Duration::from_millis(20),
        export_timeout: Duration::from_secs(10),
        max_queue_size: 10_000,
        max_export_batch_size: 7,
    };
    let processor =
        BoundedBatchProcessor::spawn("sizes", config, move || Ok(worker)).expect("spawn");
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .build();
    let tracer = provider.tracer("t");
    for _ in 0..50 {
        tracer.in_span("s", |_| {});
    }
    provider.force_flush().expect("flush");
    let got = sizes.0.lock().expect("sizes").clone();
    assert_eq!(got.iter().sum::<usize>(), 50);
    assert!(got.iter().all(|n| *n <= 7), "{got:?}");

    // A lone span goes out on the schedule, without a flush.
    tracer.in_span("lone", |_| {});
    let deadline = Instant::now() + Duration::from_secs(10);
    while sizes.0.lock().expect("sizes").iter().sum::<usize>() < 51 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(sizes.0.lock().expect("sizes").iter().sum::<usize>(), 51);
    provider.shutdown().expect("shutdown");
}

#[test]
fn many_batches_taken_at_once_keep_their_order_and_size() {
    // The first export waits at the gate while 5,000 spans queue up; the
    // worker then takes them in one go and cuts them into batches.
    #[derive(Debug, Clone, Default)]
    struct Batches {
        gate: GatedExporter,
        names: Arc<Mutex<Vec<Vec<String>>>>,
    }
    impl SpanExporter for Batches {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            let names = batch.iter().map(|s| s.name.to_string()).collect();
            self.gate.export(batch).await?;
            self.names.lock().expect("names").push(names);
            Ok(())
        }
    }
    let exporter = Batches::default();
    let worker = exporter.clone();
    let config = BatchConfig {
        schedule_delay: Duration::from_secs(60),
        export_timeout: Duration::from_secs(30),
        max_queue_size: 10_000,
        max_export_batch_size: 7,
    };
    let processor =
        BoundedBatchProcessor::spawn("batches", config, move || Ok(worker)).expect("spawn");
    let stats = processor.stats();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .build();
    let tracer = provider.tracer("t");
    let n = 5_000;
    for i in 0..n {
        tracer.in_span(format!("s{i}"), |_| {});
    }
    exporter.gate.open();
    provider.force_flush().expect("flush");
    let batches = exporter.names.lock().expect("names").clone();
    assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= 7));
    assert!(
        batches.len() < n / 6,
        "batches are full, not one span each: {}",
        batches.len()
    );
    let order: Vec<String> = batches.into_iter().flatten().collect();
    let expected: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
    assert_eq!(order, expected);
    assert_eq!(stats.snapshot().exported, n as u64);
    provider.shutdown().expect("shutdown");
}

#[test]
fn exporter_build_error_is_reported() {
    let err =
        BoundedBatchProcessor::spawn::<GatedExporter, _>("broken", BatchConfig::default(), || {
            Err(spanline_telemetry::TelemetryError::InvalidConfig(
                "nope".into(),
            ))
        })
        .expect_err("must fail");
    assert!(err.to_string().contains("nope"));
}

#[test]
fn the_worker_is_signalled_per_batch_not_per_span() {
    let sizes = Sizes::default();
    let config = BatchConfig {
        // Longer than the test: only a full batch or a flush exports.
        schedule_delay: Duration::from_secs(3_600),
        export_timeout: Duration::from_secs(10),
        max_queue_size: 10_000,
        max_export_batch_size: 64,
    };
    let worker = sizes.clone();
    let processor =
        BoundedBatchProcessor::spawn("sizes", config, move || Ok(worker)).expect("spawn");
    let stats = processor.stats();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .build();
    let tracer = provider.tracer("t");
    for _ in 0..64 * 3 + 5 {
        tracer.in_span("s", |_| {});
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats.snapshot().exported < 64 * 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2)); // allow-sleep: polling for the batches
    }
    // Three full batches went out on their own; the 5 left wait for the
    // schedule or a flush: nothing was exported span by span.
    assert_eq!(stats.snapshot().exported, 64 * 3);
    provider.force_flush().expect("flush");
    let got = sizes.0.lock().expect("sizes").clone();
    assert_eq!(got.iter().sum::<usize>(), 64 * 3 + 5, "{got:?}");
    assert_eq!(got.last(), Some(&5), "{got:?}");
    assert!(got.iter().all(|n| *n == 64 || *n == 5), "{got:?}");
    provider.shutdown().expect("shutdown");
    assert_eq!(stats.snapshot().accounted(), 64 * 3 + 5);
}

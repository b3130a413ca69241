//! The Prometheus metrics recorder, with buckets for every spanline
//! histogram, and the background upkeep it needs.

use std::fmt;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use spanline_core::semconv::{messaging, metric, rpc};

use crate::error::TelemetryError;

/// Default interval between two `run_upkeep` calls.
pub const DEFAULT_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Every spanline histogram and its bucket boundaries. With explicit
/// buckets, none of them renders as a Prometheus summary (so dashboards
/// can aggregate quantiles across instances with `histogram_quantile`).
pub fn histogram_buckets() -> [(&'static str, &'static [f64]); 12] {
    [
        (metric::STAGE_DURATION, metric::DURATION_BUCKETS),
        (metric::PIPELINE_DURATION, metric::DURATION_BUCKETS),
        (metric::CRITICAL_PATH_DURATION, metric::DURATION_BUCKETS),
        (
            metric::GEN_AI_OPERATION_DURATION,
            metric::GEN_AI_DURATION_BUCKETS,
        ),
        (metric::GEN_AI_TOKEN_USAGE, metric::GEN_AI_TOKEN_BUCKETS),
        (
            metric::GEN_AI_TIME_TO_FIRST_TOKEN,
            metric::GEN_AI_TTFT_BUCKETS,
        ),
        (
            metric::GEN_AI_TIME_PER_OUTPUT_TOKEN,
            metric::GEN_AI_TPOT_BUCKETS,
        ),
        (messaging::metric::QUEUE_WAIT, metric::DURATION_BUCKETS),
        (
            messaging::metric::PROCESS_DURATION,
            metric::DURATION_BUCKETS,
        ),
        (
            messaging::metric::CLIENT_OPERATION_DURATION,
            metric::DURATION_BUCKETS,
        ),
        (rpc::CLIENT_CALL_DURATION, metric::DURATION_BUCKETS),
        (rpc::SERVER_CALL_DURATION, metric::DURATION_BUCKETS),
    ]
}

/// A [`PrometheusBuilder`] with buckets set for every spanline histogram
/// (see [`histogram_buckets`]). Add your own settings, then build.
pub fn prometheus_builder() -> Result<PrometheusBuilder, TelemetryError> {
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in histogram_buckets() {
        builder = builder.set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)?;
    }
    Ok(builder)
}

/// A Prometheus recorder with spanline's buckets, not installed anywhere:
/// use it with `metrics::with_local_recorder` in tests, render through
/// [`PrometheusRecorder::handle`]. Nobody runs its upkeep.
pub fn build_prometheus_recorder() -> Result<PrometheusRecorder, TelemetryError> {
    Ok(prometheus_builder()?.build_recorder())
}

/// A running Prometheus recorder's background work: a thread running
/// `run_upkeep` periodically, or (with the `prometheus-listener` feature)
/// the `/metrics` listener thread. Stops on drop.
pub struct PrometheusBackground {
    handle: PrometheusHandle,
    stop: Option<Stop>,
    thread: Option<JoinHandle<()>>,
}

enum Stop {
    Upkeep(std_mpsc::Sender<()>),
    #[cfg(feature = "prometheus-listener")]
    Listener(tokio::sync::oneshot::Sender<()>),
}

impl fmt::Debug for PrometheusBackground {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrometheusBackground")
            .field("running", &self.thread.is_some())
            .finish()
    }
}

impl PrometheusBackground {
    /// Build the recorder and start an upkeep thread (every `interval`).
    /// Returns the recorder, still to be installed (or not), and the
    /// background handle.
    pub fn start(interval: Duration) -> Result<(PrometheusRecorder, Self), TelemetryError> {
        let recorder = build_prometheus_recorder()?;
        let handle = recorder.handle();
        let upkeep = handle.clone();
        let interval = interval.max(Duration::from_millis(10));
        let (stop_tx, stop_rx) = std_mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("spanline-prometheus-upkeep".into())
            .spawn(move || {
                while let Err(std_mpsc::RecvTimeoutError::Timeout) = stop_rx.recv_timeout(interval)
                {
                    upkeep.run_upkeep();
                }
            })
            .map_err(|e| TelemetryError::Worker {
                what: "prometheus upkeep",
                reason: e.to_string(),
            })?;
        Ok((
            recorder,
            PrometheusBackground {
                handle,
                stop: Some(Stop::Upkeep(stop_tx)),
                thread: Some(thread),
            },
        ))
    }

    /// Build the recorder and serve `/metrics` on `addr` from a dedicated
    /// thread (its own current-thread tokio runtime), which also runs the
    /// upkeep every `interval`.
    #[cfg(feature = "prometheus-listener")]
    pub fn start_listener(
        addr: std::net::SocketAddr,
        interval: Duration,
    ) -> Result<(PrometheusRecorder, Self), TelemetryError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| TelemetryError::Worker {
                what: "prometheus listener runtime",
                reason: e.to_string(),
            })?;
        let (recorder, serve) = {
            let _entered = rt.enter();
            prometheus_builder()?
                .upkeep_timeout(interval.max(Duration::from_millis(10)))
                .with_http_listener(addr)
                .build()?
        };
        let handle = recorder.handle();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("spanline-prometheus-listener".into())
            .spawn(move || {
                rt.block_on(async move {
                    tokio::select! {
                        _ = serve => {}
                        _ = stop_rx => {}
                    }
                });
                rt.shutdown_timeout(Duration::from_millis(100));
            })
            .map_err(|e| TelemetryError::Worker {
                what: "prometheus listener",
                reason: e.to_string(),
            })?;
        Ok((
            recorder,
            PrometheusBackground {
                handle,
                stop: Some(Stop::Listener(stop_tx)),
                thread: Some(thread),
            },
        ))
    }

    /// The handle that renders the exposition text.
    pub fn handle(&self) -> &PrometheusHandle {
        &self.handle
    }

    /// Stop the background thread and wait for it.
    pub fn stop(&mut self) {
        match self.stop.take() {
            Some(Stop::Upkeep(tx)) => drop(tx),
            #[cfg(feature = "prometheus-listener")]
            Some(Stop::Listener(tx)) => {
                let _ = tx.send(());
            }
            None => {}
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for PrometheusBackground {
    fn drop(&mut self) {
        self.stop();
    }
}

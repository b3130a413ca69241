//! Pieces the benchmarks share: an exporter that drops what it gets (so a
//! benchmark measures the request path, not a collector) and the SDK
//! reference row.

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter,
};

/// Drops every batch: an exporter's cost is off the request path, and
/// keeping the spans would grow the heap for the whole run.
#[derive(Debug, Default, Clone, Copy)]
pub struct DiscardExporter;

impl SpanExporter for DiscardExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        std::hint::black_box(batch);
        Ok(())
    }
}

/// The reference a bench keeps beside spanline's shipped telemetry: the
/// SDK's own `BatchSpanProcessor` with a [`DiscardExporter`], always-on.
pub fn sdk_batch() -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(DiscardExporter).build())
        .with_sampler(Sampler::AlwaysOn)
        .build()
}

/// `(series, samples)` of the histograms in a Prometheus text rendering
/// (rendered as `histogram`, or as `summary` where no buckets are
/// configured): how many labelled series it holds and the sum of their
/// `_count`s. A bench prints it to show that its records reached the
/// recorder it claims to measure.
pub fn histogram_samples(rendered: &str) -> (usize, u64) {
    let histograms: Vec<&str> = rendered
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            l.strip_suffix(" histogram")
                .or_else(|| l.strip_suffix(" summary"))
        })
        .collect();
    let mut series = 0;
    let mut samples = 0;
    for line in rendered.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = name.split('{').next().unwrap_or(name);
        let is_count = name
            .strip_suffix("_count")
            .is_some_and(|h| histograms.contains(&h));
        if let (true, Ok(n)) = (is_count, value.parse::<f64>()) {
            series += 1;
            samples += n as u64;
        }
    }
    (series, samples)
}

#[cfg(test)]
mod tests {
    use super::histogram_samples;

    #[test]
    fn counts_histogram_series_and_samples_only() {
        let text = "# TYPE a_seconds histogram\n\
                    a_seconds_bucket{le=\"1\"} 3\n\
                    a_seconds_sum 1.5\n\
                    a_seconds_count{m=\"x\"} 3\n\
                    a_seconds_count{m=\"y\"} 4\n\
                    # TYPE c summary\n\
                    c{quantile=\"0.5\"} 0.1\n\
                    c_count 5\n\
                    # TYPE b_count counter\n\
                    b_count 9\n";
        assert_eq!(histogram_samples(text), (3, 12));
        assert_eq!(histogram_samples(""), (0, 0));
    }
}

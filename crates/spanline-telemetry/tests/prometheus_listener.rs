//! With the `prometheus-listener` feature, `/metrics` is served over HTTP
//! from a dedicated thread and stops with the guard.
#![cfg(feature = "prometheus-listener")]

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use spanline_core::semconv::metric;
use spanline_telemetry::TelemetryBuilder;

fn free_port() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

fn scrape(addr: std::net::SocketAddr) -> Option<String> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[tokio::test(flavor = "current_thread")]
async fn metrics_endpoint_serves_histograms() {
    let addr = free_port();
    let guard = TelemetryBuilder::new()
        .traces_exporters([])
        .prometheus_listener(addr)
        .build()
        .expect("build");
    metrics::with_local_recorder(guard.metrics_recorder().expect("recorder"), || {
        metrics::histogram!(metric::STAGE_DURATION).record(0.01);
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut body = None;
    while Instant::now() < deadline {
        if let Some(b) = scrape(addr).filter(|b| b.contains("200 OK")) {
            body = Some(b);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let body = body.expect("scraped /metrics");
    assert!(body.contains("spanline_stage_duration_bucket"), "{body}");
    drop(guard);
}

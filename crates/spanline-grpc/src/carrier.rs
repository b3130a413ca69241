//! W3C trace context in gRPC metadata: one newtype per carrier, through the
//! core's strict [`inject`](spanline_core::propagation::inject) and
//! [`extract`](spanline_core::propagation::extract).
//!
//! gRPC metadata values (HTTP/2 header values) must be visible ASCII. A value
//! that cannot be encoded is skipped and counted in
//! `spanline.propagation.rejected{reason="non_ascii"}`; it never fails the
//! call. An inbound W3C header whose value is not visible ASCII is treated as
//! absent and counted the same way.

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector};
use spanline_core::RequestContext;
use spanline_core::propagation::{self, Extracted};
use spanline_core::semconv::{header, metric, rpc};
use tonic::metadata::MetadataMap;

fn count_non_ascii() {
    metrics::counter!(metric::CARRIER_REJECTED, metric::LABEL_REASON => rpc::REASON_NON_ASCII)
        .increment(1);
}

/// The W3C header names, checked at compile time (the injector's keys are
/// almost always one of these: no lower-casing or parsing per call).
const TRACEPARENT: HeaderName = HeaderName::from_static(header::TRACEPARENT);
const TRACESTATE: HeaderName = HeaderName::from_static(header::TRACESTATE);
const BAGGAGE: HeaderName = HeaderName::from_static(header::BAGGAGE);

fn header_name(key: &str) -> Option<HeaderName> {
    match key {
        header::TRACEPARENT => Some(TRACEPARENT),
        header::TRACESTATE => Some(TRACESTATE),
        header::BAGGAGE => Some(BAGGAGE),
        _ => HeaderName::from_bytes(key.to_ascii_lowercase().as_bytes()).ok(),
    }
}

fn set_header(map: &mut HeaderMap, key: &str, value: String) {
    let Some(name) = header_name(key) else {
        count_non_ascii();
        return;
    };
    // `HeaderValue::try_from(String)` accepts obs-text bytes; metadata must be
    // visible ASCII (plus space and tab), so check first.
    if !value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        count_non_ascii();
        return;
    }
    match HeaderValue::try_from(value) {
        Ok(mut v) => {
            // A `traceparent` is new on every call: HPACK "never indexed",
            // so it does not churn the connection's header table (evicting
            // the headers that do repeat) on both ends.
            if name == TRACEPARENT {
                v.set_sensitive(true);
            }
            map.insert(name, v);
        }
        Err(_) => count_non_ascii(),
    }
}

/// Writes W3C headers into an `http::HeaderMap` (what the tower layers see).
#[derive(Debug)]
pub struct HeaderInjector<'a>(pub &'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        set_header(self.0, key, value);
    }
}

/// Reads W3C headers from an `http::HeaderMap`. Construct it with
/// [`HeaderExtractor::new`], which counts W3C values that are not visible
/// ASCII once (they read as absent).
#[derive(Debug)]
pub struct HeaderExtractor<'a>(&'a HeaderMap);

impl<'a> HeaderExtractor<'a> {
    /// Wrap `map`, counting unreadable W3C values.
    pub fn new(map: &'a HeaderMap) -> Self {
        for key in [header::TRACEPARENT, header::TRACESTATE, header::BAGGAGE] {
            if map.get_all(key).iter().any(|v| v.to_str().is_err()) {
                count_non_ascii();
            }
        }
        HeaderExtractor(map)
    }
}

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let values: Vec<&str> = self
            .0
            .get_all(key)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!values.is_empty()).then_some(values)
    }
}

/// Writes W3C headers into tonic's [`MetadataMap`] (for code that builds a
/// `tonic::Request` by hand rather than going through the client layer).
#[derive(Debug)]
pub struct MetadataInjector<'a>(pub &'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // MetadataMap is a typed view over a HeaderMap; ASCII metadata keys
        // are exactly the header names that do not end in `-bin`.
        if key.ends_with("-bin") {
            count_non_ascii();
            return;
        }
        set_header(self.0.as_mut(), key, value);
    }
}

/// Reads W3C headers from tonic's [`MetadataMap`] (for a handler without the
/// server layer). Counts unreadable values like [`HeaderExtractor`].
#[derive(Debug)]
pub struct MetadataExtractor<'a>(HeaderExtractor<'a>);

impl<'a> MetadataExtractor<'a> {
    /// Wrap `map`, counting unreadable W3C values.
    pub fn new(map: &'a MetadataMap) -> Self {
        MetadataExtractor(HeaderExtractor::new(map.as_ref()))
    }
}

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys()
    }
    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        self.0.get_all(key)
    }
}

/// Inject `ctx` into `metadata` (strict W3C; non-ASCII values skipped and
/// counted).
pub fn inject_metadata(ctx: &RequestContext, metadata: &mut MetadataMap) {
    propagation::inject(ctx, &mut HeaderInjector(metadata.as_mut()));
}

/// Extract a remote context from `metadata` (strict W3C).
pub fn extract_metadata(metadata: &MetadataMap) -> Extracted {
    propagation::extract(&MetadataExtractor::new(metadata))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_ascii_value_is_skipped_not_fatal() {
        let mut map = MetadataMap::new();
        MetadataInjector(&mut map).set("baggage", "user.id=j\u{f6}rg".into());
        MetadataInjector(&mut map).set("x-ok", "fine".into());
        assert!(map.get("baggage").is_none());
        assert_eq!(map.get("x-ok").and_then(|v| v.to_str().ok()), Some("fine"));
    }

    #[test]
    fn non_ascii_inbound_reads_as_absent() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            HeaderValue::from_bytes(b"00-\xff\xfe-01").unwrap_or(HeaderValue::from_static("x")),
        );
        let x = HeaderExtractor::new(&headers);
        assert_eq!(x.get("traceparent"), None);
        assert_eq!(x.get_all("traceparent"), None);
        let extracted = propagation::extract(&x);
        assert!(extracted.parent.is_none());
    }
}

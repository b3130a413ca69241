//! OTLP protobuf: message definitions (the subset the analyser needs) and a
//! salvaging decoder that recovers every complete span from a truncated file.

use std::io::{self, BufRead, Read};

use prost::Message;

use super::Sink;
use crate::diag::{DiagnosticKind, Location};
use crate::model::{AttrValue, Attributes, Link, SpanId, SpanKind, Status, StatusCode, TraceId};

/// Largest length-delimited element accepted (protects against absurd lengths).
const MAX_ELEMENT: u64 = 1 << 30;

/// The OTLP messages, field numbers as in `opentelemetry/proto/trace/v1/trace.proto`.
pub(crate) mod pb {
    /// `TracesData` / `ExportTraceServiceRequest` (identical on the wire).
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct TracesData {
        #[prost(message, repeated, tag = "1")]
        pub(crate) resource_spans: Vec<ResourceSpans>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct ResourceSpans {
        #[prost(message, optional, tag = "1")]
        pub(crate) resource: Option<Resource>,
        #[prost(message, repeated, tag = "2")]
        pub(crate) scope_spans: Vec<ScopeSpans>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Resource {
        #[prost(message, repeated, tag = "1")]
        pub(crate) attributes: Vec<KeyValue>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct ScopeSpans {
        #[prost(message, repeated, tag = "2")]
        pub(crate) spans: Vec<Span>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Span {
        #[prost(bytes = "vec", tag = "1")]
        pub(crate) trace_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub(crate) span_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "4")]
        pub(crate) parent_span_id: Vec<u8>,
        #[prost(string, tag = "5")]
        pub(crate) name: String,
        #[prost(int32, tag = "6")]
        pub(crate) kind: i32,
        #[prost(fixed64, tag = "7")]
        pub(crate) start_time_unix_nano: u64,
        #[prost(fixed64, tag = "8")]
        pub(crate) end_time_unix_nano: u64,
        #[prost(message, repeated, tag = "9")]
        pub(crate) attributes: Vec<KeyValue>,
        #[prost(message, repeated, tag = "13")]
        pub(crate) links: Vec<Link>,
        #[prost(message, optional, tag = "15")]
        pub(crate) status: Option<Status>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Link {
        #[prost(bytes = "vec", tag = "1")]
        pub(crate) trace_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub(crate) span_id: Vec<u8>,
        #[prost(message, repeated, tag = "4")]
        pub(crate) attributes: Vec<KeyValue>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Status {
        #[prost(string, tag = "2")]
        pub(crate) message: String,
        #[prost(int32, tag = "3")]
        pub(crate) code: i32,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct KeyValue {
        #[prost(string, tag = "1")]
        pub(crate) key: String,
        #[prost(message, optional, tag = "2")]
        pub(crate) value: Option<AnyValue>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct AnyValue {
        #[prost(oneof = "any_value::Value", tags = "1, 2, 3, 4, 5, 6, 7")]
        pub(crate) value: Option<any_value::Value>,
    }
    pub(crate) mod any_value {
        #[allow(clippy::enum_variant_names)] // names as in the OTLP proto
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub(crate) enum Value {
            #[prost(string, tag = "1")]
            StringValue(String),
            #[prost(bool, tag = "2")]
            BoolValue(bool),
            #[prost(int64, tag = "3")]
            IntValue(i64),
            #[prost(double, tag = "4")]
            DoubleValue(f64),
            #[prost(message, tag = "5")]
            ArrayValue(super::ArrayValue),
            #[prost(message, tag = "6")]
            KvlistValue(super::KeyValueList),
            #[prost(bytes = "vec", tag = "7")]
            BytesValue(Vec<u8>),
        }
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct ArrayValue {
        #[prost(message, repeated, tag = "1")]
        pub(crate) values: Vec<AnyValue>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct KeyValueList {
        #[prost(message, repeated, tag = "1")]
        pub(crate) values: Vec<KeyValue>,
    }
}

/// One field of a protobuf message, as seen by the walker.
struct Field<'a> {
    number: u64,
    /// For length-delimited fields: the bytes (possibly fewer than declared).
    data: &'a [u8],
    /// Whether the buffer ended before the field did.
    truncated: bool,
}

/// Walks the top-level fields of `buf`. Stops after a truncated field.
struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    done: bool,
}

fn fields(buf: &[u8]) -> Fields<'_> {
    Fields {
        buf,
        pos: 0,
        done: false,
    }
}

fn varint_at(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

impl<'a> Iterator for Fields<'a> {
    type Item = Field<'a>;
    fn next(&mut self) -> Option<Field<'a>> {
        if self.done || self.pos >= self.buf.len() {
            return None;
        }
        let truncated = |s: &mut Self| {
            s.done = true;
            Some(Field {
                number: 0,
                data: &[],
                truncated: true,
            })
        };
        let Some(tag) = varint_at(self.buf, &mut self.pos) else {
            return truncated(self);
        };
        let number = tag >> 3;
        match tag & 7 {
            0 => {
                if varint_at(self.buf, &mut self.pos).is_none() {
                    return truncated(self);
                }
                Some(Field {
                    number,
                    data: &[],
                    truncated: false,
                })
            }
            1 | 5 => {
                let n = if tag & 7 == 1 { 8 } else { 4 };
                if self.pos + n > self.buf.len() {
                    return truncated(self);
                }
                self.pos += n;
                Some(Field {
                    number,
                    data: &[],
                    truncated: false,
                })
            }
            2 => {
                let Some(len) = varint_at(self.buf, &mut self.pos) else {
                    return truncated(self);
                };
                let start = self.pos;
                let avail = self.buf.len() - start;
                if len > avail as u64 {
                    self.done = true;
                    self.pos = self.buf.len();
                    return Some(Field {
                        number,
                        data: &self.buf[start..],
                        truncated: true,
                    });
                }
                let end = start + len as usize;
                self.pos = end;
                Some(Field {
                    number,
                    data: &self.buf[start..end],
                    truncated: false,
                })
            }
            _ => {
                // Groups or an invalid wire type: nothing after this can be trusted.
                self.done = true;
                Some(Field {
                    number: u64::MAX,
                    data: &[],
                    truncated: true,
                })
            }
        }
    }
}

/// Decoding state shared by the two protobuf framings.
pub(super) struct ProtoDecoder<'s, 'f> {
    pub(super) sink: &'s mut Sink<'f>,
}

impl ProtoDecoder<'_, '_> {
    /// Decodes a `TracesData` (possibly truncated) found at byte `offset`.
    fn traces_data(&mut self, buf: &[u8], offset: u64, declared_truncated: bool) {
        let mut truncated = declared_truncated;
        for f in fields(buf) {
            truncated |= f.truncated;
            if f.number == 1 {
                truncated |= self.resource_spans(f.data, offset, f.truncated);
            }
        }
        if truncated {
            self.report_truncated(offset);
        }
    }

    fn report_truncated(&mut self, offset: u64) {
        self.sink.diag(
            DiagnosticKind::TruncatedProtobuf,
            Location::Byte(offset),
            "protobuf input ends in the middle of a message; every complete span before the cut was kept",
        );
    }

    /// Decodes one `ResourceSpans`. Returns whether it was cut short.
    fn resource_spans(&mut self, buf: &[u8], offset: u64, cut: bool) -> bool {
        let mut service: Option<std::sync::Arc<str>> = None;
        let mut truncated = cut;
        // The resource comes first on the wire in practice; if not, spans seen
        // before it simply lack a service name.
        for f in fields(buf) {
            truncated |= f.truncated;
            match f.number {
                1 if !f.truncated => match pb::Resource::decode(f.data) {
                    Ok(r) => {
                        service = r
                            .attributes
                            .iter()
                            .find(|kv| kv.key == crate::semconv::SERVICE_NAME)
                            .and_then(|kv| match &kv.value {
                                Some(pb::AnyValue {
                                    value: Some(pb::any_value::Value::StringValue(s)),
                                }) => Some(self.sink.intern(s)),
                                _ => None,
                            });
                    }
                    Err(e) => self.sink.diag(
                        DiagnosticKind::BadProtobuf,
                        Location::Byte(offset),
                        format!("undecodable resource: {e}"),
                    ),
                },
                2 => {
                    for sf in fields(f.data) {
                        truncated |= sf.truncated;
                        if sf.number == 2 && !sf.truncated {
                            match pb::Span::decode(sf.data) {
                                Ok(span) => self.span(span, service.clone(), offset),
                                Err(e) => self.sink.diag(
                                    DiagnosticKind::BadProtobuf,
                                    Location::Byte(offset),
                                    format!("undecodable span skipped: {e}"),
                                ),
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        truncated
    }

    fn span(&mut self, s: pb::Span, service: Option<std::sync::Arc<str>>, offset: u64) {
        let Some(trace_id) = TraceId::from_bytes(&s.trace_id) else {
            self.sink.diag(
                DiagnosticKind::BadSpan,
                Location::Byte(offset),
                format!(
                    "span {:?} has a trace id of {} bytes (want 16); skipped",
                    s.name,
                    s.trace_id.len()
                ),
            );
            return;
        };
        let Some(span_id) = SpanId::from_bytes(&s.span_id) else {
            self.sink.diag(
                DiagnosticKind::BadSpan,
                Location::Byte(offset),
                format!(
                    "span {:?} has a span id of {} bytes (want 8); skipped",
                    s.name,
                    s.span_id.len()
                ),
            );
            return;
        };
        let parent = SpanId::from_bytes(&s.parent_span_id).filter(|p| p.0 != 0);
        let mut attributes = Attributes(Vec::with_capacity(s.attributes.len()));
        for kv in s.attributes {
            let v = self.value(kv.value);
            attributes.0.push((self.sink.intern(&kv.key), v));
        }
        let mut links = Vec::with_capacity(s.links.len());
        for l in s.links {
            if let (Some(t), Some(sp)) = (
                TraceId::from_bytes(&l.trace_id),
                SpanId::from_bytes(&l.span_id),
            ) {
                let mut la = Attributes::new();
                for kv in l.attributes {
                    let v = self.value(kv.value);
                    la.0.push((self.sink.intern(&kv.key), v));
                }
                links.push(Link {
                    trace_id: t,
                    span_id: sp,
                    attributes: la,
                });
            }
        }
        let status = s.status.map_or_else(Status::default, |st| Status {
            code: match st.code {
                1 => StatusCode::Ok,
                2 => StatusCode::Error,
                _ => StatusCode::Unset,
            },
            message: st.message,
        });
        let name = self.sink.intern(&s.name);
        self.sink.push(crate::model::Span {
            trace_id,
            span_id,
            parent_span_id: parent,
            name,
            kind: SpanKind::from_otlp(i64::from(s.kind)),
            start_ns: s.start_time_unix_nano,
            end_ns: s.end_time_unix_nano,
            status,
            attributes,
            links,
            service_name: service,
        });
    }

    fn value(&mut self, v: Option<pb::AnyValue>) -> AttrValue {
        use pb::any_value::Value as V;
        match v.and_then(|v| v.value) {
            Some(V::StringValue(s)) => AttrValue::Str(self.sink.intern(&s)),
            Some(V::BoolValue(b)) => AttrValue::Bool(b),
            Some(V::IntValue(i)) => AttrValue::Int(i),
            Some(V::DoubleValue(d)) => AttrValue::Double(d),
            Some(V::ArrayValue(a)) => {
                AttrValue::Array(a.values.into_iter().map(|x| self.value(Some(x))).collect())
            }
            Some(V::KvlistValue(kv)) => {
                let parts: Vec<String> = kv
                    .values
                    .into_iter()
                    .map(|kv| format!("{}={}", kv.key, self.value(kv.value)))
                    .collect();
                AttrValue::Str(parts.join(",").into())
            }
            Some(V::BytesValue(b)) => AttrValue::Str(
                b.iter()
                    .map(|x| format!("{x:02x}"))
                    .collect::<String>()
                    .into(),
            ),
            None => AttrValue::Str("".into()),
        }
    }
}

/// Reads a varint from a stream. `Ok(None)` at a clean end of input.
fn read_varint<R: BufRead>(r: &mut R, consumed: &mut u64) -> io::Result<Result<Option<u64>, ()>> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let mut b = [0u8; 1];
        let n = read_some(r, &mut b)?;
        if n == 0 {
            return Ok(if i == 0 { Ok(None) } else { Err(()) });
        }
        *consumed += 1;
        v |= u64::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            return Ok(Ok(Some(v)));
        }
    }
    Ok(Err(()))
}

fn read_some<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Reads exactly `len` bytes if available (fewer at end of input).
fn read_element<R: Read>(r: &mut R, len: u64, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    r.take(len).read_to_end(buf)?;
    Ok(())
}

impl ProtoDecoder<'_, '_> {
    /// Read a varint length and that many bytes into `buf`. `Some(cut)` when
    /// read (`cut`: the input ended inside it); `None` when reading must
    /// stop (a truncated length, or one over [`MAX_ELEMENT`]), with the
    /// diagnostic already reported.
    fn length_prefixed<R: BufRead>(
        &mut self,
        r: &mut R,
        offset: &mut u64,
        at: u64,
        what: &str,
        buf: &mut Vec<u8>,
    ) -> io::Result<Option<bool>> {
        let len = match read_varint(r, offset)? {
            Ok(Some(l)) => l,
            _ => {
                self.report_truncated(at);
                return Ok(None);
            }
        };
        if len > MAX_ELEMENT {
            self.sink.diag(
                DiagnosticKind::BadProtobuf,
                Location::Byte(at),
                format!("{what} of {len} bytes exceeds the {MAX_ELEMENT}-byte limit; rest of the file skipped"),
            );
            return Ok(None);
        }
        read_element(r, len, buf)?;
        *offset += buf.len() as u64;
        Ok(Some((buf.len() as u64) < len))
    }

    /// A single `TracesData` message, decoded one `ResourceSpans` at a time.
    pub(super) fn plain<R: BufRead>(&mut self, r: &mut R) -> io::Result<()> {
        let mut offset = 0u64;
        let mut buf = Vec::new();
        loop {
            let at = offset;
            let tag = match read_varint(r, &mut offset)? {
                Ok(None) => return Ok(()),
                Ok(Some(t)) => t,
                Err(()) => {
                    self.report_truncated(at);
                    return Ok(());
                }
            };
            match tag & 7 {
                2 => {
                    let cut = match self.length_prefixed(r, &mut offset, at, "element", &mut buf)? {
                        Some(cut) => cut,
                        None => return Ok(()),
                    };
                    if tag >> 3 == 1 {
                        let trunc = self.resource_spans(&buf, at, cut);
                        if trunc {
                            self.report_truncated(at);
                        }
                    } else if cut {
                        self.report_truncated(at);
                    }
                    if cut {
                        return Ok(());
                    }
                }
                0 => {
                    if read_varint(r, &mut offset)?.ok().flatten().is_none() {
                        self.report_truncated(at);
                        return Ok(());
                    }
                }
                w @ (1 | 5) => {
                    let n = if w == 1 { 8 } else { 4 };
                    read_element(r, n, &mut buf)?;
                    offset += buf.len() as u64;
                    if (buf.len() as u64) < n {
                        self.report_truncated(at);
                        return Ok(());
                    }
                }
                _ => {
                    self.sink.diag(
                        DiagnosticKind::BadProtobuf,
                        Location::Byte(at),
                        format!("invalid protobuf wire type {} (tag {tag}); not an OTLP TracesData message — rest of the file skipped", tag & 7),
                    );
                    return Ok(());
                }
            }
        }
    }

    /// A stream of varint-length-prefixed `TracesData` messages.
    pub(super) fn delimited<R: BufRead>(&mut self, r: &mut R) -> io::Result<()> {
        let mut offset = 0u64;
        let mut buf = Vec::new();
        loop {
            let at = offset;
            if r.fill_buf()?.is_empty() {
                return Ok(());
            }
            let cut = match self.length_prefixed(r, &mut offset, at, "message", &mut buf)? {
                Some(cut) => cut,
                None => return Ok(()),
            };
            self.traces_data(&buf, at, cut);
            if cut {
                return Ok(());
            }
        }
    }
}

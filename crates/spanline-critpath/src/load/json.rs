//! JSON lines: OTLP JSON (`resourceSpans`) and spanline console spans.
//!
//! Each line is parsed straight into [`Span`]s by typed serde visitors (no
//! `serde_json::Value` tree): strings are borrowed from the line where they
//! have no escapes, unknown fields are skipped without being built, and the
//! spans of a line are kept only once the whole line has parsed. A 256 MiB
//! line costs about what its spans cost, not a tree of `Value`s many times its
//! size. Every field accepts any JSON type: a value of the wrong type is
//! treated like a missing one (the span is reported and skipped when the field
//! is required), never a parse error of the line.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, BufRead};
use std::sync::Arc;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{LineRead, MAX_DIAGNOSTICS, Sink, read_line_capped};
use crate::diag::{DiagnosticKind, Location};
use crate::model::{
    AttrValue, Attributes, Link, Span, SpanId, SpanKind, Status, StatusCode, TraceId,
};

/// Longest text kept for an attribute value that is a JSON object (it is
/// stored as compact JSON text); longer text is cut and ends in `…`.
const MAX_OBJECT_TEXT: usize = 64 << 10;

/// Line buffer capacity kept from one line to the next.
const KEEP_LINE_BUFFER: usize = 4 << 20;

pub(super) fn read_lines<R: BufRead>(r: &mut R, sink: &mut Sink<'_>, max: usize) -> io::Result<()> {
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        // A huge line's buffer is not kept for the (usually small) lines after it.
        if buf.capacity() > KEEP_LINE_BUFFER {
            buf = Vec::new();
        }
        let read = read_line_capped(r, &mut buf, max)?;
        line_no += 1;
        let loc = Location::Line(line_no);
        match read {
            LineRead::Eof => return Ok(()),
            LineRead::TooLong => {
                sink.diag(
                    DiagnosticKind::LineTooLong,
                    loc,
                    format!("line longer than {max} bytes skipped"),
                );
                continue;
            }
            LineRead::Line => {}
        }
        let text = buf.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let mut cx = Ctx {
            sink: &mut *sink,
            spans: Vec::new(),
            diags: Vec::new(),
            more_diags: 0,
        };
        let mut de = serde_json::Deserializer::from_slice(text);
        let parsed = (&mut de)
            .deserialize_any(LineVisitor { cx: &mut cx })
            .and_then(|()| de.end());
        match parsed {
            Ok(()) => {
                let (spans, diags, more) = (cx.spans, cx.diags, cx.more_diags);
                for (kind, message) in diags {
                    sink.diag(kind, loc, message);
                }
                sink.suppressed += more;
                for s in spans {
                    sink.push(s);
                }
            }
            Err(e) => sink.diag(
                DiagnosticKind::BadJson,
                loc,
                format!("invalid JSON ({e}); line skipped"),
            ),
        }
    }
}

/// What the visitors of one line share.
struct Ctx<'s, 'f> {
    sink: &'s mut Sink<'f>,
    /// Spans of the line, pushed to the sink once the line has parsed.
    spans: Vec<Span>,
    /// Problems in the line's spans, reported once the line has parsed (a
    /// line that does not parse is one `bad_json`, whatever it held).
    diags: Vec<(DiagnosticKind, String)>,
    /// Problems beyond [`MAX_DIAGNOSTICS`] in this line.
    more_diags: u64,
}

impl Ctx<'_, '_> {
    fn diag(&mut self, kind: DiagnosticKind, message: impl Into<String>) {
        if self.diags.len() < MAX_DIAGNOSTICS {
            self.diags.push((kind, message.into()));
        } else {
            self.more_diags += 1;
        }
    }
}

/// Skips the rest of a map.
fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Skips the rest of a sequence.
fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Implements the visitor methods of a visitor that accepts any JSON value
/// and maps the ones it does not care about to `$other`.
macro_rules! any_other {
    ($other:expr; $($skip:ident),*) => {
        $(any_other!(@one $skip, $other);)*
    };
    (@one bool, $other:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> { Ok($other) }
    };
    (@one num, $other:expr) => {
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> { Ok($other) }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> { Ok($other) }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> { Ok($other) }
    };
    (@one str, $other:expr) => {
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> { Ok($other) }
    };
    (@one unit, $other:expr) => {
        fn visit_unit<E>(self) -> Result<Self::Value, E> { Ok($other) }
    };
    (@one seq, $other:expr) => {
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            drain_seq(seq)?;
            Ok($other)
        }
    };
    (@one map, $other:expr) => {
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            drain_map(map)?;
            Ok($other)
        }
    };
}

/// Implements the scalar visitor methods of a visitor that expects an
/// object as a call to its `not_object` (a diagnostic) and `Ok(())`.
macro_rules! not_object_scalars {
    () => {
        not_object_scalars!(@ visit_bool bool, visit_i64 i64, visit_u64 u64, visit_f64 f64, visit_str &str);
        fn visit_unit<E>(self) -> Result<(), E> {
            self.not_object();
            Ok(())
        }
    };
    (@ $($m:ident $t:ty),*) => {
        $(fn $m<E>(self, _: $t) -> Result<(), E> {
            self.not_object();
            Ok(())
        })*
    };
}

// ---------------------------------------------------------------- the line

/// A line: one object (an OTLP request or a console span) or an array of them.
struct LineVisitor<'a, 's, 'f> {
    cx: &'a mut Ctx<'s, 'f>,
}

impl<'de> Visitor<'de> for LineVisitor<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object or array")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        object(self.cx, map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(ElementSeed { cx: self.cx })?
            .is_some()
        {}
        Ok(())
    }
    not_object_scalars!();
}

impl LineVisitor<'_, '_, '_> {
    fn not_object(self) {
        self.cx.diag(
            DiagnosticKind::BadJson,
            "expected a JSON object (an OTLP request or a span); line skipped",
        );
    }
}

/// An element of a top-level array: an object, else reported and skipped.
struct ElementSeed<'a, 's, 'f> {
    cx: &'a mut Ctx<'s, 'f>,
}

impl<'de> DeserializeSeed<'de> for ElementSeed<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ElementSeed<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        object(self.cx, map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        drain_seq(seq)?;
        self.not_object();
        Ok(())
    }
    not_object_scalars!();
}

impl ElementSeed<'_, '_, '_> {
    fn not_object(self) {
        self.cx.diag(
            DiagnosticKind::BadSpan,
            "array element is not an object; skipped",
        );
    }
}

/// A top-level object: an OTLP request when it has a non-null
/// `resourceSpans`, else one console span.
fn object<'de, A: MapAccess<'de>>(cx: &mut Ctx<'_, '_>, map: A) -> Result<(), A::Error> {
    let fields = SpanFields::read(cx, map, true)?;
    if !fields.is_request
        && let Some(s) = fields.finish(cx, None)
    {
        cx.spans.push(s);
    }
    Ok(())
}

// ---------------------------------------------------------------- scalars

/// A JSON string (borrowed from the line when it has no escapes); `None` for
/// any other JSON value.
struct OptStr<'de>(Option<Cow<'de, str>>);

impl<'de> serde::Deserialize<'de> for OptStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OptStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(OptStr(Some(Cow::Borrowed(s))))
            }
            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(OptStr(Some(Cow::Owned(s.to_owned()))))
            }
            fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
                Ok(OptStr(Some(Cow::Owned(s))))
            }
            any_other!(OptStr(None); bool, num, unit, seq, map);
        }
        d.deserialize_any(V)
    }
}

/// A timestamp in nanoseconds: a JSON number or a string of one. `Null`
/// counts as absent; anything that is not a non-negative number below
/// 2^64 is `Bad`, with the reason.
enum Time {
    Null,
    Ok(u64),
    Bad(String),
}

/// A float timestamp, if it is representable as `u64` nanoseconds.
fn float_time(f: f64) -> Time {
    // 2^64 as f64 is exact; anything at or above it does not fit.
    if (0.0..18_446_744_073_709_551_616.0).contains(&f) {
        Time::Ok(f as u64)
    } else if f < 0.0 {
        Time::Bad(format!("{f} is negative"))
    } else {
        Time::Bad(format!("{f:e} is out of range (more than 2^64 - 1 ns)"))
    }
}

impl<'de> serde::Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Time;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("nanoseconds")
            }
            fn visit_u64<E>(self, v: u64) -> Result<Time, E> {
                Ok(Time::Ok(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Time, E> {
                Ok(u64::try_from(v)
                    .map_or_else(|_| Time::Bad(format!("{v} is negative")), Time::Ok))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Time, E> {
                Ok(float_time(v))
            }
            fn visit_str<E>(self, s: &str) -> Result<Time, E> {
                let t = s.trim();
                Ok(match t.parse::<u64>() {
                    Ok(v) => Time::Ok(v),
                    Err(_) => match t.parse::<f64>() {
                        Ok(f) => match float_time(f) {
                            Time::Bad(_) if f >= 0.0 => Time::Bad(format!(
                                "{:?} is out of range (more than 2^64 - 1 ns)",
                                cut(t)
                            )),
                            other => other,
                        },
                        Err(_) => Time::Bad(format!("{:?} is not a number", cut(t))),
                    },
                })
            }
            fn visit_unit<E>(self) -> Result<Time, E> {
                Ok(Time::Null)
            }
            any_other!(Time::Bad("not a number".into()); bool, seq, map);
        }
        d.deserialize_any(V)
    }
}

/// At most 40 characters of a value, for messages.
fn cut(s: &str) -> Cow<'_, str> {
    match s.char_indices().nth(40) {
        None => Cow::Borrowed(s),
        Some((i, _)) => Cow::Owned(format!("{}…", &s[..i])),
    }
}

/// `kind`: an OTLP number, a number as a string, or a name
/// (`Internal`, `SPAN_KIND_SERVER`, …). `None` for null.
struct Kind(Option<SpanKind>);

impl<'de> serde::Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Kind;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a span kind")
            }
            fn visit_i64<E>(self, v: i64) -> Result<Kind, E> {
                Ok(Kind(Some(SpanKind::from_otlp(v))))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Kind, E> {
                Ok(Kind(Some(SpanKind::from_otlp(
                    i64::try_from(v).unwrap_or(0),
                ))))
            }
            fn visit_str<E>(self, s: &str) -> Result<Kind, E> {
                Ok(Kind(Some(match s.trim().parse::<i64>() {
                    Ok(n) => SpanKind::from_otlp(n),
                    Err(_) => SpanKind::parse(s),
                })))
            }
            fn visit_unit<E>(self) -> Result<Kind, E> {
                Ok(Kind(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Kind, E> {
                Ok(Kind(Some(SpanKind::Unspecified)))
            }
            any_other!(Kind(Some(SpanKind::Unspecified)); bool, seq, map);
        }
        d.deserialize_any(V)
    }
}

fn parse_status_code(s: &str) -> StatusCode {
    let s = s.trim();
    let s = s.strip_prefix("STATUS_CODE_").unwrap_or(s);
    match s.to_ascii_lowercase().as_str() {
        "ok" | "1" => StatusCode::Ok,
        "error" | "2" => StatusCode::Error,
        _ => StatusCode::Unset,
    }
}

/// A status code: `1`/`2`, `"Ok"`, `"STATUS_CODE_ERROR"`, …; `None` for null.
struct Code(Option<StatusCode>);

impl<'de> serde::Deserialize<'de> for Code {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Code;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a status code")
            }
            fn visit_i64<E>(self, v: i64) -> Result<Code, E> {
                Ok(Code(Some(match v {
                    1 => StatusCode::Ok,
                    2 => StatusCode::Error,
                    _ => StatusCode::Unset,
                })))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Code, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(0))
            }
            fn visit_str<E>(self, s: &str) -> Result<Code, E> {
                Ok(Code(Some(parse_status_code(s))))
            }
            fn visit_unit<E>(self) -> Result<Code, E> {
                Ok(Code(None))
            }
            any_other!(Code(Some(StatusCode::Unset)); bool, seq, map);
            fn visit_f64<E>(self, _: f64) -> Result<Code, E> {
                Ok(Code(Some(StatusCode::Unset)))
            }
        }
        d.deserialize_any(V)
    }
}

/// The inner value of the Rust enum shape `{"Error": {"description": ..}}`:
/// an object with a `description` or `message`, or a plain string.
struct EnumDetail(String);

impl<'de> serde::Deserialize<'de> for EnumDetail {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EnumDetail;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a status detail")
            }
            fn visit_str<E>(self, s: &str) -> Result<EnumDetail, E> {
                Ok(EnumDetail(s.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EnumDetail, A::Error> {
                let (mut desc, mut msg) = (None, None);
                while let Some(OptStr(k)) = map.next_key::<OptStr<'de>>()? {
                    match k.as_deref() {
                        Some("description") => desc = map.next_value::<OptStr<'de>>()?.0,
                        Some("message") => msg = map.next_value::<OptStr<'de>>()?.0,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(EnumDetail(
                    desc.or(msg).map(Cow::into_owned).unwrap_or_default(),
                ))
            }
            any_other!(EnumDetail(String::new()); bool, num, unit, seq);
        }
        d.deserialize_any(V)
    }
}

/// `"Error"`, `2`, `{"code": 2, "message": ..}`, `{"Error": {"description": ..}}`, …
impl<'de> serde::Deserialize<'de> for Status {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Status;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a status")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Status, A::Error> {
                // code: the first non-null of code, status_code, statusCode
                let mut code: [Option<StatusCode>; 3] = [None; 3];
                let mut message: [Option<Cow<'de, str>>; 2] = [None, None];
                let mut enum_shape: Option<(StatusCode, String)> = None;
                while let Some(OptStr(k)) = map.next_key::<OptStr<'de>>()? {
                    let k = k.unwrap_or_default();
                    match &*k {
                        "code" => code[0] = map.next_value::<Code>()?.0,
                        "status_code" => code[1] = map.next_value::<Code>()?.0,
                        "statusCode" => code[2] = map.next_value::<Code>()?.0,
                        "message" => message[0] = map.next_value::<OptStr<'de>>()?.0,
                        "description" => message[1] = map.next_value::<OptStr<'de>>()?.0,
                        other if enum_shape.is_none() => {
                            let detail = map.next_value::<EnumDetail>()?;
                            enum_shape = Some((parse_status_code(other), detail.0));
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                let message = || {
                    message
                        .iter()
                        .flatten()
                        .next()
                        .map(|m| m.clone().into_owned())
                        .unwrap_or_default()
                };
                Ok(match code.iter().flatten().next() {
                    Some(&code) => Status {
                        code,
                        message: message(),
                    },
                    None => match enum_shape {
                        Some((code, message)) => Status { code, message },
                        None => Status::default(),
                    },
                })
            }
            fn visit_i64<E>(self, v: i64) -> Result<Status, E> {
                Ok(Status {
                    code: match v {
                        1 => StatusCode::Ok,
                        2 => StatusCode::Error,
                        _ => StatusCode::Unset,
                    },
                    message: String::new(),
                })
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Status, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(0))
            }
            fn visit_str<E>(self, s: &str) -> Result<Status, E> {
                Ok(Status {
                    code: parse_status_code(s),
                    message: String::new(),
                })
            }
            any_other!(Status::default(); bool, unit, seq);
            fn visit_f64<E>(self, _: f64) -> Result<Status, E> {
                Ok(Status::default())
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------- values

/// An attribute value: an OTLP JSON `AnyValue` (`{"stringValue": ..}`) or a
/// plain JSON value. Strings are interned.
struct ValueSeed<'a, 's, 'f> {
    cx: &'a mut Ctx<'s, 'f>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_, '_> {
    type Value = AttrValue;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<AttrValue, D::Error> {
        d.deserialize_any(self)
    }
}

/// How the inner value of a one-key `AnyValue` object is read.
#[derive(Clone, Copy)]
enum AnyKind {
    Str,
    Int,
    Double,
    Plain,
    Array,
    Text,
}

fn any_kind(k: &str) -> Option<AnyKind> {
    Some(match k {
        "stringValue" | "string_value" | "String" | "Str" => AnyKind::Str,
        "intValue" | "int_value" | "I64" | "Int" => AnyKind::Int,
        "doubleValue" | "double_value" | "F64" | "Double" => AnyKind::Double,
        "boolValue" | "bool_value" | "Bool" | "bytesValue" | "bytes_value" => AnyKind::Plain,
        "arrayValue" | "array_value" | "Array" => AnyKind::Array,
        "kvlistValue" | "kvlist_value" => AnyKind::Text,
        _ => return None,
    })
}

impl<'de> Visitor<'de> for ValueSeed<'_, '_, '_> {
    type Value = AttrValue;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an attribute value")
    }
    fn visit_str<E>(self, s: &str) -> Result<AttrValue, E> {
        Ok(AttrValue::Str(self.cx.sink.intern(s)))
    }
    fn visit_bool<E>(self, b: bool) -> Result<AttrValue, E> {
        Ok(AttrValue::Bool(b))
    }
    fn visit_i64<E>(self, v: i64) -> Result<AttrValue, E> {
        Ok(AttrValue::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<AttrValue, E> {
        Ok(i64::try_from(v).map_or(AttrValue::Double(v as f64), AttrValue::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<AttrValue, E> {
        Ok(AttrValue::Double(v))
    }
    fn visit_unit<E>(self) -> Result<AttrValue, E> {
        Ok(AttrValue::Str(self.cx.sink.intern("")))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AttrValue, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(ValueSeed { cx: &mut *self.cx })? {
            items.push(v);
        }
        Ok(AttrValue::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AttrValue, A::Error> {
        let Some(OptStr(first)) = map.next_key::<OptStr<'de>>()? else {
            return Ok(AttrValue::Str(self.cx.sink.intern("")));
        };
        let first = first.unwrap_or_default();
        let Some(kind) = any_kind(&first) else {
            // Not an AnyValue: keep the object as compact JSON text.
            let mut text = String::from("{");
            write_json_str(&mut text, &first);
            put(&mut text, ":");
            map.next_value_seed(TextSeed {
                out: &mut text,
                sep: false,
            })?;
            text_entries(&mut text, &mut map, true)?;
            close_text(&mut text, "}");
            return Ok(AttrValue::Str(Arc::from(text)));
        };
        let v = map.next_value_seed(AnySeed { cx: self.cx, kind })?;
        drain_map(map)?;
        Ok(v)
    }
}

/// The inner value of an `AnyValue` object.
struct AnySeed<'a, 's, 'f> {
    cx: &'a mut Ctx<'s, 'f>,
    kind: AnyKind,
}

impl<'de> DeserializeSeed<'de> for AnySeed<'_, '_, '_> {
    type Value = AttrValue;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<AttrValue, D::Error> {
        match self.kind {
            AnyKind::Text => {
                let mut text = String::new();
                TextSeed {
                    out: &mut text,
                    sep: false,
                }
                .deserialize(d)?;
                Ok(AttrValue::Str(Arc::from(text)))
            }
            AnyKind::Array => d.deserialize_any(ArrayValue { cx: self.cx }),
            AnyKind::Plain => ValueSeed { cx: self.cx }.deserialize(d),
            AnyKind::Str | AnyKind::Int | AnyKind::Double => d.deserialize_any(self),
        }
    }
}

impl<'de> Visitor<'de> for AnySeed<'_, '_, '_> {
    type Value = AttrValue;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an AnyValue")
    }
    fn visit_str<E>(self, s: &str) -> Result<AttrValue, E> {
        let parsed = match self.kind {
            AnyKind::Int => s.trim().parse::<i64>().ok().map(AttrValue::Int),
            AnyKind::Double => s.trim().parse::<f64>().ok().map(AttrValue::Double),
            _ => None,
        };
        Ok(parsed.unwrap_or_else(|| AttrValue::Str(self.cx.sink.intern(s))))
    }
    fn visit_i64<E>(self, v: i64) -> Result<AttrValue, E> {
        Ok(match self.kind {
            AnyKind::Double => AttrValue::Double(v as f64),
            _ => AttrValue::Int(v),
        })
    }
    fn visit_u64<E>(self, v: u64) -> Result<AttrValue, E> {
        Ok(match (self.kind, i64::try_from(v)) {
            (AnyKind::Double, _) | (_, Err(_)) => AttrValue::Double(v as f64),
            (_, Ok(i)) => AttrValue::Int(i),
        })
    }
    fn visit_f64<E>(self, v: f64) -> Result<AttrValue, E> {
        Ok(AttrValue::Double(v))
    }
    fn visit_bool<E>(self, b: bool) -> Result<AttrValue, E> {
        Ok(AttrValue::Bool(b))
    }
    fn visit_unit<E>(self) -> Result<AttrValue, E> {
        Ok(AttrValue::Str(self.cx.sink.intern("")))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<AttrValue, A::Error> {
        ValueSeed { cx: self.cx }.visit_seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<AttrValue, A::Error> {
        ValueSeed { cx: self.cx }.visit_map(map)
    }
}

/// `{"values": [..]}` or `[..]`.
struct ArrayValue<'a, 's, 'f> {
    cx: &'a mut Ctx<'s, 'f>,
}

impl<'de> Visitor<'de> for ArrayValue<'_, '_, '_> {
    type Value = AttrValue;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array value")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<AttrValue, A::Error> {
        ValueSeed { cx: self.cx }.visit_seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AttrValue, A::Error> {
        let mut out = AttrValue::Array(Vec::new());
        while let Some(OptStr(k)) = map.next_key::<OptStr<'de>>()? {
            if k.as_deref() == Some("values") {
                out = map.next_value_seed(AnySeed {
                    cx: &mut *self.cx,
                    kind: AnyKind::Array,
                })?;
                if !matches!(out, AttrValue::Array(_)) {
                    out = AttrValue::Array(Vec::new());
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(out)
    }
    any_other!(AttrValue::Array(Vec::new()); bool, num, str, unit);
}

/// Appends to compact JSON text while it is under [`MAX_OBJECT_TEXT`].
fn put(out: &mut String, s: &str) {
    if out.len() < MAX_OBJECT_TEXT {
        out.push_str(s);
    }
}

/// Appends a JSON string literal.
fn write_json_str(out: &mut String, s: &str) {
    if out.len() < MAX_OBJECT_TEXT {
        put(out, &serde_json::to_string(s).unwrap_or_default());
    }
}

/// Closes compact JSON text, cutting it (and marking the cut with `…`) when
/// it outgrew [`MAX_OBJECT_TEXT`].
fn close_text(out: &mut String, close: &str) {
    if out.len() >= MAX_OBJECT_TEXT {
        let mut at = MAX_OBJECT_TEXT.min(out.len());
        while !out.is_char_boundary(at) {
            at -= 1;
        }
        out.truncate(at);
        out.push('…');
    } else {
        out.push_str(close);
    }
}

/// Any JSON value written back as compact JSON text (at most
/// [`MAX_OBJECT_TEXT`] bytes are kept), after a `,` when `sep`.
struct TextSeed<'a> {
    out: &'a mut String,
    sep: bool,
}

impl<'de> DeserializeSeed<'de> for TextSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.sep {
            put(self.out, ",");
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TextSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E>(self, s: &str) -> Result<(), E> {
        write_json_str(self.out, s);
        Ok(())
    }
    fn visit_bool<E>(self, b: bool) -> Result<(), E> {
        put(self.out, if b { "true" } else { "false" });
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        put(self.out, &v.to_string());
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        put(self.out, &v.to_string());
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        put(self.out, &v.to_string());
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        put(self.out, "null");
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        put(self.out, "[");
        let mut sep = false;
        while seq
            .next_element_seed(TextSeed {
                out: &mut *self.out,
                sep,
            })?
            .is_some()
        {
            sep = true;
        }
        close_text(self.out, "]");
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        put(self.out, "{");
        text_entries(self.out, &mut map, false)?;
        close_text(self.out, "}");
        Ok(())
    }
}

/// Writes the remaining entries of a map as `"k":v` pairs.
fn text_entries<'de, A: MapAccess<'de>>(
    out: &mut String,
    map: &mut A,
    mut sep: bool,
) -> Result<(), A::Error> {
    while let Some(OptStr(k)) = map.next_key::<OptStr<'de>>()? {
        if sep {
            put(out, ",");
        }
        sep = true;
        write_json_str(out, k.as_deref().unwrap_or(""));
        put(out, ":");
        map.next_value_seed(TextSeed {
            out: &mut *out,
            sep: false,
        })?;
    }
    Ok(())
}

/// `[{"key": k, "value": AnyValue}]` (OTLP) or `{k: value}` (console).
/// `None` for null.
struct AttrsSeed<'a, 's, 'f> {
    cx: &'a mut Ctx<'s, 'f>,
}

impl<'de> DeserializeSeed<'de> for AttrsSeed<'_, '_, '_> {
    type Value = Option<Attributes>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AttrsSeed<'_, '_, '_> {
    type Value = Option<Attributes>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("attributes")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Attributes::new();
        while let Some(kv) = seq.next_element_seed(KeyValueSeed { cx: &mut *self.cx })? {
            if let Some(kv) = kv {
                out.0.push(kv);
            }
        }
        Ok(Some(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Attributes::new();
        while let Some(OptStr(k)) = map.next_key::<OptStr<'de>>()? {
            let v = map.next_value_seed(ValueSeed { cx: &mut *self.cx })?;
            let k = self.cx.sink.intern(k.as_deref().unwrap_or(""));
            out.0.push((k, v));
        }
        Ok(Some(out))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    any_other!(Some(Attributes::new()); bool, num, str);
}

/// One `{"key": k, "value": v}` of an OTLP attribute list.
struct KeyValueSeed<'a, 's, 'f> {
    cx: &'a mut Ctx<'s, 'f>,
}

impl<'de> DeserializeSeed<'de> for KeyValueSeed<'_, '_, '_> {
    type Value = Option<(Arc<str>, AttrValue)>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyValueSeed<'_, '_, '_> {
    type Value = Option<(Arc<str>, AttrValue)>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key/value object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut key, mut value) = (None, None);
        while let Some(OptStr(k)) = map.next_key::<OptStr<'de>>()? {
            match k.as_deref() {
                Some("key" | "Key") if key.is_none() => key = map.next_value::<OptStr<'de>>()?.0,
                Some("value" | "Value") if value.is_none() => {
                    value = Some(map.next_value_seed(ValueSeed { cx: &mut *self.cx })?)
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(key.map(|k| {
            let v = value.unwrap_or_else(|| AttrValue::Str(self.cx.sink.intern("")));
            (self.cx.sink.intern(&k), v)
        }))
    }
    any_other!(None; bool, num, str, unit, seq);
}

/// `links`: `[{"traceId", "spanId", "attributes"}]`.
struct LinksSeed<'a, 's, 'f> {
    cx: &'a mut Ctx<'s, 'f>,
}

impl<'de> DeserializeSeed<'de> for LinksSeed<'_, '_, '_> {
    type Value = Vec<Link>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Link>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for LinksSeed<'_, '_, '_> {
    type Value = Vec<Link>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("links")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Link>, A::Error> {
        let mut out = Vec::new();
        while let Some(l) = seq.next_element_seed(LinkSeed { cx: &mut *self.cx })? {
            out.extend(l);
        }
        Ok(out)
    }
    any_other!(Vec::new(); bool, num, str, unit, map);
}

struct LinkSeed<'a, 's, 'f> {
    cx: &'a mut Ctx<'s, 'f>,
}

impl<'de> DeserializeSeed<'de> for LinkSeed<'_, '_, '_> {
    type Value = Option<Link>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<Link>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for LinkSeed<'_, '_, '_> {
    type Value = Option<Link>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a link")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Link>, A::Error> {
        let (mut t, mut s, mut attributes) = (None, None, None);
        while let Some(OptStr(k)) = map.next_key::<OptStr<'de>>()? {
            match k.as_deref() {
                Some("traceId" | "trace_id") if t.is_none() => {
                    t = map.next_value::<OptStr<'de>>()?.0
                }
                Some("spanId" | "span_id") if s.is_none() => s = map.next_value::<OptStr<'de>>()?.0,
                Some("attributes") => {
                    attributes = map.next_value_seed(AttrsSeed { cx: &mut *self.cx })?
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let trace_id = t.as_deref().and_then(trace_id);
        let span_id = s.as_deref().and_then(span_id);
        Ok(match (trace_id, span_id) {
            (Some(trace_id), Some(span_id)) => Some(Link {
                trace_id,
                span_id,
                attributes: attributes.unwrap_or_default(),
            }),
            _ => None,
        })
    }
    any_other!(None; bool, num, str, unit, seq);
}

// ---------------------------------------------------------------- ids

fn base64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Hex (the Collector's choice) or base64 (protobuf's JSON mapping).
pub(super) fn trace_id(s: &str) -> Option<TraceId> {
    let s = s.trim();
    TraceId::from_hex(s).or_else(|| base64(s).and_then(|b| TraceId::from_bytes(&b)))
}

pub(super) fn span_id(s: &str) -> Option<SpanId> {
    let s = s.trim();
    SpanId::from_hex(s).or_else(|| base64(s).and_then(|b| SpanId::from_bytes(&b)))
}

// ---------------------------------------------------------------- spans

/// The fields of a span object (or of a top-level object that may be an OTLP
/// request), each alias in its own slot; the first non-null slot wins, in
/// the order of the aliases.
#[derive(Default)]
struct SpanFields<'de> {
    name: [Option<Cow<'de, str>>; 3],
    trace: [Option<Cow<'de, str>>; 3],
    span: [Option<Cow<'de, str>>; 3],
    parent: [Option<Cow<'de, str>>; 4],
    start: [Option<Time>; 4],
    end: [Option<Time>; 4],
    kind: [Option<SpanKind>; 2],
    status: Option<Status>,
    attributes: [Option<Attributes>; 2],
    links: Vec<Link>,
    service: [Option<Cow<'de, str>>; 3],
    resource_service: Option<Arc<str>>,
    /// A non-null `resourceSpans` was read (its spans are in the line's spans).
    is_request: bool,
}

/// The slot of a span-object key: `(field, alias index)`.
fn slot(k: &str) -> Option<(u8, usize)> {
    Some(match k {
        "name" => (0, 0),
        "span_name" => (0, 1),
        "operationName" => (0, 2),
        "traceId" => (1, 0),
        "trace_id" => (1, 1),
        "traceID" => (1, 2),
        "spanId" => (2, 0),
        "span_id" => (2, 1),
        "spanID" => (2, 2),
        "parentSpanId" => (3, 0),
        "parent_span_id" => (3, 1),
        "parent_id" => (3, 2),
        "parentSpanID" => (3, 3),
        "startTimeUnixNano" => (4, 0),
        "start_time_unix_nano" => (4, 1),
        "start_time_ns" => (4, 2),
        "start_ns" => (4, 3),
        "endTimeUnixNano" => (5, 0),
        "end_time_unix_nano" => (5, 1),
        "end_time_ns" => (5, 2),
        "end_ns" => (5, 3),
        "kind" => (6, 0),
        "span_kind" => (6, 1),
        "status" => (7, 0),
        "attributes" => (8, 0),
        "attrs" => (8, 1),
        "links" => (9, 0),
        "service_name" => (10, 0),
        "serviceName" => (10, 1),
        "service" => (10, 2),
        "resource" => (11, 0),
        "resourceSpans" | "resource_spans" => (12, 0),
        _ => return None,
    })
}

/// The first present slot.
fn first<T>(slots: &[Option<T>]) -> Option<&T> {
    slots.iter().flatten().next()
}

impl<'de> SpanFields<'de> {
    /// Reads a span object; `top` allows the console-only fields (service,
    /// resource) and `resourceSpans`.
    fn read<A: MapAccess<'de>>(
        cx: &mut Ctx<'_, '_>,
        mut map: A,
        top: bool,
    ) -> Result<Self, A::Error> {
        let mut f = SpanFields::default();
        while let Some(OptStr(k)) = map.next_key::<OptStr<'de>>()? {
            let Some((field, i)) = k.as_deref().and_then(slot) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            match field {
                0 => f.name[i] = map.next_value::<OptStr<'de>>()?.0,
                1 => f.trace[i] = map.next_value::<OptStr<'de>>()?.0,
                2 => f.span[i] = map.next_value::<OptStr<'de>>()?.0,
                3 => f.parent[i] = map.next_value::<OptStr<'de>>()?.0,
                4 | 5 => {
                    let t = match map.next_value::<Time>()? {
                        Time::Null => None,
                        t => Some(t),
                    };
                    if field == 4 {
                        f.start[i] = t;
                    } else {
                        f.end[i] = t;
                    }
                }
                6 => f.kind[i] = map.next_value::<Kind>()?.0,
                7 => f.status = Some(map.next_value::<Status>()?),
                8 => f.attributes[i] = map.next_value_seed(AttrsSeed { cx: &mut *cx })?,
                9 => f.links = map.next_value_seed(LinksSeed { cx: &mut *cx })?,
                10 if top => f.service[i] = map.next_value::<OptStr<'de>>()?.0,
                11 if top => {
                    f.resource_service = map.next_value_seed(ResourceSeed {
                        cx: &mut *cx,
                        self_as_attributes: true,
                    })?
                }
                12 if top => {
                    f.is_request |= map.next_value_seed(ResourceSpansSeed { cx: &mut *cx })?
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(f)
    }

    /// Builds the span, or reports why it cannot be built.
    fn finish(self, cx: &mut Ctx<'_, '_>, service: Option<Arc<str>>) -> Option<Span> {
        let name: &str = first(&self.name).map_or("", |n| n);
        let tid = first(&self.trace).map(|s| &**s);
        let Some(trace_id) = tid.and_then(trace_id) else {
            cx.diag(
                DiagnosticKind::BadSpan,
                format!(
                    "span {:?}: missing or invalid trace id {:?}; skipped",
                    cut(name),
                    tid.map(cut)
                ),
            );
            return None;
        };
        let sid = first(&self.span).map(|s| &**s);
        let Some(span_id) = sid.and_then(span_id) else {
            cx.diag(
                DiagnosticKind::BadSpan,
                format!(
                    "span {:?}: missing or invalid span id {:?}; skipped",
                    cut(name),
                    sid.map(cut)
                ),
            );
            return None;
        };
        let parent_span_id = match first(&self.parent).map(|p| &**p) {
            None => None,
            Some(p) if p.trim().is_empty() => None,
            Some(p) => match self::span_id(p) {
                Some(id) if id.0 == 0 => None,
                Some(id) => Some(id),
                None => {
                    cx.diag(
                        DiagnosticKind::BadSpan,
                        format!(
                            "span {:?}: invalid parent span id {:?}; treated as a root",
                            cut(name),
                            cut(p)
                        ),
                    );
                    None
                }
            },
        };
        let (start_ns, end_ns) = match (first(&self.start), first(&self.end)) {
            (Some(Time::Ok(s)), Some(Time::Ok(e))) => (*s, *e),
            (s, e) => {
                let why = |t: Option<&Time>| match t {
                    None | Some(Time::Null) => "missing".to_owned(),
                    Some(Time::Ok(_)) => "ok".to_owned(),
                    Some(Time::Bad(b)) => b.clone(),
                };
                cx.diag(
                    DiagnosticKind::BadSpan,
                    format!(
                        "span {:?} ({span_id}): invalid start/end time (start: {}, end: {}); skipped",
                        cut(name),
                        why(s),
                        why(e)
                    ),
                );
                return None;
            }
        };
        let service = service.or_else(|| {
            first(&self.service)
                .map(|s| cx.sink.intern(s))
                .or(self.resource_service.clone())
        });
        let mut attributes = self.attributes;
        let attributes = attributes
            .iter_mut()
            .find_map(Option::take)
            .unwrap_or_default();
        Some(Span {
            trace_id,
            span_id,
            parent_span_id,
            name: cx.sink.intern(name),
            kind: first(&self.kind).copied().unwrap_or(SpanKind::Unspecified),
            start_ns,
            end_ns,
            status: self.status.unwrap_or_default(),
            attributes,
            links: self.links,
            service_name: service,
        })
    }
}

/// A `resource`: its `attributes` (or, for console spans, the object itself
/// as an attribute map); yields `service.name`.
struct ResourceSeed<'a, 's, 'f> {
    cx: &'a mut Ctx<'s, 'f>,
    self_as_attributes: bool,
}

impl<'de> DeserializeSeed<'de> for ResourceSeed<'_, '_, '_> {
    type Value = Option<Arc<str>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ResourceSeed<'_, '_, '_> {
    type Value = Option<Arc<str>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a resource")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut listed, mut own): (Option<Attributes>, Attributes) = (None, Attributes::new());
        while let Some(OptStr(k)) = map.next_key::<OptStr<'de>>()? {
            let k = k.unwrap_or_default();
            if k == "attributes" {
                listed = map.next_value_seed(AttrsSeed { cx: &mut *self.cx })?;
            } else if self.self_as_attributes {
                let v = map.next_value_seed(ValueSeed { cx: &mut *self.cx })?;
                own.0.push((self.cx.sink.intern(&k), v));
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        let attrs = listed.unwrap_or(own);
        Ok(attrs
            .get(crate::semconv::SERVICE_NAME)
            .and_then(AttrValue::as_str)
            .map(|s| self.cx.sink.intern(s)))
    }
    any_other!(None; bool, num, str, unit, seq);
}

/// `resourceSpans`: an array of `ResourceSpans`; `true` unless null.
struct ResourceSpansSeed<'a, 's, 'f> {
    cx: &'a mut Ctx<'s, 'f>,
}

impl<'de> DeserializeSeed<'de> for ResourceSpansSeed<'_, '_, '_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ResourceSpansSeed<'_, '_, '_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("resourceSpans")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq
            .next_element_seed(ResourceSpanSeed { cx: &mut *self.cx })?
            .is_some()
        {}
        Ok(true)
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
    any_other!(true; bool, num, str, map);
}

/// One `ResourceSpans`: `resource` and `scopeSpans[].spans[]`. The service
/// name is applied once the whole object is read (its fields may come in
/// any order).
struct ResourceSpanSeed<'a, 's, 'f> {
    cx: &'a mut Ctx<'s, 'f>,
}

impl<'de> DeserializeSeed<'de> for ResourceSpanSeed<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ResourceSpanSeed<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a ResourceSpans object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let from = self.cx.spans.len();
        let mut service = None;
        while let Some(OptStr(k)) = map.next_key::<OptStr<'de>>()? {
            match k.as_deref() {
                Some("resource") => {
                    service = map.next_value_seed(ResourceSeed {
                        cx: &mut *self.cx,
                        self_as_attributes: false,
                    })?
                }
                Some("scopeSpans" | "scope_spans" | "instrumentationLibrarySpans") => map
                    .next_value_seed(ListSeed {
                        cx: &mut *self.cx,
                        level: Level::Scope,
                    })?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if service.is_some() {
            for s in &mut self.cx.spans[from..] {
                s.service_name.clone_from(&service);
            }
        }
        Ok(())
    }
    any_other!((); bool, num, str, unit, seq);
}

/// Which list a [`ListSeed`] reads.
#[derive(Clone, Copy)]
enum Level {
    /// `scopeSpans`: objects with `spans`.
    Scope,
    /// `spans`: span objects.
    Spans,
}

/// `scopeSpans` (a list of scopes) or `spans` (a list of span objects).
struct ListSeed<'a, 's, 'f> {
    cx: &'a mut Ctx<'s, 'f>,
    level: Level,
}

impl<'de> DeserializeSeed<'de> for ListSeed<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ListSeed<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(ItemSeed {
                cx: &mut *self.cx,
                level: self.level,
            })?
            .is_some()
        {}
        Ok(())
    }
    any_other!((); bool, num, str, unit, map);
}

/// One scope (`{"spans": [..]}`) or one span object.
struct ItemSeed<'a, 's, 'f> {
    cx: &'a mut Ctx<'s, 'f>,
    level: Level,
}

impl<'de> DeserializeSeed<'de> for ItemSeed<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl ItemSeed<'_, '_, '_> {
    fn not_object(self) {
        if let Level::Spans = self.level {
            self.cx.diag(
                DiagnosticKind::BadSpan,
                "span is not a JSON object; skipped",
            );
        }
    }
}

impl<'de> Visitor<'de> for ItemSeed<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        match self.level {
            Level::Scope => {
                while let Some(OptStr(k)) = map.next_key::<OptStr<'de>>()? {
                    if k.as_deref() == Some("spans") {
                        map.next_value_seed(ListSeed {
                            cx: &mut *self.cx,
                            level: Level::Spans,
                        })?;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Level::Spans => {
                let fields = SpanFields::read(self.cx, map, false)?;
                if let Some(s) = fields.finish(self.cx, None) {
                    self.cx.spans.push(s);
                }
            }
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        drain_seq(seq)?;
        self.not_object();
        Ok(())
    }
    not_object_scalars!();
}

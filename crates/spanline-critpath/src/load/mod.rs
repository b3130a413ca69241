//! Loaders: OTLP JSON (Collector `file` exporter), OTLP protobuf and spanline's
//! console JSON-lines format. Inputs are read as a stream; every problem in the
//! data becomes a [`Diagnostic`] and the rest of the input is still read.

mod json;
mod proto;

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use crate::diag::{Diagnostic, DiagnosticKind, Location};
use crate::error::LoadError;
use crate::model::Span;

pub(crate) use proto::pb;

/// Diagnostics kept per load; beyond that they are only counted.
const MAX_DIAGNOSTICS: usize = 10_000;
/// Distinct strings shared between spans (names, keys, values); beyond that
/// new strings are allocated per span.
const MAX_INTERNED: usize = 100_000;
/// Longest JSON line accepted.
const MAX_LINE: usize = 256 << 20;

/// The format of an input file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    /// Detect from the first bytes: printable text is JSON lines, else protobuf (a leading
    /// `0x0a` byte means one plain `TracesData`, anything else a stream of
    /// length-delimited messages).
    #[default]
    Auto,
    /// JSON lines: each line either an OTLP `ExportTraceServiceRequest`
    /// (`resourceSpans`) or one spanline console span (decided per line).
    JsonLines,
    /// One protobuf `TracesData` / `ExportTraceServiceRequest`.
    OtlpProto,
    /// Varint-length-prefixed protobuf `TracesData` messages, one after another.
    OtlpProtoDelimited,
}

/// Everything read from one input.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The spans, in input order.
    pub spans: Vec<Span>,
    /// Problems found (at most 10,000 are kept).
    pub diagnostics: Vec<Diagnostic>,
    /// Problems found beyond the ones kept.
    pub suppressed_diagnostics: u64,
    /// The format that was read.
    pub format: Option<Format>,
}

/// Collects spans and diagnostics while a loader runs.
pub(crate) struct Sink<'f> {
    on_span: &'f mut dyn FnMut(Span),
    diagnostics: Vec<Diagnostic>,
    suppressed: u64,
    interned: HashSet<Arc<str>>,
}

impl<'f> Sink<'f> {
    fn new(on_span: &'f mut dyn FnMut(Span)) -> Self {
        Sink {
            on_span,
            diagnostics: Vec::new(),
            suppressed: 0,
            interned: HashSet::new(),
        }
    }

    pub(crate) fn push(&mut self, span: Span) {
        (self.on_span)(span);
    }

    pub(crate) fn diag(
        &mut self,
        kind: DiagnosticKind,
        location: Location,
        message: impl Into<String>,
    ) {
        if self.diagnostics.len() < MAX_DIAGNOSTICS {
            self.diagnostics
                .push(Diagnostic::new(kind, location, message));
        } else {
            self.suppressed += 1;
        }
    }

    /// Shares repeated strings (span names, attribute keys, stage names).
    pub(crate) fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.interned.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        if self.interned.len() < MAX_INTERNED {
            self.interned.insert(a.clone());
        }
        a
    }
}

/// Opens and reads a trace file, detecting its format.
///
/// Fails only when the file cannot be opened or read at all; problems inside
/// the data are returned as diagnostics next to the spans that could be read.
pub fn load_file(path: &Path) -> Result<Loaded, LoadError> {
    let file = File::open(path).map_err(|source| LoadError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    load_reader(file, Format::Auto)
}

/// Reads a trace stream in the given format (see [`load_each`] to avoid
/// collecting the spans).
pub fn load_reader<R: Read>(reader: R, format: Format) -> Result<Loaded, LoadError> {
    let mut spans = Vec::new();
    let mut push = |s: Span| spans.push(s);
    let (diagnostics, suppressed, format) = load_each(reader, format, &mut push)?;
    Ok(Loaded {
        spans,
        diagnostics,
        suppressed_diagnostics: suppressed,
        format: Some(format),
    })
}

/// Reads a trace stream, handing each span to `on_span` as soon as it is
/// decoded. Returns the diagnostics, the number of suppressed diagnostics and
/// the format that was read.
pub fn load_each<R: Read>(
    reader: R,
    format: Format,
    on_span: &mut dyn FnMut(Span),
) -> Result<(Vec<Diagnostic>, u64, Format), LoadError> {
    let mut r = BufReader::with_capacity(1 << 20, reader);
    let format = match format {
        Format::Auto => detect(&mut r).map_err(LoadError::Read)?,
        f => f,
    };
    let mut sink = Sink::new(on_span);
    let result = match format {
        Format::JsonLines | Format::Auto => json::read_lines(&mut r, &mut sink, MAX_LINE),
        Format::OtlpProto => proto::ProtoDecoder { sink: &mut sink }.plain(&mut r),
        Format::OtlpProtoDelimited => proto::ProtoDecoder { sink: &mut sink }.delimited(&mut r),
    };
    if let Err(e) = result {
        sink.diag(
            DiagnosticKind::Io,
            Location::Input,
            format!("read error: {e}; the spans read before it are kept"),
        );
    }
    Ok((sink.diagnostics, sink.suppressed, format))
}

/// Guesses the format from the first buffered bytes.
fn detect<R: BufRead>(r: &mut R) -> io::Result<Format> {
    let buf = loop {
        match r.fill_buf() {
            Ok(b) => break b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    };
    let Some(&first) = buf.first() else {
        return Ok(Format::JsonLines);
    };
    let head = &buf[..buf.len().min(4096)];
    let textual = match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    } && head
        .iter()
        .all(|&b| b >= 0x20 || b == b'\n' || b == b'\r' || b == b'\t');
    let first_text = head.iter().find(|b| !b.is_ascii_whitespace());
    // Printable text is JSON lines (even if broken: each bad line is then
    // reported); protobuf always holds control bytes within its first fields.
    if textual || first_text == Some(&b'{') {
        Ok(Format::JsonLines)
    } else if first == 0x0a {
        Ok(Format::OtlpProto)
    } else {
        Ok(Format::OtlpProtoDelimited)
    }
}

/// Whether a buffered line reader hit a line longer than the limit.
enum LineRead {
    Eof,
    Line,
    TooLong,
}

/// Reads one line (without the newline) into `buf`, refusing more than `max` bytes.
fn read_line_capped<R: BufRead>(r: &mut R, buf: &mut Vec<u8>, max: usize) -> io::Result<LineRead> {
    buf.clear();
    let mut too_long = false;
    let mut any = false;
    loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(if !any {
                LineRead::Eof
            } else if too_long {
                LineRead::TooLong
            } else {
                LineRead::Line
            });
        }
        any = true;
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        if !too_long {
            if buf.len() + take > max {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&chunk[..take]);
            }
        }
        r.consume(if done { take + 1 } else { take });
        if done {
            return Ok(if too_long {
                LineRead::TooLong
            } else {
                LineRead::Line
            });
        }
    }
}

//! A bounded Server-Sent Events decoder (the `text/event-stream` format of
//! the WHATWG HTML standard), fed with byte chunks split anywhere.
//!
//! Lines end with `\r\n`, `\n` or `\r` (a `\r` at the end of one chunk and a
//! `\n` at the start of the next are one line ending). Comment lines (`:`)
//! and the `id` / `retry` fields are ignored; `data` lines accumulate, joined
//! by `\n`, until a blank line dispatches the event. A line longer than the
//! limit, or an event whose data grows past it, is an error as soon as the
//! limit is crossed, so a hostile server cannot make the buffer grow without
//! bound. Lines must be UTF-8 (checked per line: a line ending is ASCII, so
//! splitting at one never cuts a character).

use std::collections::VecDeque;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event` field, when one was given.
    pub(crate) event: Option<String>,
    /// The data lines, joined by `\n`.
    pub(crate) data: String,
}

/// Why the byte stream is not a valid, bounded event stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SseError {
    /// A line, or an event's accumulated data, exceeds the limit.
    TooLong,
    /// A line is not UTF-8.
    NotUtf8,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The decoder's state between chunks.
#[derive(Debug)]
pub(crate) struct SseDecoder {
    line: Vec<u8>,
    /// The previous chunk ended with `\r`: a leading `\n` is part of it.
    after_cr: bool,
    /// Bytes of the stream seen so far are all a prefix of a BOM.
    at_start: bool,
    data: String,
    has_data: bool,
    event: Option<String>,
    max: usize,
}

impl SseDecoder {
    /// A decoder allowing lines and event data of at most `max` bytes.
    pub(crate) fn new(max: usize) -> Self {
        SseDecoder {
            line: Vec::new(),
            after_cr: false,
            at_start: true,
            data: String::new(),
            has_data: false,
            event: None,
            max,
        }
    }

    /// Feed the next chunk; complete events are appended to `out`.
    pub(crate) fn feed(
        &mut self,
        mut chunk: &[u8],
        out: &mut VecDeque<SseEvent>,
    ) -> Result<(), SseError> {
        if self.at_start {
            chunk = self.skip_bom(chunk);
        }
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
        }
        while !chunk.is_empty() {
            match chunk.iter().position(|b| *b == b'\n' || *b == b'\r') {
                None => {
                    self.push_line(chunk)?;
                    break;
                }
                Some(at) => {
                    let (head, rest) = chunk.split_at(at);
                    self.push_line(head)?;
                    self.end_line(out)?;
                    // `rest` starts with the line ending.
                    let crlf = rest.starts_with(b"\r\n");
                    let cr_at_end = rest == b"\r";
                    chunk = rest.get(if crlf { 2 } else { 1 }..).unwrap_or_default();
                    if cr_at_end {
                        self.after_cr = true;
                    }
                }
            }
        }
        Ok(())
    }

    /// The stream ended: a last line without its ending, and an event
    /// without its blank line, are taken as complete (lenient: servers that
    /// close right after `data: [DONE]` are common).
    pub(crate) fn finish(&mut self, out: &mut VecDeque<SseEvent>) -> Result<(), SseError> {
        if !self.line.is_empty() {
            self.end_line(out)?;
        }
        self.dispatch(out);
        Ok(())
    }

    fn skip_bom<'c>(&mut self, chunk: &'c [u8]) -> &'c [u8] {
        // The BOM may itself be split across chunks: hold its prefix in
        // `line` until it is complete or disproved.
        let seen = self.line.len();
        let want = BOM.get(seen..).unwrap_or_default();
        let n = want.len().min(chunk.len());
        if chunk.get(..n) == want.get(..n) {
            if n == want.len() {
                self.line.clear();
                self.at_start = false;
            } else {
                self.line
                    .extend_from_slice(chunk.get(..n).unwrap_or_default());
            }
            chunk.get(n..).unwrap_or_default()
        } else {
            // Not a BOM: what was held is ordinary line content.
            self.at_start = false;
            chunk
        }
    }

    fn push_line(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        if self.line.len().saturating_add(bytes.len()) > self.max {
            return Err(SseError::TooLong);
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn end_line(&mut self, out: &mut VecDeque<SseEvent>) -> Result<(), SseError> {
        self.at_start = false;
        let line = std::mem::take(&mut self.line);
        let line = String::from_utf8(line).map_err(|_| SseError::NotUtf8)?;
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_str(), ""),
        };
        match field {
            "data" => {
                let extra = value.len() + usize::from(self.has_data);
                if self.data.len().saturating_add(extra) > self.max {
                    return Err(SseError::TooLong);
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_owned()),
            // `id`, `retry` and unknown fields are ignored.
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut VecDeque<SseEvent>) {
        let event = self.event.take();
        if self.has_data {
            self.has_data = false;
            out.push_back(SseEvent {
                event,
                data: std::mem::take(&mut self.data),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_split(input: &[u8], max: usize, split: &[usize]) -> Result<Vec<SseEvent>, SseError> {
        let mut d = SseDecoder::new(max);
        let mut out = VecDeque::new();
        let mut last = 0;
        for &s in split.iter().chain(std::iter::once(&input.len())) {
            d.feed(&input[last..s], &mut out)?;
            last = s;
        }
        d.finish(&mut out)?;
        Ok(out.into_iter().collect())
    }

    fn data(events: &[SseEvent]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    const STREAM: &[u8] = b"\xEF\xBB\xBF: keep-alive\r\ndata: {\"a\":1}\r\n\r\nevent: message\ndata: x\ndata:y\n\nid: 7\nretry: 10\ndata: [DONE]\r\r";

    #[test]
    fn every_split_point_gives_the_same_events() {
        let whole = decode_split(STREAM, 1024, &[]).unwrap();
        assert_eq!(data(&whole), ["{\"a\":1}", "x\ny", "[DONE]"]);
        assert_eq!(whole[1].event.as_deref(), Some("message"));
        for i in 0..=STREAM.len() {
            for j in i..=STREAM.len() {
                assert_eq!(
                    decode_split(STREAM, 1024, &[i, j]).unwrap(),
                    whole,
                    "{i} {j}"
                );
            }
        }
    }

    #[test]
    fn byte_by_byte() {
        let splits: Vec<usize> = (1..STREAM.len()).collect();
        assert_eq!(
            data(&decode_split(STREAM, 1024, &splits).unwrap()),
            ["{\"a\":1}", "x\ny", "[DONE]"]
        );
    }

    #[test]
    fn cr_then_lf_in_next_chunk_is_one_line_ending() {
        let ev = decode_split(b"data: a\r\n\r\ndata: b\r\n\r\n", 64, &[8, 10]).unwrap();
        assert_eq!(data(&ev), ["a", "b"]);
    }

    #[test]
    fn last_event_without_blank_line_is_kept() {
        assert_eq!(
            data(&decode_split(b"data: [DONE]", 64, &[]).unwrap()),
            ["[DONE]"]
        );
        assert_eq!(
            data(&decode_split(b"data: [DONE]\n", 64, &[]).unwrap()),
            ["[DONE]"]
        );
    }

    #[test]
    fn no_data_no_event() {
        assert!(
            decode_split(b"event: x\n\n: c\n\n\n", 64, &[])
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn overlong_line_fails_early() {
        let mut d = SseDecoder::new(16);
        let mut out = VecDeque::new();
        d.feed(b"data: 0123456789", &mut out).unwrap();
        assert_eq!(d.feed(b"abc", &mut out), Err(SseError::TooLong));
    }

    #[test]
    fn overlong_event_data_fails() {
        let input = b"data: 0123456789\ndata: 0123456789\n\n";
        assert_eq!(decode_split(input, 20, &[]), Err(SseError::TooLong));
    }

    #[test]
    fn invalid_utf8_fails_but_split_characters_do_not() {
        assert_eq!(
            decode_split(b"data: \xff\n\n", 64, &[]),
            Err(SseError::NotUtf8)
        );
        let text = "data: h\u{e9}\u{1f600}\n\n".as_bytes();
        for i in 0..text.len() {
            assert_eq!(
                data(&decode_split(text, 64, &[i]).unwrap()),
                ["h\u{e9}\u{1f600}"]
            );
        }
    }

    #[test]
    fn partial_bom_is_content() {
        assert_eq!(
            decode_split(b"\xEF\xBBdata: a\n\n", 64, &[1]),
            Err(SseError::NotUtf8)
        );
    }
}

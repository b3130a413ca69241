//! Prompt rendering (chat templates) and stop-sequence handling for
//! streamed text.

use spanline_core::{Message, Role};

/// How messages become a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatFormat {
    /// ChatML (`<|im_start|>role\n…<|im_end|>\n`), used by SmolLM2, Qwen and
    /// many others; chosen when the model's chat template uses
    /// `<|im_start|>`.
    ChatMl,
    /// `role: content` lines ending with `assistant:`, for models without a
    /// recognised template.
    Plain,
}

impl ChatFormat {
    /// The format a GGUF chat template (Jinja source) describes. spanline
    /// recognises templates rather than running Jinja.
    pub fn detect(template: Option<&str>) -> Self {
        match template {
            Some(t) if t.contains("<|im_start|>") => ChatFormat::ChatMl,
            _ => ChatFormat::Plain,
        }
    }

    /// The prompt for `messages`, ending where the assistant's reply starts.
    pub fn render(self, messages: &[Message]) -> String {
        let role = |r: Role| match r {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        let mut out = String::new();
        match self {
            ChatFormat::ChatMl => {
                for m in messages {
                    out.push_str("<|im_start|>");
                    out.push_str(role(m.role));
                    out.push('\n');
                    out.push_str(&m.content);
                    out.push_str("<|im_end|>\n");
                }
                out.push_str("<|im_start|>assistant\n");
            }
            ChatFormat::Plain => {
                for m in messages {
                    out.push_str(role(m.role));
                    out.push_str(": ");
                    out.push_str(&m.content);
                    out.push('\n');
                }
                out.push_str("assistant:");
            }
        }
        out
    }
}

/// Holds back streamed text that might be the start of a stop sequence,
/// so a stop sequence is never shown, even split across tokens.
#[derive(Debug)]
pub(crate) struct StopFilter {
    stops: Vec<String>,
    text: String,
    emitted: usize,
}

/// What [`StopFilter::push`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Filtered {
    /// Text safe to show now (may be empty).
    Emit(String),
    /// A stop sequence appeared: show this text, then stop.
    Stop(String),
}

impl StopFilter {
    pub(crate) fn new(stops: &[String]) -> Self {
        StopFilter {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            text: String::new(),
            emitted: 0,
        }
    }

    pub(crate) fn push(&mut self, piece: &str) -> Filtered {
        let search_from = floor_boundary(
            &self.text,
            self.emitted
                .saturating_sub(self.stops.iter().map(String::len).max().unwrap_or(0)),
        );
        self.text.push_str(piece);
        let first_stop = self
            .stops
            .iter()
            .filter_map(|s| self.text[search_from..].find(s.as_str()))
            .min();
        if let Some(at) = first_stop {
            let end = (search_from + at).max(self.emitted);
            let out = self.text[self.emitted..end].to_string();
            self.emitted = self.text.len();
            return Filtered::Stop(out);
        }
        // Hold back the longest tail that is a proper prefix of a stop.
        let mut safe = self.text.len();
        for stop in &self.stops {
            for len in (1..stop.len()).rev() {
                if len <= self.text.len()
                    && self.text.is_char_boundary(self.text.len() - len)
                    && stop.is_char_boundary(len)
                    && self.text.ends_with(&stop[..len])
                {
                    safe = safe.min(self.text.len() - len);
                    break;
                }
            }
        }
        let safe = safe.max(self.emitted);
        let out = self.text[self.emitted..safe].to_string();
        self.emitted = safe;
        Filtered::Emit(out)
    }

    /// The held-back text, at the end of generation.
    pub(crate) fn finish(&mut self) -> String {
        let out = self.text[self.emitted..].to_string();
        self.emitted = self.text.len();
        out
    }
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut f = StopFilter::new(&stops);
        let mut shown = String::new();
        for p in pieces {
            match f.push(p) {
                Filtered::Emit(t) => shown.push_str(&t),
                Filtered::Stop(t) => {
                    shown.push_str(&t);
                    return (shown, true);
                }
            }
        }
        shown.push_str(&f.finish());
        (shown, false)
    }

    #[test]
    fn stop_sequence_split_across_pieces_is_never_shown() {
        assert_eq!(
            run(&["END"], &["Hello E", "N", "D more"]),
            ("Hello ".into(), true)
        );
        assert_eq!(run(&["\n\n"], &["a\n", "\nb"]), ("a".into(), true));
    }

    #[test]
    fn near_misses_are_released() {
        assert_eq!(
            run(&["END"], &["Hello E", "N", "X"]),
            ("Hello ENX".into(), false)
        );
        assert_eq!(run(&["END"], &["tail E"]), ("tail E".into(), false));
    }

    #[test]
    fn multibyte_text_and_stops_stay_on_char_boundaries() {
        assert_eq!(run(&["né"], &["café n", "é!"]), ("café ".into(), true));
        assert_eq!(run(&["éé"], &["aé", "b"]), ("aéb".into(), false));
        assert_eq!(run(&[], &["ü", "ß"]), ("üß".into(), false));
    }

    #[test]
    fn chatml_prompt() {
        let p = ChatFormat::ChatMl.render(&[
            Message::new(Role::System, "Be brief."),
            Message::new(Role::User, "Hi"),
        ]);
        assert_eq!(
            p,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            ChatFormat::detect(Some("{% for m %}<|im_start|>")),
            ChatFormat::ChatMl
        );
        assert_eq!(ChatFormat::detect(None), ChatFormat::Plain);
    }
}

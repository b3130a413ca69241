//! Evidence: passages cut into sentences, the sentences most relevant to
//! the question, and whether an answer is supported by them
//! (docs/rag-example.md, "How an answer is made").
//!
//! Everything here is plain text processing, linear in the text and
//! bounded: a passage yields at most [`MAX_SENTENCES`] sentences of at most
//! [`MAX_SENTENCE_WORDS`] words.

use std::collections::HashSet;

/// At most this many sentences are taken from one passage.
pub const MAX_SENTENCES: usize = 48;
/// A longer sentence (a table row, a run-on list) is cut to this many words.
pub const MAX_SENTENCE_WORDS: usize = 60;
/// Sentences shorter than this (headings, fragments) are not evidence.
pub const MIN_SENTENCE_WORDS: usize = 4;
/// An answer sentence is *supported* when at least this share of its
/// content words occurs in one sentence of a passage it was given.
pub const SUPPORT_OVERLAP: f64 = 0.6;
/// An answer sentence must add at least this many content words to the
/// question's: a sentence that restates the question claims nothing.
pub const MIN_NEW_WORDS: usize = 2;

/// Words too common to say whether two sentences state the same fact.
const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "can", "do", "does", "for",
    "from", "has", "have", "how", "if", "in", "into", "is", "it", "its", "not", "of", "on", "or",
    "so", "that", "the", "their", "them", "then", "there", "these", "this", "those", "to", "was",
    "what", "when", "where", "which", "who", "why", "will", "with", "you", "your", "also", "each",
    "than", "such", "they", "we", "our", "any", "all", "one", "used", "use", "uses",
];

/// The sentences of a chunk's text, in order: the heading line (the
/// chunk's first paragraph when it names its section) and code blocks are
/// left out, table rows and list items are sentences of their own, prose
/// is split after `.`, `?` or `!` followed by a space and a capital, a
/// backtick or a digit.
pub fn sentences(text: &str, section: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    let mut paragraphs = text.split("\n\n").peekable();
    if let (Some(first), Some(section)) = (paragraphs.peek(), section)
        && first.trim() == section.trim()
    {
        paragraphs.next();
    }
    for paragraph in paragraphs {
        let p = paragraph.trim();
        if p.starts_with("```") {
            continue;
        }
        let mut prose = String::new();
        for line in p.lines() {
            let l = line.trim();
            let item = l.starts_with('|')
                || l.starts_with("- ")
                || l.starts_with("* ")
                || l.split_once(". ")
                    .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if item {
                split_prose(&prose, &mut out);
                prose.clear();
                if l.starts_with('|') {
                    // A table row: its cells, separator rows dropped.
                    let cells: Vec<&str> = l
                        .split('|')
                        .map(str::trim)
                        .filter(|c| !c.is_empty() && !c.chars().all(|ch| ch == '-' || ch == ':'))
                        .collect();
                    push(&cells.join(" — "), &mut out);
                } else {
                    prose.push_str(strip_list_marker(l));
                    prose.push(' ');
                }
            } else {
                prose.push_str(l);
                prose.push(' ');
            }
            if out.len() >= MAX_SENTENCES {
                break;
            }
        }
        split_prose(&prose, &mut out);
        if out.len() >= MAX_SENTENCES {
            out.truncate(MAX_SENTENCES);
            break;
        }
    }
    out
}

fn split_prose(prose: &str, out: &mut Vec<String>) {
    let mut start = 0;
    let bytes = prose.as_bytes();
    let mut in_code = false;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'`' {
            in_code = !in_code;
        }
        if in_code || !matches!(b, b'.' | b'?' | b'!') {
            continue;
        }
        let next = bytes.get(i + 1).copied();
        let after = bytes.get(i + 2).copied();
        let boundary = next == Some(b' ')
            && after.is_some_and(|c| {
                c.is_ascii_uppercase() || c == b'`' || c.is_ascii_digit() || c == b'*'
            });
        // "e.g. X", "i.e. X", "vs. X" are not ends.
        let word_start = prose[..i].rfind(' ').map_or(0, |s| s + 1);
        let abbreviation = matches!(&prose[word_start..i], "e.g" | "i.e" | "vs" | "etc" | "cf");
        if boundary && !abbreviation {
            push(&prose[start..=i], out);
            start = i + 2;
        }
    }
    if start < prose.len() {
        push(&prose[start..], out);
    }
}

fn strip_list_marker(line: &str) -> &str {
    if let Some(rest) = line.strip_prefix("- ").or_else(|| line.strip_prefix("* ")) {
        return rest;
    }
    match line.split_once(". ") {
        Some((n, rest)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => line,
    }
}

fn push(sentence: &str, out: &mut Vec<String>) {
    let sentence = sentence.replace("**", "");
    let words: Vec<&str> = sentence.split_whitespace().collect();
    if words.len() < MIN_SENTENCE_WORDS || out.len() >= MAX_SENTENCES {
        return;
    }
    out.push(words[..words.len().min(MAX_SENTENCE_WORDS)].join(" "));
}

/// The content words of `text`: lowercased runs of letters, digits, `_`
/// and `.` inside identifiers, without stop words, a trailing plural `s`
/// dropped, citation markers (`[2]`) ignored.
pub fn content_words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.' || c == '-'))
        .map(|w| w.trim_matches(|c: char| c == '.' || c == '-'))
        .filter(|w| !w.is_empty() && !w.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_lowercase)
        .filter(|w| !STOPWORDS.contains(&w.as_str()))
        .map(|w| match w.strip_suffix('s') {
            Some(stem) if stem.len() >= 3 && !stem.ends_with('s') => stem.to_string(),
            _ => w,
        })
        .collect()
}

/// The share of `answer`'s content words found in `source`'s (1 when the
/// answer has none: nothing in it is claimed).
pub fn overlap(answer: &[String], source: &HashSet<String>) -> f64 {
    if answer.is_empty() {
        return 1.0;
    }
    let found = answer.iter().filter(|w| source.contains(*w)).count();
    found as f64 / answer.len() as f64
}

/// How one answer sentence relates to the passages.
#[derive(Debug, Clone, PartialEq)]
pub struct Support {
    /// The answer sentence.
    pub sentence: String,
    /// Index of the passage holding the best-matching sentence.
    pub passage: Option<usize>,
    /// Its overlap ([`overlap`]).
    pub overlap: f64,
}

impl Support {
    /// Whether the sentence is supported ([`SUPPORT_OVERLAP`]).
    pub fn supported(&self) -> bool {
        self.overlap >= SUPPORT_OVERLAP
    }
}

/// Split an answer into sentences and find, for each, the passage sentence
/// sharing most of its content words that are not the question's.
/// `passages[i]` are the sentences of passage `i`. A sentence adding fewer
/// than [`MIN_NEW_WORDS`] words to the question has overlap 0.
pub fn support(answer: &str, question: &str, passages: &[Vec<String>]) -> Vec<Support> {
    let asked: HashSet<String> = content_words(question).into_iter().collect();
    let sources: Vec<(usize, HashSet<String>)> = passages
        .iter()
        .enumerate()
        .flat_map(|(i, ss)| {
            ss.iter()
                .map(move |s| (i, content_words(s).into_iter().collect()))
        })
        .collect();
    let mut out = Vec::new();
    let mut sentences = Vec::new();
    split_prose(&answer.replace('\n', " "), &mut sentences);
    if sentences.is_empty() && !answer.trim().is_empty() {
        sentences.push(answer.trim().to_string());
    }
    for s in sentences {
        let mut words = content_words(&strip_markers(&s));
        words.retain(|w| !asked.contains(w));
        words.sort_unstable();
        words.dedup();
        if words.len() < MIN_NEW_WORDS {
            out.push(Support {
                sentence: s,
                passage: None,
                overlap: 0.0,
            });
            continue;
        }
        let best = sources
            .iter()
            .map(|(i, src)| (*i, overlap(&words, src)))
            .fold(None, |best: Option<(usize, f64)>, (i, o)| match best {
                Some((_, b)) if b >= o => best,
                _ => Some((i, o)),
            });
        out.push(Support {
            sentence: s,
            passage: best.map(|(i, _)| i),
            overlap: best.map_or(0.0, |(_, o)| o),
        });
    }
    out
}

/// `text` without citation markers such as `[1]` or `[1, 2]`.
pub fn strip_markers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let (before, after) = rest.split_at(open);
        out.push_str(before);
        match after.find(']') {
            Some(close)
                if close <= 12
                    && after[1..close]
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == ',' || c == ' ') =>
            {
                let kept = out.trim_end().len();
                out.truncate(kept);
                rest = &after[close + 1..];
            }
            _ => {
                out.push('[');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Lexical relevance of a sentence to the question: the share of the
/// question's content words it contains.
pub fn lexical(question: &[String], sentence: &str) -> f64 {
    let words: HashSet<String> = content_words(sentence).into_iter().collect();
    if question.is_empty() {
        return 0.0;
    }
    question.iter().filter(|w| words.contains(*w)).count() as f64 / question.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_skip_the_heading_and_code_and_split_rows_and_prose() {
        let text = "Tracing rules\n\nThe process span is a child of the send span. A batch has many contexts, e.g. Kafka ones.\n\n```\ncode here is skipped entirely\n```\n\n| key | meaning |\n|---|---|\n| `spanline.step.index` | position of the step |\n\n- **Queue wait** is its own span with a type.";
        let s = sentences(text, Some("Tracing rules"));
        assert_eq!(
            s,
            [
                "The process span is a child of the send span.",
                "A batch has many contexts, e.g. Kafka ones.",
                "key — meaning",
                "`spanline.step.index` — position of the step",
                "Queue wait is its own span with a type."
            ]
            .map(String::from)
            .into_iter()
            .filter(|x| x.split_whitespace().count() >= MIN_SENTENCE_WORDS)
            .collect::<Vec<_>>()
        );
    }

    #[test]
    fn sentences_are_bounded() {
        let text = "Word word word word. ".repeat(10_000);
        let s = sentences(&text, None);
        assert_eq!(s.len(), MAX_SENTENCES);
        let long = "w ".repeat(5_000);
        assert_eq!(
            sentences(&long, None)[0].split_whitespace().count(),
            MAX_SENTENCE_WORDS
        );
    }

    #[test]
    fn support_finds_the_passage_and_rejects_invention() {
        let passages = vec![
            vec!["Workers in one consumer group share a partitioned request topic.".to_string()],
            vec!["The process span is a child of the send span.".to_string()],
        ];
        let s = support(
            "The process span is a child of the send span [2]. It is broadcast to all brokers by a plugin.",
            "How does the trace continue?",
            &passages,
        );
        assert_eq!(s.len(), 2);
        // Restating the question is not an answer.
        let echo = support(
            "The worker shares the request topic.",
            "How do workers share a request topic?",
            &passages,
        );
        assert!(!echo[0].supported(), "{echo:?}");
        assert_eq!(s[0].passage, Some(1));
        assert!(s[0].supported(), "{s:?}");
        assert!(!s[1].supported(), "{s:?}");
    }

    #[test]
    fn markers_and_stopwords_do_not_count() {
        assert_eq!(strip_markers("a [1] b [2, 3] c [x]"), "a b c [x]");
        assert_eq!(strip_markers("the span [1]."), "the span.");
        assert_eq!(
            content_words("The spans of the Workers"),
            ["span", "worker"]
        );
        assert!(content_words("spanline.step.index").contains(&"spanline.step.index".to_string()));
        assert_eq!(overlap(&[], &HashSet::new()), 1.0);
    }
}

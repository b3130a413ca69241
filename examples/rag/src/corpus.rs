//! Loading a folder of Markdown or text files and cutting it into chunks
//! with stable ids (`path#heading-slug`; `-2` for a repeated heading,
//! `~2`, `~3`… for later parts of a long section), which citations and the question set refer to.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use spanline::core::Document;

/// Files larger than this are skipped (with a warning), not read.
pub const MAX_FILE_BYTES: u64 = 4 << 20;
/// At most this many chunks are indexed.
pub const MAX_CHUNKS: usize = 50_000;
/// A chunk holds about this many words (sections are split at paragraphs).
pub const CHUNK_WORDS: usize = 120;
/// A line that leaves its section out of the index: sample output, a
/// changelog, anything that would be retrieved as if it were the answer.
/// Markdown renders it as nothing.
pub const NOT_INDEXED: &str = "<!-- rag: not indexed -->";

/// Why a corpus cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// The folder cannot be read.
    #[error("cannot read corpus folder {}: {source}", path.display())]
    Folder {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Nothing to index.
    #[error("no Markdown or text in {} (looked for .md, .markdown, .txt)", .0.display())]
    Empty(PathBuf),
}

/// A loaded corpus.
#[derive(Debug, Clone, Default)]
pub struct Corpus {
    /// The chunks, in file order.
    pub chunks: Vec<Document>,
    /// Files skipped, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

impl Corpus {
    /// Load every `.md`, `.markdown` and `.txt` file under `root`
    /// (recursively, in path order). Unreadable, oversized or non-UTF-8
    /// files are skipped and listed in [`Corpus::skipped`].
    pub fn load(root: &Path) -> Result<Corpus, CorpusError> {
        let mut files = Vec::new();
        collect(root, &mut files).map_err(|source| CorpusError::Folder {
            path: root.to_path_buf(),
            source,
        })?;
        files.sort();
        let mut corpus = Corpus::default();
        for file in files {
            let rel = file
                .strip_prefix(root)
                .unwrap_or(&file)
                .to_string_lossy()
                .replace('\\', "/");
            match std::fs::metadata(&file) {
                Ok(m) if m.len() > MAX_FILE_BYTES => {
                    corpus
                        .skipped
                        .push((file, format!("larger than {MAX_FILE_BYTES} bytes")));
                    continue;
                }
                Err(e) => {
                    corpus.skipped.push((file, e.to_string()));
                    continue;
                }
                Ok(_) => {}
            }
            let text = match std::fs::read(&file).map(String::from_utf8) {
                Ok(Ok(text)) => text,
                Ok(Err(_)) => {
                    corpus.skipped.push((file, "not UTF-8".into()));
                    continue;
                }
                Err(e) => {
                    corpus.skipped.push((file, e.to_string()));
                    continue;
                }
            };
            corpus.chunks.extend(chunk(&rel, &text));
            if corpus.chunks.len() >= MAX_CHUNKS {
                corpus.chunks.truncate(MAX_CHUNKS);
                corpus
                    .skipped
                    .push((file, format!("the corpus reached {MAX_CHUNKS} chunks")));
                break;
            }
        }
        if corpus.chunks.is_empty() {
            return Err(CorpusError::Empty(root.to_path_buf()));
        }
        Ok(corpus)
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            // Skip hidden folders (.git and the like) and unreadable ones.
            let hidden = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if !hidden {
                let _ = collect(&path, out);
            }
        } else if kind.is_file()
            && path
                .extension()
                .is_some_and(|e| e == "md" || e == "markdown" || e == "txt")
        {
            out.push(path);
        }
    }
    Ok(())
}

/// A heading's anchor: lowercase words joined by `-`.
pub fn slug(heading: &str) -> String {
    let mut out = String::new();
    for word in heading
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push('-');
        }
        out.extend(word.chars().flat_map(char::to_lowercase));
    }
    if out.is_empty() { "top".into() } else { out }
}

/// Cut one file into chunks: a chunk never crosses a heading; a long
/// section is split at paragraph boundaries near [`CHUNK_WORDS`] words.
/// Fenced code blocks stay whole. A section holding the [`NOT_INDEXED`]
/// line is left out (later sections keep the ids they would have had).
pub fn chunk(path: &str, text: &str) -> Vec<Document> {
    let mut sections: Vec<(String, Vec<String>)> = vec![(String::new(), Vec::new())];
    let mut skipped: Vec<usize> = Vec::new();
    let mut paragraph = String::new();
    let mut in_fence = false;
    let flush = |paragraph: &mut String, sections: &mut Vec<(String, Vec<String>)>| {
        let p = paragraph.trim();
        if !p.is_empty()
            && let Some(last) = sections.last_mut()
        {
            last.1.push(p.to_string());
        }
        paragraph.clear();
    };
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        }
        let heading = !in_fence && line.starts_with('#');
        if heading {
            flush(&mut paragraph, &mut sections);
            let title = line.trim_start_matches('#').trim().to_string();
            sections.push((title, Vec::new()));
        } else if !in_fence && line.trim().is_empty() {
            flush(&mut paragraph, &mut sections);
        } else if !in_fence && line.trim() == NOT_INDEXED {
            skipped.push(sections.len() - 1);
        } else {
            paragraph.push_str(line);
            paragraph.push('\n');
        }
    }
    flush(&mut paragraph, &mut sections);

    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for (index, (title, paragraphs)) in sections.into_iter().enumerate() {
        if paragraphs.is_empty() {
            continue;
        }
        let base = slug(&title);
        let n = seen.entry(base.clone()).or_insert(0);
        *n += 1;
        if skipped.contains(&index) {
            continue;
        }
        let anchor = if *n == 1 { base } else { format!("{base}-{n}") };
        let mut part = 0;
        let mut buf: Vec<&str> = Vec::new();
        let mut words = 0;
        let mut emit = |buf: &mut Vec<&str>, part: &mut usize| {
            if buf.is_empty() {
                return;
            }
            *part += 1;
            let id = if *part == 1 {
                format!("{path}#{anchor}")
            } else {
                format!("{path}#{anchor}~{part}")
            };
            let body = buf.join("\n\n");
            let text = if title.is_empty() {
                body
            } else {
                format!("{title}\n\n{body}")
            };
            let mut doc = Document::new(id, text);
            doc.metadata.insert("source".into(), path.to_string());
            doc.metadata.insert("section".into(), title.clone());
            out.push(doc);
            buf.clear();
        };
        let pieces: Vec<String> = paragraphs.iter().flat_map(|p| split_long(p)).collect();
        for p in &pieces {
            let w = p.split_whitespace().count();
            if words > 0 && words + w > CHUNK_WORDS {
                emit(&mut buf, &mut part);
                words = 0;
            }
            buf.push(p.as_str());
            words += w;
        }
        emit(&mut buf, &mut part);
    }
    out
}

/// A paragraph longer than a chunk, cut at line breaks (lists, code),
/// and lines still too long cut between words.
fn split_long(paragraph: &str) -> Vec<String> {
    if paragraph.split_whitespace().count() <= CHUNK_WORDS {
        return vec![paragraph.to_string()];
    }
    let mut out = Vec::new();
    let mut buf = String::new();
    let mut words = 0;
    for line in paragraph.lines() {
        let line_words: Vec<&str> = line.split_whitespace().collect();
        for part in line_words.chunks(CHUNK_WORDS) {
            if words > 0 && words + part.len() > CHUNK_WORDS {
                out.push(std::mem::take(&mut buf).trim_end().to_string());
                words = 0;
            }
            buf.push_str(&part.join(" "));
            buf.push('\n');
            words += part.len();
        }
    }
    if words > 0 {
        out.push(buf.trim_end().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_split_and_ids_are_stable() {
        let text = "# Title\n\nIntro.\n\n## Delivery semantics\n\nAt least once.\n\n## Delivery semantics\n\nAgain.\n";
        let chunks = chunk("kafka.md", text);
        let ids: Vec<&str> = chunks.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "kafka.md#title",
                "kafka.md#delivery-semantics",
                "kafka.md#delivery-semantics-2"
            ]
        );
        assert!(
            chunks[1]
                .text
                .starts_with("Delivery semantics\n\nAt least once.")
        );
    }

    #[test]
    fn long_sections_split_at_paragraphs_and_fences_stay_whole() {
        let para = "word ".repeat(80);
        let text = format!("## S\n\n{para}\n\n```\n# not a heading\n\ncode\n```\n\n{para}\n");
        let chunks = chunk("a.md", &text);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[1].id, "a.md#s~2");
        assert!(chunks[0].text.contains("# not a heading\n\ncode"));

        let list: String = (0..100)
            .map(|i| format!("- item {i} has four words\n"))
            .collect();
        let chunks = chunk("l.md", &format!("## L\n\n{list}"));
        assert!(chunks.len() >= 4);
        assert!(
            chunks
                .iter()
                .all(|c| c.text.split_whitespace().count() <= CHUNK_WORDS + 1)
        );
        let joined: usize = chunks
            .iter()
            .map(|c| c.text.matches("- item").count())
            .sum();
        assert_eq!(joined, 100, "nothing lost");
    }

    #[test]
    fn a_marked_section_is_left_out_and_later_ids_stay() {
        let text = format!(
            "# Guide\n\nHow it works.\n\n## Sample\n\n{NOT_INDEXED}\n\n```text\n$ run\nanswer\n```\n\n## Sample\n\nKept.\n"
        );
        let ids: Vec<String> = chunk("g.md", &text).into_iter().map(|c| c.id).collect();
        assert_eq!(ids, ["g.md#guide", "g.md#sample-2"]);
        // Inside a code fence the marker is just text.
        let fenced = format!("# A\n\n```\n{NOT_INDEXED}\n```\n");
        assert_eq!(chunk("a.md", &fenced).len(), 1);
    }

    #[test]
    fn bad_files_are_skipped_not_fatal() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::create_dir_all(dir.join(".git")).unwrap();
        std::fs::write(dir.join("ok.md"), "# A\n\ntext").unwrap();
        std::fs::write(dir.join("bad.txt"), [0xff, 0xfe, 0x00]).unwrap();
        std::fs::write(dir.join(".git/x.md"), "# hidden").unwrap();
        let corpus = Corpus::load(dir).unwrap();
        assert_eq!(corpus.chunks.len(), 1);
        assert_eq!(corpus.skipped.len(), 1);
        assert!(matches!(
            Corpus::load(&dir.join("missing")),
            Err(CorpusError::Folder { .. })
        ));
    }
}

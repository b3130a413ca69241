//! Span names and attribute values derived from topic names and partition
//! numbers, built once and shared, so the per-message path formats and
//! allocates none of them.
//!
//! Topic names are few and long-lived (they are configuration), so each
//! topic's names are built on first use and kept for the life of the
//! process, up to [`MAX_TOPICS`] topics; past that (a program generating
//! topic names) they are built per message instead of kept, so memory stays
//! bounded.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use opentelemetry::Value;
use spanline_core::semconv::messaging as m;

/// Most topics whose names are kept.
pub(crate) const MAX_TOPICS: usize = 1024;

/// The names spans of one topic use.
#[derive(Debug)]
pub(crate) struct TopicNames {
    /// `send {topic}`.
    pub(crate) send: Cow<'static, str>,
    /// `process {topic}`.
    pub(crate) process: Cow<'static, str>,
    /// `spanline.queue {topic}`.
    pub(crate) queue: Cow<'static, str>,
    /// `messaging.destination.name`.
    pub(crate) destination: Value,
}

impl TopicNames {
    fn build(topic: &str, keep: bool) -> Self {
        let name = |op: &str| {
            let s = format!("{op} {topic}");
            if keep {
                Cow::Borrowed(&*Box::leak(s.into_boxed_str()))
            } else {
                Cow::Owned(s)
            }
        };
        TopicNames {
            send: name(m::op::SEND),
            process: name(m::op::PROCESS),
            queue: name(m::op::QUEUE),
            destination: Value::from(Arc::<str>::from(topic)),
        }
    }
}

type Table = RwLock<HashMap<Box<str>, Arc<TopicNames>>>;

/// The names of `topic` (built on first use).
pub(crate) fn topic(topic: &str) -> Arc<TopicNames> {
    static TOPICS: OnceLock<Table> = OnceLock::new();
    let table = TOPICS.get_or_init(Default::default);
    {
        let read = table.read().unwrap_or_else(|p| p.into_inner());
        if let Some(names) = read.get(topic) {
            return names.clone();
        }
    }
    let mut write = table.write().unwrap_or_else(|p| p.into_inner());
    if let Some(names) = write.get(topic) {
        return names.clone();
    }
    if write.len() >= MAX_TOPICS {
        return Arc::new(TopicNames::build(topic, false));
    }
    let names = Arc::new(TopicNames::build(topic, true));
    write.insert(topic.into(), names.clone());
    names
}

/// Partitions whose `messaging.destination.partition.id` value is kept.
const KEPT_PARTITIONS: i32 = 1024;

/// `messaging.destination.partition.id` (a string, per the conventions) of
/// `partition`, without formatting it per message.
pub(crate) fn partition(partition: i32) -> Value {
    static VALUES: OnceLock<Vec<Value>> = OnceLock::new();
    let values = VALUES.get_or_init(|| {
        (0..KEPT_PARTITIONS)
            .map(|p| Value::from(Arc::<str>::from(p.to_string())))
            .collect()
    });
    usize::try_from(partition)
        .ok()
        .and_then(|i| values.get(i))
        .cloned()
        .unwrap_or_else(|| Value::from(partition.to_string()))
}

/// `value` in decimal, without allocating (for the `spanline-sent-at`
/// header).
pub(crate) fn decimal(value: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut v = value;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_built_once_and_right() {
        let a = topic("rag.retrieve");
        let b = topic("rag.retrieve");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.send, "send rag.retrieve");
        assert_eq!(a.process, "process rag.retrieve");
        assert_eq!(a.queue, "spanline.queue rag.retrieve");
        assert_eq!(a.destination.as_str(), "rag.retrieve");
    }

    #[test]
    fn partitions_and_decimals() {
        assert_eq!(partition(0).as_str(), "0");
        assert_eq!(partition(17).as_str(), "17");
        assert_eq!(partition(5000).as_str(), "5000");
        assert_eq!(partition(-1).as_str(), "-1");
        let mut buf = [0u8; 20];
        for v in [0u64, 7, 10, 1_732_000_000_123_456, u64::MAX] {
            assert_eq!(decimal(v, &mut buf), v.to_string().as_bytes());
        }
    }
}

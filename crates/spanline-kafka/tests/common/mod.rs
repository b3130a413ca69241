//! Shared test support: brokers (embedded mock cluster, or a real broker
//! from `SPANLINE_KAFKA_REAL_BROKER`), topics, waiting.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use spanline_kafka::rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use spanline_kafka::rdkafka::client::DefaultClientContext;
use spanline_kafka::{EmbeddedBroker, KafkaConfig};

/// The environment variable naming a real Kafka-protocol broker.
pub const REAL_BROKER_ENV: &str = "SPANLINE_KAFKA_REAL_BROKER";

/// A broker to test against.
pub struct Broker {
    pub config: KafkaConfig,
    pub embedded: Option<Arc<EmbeddedBroker>>,
    pub name: &'static str,
    pub real_addr: Option<String>,
}

impl Broker {
    /// A fresh embedded mock cluster.
    pub fn mock() -> Broker {
        let embedded = Arc::new(EmbeddedBroker::start(1).expect("mock cluster"));
        Broker {
            config: KafkaConfig::new().without_env().embedded(embedded.clone()),
            embedded: Some(embedded),
            name: "mock",
            real_addr: None,
        }
    }

    /// The real broker, when `SPANLINE_KAFKA_REAL_BROKER` is set; prints
    /// that the test skips otherwise.
    pub fn real(test: &str) -> Option<Broker> {
        match std::env::var(REAL_BROKER_ENV) {
            Ok(addr) if !addr.trim().is_empty() => Some(Broker {
                config: KafkaConfig::new()
                    .without_env()
                    .bootstrap_servers(addr.clone()),
                embedded: None,
                name: "real",
                real_addr: Some(addr),
            }),
            _ => {
                // Straight to stderr: libtest captures `println!` of passing
                // tests, and a skip must be visible.
                use std::io::Write as _;
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED {test} against a real broker: {REAL_BROKER_ENV} is not set \
                     (the embedded-broker variant still runs)"
                );
                None
            }
        }
    }

    /// The bootstrap servers.
    pub fn bootstrap(&self) -> String {
        match (&self.embedded, &self.real_addr) {
            (Some(e), _) => e.bootstrap_servers().to_owned(),
            (None, Some(a)) => a.clone(),
            (None, None) => unreachable!("a broker is mock or real"),
        }
    }

    /// The config with extra properties.
    pub fn config(&self) -> KafkaConfig {
        self.config.clone()
    }

    /// Create `topic` with `partitions` partitions.
    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        if let Some(e) = &self.embedded {
            e.create_topic(topic, partitions).expect("create topic");
            return;
        }
        let addr = self.real_addr.clone().expect("a real broker");
        let admin: AdminClient<DefaultClientContext> = spanline_kafka::rdkafka::ClientConfig::new()
            .set("bootstrap.servers", addr)
            .create()
            .expect("admin client");
        let topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let res = admin
            .create_topics([&topic], &AdminOptions::new())
            .await
            .expect("create topics");
        for r in res {
            if let Err((name, code)) = r {
                panic!("create topic {name}: {code}");
            }
        }
    }
}

/// A topic name unique in this process run.
pub fn topic(base: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{base}-{}-{n}", std::process::id())
}

/// Poll `cond` until it holds or `timeout` passes.
pub async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

//! The embedded broker: librdkafka's mock cluster, in-process.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use crate::KafkaError;

/// The mock cluster type the embedded broker runs.
pub type Cluster = MockCluster<'static, DefaultProducerContext>;

type Job = Box<dyn FnOnce(&Cluster) + Send>;

/// librdkafka's in-process mock cluster, speaking the Kafka protocol on a
/// loopback port, for examples and tests that need no external broker.
///
/// The mock cluster is not `Send`; it lives on a thread of its own and this
/// handle talks to it. Clients created from a [`KafkaConfig`](crate::KafkaConfig)
/// that started it hold an `Arc` to it, so it outlives every client (if it
/// went first, their sends would time out). Topics auto-create with one
/// partition; [`EmbeddedBroker::create_topic`] fixes the partition count.
#[derive(Debug)]
pub struct EmbeddedBroker {
    bootstrap: String,
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl EmbeddedBroker {
    /// Start a cluster of `brokers` brokers (ids `1..=brokers`).
    pub fn start(brokers: i32) -> Result<Self, KafkaError> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<String, String>>();
        let thread = std::thread::Builder::new()
            .name("spanline-kafka-mock".into())
            .spawn(move || {
                let cluster = match MockCluster::new(brokers) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                // Runs until every handle's sender is gone.
                while let Ok(job) = rx.recv() {
                    job(&cluster);
                }
            })
            .map_err(|e| KafkaError::EmbeddedBroker(e.to_string()))?;
        let bootstrap = ready_rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|e| KafkaError::EmbeddedBroker(e.to_string()))?
            .map_err(KafkaError::EmbeddedBroker)?;
        Ok(EmbeddedBroker {
            bootstrap,
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// The `bootstrap.servers` value that reaches it.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// Run `f` against the mock cluster (fault injection: `broker_down`,
    /// `broker_round_trip_time`, `request_errors`, …) and return its result.
    pub fn with_cluster<R, F>(&self, f: F) -> Result<R, KafkaError>
    where
        F: FnOnce(&Cluster) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move |c| {
            let _ = tx.send(f(c));
        });
        self.jobs
            .as_ref()
            .ok_or(KafkaError::Shutdown)?
            .send(job)
            .map_err(|_| KafkaError::Shutdown)?;
        rx.recv().map_err(|_| KafkaError::Shutdown)
    }

    /// Create `topic` with `partitions` partitions (replication factor 1).
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), KafkaError> {
        let topic = topic.to_owned();
        self.with_cluster(move |c| c.create_topic(&topic, partitions, 1))?
            .map_err(|e| KafkaError::EmbeddedBroker(e.to_string()))
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

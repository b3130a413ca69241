//! The workers a pipeline needs, started in this process unless the
//! settings point at running ones.

use std::sync::Arc;
use std::time::Duration;

use spanline::core::Telemetry;
use spanline::kafka::KafkaConfig;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::app::{self, Models, RagError, Settings};
use crate::corpus::Corpus;

/// How long [`Stack::stop`] waits for each in-process worker (the rerank
/// worker drains for at most 10 s of it).
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Kafka, the rerank worker's address, and the in-process workers (stopped
/// by [`Stack::stop`]).
pub struct Stack {
    /// The Kafka configuration (embedded broker or real servers).
    pub kafka: KafkaConfig,
    /// Where the rerank worker listens.
    pub rerank_uri: String,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<Result<(), String>>>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("rerank_uri", &self.rerank_uri)
            .field("workers", &self.tasks.len())
            .finish()
    }
}

impl Stack {
    /// Connect to Kafka (or start the embedded broker) and start the
    /// workers `settings` does not name: a retrieval worker consuming the
    /// request topic, and a gRPC rerank worker on a loopback port.
    pub async fn start(
        settings: &Settings,
        telemetry: &Telemetry,
        models: &Models,
        corpus: &Arc<Corpus>,
    ) -> Result<Stack, RagError> {
        let kafka = app::kafka(settings).await?;
        let mut stack = Stack {
            kafka,
            rerank_uri: String::new(),
            stops: Vec::new(),
            tasks: Vec::new(),
        };
        if !settings.external_retrieval {
            let worker = app::retrieval_worker(
                &stack.kafka,
                telemetry,
                &models.embedder,
                corpus,
                settings.top_k,
                app::local_assignment(),
            )
            .await?;
            let (stop, stopped) = oneshot::channel::<()>();
            stack.stops.push(stop);
            stack.tasks.push(tokio::spawn(async move {
                worker
                    .run(async {
                        let _ = stopped.await;
                    })
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }));
        }
        stack.rerank_uri = match &settings.rerank_worker {
            Some(uri) => uri.clone(),
            None => {
                let worker = app::rerank_worker(
                    telemetry,
                    &models.embedder,
                    settings.reranker,
                    settings.keep,
                );
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .map_err(|e| RagError::Other(format!("rerank worker: {e}")))?;
                let addr = listener
                    .local_addr()
                    .map_err(|e| RagError::Other(format!("rerank worker: {e}")))?;
                let (stop, stopped) = oneshot::channel::<()>();
                stack.stops.push(stop);
                stack.tasks.push(tokio::spawn(async move {
                    worker
                        .serve(listener, async {
                            let _ = stopped.await;
                        })
                        .await
                        .map_err(|e| e.to_string())
                }));
                format!("http://{addr}")
            }
        };
        Ok(stack)
    }

    /// Stop the in-process workers (draining what they hold).
    /// A worker that has not stopped within 30 s is aborted
    /// and reported as an error, never waited on for ever.
    pub async fn stop(self) -> Result<(), RagError> {
        for stop in self.stops {
            let _ = stop.send(());
        }
        for mut task in self.tasks {
            match tokio::time::timeout(STOP_TIMEOUT, &mut task).await {
                Ok(joined) => joined
                    .map_err(|e| RagError::Other(format!("worker task: {e}")))?
                    .map_err(RagError::Other)?,
                Err(_) => {
                    task.abort();
                    return Err(RagError::Other(format!(
                        "a worker did not stop within {} s",
                        STOP_TIMEOUT.as_secs()
                    )));
                }
            }
        }
        Ok(())
    }
}

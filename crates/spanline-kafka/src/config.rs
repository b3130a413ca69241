//! Client configuration: bootstrap servers, librdkafka properties, and the
//! embedded broker when nothing is configured.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rdkafka::ClientConfig;

use crate::{EmbeddedBroker, KafkaError};

/// The environment variable read for bootstrap servers when the
/// configuration sets none.
pub const BOOTSTRAP_ENV: &str = "KAFKA_BOOTSTRAP_SERVERS";

/// Where the brokers are and how to talk to them.
///
/// Every librdkafka property passes through [`KafkaConfig::set`] unchanged
/// (`security.protocol`, `sasl.*`, `ssl.*`, `linger.ms`, …). Bootstrap
/// servers come from [`KafkaConfig::bootstrap_servers`], else the
/// `bootstrap.servers` property, else `KAFKA_BOOTSTRAP_SERVERS`; when none
/// is set, the first client built from this configuration starts an
/// [`EmbeddedBroker`] and every client built from it (or a clone) shares it.
#[derive(Clone, Debug, Default)]
pub struct KafkaConfig {
    bootstrap: Option<String>,
    properties: BTreeMap<String, String>,
    use_env: bool,
    embedded: Arc<Mutex<Option<Arc<EmbeddedBroker>>>>,
}

/// A resolved client configuration and the embedded broker it needs alive.
pub(crate) struct Resolved {
    pub(crate) config: ClientConfig,
    pub(crate) bootstrap: String,
    pub(crate) broker: Option<Arc<EmbeddedBroker>>,
}

impl KafkaConfig {
    /// Bootstrap servers from `KAFKA_BOOTSTRAP_SERVERS`, else the embedded
    /// broker.
    pub fn new() -> Self {
        KafkaConfig {
            use_env: true,
            ..Default::default()
        }
    }

    /// Ignore `KAFKA_BOOTSTRAP_SERVERS`: use only what is set here, else
    /// the embedded broker.
    pub fn without_env(mut self) -> Self {
        self.use_env = false;
        self
    }

    /// Reach the brokers at `servers` (`host:port,host:port`).
    pub fn bootstrap_servers(mut self, servers: impl Into<String>) -> Self {
        self.bootstrap = Some(servers.into());
        self
    }

    /// Use `broker` (shared: clients keep it alive).
    pub fn embedded(self, broker: Arc<EmbeddedBroker>) -> Self {
        let bootstrap = broker.bootstrap_servers().to_owned();
        if let Ok(mut slot) = self.embedded.lock() {
            *slot = Some(broker);
        }
        self.bootstrap_servers(bootstrap)
    }

    /// Set any librdkafka property.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// A property set on this configuration.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.properties.get(key).map(String::as_str)
    }

    /// The embedded broker, when this configuration started (or was given)
    /// one.
    pub fn embedded_broker(&self) -> Option<Arc<EmbeddedBroker>> {
        self.embedded.lock().ok().and_then(|b| b.clone())
    }

    /// Resolve the bootstrap servers (starting the embedded broker if
    /// needed) and build the librdkafka configuration with `extra`
    /// properties under the user's (the user's win).
    pub(crate) fn resolve(&self, extra: &[(&str, &str)]) -> Result<Resolved, KafkaError> {
        let configured = self
            .bootstrap
            .clone()
            .or_else(|| self.properties.get("bootstrap.servers").cloned())
            .or_else(|| {
                self.use_env
                    .then(|| std::env::var(BOOTSTRAP_ENV).ok())
                    .flatten()
                    .filter(|s| !s.trim().is_empty())
            });
        let (bootstrap, broker) = match configured {
            Some(servers) => (servers, self.embedded_broker()),
            None => {
                let mut slot = self
                    .embedded
                    .lock()
                    .map_err(|_| KafkaError::EmbeddedBroker("lock poisoned".into()))?;
                let broker = match &*slot {
                    Some(b) => b.clone(),
                    None => {
                        let b = Arc::new(EmbeddedBroker::start(1)?);
                        *slot = Some(b.clone());
                        b
                    }
                };
                (broker.bootstrap_servers().to_owned(), Some(broker))
            }
        };
        let mut config = ClientConfig::new();
        for (k, v) in extra {
            config.set(*k, *v);
        }
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        config.set("bootstrap.servers", &bootstrap);
        Ok(Resolved {
            config,
            bootstrap,
            broker,
        })
    }
}

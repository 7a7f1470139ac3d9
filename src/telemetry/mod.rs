//! Telemetry: logging, Prometheus metrics and the health endpoint.

use crate::base::issue::Issue;
pub(crate) mod http;
mod logging;
pub(crate) mod metrics;

pub use logging::init_logging;

use serde::Deserialize;

/// `[telemetry]` section.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Address for `/healthz` and `/metrics`, e.g. `127.0.0.1:9108`; off when unset.
    #[serde(default)]
    pub listen: Option<String>,
}

impl TelemetryConfig {
    /// Problems, keyed within `[telemetry]`.
    pub fn validate(&self) -> Vec<Issue> {
        match &self.listen {
            Some(addr) if addr.parse::<std::net::SocketAddr>().is_err() => vec![Issue::new(
                "listen",
                format!("{addr:?} is not an address and port, e.g. \"127.0.0.1:9108\""),
            )],
            _ => Vec::new(),
        }
    }
}

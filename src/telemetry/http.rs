//! `/healthz` and `/metrics` over HTTP, on their own thread.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::metrics::{resident_bytes, Metrics};
use crate::base::heartbeats::Heartbeats;
use crate::sink::mqtt::MqttSink;

/// What the endpoint reads from the running daemon.
pub struct Probe {
    /// Metrics to export.
    pub metrics: Arc<Metrics>,
    /// Stage liveness.
    pub heartbeats: Arc<Heartbeats>,
    /// Outbox depth and broker state.
    pub sink: Arc<MqttSink>,
}

impl Probe {
    /// `(200, "ok")` while every stage is alive and the outbox can write,
    /// else `(503, what is wrong)`.
    pub fn health(&self) -> (u16, String) {
        let mut problems: Vec<String> = self
            .heartbeats
            .stalled()
            .iter()
            .map(|(n, d)| format!("{n} silent for {} s", d.as_secs()))
            .collect();
        if let Some(t) = self.sink.write_trouble() {
            problems.push(format!(
                "outbox cannot write for {} s ({}); frames wait, files stay in their inbox, writing is retried",
                t.since.elapsed().as_secs(),
                t.reason
            ));
        }
        if problems.is_empty() {
            (200, "ok\n".into())
        } else {
            (503, format!("unhealthy: {}\n", problems.join("; ")))
        }
    }

    /// Refreshes the gauges read at scrape time and encodes everything:
    /// OpenMetrics when `openmetrics`, else the Prometheus text format.
    pub fn scrape(&self, openmetrics: bool) -> String {
        let m = &self.metrics;
        let (depth, bytes) = self.sink.depth();
        m.outbox_messages.set(depth as i64);
        m.outbox_bytes.set(bytes as i64);
        m.outbox_write_failing
            .set(self.sink.write_trouble().is_some() as i64);
        m.outbox_damaged.set(self.sink.damaged() as i64);
        let wear = self.sink.outbox_wear();
        super::metrics::set_counter(&m.outbox_written, wear.bytes);
        super::metrics::set_counter(&m.outbox_syncs, wear.syncs);
        let stats = self.sink.stats();
        m.mqtt_connected
            .set(stats.connected.load(Ordering::Relaxed) as i64);
        super::metrics::set_counter(&m.mqtt_acked, stats.acked.load(Ordering::Relaxed));
        m.resident_bytes.set(resident_bytes());
        m.stalled_stages.set(self.heartbeats.stalled().len() as i64);
        if openmetrics {
            m.encode()
        } else {
            m.encode_prometheus()
        }
    }
}

fn wants_openmetrics(req: &tiny_http::Request) -> bool {
    req.headers().iter().any(|h| {
        h.field.equiv("Accept") && h.value.as_str().contains("application/openmetrics-text")
    })
}

/// Why the health and metrics endpoint did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address cannot be bound (taken, or not this machine's).
    #[error("telemetry.listen: cannot listen on {listen} ({reason}); pick a free port")]
    Listen {
        /// `telemetry.listen`.
        listen: String,
        /// What the system said.
        reason: String,
    },
    /// No thread could be started for it.
    #[error("cannot start the telemetry thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Serves until `stop` is set. Binding failures are returned at once, so a
/// taken port is a start-up error, not a silent gap in monitoring.
pub fn serve(
    listen: &str,
    probe: Probe,
    stop: crate::base::shutdown::Shutdown,
) -> Result<JoinHandle<()>, ServeError> {
    let server = tiny_http::Server::http(listen).map_err(|e| ServeError::Listen {
        listen: listen.to_string(),
        reason: e.to_string(),
    })?;
    tracing::info!("health and metrics on http://{listen}/healthz and /metrics");
    std::thread::Builder::new()
        .name("telemetry".into())
        .spawn(move || {
            while !stop.is_stopping() {
                let Ok(Some(req)) = server.recv_timeout(Duration::from_millis(200)) else {
                    continue;
                };
                let (code, body, kind) = match req.url() {
                    "/healthz" => {
                        let (code, body) = probe.health();
                        (code, body, "text/plain; charset=utf-8")
                    }
                    // Content negotiation, as Prometheus does it: its
                    // scrapes ask for OpenMetrics first; curl, promtool and
                    // older scrapers get the 0.0.4 text format.
                    "/metrics" if wants_openmetrics(&req) => (
                        200,
                        probe.scrape(true),
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                    "/metrics" => (
                        200,
                        probe.scrape(false),
                        "text/plain; version=0.0.4; charset=utf-8",
                    ),
                    _ => (
                        404,
                        "not found: try /healthz or /metrics\n".into(),
                        "text/plain; charset=utf-8",
                    ),
                };
                let header =
                    tiny_http::Header::from_bytes("Content-Type", kind).expect("static header");
                let _ = req.respond(
                    tiny_http::Response::from_string(body)
                        .with_status_code(code)
                        .with_header(header),
                );
            }
        })
        .map_err(ServeError::Thread)
}

//! MQTT publisher: drives the rumqttc event loop on its own thread, reconnects
//! with back-off, keeps a retained `online`/`offline` status with a last will.
//!
//! `config` holds the `[mqtt]` keys, `handle` the [`MqttSink`] the workers
//! publish to, `session` the thread that talks to the broker.

mod config;
mod handle;
mod session;

pub use config::{redacted, BrokerAddr, MqttConfig};
pub use handle::{MqttSink, SinkError, SinkStartError};
pub use session::SinkStats;

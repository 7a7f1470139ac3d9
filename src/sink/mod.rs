//! Sinks: the message schema and the MQTT publisher.

pub(crate) mod homeassistant;
pub(crate) mod mqtt;
pub(crate) mod outbox;
pub(crate) mod payload;
pub(crate) mod tls;

pub use mqtt::{BrokerAddr, MqttConfig, MqttSink, SinkError, SinkStartError, SinkStats};
pub use outbox::Outbox;
pub use payload::Message;

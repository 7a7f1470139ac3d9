//! Sinks: the message schema and the MQTT publisher.

pub mod homeassistant;
pub mod mqtt;
pub mod outbox;
pub mod payload;
pub mod tls;

//! Home Assistant MQTT discovery (`[mqtt] homeassistant = true`): per
//! stream source, a binary sensor "objects present" and a sensor with the
//! object count, both reading the retained `…/{source}/objects` state and
//! tied to the device's retained `status` (availability), so the entities
//! show as unavailable while edgewatch is down.

use serde_json::json;

use crate::base::topic::{discovery_topic, source_topic, status_topic, Leaf};

/// A discovery id: Home Assistant allows `[a-zA-Z0-9_-]` in node and object ids.
fn ident(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The retained `(topic, payload)` config messages for `sources`.
pub fn discovery(
    ha_prefix: &str,
    topic_prefix: &str,
    device: &str,
    sources: &[String],
) -> Vec<(String, String)> {
    let node = format!("edgewatch_{}", ident(device));
    let availability = status_topic(topic_prefix, device);
    let dev = json!({
        "identifiers": [node],
        "name": format!("edgewatch {device}"),
        "manufacturer": "edgewatch",
        "model": "edgewatch inference daemon",
        "sw_version": env!("CARGO_PKG_VERSION"),
    });
    let mut out = Vec::new();
    for source in sources {
        let state = source_topic(topic_prefix, device, source, &Leaf::Objects);
        let id = ident(source);
        let common = |name: String, unique: String| {
            json!({
                "name": name,
                "unique_id": unique,
                "object_id": unique,
                "state_topic": state,
                "availability_topic": availability,
                "payload_available": "online",
                "payload_not_available": "offline",
                "device": dev,
            })
        };
        let mut present = common(
            format!("{source} objects present"),
            format!("{node}_{id}_present"),
        );
        present["value_template"] = json!("{{ 'ON' if value_json.count > 0 else 'OFF' }}");
        present["payload_on"] = json!("ON");
        present["payload_off"] = json!("OFF");
        present["device_class"] = json!("occupancy");
        out.push((
            discovery_topic(ha_prefix, "binary_sensor", &node, &format!("{id}_present")),
            present.to_string(),
        ));
        let mut count = common(
            format!("{source} object count"),
            format!("{node}_{id}_count"),
        );
        count["value_template"] = json!("{{ value_json.count }}");
        count["state_class"] = json!("measurement");
        count["unit_of_measurement"] = json!("objects");
        out.push((
            discovery_topic(ha_prefix, "sensor", &node, &format!("{id}_count")),
            count.to_string(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_gets_a_presence_and_a_count_entity_tied_to_the_status() {
        let msgs = discovery("homeassistant", "edgewatch", "nano 01", &["cam0".into()]);
        let topics: Vec<&str> = msgs.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            topics,
            [
                "homeassistant/binary_sensor/edgewatch_nano_01/cam0_present/config",
                "homeassistant/sensor/edgewatch_nano_01/cam0_count/config"
            ]
        );
        let v: serde_json::Value = serde_json::from_str(&msgs[0].1).unwrap();
        assert_eq!(v["state_topic"], "edgewatch/nano 01/cam0/objects");
        assert_eq!(v["availability_topic"], "edgewatch/nano 01/status");
        assert_eq!(v["unique_id"], "edgewatch_nano_01_cam0_present");
        assert_eq!(v["device"]["identifiers"][0], "edgewatch_nano_01");
    }
}

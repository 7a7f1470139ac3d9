//! MQTT topic segments (the device and source names): a leaf, used by the
//! configuration, the sources and the sink alike.

/// Topic segments must not contain MQTT wildcards or separators.
pub fn check_segment(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if let Some(c) = value
        .chars()
        .find(|c| matches!(c, '/' | '+' | '#') || c.is_control())
    {
        return Err(format!(
            "{value:?} contains {c:?}, which cannot appear in an MQTT topic segment; use letters, digits, '-' or '_'"
        ));
    }
    Ok(())
}

//! `[mqtt]`: the keys, their defaults and checks, the broker URL.

use crate::base::issue::Issue;
use std::path::PathBuf;

use rumqttc::QoS;
use serde::Deserialize;

/// `[mqtt]` section.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Broker URL, `mqtt://host:port`.
    #[serde(default = "d_url")]
    pub url: String,
    /// First topic segment.
    #[serde(default = "d_prefix")]
    pub topic_prefix: String,
    /// 0 or 1.
    #[serde(default = "d_qos")]
    pub qos: u8,
    /// Keep-alive interval in seconds.
    #[serde(default = "d_keep_alive")]
    pub keep_alive_s: u64,
    /// User name, when the broker wants one.
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the password (first line); must not be world-readable.
    /// `EDGEWATCH_MQTT_PASSWORD` is used when this is not set.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// CA certificate(s) (PEM) that sign the broker's certificate, for
    /// `mqtts://`; the system's CA store when not set.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), when the broker asks for one.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// Client private key (PEM); must not be world-readable.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Durable outbox directory.
    #[serde(default = "d_outbox")]
    pub outbox: PathBuf,
    /// Most the outbox holds, in MiB (fractions allowed); beyond it folders wait.
    #[serde(default = "d_outbox_max_mb")]
    pub outbox_max_mb: f64,
    /// Announce each stream source to Home Assistant (MQTT discovery): an
    /// "objects present" binary sensor and an object count.
    #[serde(default)]
    pub homeassistant: bool,
    /// Home Assistant's discovery prefix.
    #[serde(default = "d_ha_prefix")]
    pub homeassistant_prefix: String,
}

fn d_ha_prefix() -> String {
    "homeassistant".into()
}

fn d_outbox() -> PathBuf {
    "/var/lib/edgewatch/outbox".into()
}
fn d_outbox_max_mb() -> f64 {
    512.0
}

fn d_url() -> String {
    "mqtt://127.0.0.1:1883".into()
}
fn d_prefix() -> String {
    "edgewatch".into()
}
fn d_qos() -> u8 {
    1
}
fn d_keep_alive() -> u64 {
    30
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            url: d_url(),
            topic_prefix: d_prefix(),
            qos: d_qos(),
            keep_alive_s: d_keep_alive(),
            username: None,
            password_file: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
            homeassistant: false,
            homeassistant_prefix: d_ha_prefix(),
            outbox: d_outbox(),
            outbox_max_mb: d_outbox_max_mb(),
        }
    }
}

/// A broker address parsed from `mqtt://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    /// Host name or IP.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// `mqtts://`: TLS.
    pub tls: bool,
}

impl MqttConfig {
    /// The files TLS needs.
    pub fn tls_files(&self) -> crate::sink::tls::TlsFiles<'_> {
        crate::sink::tls::TlsFiles {
            ca_file: self.ca_file.as_deref(),
            client_cert: self.client_cert.as_deref(),
            client_key: self.client_key.as_deref(),
        }
    }

    /// Problems, keyed within `[mqtt]`.
    pub fn validate(&self) -> Vec<Issue> {
        let mut out = Vec::new();
        if let Err(e) = self.broker() {
            out.push(Issue::new("url", e.to_string()));
        }
        if self.topic_prefix.is_empty()
            || self.topic_prefix.contains(['+', '#'])
            || self.topic_prefix.ends_with('/')
        {
            out.push(Issue::new(
                "topic_prefix",
                format!(
                    "{:?} must be non-empty, without '+' or '#', and not end in '/'",
                    self.topic_prefix
                ),
            ));
        }
        if let Err(why) =
            crate::base::topic::check_segment(&self.homeassistant_prefix).map_err(|e| e.to_string())
        {
            out.push(Issue::new("homeassistant_prefix", why));
        }
        if self.qos > 1 {
            out.push(Issue::new(
                "qos",
                format!("{} is not supported; use 0 or 1", self.qos),
            ));
        }
        if !(5..=3600).contains(&self.keep_alive_s) {
            out.push(Issue::new(
                "keep_alive_s",
                format!("{} is outside 5..=3600 seconds", self.keep_alive_s),
            ));
        }
        if self.outbox_max_mb.is_nan() || self.outbox_max_mb <= 0.0 {
            out.push(Issue::new(
                "outbox_max_mb",
                format!("{} must be greater than 0", self.outbox_max_mb),
            ));
        }
        if self.password_file.is_some() && self.username.is_none() {
            out.push(Issue::new(
                "username",
                "password_file is set but username is not",
            ));
        }
        if let Err(e) = self.password() {
            out.push(Issue::new("password_file", e.to_string()));
        }
        match self.broker() {
            Ok(b) if b.tls => {
                if let Err(problem) = crate::sink::tls::client_config(&self.tls_files()) {
                    out.push(problem);
                }
            }
            Ok(_) => {
                for (key, set) in [
                    ("ca_file", self.ca_file.is_some()),
                    ("client_cert", self.client_cert.is_some()),
                    ("client_key", self.client_key.is_some()),
                ] {
                    if set {
                        out.push(Issue::new(
                            key,
                            format!(
                                "is set but the url is not TLS; use mqtts://{}",
                                self.url.split("://").nth(1).unwrap_or("")
                            ),
                        ));
                    }
                }
            }
            Err(_) => {}
        }
        out
    }

    /// The password from `password_file` or `EDGEWATCH_MQTT_PASSWORD`.
    /// A file others can read is refused: it would leak the credential.
    pub fn password(&self) -> Result<Option<String>, crate::base::secrets::SecretError> {
        let Some(path) = &self.password_file else {
            return Ok(std::env::var("EDGEWATCH_MQTT_PASSWORD").ok());
        };
        crate::base::secrets::read_secret(path).map(Some)
    }

    /// Host and port from `url`.
    pub fn broker(&self) -> Result<BrokerAddr, UrlError> {
        // Error messages show the URL without whatever sits before an '@'.
        let shown = redacted(&self.url);
        let url = url::Url::parse(&self.url).map_err(|e| UrlError::NotAUrl {
            shown: shown.clone(),
            reason: e.to_string(),
        })?;
        match url.scheme() {
            "mqtt" | "tcp" => {}
            "mqtts" | "ssl" => {}
            other => {
                return Err(UrlError::Scheme {
                    shown,
                    scheme: other.to_string(),
                })
            }
        }
        if url.password().is_some() || !url.username().is_empty() {
            return Err(UrlError::Credentials { shown });
        }
        let tls = matches!(url.scheme(), "mqtts" | "ssl");
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| UrlError::NoHost {
                shown: shown.clone(),
            })?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Ok(BrokerAddr {
            host,
            port: url.port().unwrap_or(if tls { 8883 } else { 1883 }),
            tls,
        })
    }

    pub(super) fn qos_level(&self) -> QoS {
        if self.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        }
    }
}

/// A broker `url` that cannot be used. It is shown redacted: whatever sits
/// before an '@' never reaches a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not a URL at all.
    #[error("{shown:?} is not a URL ({reason}); expected mqtt://host:1883")]
    NotAUrl {
        /// The URL, redacted.
        shown: String,
        /// What the parser said.
        reason: String,
    },
    /// Not an MQTT scheme.
    #[error("{shown:?}: scheme {scheme:?} is not MQTT; use mqtt://host:1883")]
    Scheme {
        /// The URL, redacted.
        shown: String,
        /// The scheme given.
        scheme: String,
    },
    /// A user or password in the URL.
    #[error("{shown:?} holds credentials, which would be logged; put the user in `username` and the password in `password_file`")]
    Credentials {
        /// The URL, redacted.
        shown: String,
    },
    /// No host.
    #[error("{shown:?} has no host; expected mqtt://host:1883")]
    NoHost {
        /// The URL, redacted.
        shown: String,
    },
}

/// `url` with anything between `//` and the last `@` of its authority
/// shown as `***`: what a log line or error may carry of a URL.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_the_url_are_refused_and_never_echoed() {
        for url in [
            "mqtt://user:s3cret@127.0.0.1:1883",
            "mqtt://s3cret@127.0.0.1",
            "mqtts://u:s3cret@broker:8883/x",
            "mqtt://u:s3 cret@broker",
        ] {
            let e = cfg(url).broker().unwrap_err().to_string();
            assert!(!e.contains("s3"), "{e}");
            assert!(e.contains("***@"), "{e}");
            assert!(!cfg(url).validate().iter().any(|i| i.reason.contains("s3")));
        }
        assert_eq!(redacted("mqtt://a:b@h:1/p@q"), "mqtt://***@h:1/p@q");
        assert_eq!(redacted("mqtt://h:1"), "mqtt://h:1");
    }

    fn cfg(url: &str) -> MqttConfig {
        MqttConfig {
            url: url.into(),
            ..MqttConfig::default()
        }
    }

    #[test]
    fn broker_urls_parse_with_default_port() {
        assert_eq!(
            cfg("mqtt://10.0.0.5").broker().unwrap(),
            BrokerAddr {
                host: "10.0.0.5".into(),
                port: 1883,
                tls: false
            }
        );
        assert_eq!(cfg("tcp://broker.local:1999").broker().unwrap().port, 1999);
        assert_eq!(cfg("mqtt://[::1]:1884").broker().unwrap().host, "::1");
    }

    #[test]
    fn bad_urls_say_what_to_write() {
        assert!(cfg("mqtts://b.local").broker().unwrap().tls);
        assert_eq!(cfg("mqtts://b.local").broker().unwrap().port, 8883);
        for url in ["http://x", "not a url", "mqtt://"] {
            let err = cfg(url).broker().unwrap_err().to_string();
            assert!(err.contains("mqtt://"), "{url}: {err}");
        }
    }

    #[test]
    fn password_files_must_not_be_world_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pass");
        std::fs::write(&p, "s3cret\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = MqttConfig {
            username: Some("u".into()),
            password_file: Some(p.clone()),
            ..MqttConfig::default()
        };
        let err = c.password().unwrap_err().to_string();
        assert!(
            err.contains("chmod o-r") && !err.contains("s3cret"),
            "{err}"
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(c.password().unwrap().as_deref(), Some("s3cret"));
    }

    #[test]
    fn tls_settings_are_checked_against_the_url_and_each_other() {
        let keys = |c: MqttConfig| c.validate().into_iter().map(|i| i.key).collect::<Vec<_>>();
        let plain_with_ca = MqttConfig {
            ca_file: Some("/x/ca.pem".into()),
            ..cfg("mqtt://b:1883")
        };
        assert_eq!(keys(plain_with_ca), vec!["ca_file"]);
        let missing_ca = MqttConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..cfg("mqtts://b")
        };
        let problems = missing_ca.validate();
        assert_eq!(problems[0].key, "ca_file");
        assert!(
            problems[0].reason.contains("/nonexistent/ca.pem"),
            "{problems:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("ca.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let not_pem = MqttConfig {
            ca_file: Some(junk.clone()),
            ..cfg("mqtts://b")
        };
        assert_eq!(keys(not_pem), vec!["ca_file"]);
    }

    #[test]
    fn validate_names_keys() {
        let c = MqttConfig {
            topic_prefix: "a/#".into(),
            qos: 2,
            keep_alive_s: 1,
            ..cfg("http://x")
        };
        let keys: Vec<_> = c.validate().into_iter().map(|i| i.key).collect();
        assert_eq!(keys, vec!["url", "topic_prefix", "qos", "keep_alive_s"]);
    }
}

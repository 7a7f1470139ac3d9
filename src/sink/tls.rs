//! TLS client settings for the MQTT connection (rustls on ring).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

/// A failed TLS setting: its key within `[mqtt]` and why.
pub type TlsProblem = crate::base::issue::Issue;
use crate::base::issue::Issue;

fn certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsProblem> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| Issue::new(key, format!("cannot read {} ({e})", path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            Issue::new(
                key,
                format!("{} is not a PEM certificate file ({e})", path.display()),
            )
        })?;
    if certs.is_empty() {
        return Err(Issue::new(
            key,
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    Ok(certs)
}

/// The files a TLS connection uses, as `[mqtt]` names them.
#[derive(Debug, Clone, Copy, Default)]
pub struct TlsFiles<'a> {
    /// `ca_file`: the CA to trust (the system's when unset).
    pub ca_file: Option<&'a Path>,
    /// `client_cert`: the certificate to present.
    pub client_cert: Option<&'a Path>,
    /// `client_key`: its private key.
    pub client_key: Option<&'a Path>,
}

/// The rustls configuration for `cfg`: trust `ca_file` (or the system's CA
/// certificates when it is not set) and present `client_cert`/`client_key`
/// when both are set.
pub fn client_config(cfg: &TlsFiles<'_>) -> Result<Arc<ClientConfig>, TlsProblem> {
    let mut roots = RootCertStore::empty();
    match cfg.ca_file {
        Some(ca) => {
            for cert in certs("ca_file", ca)? {
                roots
                    .add(cert)
                    .map_err(|e| Issue::new("ca_file", format!("{}: {e}", ca.display())))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(Issue::new(
                    "ca_file",
                    "no system CA certificates found; set mqtt.ca_file to the broker's CA",
                ));
            }
        }
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| Issue::new("url", format!("TLS setup failed: {e}")))?
            .with_root_certificates(roots);
    let config = match (cfg.client_cert, cfg.client_key) {
        (Some(cert), Some(key)) => {
            crate::base::secrets::refuse_world_readable(key)
                .map_err(|e| Issue::new("client_key", e.to_string()))?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                Issue::new(
                    "client_key",
                    format!("{} is not a PEM private key ({e})", key.display()),
                )
            })?;
            builder
                .with_client_auth_cert(certs("client_cert", cert)?, key_der)
                .map_err(|e| {
                    Issue::new(
                        "client_cert",
                        format!("certificate and key do not go together: {e}"),
                    )
                })?
        }
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) => {
            return Err(Issue::new(
                "client_key",
                "client_cert is set but client_key is not",
            ))
        }
        (None, Some(_)) => {
            return Err(Issue::new(
                "client_cert",
                "client_key is set but client_cert is not",
            ))
        }
    };
    Ok(Arc::new(config))
}

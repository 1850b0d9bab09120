//! TLS to upstreams, with rustls on the `ring` provider.
//!
//! Verification is always on: the system's roots (`rustls-native-certs`),
//! plus a provider's `ca_file`. Trust stores are built when a configuration
//! is loaded (reading files is not for the request path); each worker then
//! builds its own `ClientConfig` from them with its own session cache, so
//! that resumed handshakes need no lock shared between cores.

use std::sync::Arc;

use rustls::client::Resumption;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// Sessions remembered per provider per core for resumption: one per
/// concurrent connection is plenty, as tickets are reused across them.
const SESSIONS_PER_CORE: usize = 256;

/// The trust store for one provider.
pub fn root_store(ca_file: Option<&str>) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("ca_file {path:?}: {e}"))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("ca_file {path:?}: {e}"))?;
        if certs.is_empty() {
            return Err(format!("ca_file {path:?} holds no PEM certificate"));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| format!("ca_file {path:?}: {e}"))?;
        }
    } else if added == 0 {
        return Err("no system CA certificates found (install ca-certificates) and no ca_file given".to_string());
    }
    Ok(Arc::new(roots))
}

/// A client configuration for one core: TLS 1.2 and 1.3, ALPN `http/1.1`,
/// its own resumption cache.
pub fn client_config(roots: &Arc<RootCertStore>) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = Resumption::in_memory_sessions(SESSIONS_PER_CORE);
    Arc::new(config)
}

/// A handshake failure as a sentence that names the TLS error.
pub fn describe(e: &monoio_rustls::TlsError) -> String {
    match e {
        monoio_rustls::TlsError::Rustls(e) => format!("TLS error: {e}"),
        monoio_rustls::TlsError::Io(e) => match e.get_ref() {
            Some(inner) => format!("TLS error: {inner}"),
            None => format!("TLS handshake failed: {e}"),
        },
    }
}

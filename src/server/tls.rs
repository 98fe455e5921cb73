//! TLS for client connections: rustls (through pgwire's re-export), configured from a PEM
//! certificate chain and private key.

use std::path::Path;
use std::sync::Arc;

use pgwire::tokio::TlsAcceptor;
use pgwire::tokio::tokio_rustls::rustls::crypto::ring::default_provider;
use pgwire::tokio::tokio_rustls::rustls::pki_types::pem::PemObject;
use pgwire::tokio::tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use pgwire::tokio::tokio_rustls::rustls::{self, ServerConfig};

use crate::common::{Error, Result, SqlState};

/// ALPN protocol name of Postgres' direct TLS connections (`sslnegotiation=direct`).
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// A TLS acceptor for `cert` (a PEM chain, leaf first) and `key` (PEM, PKCS#8, PKCS#1
/// or SEC1).
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| config_error(format!("cannot read the TLS certificate {}: {e}", cert.display())))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| config_error(format!("invalid TLS certificate {}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(config_error(format!("no certificate in {}", cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| config_error(format!("cannot read the TLS private key {}: {e}", key.display())))?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(format!("TLS setup failed: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e: rustls::Error| config_error(format!("the TLS certificate and key do not fit: {e}")))?;
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn config_error(message: String) -> Error {
    Error::new(SqlState::InvalidParameterValue, message)
}

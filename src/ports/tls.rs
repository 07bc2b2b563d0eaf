//! TLS for `rediss://`: a [`Connector`] that wraps another connector's streams in TLS
//! (rustls). Server certificates are checked against the Mozilla roots (webpki-roots) plus,
//! optionally, the PEM certificates of `AFW_REDIS_CA_FILE`, for private CAs.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector as RustlsConnector;

use crate::ports::{BoxIo, ConnectFuture, Connector};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the CA certificates in {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

pub(crate) struct TlsConnector {
    inner: Arc<dyn Connector>,
    tls: RustlsConnector,
}

impl TlsConnector {
    pub(crate) fn new(inner: Arc<dyn Connector>, ca_file: Option<&Path>) -> Result<Self, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = ca_file {
            let fail = |reason: String| TlsError::CaFile {
                path: path.display().to_string(),
                reason,
            };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| fail(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| fail(e.to_string()))?;
            if certs.is_empty() {
                return Err(fail("no certificate found".into()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| fail(e.to_string()))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            inner,
            tls: RustlsConnector::from(Arc::new(config)),
        })
    }
}

impl Connector for TlsConnector {
    fn connect<'a>(&'a self, host: &'a str, port: u16) -> ConnectFuture<'a> {
        Box::pin(async move {
            let io = self.inner.connect(host, port).await?;
            let name = ServerName::try_from(host.to_owned())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let stream = self.tls.connect(name, io).await?;
            Ok(Box::new(stream) as BoxIo)
        })
    }
}

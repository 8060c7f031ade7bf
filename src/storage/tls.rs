//! TLS for PostgreSQL connections (rustls with the ring provider). Whether a connection uses
//! TLS is the URL's `sslmode` (tokio-postgres accepts `disable`, `prefer`, `require`):
//! - `database.tls_ca_file` set: the server's certificate must chain to that PEM file and name
//!   the host (libpq's `verify-full`);
//! - unset: any certificate is accepted (libpq's `require`: encrypted, not authenticated).
//!
//! Unix-socket connections (the embedded cluster) never use TLS.

use std::{path::Path, sync::Arc};

use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider},
    pki_types::{pem::PemObject, CertificateDer, ServerName, UnixTime},
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// The connector every connection of the daemon uses.
pub type MakeTls = tokio_postgres_rustls::MakeRustlsConnect;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read database.tls_ca_file {path}: {error}")]
    CaFile { path: String, error: String },
    #[error("database.tls_ca_file {0} holds no certificate")]
    EmptyCaFile(String),
    #[error("cannot set up TLS: {0}")]
    Config(#[from] rustls::Error),
}

/// `sslmode=require` without a CA file: the channel is encrypted, the certificate is not
/// checked. Handshake signatures are still verified (the peer holds the certificate's key).
#[derive(Debug)]
struct AcceptAnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The connector for the `[database]` settings.
pub fn connector(settings: &crate::configuration::DatabaseSettings) -> Result<MakeTls, TlsError> {
    let ca = (!settings.tls_ca_file.is_empty()).then(|| Path::new(&settings.tls_ca_file));
    make_tls(ca)
}

/// A connector verifying against `ca_file`, or accepting any certificate without one.
pub fn make_tls(ca_file: Option<&Path>) -> Result<MakeTls, TlsError> {
    // An explicit provider: independent of any process-wide default.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = match ca_file {
        Some(path) => {
            let shown = path.display().to_string();
            let ca_err = |e: &dyn std::fmt::Display| TlsError::CaFile {
                path: shown.clone(),
                error: e.to_string(),
            };
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| ca_err(&e))? {
                let cert = cert.map_err(|e| ca_err(&e))?;
                roots.add(cert).map_err(|e| ca_err(&e))?;
            }
            if roots.is_empty() {
                return Err(TlsError::EmptyCaFile(shown));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert(provider)))
            .with_no_client_auth(),
    };
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// An error with its causes (tokio-postgres's own message omits them, e.g. why a TLS
/// handshake failed).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

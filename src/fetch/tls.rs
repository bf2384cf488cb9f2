//! TLS to origins: the client configuration (Mozilla's roots from `webpki-roots`, plus
//! `--upstream-ca` files; or no verification under `--insecure-upstream`), the handshake
//! under a deadline, and what a failed handshake means as a liveweb error.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use monoio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::Error;

/// A TLS connection to an origin.
pub type TlsStream = monoio_rustls::ClientTlsStream<TcpStream>;

/// Builds the client configuration shared by every worker: HTTP/1.1 by ALPN, session
/// resumption (rustls keeps recent sessions per server name), and verification against the
/// bundled Mozilla roots plus every certificate in `extra_roots` (PEM files); with
/// `insecure`, any certificate is accepted. An unreadable or empty root file is an error
/// naming it.
pub fn client_config(extra_roots: &[impl AsRef<Path>], insecure: bool) -> io::Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?;
    let mut config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for path in extra_roots {
            add_pem_roots(&mut roots, path.as_ref())?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Adds every certificate of a PEM file to `roots`.
fn add_pem_roots(roots: &mut RootCertStore, path: &Path) -> io::Result<()> {
    let shown = path.display();
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| invalid(format!("--upstream-ca {shown}: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("--upstream-ca {shown}: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(format!(
            "--upstream-ca {shown}: no PEM certificate in it"
        )));
    }
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| invalid(format!("--upstream-ca {shown}: {e}")))?;
    }
    Ok(())
}

/// The TLS handshake with an origin on a connected socket, within `wait`. `host` is the
/// URL's host (an IP address is verified as one and not sent as SNI).
pub async fn handshake(
    config: &Arc<ClientConfig>,
    stream: TcpStream,
    host: &str,
    wait: Duration,
) -> Result<TlsStream, Error> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| Error::TlsHandshake(format!("{host:?} is not a valid TLS server name")))?;
    let connector = monoio_rustls::TlsConnector::from(config.clone());
    match monoio::time::timeout(wait, connector.connect(name, stream)).await {
        Err(_) => Err(Error::TlsTimeout),
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(e)) => Err(classify(e)),
    }
}

/// A failed handshake as a liveweb error: the certificate (which check failed), or the
/// handshake itself (alerts, protocol, the origin closing).
fn classify(e: monoio_rustls::TlsError) -> Error {
    match rustls_error(&e) {
        Some(rustls::Error::InvalidCertificate(cert)) => {
            Error::TlsCertificate(crate::cert_words::describe(&cert))
        }
        Some(other) => Error::TlsHandshake(other.to_string()),
        None => Error::TlsHandshake(failure_text(&e)),
    }
}

/// The rustls error under a failed handshake, whether monoio-rustls passed it on as is or
/// wrapped in an I/O error.
pub fn rustls_error(e: &monoio_rustls::TlsError) -> Option<rustls::Error> {
    match e {
        monoio_rustls::TlsError::Rustls(r) => Some(r.clone()),
        monoio_rustls::TlsError::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .cloned(),
    }
}

/// A failed handshake in words.
pub fn failure_text(e: &monoio_rustls::TlsError) -> String {
    match e {
        monoio_rustls::TlsError::Io(io) => io.to_string(),
        monoio_rustls::TlsError::Rustls(r) => r.to_string(),
    }
}

/// `--insecure-upstream`: every certificate is accepted; handshake signatures are still
/// checked (the connection is encrypted to whoever answered, who is not authenticated).
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
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
        rustls::crypto::verify_tls12_signature(
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
        rustls::crypto::verify_tls13_signature(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_file_without_certificates_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = client_config(&[&empty], false).unwrap_err();
        assert!(err.to_string().contains("empty.pem"), "{err}");
        let missing = dir.path().join("missing.pem");
        let err = client_config(&[&missing], false).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
    }

    #[test]
    fn a_root_file_adds_its_certificates() {
        let ca = rcgen::CertificateParams::new(vec!["ca.test".into()]).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = ca.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, cert.pem()).unwrap();
        let config = client_config(&[&path], false).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(client_config(&[] as &[&Path], true).is_ok());
    }

    #[test]
    fn certificate_failures_say_which_check_failed() {
        let e = monoio_rustls::TlsError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::Expired),
        ));
        assert_eq!(
            classify(e),
            Error::TlsCertificate("certificate expired".into())
        );
        let e = monoio_rustls::TlsError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "tls handshake eof",
        ));
        assert!(matches!(classify(e), Error::TlsHandshake(m) if m.contains("eof")));
    }
}

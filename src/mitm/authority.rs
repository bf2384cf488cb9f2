//! The certificate authority that lets liveweb archive HTTPS through CONNECT: `liveweb ca
//! init DIR` makes one, and `Authority` issues a short-lived leaf certificate per host,
//! signed by it and cached.
//!
//! One leaf key (ECDSA P-256) serves every leaf of a process: a leaf is then one signature,
//! and the key never leaves memory.

use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

/// File names `ca init` writes.
pub const CA_CERT_FILE: &str = "liveweb-ca.pem";
pub const CA_KEY_FILE: &str = "liveweb-ca-key.pem";

/// How long an issued leaf is valid, and how far back it starts (client clocks run behind).
const LEAF_DAYS: i64 = 7;
const LEAF_BACKDATE_HOURS: i64 = 1;
/// A cached leaf this close to its end is issued again.
const RENEW_BEFORE_HOURS: i64 = 24;
/// Leaves cached at most; past it the cache starts over (issuing one is cheap).
const MAX_CACHED: usize = 10_000;

/// Writes a new CA (ECDSA P-256, 10 years) into `dir` as `liveweb-ca.pem` and
/// `liveweb-ca-key.pem`, both mode 0600; refuses to replace existing files. Returns their
/// paths.
pub fn init_ca(dir: &Path) -> io::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let cert_path = dir.join(CA_CERT_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    for path in [&cert_path, &key_path] {
        if path.exists() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists; not replacing a CA", path.display()),
            ));
        }
    }
    let key = KeyPair::generate().map_err(io::Error::other)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(io::Error::other)?;
    let now = time::OffsetDateTime::now_utc();
    params.distinguished_name.push(
        DnType::CommonName,
        format!("liveweb MITM CA {}", now.date()),
    );
    params
        .distinguished_name
        .push(DnType::OrganizationName, "liveweb");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - time::Duration::hours(LEAF_BACKDATE_HOURS);
    params.not_after = now + time::Duration::days(3650);
    let cert = params.self_signed(&key).map_err(io::Error::other)?;
    write_private(&key_path, key.serialize_pem().as_bytes())?;
    write_private(&cert_path, cert.pem().as_bytes())?;
    Ok((cert_path, key_path))
}

/// Creates `path` with mode 0600 (never existing before) and writes `data`.
fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(data)?;
    file.sync_all()
}

/// A loaded CA and the leaves issued with it.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    leaf_key: KeyPair,
    leaf_signing: Arc<dyn rustls::sign::SigningKey>,
    leaves: papaya::HashMap<String, Leaf>,
}

#[derive(Clone)]
struct Leaf {
    key: Arc<CertifiedKey>,
    renew_at: time::OffsetDateTime,
}

impl Authority {
    /// Loads the CA certificate and its key (PEM); errors name the file.
    pub fn load(cert: &Path, key: &Path) -> io::Result<Authority> {
        let invalid = |path: &Path, e: &dyn std::fmt::Display| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: {e}", path.display()),
            )
        };
        let cert_pem = std::fs::read_to_string(cert).map_err(|e| invalid(cert, &e))?;
        let key_pem = std::fs::read_to_string(key).map_err(|e| invalid(key, &e))?;
        let ca_key = KeyPair::from_pem(&key_pem).map_err(|e| {
            let hint = if key_pem.contains("CERTIFICATE") {
                "this is a certificate; --mitm-key takes the CA's private key"
            } else {
                "expected the CA's private key in PEM (liveweb ca init writes one)"
            };
            invalid(key, &format!("not a private key: {hint} ({e})"))
        })?;
        use rustls::pki_types::pem::PemObject;
        let ca_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| {
                let hint = if cert_pem.contains("PRIVATE KEY") {
                    "this is a private key; --mitm-ca takes the CA certificate"
                } else {
                    "expected the CA certificate in PEM (liveweb ca init writes one)"
                };
                invalid(cert, &format!("no certificate in it: {hint} ({e})"))
            })?
            .into_owned();
        let issuer = Issuer::from_ca_cert_der(&ca_der, ca_key).map_err(|e| invalid(cert, &e))?;
        let leaf_key = KeyPair::generate().map_err(io::Error::other)?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let leaf_signing =
            rustls::crypto::ring::sign::any_supported_type(&der).map_err(io::Error::other)?;
        let authority = Authority {
            issuer,
            ca_der,
            leaf_key,
            leaf_signing,
            leaves: papaya::HashMap::new(),
        };
        // A key that is not the certificate's would make every client reject every leaf,
        // and the log would blame the clients: refuse it here, naming both files.
        authority.check_issues_valid_leaves().map_err(|e| {
            invalid(
                key,
                &format!(
                    "is not the private key of {}: certificates signed with it do not verify \
                     against that CA certificate ({e}: a key of another CA, or of another \
                     type); give --mitm-key the key made with --mitm-ca",
                    cert.display()
                ),
            )
        })?;
        Ok(authority)
    }

    /// Issues a throwaway leaf and verifies it against the CA certificate alone.
    fn check_issues_valid_leaves(&self) -> Result<(), String> {
        use rustls::client::danger::ServerCertVerifier;
        use rustls::pki_types::{ServerName, UnixTime};
        let leaf = self
            .issue(
                "liveweb-self-check.invalid",
                time::OffsetDateTime::now_utc(),
            )
            .map_err(|e| e.to_string())?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).map_err(|e| e.to_string())?;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .map_err(|e| e.to_string())?;
        let name = ServerName::try_from("liveweb-self-check.invalid").map_err(|e| e.to_string())?;
        verifier
            .verify_server_cert(&leaf.cert[0], &leaf.cert[1..], &name, &[], UnixTime::now())
            .map(drop)
            .map_err(|e| match e {
                rustls::Error::InvalidCertificate(c) => crate::cert_words::describe(&c),
                other => other.to_string(),
            })
    }

    /// The leaf for `host` (a DNS name or an IP address), issued on first use and cached
    /// until a day before it ends.
    pub fn leaf_for(&self, host: &str) -> Result<Arc<CertifiedKey>, rcgen::Error> {
        let host = host.to_ascii_lowercase();
        let now = time::OffsetDateTime::now_utc();
        let leaves = self.leaves.pin();
        if let Some(leaf) = leaves.get(&host) {
            if leaf.renew_at > now {
                return Ok(leaf.key.clone());
            }
        }
        let key = Arc::new(self.issue(&host, now)?);
        if leaves.len() >= MAX_CACHED {
            leaves.clear();
        }
        let renew_at =
            now + time::Duration::days(LEAF_DAYS) - time::Duration::hours(RENEW_BEFORE_HOURS);
        leaves.insert(
            host,
            Leaf {
                key: key.clone(),
                renew_at,
            },
        );
        Ok(key)
    }

    fn issue(&self, host: &str, now: time::OffsetDateTime) -> Result<CertifiedKey, rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names.push(match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.to_string().try_into()?),
        });
        params.distinguished_name.push(DnType::CommonName, host);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = now - time::Duration::hours(LEAF_BACKDATE_HOURS);
        params.not_after = now + time::Duration::days(LEAF_DAYS);
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&self.leaf_key, &self.issuer)?;
        Ok(CertifiedKey::new(
            vec![cert.der().clone(), self.ca_der.clone()],
            self.leaf_signing.clone(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{ServerName, UnixTime};

    fn verify(ca_pem: &Path, leaf: &CertifiedKey, name: &str) -> Result<(), rustls::Error> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(ca_pem).unwrap())
            .unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let name = ServerName::try_from(name.to_string()).unwrap();
        verifier
            .verify_server_cert(&leaf.cert[0], &leaf.cert[1..], &name, &[], UnixTime::now())
            .map(drop)
    }

    #[test]
    fn init_writes_a_private_ca_once() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = init_ca(dir.path()).unwrap();
        for path in [&cert, &key] {
            let mode = std::fs::metadata(path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", path.display());
        }
        assert!(std::fs::read_to_string(&cert)
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----"));
        let again = init_ca(dir.path()).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
    }

    #[test]
    fn leaves_verify_against_the_ca_for_their_host_only_and_are_cached() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = init_ca(dir.path()).unwrap();
        let ca = Authority::load(&cert, &key).unwrap();
        let leaf = ca.leaf_for("Example.COM").unwrap();
        verify(&cert, &leaf, "example.com").unwrap();
        assert!(verify(&cert, &leaf, "other.example").is_err());
        let by_ip = ca.leaf_for("127.0.0.1").unwrap();
        verify(&cert, &by_ip, "127.0.0.1").unwrap();
        assert!(Arc::ptr_eq(&leaf, &ca.leaf_for("example.com").unwrap()));
        assert!(!Arc::ptr_eq(&leaf, &by_ip));
        // Another CA's leaves are not trusted by this one's roots.
        let other_dir = tempfile::tempdir().unwrap();
        let (other_cert, other_key) = init_ca(other_dir.path()).unwrap();
        let other = Authority::load(&other_cert, &other_key).unwrap();
        assert!(verify(
            &cert,
            &other.leaf_for("example.com").unwrap(),
            "example.com"
        )
        .is_err());
    }

    #[test]
    fn a_bad_ca_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = init_ca(dir.path()).unwrap();
        // The key given as the certificate, the certificate as the key: each says so.
        let err = Authority::load(&key, &key).err().unwrap().to_string();
        assert!(err.contains(CA_KEY_FILE), "{err}");
        assert!(
            err.contains("this is a private key; --mitm-ca takes the CA certificate"),
            "{err}"
        );
        let err = Authority::load(&cert, &cert).err().unwrap().to_string();
        assert!(err.contains(CA_CERT_FILE), "{err}");
        assert!(
            err.contains("this is a certificate; --mitm-key takes the CA's private key"),
            "{err}"
        );
        let err = Authority::load(&dir.path().join("missing.pem"), &key)
            .err()
            .unwrap();
        assert!(err.to_string().contains("missing.pem"), "{err}");
        // Another CA's key with this certificate.
        let other = tempfile::tempdir().unwrap();
        let (_, other_key) = init_ca(other.path()).unwrap();
        let err = Authority::load(&cert, &other_key)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("is not the private key of"), "{err}");
        assert!(
            err.contains("(certificate signature invalid: a key of another CA"),
            "{err}"
        );
        // A key of another curve (P-384 for a P-256 certificate): said in words, not in the
        // library's names for it (`cert_words` has the words for the other mismatches).
        let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let p384_path = other.path().join("p384.key");
        std::fs::write(&p384_path, p384.serialize_pem()).unwrap();
        let err = Authority::load(&cert, &p384_path)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("is not the private key of"), "{err}");
        assert!(err.contains("(certificate signature invalid: "), "{err}");
        assert!(!err.contains('{') && !err.contains("BadSignature"), "{err}");
    }
}

//! What a failed certificate check means, in words an operator acts on: for upstream TLS
//! handshakes (`E37`) and for the MITM CA's check of its own key at start.

use rustls::CertificateError as C;
use webpki::Error as W;

/// Which check failed, in words; the library's own name of the failure only for those too
/// rare to have words here.
pub fn describe(e: &C) -> String {
    match e {
        C::Expired | C::ExpiredContext { .. } => "certificate expired".into(),
        C::NotValidYet | C::NotValidYetContext { .. } => "certificate not valid yet".into(),
        C::UnknownIssuer => "certificate signed by an unknown issuer".into(),
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "certificate not valid for this host name".into()
        }
        C::Revoked => "certificate revoked".into(),
        C::BadSignature => "certificate signature invalid".into(),
        C::BadEncoding => "certificate malformed".into(),
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
            "certificate not meant for a TLS server (its extended key usage)".into()
        }
        C::UnhandledCriticalExtension => {
            "certificate has a critical extension this client does not understand".into()
        }
        C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "certificate signed with a key of another type than its issuer's".into()
        }
        C::UnsupportedSignatureAlgorithmContext { .. } => {
            "certificate signed with an unsupported algorithm".into()
        }
        C::UnknownRevocationStatus => "certificate revocation status unknown".into(),
        C::ExpiredRevocationList | C::ExpiredRevocationListContext { .. } => {
            "certificate revocation list expired".into()
        }
        C::InvalidOcspResponse => "certificate status (OCSP) response invalid".into(),
        C::Other(other) => match other.0.downcast_ref::<W>() {
            Some(w) => webpki_words(w),
            None => format!("certificate invalid: {other}"),
        },
        other => format!("certificate invalid: {other:?}"),
    }
}

/// The checks rustls passes on as webpki's own error ("other"); the rest it names itself.
fn webpki_words(e: &W) -> String {
    match e {
        W::CaUsedAsEndEntity => "the server presented a CA certificate as its own".into(),
        W::EndEntityUsedAsCa => "a server certificate signed another certificate".into(),
        W::SignatureAlgorithmMismatch => {
            "certificate malformed: its two signature algorithm fields disagree".into()
        }
        W::UnsupportedCriticalExtension => {
            "certificate has a critical extension this client does not understand".into()
        }
        W::NameConstraintViolation | W::PathLenConstraintViolated => {
            "certificate chain breaks its CA's constraints".into()
        }
        W::MaximumPathDepthExceeded => "certificate chain too long".into(),
        W::MaximumPathBuildCallsExceeded
        | W::MaximumSignatureChecksExceeded
        | W::MaximumNameConstraintComparisonsExceeded => {
            "certificate chain too complex to check".into()
        }
        W::MalformedExtensions | W::ExtensionValueInvalid | W::MalformedDnsIdentifier => {
            "certificate malformed".into()
        }
        W::UnsupportedCertVersion => "certificate of an unsupported version".into(),
        W::CertDistrusted => "certificate distrusted".into(),
        other => format!("certificate invalid: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn checks_read_as_words() {
        assert_eq!(
            describe(&C::UnknownIssuer),
            "certificate signed by an unknown issuer"
        );
        let ca_as_leaf = C::Other(rustls::OtherError(Arc::new(W::CaUsedAsEndEntity)));
        assert_eq!(
            describe(&ca_as_leaf),
            "the server presented a CA certificate as its own"
        );
        let critical = C::Other(rustls::OtherError(Arc::new(
            W::UnsupportedCriticalExtension,
        )));
        assert_eq!(
            describe(&critical),
            "certificate has a critical extension this client does not understand"
        );
        let key_type = C::UnsupportedSignatureAlgorithmForPublicKeyContext {
            signature_algorithm_id: vec![1, 2],
            public_key_algorithm_id: vec![3, 4],
        };
        assert_eq!(
            describe(&key_type),
            "certificate signed with a key of another type than its issuer's"
        );
        for e in [
            C::Expired,
            C::BadSignature,
            C::BadEncoding,
            ca_as_leaf,
            critical,
            key_type,
            C::Other(rustls::OtherError(Arc::new(W::SignatureAlgorithmMismatch))),
        ] {
            let text = describe(&e);
            assert!(!text.contains('{') && !text.contains('('), "{text}");
        }
    }
}

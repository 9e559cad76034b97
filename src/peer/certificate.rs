//! The DTLS certificate every peer of this plugin presents.
//!
//! webrtcbin 1.22 makes an RSA-2048 certificate, and peers that only speak
//! ECDSA cipher suites (browsers acting as DTLS client are fine, but several
//! SFUs answering `a=setup:active` are not) fail with "no shared cipher".
//! So we make one ECDSA P-256 certificate per process and hand it to every
//! `dtlssrtpdec` webrtcbin creates. 1.22 also computes its SDP fingerprint
//! over the whole PEM (private key included), so the fingerprint we announce
//! is computed here, over the certificate's DER, and written into every SDP
//! we send (see `sdp::set_fingerprint`).

use std::sync::LazyLock;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::x509::{X509NameBuilder, X509};

pub struct Certificate {
    /// Certificate and private key, PEM, for `dtlssrtpdec::pem`. Never log it.
    pem: String,
    /// `sha-256 AA:BB:...`, the value of `a=fingerprint:`.
    fingerprint: String,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Certificate {
    pub fn pem(&self) -> &str {
        &self.pem
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    fn generate() -> Result<Self, openssl::error::ErrorStack> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
        let key = PKey::from_ec_key(EcKey::generate(&group)?)?;

        let mut name = X509NameBuilder::new()?;
        name.append_entry_by_text("CN", "gst-whipwhep")?;
        let name = name.build();

        let mut serial = BigNum::new()?;
        serial.rand(64, MsbOption::MAYBE_ZERO, false)?;

        let mut builder = X509::builder()?;
        builder.set_version(2)?;
        let serial = serial.to_asn1_integer()?;
        builder.set_serial_number(&serial)?;
        builder.set_subject_name(&name)?;
        builder.set_issuer_name(&name)?;
        builder.set_pubkey(&key)?;
        // A day of slack on each side: peers check validity against their own clock.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let not_before = Asn1Time::from_unix(now - 86_400)?;
        let not_after = Asn1Time::days_from_now(30)?;
        builder.set_not_before(&not_before)?;
        builder.set_not_after(&not_after)?;
        builder.sign(&key, MessageDigest::sha256())?;
        let cert = builder.build();

        let mut pem = String::from_utf8_lossy(&cert.to_pem()?).into_owned();
        pem.push_str(&String::from_utf8_lossy(&key.private_key_to_pem_pkcs8()?));
        let digest = cert.digest(MessageDigest::sha256())?;
        let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
        Ok(Certificate {
            pem,
            fingerprint: format!("sha-256 {}", hex.join(":")),
        })
    }
}

/// The process-wide certificate, or None if OpenSSL could not make one; then
/// webrtcbin's own RSA certificate is used and its fingerprint left alone.
pub static CERTIFICATE: LazyLock<Option<Certificate>> =
    LazyLock::new(|| Certificate::generate().ok());

/// A `dtlsdec` holding our PEM's agent; see `prepare`.
static AGENT_HOLDER: std::sync::OnceLock<gst::Element> = std::sync::OnceLock::new();

/// Makes the one-off things a process's first session would otherwise wait
/// for: our key, and the RSA-2048 key the first `dtlsdec` of a process
/// always generates, even when a PEM is set afterwards (OpenSSL 3: 0.2 to
/// 0.9 s here). Blocking: `crate::element::prewarm` runs it on a thread of
/// its own. Nothing here touches process-wide state: only an element and a
/// key of our own.
pub fn prepare() {
    LazyLock::force(&CERTIFICATE);
    let start = std::time::Instant::now();
    let dec = gst::ElementFactory::make("dtlsdec").build().ok();
    // dtlsdec shares one agent (OpenSSL context) per PEM through a table
    // that forgets it, by weak reference, when the last user goes; a new
    // session looking it up while the last old one finalizes it races with
    // that. Holding ours for the process's life keeps it from ever being
    // finalized, and spares later sessions making it again.
    if let (Some(dec), Some(cert)) = (dec, CERTIFICATE.as_ref()) {
        gst::prelude::ObjectExt::set_property(&dec, "pem", cert.pem());
        let _ = AGENT_HOLDER.set(dec);
    }
    gst::debug!(
        super::CAT,
        "first dtlsdec ready after {:?}",
        start.elapsed()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_is_ecdsa_and_fingerprint_is_over_der() {
        let cert = Certificate::generate().unwrap();
        let x509 = X509::from_pem(cert.pem.as_bytes()).unwrap();
        assert_eq!(x509.public_key().unwrap().id(), openssl::pkey::Id::EC);
        let der_digest = openssl::sha::sha256(&x509.to_der().unwrap());
        let expected: Vec<String> = der_digest.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(cert.fingerprint, format!("sha-256 {}", expected.join(":")));
        assert!(cert.pem.contains("PRIVATE KEY"));
        assert!(!format!("{cert:?}").contains("PRIVATE"));
    }
}

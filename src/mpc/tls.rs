//! Mutually authenticated TLS between the parties (rustls, ring's primitives): a
//! maintained implementation, since the channel is where a deployment's secrecy
//! rests. `keygen` makes a run's certificates: a CA that signs one certificate per
//! party (name `pN.explore`), the CA's key dropped once they are signed, so nobody can
//! make another. Each party holds its own key and every party's certificate, and
//! accepts a peer only if its chain leads to the CA *and* the certificate is the one
//! pinned for the party it claims to be: a fourth process cannot join or read.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One party's keys for a run.
pub struct Keys {
    pub me: usize,
    ca: CertificateDer<'static>,
    /// Every party's certificate, pinned.
    pub certs: [CertificateDer<'static>; 3],
    key: PrivateKeyDer<'static>,
}

fn cert_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.cert.pem"))
}

/// The private key's file name of party `i` (only that party should have it).
fn key_file(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("p{i}.key.pem"))
}

/// The name each party's certificate carries.
pub fn server_name(i: usize) -> String {
    format!("p{i}.explore")
}

/// Writes `ca.cert.pem` and `pN.cert.pem`, `pN.key.pem` for N = 0, 1, 2 into `dir`;
/// returns the files written.
pub fn keygen(dir: &Path) -> Result<Vec<PathBuf>, String> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: cannot create: {e}", dir.display()))?;
    let fail = |e: rcgen::Error| format!("cannot make certificates: {e}");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "explore three-party run");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(fail)?).map_err(fail)?;
    let mut files = vec![(cert_file(dir, "ca"), ca.pem())];
    for i in 0..3 {
        let key = KeyPair::generate().map_err(fail)?;
        let mut params = CertificateParams::new(vec![server_name(i)]).map_err(fail)?;
        params.distinguished_name.push(DnType::CommonName, server_name(i));
        let cert = params.signed_by(&key, &ca).map_err(fail)?;
        files.push((cert_file(dir, &format!("p{i}")), cert.pem()));
        files.push((key_file(dir, i), key.serialize_pem()));
    }
    for (path, text) in &files {
        std::fs::write(path, text).map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
    }
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

impl Keys {
    /// Party `me`'s key and the pinned certificates from a `keygen` directory.
    pub fn load(dir: &Path, me: usize) -> Result<Keys, String> {
        let cert = |name: &str| {
            let path = cert_file(dir, name);
            CertificateDer::from_pem_file(&path).map_err(|e| format!("{}: not a PEM certificate: {e}", path.display()))
        };
        let key_path = key_file(dir, me);
        let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| format!("{}: not a PEM private key: {e}", key_path.display()))?;
        Ok(Keys { me, ca: cert("ca")?, certs: [cert("p0")?, cert("p1")?, cert("p2")?], key })
    }

    fn roots(&self) -> Result<Arc<rustls::RootCertStore>, String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone()).map_err(|e| format!("the CA certificate: {e}"))?;
        Ok(Arc::new(roots))
    }

    /// ring's primitives: they build with a C compiler alone (aws-lc-rs, which rustls
    /// now prefers for its post-quantum key exchange, needs more of a toolchain).
    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        #[allow(deprecated)]
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// TLS for connecting to party `peer` (which must present its pinned certificate).
    pub fn client(&self, peer: usize) -> Result<rustls::ClientConnection, String> {
        let config = rustls::ClientConfig::builder_with_provider(Keys::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(vec![self.certs[self.me].clone()], self.key.clone_key())
            .map_err(|e| format!("this party's certificate and key: {e}"))?;
        let name = ServerName::try_from(server_name(peer)).map_err(|e| e.to_string())?;
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())
    }

    /// TLS for accepting a party, which must present a certificate of this run's CA.
    pub fn server(&self) -> Result<rustls::ServerConnection, String> {
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(self.roots()?, Keys::provider())
            .build()
            .map_err(|e| e.to_string())?;
        let mut config = rustls::ServerConfig::builder_with_provider(Keys::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![self.certs[self.me].clone()], self.key.clone_key())
            .map_err(|e| format!("this party's certificate and key: {e}"))?;
        // No resumption: every connection authenticates in full.
        config.send_tls13_tickets = 0;
        rustls::ServerConnection::new(Arc::new(config)).map_err(|e| e.to_string())
    }

    /// Which party presented `cert`, if it is one of the pinned certificates.
    pub fn pinned(&self, cert: &CertificateDer<'_>) -> Option<usize> {
        self.certs.iter().position(|c| c.as_ref() == cert.as_ref())
    }
}

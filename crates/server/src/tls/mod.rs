//! HTTPS for the server (`docs/operating.md#tls`): by default a private certificate
//! authority is created in `DATA/tls/` on first start (`ca.pem`, and `ca.key` mode `0600`,
//! encrypted with the key passphrase when one is given, as the site repository's key files)
//! and a server certificate signed by it is issued at every start for the listen address and
//! the names given (so a new address or name needs only a restart); or an organisation's own
//! certificate chain and key are used. The CA certificate is served at `GET /ca.pem`, and
//! its SHA-256 (of exactly those bytes) travels in the enrollment token
//! (`docs/architecture.md#trust-model`). Plain HTTP only with
//! [`TlsMode::InsecurePlainHttp`].
//!
//! Replicas on one PostgreSQL share one private CA ([`open_shared`]): the first replica stores
//! its certificate and its key in the database, the key encrypted with the key passphrase
//! (`cascade_repo::encrypt_bytes`, the helper that encrypts the site repository's key files);
//! the others load them into their own `DATA/tls/`. A replica without the passphrase, or with
//! another one, refuses to start and says which
//! (`docs/operating.md#shared-repository-and-one-writer`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

mod ca_key;

pub use ca_key::open_shared;
use ca_key::{private_dir, read_ca_key, write_ca_key};

/// How the server speaks to its clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    /// HTTPS with the server's own private CA (created on first start in `DATA/tls/`); the
    /// server certificate names the listen address, `localhost` and these extra DNS names
    /// or IP addresses (`--tls-name`).
    PrivateCa {
        /// Extra names for the server certificate.
        names: Vec<String>,
    },
    /// HTTPS with an organisation's own certificate chain (PEM, leaf first, up to the CA
    /// that clients are to trust, which is served at `/ca.pem`) and private key (PEM).
    Files {
        /// The certificate chain file.
        cert: PathBuf,
        /// The private key file.
        key: PathBuf,
    },
    /// Plain HTTP: every token and the console cookie travel in clear
    /// (`--insecure-plain-http`; `docs/operating.md#tls`).
    InsecurePlainHttp,
}

impl Default for TlsMode {
    fn default() -> Self {
        TlsMode::PrivateCa { names: Vec::new() }
    }
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A TLS file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A certificate or key file holds nothing usable.
    #[error("{path}: {what}")]
    BadFile {
        /// The file.
        path: String,
        /// What is wrong with it.
        what: String,
    },
    /// A certificate could not be made.
    #[error("certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate and key.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// A replica on PostgreSQL was started without the key passphrase that encrypts the
    /// private CA's key in the database.
    #[error(
        "replicas keep the private CA's key in the database ({CA_KEY_ROW}) encrypted with the \
         key passphrase, and none was given: start every replica with the same \
         --key-passphrase-file FILE or {PASSPHRASE_ENV} \
         (docs/operating.md#shared-repository-and-one-writer)",
        PASSPHRASE_ENV = cascade_repo::PASSPHRASE_ENV
    )]
    PassphraseNeeded,
    /// The key passphrase given does not decrypt the private CA's key in the database.
    #[error(
        "the key passphrase given (--key-passphrase-file or {PASSPHRASE_ENV}) does not decrypt \
         the private CA's key in the database ({CA_KEY_ROW}): give this replica the passphrase \
         the other replicas were started with \
         (docs/operating.md#shared-repository-and-one-writer)",
        PASSPHRASE_ENV = cascade_repo::PASSPHRASE_ENV
    )]
    WrongPassphrase,
    /// The private CA's key file is encrypted and no key passphrase was given.
    #[error(
        "{path} is encrypted with the key passphrase, and none was given: start the server \
         with --key-passphrase-file FILE or {PASSPHRASE_ENV} (docs/operating.md#tls)",
        PASSPHRASE_ENV = cascade_repo::PASSPHRASE_ENV
    )]
    KeyFileLocked {
        /// The key file.
        path: String,
    },
    /// The key passphrase given does not decrypt the private CA's key file.
    #[error(
        "the key passphrase given (--key-passphrase-file or {PASSPHRASE_ENV}) does not decrypt \
         {path}: give the passphrase it was encrypted with (docs/operating.md#tls)",
        PASSPHRASE_ENV = cascade_repo::PASSPHRASE_ENV
    )]
    KeyFileWrongPassphrase {
        /// The key file.
        path: String,
    },
    /// The private CA's key in the database is not a key (a damaged or hand-edited row).
    #[error("the private CA's key in the database ({CA_KEY_ROW}): {0}")]
    BadStoredKey(String),
    /// The database of the replicas failed.
    #[error(transparent)]
    Shared(#[from] crate::shared::SharedError),
}

impl TlsError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            TlsError::Io { .. } => "tls.io",
            TlsError::BadFile { .. } => "tls.bad_file",
            TlsError::Generate(_) => "tls.generate",
            TlsError::Config(_) => "tls.config",
            TlsError::PassphraseNeeded => "tls.passphrase_needed",
            TlsError::WrongPassphrase => "tls.wrong_passphrase",
            TlsError::KeyFileLocked { .. } => "tls.key_file_locked",
            TlsError::KeyFileWrongPassphrase { .. } => "tls.key_file_wrong_passphrase",
            TlsError::BadStoredKey(_) => "tls.bad_stored_key",
            TlsError::Shared(e) => e.code(),
        }
    }
}

/// The subject of the private CA (the same at every start, so certificates issued later
/// chain to the stored CA certificate).
const CA_NAME: &str = "cascade private CA";

/// The shared file (a `shared_files` row) holding the replicas' CA certificate (PEM).
const CA_CERT_ROW: &str = "tls/ca.pem";
/// The shared file holding the replicas' CA key: PKCS#8, encrypted with the key passphrase
/// (`ENCRYPTED PRIVATE KEY` PEM).
pub const CA_KEY_ROW: &str = "tls/ca.key";

/// The server's TLS material, opened once at start.
pub struct Tls {
    mode: TlsMode,
    /// The CA certificate served at `/ca.pem` (PEM bytes), `None` over plain HTTP.
    ca_pem: Option<Vec<u8>>,
    /// The private CA's signing key, for [`Tls::acceptor`].
    ca_key: Option<KeyPair>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("mode", &self.mode)
            .field("ca_sha256", &self.ca_sha256())
            .finish_non_exhaustive()
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Tls {
    /// Opens the TLS material for `mode`: for the private CA, reads `DATA/tls/ca.pem` and
    /// `ca.key`, creating both on first start (directory `0700`, key `0600`). With
    /// `passphrase` the key file is encrypted with it (a key file in clear, made without one
    /// or by an earlier version, is encrypted in place); without, it is PEM in clear and a
    /// warning says so.
    ///
    /// # Errors
    /// See [`TlsError`]: [`TlsError::KeyFileLocked`] when the key file is encrypted and no
    /// passphrase was given, [`TlsError::KeyFileWrongPassphrase`] when it does not decrypt it.
    pub fn open(
        data_dir: &Path,
        mode: &TlsMode,
        passphrase: Option<&cascade_repo::Passphrase>,
    ) -> Result<Tls, TlsError> {
        match mode {
            TlsMode::InsecurePlainHttp => Ok(Tls {
                mode: mode.clone(),
                ca_pem: None,
                ca_key: None,
            }),
            TlsMode::Files { cert, .. } => {
                let pem = std::fs::read(cert).map_err(io(cert))?;
                certs(cert, &pem)?;
                // The last certificate of the chain is the one clients are to trust.
                let ca_pem = last_pem_block(cert, &pem)?;
                Ok(Tls {
                    mode: mode.clone(),
                    ca_pem: Some(ca_pem),
                    ca_key: None,
                })
            }
            TlsMode::PrivateCa { .. } => {
                let dir = data_dir.join("tls");
                private_dir(&dir)?;
                let cert_path = dir.join("ca.pem");
                let key_path = dir.join("ca.key");
                let (ca_pem, key) = if key_path.exists() && cert_path.exists() {
                    let key = read_ca_key(&key_path, passphrase)?;
                    let pem = std::fs::read(&cert_path).map_err(io(&cert_path))?;
                    certs(&cert_path, &pem)?;
                    (pem, key)
                } else {
                    let key = KeyPair::generate()?;
                    let cert = ca_params().self_signed(&key)?;
                    write_ca_key(&key_path, &key, passphrase)?;
                    let pem = cert.pem().into_bytes();
                    cascade_repo::fsutil::write_atomic(&cert_path, &pem).map_err(io(&cert_path))?;
                    tracing::info!(path = %cert_path.display(), "private CA created");
                    (pem, key)
                };
                Ok(Tls {
                    mode: mode.clone(),
                    ca_pem: Some(ca_pem),
                    ca_key: Some(key),
                })
            }
        }
    }

    /// The CA certificate clients are to trust (PEM), `None` over plain HTTP.
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.ca_pem.as_deref()
    }

    /// Lowercase hex SHA-256 of [`Tls::ca_pem`]'s bytes, as the enrollment token carries it.
    pub fn ca_sha256(&self) -> Option<String> {
        self.ca_pem.as_deref().map(cascade_repo::fsutil::sha256_hex)
    }

    /// Whether connections are plain HTTP.
    pub fn is_plain(&self) -> bool {
        matches!(self.mode, TlsMode::InsecurePlainHttp)
    }

    /// The acceptor for connections to `listen`, `None` over plain HTTP. With the private CA
    /// a fresh server certificate is issued (new key) for `listen`'s address, `localhost`,
    /// `127.0.0.1` when listening on every address, and the configured names.
    ///
    /// # Errors
    /// See [`TlsError`].
    pub fn acceptor(
        &self,
        listen: SocketAddr,
    ) -> Result<Option<tokio_rustls::TlsAcceptor>, TlsError> {
        let (chain, key) = match (&self.mode, &self.ca_key) {
            (TlsMode::InsecurePlainHttp, _) => return Ok(None),
            (TlsMode::Files { cert, key }, _) => {
                let pem = std::fs::read(cert).map_err(io(cert))?;
                let chain = certs(cert, &pem)?;
                let key_pem = std::fs::read(key).map_err(io(key))?;
                let key_der =
                    PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::BadFile {
                        path: key.display().to_string(),
                        what: format!("no private key: {e}"),
                    })?;
                (chain, key_der)
            }
            (TlsMode::PrivateCa { names }, Some(ca_key)) => {
                let leaf_key = KeyPair::generate()?;
                let issuer = Issuer::new(ca_params(), ca_key);
                let leaf = leaf_params(listen, names)?.signed_by(&leaf_key, &issuer)?;
                let ca = CertificateDer::from_pem_slice(self.ca_pem.as_deref().unwrap_or_default())
                    .map_err(|e| TlsError::BadFile {
                        path: "ca.pem".into(),
                        what: e.to_string(),
                    })?;
                let key_der = PrivateKeyDer::try_from(leaf_key.serialize_der()).map_err(|e| {
                    TlsError::BadFile {
                        path: "server key".into(),
                        what: e.to_owned(),
                    }
                })?;
                (vec![leaf.der().clone(), ca], key_der)
            }
            (TlsMode::PrivateCa { .. }, None) => {
                return Err(TlsError::BadFile {
                    path: "ca.key".into(),
                    what: "the private CA's key is not loaded".into(),
                })
            }
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        // Stateless session tickets, so any number of clients resume instead of a full
        // handshake per connection (`docs/operating.md#tls-session-resumption`): the
        // provider's ticketer encrypts each ticket with an in-memory key that is replaced
        // every 6 hours (tickets live at most 12 hours) and never leaves the process.
        config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
        Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
    }
}

/// The full enrollment token for `secret` (`docs/operating.md#enrollment-token-format`): with the
/// SHA-256 of the CA certificate served at `/ca.pem` and of each repository's `1.root.json`
/// as `/repo/` serves it (the site repository's own tree, or the repository directory) that
/// exists now (`-` for one that does not yet).
pub fn enrollment_token_text(st: &crate::state::Inner, secret: String) -> String {
    use cascade_proto::{EnrollmentTokenText, Sha256Digest};
    let digest =
        |bytes: &[u8]| Sha256Digest::from_hex(&cascade_repo::fsutil::sha256_hex(bytes)).ok();
    let first_root = |dir: PathBuf| {
        std::fs::read(dir.join("metadata/1.root.json"))
            .ok()
            .and_then(|b| digest(&b))
    };
    let site = st
        .site
        .own_public_dir()
        .unwrap_or_else(|| st.repo_dir.join("site"));
    // Before the first mirror run, the upstream root the operator trusts (`--upstream-root`)
    // is the mirror's `1.root.json` when it is version 1.
    let trusted_first_upstream = || {
        let path = &st.mirror.settings.as_ref()?.trusted_root;
        let bytes = std::fs::read(path).ok()?;
        (crate::repo::signed_version(&bytes) == Some(1))
            .then(|| digest(&bytes))
            .flatten()
    };
    EnrollmentTokenText {
        secret,
        ca_sha256: st.tls.ca_pem().and_then(digest),
        site_root_sha256: first_root(site),
        upstream_root_sha256: first_root(st.repo_dir.join("upstream"))
            .or_else(trusted_first_upstream),
    }
    .to_string()
}

/// `GET /ca.pem`: the CA certificate clients are to trust, public (its hash travels in the
/// enrollment token, so a client checks what it fetched over a connection it does not yet
/// trust); 404 on a plain-HTTP server.
pub async fn serve_ca(
    axum::extract::State(st): axum::extract::State<crate::state::AppState>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    match st.tls.ca_pem() {
        Some(pem) => (
            [(axum::http::header::CONTENT_TYPE, "application/x-pem-file")],
            pem.to_vec(),
        )
            .into_response(),
        None => crate::error::ApiError::NotFound {
            what: "CA certificate (this server speaks plain HTTP)",
            id: "ca.pem".into(),
        }
        .into_response(),
    }
}

/// The private CA's parameters (no path length limit, signs certificates only).
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// A server certificate's parameters for `listen` and `names`.
fn leaf_params(listen: SocketAddr, names: &[String]) -> Result<CertificateParams, TlsError> {
    let mut sans: Vec<String> = vec!["localhost".into()];
    let ip = listen.ip();
    if ip.is_unspecified() {
        sans.push(IpAddr::V4(Ipv4Addr::LOCALHOST).to_string());
    } else {
        sans.push(ip.to_string());
    }
    for n in names {
        if !sans.contains(n) {
            sans.push(n.clone());
        }
    }
    let mut params = CertificateParams::new(sans)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "cascade server");
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// Every certificate in the PEM file `path` (at least one).
fn certs(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |what: String| TlsError::BadFile {
        path: path.display().to_string(),
        what,
    };
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not PEM certificates: {e}")))?;
    if chain.is_empty() {
        return Err(bad("no certificate in the file".into()));
    }
    Ok(chain)
}

/// The text of the last `CERTIFICATE` block of a PEM file (parsed by [`certs`] before).
fn last_pem_block(path: &Path, pem: &[u8]) -> Result<Vec<u8>, TlsError> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let find_last =
        |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).rposition(|w| w == needle);
    let start = find_last(pem, BEGIN);
    let end = find_last(pem, END);
    match (start, end) {
        (Some(s), Some(e)) if e > s => {
            // Through the end of the END line, as the file has it.
            let mut stop = e + END.len();
            for want in [b'\r', b'\n'] {
                if pem.get(stop) == Some(&want) {
                    stop += 1;
                }
            }
            let mut block = pem[s..stop].to_vec();
            if !block.ends_with(b"\n") {
                block.push(b'\n');
            }
            Ok(block)
        }
        _ => Err(TlsError::BadFile {
            path: path.display().to_string(),
            what: "no PEM certificate block".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The private CA is made once and kept (key 0600); a second open serves the same CA.
    #[test]
    fn private_ca_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mode = TlsMode::default();
        let a = Tls::open(dir.path(), &mode, None).unwrap();
        let b = Tls::open(dir.path(), &mode, None).unwrap();
        assert_eq!(a.ca_pem(), b.ca_pem());
        assert_eq!(a.ca_sha256().unwrap().len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let m = std::fs::metadata(dir.path().join("tls/ca.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(m & 0o777, 0o600);
        }
        assert!(b
            .acceptor("127.0.0.1:8443".parse().unwrap())
            .unwrap()
            .is_some());
    }

    fn key_text(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("tls/ca.key")).unwrap()
    }

    // With the key passphrase the CA's key file holds no key in clear, and it takes that
    // passphrase to open it again: none, or another, is refused with its own code and the
    // file named, and nothing is changed. A key file in clear (made without a passphrase) is
    // encrypted in place by the first start with one, and it is the same CA.
    #[test]
    fn the_ca_key_file_is_encrypted_with_the_key_passphrase() {
        let pass = cascade_repo::Passphrase::new("correct horse battery").unwrap();
        let other = cascade_repo::Passphrase::new("wrong horse battery").unwrap();
        let mode = TlsMode::default();

        let dir = tempfile::tempdir().unwrap();
        let a = Tls::open(dir.path(), &mode, Some(&pass)).unwrap();
        let sealed = key_text(dir.path());
        assert!(
            sealed.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
            "{sealed}"
        );
        let b = Tls::open(dir.path(), &mode, Some(&pass)).unwrap();
        assert_eq!(a.ca_pem(), b.ca_pem());
        assert!(b
            .acceptor("127.0.0.1:8443".parse().unwrap())
            .unwrap()
            .is_some());
        let locked = Tls::open(dir.path(), &mode, None).err().unwrap();
        assert_eq!(locked.code(), "tls.key_file_locked");
        assert!(locked.to_string().contains("tls/ca.key"), "{locked}");
        let wrong = Tls::open(dir.path(), &mode, Some(&other)).err().unwrap();
        assert_eq!(wrong.code(), "tls.key_file_wrong_passphrase");
        assert!(wrong.to_string().contains("tls/ca.key"), "{wrong}");
        assert_eq!(
            key_text(dir.path()),
            sealed,
            "a refused start changed the key file"
        );

        let dir = tempfile::tempdir().unwrap();
        let clear = Tls::open(dir.path(), &mode, None).unwrap();
        let pem = key_text(dir.path());
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
        let now = Tls::open(dir.path(), &mode, Some(&pass)).unwrap();
        assert_eq!(clear.ca_pem(), now.ca_pem());
        let text = key_text(dir.path());
        assert!(
            text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
            "{text}"
        );
        let der = cascade_repo::decrypt_bytes(Path::new("ca.key"), text.as_bytes(), Some(&pass))
            .unwrap()
            .unwrap();
        assert_eq!(
            der.as_slice(),
            KeyPair::from_pem(&pem).unwrap().serialize_der().as_slice(),
            "the same key, encrypted"
        );
    }
}

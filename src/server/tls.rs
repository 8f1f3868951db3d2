//! Optional native HTTPS, for `web:https://` ServiceTokens without a proxy
//! in front: rustls (ring), a PEM certificate chain and private key, ALPN for
//! HTTP/2 and HTTP/1.1. The handshake must finish within the header read
//! timeout, so a client that opens a TCP connection and stalls is cut off.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_rustls::{TlsAcceptor, rustls};

use crate::error::{Error, Result};
use crate::security::SecurityConfig;

/// The acceptor for the configured certificate, or `None` for plain HTTP.
///
/// # Errors
/// [`Error::Config`] when the files cannot be read or do not hold a usable
/// certificate chain and key. Messages name the file, never its contents.
pub(crate) fn acceptor(config: &SecurityConfig) -> Result<Option<TlsAcceptor>> {
    let Some((cert_path, key_path)) = &config.tls else {
        return Ok(None);
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .and_then(|iter| iter.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| {
            Error::Config(format!(
                "reading the TLS certificate {}: {e}",
                cert_path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "{} holds no PEM certificate",
            cert_path.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
        Error::Config(format!(
            "reading the TLS private key {}: {e}",
            key_path.display()
        ))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS setup: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Config(format!("TLS certificate and key do not fit: {e}")))?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(server))))
}

/// Handshake, then serve one connection; the permit is held until it ends.
#[allow(clippy::too_many_arguments)]
pub(super) async fn serve_connection<S>(
    acceptor: TlsAcceptor,
    builder: auto::Builder<TokioExecutor>,
    stream: TcpStream,
    service: S,
    watcher: Watcher,
    handshake_timeout: Duration,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
) where
    S: hyper::service::Service<
            hyper::Request<Incoming>,
            Response = hyper::Response<Full<Bytes>>,
            Error = Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let _permit = permit;
    let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            tracing::debug!(%error, %peer, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let stream = crate::security::limits::FirstByteDeadline::new(stream, handshake_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    if let Err(error) = watcher.watch(connection.into_owned()).await {
        tracing::debug!(%error, %peer, "connection ended with an error");
    }
}

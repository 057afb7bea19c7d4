//! TLS on both listeners: a client that trusts the node's certificate gets answers over
//! HTTP/1.1 and negotiates HTTP/2 (what gRPC needs); plaintext is refused.

mod common;

use common::Node;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

fn client(cert_der: Vec<u8>, alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots
        .add(cert_der.into())
        .expect("trust the node's certificate");
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_listeners_serve_tls_when_configured() {
    let dir = tempfile::tempdir().expect("dir");
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, certified.cert.pem()).expect("write cert");
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).expect("write key");
    let cert_der = certified.cert.der().to_vec();
    let node = Node::start_with(
        &dir.path().join("data"),
        &[
            "--tls-cert",
            cert_path.to_str().expect("path"),
            "--tls-key",
            key_path.to_str().expect("path"),
        ],
    );
    let name = ServerName::try_from("localhost").expect("name");

    // HTTP/1.1 over TLS on the HTTP listener.
    let tcp = tokio::net::TcpStream::connect(&node.http)
        .await
        .expect("connect");
    let mut tls = client(cert_der.clone(), &[b"http/1.1"])
        .connect(name.clone(), tcp)
        .await
        .expect("TLS handshake");
    tls.write_all(b"GET /readyz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = String::new();
    tls.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ready\n"), "{answer}");

    // The gRPC listener negotiates HTTP/2 by ALPN.
    let tcp = tokio::net::TcpStream::connect(&node.grpc)
        .await
        .expect("connect");
    let tls = client(cert_der, &[b"h2"])
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));

    // Plaintext gets no HTTP answer.
    let mut plain = tokio::net::TcpStream::connect(&node.http)
        .await
        .expect("connect");
    plain
        .write_all(b"GET /readyz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut buffer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        plain.read_to_end(&mut buffer),
    )
    .await;
    assert!(!String::from_utf8_lossy(&buffer).contains("200 OK"));
}

//! How the agent reaches a hub: TLS with a private CA or without verification, and
//! through the proxy named in the environment. Everything stays on 127.0.0.1.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serverpulse_agent::config;
use serverpulse_agent::transport::{Hub, TransportError};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn hub_for(endpoint: &str, extra: &str, state: &Path) -> Hub {
    let text = format!("server:\n  endpoint: {endpoint}\nstorage:\n  state_dir: {}\n{extra}", state.display());
    Hub::from_config(&config::parse("test.yml", &text).unwrap()).unwrap()
}

/// A TLS server (`openssl s_server`) with a certificate for 127.0.0.1 from a private CA. It
/// answers with an HTML status page, so a completed handshake shows as a 200 that is
/// not the JSON the agent expects.
struct TlsServer {
    child: std::process::Child,
    port: u16,
}

impl TlsServer {
    fn start(dir: &Path) -> Self {
        let openssl = |args: &[&str]| {
            let status = Command::new("openssl")
                .current_dir(dir)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("openssl (Debian package openssl) is needed for this test");
            assert!(status.success(), "openssl {args:?}");
        };
        // A private CA, and the hub's certificate for 127.0.0.1 signed by it.
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=ServerPulse test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]);
        openssl(&["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=hub", "-keyout", "hub.key", "-out", "hub.csr"]);
        std::fs::write(
            dir.join("hub.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "hub.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "hub.ext",
            "-out",
            "hub.pem",
        ]);
        let (cert, key) = (dir.join("hub.pem"), dir.join("hub.key"));
        let port = free_port();
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept", &format!("127.0.0.1:{port}")])
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "openssl s_server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn tls_needs_the_hubs_ca_unless_verification_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = TlsServer::start(dir.path());
    let endpoint = format!("https://127.0.0.1:{}", server.port);

    let untrusted = hub_for(&endpoint, "", dir.path()).health();
    match untrusted {
        Err(TransportError::Unavailable(why)) => assert!(why.to_lowercase().contains("cert"), "{why}"),
        other => panic!("a certificate from an unknown CA must be refused, got {other:?}"),
    }

    let ca = format!("security:\n  ca_cert_file: {}\n", dir.path().join("ca.pem").display());
    let trusted = hub_for(&endpoint, &ca, dir.path()).health();
    assert!(
        matches!(trusted, Err(TransportError::Refused { status: 200, .. })),
        "handshake should succeed: {trusted:?}"
    );

    let unverified = hub_for(&endpoint, "security:\n  verify_ssl: false\n", dir.path()).health();
    assert!(matches!(unverified, Err(TransportError::Refused { status: 200, .. })), "{unverified:?}");

    let missing = config::parse(
        "test.yml",
        &format!(
            "server:\n  endpoint: {endpoint}\nsecurity:\n  ca_cert_file: {}\n",
            dir.path().join("nope.pem").display()
        ),
    )
    .unwrap();
    assert!(matches!(Hub::from_config(&missing), Err(TransportError::Setup(_))));
}

#[test]
fn requests_go_through_the_proxy_from_the_environment() {
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = proxy.local_addr().unwrap();
    // A CONNECT proxy: it records what the agent asked it for, then plays the hub.
    let seen = std::thread::spawn(move || {
        let (stream, _) = proxy.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut stream = stream;
        let read_head = |reader: &mut BufReader<std::net::TcpStream>| {
            let mut first = String::new();
            reader.read_line(&mut first).unwrap();
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 2 {
                line.clear();
            }
            first.trim_end().to_owned()
        };
        let mut request = read_head(&mut reader);
        let connect = request.starts_with("CONNECT ").then(|| request.clone());
        if connect.is_some() {
            write!(stream, "HTTP/1.1 200 Connection established\r\n\r\n").unwrap();
            request = read_head(&mut reader);
        }
        let body = r#"{"status":"ok","version":"via-proxy"}"#;
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        (connect, request)
    });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "server:\n  endpoint: http://hub.example.invalid:8000\nstorage:\n  state_dir: {}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_serverpulse-agent"))
        .arg("--config")
        .arg(&config)
        .arg("test-connection")
        .env("HTTP_PROXY", format!("http://{address}"))
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("via-proxy"), "{stdout}");
    let (connect, request) = seen.join().unwrap();
    match connect {
        Some(line) => {
            assert_eq!(line, "CONNECT hub.example.invalid:8000 HTTP/1.1");
            assert_eq!(request, "GET /api/v1/health HTTP/1.1");
        }
        None => assert_eq!(request, "GET http://hub.example.invalid:8000/api/v1/health HTTP/1.1"),
    }
}

#[test]
fn a_busy_hub_says_when_to_come_back() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 2 {
            line.clear();
        }
        let body = r#"{"success":false,"error":"the hub is busy storing reports; retry after 7 s"}"#;
        let mut stream = stream;
        write!(
            stream,
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let hub = hub_for(&format!("http://{address}"), "", dir.path());
    match hub.health() {
        Err(TransportError::Busy { retry_after_ms, message }) => {
            assert_eq!(retry_after_ms, 7_000);
            assert!(message.contains("busy"), "{message}");
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    server.join().unwrap();
}

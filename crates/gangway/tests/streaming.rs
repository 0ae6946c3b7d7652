//! Bodies stream through gangway without buffering (seed 001's
//! `proxy_buffering off`): each chunk of a slow response reaches the client
//! while the backend is still producing the rest.
#![allow(clippy::unwrap_used)]

use gangway_testkit::{ContainerSpec, GangwayBuilder, Network};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const CHUNKS: usize = 4;
const DELAY_MS: u64 = 600;

#[test]
fn response_chunks_arrive_as_the_backend_sends_them() {
    let network = Network::create();
    let _backend = ContainerSpec::backend()
        .network(network.name())
        .label("reverse-proxy.host", "stream.test")
        .start();
    let gangway = GangwayBuilder::new(env!("CARGO_BIN_EXE_gangway"))
        .network(network.name())
        .spawn();
    assert!(
        gangway.wait_ready(Duration::from_secs(20)),
        "{}",
        gangway.output()
    );
    assert_eq!(gangway.get("stream.test", "/").status, 200);

    let mut client = TcpStream::connect(("127.0.0.1", gangway.http_port)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = format!(
        "GET /stream?chunks={CHUNKS}&delay_ms={DELAY_MS} HTTP/1.1\r\nHost: stream.test\r\nConnection: close\r\n\r\n"
    );
    let sent = Instant::now();
    client.write_all(request.as_bytes()).unwrap();

    // Record when each chunk's text first shows up on the socket.
    let mut received = Vec::new();
    let mut seen_at = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = client.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        received.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&received);
        while seen_at.len() < CHUNKS && text.contains(&format!("chunk {}\n", seen_at.len())) {
            seen_at.push(sent.elapsed());
        }
    }
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(seen_at.len(), CHUNKS, "not every chunk arrived: {text}");
    // The backend waits DELAY_MS between chunks, so the whole body takes at
    // least (CHUNKS - 1) * DELAY_MS. A buffering proxy would deliver the
    // first chunk only at the end; streaming delivers it at least a full
    // delay before the last one.
    let first = seen_at[0];
    let last = seen_at[CHUNKS - 1];
    assert!(
        last >= Duration::from_millis(DELAY_MS * (CHUNKS as u64 - 1)),
        "the backend did not pace its chunks: {seen_at:?}"
    );
    assert!(
        last - first >= Duration::from_millis(DELAY_MS),
        "the response was buffered: chunks arrived at {seen_at:?}"
    );
}

//! The proxy with fake gateways on loopback: WebSocket frames of every size pass intact, and a
//! client that never reads holds the gateway back instead of growing our memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::*;

/// A front door on a free port in front of `upstream`, already "ready"; returns its port.
async fn door_before(upstream: u16, stop: &CancellationToken) -> u16 {
    let d = tempfile::tempdir().unwrap();
    let door = Arc::new(Door::new(
        upstream,
        Vec::new(),
        None,
        None,
        Meta::new(d.path().join("m")),
    ));
    door.set_phase(Phase::Ready);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(serve(listener, door, stop.clone()));
    port
}

#[tokio::test]
async fn websocket_frames_from_1_byte_to_1_mb_pass_intact() {
    // The "gateway": a WebSocket echo server.
    let gw = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gw_port = gw.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (s, _) = gw.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(s).await.unwrap();
        while let Some(Ok(m)) = ws.next().await {
            if m.is_text() || m.is_binary() {
                ws.send(m).await.unwrap();
            }
        }
    });
    let stop = CancellationToken::new();
    let port = door_before(gw_port, &stop).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/"))
        .await
        .unwrap();
    for n in [1usize, 125, 126, 65_535, 65_536, 1 << 20] {
        let bytes: Vec<u8> = (0..n).map(|i| (i * 7 + n) as u8).collect();
        ws.send(Message::binary(bytes.clone())).await.unwrap();
        let back = ws.next().await.unwrap().unwrap();
        assert_eq!(back.into_data().as_ref(), bytes.as_slice(), "{n} bytes");
        let text = "é".repeat(n / 2 + 1);
        ws.send(Message::text(text.clone())).await.unwrap();
        assert_eq!(
            ws.next()
                .await
                .unwrap()
                .unwrap()
                .into_text()
                .unwrap()
                .as_str(),
            text
        );
    }
    stop.cancel();
}

#[tokio::test]
async fn a_client_that_never_reads_holds_the_gateway_back() {
    // The "gateway": a 256 MB response, written as fast as the proxy takes it.
    let gw = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gw_port = gw.local_addr().unwrap().port();
    let written = Arc::new(AtomicU64::new(0));
    let w = written.clone();
    tokio::spawn(async move {
        let (mut s, _) = gw.accept().await.unwrap();
        let mut req = [0u8; 4096];
        let _ = s.read(&mut req).await.unwrap();
        let total: u64 = 256 << 20;
        s.write_all(format!("HTTP/1.1 200 OK\r\ncontent-length: {total}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let chunk = vec![b'x'; 64 << 10];
        while w.load(Ordering::Relaxed) < total {
            if s.write_all(&chunk).await.is_err() {
                return;
            }
            w.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
    });
    let stop = CancellationToken::new();
    let port = door_before(gw_port, &stop).await;
    let mut c = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    c.write_all(b"GET /big HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    // Never read. Wait until the gateway is stuck (its count stops moving), at most 10 s.
    let mut last = u64::MAX;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = written.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
    }
    let stuck_at = written.load(Ordering::Relaxed);
    assert!(
        stuck_at < 32 << 20,
        "the proxy took {} MB from the gateway for a client that read nothing",
        stuck_at >> 20
    );
    // And it is all there for a client that does read.
    let mut got = vec![0u8; 1 << 20];
    let n = c.read(&mut got).await.unwrap();
    assert!(n > 0 && got.starts_with(b"HTTP/1.1 200"));
    stop.cancel();
}

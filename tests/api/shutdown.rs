use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::helpers::{Backend, on_both_databases, spawn_app};

on_both_databases!(graceful_shutdown_finishes_the_request_in_flight);

async fn graceful_shutdown_finishes_the_request_in_flight(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let mut in_flight = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    in_flight
        .write_all(
            b"POST /healthz HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nhello\r\n",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let server = app.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        TcpStream::connect(("127.0.0.1", app.port)).await.is_err(),
        "new connections must be refused once shutdown has begun"
    );
    assert!(
        !server.is_finished(),
        "the server must wait for the request in flight"
    );

    in_flight.write_all(b"0\r\n\r\n").await.unwrap();
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buffer = [0u8; 4096];
        loop {
            let n = in_flight.read(&mut buffer).await.unwrap();
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buffer[..n]);
            if raw.ends_with(b"}") {
                break;
            }
        }
    });
    read.await.expect("the in-flight request was answered");
    let raw = String::from_utf8_lossy(&raw);
    assert!(raw.starts_with("HTTP/1.1 405"), "{raw}");
    assert!(raw.contains("application/problem+json"), "{raw}");

    let stopped = tokio::time::timeout(Duration::from_secs(10), server).await;
    assert!(
        matches!(stopped, Ok(Ok(Ok(())))),
        "server did not stop cleanly"
    );
}

//! The connection layer, below HTTP: a cap on open connections, and deadlines for clients that
//! keep a connection without using it.
//!
//! Each accepted connection holds one of `MAX_CONNECTIONS` slots until it closes; when all are
//! taken, new connections wait in the kernel's backlog. A connection must start a request within
//! `KEEP_ALIVE_TIMEOUT` of opening or of the last byte written to it, and must finish sending a
//! request head (everything up to the blank line) within `HEADER_READ_TIMEOUT` of its first
//! byte; otherwise it is closed. So a client that opens sockets and stalls, or dribbles a header
//! a byte at a time, holds a slot for seconds, not for ever. Bodies and whole requests have
//! their own deadlines in [`crate::http_policy`].
//!
//! The state is followed from the bytes alone: a request head ends at the first `\r\n\r\n`, and
//! the next one can begin once the response is being written.
//!
//! The service speaks HTTP/1.1 only. Cleartext HTTP/2 (a connection that opens with HTTP/2's
//! fixed preface) is refused at once with a `GOAWAY` frame whose error code,
//! `HTTP_1_1_REQUIRED`, tells the client to come back over HTTP/1.1. One HTTP/2 connection
//! multiplexes any number of requests, so it would escape both the per-connection deadlines and
//! the meaning of `MAX_CONNECTIONS`; browsers only use HTTP/2 over TLS, which a reverse proxy in
//! front of the service terminates (and the proxy can speak HTTP/2 to browsers while forwarding
//! HTTP/1.1 here).

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use poem::{
    listener::Acceptor,
    web::{LocalAddr, RemoteAddr},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::{Instant, Sleep},
};

/// The limits, from the configuration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TransportLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub keep_alive_timeout: Duration,
}

/// Wraps an acceptor so that every connection it hands out obeys the limits.
pub(crate) struct LimitedAcceptor<A> {
    inner: A,
    slots: Arc<Semaphore>,
    limits: TransportLimits,
}

impl<A> LimitedAcceptor<A> {
    pub(crate) fn new(inner: A, limits: TransportLimits) -> Self {
        Self {
            inner,
            slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            limits,
        }
    }
}

impl<A: Acceptor> Acceptor for LimitedAcceptor<A> {
    type Io = Guarded<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(
        &mut self,
    ) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, poem::http::uri::Scheme)> {
        // Wait for a free slot before taking the next connection off the backlog.
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| io::Error::other("the connection slots were closed"))?;
        let (io, local, remote, scheme) = self.inner.accept().await?;
        Ok((Guarded::new(io, slot, self.limits), local, remote, scheme))
    }
}

const HEAD_END: &[u8] = b"\r\n\r\n";
/// How every HTTP/2 connection begins (the rest of the preface, `\r\nSM\r\n\r\n`, is not
/// needed to tell it apart: no HTTP/1 request line looks like this).
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";
/// The answer to an HTTP/2 preface: the server's (empty) SETTINGS frame, which must come first,
/// then GOAWAY with last stream 0 and the error code HTTP_1_1_REQUIRED (RFC 9113, 7).
const HTTP2_REFUSAL: &[u8] = &[
    0, 0, 0, 0x4, 0, 0, 0, 0, 0, // SETTINGS, no parameters
    0, 0, 8, 0x7, 0, 0, 0, 0, 0, // GOAWAY on stream 0, 8 bytes:
    0, 0, 0, 0, // no stream was processed,
    0, 0, 0, 0xd, // HTTP_1_1_REQUIRED
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Between requests: nothing of the next one has arrived.
    Idle,
    /// Part of a request head has arrived; `matched` bytes of `\r\n\r\n` end what was read.
    Head { matched: usize },
    /// The head is complete: a body may follow, then the response.
    Request,
    /// The client opened with HTTP/2's preface: the connection is being refused.
    Http2,
}

/// A connection with its slot and deadline.
pub(crate) struct Guarded<Io> {
    io: Io,
    _slot: OwnedSemaphorePermit,
    limits: TransportLimits,
    phase: Phase,
    /// The first bytes of the connection, to recognise HTTP/2.
    opening: Vec<u8>,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<Io> Guarded<Io> {
    fn new(io: Io, slot: OwnedSemaphorePermit, limits: TransportLimits) -> Self {
        Self {
            io,
            _slot: slot,
            limits,
            phase: Phase::Idle,
            opening: Vec::with_capacity(HTTP2_PREFACE.len()),
            deadline: Some(Box::pin(tokio::time::sleep(limits.keep_alive_timeout))),
        }
    }

    fn set_deadline(&mut self, after: Option<Duration>) {
        match (after, &mut self.deadline) {
            (Some(after), Some(sleep)) => sleep.as_mut().reset(Instant::now() + after),
            (Some(after), None) => self.deadline = Some(Box::pin(tokio::time::sleep(after))),
            (None, _) => self.deadline = None,
        }
    }

    /// Follows the request heads through the bytes just read.
    fn observe_read(&mut self, bytes: &[u8]) {
        if self.opening.len() < HTTP2_PREFACE.len() {
            let take = (HTTP2_PREFACE.len() - self.opening.len()).min(bytes.len());
            self.opening.extend_from_slice(&bytes[..take]);
            if self.opening == HTTP2_PREFACE {
                self.phase = Phase::Http2;
                return;
            }
        }
        for &byte in bytes {
            self.phase = match self.phase {
                Phase::Idle => {
                    self.set_deadline(Some(self.limits.header_read_timeout));
                    Phase::Head {
                        matched: usize::from(byte == HEAD_END[0]),
                    }
                }
                Phase::Head { matched } => {
                    let matched = if byte == HEAD_END[matched] {
                        matched + 1
                    } else {
                        usize::from(byte == HEAD_END[0])
                    };
                    if matched == HEAD_END.len() {
                        self.set_deadline(None);
                        Phase::Request
                    } else {
                        Phase::Head { matched }
                    }
                }
                Phase::Request | Phase::Http2 => return,
            };
        }
    }

    fn observe_write(&mut self) {
        match self.phase {
            Phase::Request | Phase::Idle => {
                self.phase = Phase::Idle;
                self.set_deadline(Some(self.limits.keep_alive_timeout));
            }
            // Writing while a head arrives (an early error answer): the head deadline stands.
            Phase::Head { .. } | Phase::Http2 => {}
        }
    }

    /// Whether the deadline of a waiting phase has passed. Polling it also registers this task
    /// to be woken when it passes, so a silent client is dropped on time, not when it next
    /// sends something.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let waiting = matches!(self.phase, Phase::Idle | Phase::Head { .. });
        waiting
            && self
                .deadline
                .as_mut()
                .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready())
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin> AsyncRead for Guarded<Io> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.expired(cx) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client was too slow to send a request",
            )));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        this.observe_read(&buf.filled()[before..]);
        if this.phase == Phase::Http2 {
            // A fresh connection's send buffer is empty, so the refusal goes out in one write;
            // if it does not, the client learns the same from the connection closing.
            let _ = Pin::new(&mut this.io).poll_write(cx, HTTP2_REFUSAL);
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "cleartext HTTP/2 is not served; use HTTP/1.1",
            )));
        }
        // A deadline set just now must wake this task too.
        this.expired(cx);
        Poll::Ready(Ok(()))
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Guarded<Io> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = ready!(Pin::new(&mut this.io).poll_write(cx, data))?;
        this.observe_write();
        this.expired(cx);
        Poll::Ready(Ok(written))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = ready!(Pin::new(&mut this.io).poll_write_vectored(cx, bufs))?;
        this.observe_write();
        this.expired(cx);
        Poll::Ready(Ok(written))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

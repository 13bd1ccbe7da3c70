//! The facade's connections: hyper's own refusals in the Watcher error envelope.
//!
//! Requests whose headers exceed `max_header_bytes` get the envelope from a middleware
//! (`limit_headers`). Beyond hyper's read buffer (about 400 KB) or its header count (100),
//! hyper refuses the request before any service sees it, writing a bare
//! `431 Request Header Fields Too Large` with an empty body and closing the connection. That
//! bare answer is the one thing a client of the facade could get without the envelope, so each
//! connection's writes go through [`Envelope431`], which replaces exactly that response (hyper's
//! status line with `content-length: 0`; the middleware's own 431 carries a body) by the same
//! error in the envelope, with the facade's security headers.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The TCP listener of the facade: every connection wrapped in [`Envelope431`].
pub struct FacadeListener(pub TcpListener);

impl Listener for FacadeListener {
    type Io = Envelope431<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = Listener::accept(&mut self.0).await;
        (Envelope431::new(io), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// The peer address of a facade connection (what `ConnectInfo<SocketAddr>` is for a plain
/// listener).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

impl Connected<IncomingStream<'_, FacadeListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, FacadeListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// The response that replaces hyper's bare 431.
fn enveloped_431() -> Vec<u8> {
    let body = serde_json::json!({"errors": [{
        "status": "431",
        "code": "headers_too_large",
        "title": "request headers too large (or too many header fields)",
    }]})
    .to_string();
    format!(
        "HTTP/1.1 431 Request Header Fields Too Large\r\n\
         content-type: application/json\r\n\
         content-length: {}\r\n\
         connection: close\r\n\
         x-content-type-options: nosniff\r\n\
         x-frame-options: DENY\r\n\
         referrer-policy: no-referrer\r\n\
         cache-control: no-store\r\n\
         content-security-policy: default-src 'none'; frame-ancestors 'none'\r\n\
         \r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Whether `buf` is hyper's own 431: its status line and an empty body.
fn is_bare_431(buf: &[u8]) -> bool {
    let head = &buf[..buf.len().min(512)];
    (head.starts_with(b"HTTP/1.1 431 ") || head.starts_with(b"HTTP/1.0 431 "))
        && head
            .windows(b"\r\ncontent-length: 0\r\n".len())
            .any(|w| w.eq_ignore_ascii_case(b"\r\ncontent-length: 0\r\n"))
}

/// A connection whose writes pass through unchanged, except hyper's bare 431 (see the module).
pub struct Envelope431<T> {
    inner: T,
    /// The replacement being written, and how much of it is out.
    pending: Option<(Vec<u8>, usize)>,
    /// Bytes of hyper's write that the replacement stands for.
    replaced: usize,
}

impl<T> Envelope431<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            pending: None,
            replaced: 0,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Envelope431<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Envelope431<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.pending.is_none() && this.replaced == 0 && is_bare_431(buf) {
            this.pending = Some((enveloped_431(), 0));
            this.replaced = buf.len();
        }
        let Some((out, written)) = this.pending.as_mut() else {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        };
        while *written < out.len() {
            match Pin::new(&mut this.inner).poll_write(cx, &out[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        // hyper retries the same write until it is accepted: the replacement is out, so
        // report hyper's bytes as written. Anything after it (there is nothing: hyper closes
        // the connection) passes through.
        this.pending = None;
        Poll::Ready(Ok(std::mem::take(&mut this.replaced).min(buf.len())))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    // Not vectored: hyper then writes each response head as one buffer, which is what the
    // check above looks at.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn only_hypers_empty_431_is_recognised() {
        assert!(is_bare_431(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n"
        ));
        assert!(is_bare_431(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ndate: x\r\nContent-Length: 0\r\n\r\n"
        ));
        // The middleware's own 431 carries the envelope already.
        assert!(!is_bare_431(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\ncontent-length: 80\r\n\r\n"
        ));
        assert!(!is_bare_431(
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
        ));
        assert!(!is_bare_431(b"{\"x\":\"HTTP/1.1 431 \"}"));
    }

    #[tokio::test]
    async fn the_bare_431_is_replaced_and_everything_else_passes() {
        let mut out = Vec::new();
        {
            let mut w = Envelope431::new(&mut out);
            w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await
                .unwrap();
        }
        assert_eq!(out, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        let mut out = Vec::new();
        {
            let mut w = Envelope431::new(&mut out);
            w.write_all(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n",
            )
            .await
            .unwrap();
        }
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["errors"][0]["status"], "431");
        assert_eq!(v["errors"][0]["code"], "headers_too_large");
    }
}

//! The accept loop of a node. Owning it (instead of `axum::serve`) lets a node go down
//! (listener closed: connections are refused; every open connection is dropped) and come back
//! on the same port, which is what a crashed or restarted server looks like to a client.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::api::{self, PeerAddr};
use crate::node::Node;

/// Binds a listener with `SO_REUSEADDR`, so a node can come back on its port right away.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(1024)
}

async fn serve(stream: TcpStream, peer: SocketAddr, router: Router) {
    let _ = stream.set_nodelay(true);
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(PeerAddr(peer));
        router.clone().oneshot(req.map(axum::body::Body::new))
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), svc)
        .await;
}

async fn accept_loop(listener: TcpListener, router: Router) {
    // Dropping this future (abort) drops the JoinSet, which aborts every connection task.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            res = listener.accept() => match res {
                Ok((stream, peer)) => {
                    conns.spawn(serve(stream, peer, router.clone()));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

impl Node {
    /// Starts serving on an already bound listener.
    pub(crate) async fn serve_on(self: &Arc<Self>, listener: TcpListener) {
        let mut task = self.accept_task.lock().await;
        if let Some(old) = task.take() {
            old.abort();
            let _ = old.await;
        }
        let router = api::router(self.clone());
        *task = Some(tokio::spawn(accept_loop(listener, router)));
        self.up.store(true, Ordering::SeqCst);
    }

    /// Closes the listener and drops every open connection.
    pub async fn go_down(&self) {
        let mut task = self.accept_task.lock().await;
        self.up.store(false, Ordering::SeqCst);
        if let Some(t) = task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    /// Listens again on the same address.
    pub async fn go_up(self: &Arc<Self>) -> io::Result<()> {
        if self.is_up() {
            return Ok(());
        }
        let mut last = None;
        for _ in 0..50 {
            match bind(self.addr) {
                Ok(l) => {
                    self.serve_on(l).await;
                    return Ok(());
                }
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("bind failed")))
    }

    /// Simulated restart: runtime wiped (disk kept), open connections dropped.
    pub async fn restart(self: &Arc<Self>, broken: Option<serde_json::Value>) -> io::Result<()> {
        let was_up = self.is_up();
        self.go_down().await;
        self.reboot(broken);
        if was_up { self.go_up().await } else { Ok(()) }
    }
}

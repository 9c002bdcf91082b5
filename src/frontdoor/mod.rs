//! The front door: `entrypoint` listens on `$PORT` itself and the gateway on a loopback-only
//! port behind it. From the first second it answers `/healthz` (the container is alive), and
//! until the gateway is ready a small status page for every other path (restoring, starting,
//! or why it stopped). Once the gateway answers, HTTP and WebSocket traffic is proxied to it,
//! streamed both ways (hyper's bodies and upgraded connections: nothing is buffered whole),
//! with the forwarded headers of `headers::forward`. On a Space the responses may be framed
//! by the Hub's origin, `https://huggingface.co` (`headers::allow_hub_framing`). The owner, with the gateway
//! token, reads a JSON status at `STATUS_PATH`.

pub mod headers;
mod page;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::meta::Meta;
use crate::restore::Watch;
use crate::settings::{Cidr, Secret};

/// The owner's JSON status: under a prefix the gateway does not use.
pub const STATUS_PATH: &str = "/.entrypoint/status";

type Body = BoxBody<Bytes, hyper::Error>;

/// What the service is doing, as the status page says it.
#[derive(Debug, Clone)]
pub enum Phase {
    /// Restoring the latest backup from the store (its description), as the restore reports.
    Restoring { store: String, watch: Watch },
    /// The gateway was started at this time and does not answer yet.
    Starting { since: Instant },
    /// The gateway answers: traffic is proxied.
    Ready,
    /// The service is not going to start the gateway (again): why, and what to do.
    Stopped { why: String },
}

/// What the front door knows and serves; shared with the service, which moves the phase on.
pub struct Door {
    /// The gateway's loopback port.
    pub upstream: u16,
    /// Peers whose forwarded headers are believed.
    pub trusted: Vec<Cidr>,
    /// The Hub's origin, allowed to frame the app (on a Space, unless turned off).
    pub frame_origin: Option<String>,
    /// The gateway token: the key to `STATUS_PATH`.
    pub token: Option<Secret>,
    pub meta: Meta,
    state: Mutex<State>,
}

struct State {
    phase: Phase,
    store: Option<String>,
    restore: Option<String>,
    restore_failed: bool,
    restarts: u32,
}

impl Door {
    pub fn new(
        upstream: u16,
        trusted: Vec<Cidr>,
        frame_origin: Option<String>,
        token: Option<Secret>,
        meta: Meta,
    ) -> Door {
        Door {
            upstream,
            trusted,
            frame_origin,
            token,
            meta,
            state: Mutex::new(State {
                phase: Phase::Starting {
                    since: Instant::now(),
                },
                store: None,
                restore: None,
                restore_failed: false,
                restarts: 0,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_phase(&self, phase: Phase) {
        let mut s = self.state();
        if let (Phase::Starting { .. }, Phase::Ready | Phase::Stopped { .. }) = (&phase, &s.phase) {
            s.restarts += u32::from(matches!(s.phase, Phase::Ready));
        }
        s.phase = phase;
    }

    pub fn phase(&self) -> Phase {
        self.state().phase.clone()
    }

    /// The store's description and the restore's outcome, for the JSON status; a failed
    /// restore is also said on the status page (uploads are paused: the owner must act).
    pub fn set_restore(&self, store: String, outcome: String, failed: bool) {
        let mut s = self.state();
        s.store = Some(store);
        s.restore = Some(outcome);
        s.restore_failed = failed;
    }

    fn page(&self) -> Response<Body> {
        let s = self.state();
        page::status_page(&s.phase, s.restore_failed)
    }

    fn status_json(&self) -> serde_json::Value {
        let s = self.state();
        let restoring = match &s.phase {
            Phase::Restoring { watch, .. } => watch.now().map(|n| {
                serde_json::json!({
                    "version": n.version,
                    "time": n.time,
                    "size": n.size,
                    "fetched": n.fetched(),
                    "checking": n.checking,
                })
            }),
            _ => None,
        };
        let gateway = match &s.phase {
            Phase::Restoring { .. } => "restoring".to_string(),
            Phase::Starting { since } => format!("starting ({} s)", since.elapsed().as_secs()),
            Phase::Ready => "ready".to_string(),
            Phase::Stopped { why } => format!("stopped: {why}"),
        };
        serde_json::json!({
            "gateway": gateway,
            "gateway_restarts": s.restarts,
            "store": s.store,
            "restore": s.restore,
            "restoring": restoring,
            "last_backup": self.meta.record(),
        })
    }
}

/// Serve `listener` until `stop`; each connection on its own task.
pub async fn serve(listener: TcpListener, door: Arc<Door>, stop: CancellationToken) {
    tokio::spawn(watch_gateway(door.clone(), stop.clone()));
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!("front door: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let door = door.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(door.clone(), peer, req));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            if let Err(e) = conn.await {
                debug!("front door: connection from {peer}: {e}");
            }
        });
    }
}

/// While the gateway is starting, look every 250 ms whether it answers; then it is ready.
async fn watch_gateway(door: Arc<Door>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        if matches!(door.phase(), Phase::Starting { .. }) && healthy(door.upstream).await {
            door.set_phase(Phase::Ready);
        }
    }
}

/// True when the gateway answers `/healthz` with 200.
async fn healthy(port: u16) -> bool {
    let req = Request::get("/healthz")
        .header("host", format!("127.0.0.1:{port}"))
        .body(http_body_util::Empty::<Bytes>::new());
    let Ok(req) = req else { return false };
    let ask = async {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(conn);
        tx.send_request(req).await.ok()
    };
    match tokio::time::timeout(Duration::from_secs(2), ask).await {
        Ok(Some(r)) => r.status() == StatusCode::OK,
        _ => false,
    }
}

async fn handle(
    door: Arc<Door>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path();
    if path == "/healthz" && !matches!(door.phase(), Phase::Ready) {
        return Ok(text(
            StatusCode::OK,
            "application/json",
            r#"{"ok":true,"status":"live"}"#.into(),
        ));
    }
    if path == STATUS_PATH {
        return Ok(owner_status(&door, &req));
    }
    if let Err(headers::Refused(why)) =
        headers::forward(req.headers_mut(), peer.ip(), &door.trusted)
    {
        return Ok(text(
            StatusCode::FORBIDDEN,
            "text/plain",
            format!("refused: {why}\n"),
        ));
    }
    if !matches!(door.phase(), Phase::Ready) {
        return Ok(door.page());
    }
    match proxy(req, door.upstream).await {
        Ok(mut resp) => {
            if let Some(hub) = &door.frame_origin {
                headers::allow_hub_framing(resp.headers_mut(), hub);
            }
            Ok(resp)
        }
        Err(Failed::Connect(e)) => {
            // Nobody listens: the gateway went away (a restart). Say so until it is back.
            debug!("front door: cannot reach the gateway: {e}");
            door.set_phase(Phase::Starting {
                since: Instant::now(),
            });
            Ok(door.page())
        }
        Err(Failed::Exchange(e)) => {
            // This one exchange failed (the gateway closed it): the gateway itself is up.
            debug!("front door: proxying failed: {e}");
            Ok(text(
                StatusCode::BAD_GATEWAY,
                "text/plain",
                "the gateway closed the connection; try again\n".into(),
            ))
        }
    }
}

/// `STATUS_PATH`: the JSON status for a bearer of the gateway token, 401 for anyone else.
fn owner_status(door: &Door, req: &Request<Incoming>) -> Response<Body> {
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let ok = match (&door.token, given) {
        (Some(t), Some(g)) => constant_time_eq(t.expose().as_bytes(), g.as_bytes()),
        _ => false,
    };
    if !ok {
        return text(
            StatusCode::UNAUTHORIZED,
            "text/plain",
            "the gateway token is needed (Authorization: Bearer ...)\n".into(),
        );
    }
    text(
        StatusCode::OK,
        "application/json",
        door.status_json().to_string(),
    )
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a request could not be passed on.
enum Failed {
    /// The gateway's port does not answer.
    Connect(std::io::Error),
    /// The gateway took the connection but this exchange failed.
    Exchange(hyper::Error),
}

/// Pass `req` to the gateway and its response back, bodies streamed; an upgrade (WebSocket)
/// becomes a byte pipe between the two connections.
async fn proxy(mut req: Request<Incoming>, port: u16) -> Result<Response<Body>, Failed> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(Failed::Connect)?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(Failed::Exchange)?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            debug!("front door: gateway connection: {e}");
        }
    });
    let client_side = req
        .headers()
        .contains_key(hyper::header::UPGRADE)
        .then(|| hyper::upgrade::on(&mut req));
    let mut resp = sender
        .send_request(req.map(|b| b.boxed()))
        .await
        .map_err(Failed::Exchange)?;
    if let (StatusCode::SWITCHING_PROTOCOLS, Some(client_side)) = (resp.status(), client_side) {
        let gateway_side = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            match (client_side.await, gateway_side.await) {
                (Ok(c), Ok(g)) => {
                    let (mut c, mut g) = (TokioIo::new(c), TokioIo::new(g));
                    let _ = tokio::io::copy_bidirectional(&mut c, &mut g).await;
                }
                (c, g) => debug!("front door: upgrade failed: {:?} / {:?}", c.err(), g.err()),
            }
        });
    }
    Ok(resp.map(|b| b.boxed()))
}

fn text(status: StatusCode, content_type: &str, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)).map_err(|n| match n {}).boxed());
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    r
}

#[cfg(test)]
mod tests;

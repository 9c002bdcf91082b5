//! Pairing: how a browser with the gateway token reaches "Connected" without a shell.
//!
//! OpenClaw asks every new browser for a one-time device approval ("pairing required"), normally
//! given with `openclaw devices approve <id>` on the gateway host. A Space has no shell, and
//! browsers come through HF's proxy with forwarded headers, so OpenClaw's own "silent local
//! pairing" never applies to them.
//!
//! # Policy (`ENTRYPOINT_AUTO_PAIR`, default on)
//! The entrypoint approves a pending device-pairing request **only** when it is a Control UI
//! browser (`clientId` `openclaw-control-ui`) asking for the `operator` role with `operator.*`
//! scopes. The gateway creates such a request only after the connection passed gateway auth
//! (the shared token; or a device token / admin-issued setup code, which already imply
//! approval), so auto-approval turns "knows the token" into "paired" and nothing less:
//! - without the token an attacker gets `unauthorized` and no request exists to approve; they
//!   can still load the static Control UI page and hit the gateway's auth rate limit;
//! - with the token they could already do everything an operator can (the token is the
//!   Space's admin password), so pairing added no protection on a Space;
//! - node / non-operator requests (a machine offering `system.run` etc.) are left for manual
//!   approval and logged with the command to run.
//!
//! Set `ENTRYPOINT_AUTO_PAIR=false` to keep OpenClaw's manual flow (then approve from a Space
//! dev-mode shell, or open the single-use link from `openclaw dashboard --no-open`).
//!
//! # Mechanism
//! Event driven, no CLI calls (each costs ~5 CPU-s): once `/healthz` answers, the task opens one
//! WebSocket to the gateway on loopback as a trusted local backend client (`gateway-client` /
//! `backend`, shared token, no device identity: OpenClaw's documented path for control-plane
//! RPCs), lists pending requests once, then reacts to `device.pair.requested` events with
//! `device.pair.approve`. It reconnects (with backoff) when the gateway restarts.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::settings::Secret;

/// The Control UI's client id (OpenClaw `GATEWAY_CLIENT_NAMES.CONTROL_UI`).
const CONTROL_UI_CLIENT_ID: &str = "openclaw-control-ui";
/// Gateway protocol version spoken here (OpenClaw 2026.9.x).
const PROTOCOL: u64 = 4;
/// Scopes this connection asks for: `pairing` to list/approve, `admin` because the Control UI
/// requests `operator.admin` and an approver may only grant scopes it holds itself.
const SCOPES: [&str; 2] = ["operator.pairing", "operator.admin"];
/// How long to wait for the gateway's port before logging and trying again.
const HEALTH_DEADLINE: Duration = Duration::from_secs(180);
/// Bound on each handshake step and RPC answer.
const RPC_TIMEOUT: Duration = Duration::from_secs(20);
/// Safety net: re-list pending requests this often, in case an event was dropped (the gateway
/// drops events for slow subscribers). One in-process RPC, milliseconds of gateway CPU.
const RELIST_EVERY: Duration = Duration::from_secs(60);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Auto-approve Control UI pairing requests on the gateway at `127.0.0.1:port` until `shutdown`.
pub async fn run(port: u16, token: Secret, shutdown: CancellationToken) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let attempt = async {
            wait_healthy(port).await?;
            session(port, &token, &shutdown).await
        };
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = attempt => r,
        };
        match result {
            // A session that got going ends when the gateway stops or restarts: start over fast.
            Ok(()) => backoff = Duration::from_secs(1),
            Err(e) => {
                debug!("pairing: {e:#}; retrying in {backoff:?}");
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
    }
}

/// Poll `/healthz` (cheap, no auth) until it answers 200 or the deadline passes.
async fn wait_healthy(port: u16) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .no_proxy()
        .build()?;
    let url = format!("http://127.0.0.1:{port}/healthz");
    let deadline = tokio::time::Instant::now() + HEALTH_DEADLINE;
    while tokio::time::Instant::now() < deadline {
        if matches!(client.get(&url).send().await, Ok(r) if r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("gateway health check {url} did not answer within {HEALTH_DEADLINE:?}")
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One connection: handshake, list, then approve on events until the socket closes.
/// Returns `Ok` when an established session ended, `Err` when it could not be established.
async fn session(port: u16, token: &Secret, shutdown: &CancellationToken) -> anyhow::Result<()> {
    let url = format!("ws://127.0.0.1:{port}/");
    let (mut ws, _) =
        tokio::time::timeout(RPC_TIMEOUT, tokio_tungstenite::connect_async(url.as_str()))
            .await
            .map_err(|_| anyhow!("connecting to {url} timed out"))?
            .with_context(|| format!("connecting to {url}"))?;
    handshake(&mut ws, token).await?;
    info!("pairing: watching for Control UI pairing requests (ENTRYPOINT_AUTO_PAIR=false turns this off)");

    let mut approver = Approver::default();
    let mut next_id = 0u64;
    ws.send(text(request(
        &mut next_id,
        "list",
        "device.pair.list",
        json!({}),
    )))
    .await?;
    let mut relist = tokio::time::interval(RELIST_EVERY);
    relist.reset();
    loop {
        let frame = tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = ws.close(None).await;
                return Ok(());
            }
            _ = relist.tick() => {
                ws.send(text(request(&mut next_id, "list", "device.pair.list", json!({})))).await?;
                continue;
            }
            f = ws.next() => f,
        };
        let raw = match frame {
            None => return Ok(()),
            Some(Err(e)) => {
                debug!("pairing: connection lost: {e}");
                return Ok(());
            }
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(c))) => {
                debug!("pairing: gateway closed the connection: {c:?}");
                return Ok(());
            }
            Some(Ok(_)) => continue,
        };
        let Ok(frame) = serde_json::from_str::<Value>(&raw) else {
            continue;
        };
        let requests: Vec<Value> = match (frame["type"].as_str(), frame["event"].as_str()) {
            (Some("event"), Some("device.pair.requested")) => vec![frame["payload"].clone()],
            (Some("res"), _) => approver.on_response(&frame),
            _ => Vec::new(),
        };
        for req in requests {
            if let Some(id) = approver.consider(&req) {
                let params = json!({ "requestId": id });
                ws.send(text(request(
                    &mut next_id,
                    &format!("approve:{id}"),
                    "device.pair.approve",
                    params,
                )))
                .await?;
            }
        }
    }
}

/// Answer the `connect.challenge` with a backend-client `connect` and wait for `hello-ok`.
async fn handshake(ws: &mut Ws, token: &Secret) -> anyhow::Result<()> {
    let challenge = next_json(ws).await?;
    if challenge["event"] != "connect.challenge" {
        bail!("expected connect.challenge, got {}", short(&challenge));
    }
    let connect = json!({
        "type": "req", "id": "connect", "method": "connect",
        "params": {
            "minProtocol": PROTOCOL, "maxProtocol": PROTOCOL,
            "client": {
                "id": "gateway-client", "mode": "backend", "platform": std::env::consts::OS,
                "version": env!("CARGO_PKG_VERSION"), "displayName": "openclaw-space auto-pair",
            },
            "role": "operator", "scopes": SCOPES, "caps": [],
            "auth": { "token": token.expose() },
        }
    });
    ws.send(Message::text(connect.to_string())).await?;
    loop {
        let frame = next_json(ws).await?;
        if frame["type"] != "res" || frame["id"] != "connect" {
            continue;
        }
        if frame["ok"] == true {
            return Ok(());
        }
        // The gateway answers UNAVAILABLE (startup-sidecars) for a few seconds after the port
        // opens; any other error (wrong token, protocol change) is worth a warning.
        let err = &frame["error"];
        if err["details"]["reason"] == "startup-sidecars" {
            bail!("gateway still starting");
        }
        warn!(
            "pairing: the gateway refused the entrypoint's loopback connection: {} ({}); browsers need manual approval",
            err["message"].as_str().unwrap_or("no message"),
            err["code"].as_str().unwrap_or("no code"),
        );
        bail!("connect refused");
    }
}

/// Next text frame as JSON, bounded by `RPC_TIMEOUT`.
async fn next_json(ws: &mut Ws) -> anyhow::Result<Value> {
    loop {
        let msg = tokio::time::timeout(RPC_TIMEOUT, ws.next())
            .await
            .map_err(|_| anyhow!("no answer from the gateway within {RPC_TIMEOUT:?}"))?
            .ok_or_else(|| anyhow!("gateway closed the connection"))??;
        match msg {
            Message::Text(t) => {
                return serde_json::from_str(&t).context("gateway sent a frame that is not JSON")
            }
            Message::Close(c) => bail!("gateway closed the connection: {c:?}"),
            _ => continue,
        }
    }
}

/// A frame for `value`.
fn text(value: Value) -> Message {
    Message::text(value.to_string())
}

fn request(next_id: &mut u64, tag: &str, method: &str, params: Value) -> Value {
    *next_id += 1;
    json!({ "type": "req", "id": format!("{tag}:{next_id}"), "method": method, "params": params })
}

/// Short, secret-free description of a frame for errors.
fn short(v: &Value) -> String {
    let s = v["event"].as_str().or(v["type"].as_str()).unwrap_or("?");
    s.chars().take(80).collect()
}

/// The policy, kept apart from the socket so it can be tested.
#[derive(Default)]
struct Approver {
    /// Request ids already sent for approval or already reported, so a list racing an event
    /// neither approves twice nor logs twice.
    seen: HashSet<String>,
}

impl Approver {
    /// The request id to approve, if `req` (a pending pairing request) is eligible.
    fn consider(&mut self, req: &Value) -> Option<String> {
        let id = req["requestId"].as_str()?.to_owned();
        if !self.seen.insert(id.clone()) {
            return None;
        }
        match eligible(req) {
            Ok(()) => Some(id),
            Err(why) => {
                info!(
                    client = req["clientId"].as_str().unwrap_or("?"),
                    role = req["role"].as_str().unwrap_or("?"),
                    "pairing: not auto-approving request {id} ({why}); approve it by hand with `openclaw devices approve {id}` if you trust it"
                );
                None
            }
        }
    }

    /// Pending requests carried by a `device.pair.list` answer; logs approval outcomes.
    fn on_response(&mut self, frame: &Value) -> Vec<Value> {
        let id = frame["id"].as_str().unwrap_or_default();
        if id.starts_with("list:") {
            return frame["payload"]["pending"]
                .as_array()
                .cloned()
                .unwrap_or_default();
        }
        if let Some(rest) = id.strip_prefix("approve:") {
            let request_id = rest.rsplit_once(':').map_or(rest, |(r, _)| r);
            if frame["ok"] == true {
                let device = frame["payload"]["device"]["deviceId"]
                    .as_str()
                    .unwrap_or("?");
                info!(
                    device = &device[..device.len().min(12)],
                    "pairing: approved Control UI browser (request {request_id})"
                );
            } else {
                warn!(
                    "pairing: approving request {request_id} failed: {}",
                    frame["error"]["message"].as_str().unwrap_or("no message")
                );
            }
        }
        Vec::new()
    }
}

/// A Control UI browser asking only for operator access.
fn eligible(req: &Value) -> Result<(), &'static str> {
    if req["clientId"] != CONTROL_UI_CLIENT_ID {
        return Err("not the Control UI");
    }
    if req["role"] != "operator" {
        return Err("role is not operator");
    }
    let only_operator = |v: &Value| {
        v.as_array()
            .is_none_or(|a| a.iter().all(|r| r == "operator"))
    };
    if !only_operator(&req["roles"]) {
        return Err("asks for a role other than operator");
    }
    let operator_scopes = req["scopes"].as_array().is_none_or(|a| {
        a.iter()
            .all(|s| s.as_str().is_some_and(|s| s.starts_with("operator.")))
    });
    if !operator_scopes {
        return Err("asks for non-operator scopes");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request as OpenClaw 2026.9.6 broadcasts it for a browser behind the proxy.
    fn control_ui() -> Value {
        json!({
            "requestId": "6415974e", "deviceId": "2718bc98e236", "publicKey": "FQ0F",
            "platform": "Linux x86_64", "clientId": "openclaw-control-ui", "clientMode": "webchat",
            "role": "operator", "roles": ["operator"],
            "scopes": ["operator.admin", "operator.read", "operator.write", "operator.approvals", "operator.questions", "operator.pairing"],
            "remoteIp": "192.168.77.2", "silent": false, "isRepair": false, "ts": 1
        })
    }

    #[test]
    fn approves_a_control_ui_browser_once() {
        let mut a = Approver::default();
        assert_eq!(a.consider(&control_ui()), Some("6415974e".into()));
        assert_eq!(
            a.consider(&control_ui()),
            None,
            "the same request from a list and an event is approved once"
        );
    }

    #[test]
    fn leaves_nodes_and_other_clients_alone() {
        let mut a = Approver::default();
        let mut node = control_ui();
        node["requestId"] = json!("n1");
        node["role"] = json!("node");
        node["roles"] = json!(["node"]);
        assert_eq!(a.consider(&node), None);

        let mut cli = control_ui();
        cli["requestId"] = json!("c1");
        cli["clientId"] = json!("cli");
        assert_eq!(a.consider(&cli), None);

        let mut mixed = control_ui();
        mixed["requestId"] = json!("m1");
        mixed["roles"] = json!(["operator", "node"]);
        assert_eq!(a.consider(&mixed), None);

        let mut odd_scope = control_ui();
        odd_scope["requestId"] = json!("s1");
        odd_scope["scopes"] = json!(["operator.read", "node.exec"]);
        assert_eq!(a.consider(&odd_scope), None);
    }

    #[test]
    fn list_answers_yield_pending_requests() {
        let mut a = Approver::default();
        let res = json!({"type":"res","id":"list:1","ok":true,"payload":{"pending":[control_ui()],"paired":[]}});
        let pending = a.on_response(&res);
        assert_eq!(pending.len(), 1);
        assert_eq!(a.consider(&pending[0]), Some("6415974e".into()));
        assert!(a
            .on_response(&json!({"type":"res","id":"approve:6415974e:2","ok":true,"payload":{}}))
            .is_empty());
    }
}

/// Against a running gateway (development aid): `OPENCLAW_GATEWAY_TOKEN=... PAIRING_LIVE_PORT=7860
/// cargo test pairing::live -- --ignored --nocapture` approves Control UI requests for 60 s.
#[cfg(test)]
mod live {
    #[tokio::test]
    #[ignore = "needs a running gateway"]
    async fn live() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .try_init();
        let port = std::env::var("PAIRING_LIVE_PORT")
            .expect("PAIRING_LIVE_PORT")
            .parse()
            .expect("a port");
        let token = crate::settings::Secret::new(
            std::env::var("OPENCLAW_GATEWAY_TOKEN").expect("OPENCLAW_GATEWAY_TOKEN"),
        );
        let stop = tokio_util::sync::CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            s.cancel();
        });
        super::run(port, token, stop).await;
    }
}

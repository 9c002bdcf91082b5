//! HTTP side of the fake Hub: one fallback handler that records the request, applies any
//! injected fault, and routes by path segments to the handlers of facts §6 (numbers in the
//! handler comments are that table's rows). The handlers themselves are in
//! `routes/{repos,download,upload,buckets}.rs`.
//!
//! Routing is done by hand on percent-decoded segments rather than with axum's router: Hub
//! paths mix `{owner}/{name}` with wildcard file paths and `%2F`-encoded revisions, and a
//! plain `match` on segments reads more clearly than a dozen overlapping route patterns.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use base64::Engine as _;
use futures_util::StreamExt as _;
use serde_json::{json, Value};

use super::faults::Action;
use super::{
    lfs_entry, lfs_pointer, now_iso, regular_entry, sha256_hex, unix_now, xet, Access, Commit,
    FileEntry, Inner, Repo, RepoType, RequestRecord, State as HubState, Transfer,
};

mod buckets;
mod download;
mod repos;
mod spaces;
mod upload;

use download::{cdn, resolve};
use repos::{create_repo, delete_repo, info, list_commits, paths_info, super_squash, tree};
use upload::{commit, lfs_batch, lfs_upload, lfs_verify, preupload, xet_token};

type Hub = Arc<Inner>;

pub(super) fn router(hub: Hub) -> Router {
    Router::new().fallback(handle).with_state(hub)
}

/// A parsed request, as the route handlers see it.
struct Req<'a> {
    method: &'a Method,
    /// Percent-decoded path segments.
    segs: Vec<String>,
    query: Option<&'a str>,
    headers: &'a HeaderMap,
    body: &'a Bytes,
}

async fn handle(State(hub): State<Hub>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().map(str::to_string);
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => return error(400, None, &format!("could not read the request body: {e}")),
    };
    let record = |status: u16| RequestRecord {
        method: parts.method.to_string(),
        path: path.clone(),
        query: query.clone(),
        status,
        body_bytes: body.len() as u64,
    };
    let fault = hub.faults.take(parts.method.as_str(), &path);
    if fault == Some(Action::Stall) {
        hub.state().requests.push(record(0));
        hub.shutdown.cancelled().await;
        return error(503, None, "fakehub shutting down");
    }
    if let Some(Action::Delay(d)) = fault {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = hub.shutdown.cancelled() => return error(503, None, "fakehub shutting down"),
        }
    }
    let req = Req {
        method: &parts.method,
        segs: path.split('/').skip(1).map(decode).collect(),
        query: query.as_deref(),
        headers: &parts.headers,
        body: &body,
    };
    let response = match fault {
        Some(Action::Status(code)) => error(code, None, "injected failure"),
        Some(Action::StatusWithCode(code, ref x)) => error(code, Some(x), "injected failure"),
        Some(Action::RateLimited { retry_after_secs }) => rate_limited(retry_after_secs),
        Some(Action::StatusAfter(code)) => {
            let _applied = route(&hub, &req);
            error(code, None, "injected failure after the request was applied")
        }
        Some(Action::Truncate(n)) => {
            map_body(route(&hub, &req), |b| b.slice(..n.min(b.len()))).await
        }
        Some(Action::Corrupt) => map_body(route(&hub, &req), corrupt).await,
        Some(Action::Abort(n)) => abort_body(route(&hub, &req), n).await,
        Some(Action::Trickle { chunk, every }) => {
            trickle_body(route(&hub, &req), chunk, every).await
        }
        Some(Action::Stall) | Some(Action::Delay(_)) | None => route(&hub, &req),
    };
    hub.state()
        .requests
        .push(record(response.status().as_u16()));
    response
}

/// Dispatch on method and path segments.
fn route(hub: &Hub, req: &Req) -> Response {
    let s: Vec<&str> = req.segs.iter().map(String::as_str).collect();
    let m = req.method;
    match s.as_slice() {
        ["api", "repos", "create"] if m == Method::POST => create_repo(hub, req),
        ["api", "repos", "delete"] if m == Method::DELETE => delete_repo(hub, req),
        ["api", "buckets", owner, name] if m == Method::POST => {
            buckets::create(hub, req, &format!("{owner}/{name}"))
        }
        ["api", "buckets", owner, name] if m == Method::GET => {
            buckets::info(hub, req, &format!("{owner}/{name}"))
        }
        ["api", "buckets", owner, name, action, rest @ ..] => {
            let id = format!("{owner}/{name}");
            match (*action, m) {
                ("tree", &Method::GET) => buckets::tree(hub, req, &id, &rest.join("/")),
                ("paths-info", &Method::POST) => buckets::paths_info(hub, req, &id),
                ("batch", &Method::POST) => buckets::batch(hub, req, &id),
                ("xet-write-token", &Method::GET) => buckets::xet_token(hub, req, &id, true),
                ("xet-read-token", &Method::GET) => buckets::xet_token(hub, req, &id, false),
                _ => not_found_route(req),
            }
        }
        ["buckets", owner, name, "resolve", path @ ..]
            if !path.is_empty() && (m == Method::GET || m == Method::HEAD) =>
        {
            buckets::resolve(hub, req, &format!("{owner}/{name}"), &path.join("/"))
        }
        ["api", t, owner, name] if m == Method::GET => match RepoType::from_plural(t) {
            Some(rt) => info(hub, req, rt, &format!("{owner}/{name}"), "main"),
            None => not_found_route(req),
        },
        ["api", "validate-yaml"] if m == Method::POST => spaces::validate_yaml(req),
        ["api", "spaces", owner, name, "secrets"] => {
            spaces::secrets(hub, req, &format!("{owner}/{name}"))
        }
        ["api", "spaces", owner, name, "variables"] => {
            spaces::variables(hub, req, &format!("{owner}/{name}"))
        }
        ["api", t, owner, name, action, rest @ ..] => {
            let Some(rt) = RepoType::from_plural(t) else {
                return not_found_route(req);
            };
            let id = format!("{owner}/{name}");
            let rev = rest.join("/");
            match (*action, m) {
                ("revision", &Method::GET) => info(hub, req, rt, &id, &rev),
                ("preupload", &Method::POST) => preupload(hub, req, rt, &id, &rev),
                ("commit", &Method::POST) => commit(hub, req, rt, &id, &rev),
                ("paths-info", &Method::POST) => paths_info(hub, req, rt, &id, &rev),
                ("tree", &Method::GET) => {
                    let (rev, dir) = rest
                        .split_first()
                        .map(|(r, p)| (*r, p.join("/")))
                        .unwrap_or(("main", String::new()));
                    tree(hub, req, rt, &id, rev, &dir)
                }
                ("xet-write-token", &Method::GET) => xet_token(hub, req, rt, &id, true),
                ("xet-read-token", &Method::GET) => xet_token(hub, req, rt, &id, false),
                ("super-squash", &Method::POST) => super_squash(hub, req, rt, &id, &rev),
                ("commits", &Method::GET) => list_commits(hub, req, rt, &id, &rev),
                _ => not_found_route(req),
            }
        }
        ["lfs-upload", oid] if m == Method::PUT => lfs_upload(hub, req, oid),
        ["lfs-verify", ..] if m == Method::POST => lfs_verify(hub, req),
        ["cdn", oid] if m == Method::GET || m == Method::HEAD => cdn(hub, req, oid),
        _ => {
            // Resolve and LFS batch URLs start with the repo's web prefix: "" | datasets/ | spaces/.
            let (rt, rest) = match s.first() {
                Some(&"datasets") => (RepoType::Dataset, &s[1..]),
                Some(&"spaces") => (RepoType::Space, &s[1..]),
                _ => (RepoType::Model, &s[..]),
            };
            match rest {
                [owner, name, "resolve", rev, path @ ..]
                    if !path.is_empty() && (m == Method::GET || m == Method::HEAD) =>
                {
                    resolve(
                        hub,
                        req,
                        rt,
                        &format!("{owner}/{name}"),
                        rev,
                        &path.join("/"),
                    )
                }
                [owner, name_git, "info", "lfs", "objects", "batch"] if m == Method::POST => {
                    match name_git.strip_suffix(".git") {
                        Some(name) => lfs_batch(hub, req, rt, &format!("{owner}/{name}")),
                        None => not_found_route(req),
                    }
                }
                _ => not_found_route(req),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Auth

enum Caller {
    Anonymous,
    /// A token the hub does not know: 401 everywhere, like the real Hub.
    Invalid,
    Token(Access),
}

fn caller(st: &HubState, headers: &HeaderMap) -> Caller {
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Caller::Anonymous;
    };
    let token = value.strip_prefix("Bearer ").unwrap_or(value).trim();
    match st.tokens.get(token) {
        Some(a) => Caller::Token(*a),
        None => Caller::Invalid,
    }
}

/// Why a request was refused; small, so auth checks can return `Result<_, Denied>`.
enum Denied {
    /// No valid token where one is needed.
    Unauthorized,
    /// A read-only token for a write.
    ReadOnly,
    /// Missing, or private and the caller has no valid token.
    RepoNotFound,
}

impl Denied {
    fn response(self) -> Response {
        match self {
            Denied::Unauthorized => error(401, None, "Invalid credentials in Authorization header"),
            Denied::ReadOnly => error(
                403,
                None,
                "You don't have the rights to write with this token (read-only)",
            ),
            Denied::RepoNotFound => repo_not_found(),
        }
    }
}

/// The repo if the caller may read it (private repos look missing to callers without a token).
fn readable<'s>(st: &'s HubState, req: &Req, rt: RepoType, id: &str) -> Result<&'s Repo, Denied> {
    let who = caller(st, req.headers);
    if matches!(who, Caller::Invalid) {
        return Err(Denied::Unauthorized);
    }
    match st.repos.get(&(rt, id.to_string())) {
        Some(repo) if !repo.private || matches!(who, Caller::Token(_)) => Ok(repo),
        _ => Err(Denied::RepoNotFound),
    }
}

/// Check the caller may write (401 without a valid token, 403 with a read-only one).
fn may_write(st: &HubState, req: &Req) -> Result<(), Denied> {
    match caller(st, req.headers) {
        Caller::Token(Access::Write) => Ok(()),
        Caller::Token(Access::Read) => Err(Denied::ReadOnly),
        Caller::Anonymous | Caller::Invalid => Err(Denied::Unauthorized),
    }
}

/// For writes: 401/403 come first (even for a private repo the caller cannot see), then
/// the repo must exist.
fn writable<'s>(st: &'s HubState, req: &Req, rt: RepoType, id: &str) -> Result<&'s Repo, Denied> {
    may_write(st, req)?;
    readable(st, req, rt, id)
}

fn is_true(v: &str) -> bool {
    matches!(v, "true" | "True" | "1")
}

fn file_json(path: &str, f: &FileEntry) -> Value {
    let mut v = json!({"type": "file", "oid": f.git_oid, "size": f.size, "path": path});
    if f.lfs {
        let pointer_size = lfs_pointer(&f.sha256, f.size).len();
        v["lfs"] = json!({"oid": f.sha256, "size": f.size, "pointerSize": pointer_size});
    }
    if let Some(x) = &f.xet_hash {
        v["xetHash"] = json!(x);
    }
    v
}

fn dir_json(path: &str) -> Value {
    json!({"type": "directory", "oid": super::git_blob_oid(path.as_bytes()), "size": 0, "path": path})
}

// ---------------------------------------------------------------------------------------------
// Responses

fn header(v: &str) -> HeaderValue {
    HeaderValue::from_str(v).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// Every response goes through here, so every one carries `Content-Length`.
fn respond(status: u16, body: Bytes, headers: &[(&str, String)], content_type: &str) -> Response {
    let mut r = Response::new(Body::from(body.clone()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    h.insert("content-type", header(content_type));
    h.insert("content-length", header(&body.len().to_string()));
    for (k, v) in headers {
        h.insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).expect("static header name"),
            header(v),
        );
    }
    r
}

fn json_response(status: u16, body: &Value, headers: &[(&str, String)]) -> Response {
    respond(
        status,
        Bytes::from(body.to_string()),
        headers,
        "application/json; charset=utf-8",
    )
}

fn lfs_json(body: &Value) -> Response {
    respond(
        200,
        Bytes::from(body.to_string()),
        &[],
        "application/vnd.git-lfs+json",
    )
}

/// JSON `{"error": msg}` with `X-Error-Message` and, when given, `X-Error-Code`.
fn error(status: u16, code: Option<&str>, msg: &str) -> Response {
    let mut headers = vec![("X-Error-Message", msg.to_string())];
    if let Some(c) = code {
        headers.push(("X-Error-Code", c.to_string()));
    }
    json_response(status, &json!({"error": msg}), &headers)
}

fn repo_not_found() -> Response {
    error(
        404,
        Some("RepoNotFound"),
        "Repository not found. Make sure the repo exists and your token has access to it.",
    )
}

/// The repo the caller may use (`access`, from `readable` or `writable`) and `rev` resolved
/// in it; or the Hub's answer when either fails.
fn at_rev<'s>(
    access: Result<&'s Repo, Denied>,
    rev: &str,
) -> Result<(&'s Repo, String), Box<Response>> {
    let repo = access.map_err(|d| Box::new(d.response()))?;
    let oid = repo
        .resolve_rev(rev)
        .ok_or_else(|| Box::new(revision_not_found(rev)))?;
    Ok((repo, oid))
}

fn revision_not_found(rev: &str) -> Response {
    error(
        404,
        Some("RevisionNotFound"),
        &format!("Invalid rev id: {rev}"),
    )
}

fn not_found_route(req: &Req) -> Response {
    error(
        404,
        None,
        &format!(
            "fakehub: no route for {} /{}",
            req.method,
            req.segs.join("/")
        ),
    )
}

fn rate_limited(retry_after_secs: u64) -> Response {
    let headers = [
        ("Retry-After", retry_after_secs.to_string()),
        ("RateLimit", format!("\"api\";r=0;t={retry_after_secs}")),
        (
            "RateLimit-Policy",
            "\"fixed window\";\"api\";q=1000;w=300".to_string(),
        ),
    ];
    let msg = "You have exceeded the rate limit for repository commits (128 per hour).";
    let mut r = json_response(429, &json!({"error": msg}), &headers);
    r.headers_mut().insert("x-error-message", header(msg));
    r
}

async fn map_body(r: Response, f: impl FnOnce(Bytes) -> Bytes) -> Response {
    let (mut parts, body) = r.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let new = f(bytes);
    parts
        .headers
        .insert("content-length", header(&new.len().to_string()));
    Response::from_parts(parts, Body::from(new))
}

fn corrupt(b: Bytes) -> Bytes {
    if b.is_empty() {
        return b;
    }
    let mut v = b.to_vec();
    let mid = v.len() / 2;
    v[mid] ^= 0xFF;
    Bytes::from(v)
}

/// Keep the announced Content-Length, send `n` bytes, then fail the body so the server drops
/// the connection mid-response.
async fn abort_body(r: Response, n: usize) -> Response {
    let (parts, body) = r.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let head = bytes.slice(..n.min(bytes.len()));
    let stream = futures_util::stream::iter(vec![
        Ok::<Bytes, std::io::Error>(head),
        Err(std::io::Error::other("fakehub: injected connection abort")),
    ]);
    Response::from_parts(parts, Body::from_stream(stream))
}

async fn trickle_body(r: Response, chunk: usize, every: Duration) -> Response {
    let (parts, body) = r.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let chunks: Vec<Bytes> = bytes
        .chunks(chunk.max(1))
        .map(Bytes::copy_from_slice)
        .collect();
    let stream = futures_util::stream::iter(chunks).then(move |c| async move {
        tokio::time::sleep(every).await;
        Ok::<Bytes, std::io::Error>(c)
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

fn decode(seg: &str) -> String {
    percent_encoding::percent_decode_str(seg)
        .decode_utf8_lossy()
        .into_owned()
}

impl Repo {
    /// Branch name or full commit id → commit id.
    fn resolve_rev(&self, rev: &str) -> Option<String> {
        let rev = if rev.is_empty() { "main" } else { rev };
        self.refs
            .get(rev)
            .cloned()
            .or_else(|| self.commits.contains_key(rev).then(|| rev.to_string()))
    }

    /// Forget commits no branch reaches (after a super-squash).
    fn drop_unreachable(&mut self) {
        let mut keep = BTreeSet::new();
        for head in self.refs.values() {
            let mut next = Some(head.clone());
            while let Some(oid) = next {
                if !keep.insert(oid.clone()) {
                    break;
                }
                next = self.commits.get(&oid).and_then(|c| c.parent.clone());
            }
        }
        self.commits.retain(|oid, _| keep.contains(oid));
    }
}

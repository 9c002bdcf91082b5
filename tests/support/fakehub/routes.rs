//! HTTP side of the fake Hub: one fallback handler that records the request, applies any
//! injected fault, and routes by path segments to the handlers of facts §6 (numbers in the
//! handler comments are that table's rows).
//!
//! Routing is done by hand on percent-decoded segments rather than with axum's router: Hub
//! paths mix `{owner}/{name}` with wildcard file paths and `%2F`-encoded revisions, and a
//! plain `match` on segments reads more clearly than a dozen overlapping route patterns.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Body;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use base64::Engine as _;
use serde_json::{json, Value};

use super::faults::Action;
use super::{
    lfs_entry, lfs_pointer, now_iso, regular_entry, sha256_hex, unix_now, Access, Commit,
    FileEntry, Inner, RepoType, RequestRecord, State as HubState, Transfer,
};

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
        ["api", t, owner, name] if m == Method::GET => match RepoType::from_plural(t) {
            Some(rt) => info(hub, req, rt, &format!("{owner}/{name}"), "main"),
            None => not_found_route(req),
        },
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
fn readable<'s>(
    st: &'s HubState,
    req: &Req,
    rt: RepoType,
    id: &str,
) -> Result<&'s super::Repo, Denied> {
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
fn writable<'s>(
    st: &'s HubState,
    req: &Req,
    rt: RepoType,
    id: &str,
) -> Result<&'s super::Repo, Denied> {
    may_write(st, req)?;
    readable(st, req, rt, id)
}

// ---------------------------------------------------------------------------------------------
// Handlers

/// Row 1: `POST /api/repos/create`.
fn create_repo(hub: &Hub, req: &Req) -> Response {
    let body: Value = match serde_json::from_slice(req.body) {
        Ok(v) => v,
        Err(e) => return error(400, None, &format!("create: body is not JSON: {e}")),
    };
    {
        let st = hub.state();
        if let Err(d) = may_write(&st, req) {
            return d.response();
        }
    }
    let Some(name) = body["name"].as_str() else {
        return error(400, None, "create: missing \"name\"");
    };
    let rt = match body["type"].as_str() {
        None => RepoType::Model,
        Some(t) => match RepoType::from_singular(t) {
            Some(rt) => rt,
            None => return error(400, None, &format!("create: unknown repo type {t:?}")),
        },
    };
    // The fake has no user accounts: a repo id without an organization goes under "user".
    let owner = body["organization"].as_str().unwrap_or("user");
    let id = format!("{owner}/{name}");
    let private = body["private"].as_bool().unwrap_or(false)
        || body["visibility"].as_str() == Some("private");
    let url = format!("{}/{}{id}", hub.endpoint, rt.url_prefix());
    if !hub.create_repo(rt, &id, private) {
        let msg = format!(
            "You already created this {} repo",
            rt.plural().trim_end_matches('s')
        );
        return json_response(
            409,
            &json!({"error": msg, "url": url}),
            &[("X-Error-Message", msg.clone())],
        );
    }
    json_response(
        200,
        &json!({"url": url, "name": id, "id": format!("fake-{id}")}),
        &[],
    )
}

/// Row 13: `DELETE /api/repos/delete`.
fn delete_repo(hub: &Hub, req: &Req) -> Response {
    let body: Value = serde_json::from_slice(req.body).unwrap_or(Value::Null);
    let mut st = hub.state();
    if let Err(d) = may_write(&st, req) {
        return d.response();
    }
    let rt = body["type"]
        .as_str()
        .and_then(RepoType::from_singular)
        .unwrap_or(RepoType::Model);
    let id = format!(
        "{}/{}",
        body["organization"].as_str().unwrap_or("user"),
        body["name"].as_str().unwrap_or("")
    );
    match st.repos.remove(&(rt, id)) {
        Some(_) => json_response(200, &json!({}), &[]),
        None => repo_not_found(),
    }
}

/// Row 2: `GET /api/{T}/{id}[/revision/{rev}]`.
fn info(hub: &Hub, req: &Req, rt: RepoType, id: &str, rev: &str) -> Response {
    let st = hub.state();
    let repo = match readable(&st, req, rt, id) {
        Ok(r) => r,
        Err(d) => return d.response(),
    };
    let Some(oid) = repo.resolve_rev(rev) else {
        return revision_not_found(rev);
    };
    let commit = &repo.commits[&oid];
    let siblings: Vec<Value> = commit
        .files
        .keys()
        .map(|p| json!({"rfilename": p}))
        .collect();
    let owner = id.split('/').next().unwrap_or_default();
    let body = json!({
        "id": id, "_id": format!("fake-{id}"), "author": owner, "sha": oid,
        "private": repo.private, "gated": false, "disabled": false,
        "lastModified": commit.date, "createdAt": repo.created_at,
        "siblings": siblings, "tags": [], "downloads": 0, "likes": 0,
    });
    json_response(200, &body, &[])
}

/// Row 3: `HEAD|GET /{P}{id}/resolve/{rev}/{path}`.
fn resolve(hub: &Hub, req: &Req, rt: RepoType, id: &str, rev: &str, path: &str) -> Response {
    let st = hub.state();
    let repo = match readable(&st, req, rt, id) {
        Ok(r) => r,
        Err(d) => return d.response(),
    };
    let Some(oid) = repo.resolve_rev(rev) else {
        return revision_not_found(rev);
    };
    let Some(file) = repo.commits[&oid].files.get(path) else {
        let mut r = error(
            404,
            Some("EntryNotFound"),
            &format!("Entry not found: {path}"),
        );
        r.headers_mut().insert("x-repo-commit", header(&oid));
        return r;
    };
    let mut headers: Vec<(&str, String)> = vec![("X-Repo-Commit", oid.clone())];
    if file.lfs {
        headers.push(("ETag", format!("\"{}\"", file.sha256)));
        headers.push(("X-Linked-Etag", format!("\"{}\"", file.sha256)));
        headers.push(("X-Linked-Size", file.size.to_string()));
    } else {
        headers.push(("ETag", format!("\"{}\"", file.git_oid)));
    }
    if let Some(x) = &file.xet_hash {
        headers.push(("X-Xet-Hash", x.clone()));
        let token_url = format!(
            "{}/api/{}/{id}/xet-read-token/{oid}",
            hub.endpoint,
            rt.plural()
        );
        headers.push(("Link", format!("<{token_url}>; rel=\"xet-auth\"")));
    }
    if file.lfs && hub.faults.redirect_resolve() {
        // The real Hub sends LFS content to a CDN on another origin.
        let port = hub.endpoint.rsplit(':').next().unwrap_or_default();
        headers.push((
            "Location",
            format!("http://localhost:{port}/cdn/{}", file.sha256),
        ));
        return respond(302, Bytes::new(), &headers, "text/plain");
    }
    let (file, content) = (file.clone(), st.blobs.get(&file.sha256).cloned());
    drop(st); // rebuilding a xet file reads the CAS: not under the lock
    serve_content(req, file_or_cas(hub, &file, content), file.size, headers)
}

/// `GET|HEAD /cdn/<sha256>`: the "other origin" of a redirected resolve; no auth, like a CDN URL.
fn cdn(hub: &Hub, req: &Req, sha256: &str) -> Response {
    let (content, entry) = {
        let st = hub.state();
        let entry = st
            .repos
            .values()
            .flat_map(|r| r.commits.values())
            .flat_map(|c| c.files.values())
            .find(|f| f.sha256 == sha256)
            .cloned();
        (st.blobs.get(sha256).cloned(), entry)
    };
    let Some(entry) = entry else {
        return error(404, None, "no such object");
    };
    let headers = vec![("ETag", format!("\"{sha256}\""))];
    serve_content(req, file_or_cas(hub, &entry, content), entry.size, headers)
}

/// The bytes of a file: from the blob store, else rebuilt from the xet CAS.
fn file_or_cas(hub: &Hub, file: &FileEntry, content: Option<Bytes>) -> Result<Bytes, String> {
    if let Some(c) = content {
        return Ok(c);
    }
    match &file.xet_hash {
        Some(x) => super::xet::read_file(&hub.cas_dir, x)
            .map(Bytes::from)
            .map_err(|e| format!("{e:#}")),
        None => Err(format!("fakehub has no bytes for sha256 {}", file.sha256)),
    }
}

/// 200/206 with `Accept-Ranges`, honouring `Range: bytes=a-b` on GET; HEAD has no body.
fn serve_content(
    req: &Req,
    content: Result<Bytes, String>,
    size: u64,
    mut headers: Vec<(&str, String)>,
) -> Response {
    headers.push(("Accept-Ranges", "bytes".into()));
    if req.method == Method::HEAD {
        headers.push(("Content-Length", size.to_string()));
        return respond(200, Bytes::new(), &headers, "application/octet-stream");
    }
    let content = match content {
        Ok(c) => c,
        Err(e) => return error(500, None, &e),
    };
    let range = req.headers.get("range").and_then(|v| v.to_str().ok());
    let Some(range) = range else {
        return respond(200, content, &headers, "application/octet-stream");
    };
    let len = content.len() as u64;
    match parse_range(range, len) {
        Some((a, b)) => {
            headers.push(("Content-Range", format!("bytes {a}-{b}/{len}")));
            respond(
                206,
                content.slice(a as usize..=b as usize),
                &headers,
                "application/octet-stream",
            )
        }
        None => {
            headers.push(("Content-Range", format!("bytes */{len}")));
            respond(416, Bytes::new(), &headers, "text/plain")
        }
    }
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` → inclusive (first, last); None if unsatisfiable.
fn parse_range(spec: &str, len: u64) -> Option<(u64, u64)> {
    let (a, b) = spec.strip_prefix("bytes=")?.split_once('-')?;
    let (first, last) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (len.checked_sub(n.min(len))?, len.checked_sub(1)?)
        }
        (a, "") => (a.parse().ok()?, len.checked_sub(1)?),
        (a, b) => (
            a.parse().ok()?,
            b.parse::<u64>().ok()?.min(len.checked_sub(1)?),
        ),
    };
    (first <= last && last < len).then_some((first, last))
}

/// Row 4: `POST /api/{T}/{id}/preupload/{rev}`.
fn preupload(hub: &Hub, req: &Req, rt: RepoType, id: &str, rev: &str) -> Response {
    let body: Value = match serde_json::from_slice(req.body) {
        Ok(v) => v,
        Err(e) => return error(400, None, &format!("preupload: body is not JSON: {e}")),
    };
    let st = hub.state();
    let repo = match writable(&st, req, rt, id) {
        Ok(r) => r,
        Err(d) => return d.response(),
    };
    let Some(head) = repo.resolve_rev(rev) else {
        return revision_not_found(rev);
    };
    let lfs_globs = lfs_patterns(&st, &repo.commits[&head]);
    let mut files = Vec::new();
    for f in body["files"].as_array().into_iter().flatten() {
        let path = f["path"].as_str().unwrap_or_default();
        let size = f["size"].as_u64().unwrap_or(0);
        let sample = f["sample"]
            .as_str()
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok());
        let binary = sample.is_some_and(|s| s.contains(&0));
        let lfs = binary || size >= 10 * 1024 * 1024 || lfs_globs.is_match(path);
        files.push(json!({
            "path": path, "uploadMode": if lfs { "lfs" } else { "regular" },
            "shouldIgnore": false, "oid": null,
        }));
    }
    json_response(200, &json!({"files": files, "commitOid": head}), &[])
}

/// Patterns with `filter=lfs` in the commit's `.gitattributes`.
fn lfs_patterns(st: &HubState, commit: &Commit) -> globset::GlobSet {
    let text = commit
        .files
        .get(".gitattributes")
        .and_then(|f| st.blobs.get(&f.sha256))
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    let mut set = globset::GlobSetBuilder::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(pattern) = words.next() else {
            continue;
        };
        if pattern.starts_with('#') || !words.any(|w| w == "filter=lfs") {
            continue;
        }
        // Git: a pattern without a slash matches the file name at any depth.
        let glob = if pattern.contains('/') {
            pattern.to_string()
        } else {
            format!("**/{pattern}")
        };
        if let Ok(g) = globset::GlobBuilder::new(&glob)
            .literal_separator(true)
            .build()
        {
            set.add(g);
        }
    }
    set.build().unwrap_or_else(|_| globset::GlobSet::empty())
}

/// Row 5: `POST /{P}{id}.git/info/lfs/objects/batch`.
fn lfs_batch(hub: &Hub, req: &Req, rt: RepoType, id: &str) -> Response {
    let body: Value = match serde_json::from_slice(req.body) {
        Ok(v) => v,
        Err(e) => return error(400, None, &format!("lfs batch: body is not JSON: {e}")),
    };
    let st = hub.state();
    if let Err(d) = writable(&st, req, rt, id) {
        return d.response();
    }
    if body["operation"].as_str() != Some("upload") {
        return error(
            400,
            None,
            "lfs batch: the fake only supports operation \"upload\"",
        );
    }
    let offered: Vec<&str> = body["transfers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let objects = body["objects"].as_array().cloned().unwrap_or_default();
    let transfer = hub.transfer();
    if transfer == Transfer::Xet && offered.contains(&"xet") {
        let objs: Vec<Value> = objects
            .iter()
            .map(|o| json!({"oid": o["oid"], "size": o["size"]}))
            .collect();
        return lfs_json(&json!({"transfer": "xet", "objects": objs}));
    }
    let verify = format!("{}/lfs-verify/{}/{id}", hub.endpoint, rt.plural());
    let objs: Vec<Value> = objects
        .iter()
        .map(|o| {
            let oid = o["oid"].as_str().unwrap_or_default();
            if st.blobs.contains_key(oid) {
                return json!({"oid": oid, "size": o["size"]}); // already present: no actions
            }
            json!({
                "oid": oid, "size": o["size"], "authenticated": true,
                "actions": {
                    "upload": {"href": format!("{}/lfs-upload/{oid}", hub.endpoint), "header": {}},
                    "verify": {"href": verify, "header": {}},
                },
            })
        })
        .collect();
    let mut resp = json!({"objects": objs});
    if transfer != Transfer::None {
        resp["transfer"] = json!("basic");
    }
    lfs_json(&resp)
}

/// Row 6: `PUT /lfs-upload/<sha256>` (no auth, like a pre-signed URL).
fn lfs_upload(hub: &Hub, req: &Req, oid: &str) -> Response {
    let actual = sha256_hex(req.body);
    if actual != oid {
        return error(
            400,
            None,
            &format!("lfs upload: body sha256 {actual} does not match {oid}"),
        );
    }
    hub.state().blobs.insert(actual, req.body.clone());
    respond(200, Bytes::new(), &[], "text/plain")
}

/// Row 7: `POST /lfs-verify/...` `{"oid","size"}`.
fn lfs_verify(hub: &Hub, req: &Req) -> Response {
    let body: Value = serde_json::from_slice(req.body).unwrap_or(Value::Null);
    let oid = body["oid"].as_str().unwrap_or_default();
    let st = hub.state();
    if let Err(d) = may_write(&st, req) {
        return d.response();
    }
    match st.blobs.get(oid) {
        Some(b) if Some(b.len() as u64) == body["size"].as_u64() => {
            json_response(200, &json!({}), &[])
        }
        Some(_) => error(
            422,
            None,
            &format!("lfs verify: size of {oid} does not match"),
        ),
        None => error(404, None, &format!("lfs verify: object {oid} not uploaded")),
    }
}

/// Row 8: `GET /api/{T}/{id}/xet-{write,read}-token/{rev}`: JSON body and `X-Xet-*` headers.
fn xet_token(hub: &Hub, req: &Req, rt: RepoType, id: &str, write: bool) -> Response {
    let st = hub.state();
    let allowed = if write {
        writable(&st, req, rt, id)
    } else {
        readable(&st, req, rt, id)
    };
    if let Err(d) = allowed {
        return d.response();
    }
    if write && hub.transfer() != Transfer::Xet {
        let msg = "xet is not enabled on this fake hub (transfer is not xet)";
        return error(404, None, msg);
    }
    let cas_url = format!("local://{}", hub.cas_dir.display());
    let exp = unix_now() + 3600;
    let token = format!("xet-{}-{}", if write { "write" } else { "read" }, exp);
    let headers = [
        ("X-Xet-Cas-Url", cas_url.clone()),
        ("X-Xet-Access-Token", token.clone()),
        ("X-Xet-Token-Expiration", exp.to_string()),
    ];
    json_response(
        200,
        &json!({"accessToken": token, "exp": exp, "casUrl": cas_url}),
        &headers,
    )
}

/// Row 9: `POST /api/{T}/{id}/commit/{rev}`, NDJSON. All or nothing.
fn commit(hub: &Hub, req: &Req, rt: RepoType, id: &str, branch: &str) -> Response {
    if req
        .query
        .is_some_and(|q| q.contains("create_pr=1") || q.contains("create_pr=True"))
    {
        return error(
            400,
            None,
            "commit: create_pr is not supported by the fake hub",
        );
    }
    // Learn about xet uploads that finished since the last commit.
    if let Err(e) = hub.scan_shards() {
        return error(
            500,
            None,
            &format!("fakehub could not read the CAS shards: {e:#}"),
        );
    }
    let lines: Vec<Value> = match std::str::from_utf8(req.body)
        .map_err(|e| e.to_string())
        .and_then(|t| {
            t.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).map_err(|e| e.to_string()))
                .collect()
        }) {
        Ok(v) => v,
        Err(e) => return error(400, None, &format!("commit: body is not NDJSON: {e}")),
    };
    let max_inline = hub.faults.max_inline_bytes();
    let mut st = hub.state();
    let repo = match writable(&st, req, rt, id) {
        Ok(r) => r,
        Err(d) => return d.response(),
    };
    let Some(head) = repo.refs.get(branch).cloned() else {
        return revision_not_found(branch);
    };
    let Some((first, ops)) = lines.split_first().filter(|(h, _)| h["key"] == "header") else {
        return error(
            400,
            None,
            "commit: the first NDJSON line must be {\"key\":\"header\",...}",
        );
    };
    let header_v = &first["value"];
    if let Some(parent) = header_v["parentCommit"].as_str() {
        if parent != head {
            return error(
                412,
                None,
                "A commit has happened since. Please refresh and try again.",
            );
        }
    }
    let mut files = repo.commits[&head].files.clone();
    let mut new_blobs = Vec::new();
    for op in ops {
        let v = &op["value"];
        let path = v["path"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string();
        match op["key"].as_str() {
            Some("file") => {
                let content = match v["encoding"].as_str() {
                    Some("base64") => match base64::engine::general_purpose::STANDARD
                        .decode(v["content"].as_str().unwrap_or(""))
                    {
                        Ok(c) => c,
                        Err(e) => {
                            return error(400, None, &format!("commit: {path}: bad base64: {e}"))
                        }
                    },
                    _ => v["content"]
                        .as_str()
                        .unwrap_or_default()
                        .as_bytes()
                        .to_vec(),
                };
                if max_inline.is_some_and(|limit| content.len() as u64 > limit) {
                    return error(400, None, "Your push was rejected because it contains binary files. Please use https://huggingface.co/docs/hub/xet to store binary files.");
                }
                let entry = regular_entry(&content);
                new_blobs.push((entry.sha256.clone(), Bytes::from(content)));
                files.insert(path, entry);
            }
            Some("lfsFile") => {
                let oid = v["oid"].as_str().unwrap_or_default();
                let size = v["size"].as_u64().unwrap_or(0);
                let xet = st.xet_files.get(oid);
                let known_size = xet
                    .map(|x| x.size)
                    .or_else(|| st.blobs.get(oid).map(|b| b.len() as u64))
                    .or_else(|| {
                        repo.commits
                            .values()
                            .flat_map(|c| c.files.values())
                            .find(|f| f.sha256 == oid)
                            .map(|f| f.size)
                    });
                match known_size {
                    None => {
                        return error(
                            422,
                            None,
                            &format!("commit: {path}: LFS object {oid} was never uploaded"),
                        )
                    }
                    Some(s) if s != size => {
                        return error(
                            422,
                            None,
                            &format!("commit: {path}: LFS object {oid} has size {s}, not {size}"),
                        )
                    }
                    Some(_) => {}
                }
                let xet_hash = xet.map(|x| x.xet_hash.clone()).or_else(|| {
                    repo.commits
                        .values()
                        .flat_map(|c| c.files.values())
                        .find(|f| f.sha256 == oid)
                        .and_then(|f| f.xet_hash.clone())
                });
                files.insert(path, lfs_entry(oid, size, xet_hash));
            }
            Some("deletedFile") => {
                if files.remove(&path).is_none() {
                    return error(
                        404,
                        Some("EntryNotFound"),
                        &format!("commit: cannot delete {path}: no such file"),
                    );
                }
            }
            Some("deletedFolder") => {
                let prefix = format!("{}/", path.trim_end_matches('/'));
                let before = files.len();
                files.retain(|p, _| !p.starts_with(&prefix));
                if files.len() == before {
                    return error(
                        404,
                        Some("EntryNotFound"),
                        &format!("commit: cannot delete folder {path}: no such folder"),
                    );
                }
            }
            other => {
                return error(
                    400,
                    None,
                    &format!("commit: unsupported operation {other:?}"),
                )
            }
        }
    }
    let title = header_v["summary"].as_str().unwrap_or("commit").to_string();
    let oid = st.next_commit_oid(id);
    st.blobs.extend(new_blobs);
    let repo = st
        .repos
        .get_mut(&(rt, id.to_string()))
        .expect("checked above");
    repo.commits.insert(
        oid.clone(),
        Commit {
            parent: Some(head),
            title: title.clone(),
            date: now_iso(),
            files,
        },
    );
    repo.refs.insert(branch.to_string(), oid.clone());
    let url = format!("{}/{}{id}/commit/{oid}", hub.endpoint, rt.url_prefix());
    json_response(
        200,
        &json!({"success": true, "commitOid": oid, "commitUrl": url, "commitMessage": title,
                "pullRequestUrl": null, "hookOutput": ""}),
        &[],
    )
}

/// Row 10: `POST /api/{T}/{id}/paths-info/{rev}`, JSON (hf-hub) or form (Python).
fn paths_info(hub: &Hub, req: &Req, rt: RepoType, id: &str, rev: &str) -> Response {
    let paths: Vec<String> = match serde_json::from_slice::<Value>(req.body) {
        Ok(v) => v["paths"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str().map(str::to_string))
            .collect(),
        Err(_) => form_urlencoded::parse(req.body)
            .filter(|(k, _)| k == "paths")
            .map(|(_, v)| v.into_owned())
            .collect(),
    };
    let st = hub.state();
    let repo = match readable(&st, req, rt, id) {
        Ok(r) => r,
        Err(d) => return d.response(),
    };
    let Some(oid) = repo.resolve_rev(rev) else {
        return revision_not_found(rev);
    };
    let files = &repo.commits[&oid].files;
    let mut out = Vec::new();
    for p in paths {
        let p = p.trim_matches('/');
        if let Some(f) = files.get(p) {
            out.push(file_json(p, f));
        } else if files.keys().any(|k| k.starts_with(&format!("{p}/"))) {
            out.push(dir_json(p));
        }
    }
    json_response(200, &Value::Array(out), &[])
}

/// Row 11: `GET /api/{T}/{id}/tree/{rev}[/{path}]?recursive=..`.
fn tree(hub: &Hub, req: &Req, rt: RepoType, id: &str, rev: &str, dir: &str) -> Response {
    let recursive = req.query.is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes())
            .any(|(k, v)| k == "recursive" && (v == "true" || v == "1" || v == "True"))
    });
    let st = hub.state();
    let repo = match readable(&st, req, rt, id) {
        Ok(r) => r,
        Err(d) => return d.response(),
    };
    let Some(oid) = repo.resolve_rev(rev) else {
        return revision_not_found(rev);
    };
    let files = &repo.commits[&oid].files;
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{}/", dir.trim_matches('/'))
    };
    let mut dirs = BTreeSet::new();
    let mut entries: BTreeMap<String, Value> = BTreeMap::new();
    for (path, f) in files.iter().filter(|(p, _)| p.starts_with(&prefix)) {
        let rel = &path[prefix.len()..];
        let parts: Vec<&str> = rel.split('/').collect();
        // Directories between `dir` and the file (only the first level unless recursive).
        let depth = if recursive {
            parts.len() - 1
        } else {
            parts.len().min(2) - 1
        };
        for i in 1..=depth {
            dirs.insert(format!("{prefix}{}", parts[..i].join("/")));
        }
        if recursive || parts.len() == 1 {
            entries.insert(path.clone(), file_json(path, f));
        }
    }
    if !prefix.is_empty() && entries.is_empty() && dirs.is_empty() {
        return error(
            404,
            Some("EntryNotFound"),
            &format!("{dir} does not exist on {rev}"),
        );
    }
    for d in dirs {
        entries.insert(d.clone(), dir_json(&d));
    }
    json_response(200, &Value::Array(entries.into_values().collect()), &[])
}

/// Row 12: `POST /api/{T}/{id}/super-squash/{branch}`: history becomes one commit.
fn super_squash(hub: &Hub, req: &Req, rt: RepoType, id: &str, branch: &str) -> Response {
    let body: Value = serde_json::from_slice(req.body).unwrap_or(Value::Null);
    let mut st = hub.state();
    let repo = match writable(&st, req, rt, id) {
        Ok(r) => r,
        Err(d) => return d.response(),
    };
    let Some(head) = repo.refs.get(branch).cloned() else {
        return revision_not_found(branch);
    };
    let files = repo.commits[&head].files.clone();
    let title = body["message"]
        .as_str()
        .unwrap_or("Super-squash")
        .to_string();
    let oid = st.next_commit_oid(id);
    let repo = st
        .repos
        .get_mut(&(rt, id.to_string()))
        .expect("checked above");
    repo.commits.insert(
        oid.clone(),
        Commit {
            parent: None,
            title,
            date: now_iso(),
            files,
        },
    );
    repo.refs.insert(branch.to_string(), oid.clone());
    repo.drop_unreachable();
    json_response(200, &json!({"commitId": oid}), &[])
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

fn decode(seg: &str) -> String {
    percent_encoding::percent_decode_str(seg)
        .decode_utf8_lossy()
        .into_owned()
}

impl super::Repo {
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

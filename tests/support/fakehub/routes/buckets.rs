//! Storage Bucket handlers (facts/hf-storage-2026.md §2 table; protocol facts §6 row 14):
//! create/info, tree, paths-info, xet tokens, the NDJSON batch, resolve. State is in
//! `../buckets.rs`.

use super::super::buckets::{Bucket, BucketFile};
use super::download::serve_content;
use super::upload::xet_token_response;
use super::*;

/// The bucket if the caller may read it (a private one looks missing without a valid token:
/// 404 `RepoNotFound`, which Python turns into `BucketNotFoundError` on bucket URLs).
fn readable_bucket<'s>(st: &'s HubState, req: &Req, id: &str) -> Result<&'s Bucket, Denied> {
    let who = caller(st, req.headers);
    if matches!(who, Caller::Invalid) {
        return Err(Denied::Unauthorized);
    }
    match st.buckets.get(id) {
        Some(b) if !b.private || matches!(who, Caller::Token(_)) => Ok(b),
        _ => Err(Denied::RepoNotFound),
    }
}

fn writable_bucket<'s>(st: &'s HubState, req: &Req, id: &str) -> Result<&'s Bucket, Denied> {
    may_write(st, req)?;
    readable_bucket(st, req, id)
}

/// `POST /api/buckets/{ns}/{name}`: `{"private": true}` (hf-hub) or `{"visibility": "private"}`
/// (Python); public by default. 409 with the URL when it exists (Python reads `url` then).
pub(super) fn create(hub: &Hub, req: &Req, id: &str) -> Response {
    if let Err(d) = may_write(&hub.state(), req) {
        return d.response();
    }
    let body: Value = if req.body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(req.body) {
            Ok(v) => v,
            Err(e) => return error(400, None, &format!("create bucket: body is not JSON: {e}")),
        }
    };
    let private = body["private"].as_bool().unwrap_or(false)
        || body["visibility"].as_str() == Some("private");
    let url = format!("{}/buckets/{id}", hub.endpoint);
    if !hub.create_bucket(id, private) {
        let msg = "You already created this bucket";
        return json_response(
            409,
            &json!({"error": msg, "url": url}),
            &[("X-Error-Message", msg.into())],
        );
    }
    json_response(200, &json!({"url": url}), &[])
}

/// `GET /api/buckets/{id}`: `{id, private, createdAt, size, totalFiles}`.
pub(super) fn info(hub: &Hub, req: &Req, id: &str) -> Response {
    let st = hub.state();
    match readable_bucket(&st, req, id) {
        Ok(b) => json_response(
            200,
            &json!({
                "id": id,
                "private": b.private,
                "createdAt": b.created_at,
                "size": b.files.values().map(|f| f.size).sum::<u64>(),
                "totalFiles": b.files.len(),
            }),
            &[],
        ),
        Err(d) => d.response(),
    }
}

fn file_entry(path: &str, f: &BucketFile) -> Value {
    let mut v = json!({
        "type": "file",
        "path": path,
        "size": f.size,
        "xetHash": f.xet_hash,
        "uploadedAt": f.uploaded_at,
    });
    if let Some(ms) = f.mtime_ms {
        v["mtime"] = json!(iso_from_ms(ms));
    }
    v
}

fn iso_from_ms(ms: u64) -> String {
    let (date, time) = openclaw_space::fsutil::civil((ms / 1000) as i64);
    format!("{date}T{time}.{:03}Z", ms % 1000)
}

/// `GET /api/buckets/{id}/tree[/{prefix}]?recursive=true`: files under the prefix (all of
/// them when recursive, else the direct children plus one entry per sub-folder). A prefix
/// with nothing under it is an empty list.
pub(super) fn tree(hub: &Hub, req: &Req, id: &str, prefix: &str) -> Response {
    let st = hub.state();
    let b = match readable_bucket(&st, req, id) {
        Ok(b) => b,
        Err(d) => return d.response(),
    };
    let recursive = query_param(req.query, "recursive").is_some_and(|v| is_true(&v));
    let base = if prefix.is_empty() {
        String::new()
    } else {
        format!("{}/", prefix.trim_matches('/'))
    };
    let mut out = Vec::new();
    let mut dirs = BTreeSet::new();
    for (path, f) in b.files.range(base.clone()..) {
        let Some(rest) = path.strip_prefix(&base) else {
            break;
        };
        match rest.split_once('/') {
            Some((dir, _)) if !recursive => {
                if dirs.insert(dir.to_string()) {
                    out.push(json!({"type": "directory", "path": format!("{base}{dir}"), "uploadedAt": f.uploaded_at}));
                }
            }
            _ => out.push(file_entry(path, f)),
        }
    }
    let Some(size) = hub.faults.tree_page_size() else {
        return json_response(200, &Value::Array(out), &[]);
    };
    // One page from the cursor (here an offset; opaque to clients), and a `Link` to the next.
    let from: usize = query_param(req.query, "cursor")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut headers = Vec::new();
    if from + size < out.len() {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in form_urlencoded::parse(req.query.unwrap_or_default().as_bytes()) {
            if k != "cursor" {
                q.append_pair(&k, &v);
            }
        }
        q.append_pair("cursor", &(from + size).to_string());
        let url = format!(
            "{}/api/buckets/{id}/tree/{}?{}",
            hub.endpoint,
            prefix.trim_matches('/'),
            q.finish()
        );
        headers.push(("Link", format!("<{url}>; rel=\"next\"")));
    }
    let page: Vec<Value> = out.into_iter().skip(from).take(size).collect();
    json_response(200, &Value::Array(page), &headers)
}

fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// `POST /api/buckets/{id}/paths-info` `{"paths": [...]}`: the files that exist (missing
/// paths are left out).
pub(super) fn paths_info(hub: &Hub, req: &Req, id: &str) -> Response {
    let st = hub.state();
    let b = match readable_bucket(&st, req, id) {
        Ok(b) => b,
        Err(d) => return d.response(),
    };
    let body: Value = serde_json::from_slice(req.body).unwrap_or(Value::Null);
    let Some(paths) = body["paths"].as_array() else {
        return error(400, None, "paths-info: expected JSON {\"paths\": [...]}");
    };
    if paths.len() > 1000 {
        return error(400, None, "paths-info: at most 1000 paths");
    }
    let out: Vec<Value> = paths
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|p| b.files.get(p).map(|f| file_entry(p, f)))
        .collect();
    json_response(200, &Value::Array(out), &[])
}

/// `GET /api/buckets/{id}/xet-{read,write}-token` (no revision: buckets have none).
pub(super) fn xet_token(hub: &Hub, req: &Req, id: &str, write: bool) -> Response {
    let st = hub.state();
    let allowed = if write {
        writable_bucket(&st, req, id)
    } else {
        readable_bucket(&st, req, id)
    };
    match allowed {
        Ok(_) => xet_token_response(hub, write),
        Err(d) => d.response(),
    }
}

/// `POST /api/buckets/{id}/batch`, NDJSON `addFile`/`copyFile`/`deleteFile`, adds before
/// deletes. Not atomic: each operation succeeds or fails on its own; failures are listed in a
/// 200 (`{"failed": [{path, error}]}`), or 422 when every operation failed.
pub(super) fn batch(hub: &Hub, req: &Req, id: &str) -> Response {
    if let Err(d) = writable_bucket(&hub.state(), req, id) {
        return d.response();
    }
    if let Err(e) = hub.scan_shards() {
        return error(
            500,
            None,
            &format!("fakehub: reading the CAS shards: {e:#}"),
        );
    }
    let text = String::from_utf8_lossy(req.body);
    let mut ops = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Value>(line) {
            Ok(v) => ops.push(v),
            Err(e) => return error(400, None, &format!("batch: a line is not JSON: {e}")),
        }
    }
    if ops.len() > 1000 {
        return error(400, None, "batch: at most 1000 operations");
    }
    // Adds and copies first, then deletes (the order the Hub applies them in).
    ops.sort_by_key(|op| op["type"].as_str() == Some("deleteFile"));
    let mut injected = false;
    let failed: Vec<Value> = ops
        .iter()
        .filter_map(|op| apply(hub, id, op, &mut injected).err())
        .collect();
    // An injected failure always comes in a 200 (the case hf-hub takes for success).
    let all_failed = !ops.is_empty() && failed.len() == ops.len();
    let status = if all_failed && !injected { 422 } else { 200 };
    json_response(status, &json!({"failed": failed}), &[])
}

/// One batch operation; the `{path, error}` entry when it fails.
fn apply(hub: &Hub, id: &str, op: &Value, injected: &mut bool) -> Result<(), Value> {
    let path = op["path"].as_str().unwrap_or_default().to_string();
    let fail = |msg: &str| json!({"path": path, "error": msg});
    if path.is_empty() || path.starts_with('/') {
        return Err(fail("invalid path"));
    }
    let kind = op["type"].as_str().unwrap_or_default();
    if kind == "addFile" && hub.faults.take_bucket_add_failure(&path) {
        *injected = true;
        return Err(fail("injected failure"));
    }
    let mut st = hub.state();
    let size_of = |st: &HubState, hash: &str| st.xet_sizes.get(hash).copied();
    match kind {
        "addFile" | "copyFile" => {
            let hash = op["xetHash"].as_str().unwrap_or_default().to_string();
            let Some(size) = size_of(&st, &hash) else {
                return Err(fail(
                    "xet hash not found in storage: upload the content first",
                ));
            };
            let file = BucketFile {
                xet_hash: hash,
                size,
                mtime_ms: op["mtime"].as_u64(),
                uploaded_at: now_iso(),
            };
            let b = st
                .buckets
                .get_mut(id)
                .ok_or_else(|| fail("bucket not found"))?;
            b.files.insert(path.clone(), file);
            Ok(())
        }
        "deleteFile" => {
            let b = st
                .buckets
                .get_mut(id)
                .ok_or_else(|| fail("bucket not found"))?;
            b.files
                .remove(&path)
                .map(drop)
                .ok_or_else(|| fail("file not found"))
        }
        other => Err(fail(&format!("unknown operation type {other:?}"))),
    }
}

/// `HEAD|GET /buckets/{id}/resolve/{path}` (no `/api`, no revision): `X-Xet-Hash`,
/// `X-Linked-Size` and the read-token `Link` (what Python's download needs); GET serves the
/// bytes rebuilt from the CAS.
pub(super) fn resolve(hub: &Hub, req: &Req, id: &str, path: &str) -> Response {
    let file = {
        let st = hub.state();
        let b = match readable_bucket(&st, req, id) {
            Ok(b) => b,
            Err(d) => return d.response(),
        };
        match b.files.get(path) {
            Some(f) => f.clone(),
            None => {
                return error(
                    404,
                    Some("EntryNotFound"),
                    &format!("Entry not found: {path}"),
                )
            }
        }
    };
    let token_url = format!("{}/api/buckets/{id}/xet-read-token", hub.endpoint);
    let headers = vec![
        ("ETag", format!("\"{}\"", file.xet_hash)),
        ("X-Xet-Hash", file.xet_hash.clone()),
        ("X-Linked-Size", file.size.to_string()),
        ("Link", format!("<{token_url}>; rel=\"xet-auth\"")),
    ];
    let content = if req.method == Method::HEAD {
        Ok(Bytes::new())
    } else {
        xet::read_file(&hub.cas_dir, &file.xet_hash)
            .map(Bytes::from)
            .map_err(|e| format!("{e:#}"))
    };
    serve_content(req, content, file.size, headers)
}

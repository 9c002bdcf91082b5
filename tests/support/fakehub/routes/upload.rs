//! Uploads: preupload, the LFS batch API with its PUT/verify URLs, xet tokens, and the NDJSON
//! commit (facts §6 rows 4-9).

use super::*;

/// Row 4: `POST /api/{T}/{id}/preupload/{rev}`.
pub(super) fn preupload(hub: &Hub, req: &Req, rt: RepoType, id: &str, rev: &str) -> Response {
    let body: Value = match serde_json::from_slice(req.body) {
        Ok(v) => v,
        Err(e) => return error(400, None, &format!("preupload: body is not JSON: {e}")),
    };
    let st = hub.state();
    let (repo, head) = match at_rev(writable(&st, req, rt, id), rev) {
        Ok(x) => x,
        Err(r) => return *r,
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
pub(super) fn lfs_batch(hub: &Hub, req: &Req, rt: RepoType, id: &str) -> Response {
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
pub(super) fn lfs_upload(hub: &Hub, req: &Req, oid: &str) -> Response {
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
pub(super) fn lfs_verify(hub: &Hub, req: &Req) -> Response {
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
pub(super) fn xet_token(hub: &Hub, req: &Req, rt: RepoType, id: &str, write: bool) -> Response {
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
    xet_token_response(hub, write)
}

/// The token answer (body for hf-hub and hf-xet, headers for Python), for repos and buckets.
pub(super) fn xet_token_response(hub: &Hub, write: bool) -> Response {
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
pub(super) fn commit(hub: &Hub, req: &Req, rt: RepoType, id: &str, branch: &str) -> Response {
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

//! Repo-level handlers: create/delete, info, commit listing, super-squash, paths-info, tree
//! (facts §6 rows 1, 2, 10-13).

use super::*;

/// Row 1: `POST /api/repos/create`.
pub(super) fn create_repo(hub: &Hub, req: &Req) -> Response {
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
    if rt == RepoType::Space {
        if let Err(r) = super::spaces::on_create(hub, req, &body, &id) {
            return *r;
        }
    }
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
pub(super) fn delete_repo(hub: &Hub, req: &Req) -> Response {
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
pub(super) fn info(hub: &Hub, req: &Req, rt: RepoType, id: &str, rev: &str) -> Response {
    let st = hub.state();
    let (repo, oid) = match at_rev(readable(&st, req, rt, id), rev) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let commit = &repo.commits[&oid];
    let siblings: Vec<Value> = commit
        .files
        .keys()
        .map(|p| json!({"rfilename": p}))
        .collect();
    let owner = id.split('/').next().unwrap_or_default();
    let mut body = json!({
        "id": id, "_id": format!("fake-{id}"), "author": owner, "sha": oid,
        "private": repo.private, "gated": false, "disabled": false,
        "lastModified": commit.date, "createdAt": repo.created_at,
        "siblings": siblings, "tags": [], "downloads": 0, "likes": 0,
    });
    if rt == RepoType::Space {
        super::spaces::add_info(&st, id, &mut body);
    }
    json_response(200, &body, &[])
}

/// Row 10: `POST /api/{T}/{id}/paths-info/{rev}`, JSON (hf-hub) or form (Python); with
/// `expand`, files carry `lastCommit`.
pub(super) fn paths_info(hub: &Hub, req: &Req, rt: RepoType, id: &str, rev: &str) -> Response {
    let (paths, expand): (Vec<String>, bool) = match serde_json::from_slice::<Value>(req.body) {
        Ok(v) => (
            v["paths"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect(),
            v["expand"].as_bool().unwrap_or(false),
        ),
        Err(_) => {
            let form: Vec<(String, String)> =
                form_urlencoded::parse(req.body).into_owned().collect();
            let paths = form
                .iter()
                .filter(|(k, _)| k == "paths")
                .map(|(_, v)| v.clone())
                .collect();
            (paths, form.iter().any(|(k, v)| k == "expand" && is_true(v)))
        }
    };
    let st = hub.state();
    let (repo, oid) = match at_rev(readable(&st, req, rt, id), rev) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let files = &repo.commits[&oid].files;
    let mut out = Vec::new();
    for p in paths {
        let p = p.trim_matches('/');
        if let Some(f) = files.get(p) {
            let mut entry = file_json(p, f);
            if expand {
                entry["lastCommit"] = last_commit(repo, &oid, p);
            }
            out.push(entry);
        } else if files.keys().any(|k| k.starts_with(&format!("{p}/"))) {
            out.push(dir_json(p));
        }
    }
    json_response(200, &Value::Array(out), &[])
}

/// `{"id","title","date"}` of the commit that last changed `path`, walking back from `head`.
fn last_commit(repo: &Repo, head: &str, path: &str) -> Value {
    let current = repo.commits[head].files.get(path);
    let mut last = head;
    let mut next = repo.commits[head].parent.as_deref();
    while let Some(oid) = next {
        let Some(c) = repo.commits.get(oid) else {
            break;
        };
        if c.files.get(path) != current {
            break;
        }
        last = oid;
        next = c.parent.as_deref();
    }
    let c = &repo.commits[last];
    json!({"id": last, "title": c.title, "date": c.date})
}

/// Row 11: `GET /api/{T}/{id}/tree/{rev}[/{path}]?recursive=..&expand=..`.
pub(super) fn tree(hub: &Hub, req: &Req, rt: RepoType, id: &str, rev: &str, dir: &str) -> Response {
    let flag = |name: &str| {
        req.query.is_some_and(|q| {
            form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == name && is_true(&v))
        })
    };
    let (recursive, expand) = (flag("recursive"), flag("expand"));
    let st = hub.state();
    let (repo, oid) = match at_rev(readable(&st, req, rt, id), rev) {
        Ok(x) => x,
        Err(r) => return *r,
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
            let mut entry = file_json(path, f);
            if expand {
                entry["lastCommit"] = last_commit(repo, &oid, path);
            }
            entries.insert(path.clone(), entry);
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

/// Commits per page when the client sends no `limit` (the Hub pages its commit list; clients
/// follow `Link: <...>; rel="next"`).
pub(super) const DEFAULT_COMMITS_PAGE: usize = 50;
/// The largest `limit` honoured.
const MAX_COMMITS_PAGE: usize = 1000;

/// `GET /api/{T}/{id}/commits/{rev}[?p=N&limit=M&expand[]=formatted]`: history from `rev`,
/// newest first, one page at a time, as `HfApi.list_repo_commits` and hf-hub's `list_commits`
/// read it: items `{"id","title","message","date","authors":[{"user"}],"parents"}` (plus
/// `"formatted":{"title","message"}` when asked), `X-Total-Count`, and a `Link` header naming
/// the next page (with the same query) while there is one.
pub(super) fn list_commits(hub: &Hub, req: &Req, rt: RepoType, id: &str, rev: &str) -> Response {
    let query: Vec<(String, String)> = req
        .query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let page: usize = match param("p").map(str::parse).transpose() {
        Ok(p) => p.unwrap_or(0),
        Err(_) => return error(400, None, "commits: p must be a page number"),
    };
    let size = match param("limit").map(str::parse::<usize>).transpose() {
        Ok(Some(n)) if (1..=MAX_COMMITS_PAGE).contains(&n) => n,
        Ok(None) => hub
            .faults
            .commits_page_size()
            .unwrap_or(DEFAULT_COMMITS_PAGE),
        _ => return error(400, None, "commits: limit must be between 1 and 1000"),
    };
    let formatted = query
        .iter()
        .any(|(k, v)| k == "expand[]" && v == "formatted");
    let st = hub.state();
    let (repo, head) = match at_rev(readable(&st, req, rt, id), rev) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let mut all = Vec::new();
    let mut next = Some(head);
    while let Some(oid) = next {
        let Some(c) = repo.commits.get(&oid) else {
            break;
        };
        next = c.parent.clone();
        all.push((oid, c));
    }
    let total = all.len();
    let items: Vec<Value> = all
        .into_iter()
        .skip(page * size)
        .take(size)
        .map(|(oid, c)| {
            let mut item = json!({
                "id": oid, "title": c.title, "message": c.title, "date": c.date,
                "authors": [{"user": "fakehub", "avatar": ""}],
                "parents": c.parent.iter().collect::<Vec<_>>(),
            });
            if formatted {
                item["formatted"] = json!({"title": format!("<p>{}</p>", c.title), "message": ""});
            }
            item
        })
        .collect();
    let mut headers = vec![("X-Total-Count", total.to_string())];
    if (page + 1) * size < total {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in query.iter().filter(|(k, _)| k != "p" && k != "limit") {
            q.append_pair(k, v);
        }
        q.append_pair("p", &(page + 1).to_string());
        q.append_pair("limit", &size.to_string());
        let rev_enc =
            percent_encoding::utf8_percent_encode(rev, percent_encoding::NON_ALPHANUMERIC);
        let url = format!(
            "{}/api/{}/{id}/commits/{rev_enc}?{}",
            hub.endpoint,
            rt.plural(),
            q.finish()
        );
        headers.push(("Link", format!("<{url}>; rel=\"next\"")));
    }
    json_response(200, &Value::Array(items), &headers)
}

/// Row 12: `POST /api/{T}/{id}/super-squash/{branch}`: history becomes one commit.
pub(super) fn super_squash(hub: &Hub, req: &Req, rt: RepoType, id: &str, branch: &str) -> Response {
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

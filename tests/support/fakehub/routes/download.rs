//! Downloads: resolve (HEAD/GET, ranges, the CDN redirect) and the CDN origin itself
//! (facts §6 row 3).

use super::*;

/// Row 3: `HEAD|GET /{P}{id}/resolve/{rev}/{path}`.
pub(super) fn resolve(
    hub: &Hub,
    req: &Req,
    rt: RepoType,
    id: &str,
    rev: &str,
    path: &str,
) -> Response {
    let st = hub.state();
    let (repo, oid) = match at_rev(readable(&st, req, rt, id), rev) {
        Ok(x) => x,
        Err(r) => return *r,
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
pub(super) fn cdn(hub: &Hub, req: &Req, sha256: &str) -> Response {
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
        Some(x) => xet::read_file(&hub.cas_dir, x)
            .map(Bytes::from)
            .map_err(|e| format!("{e:#}")),
        None => Err(format!("fakehub has no bytes for sha256 {}", file.sha256)),
    }
}

/// 200/206 with `Accept-Ranges`, honouring `Range: bytes=a-b` on GET; HEAD has no body.
pub(super) fn serve_content(
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

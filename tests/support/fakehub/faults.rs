//! Fault-injection knobs of the fake Hub, settable while it runs.
//!
//! A rule matches requests by method (or any) and raw path prefix, fires for the next `times`
//! matching requests (or forever), and then is gone. The first matching rule wins. Example:
//! ```ignore
//! // The next two commit POSTs fail with 503 before anything is applied.
//! hub.faults().add(Some("POST"), "/api/datasets/me/b/commit/", 2, Action::Status(503));
//! // The commit is applied, but the client sees a 500 (the duplicate-commit risk).
//! hub.faults().add(Some("POST"), "/api/datasets/me/b/commit/", 1, Action::StatusAfter(500));
//! ```

use std::sync::Mutex;
use std::time::Duration;

/// What to do to a matching request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Answer this status (JSON error body) without running the handler.
    Status(u16),
    /// Same, with an `X-Error-Code` (e.g. 404 + "RepoNotFound", 403 + "GatedRepo").
    StatusWithCode(u16, String),
    /// Run the handler (its effects stay) and then answer this status instead.
    StatusAfter(u16),
    /// 429 with `Retry-After: secs` and IETF `RateLimit`/`RateLimit-Policy` headers.
    RateLimited { retry_after_secs: u64 },
    /// Keep only the first n bytes of the body; Content-Length matches (a silent truncation).
    Truncate(usize),
    /// Announce the full Content-Length, send n bytes, then drop the connection.
    Abort(usize),
    /// Flip one byte in the middle of the body (same length, same headers).
    Corrupt,
    /// Accept the request and never answer (until the hub is dropped).
    Stall,
    /// Answer normally after this delay.
    Delay(Duration),
    /// Send the body `chunk` bytes at a time, one chunk per `every` (a slow link).
    Trickle { chunk: usize, every: Duration },
}

#[derive(Clone, Debug)]
struct Rule {
    method: Option<String>,
    path_prefix: String,
    /// None = forever.
    remaining: Option<u32>,
    action: Action,
}

#[derive(Default)]
pub struct Faults {
    rules: Mutex<Vec<Rule>>,
    redirect_resolve: Mutex<bool>,
    max_inline_bytes: Mutex<Option<u64>>,
    commits_page_size: Mutex<Option<usize>>,
    tree_page_size: Mutex<Option<usize>>,
    /// Bucket `addFile` paths (by prefix) the batch reports as failed inside its 200.
    bucket_add_failures: Mutex<Vec<(String, u32)>>,
}

impl Faults {
    /// Add a rule for the next `times` requests with this method (None = any) whose raw path
    /// starts with `path_prefix`.
    pub fn add(&self, method: Option<&str>, path_prefix: &str, times: u32, action: Action) {
        self.push(method, path_prefix, Some(times), action);
    }

    /// Add a rule that fires on every matching request until `clear`.
    pub fn always(&self, method: Option<&str>, path_prefix: &str, action: Action) {
        self.push(method, path_prefix, None, action);
    }

    pub fn clear(&self) {
        self.lock_rules().clear();
    }

    /// Rules that have not fired out yet.
    pub fn pending(&self) -> usize {
        self.lock_rules().len()
    }

    /// Resolve of LFS files answers 302 to another origin (`http://localhost:PORT/cdn/<sha256>`)
    /// carrying `X-Repo-Commit`/`X-Linked-*`/`X-Xet-Hash`, like the real Hub's CDN redirect.
    pub fn set_redirect_resolve(&self, on: bool) {
        *self
            .redirect_resolve
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = on;
    }

    pub fn redirect_resolve(&self) -> bool {
        *self
            .redirect_resolve
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Reject commits with an inline (`file`) entry larger than this, with the real Hub's 400
    /// "Your push was rejected…" (it refuses big inline binaries). None = accept any size.
    pub fn set_max_inline_bytes(&self, limit: Option<u64>) {
        *self
            .max_inline_bytes
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = limit;
    }

    pub fn max_inline_bytes(&self) -> Option<u64> {
        *self
            .max_inline_bytes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Commits per page of `GET /api/{T}/{id}/commits/{rev}` when the client sends no `limit`
    /// (None = `DEFAULT_COMMITS_PAGE`): small pages make clients follow the `Link` header.
    pub fn set_commits_page_size(&self, n: Option<usize>) {
        *self
            .commits_page_size
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = n;
    }

    pub fn commits_page_size(&self) -> Option<usize> {
        *self
            .commits_page_size
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Entries per page of a bucket's `tree` (None = one page): small pages make clients
    /// follow the `Link` header (the Hub pages with an opaque `cursor`).
    pub fn set_tree_page_size(&self, n: Option<usize>) {
        *self
            .tree_page_size
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = n;
    }

    pub fn tree_page_size(&self) -> Option<usize> {
        *self
            .tree_page_size
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The next `times` bucket `addFile`s whose path starts with `path_prefix` fail inside a
    /// 200 answer (`{"failed": [{"path", "error"}]}`), as the Hub reports per-file failures;
    /// the other operations of the batch are applied.
    pub fn fail_bucket_adds(&self, path_prefix: &str, times: u32) {
        if times == 0 {
            return;
        }
        self.bucket_add_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((path_prefix.to_string(), times));
    }

    /// Whether this bucket `addFile` is to fail (consuming one shot).
    pub(super) fn take_bucket_add_failure(&self, path: &str) -> bool {
        let mut rules = self
            .bucket_add_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let Some(i) = rules.iter().position(|(p, _)| path.starts_with(p.as_str())) else {
            return false;
        };
        rules[i].1 -= 1;
        if rules[i].1 == 0 {
            rules.remove(i);
        }
        true
    }

    /// The action for this request, if a rule matches (consuming one of its shots).
    pub(super) fn take(&self, method: &str, path: &str) -> Option<Action> {
        let mut rules = self.lock_rules();
        let i = rules.iter().position(|r| {
            r.method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
                && path.starts_with(&r.path_prefix)
        })?;
        let action = rules[i].action.clone();
        if let Some(n) = rules[i].remaining.as_mut() {
            *n -= 1;
            if *n == 0 {
                rules.remove(i);
            }
        }
        Some(action)
    }

    fn push(
        &self,
        method: Option<&str>,
        path_prefix: &str,
        remaining: Option<u32>,
        action: Action,
    ) {
        if remaining == Some(0) {
            return;
        }
        self.lock_rules().push(Rule {
            method: method.map(str::to_string),
            path_prefix: path_prefix.to_string(),
            remaining,
            action,
        });
    }

    fn lock_rules(&self) -> std::sync::MutexGuard<'_, Vec<Rule>> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner())
    }
}

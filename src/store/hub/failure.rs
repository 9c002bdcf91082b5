//! What went wrong talking to the Hub, in the few kinds the store acts on, and the one-line
//! message each kind gets.
//!
//! hf-hub reports errors as [`HFError`] (plus our own timeouts). The store needs to know three
//! things about a failure: is it worth retrying (and after how long), which [`StoreError`] kind
//! it becomes, and what the user should do about it. That mapping lives here so the store code
//! reads as the protocol, not as error plumbing.

use std::time::Duration;

use hf_hub::HFError;

use crate::store::StoreError;

/// A failed Hub call, classified.
#[derive(Debug)]
pub(in crate::store) enum Failure {
    /// 404 for the dataset (or its branch).
    RepoMissing,
    /// 404 for a file.
    EntryMissing,
    /// 401: the token is missing or was rejected.
    Unauthorized,
    /// 403: the token is valid but may not do this.
    Forbidden,
    /// 409 / 412: someone else moved the branch.
    Conflict,
    /// 429, with the server's `Retry-After` when it sent one.
    RateLimited(Option<Duration>),
    /// 408 / 5xx.
    Server(u16),
    /// Connection refused/reset, DNS, a body cut short, a xet transfer failure.
    Network(String),
    /// Our own deadline (`ENTRYPOINT_HF_TIMEOUT`) ran out.
    Timeout(Duration),
    /// Anything else (400, a malformed answer...): retrying will not help.
    Other(String),
}

impl Failure {
    pub(in crate::store) fn from_hf(e: HFError) -> Failure {
        match e {
            HFError::RepoNotFound { .. }
            | HFError::RevisionNotFound { .. }
            | HFError::BucketNotFound { .. } => Failure::RepoMissing,
            HFError::EntryNotFound { .. } => Failure::EntryMissing,
            HFError::AuthRequired { .. } => Failure::Unauthorized,
            HFError::Forbidden { .. } => Failure::Forbidden,
            HFError::Conflict { .. } => Failure::Conflict,
            HFError::RateLimited { retry_after, .. } => Failure::RateLimited(retry_after),
            // Paginated listings (list_tree, list_commits) report every status as `Http`,
            // 401/404/429 included: classify by the status.
            HFError::Http { context } => {
                let msg = context.server_message.clone().unwrap_or_default();
                Failure::from_status(context.status.as_u16(), None, &msg)
            }
            // reqwest's own read/connect timeouts (ours, set in `HfStore::open`). The store fills
            // in the configured duration.
            HFError::Request { ref source, .. } if source.is_timeout() => {
                Failure::Timeout(Duration::ZERO)
            }
            // Transport errors and xet transfers (which run their own HTTP client) are the network.
            e @ (HFError::Request { .. } | HFError::Xet { .. } | HFError::Io(_)) => {
                Failure::Network(error_chain(&e))
            }
            e => Failure::Other(error_chain(&e)),
        }
    }

    /// Classify an HTTP status (of a raw reqwest response, or one hf-hub did not classify).
    pub(in crate::store) fn from_status(
        status: u16,
        retry_after: Option<Duration>,
        body: &str,
    ) -> Failure {
        match status {
            401 => Failure::Unauthorized,
            403 => Failure::Forbidden,
            404 => Failure::RepoMissing,
            409 | 412 => Failure::Conflict,
            429 => Failure::RateLimited(retry_after),
            408 | 500..=599 => Failure::Server(status),
            _ => Failure::Other(
                format!(
                    "HTTP {status} {}",
                    body.chars().take(200).collect::<String>()
                )
                .trim()
                .to_string(),
            ),
        }
    }

    /// Worth another try within the same call? Not a timeout: the stall already cost a full
    /// `ENTRYPOINT_HF_TIMEOUT`, so the call fails (`Unavailable`) and the next backup retries.
    pub(in crate::store) fn is_transient(&self) -> bool {
        matches!(
            self,
            Failure::Server(_) | Failure::Network(_) | Failure::RateLimited(_)
        )
    }
}

/// What a Hub store keeps its backups in: the word messages use, and the variable that names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::store) enum Kind {
    Dataset,
    Bucket,
}

impl Kind {
    /// The variable that configures it.
    pub fn var(self) -> &'static str {
        match self {
            Kind::Dataset => "HF_DATASET",
            Kind::Bucket => "HF_BUCKET",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Dataset => "dataset",
            Kind::Bucket => "bucket",
        })
    }
}

/// What the store knows when it turns a failure into a message.
pub(in crate::store) struct Context<'a> {
    /// What `dataset` names.
    pub kind: Kind,
    pub dataset: &'a str,
    pub endpoint: &'a str,
    pub has_token: bool,
    /// The step that failed, e.g. "upload" or "reading the latest backup".
    pub what: &'a str,
}

const TOKENS_URL: &str = "https://huggingface.co/settings/tokens";

impl Failure {
    /// One line saying what happened and what to do. Never contains the token: messages are
    /// built from our own words plus server/transport text, and the store scrubs them again.
    pub(in crate::store) fn into_store_error(self, cx: &Context<'_>) -> StoreError {
        let Context {
            kind,
            dataset,
            endpoint,
            what,
            ..
        } = *cx;
        let var = kind.var();
        match self {
            Failure::Unauthorized if !cx.has_token => StoreError::Unauthorized(format!(
                "HF_TOKEN is not set, so {what} on {kind} {dataset} was refused (401): create a token with write access at {TOKENS_URL} and set it as the HF_TOKEN secret"
            )),
            Failure::Unauthorized => StoreError::Unauthorized(format!(
                "HF_TOKEN was rejected (401) during {what} on {kind} {dataset}: create a token with write access at {TOKENS_URL} and set it as the HF_TOKEN secret"
            )),
            Failure::Forbidden => StoreError::Forbidden(format!(
                "HF_TOKEN may not do {what} on {kind} {dataset} (403): give the token write access to it (a fine-grained token needs write permission on this repo) at {TOKENS_URL}"
            )),
            Failure::RepoMissing => StoreError::Missing(format!(
                "{kind} {dataset} does not exist on {endpoint} ({what}): it is created (private) by the first backup; check {var} if you expected it to exist"
            )),
            Failure::EntryMissing => StoreError::Missing(format!(
                "a file of the backup in {kind} {dataset} disappeared during {what} (someone deleted it?); the next backup writes a new one"
            )),
            Failure::Conflict => StoreError::Conflict(format!(
                "{kind} {dataset} changed under us during {what}: another writer (a second Space or container, or a manual upload) uses it; nothing was overwritten"
            )),
            Failure::RateLimited(after) => {
                let after = after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default();
                StoreError::Unavailable(format!(
                    "the Hub rate-limited {what} on {kind} {dataset} (429{after}): backups pause until then; if this keeps happening raise ENTRYPOINT_BACKUP_INTERVAL"
                ))
            }
            Failure::Server(status) => StoreError::Unavailable(format!(
                "the Hub answered {status} to {what} on {kind} {dataset}, also after retries: the Hub is having trouble; try again later"
            )),
            Failure::Network(detail) => StoreError::Unavailable(format!(
                "cannot reach {endpoint} for {what} on {kind} {dataset} ({detail}): check the network and HF_ENDPOINT"
            )),
            Failure::Timeout(after) => StoreError::Unavailable(format!(
                "{what} on {kind} {dataset} timed out after {}s (ENTRYPOINT_HF_TIMEOUT): the Hub or the network is slow or stalled; try again later",
                after.as_secs_f32()
            )),
            Failure::Other(detail) => StoreError::Other(format!(
                "{what} on {kind} {dataset} failed: {detail}"
            )),
        }
    }
}

/// An error and its sources on one line ("a: b: c"), without repeating identical parts.
pub(in crate::store) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx(has_token: bool) -> Context<'static> {
        Context {
            kind: Kind::Dataset,
            dataset: "alice/claw",
            endpoint: "https://huggingface.co",
            has_token,
            what: "upload",
        }
    }

    type Check = fn(&StoreError) -> bool;

    #[test]
    fn each_kind_maps_to_its_store_error_and_one_line() {
        let cases: Vec<(Failure, Check)> = vec![
            (
                Failure::Unauthorized,
                |e| matches!(e, StoreError::Unauthorized(m) if m.contains("HF_TOKEN was rejected")),
            ),
            (Failure::Forbidden, |e| {
                matches!(e, StoreError::Forbidden(_))
            }),
            (Failure::RepoMissing, |e| {
                matches!(e, StoreError::Missing(_))
            }),
            (Failure::Conflict, |e| matches!(e, StoreError::Conflict(_))),
            (
                Failure::RateLimited(Some(Duration::from_secs(7))),
                |e| matches!(e, StoreError::Unavailable(m) if m.contains("retry after 7s")),
            ),
            (Failure::Server(503), |e| {
                matches!(e, StoreError::Unavailable(_))
            }),
            (Failure::Network("connection refused".into()), |e| {
                matches!(e, StoreError::Unavailable(_))
            }),
            (
                Failure::Timeout(Duration::from_secs(2)),
                |e| matches!(e, StoreError::Unavailable(m) if m.contains("ENTRYPOINT_HF_TIMEOUT")),
            ),
            (Failure::Other("HTTP 400 bad".into()), |e| {
                matches!(e, StoreError::Other(_))
            }),
        ];
        for (failure, check) in cases {
            let label = format!("{failure:?}");
            let err = failure.into_store_error(&cx(true));
            assert!(check(&err), "{label} -> {err:?}");
            assert!(!err.to_string().contains('\n'), "{err}");
            assert!(err.to_string().contains("alice/claw"), "{err}");
        }
        let e = Failure::Unauthorized.into_store_error(&cx(false));
        assert!(e.to_string().starts_with("HF_TOKEN is not set"), "{e}");
    }

    #[test]
    fn status_classification() {
        assert!(matches!(
            Failure::from_status(412, None, ""),
            Failure::Conflict
        ));
        assert!(matches!(
            Failure::from_status(502, None, ""),
            Failure::Server(502)
        ));
        assert!(Failure::from_status(503, None, "").is_transient());
        assert!(!Failure::from_status(400, None, "nope").is_transient());
        assert!(!Failure::Unauthorized.is_transient());
        assert!(!Failure::Timeout(Duration::from_secs(1)).is_transient());
    }
}

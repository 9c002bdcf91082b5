//! What the two Hub stores (`hf` for datasets, `bucket` for Storage Buckets) share about
//! talking to the Hub: building the client with our timeouts, one call with our deadline and
//! retry policy (5xx and network errors with backoff; 429 waited out when `Retry-After` is
//! short, else the store pauses and fails fast until then), the streaming download into
//! `scratch` with its hash, and turning failures into one scrubbed line.
//!
//! Retries are ours, not hf-hub's (its are switched off): hf-hub retries writes blindly and
//! ignores `Retry-After` (facts/hf-hub-protocol.md §1.2).

pub(super) mod failure;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt;
use hf_hub::repository::download::HFByteStream;
use hf_hub::{HFClient, HFError};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tracing::warn;

use self::failure::{Context, Failure, Kind};
use super::{Progress, StoreError};
use crate::settings::{HubAccess, Secret};

/// Tries per call for 5xx / network errors / short rate limits (the first try included).
pub(super) const MAX_TRIES: u32 = 4;
/// Backoff before the second try; doubles each time, with jitter.
pub(super) const BASE_DELAY: Duration = Duration::from_millis(500);
/// The longest `Retry-After` sat out inside one call; a longer one pauses the store instead.
const MAX_WAIT_IN_CALL: Duration = Duration::from_secs(60);
/// An upload may take `ENTRYPOINT_HF_TIMEOUT` plus one second per this many bytes.
pub(super) const MIN_UPLOAD_BYTES_PER_SEC: u64 = 1 << 20;
pub(super) const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// One store's connection to the Hub: the client, what errors name, and the 429 pause.
pub(super) struct Conn {
    pub kind: Kind,
    /// `owner/name`.
    pub name: String,
    /// The two halves of `name`.
    pub owner: String,
    pub short_name: String,
    pub endpoint: String,
    pub token: Option<Secret>,
    /// `ENTRYPOINT_HF_TIMEOUT`: per request, and per idle gap while streaming.
    pub timeout: Duration,
    pub client: HFClient,
    /// The same HTTP client hf-hub uses, for the calls it lacks or gets wrong.
    pub http: reqwest::Client,
    /// `ENTRYPOINT_HF_ALLOW_PUBLIC`.
    allow_public: bool,
    /// After a long 429, no call goes out before this instant.
    paused_until: Mutex<Option<Instant>>,
}

/// Why one streaming download failed.
enum Download {
    Hub(Failure),
    Local(std::io::Error),
}

impl Conn {
    /// Build the clients for `kind` `name` (`owner/name`). No network I/O.
    pub fn new(kind: Kind, name: &str, access: &HubAccess) -> anyhow::Result<Conn> {
        let (endpoint, token, timeout) = (
            access.endpoint.as_deref(),
            access.token.as_ref(),
            access.timeout,
        );
        let var = kind.var();
        let Some((owner, short_name)) = name.split_once('/') else {
            anyhow::bail!("{var}: '{name}' is not a {kind} id; write owner/name");
        };
        // hf-hub sets no timeouts of its own; these bound every request it makes through us.
        let http = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(15)))
            .read_timeout(timeout)
            .user_agent(concat!(
                "openclaw-space/",
                env!("CARGO_PKG_VERSION"),
                "; hf-hub/1.0"
            ))
            .build()
            .with_context(|| format!("building the HTTP client for the HF {kind} store"))?;
        let endpoint = endpoint.unwrap_or(DEFAULT_ENDPOINT).to_string();
        let mut builder = HFClient::builder()
            .client(http.clone())
            .endpoint(endpoint.clone())
            .cache_enabled(false)
            // Our own retries only: see the module doc.
            .retry_max_attempts(0);
        if let Some(token) = token {
            builder = builder.token(token.expose());
        }
        let client = builder.build().with_context(|| {
            format!(
                "HF_ENDPOINT: '{endpoint}' is not a usable URL; use e.g. https://huggingface.co"
            )
        })?;
        Ok(Conn {
            kind,
            name: name.to_string(),
            owner: owner.to_string(),
            short_name: short_name.to_string(),
            endpoint,
            token: token.cloned(),
            timeout,
            client,
            http,
            allow_public: access.allow_public,
            paused_until: Mutex::new(None),
        })
    }

    /// `hf:alice/x` or `bucket:alice/x` (plus the endpoint when it is not the Hub's).
    pub fn describe(&self, scheme: &str, name: &str) -> String {
        if self.endpoint == DEFAULT_ENDPOINT {
            format!("{scheme}:{name}")
        } else {
            format!("{scheme}:{name} at {}", self.endpoint)
        }
    }

    /// Backups hold credentials: refuse a public dataset or bucket unless the user opted in.
    /// `private` is what the Hub says (None: it did not say).
    pub fn check_visibility(&self, private: Option<bool>) -> Result<(), StoreError> {
        if private == Some(false) && !self.allow_public {
            let (kind, name) = (self.kind, &self.name);
            return Err(StoreError::Forbidden(format!(
                "{kind} {name} is public, but backups hold credentials (tokens, pairing keys): make it private (the {kind}'s Settings on the Hub) or set ENTRYPOINT_HF_ALLOW_PUBLIC=1 to use it anyway"
            )));
        }
        Ok(())
    }

    /// Classify an hf-hub error; a timeout is reported with our configured deadline.
    pub fn classify(&self, e: HFError) -> Failure {
        match Failure::from_hf(e) {
            Failure::Timeout(_) => Failure::Timeout(self.timeout),
            f => f,
        }
    }

    /// Turn a failure into the store's error, as one scrubbed line.
    pub fn fail(&self, what: &str, f: Failure) -> StoreError {
        let cx = Context {
            kind: self.kind,
            dataset: &self.name,
            endpoint: &self.endpoint,
            has_token: self.token.is_some(),
            what,
        };
        self.scrub(f.into_store_error(&cx))
    }

    /// Last line of defence: no token and no line breaks in anything we hand out.
    pub fn scrub(&self, e: StoreError) -> StoreError {
        let clean = |m: String| {
            let m = match &self.token {
                Some(t) if !t.expose().is_empty() => m.replace(t.expose(), "<redacted>"),
                _ => m,
            };
            m.replace(['\n', '\r'], " ")
        };
        match e {
            StoreError::Missing(m) => StoreError::Missing(clean(m)),
            StoreError::Unauthorized(m) => StoreError::Unauthorized(clean(m)),
            StoreError::Forbidden(m) => StoreError::Forbidden(clean(m)),
            StoreError::Unavailable(m) => StoreError::Unavailable(clean(m)),
            StoreError::Conflict(m) => StoreError::Conflict(clean(m)),
            StoreError::Corrupt(m) => StoreError::Corrupt(clean(m)),
            StoreError::Other(m) => StoreError::Other(clean(m)),
        }
    }

    /// Fails fast while a long 429 is being sat out.
    pub fn check_pause(&self) -> Result<(), Failure> {
        let mut paused = self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
        match *paused {
            Some(until) if until > Instant::now() => {
                Err(Failure::RateLimited(Some(until - Instant::now())))
            }
            Some(_) => {
                *paused = None;
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn pause(&self, d: Duration) {
        *self.paused_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + d);
    }

    /// How long to wait before another try, or None to give up (and maybe pause the store).
    pub fn backoff(&self, f: &Failure, tries: u32) -> Option<Duration> {
        if !f.is_transient() {
            return None;
        }
        if let Failure::RateLimited(Some(after)) = f {
            if *after > MAX_WAIT_IN_CALL || tries >= MAX_TRIES {
                self.pause(*after);
                return None;
            }
            return Some(*after);
        }
        if tries >= MAX_TRIES {
            return None;
        }
        let exp = BASE_DELAY * 2u32.pow(tries - 1);
        // Half fixed, half random: spreads retries of several containers apart.
        Some(exp / 2 + exp.mul_f64(rand::random::<f64>() / 2.0))
    }

    /// Run one hf-hub call with `deadline` per try and our retry policy (a deadline that runs
    /// out is not retried: see [`Failure::is_transient`]). Only for calls safe to repeat.
    pub async fn call_within<T, F, Fut>(
        &self,
        what: &str,
        deadline: Duration,
        mut op: F,
    ) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, HFError>>,
    {
        let mut tries = 0;
        loop {
            self.check_pause()?;
            tries += 1;
            let failure = match tokio::time::timeout(deadline, op()).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => self.classify(e),
                Err(_) => Failure::Timeout(deadline),
            };
            self.wait_or_give_up(what, failure, tries).await?;
        }
    }

    /// [`Conn::call_within`] with the per-request deadline.
    pub async fn call<T, F, Fut>(&self, what: &str, op: F) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, HFError>>,
    {
        self.call_within(what, self.timeout, op).await
    }

    /// A paginated hf-hub listing (`open` starts it), collected whole, as one call: a failure
    /// on any page retries the listing from the start.
    pub async fn collect<T, S, F>(&self, what: &str, open: F) -> Result<Vec<T>, Failure>
    where
        F: Fn() -> Result<S, HFError>,
        S: futures_util::Stream<Item = Result<T, HFError>>,
    {
        use futures_util::TryStreamExt;
        self.call(what, || async { open()?.try_collect::<Vec<T>>().await })
            .await
    }

    /// After a failed try: sleep the backoff and return Ok (try again), or the failure.
    async fn wait_or_give_up(
        &self,
        what: &str,
        failure: Failure,
        tries: u32,
    ) -> Result<(), Failure> {
        match self.backoff(&failure, tries) {
            Some(delay) => {
                warn!(store = %self.name, "{what}: {failure:?}; try {} of {MAX_TRIES} in {delay:?}", tries + 1);
                tokio::time::sleep(delay).await;
                Ok(())
            }
            None => Err(failure),
        }
    }

    /// A request hf-hub cannot make (or makes wrong), with our auth, deadline and retries
    /// (only for requests safe to repeat). Returns the body of a 2xx answer.
    pub async fn raw(
        &self,
        what: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<String, Failure> {
        let mut tries = 0;
        loop {
            self.check_pause()?;
            tries += 1;
            let mut req = build();
            if let Some(t) = &self.token {
                req = req.bearer_auth(t.expose());
            }
            let failure = match tokio::time::timeout(self.timeout, self.answer(req)).await {
                Err(_) => Failure::Timeout(self.timeout),
                Ok(Ok(body)) => return Ok(body),
                Ok(Err(f)) => f,
            };
            self.wait_or_give_up(what, failure, tries).await?;
        }
    }

    /// Send one raw request; the body of a 2xx, else the classified status.
    async fn answer(&self, req: reqwest::RequestBuilder) -> Result<String, Failure> {
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return Err(Failure::Timeout(self.timeout)),
            Err(e) => return Err(Failure::Network(failure::error_chain(&e))),
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .map(Duration::from_secs);
        let body = resp
            .text()
            .await
            .map_err(|e| Failure::Network(failure::error_chain(&e)));
        match (status.is_success(), body) {
            (true, Ok(body)) => Ok(body),
            (true, Err(f)) => Err(f),
            (false, body) => Err(Failure::from_status(
                status.as_u16(),
                retry_after,
                &body.unwrap_or_default(),
            )),
        }
    }

    /// The Hub hides a private repo or bucket from a bad token behind a 404 (so does the fake
    /// hub): ask who the token belongs to before calling it absent.
    pub async fn check_token_after_404(&self, what: &str) -> Result<(), StoreError> {
        if self.token.is_none() {
            return Ok(());
        }
        match tokio::time::timeout(self.timeout, self.client.whoami().send()).await {
            Ok(Err(e)) => match self.classify(e) {
                f @ Failure::Unauthorized => Err(self.fail(what, f)),
                // Anything else (an older hub without whoami, a blip): the 404 stands.
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// Stream a file the Hub says is `size` bytes into a new file in `scratch`, hashing as it
    /// arrives and counting the bytes in `progress`; `open` starts one download. Retries
    /// transient failures from the start (a body cut short included); removes the file on
    /// error. `file` names it in messages.
    pub async fn download<F, Fut>(
        &self,
        file: &str,
        size: u64,
        scratch: &Path,
        progress: &Progress,
        open: F,
    ) -> Result<(PathBuf, String), StoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<(Option<u64>, HFByteStream), HFError>>,
    {
        let what = "downloading the backup";
        let path = scratch.join(format!(
            ".hf-download-{}-{:08x}.tar.gz",
            std::process::id(),
            rand::random::<u32>()
        ));
        let mut out = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| StoreError::Other(format!("cannot create {}: {e}", path.display())))?;
        let mut tries = 0;
        let result = loop {
            tries += 1;
            progress.set(0);
            let failure = match self.download_once(&open, &mut out, progress).await {
                Ok((written, sha)) if written == size => break Ok(sha),
                Ok((written, _)) => {
                    Failure::Network(format!("the body ended after {written} of {size} bytes"))
                }
                Err(Download::Hub(f)) => f,
                Err(Download::Local(e)) => {
                    break Err(StoreError::Other(format!(
                        "writing {}: {e}",
                        path.display()
                    )))
                }
            };
            let short = matches!(&failure, Failure::Network(m) if m.starts_with("the body ended"));
            match self.wait_or_give_up(what, failure, tries).await {
                Ok(()) => {
                    if let Err(e) = rewind(&mut out).await {
                        break Err(StoreError::Other(format!("rewinding {}: {e}", path.display())));
                    }
                }
                Err(Failure::Network(m)) if short => {
                    break Err(StoreError::Corrupt(format!(
                        "{file} in {} {}: {m}, {MAX_TRIES} times; the stored file is shorter than the Hub says",
                        self.kind, self.name
                    )))
                }
                Err(f) => break Err(self.fail(what, f)),
            }
        };
        match result {
            Ok(sha) => Ok((path, sha)),
            Err(e) => {
                drop(out);
                let _ = tokio::fs::remove_file(&path).await;
                Err(self.scrub(e))
            }
        }
    }

    /// One streaming download; returns bytes written and their SHA-256.
    async fn download_once<F, Fut>(
        &self,
        open: &F,
        out: &mut tokio::fs::File,
        progress: &Progress,
    ) -> Result<(u64, String), Download>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<(Option<u64>, HFByteStream), HFError>>,
    {
        self.check_pause().map_err(Download::Hub)?;
        let (_, mut stream) = match tokio::time::timeout(self.timeout, open()).await {
            Ok(r) => r.map_err(|e| Download::Hub(self.classify(e)))?,
            Err(_) => return Err(Download::Hub(Failure::Timeout(self.timeout))),
        };
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        loop {
            // The deadline is per idle gap: a big archive may take long, a stalled one may not.
            let chunk = match tokio::time::timeout(self.timeout, stream.next()).await {
                Err(_) => return Err(Download::Hub(Failure::Timeout(self.timeout))),
                Ok(None) => break,
                Ok(Some(chunk)) => chunk.map_err(|e| Download::Hub(self.classify(e)))?,
            };
            hasher.update(&chunk);
            out.write_all(&chunk).await.map_err(Download::Local)?;
            written += chunk.len() as u64;
            progress.add(chunk.len() as u64);
        }
        out.flush().await.map_err(Download::Local)?;
        Ok((written, hex::encode(hasher.finalize())))
    }
}

/// The size of the archive a `put` uploads.
pub(super) fn local_size(archive: &Path) -> Result<u64, StoreError> {
    let meta = std::fs::metadata(archive).map_err(|e| {
        StoreError::Other(format!(
            "cannot read the archive {}: {e}",
            archive.display()
        ))
    })?;
    Ok(meta.len())
}

async fn rewind(file: &mut tokio::fs::File) -> std::io::Result<()> {
    file.set_len(0).await?;
    file.rewind().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(token: Option<&str>) -> Conn {
        let access = HubAccess {
            token: token.map(Secret::new),
            endpoint: Some("http://127.0.0.1:9".into()),
            allow_public: false,
            timeout: Duration::from_secs(5),
        };
        Conn::new(Kind::Dataset, "alice/claw", &access).expect("no I/O")
    }

    #[test]
    fn errors_are_scrubbed_of_the_token_and_line_breaks() {
        let c = conn(Some("hf_secret_123"));
        let e = c.scrub(StoreError::Other(
            "server said: bad hf_secret_123\nsecond line".into(),
        ));
        assert_eq!(e.to_string(), "server said: bad <redacted> second line");
    }

    #[test]
    fn backoff_honours_retry_after_and_pauses_on_long_ones() {
        let s = conn(None);
        assert_eq!(
            s.backoff(&Failure::RateLimited(Some(Duration::from_secs(3))), 1),
            Some(Duration::from_secs(3))
        );
        assert!(s.check_pause().is_ok());
        assert_eq!(
            s.backoff(&Failure::RateLimited(Some(Duration::from_secs(3600))), 1),
            None
        );
        assert!(
            matches!(s.check_pause(), Err(Failure::RateLimited(Some(d))) if d > Duration::from_secs(3500))
        );
        let s = conn(None);
        let d = s.backoff(&Failure::Server(503), 2).expect("retried");
        assert!(d >= BASE_DELAY && d <= BASE_DELAY * 2, "{d:?}");
        assert_eq!(s.backoff(&Failure::Server(503), MAX_TRIES), None, "bounded");
        assert_eq!(
            s.backoff(&Failure::Timeout(Duration::from_secs(5)), 1),
            None,
            "a stall is not retried"
        );
        assert_eq!(s.backoff(&Failure::Unauthorized, 1), None);
    }
}

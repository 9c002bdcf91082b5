//! Settings: the only module that reads the environment.
//!
//! Everything the binary can be told (env vars, plus the few CLI flags that override them) is
//! parsed and validated here, once, into one typed [`Settings`]. Every other module takes what it
//! needs as plain arguments. Errors name the variable and say how to fix it; secrets are wrapped
//! in [`Secret`], whose `Debug`/`Display` never show the value.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

mod bucket;
pub use bucket::BucketSettings;

/// A value that must never reach a log, an error or `status` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The real value. Call sites are few and easy to audit: grep for `expose`.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// A bad setting: which variable, and what to do about it. Displayed as one line.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {problem}")]
pub struct SettingError {
    pub var: &'static str,
    pub problem: String,
}

fn bad(var: &'static str, problem: impl Into<String>) -> SettingError {
    SettingError {
        var,
        problem: problem.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Restart whenever the child exits (except on config errors, exit 78).
    Always,
    /// Restart only when the child exits non-zero or is killed by a signal.
    OnFailure,
    /// Never restart: the entrypoint exits with the child's status, like tini.
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    Human,
    Json,
}

/// An IPv4/IPv6 network in CIDR notation (a bare address means a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// True when `ip` is in this range (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("'{s}' is not an IP address or CIDR (e.g. 10.0.0.0/8)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("'{s}' has a bad prefix length (0..={max})"))?,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Where backups live.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StoreSettings {
    /// A local folder (the embedded default; also a mounted bucket volume).
    Dir {
        path: PathBuf,
        /// Versions kept (`ENTRYPOINT_BACKUP_KEEP`, at least 1): the newest and the ones before
        /// it that a restore may fall back to.
        keep: usize,
    },
    /// A private Hugging Face dataset.
    Hf(HfSettings),
    /// A private Hugging Face Storage Bucket (`HF_BUCKET`).
    Bucket(BucketSettings),
}

#[derive(Debug, Clone, Serialize)]
pub struct HfSettings {
    /// `owner/name`.
    pub dataset: String,
    #[serde(flatten)]
    pub hub: HubAccess,
    /// Squash the dataset's history after this many uploads (0 = never).
    pub squash_every: u32,
}

/// How the Hub stores (dataset, bucket) reach the Hub.
#[derive(Debug, Clone, Serialize)]
pub struct HubAccess {
    pub token: Option<Secret>,
    /// `HF_ENDPOINT`, e.g. a fake hub in tests. None = the Hub.
    pub endpoint: Option<String>,
    /// `ENTRYPOINT_HF_ALLOW_PUBLIC`: allow a public dataset or bucket (backups hold
    /// credentials).
    pub allow_public: bool,
    /// Per-request timeout (`ENTRYPOINT_HF_TIMEOUT`).
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
}

impl HubAccess {
    fn from_env(env: &Env, token: Option<&Secret>) -> Result<HubAccess, SettingError> {
        Ok(HubAccess {
            token: token.cloned(),
            endpoint: env
                .get("HF_ENDPOINT")
                .map(|e| e.trim_end_matches('/').to_string()),
            allow_public: env.flag("ENTRYPOINT_HF_ALLOW_PUBLIC")?.unwrap_or(false),
            timeout: env.duration("ENTRYPOINT_HF_TIMEOUT", Duration::from_secs(60))?,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BackupSettings {
    /// None: backups are off (unless the data dir offers a network volume's folder).
    pub store: Option<StoreSettings>,
    /// `ENTRYPOINT_BACKUP_KEEP`: versions a dir store keeps, also one chosen by the data dir.
    pub keep: usize,
    /// Time between periodic backups (a random jitter of up to 10 % is added).
    #[serde(serialize_with = "ser_duration")]
    pub interval: Duration,
    /// Extra glob patterns (relative to the state dir) never backed up.
    pub excludes: Vec<String>,
    /// Deadline for the final backup after the child stopped.
    #[serde(serialize_with = "ser_duration")]
    pub final_deadline: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeepaliveSettings {
    pub url: String,
    #[serde(serialize_with = "ser_duration")]
    pub interval: Duration,
    /// `HF_TOKEN`, sent as a bearer token only when `url` is on the Space's own host
    /// (`SPACE_HOST`): a private Space answers 404 to anonymous requests.
    pub token: Option<Secret>,
}

/// Everything the binary was told, validated.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub gateway_token: Option<Secret>,
    pub hf_token: Option<Secret>,
    /// `OPENCLAW_HF_DEFAULT_MODEL` as set in the env (None when unset: see `default_model`).
    pub model_from_env: Option<String>,
    pub port: u16,
    pub space_host: Option<String>,
    pub extra_origins: Vec<String>,
    pub trusted_proxies: Vec<Cidr>,
    /// JSON merge patch (RFC 7396) applied last to openclaw.json.
    #[serde(serialize_with = "ser_patch")]
    pub config_patch: Option<serde_json::Value>,
    pub restart: Option<RestartPolicy>,
    #[serde(serialize_with = "ser_duration")]
    pub stop_timeout: Duration,
    pub log_format: LogFormat,
    /// `ENTRYPOINT_LOG`: a tracing filter (e.g. `debug`), default `info`.
    pub log_filter: String,
    /// The persistent-volume candidate for the data dir (default `/data`).
    pub data_dir_candidate: PathBuf,
    /// `$HOME`, the fallback data dir.
    pub home: Option<PathBuf>,
    /// `ENTRYPOINT_UNSAFE_LIVE_STATE_ON_NETWORK_FS`: keep the live state on the candidate even
    /// when it is a network or FUSE filesystem (see `datadir`).
    pub live_state_on_network_fs: bool,
    pub backup: BackupSettings,
    pub keepalive: Option<KeepaliveSettings>,
    /// Approve pending Control-UI pairing requests that passed token auth (see README).
    pub auto_pair: bool,
    /// `ENTRYPOINT_FRONT_DOOR`: listen on `port` ourselves (status page, proxy) and run the
    /// gateway on loopback at `gateway_port` (`ENTRYPOINT_GATEWAY_PORT`, default 18789).
    pub front_door: bool,
    pub gateway_port: u16,
    /// `ENTRYPOINT_HF_FRAMING` (default on): with the front door on a Space, let the Hub's
    /// origin (`hub_origin`) frame the app.
    pub hf_framing: bool,
    /// The origin of `HF_ENDPOINT` (default `https://huggingface.co`): where the Space page
    /// that frames the app is served from.
    pub hub_origin: String,
}

pub const DEFAULT_MODEL: &str = "huggingface/deepseek-ai/DeepSeek-R1";

impl Settings {
    /// The port the gateway listens on: behind the front door, its own loopback port.
    pub fn gateway_listen_port(&self) -> u16 {
        if self.front_door {
            self.gateway_port
        } else {
            self.port
        }
    }

    /// The model to configure when the config has none.
    pub fn default_model(&self) -> &str {
        self.model_from_env.as_deref().unwrap_or(DEFAULT_MODEL)
    }
}

/// CLI flags that override their env var.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub restart: Option<RestartPolicy>,
    pub stop_timeout: Option<Duration>,
    pub log_format: Option<LogFormat>,
}

/// A snapshot of the process environment (or a test's map).
#[derive(Debug, Default, Clone)]
pub struct Env(BTreeMap<String, String>);

impl Env {
    pub fn from_process() -> Self {
        // Non-UTF-8 values cannot be any of our settings; keep them out rather than panic.
        Env(std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect())
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Env(pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    /// The value, with surrounding whitespace trimmed; empty counts as unset.
    pub fn get(&self, var: &str) -> Option<&str> {
        self.0.get(var).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    fn flag(&self, var: &'static str) -> Result<Option<bool>, SettingError> {
        match self.get(var).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(None),
            Some("1" | "true" | "yes" | "on") => Ok(Some(true)),
            Some("0" | "false" | "no" | "off") => Ok(Some(false)),
            Some(other) => Err(bad(
                var,
                format!("'{other}' is not a boolean; use 1/0, true/false, yes/no or on/off"),
            )),
        }
    }

    fn duration(&self, var: &'static str, default: Duration) -> Result<Duration, SettingError> {
        match self.get(var) {
            None => Ok(default),
            Some(v) => parse_duration(v).map_err(|e| bad(var, e)),
        }
    }

    pub fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Durations appear in `status` as `"300s"`, not as serde's `{secs, nanos}`.
fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{}s", d.as_secs_f64()))
}

/// The patch may hold literal keys: `status` shows it with secret-looking values redacted.
fn ser_patch<S: serde::Serializer>(p: &Option<serde_json::Value>, s: S) -> Result<S::Ok, S::Error> {
    let mut p = p.clone();
    if let Some(v) = &mut p {
        redact_secret_values(v);
    }
    p.serialize(s)
}

/// Replace string values under secret-looking keys (`apiKey`, `token`, `password`, ...) by
/// `<redacted>`, except env references like `${MY_KEY}`, which are safe to show.
pub fn redact_secret_values(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                let key = k.to_ascii_lowercase();
                let secretish = ["key", "token", "secret", "password", "credential"]
                    .iter()
                    .any(|w| key.contains(w));
                match v {
                    serde_json::Value::String(s) if secretish && !s.starts_with("${") => {
                        *s = "<redacted>".into()
                    }
                    _ => redact_secret_values(v),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(redact_secret_values),
        _ => {}
    }
}

/// `90`, `90s`, `5m`, `2h`, `500ms` → a duration.
/// Versions the folder store keeps by default: the newest and two to fall back to.
pub const DEFAULT_BACKUP_KEEP: usize = 3;

/// `ENTRYPOINT_BACKUP_KEEP`: a whole number, at least 1 (validated whichever store is used).
fn backup_keep(env: &Env) -> Result<usize, SettingError> {
    let Some(v) = env.get("ENTRYPOINT_BACKUP_KEEP") else {
        return Ok(DEFAULT_BACKUP_KEEP);
    };
    match v.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(bad(
            "ENTRYPOINT_BACKUP_KEEP",
            format!("'{v}' is not a count of at least 1; use a whole number of versions to keep, e.g. 3"),
        )),
    }
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration; use e.g. 30, 30s, 5m or 2h"))?;
    let secs = |m: u64| Ok(Duration::from_secs(n.saturating_mul(m)));
    match unit.trim() {
        "" | "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "ms" => Ok(Duration::from_millis(n)),
        _ => Err(format!(
            "'{s}' has an unknown unit; use s, m, h or ms (e.g. 30s, 5m)"
        )),
    }
}

fn list(v: &str) -> impl Iterator<Item = &str> {
    v.split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

impl Settings {
    /// Read every setting from the environment (and the CLI's overrides); the first bad one
    /// is the error, naming its variable and what to write instead.
    pub fn load(env: &Env, cli: &Overrides) -> Result<Settings, SettingError> {
        let space_host = env.get("SPACE_HOST").map(|h| {
            h.trim_start_matches("https://")
                .trim_end_matches('/')
                .to_string()
        });
        let hf_token = env.get("HF_TOKEN").map(Secret::new);
        // Fields in the order the variables are checked (the first bad one is the error).
        Ok(Settings {
            gateway_token: env.get("OPENCLAW_GATEWAY_TOKEN").map(Secret::new),
            model_from_env: env.get("OPENCLAW_HF_DEFAULT_MODEL").map(String::from),
            port: port(env)?,
            extra_origins: origins(env)?,
            trusted_proxies: trusted_proxies(env, space_host.is_some())?,
            config_patch: config_patch(env)?,
            restart: restart(env, cli)?,
            stop_timeout: match cli.stop_timeout {
                Some(d) => d,
                None => env.duration("ENTRYPOINT_STOP_TIMEOUT", Duration::from_secs(15))?,
            },
            log_format: log_format(env, cli)?,
            log_filter: env.get("ENTRYPOINT_LOG").unwrap_or("info").to_string(),
            data_dir_candidate: PathBuf::from(env.get("ENTRYPOINT_DATA_DIR").unwrap_or("/data")),
            home: env.get("HOME").map(PathBuf::from),
            live_state_on_network_fs: env
                .flag("ENTRYPOINT_UNSAFE_LIVE_STATE_ON_NETWORK_FS")?
                .unwrap_or(false),
            backup: backup(env, hf_token.as_ref())?,
            keepalive: keepalive(env, space_host.as_deref(), hf_token.as_ref())?,
            auto_pair: env.flag("ENTRYPOINT_AUTO_PAIR")?.unwrap_or(true),
            front_door: env.flag("ENTRYPOINT_FRONT_DOOR")?.unwrap_or(true),
            gateway_port: gateway_port(env)?,
            hf_framing: env.flag("ENTRYPOINT_HF_FRAMING")?.unwrap_or(true),
            hub_origin: hub_origin(env)?,
            space_host,
            hf_token,
        })
    }

    /// The secret values, so output can be scrubbed of them as a last line of defence.
    pub fn secrets(&self) -> Vec<&str> {
        [&self.gateway_token, &self.hf_token]
            .into_iter()
            .flatten()
            .map(Secret::expose)
            .collect()
    }
}

fn port(env: &Env) -> Result<u16, SettingError> {
    tcp_port(env, "PORT", 7860, "Spaces expect 7860")
}

fn gateway_port(env: &Env) -> Result<u16, SettingError> {
    tcp_port(env, "ENTRYPOINT_GATEWAY_PORT", 18789, "not PORT's")
}

/// The TCP port in `var` (1..65535), or `default`; `hint` ends the error.
fn tcp_port(env: &Env, var: &'static str, default: u16, hint: &str) -> Result<u16, SettingError> {
    let Some(p) = env.get(var) else {
        return Ok(default);
    };
    p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
        bad(
            var,
            format!("'{p}' is not a TCP port; use 1..65535 ({hint})"),
        )
    })
}

/// `scheme://host[:port]` of `HF_ENDPOINT`.
fn hub_origin(env: &Env) -> Result<String, SettingError> {
    let Some(e) = env.get("HF_ENDPOINT") else {
        return Ok("https://huggingface.co".into());
    };
    let rest = e
        .strip_prefix("https://")
        .map(|r| ("https", r))
        .or_else(|| e.strip_prefix("http://").map(|r| ("http", r)));
    let Some((scheme, rest)) = rest else {
        return Err(bad(
            "HF_ENDPOINT",
            format!("'{e}' is not an http(s) URL; e.g. https://huggingface.co"),
        ));
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() {
        return Err(bad("HF_ENDPOINT", format!("'{e}' has no host")));
    }
    Ok(format!("{scheme}://{host}"))
}

fn origins(env: &Env) -> Result<Vec<String>, SettingError> {
    let mut extra_origins = Vec::new();
    for o in list(env.get("OPENCLAW_ALLOWED_ORIGINS").unwrap_or("")) {
        if !(o.starts_with("http://") || o.starts_with("https://")) || o.ends_with('/') {
            return Err(bad(
                "OPENCLAW_ALLOWED_ORIGINS",
                format!(
                    "'{o}' is not an origin; write scheme://host[:port], e.g. https://example.com"
                ),
            ));
        }
        extra_origins.push(o.to_string());
    }
    Ok(extra_origins)
}

fn trusted_proxies(env: &Env, on_a_space: bool) -> Result<Vec<Cidr>, SettingError> {
    // On a Space the HF proxy reaches us from 10.x; locally nothing is trusted by default.
    let default = if on_a_space { "10.0.0.0/8" } else { "" };
    let v = match env.0.get("OPENCLAW_TRUSTED_PROXIES") {
        Some(v) => v.as_str(),
        None => default,
    };
    list(v)
        .map(|c| {
            c.parse::<Cidr>()
                .map_err(|e| bad("OPENCLAW_TRUSTED_PROXIES", e))
        })
        .collect()
}

fn config_patch(env: &Env) -> Result<Option<serde_json::Value>, SettingError> {
    let Some(p) = env.get("OPENCLAW_CONFIG_PATCH") else {
        return Ok(None);
    };
    let v: serde_json::Value = serde_json::from_str(p).map_err(|e| {
        bad(
            "OPENCLAW_CONFIG_PATCH",
            format!("not valid JSON ({e}); give a JSON object, e.g. {{\"models\":{{...}}}}"),
        )
    })?;
    if !v.is_object() {
        return Err(bad(
            "OPENCLAW_CONFIG_PATCH",
            "must be a JSON object (an RFC 7396 merge patch)",
        ));
    }
    Ok(Some(v))
}

fn restart(env: &Env, cli: &Overrides) -> Result<Option<RestartPolicy>, SettingError> {
    if let Some(r) = cli.restart {
        return Ok(Some(r));
    }
    let Some(v) = env.get("ENTRYPOINT_RESTART") else {
        return Ok(None);
    };
    <RestartPolicy as clap::ValueEnum>::from_str(v, true)
        .map(Some)
        .map_err(|_| {
            bad(
                "ENTRYPOINT_RESTART",
                format!("'{v}' is not a policy; use always, on-failure or never"),
            )
        })
}

fn log_format(env: &Env, cli: &Overrides) -> Result<LogFormat, SettingError> {
    if let Some(f) = cli.log_format {
        return Ok(f);
    }
    let Some(v) = env.get("ENTRYPOINT_LOG_FORMAT") else {
        return Ok(LogFormat::Human);
    };
    <LogFormat as clap::ValueEnum>::from_str(v, true).map_err(|_| {
        bad(
            "ENTRYPOINT_LOG_FORMAT",
            format!("'{v}' is not a format; use human or json"),
        )
    })
}

fn backup(env: &Env, hf_token: Option<&Secret>) -> Result<BackupSettings, SettingError> {
    let store = store(env, hf_token)?;
    let interval = env.duration("ENTRYPOINT_BACKUP_INTERVAL", Duration::from_secs(300))?;
    if interval < Duration::from_secs(1) {
        return Err(bad("ENTRYPOINT_BACKUP_INTERVAL", "must be at least 1s"));
    }
    let excludes: Vec<String> = list(env.get("ENTRYPOINT_BACKUP_EXCLUDE").unwrap_or(""))
        .map(String::from)
        .collect();
    for g in &excludes {
        globset::Glob::new(g)
            .map_err(|e| bad("ENTRYPOINT_BACKUP_EXCLUDE", format!("'{g}': {e}")))?;
    }
    Ok(BackupSettings {
        store,
        keep: backup_keep(env)?,
        interval,
        excludes,
        final_deadline: env.duration("ENTRYPOINT_BACKUP_DEADLINE", Duration::from_secs(12))?,
    })
}

/// Which store backups go to: `HF_DATASET`, `HF_BUCKET` or `ENTRYPOINT_BACKUP_DIR` (only one),
/// or none.
fn store(env: &Env, hf_token: Option<&Secret>) -> Result<Option<StoreSettings>, SettingError> {
    let keep = backup_keep(env)?;
    // Checked even without a Hub store: a bad value is an error either way.
    let hub = HubAccess::from_env(env, hf_token)?;
    let chosen: Vec<(&'static str, &str)> = ["HF_DATASET", "HF_BUCKET", "ENTRYPOINT_BACKUP_DIR"]
        .into_iter()
        .filter_map(|var| env.get(var).map(|v| (var, v)))
        .collect();
    Ok(match chosen.as_slice() {
        [] => None,
        [("HF_DATASET", ds)] => Some(StoreSettings::Hf(hf_store(env, ds, hub)?)),
        [("HF_BUCKET", b)] => Some(StoreSettings::Bucket(bucket::bucket_store(b, hub, keep)?)),
        [(_, dir)] => Some(StoreSettings::Dir {
            path: PathBuf::from(dir),
            keep,
        }),
        [(first, _), (second, _), ..] => {
            return Err(bad(
                second,
                format!("set only one of HF_DATASET, HF_BUCKET and ENTRYPOINT_BACKUP_DIR (both {first} and {second} are set)"),
            ))
        }
    })
}

fn hf_store(env: &Env, ds: &str, hub: HubAccess) -> Result<HfSettings, SettingError> {
    let valid = ds
        .split_once('/')
        .is_some_and(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/'));
    if !valid {
        return Err(bad(
            "HF_DATASET",
            format!("'{ds}' is not a dataset id; write owner/name, e.g. alice/openclaw-backup"),
        ));
    }
    let squash_every = match env.get("ENTRYPOINT_HF_SQUASH_EVERY") {
        None => 24,
        Some(v) => v.parse().map_err(|_| {
            bad(
                "ENTRYPOINT_HF_SQUASH_EVERY",
                format!("'{v}' is not a count; use a whole number of uploads (0 = never squash)"),
            )
        })?,
    };
    Ok(HfSettings {
        dataset: ds.to_string(),
        hub,
        squash_every,
    })
}

fn keepalive(
    env: &Env,
    space_host: Option<&str>,
    hf_token: Option<&Secret>,
) -> Result<Option<KeepaliveSettings>, SettingError> {
    if env.flag("ENTRYPOINT_KEEPALIVE")? != Some(true) {
        return Ok(None);
    }
    let url = match (env.get("ENTRYPOINT_KEEPALIVE_URL"), space_host) {
        (Some(u), _) => u.to_string(),
        (None, Some(h)) => format!("https://{h}/healthz"),
        (None, None) => {
            return Err(bad(
                "ENTRYPOINT_KEEPALIVE_URL",
                "keep-alive is on but there is no URL to ping; set ENTRYPOINT_KEEPALIVE_URL (SPACE_HOST is not set)",
            ))
        }
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(bad(
            "ENTRYPOINT_KEEPALIVE_URL",
            format!("'{url}' is not an http(s) URL"),
        ));
    }
    // Never send the token to a third-party monitor URL.
    let own_host = space_host.is_some_and(|h| {
        url.strip_prefix("https://")
            .and_then(|rest| rest.split(['/', '?', '#']).next())
            .is_some_and(|host| host.eq_ignore_ascii_case(h))
    });
    Ok(Some(KeepaliveSettings {
        token: if own_host { hf_token.cloned() } else { None },
        url,
        interval: env.duration(
            "ENTRYPOINT_KEEPALIVE_INTERVAL",
            Duration::from_secs(6 * 3600),
        )?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, SettingError> {
        Settings::load(
            &Env::from_pairs(pairs.iter().copied()),
            &Overrides::default(),
        )
    }

    #[test]
    fn defaults() {
        let s = load(&[]).unwrap();
        assert_eq!(s.port, 7860);
        assert_eq!(s.default_model(), DEFAULT_MODEL);
        assert!(s.trusted_proxies.is_empty());
        assert!(s.backup.store.is_none());
        assert_eq!(s.data_dir_candidate, PathBuf::from("/data"));
        assert!(s.auto_pair);
    }

    #[test]
    fn space_host_trusts_hf_proxy_by_default() {
        let s = load(&[("SPACE_HOST", "alice-claw.hf.space")]).unwrap();
        assert_eq!(s.trusted_proxies[0].to_string(), "10.0.0.0/8");
        // An explicit empty value turns it off.
        let s = load(&[
            ("SPACE_HOST", "a-b.hf.space"),
            ("OPENCLAW_TRUSTED_PROXIES", ""),
        ])
        .unwrap();
        assert!(s.trusted_proxies.is_empty());
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, val) in [
            ("PORT", "78600"),
            ("PORT", "http"),
            ("OPENCLAW_TRUSTED_PROXIES", "10.0.0.0/33"),
            ("OPENCLAW_TRUSTED_PROXIES", "10.0.0/8"),
            ("OPENCLAW_CONFIG_PATCH", "{\"models\":"),
            ("OPENCLAW_CONFIG_PATCH", "[1]"),
            ("OPENCLAW_ALLOWED_ORIGINS", "example.com"),
            ("HF_DATASET", "no-slash"),
            ("ENTRYPOINT_RESTART", "sometimes"),
            ("ENTRYPOINT_BACKUP_INTERVAL", "5 parsecs"),
            ("ENTRYPOINT_HF_ALLOW_PUBLIC", "maybe"),
        ] {
            let err = load(&[(var, val)]).unwrap_err();
            assert_eq!(err.var, var, "{var}={val}");
            let line = err.to_string();
            assert!(line.starts_with(var) && !line.contains('\n'), "{line}");
        }
    }

    #[test]
    fn secrets_are_redacted_in_debug_and_json() {
        let s = load(&[
            ("OPENCLAW_GATEWAY_TOKEN", "tok-123456"),
            ("HF_TOKEN", "hf_abcdef"),
            ("HF_DATASET", "a/b"),
        ])
        .unwrap();
        let dbg = format!("{s:?}");
        let json = serde_json::to_string(&s).unwrap();
        for out in [dbg, json] {
            assert!(
                !out.contains("tok-123456") && !out.contains("hf_abcdef"),
                "{out}"
            );
        }
        assert_eq!(s.secrets(), vec!["tok-123456", "hf_abcdef"]);
        let patch = r#"{"models":{"providers":{"p":{"apiKey":"sk-literal","baseUrl":"http://x"},"q":{"apiKey":"${Q_KEY}"}}}}"#;
        let s = load(&[("OPENCLAW_CONFIG_PATCH", patch)]).unwrap();
        let json = serde_json::to_string(&s).unwrap();
        assert!(
            !json.contains("sk-literal") && json.contains("${Q_KEY}") && json.contains("http://x"),
            "{json}"
        );
    }

    #[test]
    fn cli_overrides_env() {
        let env = Env::from_pairs([
            ("ENTRYPOINT_RESTART", "always"),
            ("ENTRYPOINT_STOP_TIMEOUT", "3s"),
        ]);
        let s = Settings::load(
            &env,
            &Overrides {
                restart: Some(RestartPolicy::Never),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.restart, Some(RestartPolicy::Never));
        assert_eq!(s.stop_timeout, Duration::from_secs(3));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn keepalive_sends_hf_token_only_to_the_space_itself() {
        let s = load(&[
            ("ENTRYPOINT_KEEPALIVE", "1"),
            ("SPACE_HOST", "a-b.hf.space"),
            ("HF_TOKEN", "hf_x"),
        ])
        .unwrap();
        let ka = s.keepalive.unwrap();
        assert_eq!(ka.url, "https://a-b.hf.space/healthz");
        assert_eq!(ka.token.as_ref().map(Secret::expose), Some("hf_x"));
        for url in [
            "https://monitor.example/ping",
            "http://a-b.hf.space/healthz",
            "https://a-b.hf.space.evil.example/x",
        ] {
            let s = load(&[
                ("ENTRYPOINT_KEEPALIVE", "1"),
                ("ENTRYPOINT_KEEPALIVE_URL", url),
                ("SPACE_HOST", "a-b.hf.space"),
                ("HF_TOKEN", "hf_x"),
            ])
            .unwrap();
            assert!(s.keepalive.unwrap().token.is_none(), "{url}");
        }
        assert!(
            load(&[("ENTRYPOINT_KEEPALIVE", "1")]).unwrap_err().var == "ENTRYPOINT_KEEPALIVE_URL"
        );
    }

    #[test]
    fn store_selection() {
        let s = load(&[("ENTRYPOINT_BACKUP_DIR", "/backups")]).unwrap();
        assert!(matches!(s.backup.store, Some(StoreSettings::Dir { .. })));
        let s = load(&[("HF_DATASET", "alice/backup"), ("HF_TOKEN", "hf_x")]).unwrap();
        match s.backup.store {
            Some(StoreSettings::Hf(h)) => {
                assert_eq!(h.dataset, "alice/backup");
                assert!(!h.hub.allow_public);
            }
            other => panic!("{other:?}"),
        }
        assert!(load(&[("HF_DATASET", "a/b"), ("ENTRYPOINT_BACKUP_DIR", "/x")]).is_err());
        let s = load(&[
            ("HF_BUCKET", "alice/claw/box"),
            ("HF_TOKEN", "hf_x"),
            ("ENTRYPOINT_BACKUP_KEEP", "5"),
        ])
        .unwrap();
        match s.backup.store {
            Some(StoreSettings::Bucket(b)) => {
                assert_eq!(
                    (b.bucket.as_str(), b.prefix.as_str()),
                    ("alice/claw", "box")
                );
                assert_eq!(b.keep, 5);
                assert!(b.hub.token.is_some() && !b.hub.allow_public);
            }
            other => panic!("{other:?}"),
        }
        for other in [("HF_DATASET", "a/b"), ("ENTRYPOINT_BACKUP_DIR", "/x")] {
            let e = load(&[("HF_BUCKET", "a/b"), other]).unwrap_err();
            let line = e.to_string();
            assert!(
                line.contains("HF_BUCKET") && line.contains(other.0),
                "{line}"
            );
            assert!(!line.contains('\n'), "{line}");
        }
    }

    #[test]
    fn backup_keep_is_a_count_of_at_least_one() {
        let keep = |pairs: &[(&str, &str)]| match load(pairs).unwrap().backup.store {
            Some(StoreSettings::Dir { keep, .. }) => keep,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            keep(&[("ENTRYPOINT_BACKUP_DIR", "/b")]),
            DEFAULT_BACKUP_KEEP
        );
        assert_eq!(
            keep(&[
                ("ENTRYPOINT_BACKUP_DIR", "/b"),
                ("ENTRYPOINT_BACKUP_KEEP", "1")
            ]),
            1
        );
        assert_eq!(
            keep(&[
                ("ENTRYPOINT_BACKUP_DIR", "/b"),
                ("ENTRYPOINT_BACKUP_KEEP", " 7 ")
            ]),
            7
        );
        for v in ["0", "-1", "two", "1.5"] {
            let e = load(&[
                ("ENTRYPOINT_BACKUP_DIR", "/b"),
                ("ENTRYPOINT_BACKUP_KEEP", v),
            ])
            .unwrap_err();
            assert_eq!(e.var, "ENTRYPOINT_BACKUP_KEEP", "{v:?}");
            let line = e.to_string();
            assert!(
                line.starts_with("ENTRYPOINT_BACKUP_KEEP: ") && !line.contains('\n'),
                "{line}"
            );
        }
        // Validated even when the HF store is used (where it does not apply).
        assert!(load(&[("HF_DATASET", "a/b"), ("ENTRYPOINT_BACKUP_KEEP", "0")]).is_err());
    }
}

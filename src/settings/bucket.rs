//! `HF_BUCKET=owner/name[/prefix]`: backups in a Hugging Face Storage Bucket (see
//! `store::bucket`). Its own file so `store()` in the settings stays a short choice.

use std::time::Duration;

use serde::Serialize;

use super::{bad, Env, Secret, SettingError};

#[derive(Debug, Clone, Serialize)]
pub struct BucketSettings {
    /// `owner/name`.
    pub bucket: String,
    /// Folder inside the bucket, without leading or trailing `/`; empty for the bucket's root.
    pub prefix: String,
    pub token: Option<Secret>,
    /// `HF_ENDPOINT`, e.g. a fake hub in tests. None = the Hub.
    pub endpoint: Option<String>,
    /// `ENTRYPOINT_HF_ALLOW_PUBLIC`: allow a public bucket (backups hold credentials).
    pub allow_public: bool,
    /// Versions kept (`ENTRYPOINT_BACKUP_KEEP`, at least 1).
    pub keep: usize,
    /// Per-request timeout (`ENTRYPOINT_HF_TIMEOUT`).
    #[serde(serialize_with = "super::ser_duration")]
    pub timeout: Duration,
}

/// Parse `HF_BUCKET`'s value (`owner/name`, `owner/name/folder`, also `hf://buckets/...`).
pub(super) fn bucket_store(
    env: &Env,
    value: &str,
    token: Option<&Secret>,
    allow_public: bool,
    keep: usize,
) -> Result<BucketSettings, SettingError> {
    let v = value.trim_start_matches("hf://buckets/").trim_matches('/');
    let mut parts = v.splitn(3, '/');
    let (owner, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let prefix = parts.next().unwrap_or("").trim_matches('/').to_string();
    let clean = |s: &str| !s.is_empty() && !s.contains(['\\', ' ']) && s != "." && s != "..";
    let prefix_ok = prefix.is_empty() || prefix.split('/').all(clean);
    if !clean(owner) || !clean(name) || !prefix_ok {
        return Err(bad(
            "HF_BUCKET",
            format!("'{value}' is not a bucket; write owner/name or owner/name/folder, e.g. alice/openclaw-backups"),
        ));
    }
    Ok(BucketSettings {
        bucket: format!("{owner}/{name}"),
        prefix,
        token: token.cloned(),
        endpoint: env
            .get("HF_ENDPOINT")
            .map(|e| e.trim_end_matches('/').to_string()),
        allow_public,
        keep,
        timeout: env.duration("ENTRYPOINT_HF_TIMEOUT", Duration::from_secs(60))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &str) -> Result<BucketSettings, SettingError> {
        bucket_store(&Env::from_pairs([]), v, None, false, 3)
    }

    #[test]
    fn bucket_ids_with_and_without_a_folder() {
        let b = |v: &str| {
            let b = parse(v).unwrap();
            (b.bucket, b.prefix)
        };
        assert_eq!(b("alice/claw"), ("alice/claw".into(), String::new()));
        assert_eq!(b("alice/claw/"), ("alice/claw".into(), String::new()));
        assert_eq!(
            b("alice/claw/space/a"),
            ("alice/claw".into(), "space/a".into())
        );
        assert_eq!(
            b("hf://buckets/alice/claw/x"),
            ("alice/claw".into(), "x".into())
        );
        for bad in [
            "alice",
            "/claw",
            "alice/../x",
            "a/b/../c",
            "a b/c",
            "a/b/x//y",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.var, "HF_BUCKET", "{bad}");
        }
    }
}

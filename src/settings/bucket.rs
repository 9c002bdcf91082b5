//! `HF_BUCKET=owner/name[/prefix]`: backups in a Hugging Face Storage Bucket (see
//! `store::bucket`). Its own file so the store selection in `Settings::load` stays one call.

use std::time::Duration;

use serde::Serialize;

use super::{bad, Env, Secret, SettingError, StoreSettings};

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
    /// Versions kept (`ENTRYPOINT_BACKUP_KEEP`).
    pub keep: usize,
    /// Per-request timeout (`ENTRYPOINT_HF_TIMEOUT`).
    #[serde(serialize_with = "super::ser_duration")]
    pub timeout: Duration,
}

/// `store` as chosen from the other variables, or the bucket when `HF_BUCKET` is set (then it
/// must be the only store variable).
pub(super) fn with_bucket(
    env: &Env,
    store: Option<StoreSettings>,
    keep: usize,
) -> Result<Option<StoreSettings>, SettingError> {
    let Some(v) = env.get("HF_BUCKET") else {
        return Ok(store);
    };
    if store.is_some() {
        return Err(bad(
            "HF_BUCKET",
            "set only one of HF_BUCKET, HF_DATASET and ENTRYPOINT_BACKUP_DIR",
        ));
    }
    let v = v.trim_start_matches("hf://buckets/").trim_matches('/');
    let mut parts = v.splitn(3, '/');
    let (owner, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let prefix = parts.next().unwrap_or("").trim_matches('/').to_string();
    let clean = |s: &str| !s.is_empty() && !s.contains(['\\', ' ']) && s != "." && s != "..";
    if !clean(owner) || !clean(name) || prefix.split('/').any(|s| s == ".." || s == ".") {
        return Err(bad(
            "HF_BUCKET",
            format!("'{v}' is not a bucket; write owner/name or owner/name/folder, e.g. alice/openclaw-backups"),
        ));
    }
    Ok(Some(StoreSettings::Bucket(BucketSettings {
        bucket: format!("{owner}/{name}"),
        prefix,
        token: env.get("HF_TOKEN").map(Secret::new),
        endpoint: env
            .get("HF_ENDPOINT")
            .map(|e| e.trim_end_matches('/').to_string()),
        allow_public: env.flag("ENTRYPOINT_HF_ALLOW_PUBLIC")?.unwrap_or(false),
        keep,
        timeout: env.duration("ENTRYPOINT_HF_TIMEOUT", Duration::from_secs(60))?,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<Option<StoreSettings>, SettingError> {
        with_bucket(&Env::from_pairs(pairs.iter().copied()), None, 3)
    }

    #[test]
    fn bucket_ids_with_and_without_a_folder() {
        let b = |v: &str| match parse(&[("HF_BUCKET", v)]).unwrap() {
            Some(StoreSettings::Bucket(b)) => (b.bucket, b.prefix),
            other => panic!("{other:?}"),
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
        for bad in ["alice", "/claw", "alice/../x", "a/b/../c", "a b/c"] {
            let e = parse(&[("HF_BUCKET", bad)]).unwrap_err();
            assert_eq!(e.var, "HF_BUCKET", "{bad}");
        }
        assert!(parse(&[]).unwrap().is_none());
    }

    #[test]
    fn only_one_store() {
        let env = Env::from_pairs([("HF_BUCKET", "a/b")]);
        let dir = StoreSettings::Dir {
            path: "/x".into(),
            keep: 3,
        };
        assert_eq!(
            with_bucket(&env, Some(dir), 3).unwrap_err().var,
            "HF_BUCKET"
        );
    }
}

//! `HF_BUCKET=owner/name[/prefix]`: backups in a Hugging Face Storage Bucket (see
//! `store::bucket`). Its own file so `store()` in the settings stays a short choice.

use serde::Serialize;

use super::{bad, HubAccess, SettingError};

#[derive(Debug, Clone, Serialize)]
pub struct BucketSettings {
    /// `owner/name`.
    pub bucket: String,
    /// Folder inside the bucket, without leading or trailing `/`; empty for the bucket's root.
    pub prefix: String,
    #[serde(flatten)]
    pub hub: HubAccess,
    /// Versions kept (`ENTRYPOINT_BACKUP_KEEP`, at least 1).
    pub keep: usize,
}

/// Parse `HF_BUCKET`'s value (`owner/name`, `owner/name/folder`, also `hf://buckets/...`).
pub(super) fn bucket_store(
    value: &str,
    hub: HubAccess,
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
        hub,
        keep,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &str) -> Result<BucketSettings, SettingError> {
        let hub = HubAccess {
            token: None,
            endpoint: None,
            allow_public: false,
            timeout: std::time::Duration::from_secs(1),
        };
        bucket_store(v, hub, 3)
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

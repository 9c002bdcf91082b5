//! `openclaw.json`: merge the keys the entrypoint owns into whatever the user and OpenClaw wrote.
//!
//! Owned keys: `gateway.mode`, `gateway.port`, `gateway.bind`, `gateway.auth.{mode,token}`,
//! `gateway.controlUi.allowedOrigins`, `gateway.trustedProxies`, and the default model (when the
//! env sets one, or the config has none). Everything else survives untouched. The token is
//! written as the env reference `${OPENCLAW_GATEWAY_TOKEN}`, never as its value. The user's
//! merge patch (`OPENCLAW_CONFIG_PATCH`, RFC 7396) is applied last.

use std::fs;

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{json, Map, Value};

use crate::settings::Settings;

pub const FILE_NAME: &str = "openclaw.json";
/// How the token appears on disk: OpenClaw substitutes it from the child's environment.
pub const TOKEN_REF: &str = "${OPENCLAW_GATEWAY_TOKEN}";

/// What `load_existing` found on disk.
#[derive(Debug)]
pub enum Existing {
    None,
    Json(Value),
    /// Hand-edited JSON5: parsed; the original is kept aside at the given path when written.
    Json5(Value),
    /// Neither JSON nor JSON5 (or not an object): never destroyed, moved aside before writing.
    Unreadable(String),
}

/// Read `path` as JSON, then JSON5.
pub fn load_existing(path: &Path) -> anyhow::Result<Existing> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Existing::None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(&text) {
        return Ok(Existing::Json(v));
    }
    match json5::from_str::<Value>(&text) {
        Ok(v @ Value::Object(_)) => Ok(Existing::Json5(v)),
        Ok(_) => Ok(Existing::Unreadable(
            "the top level is not an object".into(),
        )),
        Err(e) => Ok(Existing::Unreadable(e.to_string())),
    }
}

fn obj(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    v.as_object_mut().expect("just made an object")
}

fn child<'a>(v: &'a mut Value, key: &str) -> &'a mut Value {
    let m = obj(v);
    let c = m
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !c.is_object() {
        *c = Value::Object(Map::new());
    }
    c
}

/// The origins browsers will use: the Space's, the extras, and local ones for `docker run`.
pub fn allowed_origins(s: &Settings) -> Vec<String> {
    let mut v: Vec<String> = s
        .space_host
        .iter()
        .map(|h| format!("https://{h}"))
        .collect();
    v.extend(s.extra_origins.iter().cloned());
    v.push(format!("http://localhost:{}", s.port));
    v.push(format!("http://127.0.0.1:{}", s.port));
    let mut seen = std::collections::HashSet::new();
    v.retain(|o| seen.insert(o.clone()));
    v
}

/// Apply the owned keys and then the user's patch to `config` (which may be `{}`).
pub fn apply_owned(mut config: Value, s: &Settings) -> Value {
    let gateway = child(&mut config, "gateway");
    let g = obj(gateway);
    g.insert("mode".into(), json!("local"));
    g.insert("port".into(), json!(s.gateway_listen_port()));
    // Behind the front door the gateway is reachable on loopback only.
    g.insert(
        "bind".into(),
        json!(if s.front_door { "loopback" } else { "lan" }),
    );
    let auth = obj(child(gateway, "auth"));
    auth.insert("mode".into(), json!("token"));
    auth.insert("token".into(), json!(TOKEN_REF));
    // A password left from another mode would be ignored at best; token mode is ours.
    auth.remove("password");
    obj(child(gateway, "controlUi")).insert("allowedOrigins".into(), json!(allowed_origins(s)));
    let g = obj(gateway);
    let mut list: Vec<String> = s.trusted_proxies.iter().map(|c| c.to_string()).collect();
    if s.front_door {
        // The front door's hop: it passes on only what `frontdoor::headers::forward` allows.
        list.push("127.0.0.1/32".into());
    }
    if list.is_empty() {
        g.remove("trustedProxies");
    } else {
        g.insert("trustedProxies".into(), json!(list));
    }

    let defaults = child(child(&mut config, "agents"), "defaults");
    let model = obj(defaults).get_mut("model");
    match (model, &s.model_from_env) {
        // The env names a model: it wins, keeping any fallbacks the user set.
        (Some(Value::Object(m)), Some(env)) => {
            m.insert("primary".into(), json!(env));
        }
        (Some(m), Some(env)) => *m = json!(env),
        (Some(Value::Object(m)), None) if !m.contains_key("primary") => {
            m.insert("primary".into(), json!(s.default_model()));
        }
        (Some(_), None) => {}
        (None, _) => {
            obj(defaults).insert("model".into(), json!(s.default_model()));
        }
    }

    if let Some(patch) = &s.config_patch {
        merge_patch(&mut config, patch);
    }
    config
}

/// RFC 7396 JSON merge patch: objects merge recursively, `null` deletes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    let t = obj(target);
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// Replace every occurrence of a secret in `text` (last line of defence for printed configs).
pub fn redact(mut text: String, secrets: &[&str]) -> String {
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        text = text.replace(s, "<redacted>");
    }
    text
}

/// What `write` did, for one log line.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    Created,
    Merged,
    Unchanged,
    /// Converted from JSON5; the original is kept at this path.
    FromJson5(PathBuf),
    /// The old file was unreadable; kept at this path, a fresh config written.
    ReplacedUnreadable(PathBuf, String),
}

/// Merge the owned keys into `<state_dir>/openclaw.json` and write it atomically (0600).
pub fn write(state_dir: &Path, s: &Settings) -> anyhow::Result<Written> {
    fs::create_dir_all(state_dir)
        .with_context(|| format!("cannot create the state dir {}", state_dir.display()))?;
    let path = state_dir.join(FILE_NAME);
    let (base, outcome) = match load_existing(&path)? {
        Existing::None => (json!({}), Written::Created),
        Existing::Json(v) => (v, Written::Merged),
        Existing::Json5(v) => (v, Written::FromJson5(aside(&path, "json5")?)),
        Existing::Unreadable(why) => (
            json!({}),
            Written::ReplacedUnreadable(aside(&path, "unreadable")?, why),
        ),
    };
    let old = base.clone();
    let new = apply_owned(base, s);
    if outcome == Written::Merged && old == new {
        return Ok(Written::Unchanged);
    }
    write_atomic(&path, &new)?;
    Ok(outcome)
}

/// Move a broken config aside after the gateway rejected it (exit 78) and put the best
/// candidate in its place: OpenClaw's `.last-good`, then `.bak`, else a fresh one.
/// Returns a one-line account of what happened.
pub fn recover(state_dir: &Path, s: &Settings) -> anyhow::Result<String> {
    let path = state_dir.join(FILE_NAME);
    let kept = aside(&path, "rejected-by-gateway")?;
    for suffix in ["last-good", "bak"] {
        let candidate = state_dir.join(format!("{FILE_NAME}.{suffix}"));
        if let Ok(Existing::Json(v) | Existing::Json5(v)) = load_existing(&candidate) {
            write_atomic(&path, &apply_owned(v, s))?;
            return Ok(format!(
                "the gateway rejected {} (exit 78): kept it as {}, restored {} with the owned keys re-applied",
                path.display(),
                kept.display(),
                candidate.display()
            ));
        }
    }
    write_atomic(&path, &apply_owned(json!({}), s))?;
    Ok(format!(
        "the gateway rejected {} (exit 78): kept it as {}, no .last-good/.bak to fall back to, wrote a fresh config",
        path.display(),
        kept.display()
    ))
}

/// Rename `path` to `path.<tag>-<unix seconds>` (never overwriting) and return the new path.
fn aside(path: &Path, tag: &str) -> anyhow::Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut n = 0;
    loop {
        let name = match n {
            0 => format!("{}.{tag}-{secs}", path.display()),
            _ => format!("{}.{tag}-{secs}.{n}", path.display()),
        };
        let dest = PathBuf::from(name);
        if !dest.exists() {
            fs::rename(path, &dest).with_context(|| {
                format!("cannot move {} aside to {}", path.display(), dest.display())
            })?;
            return Ok(dest);
        }
        n += 1;
    }
}

/// Pretty JSON, replaced atomically and durably (the rename too), mode 0600.
pub fn write_atomic(path: &Path, value: &Value) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    crate::fsutil::write_atomic(path, text.as_bytes(), crate::fsutil::Durability::Published)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{Env, Overrides};
    use std::os::unix::fs::PermissionsExt;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let mut all = vec![("OPENCLAW_GATEWAY_TOKEN", "secret-token-value")];
        all.extend_from_slice(pairs);
        Settings::load(&Env::from_pairs(all), &Overrides::default()).unwrap()
    }

    #[test]
    fn fresh_config_has_owned_keys_and_no_literal_token() {
        let s = settings(&[
            ("SPACE_HOST", "alice-claw.hf.space"),
            ("OPENCLAW_ALLOWED_ORIGINS", "https://x.example"),
        ]);
        let c = apply_owned(json!({}), &s);
        assert_eq!(c["gateway"]["mode"], "local");
        // Behind the front door (the default): loopback, its own port.
        assert_eq!(c["gateway"]["port"], 18789);
        assert_eq!(c["gateway"]["bind"], "loopback");
        assert_eq!(
            c["gateway"]["auth"],
            json!({"mode":"token","token":TOKEN_REF})
        );
        let origins = c["gateway"]["controlUi"]["allowedOrigins"]
            .as_array()
            .unwrap();
        assert_eq!(origins[0], "https://alice-claw.hf.space");
        assert_eq!(origins[1], "https://x.example");
        assert_eq!(
            c["gateway"]["trustedProxies"],
            json!(["10.0.0.0/8", "127.0.0.1/32"])
        );
        assert_eq!(
            c["agents"]["defaults"]["model"],
            crate::settings::DEFAULT_MODEL
        );
        let text = serde_json::to_string(&c).unwrap();
        assert!(!text.contains("secret-token-value"));
        assert!(!text.contains("dangerouslyDisableDeviceAuth"));
    }

    #[test]
    fn user_keys_survive_and_owned_keys_are_reapplied() {
        let s = settings(&[]);
        let user = json!({
            "gateway": {"port": 1234, "bind": "loopback", "reload": {"mode": "hybrid"}, "auth": {"mode": "none", "rateLimit": {"x": 1}}},
            "agents": {"defaults": {"model": {"primary": "custom/m", "fallbacks": ["a/b"]}}},
            "channels": {"telegram": {"enabled": true}},
            "meta": {"lastTouchedVersion": "2026.9.6"}
        });
        let c = apply_owned(user.clone(), &s);
        assert_eq!(c["gateway"]["port"], 18789);
        assert_eq!(c["gateway"]["bind"], "loopback");
        // Without the front door the gateway listens on PORT itself, on every interface.
        let direct = settings(&[("ENTRYPOINT_FRONT_DOOR", "false")]);
        let c = apply_owned(user, &direct);
        assert_eq!(c["gateway"]["port"], 7860);
        assert_eq!(c["gateway"]["bind"], "lan");
        assert!(c["gateway"].get("trustedProxies").is_none());
        assert_eq!(c["gateway"]["reload"]["mode"], "hybrid");
        assert_eq!(c["gateway"]["auth"]["mode"], "token");
        assert_eq!(c["gateway"]["auth"]["rateLimit"]["x"], 1);
        // The config has a model and the env names none: the user's choice stays.
        assert_eq!(c["agents"]["defaults"]["model"]["primary"], "custom/m");
        assert_eq!(c["channels"]["telegram"]["enabled"], true);
        assert_eq!(c["meta"]["lastTouchedVersion"], "2026.9.6");
    }

    #[test]
    fn env_model_wins_and_keeps_fallbacks() {
        let s = settings(&[(
            "OPENCLAW_HF_DEFAULT_MODEL",
            "huggingface/openai/gpt-oss-120b",
        )]);
        let c = apply_owned(
            json!({"agents":{"defaults":{"model":{"primary":"x/y","fallbacks":["a/b"]}}}}),
            &s,
        );
        assert_eq!(
            c["agents"]["defaults"]["model"]["primary"],
            "huggingface/openai/gpt-oss-120b"
        );
        assert_eq!(
            c["agents"]["defaults"]["model"]["fallbacks"],
            json!(["a/b"])
        );
    }

    #[test]
    fn patch_is_applied_last() {
        let patch = r#"{"models":{"mode":"merge","providers":{"minimax":{"api":"anthropic-messages","baseUrl":"https://api.minimax.io/anthropic","apiKey":"${MINIMAX_API_KEY}","models":[{"id":"MiniMax-M2","name":"MiniMax M2"}]}}},"gateway":{"bind":"custom"},"agents":{"defaults":{"model":null}}}"#;
        let s = settings(&[("OPENCLAW_CONFIG_PATCH", patch)]);
        let c = apply_owned(json!({}), &s);
        assert_eq!(
            c["models"]["providers"]["minimax"]["api"],
            "anthropic-messages"
        );
        assert_eq!(
            c["gateway"]["bind"], "custom",
            "patch applies after the owned keys"
        );
        assert!(
            c["agents"]["defaults"].get("model").is_none(),
            "null deletes"
        );
    }

    #[test]
    fn merge_patch_rfc7396_examples() {
        let mut t = json!({"a":"b","c":{"d":"e","f":"g"}});
        merge_patch(&mut t, &json!({"a":"z","c":{"f":null}}));
        assert_eq!(t, json!({"a":"z","c":{"d":"e"}}));
        let mut t = json!({"a":[{"b":"c"}]});
        merge_patch(&mut t, &json!({"a":[1]}));
        assert_eq!(t, json!({"a":[1]}));
    }

    #[test]
    fn write_merges_json5_and_keeps_the_original() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(FILE_NAME);
        fs::write(
            &p,
            "// hand edited\n{ channels: { telegram: { enabled: true, }, }, }\n",
        )
        .unwrap();
        let s = settings(&[]);
        let w = write(d.path(), &s).unwrap();
        let Written::FromJson5(kept) = w else {
            panic!("{w:?}")
        };
        assert!(fs::read_to_string(kept).unwrap().contains("hand edited"));
        let v: Value = serde_json::from_str(&fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(v["channels"]["telegram"]["enabled"], true);
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Second write: nothing to change.
        assert_eq!(write(d.path(), &s).unwrap(), Written::Unchanged);
    }

    #[test]
    fn unreadable_file_is_kept_aside() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(FILE_NAME);
        fs::write(&p, "{{{ not json").unwrap();
        let w = write(d.path(), &settings(&[])).unwrap();
        let Written::ReplacedUnreadable(kept, _) = w else {
            panic!("{w:?}")
        };
        assert_eq!(fs::read_to_string(kept).unwrap(), "{{{ not json");
        assert!(load_existing(&p).unwrap().is_json());
    }

    #[test]
    fn recover_prefers_last_good() {
        let d = tempfile::tempdir().unwrap();
        let s = settings(&[]);
        fs::write(d.path().join(FILE_NAME), r#"{"gateway":{"bogusKey":1}}"#).unwrap();
        fs::write(
            d.path().join("openclaw.json.last-good"),
            r#"{"channels":{"x":{}}}"#,
        )
        .unwrap();
        let msg = recover(d.path(), &s).unwrap();
        assert!(msg.contains("last-good"), "{msg}");
        let v: Value =
            serde_json::from_str(&fs::read_to_string(d.path().join(FILE_NAME)).unwrap()).unwrap();
        assert!(v["channels"]["x"].is_object());
        assert_eq!(v["gateway"]["mode"], "local");
        let kept: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .filter_map(|e| {
                let n = e.unwrap().file_name().into_string().unwrap();
                n.contains("rejected-by-gateway").then_some(n)
            })
            .collect();
        assert_eq!(kept.len(), 1);
    }

    impl Existing {
        fn is_json(&self) -> bool {
            matches!(self, Existing::Json(_))
        }
    }
}

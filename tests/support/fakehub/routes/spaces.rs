//! Space endpoints: `POST|GET|DELETE /api/spaces/{id}/secrets` and `.../variables`,
//! `POST /api/validate-yaml` (huggingface_hub checks a README.md's front matter there before
//! committing it), plus the
//! Space-specific parts of repo creation (the SDK, 402 for a Docker Space on a free account)
//! and of repo info (`sdk`). State lives in `fakehub/spaces.rs`.

use super::super::spaces::{Setting, SpaceSettings};
use super::*;

const SDKS: &[&str] = &["gradio", "docker", "static"];

/// Called by `create_repo` for `type: space` before the repo exists: checks the SDK and the
/// plan. `Err` is the response to send.
pub(super) fn on_create(hub: &Hub, req: &Req, body: &Value, id: &str) -> Result<(), Box<Response>> {
    let Some(sdk) = body["sdk"].as_str() else {
        return Err(Box::new(error(400, None, "create: a Space needs \"sdk\"")));
    };
    if !SDKS.contains(&sdk) {
        return Err(Box::new(error(
            400,
            None,
            &format!("create: unknown sdk {sdk:?}"),
        )));
    }
    let mut st = hub.state();
    if sdk == "docker" && bearer(req).is_some_and(|t| st.spaces.free_tokens.contains(t)) {
        let msg = "Payment required: Docker Spaces need a paid plan";
        return Err(Box::new(error(402, None, msg)));
    }
    if st.repos.contains_key(&(RepoType::Space, id.to_string())) {
        return Ok(()); // 409 comes from create_repo; keep the existing settings
    }
    let mut settings = SpaceSettings {
        sdk: Some(sdk.to_string()),
        ..Default::default()
    };
    // huggingface_hub can pass secrets/variables at creation: [{"key","value","description"?}].
    for (field, map) in [
        ("secrets", &mut settings.secrets),
        ("variables", &mut settings.variables),
    ] {
        for item in body[field].as_array().into_iter().flatten() {
            if let (Some(k), Some(v)) = (item["key"].as_str(), item["value"].as_str()) {
                map.insert(k.to_string(), setting(v, item["description"].as_str()));
            }
        }
    }
    st.spaces.spaces.insert(id.to_string(), settings);
    Ok(())
}

/// Extra fields of `GET /api/spaces/{id}`.
pub(super) fn add_info(st: &HubState, id: &str, body: &mut Value) {
    let sdk = st.spaces.spaces.get(id).and_then(|s| s.sdk.clone());
    body["sdk"] = json!(sdk);
}

/// `/api/spaces/{id}/secrets` (POST upsert, GET list without values, DELETE one).
pub(super) fn secrets(hub: &Hub, req: &Req, id: &str) -> Response {
    settings_route(hub, req, id, true)
}

/// `/api/spaces/{id}/variables` (POST upsert, GET list with values, DELETE one); POST and
/// DELETE answer the whole list, like the Hub.
pub(super) fn variables(hub: &Hub, req: &Req, id: &str) -> Response {
    settings_route(hub, req, id, false)
}

fn settings_route(hub: &Hub, req: &Req, id: &str, secret: bool) -> Response {
    let mut st = hub.state();
    // Settings are the owner's business: listing them needs write access too.
    if let Err(d) = writable(&st, req, RepoType::Space, id) {
        return d.response();
    }
    let body: Value = serde_json::from_slice(req.body).unwrap_or(Value::Null);
    let entry = st.spaces.spaces.entry(id.to_string()).or_default();
    let map = if secret {
        &mut entry.secrets
    } else {
        &mut entry.variables
    };
    let m = req.method;
    if m == Method::POST {
        let (Some(key), Some(value)) = (body["key"].as_str(), body["value"].as_str()) else {
            return error(400, None, "body needs \"key\" and \"value\"");
        };
        if !valid_key(key) {
            let msg = format!(
                "invalid key {key:?}: letters, digits and _ only, not starting with a digit"
            );
            return error(400, None, &msg);
        }
        map.insert(
            key.to_string(),
            setting(value, body["description"].as_str()),
        );
    } else if m == Method::DELETE {
        let Some(key) = body["key"].as_str() else {
            return error(400, None, "body needs \"key\"");
        };
        map.remove(key);
    } else if m != Method::GET {
        return not_found_route(req);
    }
    if secret && m != Method::GET {
        return json_response(200, &json!({}), &[]);
    }
    let list: serde_json::Map<String, Value> = map
        .iter()
        .map(|(k, s)| {
            let mut v = json!({"description": s.description, "updatedAt": s.updated_at});
            if !secret {
                v["value"] = json!(s.value);
            }
            (k.clone(), v)
        })
        .collect();
    json_response(200, &Value::Object(list), &[])
}

fn setting(value: &str, description: Option<&str>) -> Setting {
    Setting {
        value: value.to_string(),
        description: description.map(str::to_string),
        updated_at: now_iso(),
    }
}

fn valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn bearer<'r>(req: &'r Req) -> Option<&'r str> {
    let value = req.headers.get("authorization")?.to_str().ok()?;
    Some(value.strip_prefix("Bearer ").unwrap_or(value).trim())
}

/// `POST /api/validate-yaml` `{"content","repoType"}`: a Space card must name its `sdk`.
/// Only that rule; the answer's shape is the Hub's (`errors`/`warnings` lists, 400 on errors).
pub(super) fn validate_yaml(req: &Req) -> Response {
    let body: Value = serde_json::from_slice(req.body).unwrap_or(Value::Null);
    let content = body["content"].as_str().unwrap_or_default();
    let front = content
        .strip_prefix("---\n")
        .and_then(|rest| rest.split_once("\n---").map(|(f, _)| f));
    let has_sdk = front.is_some_and(|f| f.lines().any(|l| l.starts_with("sdk:")));
    if body["repoType"] == "space" && front.is_some() && !has_sdk {
        let errors = json!([{"message": "\"sdk\" is required"}]);
        return json_response(400, &json!({"errors": errors, "warnings": []}), &[]);
    }
    json_response(200, &json!({"errors": [], "warnings": []}), &[])
}

//! Deploying a checkout to a Space: `scripts/deploy-space.py` against the fake Hub, and the fake
//! Hub's Space endpoints checked by the official Python client
//! (`tests/conformance/hf_spaces_check.py`).
//!
//! The deploy script runs from a copy of the files it uploads (so a test can add or remove one)
//! with huggingface_hub 2.4.0 from `scripts/python-venv.sh --no-xet`.
#[path = "support/fakehub/mod.rs"]
mod fakehub;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use fakehub::{Access, Config, FakeHub, RepoType};

const WRITE: &str = "hf_fake_write";
const READ: &str = "hf_fake_read";
const FREE: &str = "hf_fake_free";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

async fn start(dir: &Path) -> FakeHub {
    let hub = FakeHub::start(Config::basic(dir.join("cas"))).await;
    hub.add_token(WRITE, Access::Write);
    hub.add_token(READ, Access::Read);
    hub.add_token(FREE, Access::Write);
    hub.mark_free_account(FREE);
    hub
}

async fn python() -> PathBuf {
    let out = tokio::process::Command::new(repo().join("scripts/python-venv.sh"))
        .arg("--no-xet")
        .output()
        .await
        .expect("run scripts/python-venv.sh");
    assert!(
        out.status.success(),
        "scripts/python-venv.sh --no-xet failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).expect("utf-8 path").trim())
}

/// A copy of what deploy-space.py reads: itself, the build context and the Space guide.
fn checkout_copy(dir: &Path) -> PathBuf {
    let root = dir.join("checkout");
    std::fs::create_dir_all(&root).unwrap();
    let status = std::process::Command::new("cp")
        .arg("-r")
        .args([
            "scripts",
            "src",
            ".cargo",
            "spaces",
            "Dockerfile",
            ".dockerignore",
            "Cargo.toml",
            "Cargo.lock",
        ])
        .arg(&root)
        .current_dir(repo())
        .status();
    assert!(status.expect("run cp").success(), "copying the checkout");
    root
}

/// Run `deploy-space.py ARGS` from `root` against the hub with `token` (None: no token at all).
async fn deploy(
    hub: &FakeHub,
    root: &Path,
    token: Option<&str>,
    env: &[(&str, &str)],
    args: &[&str],
) -> Output {
    let home = root.parent().unwrap().join("hf-home");
    let mut cmd = tokio::process::Command::new(python().await);
    cmd.arg(root.join("scripts/deploy-space.py"))
        .args(args)
        .env("HF_ENDPOINT", hub.endpoint())
        .env("HF_HOME", &home)
        .env("HF_HUB_DISABLE_XET", "1")
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env_remove("HF_TOKEN")
        .env_remove("HF_TOKEN_PATH")
        .env_remove("OPENCLAW_GATEWAY_TOKEN")
        .env_remove("SPACE_HF_TOKEN")
        .kill_on_drop(true);
    if let Some(t) = token {
        cmd.env("HF_TOKEN", t);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("deploy-space.py took over 2 minutes")
        .expect("run deploy-space.py")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Fails with one line on stderr that contains `expect`, exit status `code`.
fn assert_one_line_error(out: &Output, code: i32, expect: &str) {
    let err = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{err}",
        text(&out.stdout)
    );
    assert_eq!(err.trim().lines().count(), 1, "not one line:\n{err}");
    assert!(err.contains(expect), "expected {expect:?} in:\n{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_space_endpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = start(tmp.path()).await;
    let out = tokio::process::Command::new(python().await)
        .arg(repo().join("tests/conformance/hf_spaces_check.py"))
        .args(["--space", "me/app"])
        .env("HF_ENDPOINT", hub.endpoint())
        .env("HF_TOKEN", WRITE)
        .env("HF_READ_TOKEN", READ)
        .env("HF_FREE_TOKEN", FREE)
        .env("HF_HOME", tmp.path().join("hf-home"))
        .env("HF_HUB_DISABLE_XET", "1")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env_remove("HF_TOKEN_PATH")
        .output()
        .await
        .expect("run hf_spaces_check.py");
    let stdout = text(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("CHECK PASSED"),
        "the official client disagrees with the fake's Space endpoints:\n{stdout}\n{}",
        text(&out.stderr)
    );
    // What the client set is what a Space would get.
    assert_eq!(
        hub.space_secret("me/app", "OPENCLAW_GATEWAY_TOKEN")
            .as_deref(),
        Some("s3cret-value")
    );
    assert_eq!(hub.space_secret("me/app", "HF_TOKEN"), None);
    assert_eq!(
        hub.space_variable("me/app", "HF_DATASET").as_deref(),
        Some("me/other")
    );
    assert!(!hub.repo_exists(RepoType::Space, "me/app-free"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_creates_a_private_docker_space_in_one_commit_and_keeps_secrets_on_rerun() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = start(tmp.path()).await;
    let root = checkout_copy(tmp.path());
    std::fs::write(
        root.join("src/leftover.rs"),
        "// removed before the second deploy\n",
    )
    .unwrap();

    let out = deploy(&hub, &root, Some(WRITE), &[], &["alice/my_claw"]).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));

    // The dataset and the Space: private, Docker.
    assert_eq!(
        hub.repo_is_private(RepoType::Dataset, "alice/my_claw-backup"),
        Some(true)
    );
    assert_eq!(
        hub.repo_is_private(RepoType::Space, "alice/my_claw"),
        Some(true)
    );
    let settings = hub.space_settings("alice/my_claw").expect("Space settings");
    assert_eq!(settings.sdk.as_deref(), Some("docker"));

    // One commit with the build context and the Space card as README.md.
    assert_eq!(
        hub.count_requests("POST", "/api/spaces/alice/my_claw/commit/"),
        1
    );
    let files = hub.head_files(RepoType::Space, "alice/my_claw");
    for f in [
        "Dockerfile",
        ".dockerignore",
        "Cargo.toml",
        "Cargo.lock",
        ".cargo/config.toml",
        "src/main.rs",
        "src/cli.rs",
        "src/leftover.rs",
        "README.md",
    ] {
        assert!(
            files.contains_key(f),
            "{f} not uploaded; got {:?}",
            files.keys()
        );
    }
    assert!(
        !files
            .keys()
            .any(|f| f.starts_with("tests/") || f.starts_with("scripts/")),
        "{:?}",
        files.keys()
    );
    let card = std::fs::read(repo().join("spaces/huggingface/README.md")).unwrap();
    assert_eq!(
        files["README.md"].sha256,
        fakehub::sha256_hex(&card),
        "README.md is the Space card"
    );
    let dockerfile = std::fs::read(repo().join("Dockerfile")).unwrap();
    assert_eq!(
        files["Dockerfile"].sha256,
        fakehub::sha256_hex(&dockerfile),
        "the root Dockerfile"
    );

    // Secrets and the Variable; the generated token printed exactly once, never on stderr.
    let token = hub
        .space_secret("alice/my_claw", "OPENCLAW_GATEWAY_TOKEN")
        .expect("gateway token secret");
    assert_eq!(token.len(), 64, "a 256-bit hex token");
    assert_eq!(stdout.matches(&token).count(), 1, "{stdout}");
    assert!(!text(&out.stderr).contains(&token));
    assert_eq!(
        hub.space_secret("alice/my_claw", "HF_TOKEN").as_deref(),
        Some(WRITE)
    );
    assert!(!stdout.contains(WRITE), "the HF token is never printed");
    assert_eq!(
        hub.space_variable("alice/my_claw", "HF_DATASET").as_deref(),
        Some("alice/my_claw-backup")
    );
    assert!(
        stdout.contains("https://alice-my-claw.hf.space"),
        "{stdout}"
    );

    // Re-run: code updated in one more commit, the removed file gone, secrets kept, nothing printed.
    std::fs::remove_file(root.join("src/leftover.rs")).unwrap();
    let again = deploy(
        &hub,
        &root,
        Some(WRITE),
        &[("SPACE_HF_TOKEN", "hf_other")],
        &["alice/my_claw"],
    )
    .await;
    let stdout2 = text(&again.stdout);
    assert!(again.status.success(), "{stdout2}\n{}", text(&again.stderr));
    assert_eq!(
        hub.count_requests("POST", "/api/spaces/alice/my_claw/commit/"),
        2
    );
    assert!(!hub
        .head_files(RepoType::Space, "alice/my_claw")
        .contains_key("src/leftover.rs"));
    assert_eq!(
        hub.space_secret("alice/my_claw", "OPENCLAW_GATEWAY_TOKEN"),
        Some(token.clone())
    );
    assert_eq!(
        hub.space_secret("alice/my_claw", "HF_TOKEN").as_deref(),
        Some(WRITE),
        "kept unless --update-hf-token"
    );
    assert!(!stdout2.contains(&token), "{stdout2}");
    assert!(stdout2.contains("updated"), "{stdout2}");

    // Told otherwise: a given gateway token, a new HF_TOKEN.
    let told = deploy(
        &hub,
        &root,
        Some(WRITE),
        &[
            ("OPENCLAW_GATEWAY_TOKEN", "mine-0123456789"),
            ("SPACE_HF_TOKEN", "hf_other"),
        ],
        &["alice/my_claw", "--update-hf-token"],
    )
    .await;
    assert!(told.status.success(), "{}", text(&told.stderr));
    assert_eq!(
        hub.space_secret("alice/my_claw", "OPENCLAW_GATEWAY_TOKEN")
            .as_deref(),
        Some("mine-0123456789")
    );
    assert_eq!(
        hub.space_secret("alice/my_claw", "HF_TOKEN").as_deref(),
        Some("hf_other")
    );
    assert!(!text(&told.stdout).contains("mine-0123456789"));
    let rotated = deploy(
        &hub,
        &root,
        Some(WRITE),
        &[],
        &["alice/my_claw", "--new-gateway-token"],
    )
    .await;
    assert!(rotated.status.success(), "{}", text(&rotated.stderr));
    let new = hub
        .space_secret("alice/my_claw", "OPENCLAW_GATEWAY_TOKEN")
        .unwrap();
    assert!(new != token && new != "mine-0123456789" && text(&rotated.stdout).contains(&new));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_refuses_public_unless_asked_and_bad_input_gets_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = start(tmp.path()).await;
    let root = checkout_copy(tmp.path());

    // An existing public Space: refused, untouched; with --public, deployed.
    hub.create_repo(RepoType::Space, "bob/pub", false);
    let out = deploy(&hub, &root, Some(WRITE), &[], &["bob/pub"]).await;
    assert_one_line_error(&out, 1, "Space bob/pub is public");
    assert_eq!(
        hub.count_requests("POST", "/api/spaces/bob/pub/"),
        0,
        "nothing set or uploaded"
    );
    let out = deploy(&hub, &root, Some(WRITE), &[], &["bob/pub", "--public"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    // A new Space with --public is created public.
    let out = deploy(&hub, &root, Some(WRITE), &[], &["bob/open", "--public"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        hub.repo_is_private(RepoType::Space, "bob/open"),
        Some(false)
    );
    // A public backup dataset is refused.
    hub.create_repo(RepoType::Dataset, "bob/leaky", false);
    let out = deploy(
        &hub,
        &root,
        Some(WRITE),
        &[],
        &["bob/app", "--dataset", "bob/leaky"],
    )
    .await;
    assert_one_line_error(&out, 1, "backup dataset bob/leaky is public");
    assert!(!hub.repo_exists(RepoType::Space, "bob/app"));

    // Bad input: no token, a read-only token, an unknown token, a free account, a bad name.
    let out = deploy(&hub, &root, None, &[], &["bob/app"]).await;
    assert_one_line_error(&out, 1, "no Hugging Face token");
    let out = deploy(&hub, &root, Some(READ), &[], &["bob/app"]).await;
    assert_one_line_error(&out, 1, "no write access");
    let out = deploy(&hub, &root, Some("hf_unknown"), &[], &["bob/app"]).await;
    assert_one_line_error(&out, 1, "rejected the token");
    let out = deploy(&hub, &root, Some(FREE), &[], &["carol/app"]).await;
    assert_one_line_error(&out, 1, "needs a paid plan");
    for bad in ["noslash", "a/b/c", "alice/", "alice/bad name", "alice/x--y"] {
        let out = deploy(&hub, &root, Some(WRITE), &[], &[bad]).await;
        assert_one_line_error(&out, 2, "must be owner/name");
    }
    assert!(!hub.repo_exists(RepoType::Space, "bob/app"));
}

/// The Space guide describes the path that works: the deploy command, the paid plan, the files
/// the command uploads; and nothing in spaces/huggingface/ is a template to fill in.
#[test]
fn guide_describes_the_deploy_path_and_no_placeholder_remains() {
    let guide = std::fs::read_to_string(repo().join("spaces/huggingface/README.md")).unwrap();
    for needed in [
        "python3 scripts/deploy-space.py",
        "paid plan",
        "`Dockerfile`",
        "`.dockerignore`",
        "`Cargo.toml`",
        "`Cargo.lock`",
        "`.cargo/`",
        "`src/`",
        "keeps the Space's secrets",
    ] {
        assert!(
            guide.contains(needed),
            "the guide does not mention {needed}"
        );
    }
    let script = std::fs::read_to_string(repo().join("scripts/deploy-space.py")).unwrap();
    assert!(
        script
            .contains(r#"TOP_FILES = ["Dockerfile", ".dockerignore", "Cargo.toml", "Cargo.lock"]"#)
            && script.contains(r#"MANAGED_DIRS = ["src", ".cargo"]"#),
        "deploy-space.py uploads other files than the guide lists: update both"
    );
    let entries: Vec<String> = std::fs::read_dir(repo().join("spaces/huggingface"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        entries,
        ["README.md"],
        "spaces/huggingface/ holds only the guide (the Space card)"
    );
}

/// `--bucket`: the backups go to a private Storage Bucket (created private, a public one
/// refused), the Space gets `HF_BUCKET` and loses `HF_DATASET` (the entrypoint refuses two
/// stores), and `--dataset` with `--bucket` is one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_with_a_bucket_sets_hf_bucket_and_drops_hf_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = start(tmp.path()).await;
    let root = checkout_copy(tmp.path());

    let out = deploy(&hub, &root, Some(WRITE), &[], &["alice/claw"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(hub.space_variable("alice/claw", "HF_DATASET").is_some());

    let args = ["alice/claw", "--bucket", "alice/claw-store/backups"];
    let out = deploy(&hub, &root, Some(WRITE), &[], &args).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert_eq!(hub.bucket_is_private("alice/claw-store"), Some(true));
    assert_eq!(
        hub.space_variable("alice/claw", "HF_BUCKET").as_deref(),
        Some("alice/claw-store/backups")
    );
    assert_eq!(
        hub.space_variable("alice/claw", "HF_DATASET"),
        None,
        "one store only"
    );
    assert!(
        stdout.contains("Storage Bucket alice/claw-store/backups"),
        "{stdout}"
    );

    // Back to a dataset: HF_BUCKET goes.
    let out = deploy(&hub, &root, Some(WRITE), &[], &["alice/claw"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(hub.space_variable("alice/claw", "HF_BUCKET"), None);
    assert!(hub.space_variable("alice/claw", "HF_DATASET").is_some());

    // A public bucket is refused before the Space is created.
    hub.create_bucket("bob/open-bucket", false);
    let out = deploy(
        &hub,
        &root,
        Some(WRITE),
        &[],
        &["bob/app", "--bucket", "bob/open-bucket"],
    )
    .await;
    assert_one_line_error(&out, 1, "backup bucket bob/open-bucket is public");
    assert!(!hub.repo_exists(RepoType::Space, "bob/app"));

    let out = deploy(
        &hub,
        &root,
        Some(WRITE),
        &[],
        &["bob/app", "--dataset", "bob/d", "--bucket", "bob/b"],
    )
    .await;
    assert_one_line_error(&out, 2, "--dataset and --bucket");
    let out = deploy(
        &hub,
        &root,
        Some(WRITE),
        &[],
        &["bob/app", "--bucket", "bob"],
    )
    .await;
    assert_one_line_error(&out, 2, "must be owner/name");
}

//! Archive size against the seed's `tar czf` (gzip -6) of the same tree, through the real
//! binary (`entrypoint backup` to a dir store): never more than 1.10x, also on data whose
//! redundancy a small sample cannot see (issue 13).

use std::fs;
use std::path::Path;
use std::process::Command;

/// Deterministic pseudo-random bytes (xorshift), different for every seed.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// Text-like bytes: lines of words from a 4000-word vocabulary (gzip -6 halves them).
fn text(n: usize, seed: u64) -> Vec<u8> {
    let letters = noise(4000 * 8, 1);
    let words: Vec<&[u8]> = letters
        .chunks(8)
        .map(|c| &c[..2 + c[0] as usize % 7])
        .collect();
    let picks = noise(n, seed);
    let mut out = Vec::with_capacity(n + 16);
    for (i, p) in picks.chunks(2).enumerate() {
        if out.len() >= n {
            break;
        }
        let w = words[usize::from(u16::from_le_bytes([p[0], p[1]])) % words.len()];
        out.extend(w.iter().map(|b| b'a' + b % 26));
        out.push(if i % 12 == 11 { b'\n' } else { b' ' });
    }
    out.truncate(n);
    out
}

fn put(state: &Path, rel: &str, data: &[u8]) {
    let p = state.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

/// The shapes of issue 13 (bench/gen_adversarial.py, smaller): a random 4 KiB block repeated,
/// text after a random head, and 64 KiB blocks of which 30 % are random and the others an
/// 8 KiB random block repeated.
fn adversarial(state: &Path) {
    put(state, "openclaw.json", b"{\"gateway\": {\"port\": 7860}}\n");
    put(
        state,
        "media/repeat4k.bin",
        &noise(4 * KIB, 2).repeat(16 * MIB / (4 * KIB)),
    );
    let head = [noise(256 * KIB, 3), text(6 * MIB - 256 * KIB, 4)].concat();
    put(state, "notes/big.txt", &head);
    let repeated = noise(8 * KIB, 5).repeat(8);
    let blocks: Vec<u8> = (0..8 * MIB / (64 * KIB))
        .flat_map(|i| match i % 10 {
            0 | 4 | 7 => noise(64 * KIB, 100 + i as u64),
            _ => repeated.clone(),
        })
        .collect();
    put(state, "media/blocks.bin", &blocks);
}

/// An ordinary mix: small text files, random media, repeated blocks, and a database-like file
/// of text rows with random "embeddings".
fn mixed(state: &Path) {
    put(state, "openclaw.json", b"{\"gateway\": {\"port\": 7860}}\n");
    for i in 0..300 {
        let n = 1500 + (i * 37) % 9000;
        put(
            state,
            &format!("workspace/p{}/f{i:03}.md", i % 7),
            &text(n, 10 + i as u64),
        );
    }
    put(state, "media/photo.bin", &noise(4 * MIB, 6));
    put(
        state,
        "media/tiles.bin",
        &noise(16 * KIB, 7).repeat(4 * MIB / (16 * KIB)),
    );
    let rows: Vec<u8> = (0..2000)
        .flat_map(|i| [text(400, 1000 + i), noise(1536, 5000 + i)].concat())
        .collect();
    put(state, "state/memory.db", &rows);
}

/// Back `build`'s tree up with the binary and with `tar czf`; (ours, tar czf) in bytes.
fn sizes(build: fn(&Path)) -> (u64, u64) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let store = tmp.path().join("store");
    build(&data.join(".openclaw"));
    let out = Command::new(env!("CARGO_BIN_EXE_entrypoint"))
        .arg("backup")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", tmp.path())
        .env("ENTRYPOINT_DATA_DIR", &data)
        .env("ENTRYPOINT_BACKUP_DIR", &store)
        .env("ENTRYPOINT_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "entrypoint backup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours = fs::metadata(store.join("latest_backup.tar.gz"))
        .unwrap()
        .len();
    let seed = tmp.path().join("seed.tar.gz");
    // The seed's method (gzip's default level is 6).
    let st = Command::new("tar")
        .arg("czf")
        .arg(&seed)
        .arg(".openclaw")
        .current_dir(&data)
        .status()
        .unwrap();
    assert!(st.success(), "tar czf failed");
    (ours, fs::metadata(&seed).unwrap().len())
}

fn assert_within_1_10(name: &str, build: fn(&Path)) {
    let (ours, seed) = sizes(build);
    eprintln!(
        "{name}: ours {ours} bytes, tar czf {seed} bytes ({:.3}x)",
        ours as f64 / seed as f64
    );
    assert!(
        ours * 100 <= seed * 110,
        "{name}: our archive is {ours} bytes, {:.2}x tar czf's {seed}",
        ours as f64 / seed as f64
    );
}

#[test]
fn adversarial_tree_stays_within_1_10x_of_tar_czf() {
    assert_within_1_10("adversarial", adversarial);
}

#[test]
fn mixed_tree_stays_within_1_10x_of_tar_czf() {
    assert_within_1_10("mixed", mixed);
}

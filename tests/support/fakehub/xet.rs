//! Reading what a xet client left in a `local://` CAS directory: the MDB shards, to learn which
//! file (by sha256, the `lfsFile` oid of a commit) has which xet file hash and size.
//!
//! Shard layout (xet-core-structures 1.8 `metadata_shard`, facts §3.3): a 48-byte header
//! (32-byte tag, u64 version, u64 footer size), then 48-byte records. A file record is a header
//! `file_hash[32] | flags u32 | num_entries u32 | u64`, then `num_entries` segments (48 bytes
//! each), then `num_entries` verification entries if flag bit 31, then one metadata_ext
//! `{sha256[32], 16 unused}` if flag bit 30. The file list ends with an all-0xFF hash.

use std::path::Path;

use anyhow::{bail, Context};

const HEADER_TAG_PREFIX: &[u8] = b"HFRepoMetaData\0";
const RECORD: usize = 48;
const FLAG_VERIFICATION: u32 = 1 << 31;
const FLAG_METADATA_EXT: u32 = 1 << 30;

/// One file described by a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardFile {
    /// Xet file hash in its text form (as in `X-Xet-Hash`).
    pub xet_hash: String,
    /// sha256 of the content, present when the client computed it (hf-hub, hf_xet do).
    pub sha256: Option<String>,
    /// Sum of the segments' unpacked sizes.
    pub size: u64,
    /// (xorb hash, first chunk, end chunk exclusive, unpacked bytes) per segment.
    pub segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub xorb_hash: String,
    pub chunk_start: u32,
    pub chunk_end: u32,
    pub unpacked_bytes: u32,
}

pub fn parse_shard_file(path: &Path) -> anyhow::Result<Vec<ShardFile>> {
    let data = std::fs::read(path).with_context(|| format!("reading shard {}", path.display()))?;
    parse_shard(&data).with_context(|| format!("parsing shard {}", path.display()))
}

pub fn parse_shard(data: &[u8]) -> anyhow::Result<Vec<ShardFile>> {
    if data.len() < RECORD || !data.starts_with(HEADER_TAG_PREFIX) {
        bail!("not an MDB shard (bad magic tag)");
    }
    let mut files = Vec::new();
    let mut pos = RECORD; // the header is exactly one record long
    loop {
        let rec = record(data, pos)?;
        if rec[..32].iter().all(|&b| b == 0xFF) {
            return Ok(files); // end of the file-info section
        }
        let flags = u32_at(rec, 32);
        let n = u32_at(rec, 36) as usize;
        pos += RECORD;
        let mut segments = Vec::with_capacity(n);
        for _ in 0..n {
            let seg = record(data, pos)?;
            segments.push(Segment {
                xorb_hash: hash_text(&seg[..32]),
                unpacked_bytes: u32_at(seg, 36),
                chunk_start: u32_at(seg, 40),
                chunk_end: u32_at(seg, 44),
            });
            pos += RECORD;
        }
        if flags & FLAG_VERIFICATION != 0 {
            pos += n * RECORD;
        }
        let mut sha256 = None;
        if flags & FLAG_METADATA_EXT != 0 {
            // Stored like every MerkleHash: the usual sha256 hex is its text form (facts §3.3).
            sha256 = Some(hash_text(&record(data, pos)?[..32]));
            pos += RECORD;
        }
        let size = segments.iter().map(|s| u64::from(s.unpacked_bytes)).sum();
        files.push(ShardFile {
            xet_hash: hash_text(&rec[..32]),
            sha256,
            size,
            segments,
        });
    }
}

fn record(data: &[u8], pos: usize) -> anyhow::Result<&[u8]> {
    data.get(pos..pos + RECORD)
        .with_context(|| format!("shard truncated at byte {pos}"))
}

fn u32_at(rec: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(rec[at..at + 4].try_into().expect("4 bytes"))
}

/// MerkleHash text form: each 8-byte group read as a little-endian u64, printed `%016x`.
pub fn hash_text(raw: &[u8]) -> String {
    raw.chunks_exact(8)
        .map(|g| {
            format!(
                "{:016x}",
                u64::from_le_bytes(g.try_into().expect("8 bytes"))
            )
        })
        .collect()
}

/// All files described by the shards under `<cas_dir>/xet/xorbs/shards/`.
pub fn scan_cas(cas_dir: &Path) -> anyhow::Result<Vec<ShardFile>> {
    let dir = cas_dir.join("xet/xorbs/shards");
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(files);
    };
    for entry in entries {
        let path = entry
            .with_context(|| format!("listing {}", dir.display()))?
            .path();
        if path.extension().is_some_and(|e| e == "mdb") {
            files.extend(parse_shard_file(&path)?);
        }
    }
    Ok(files)
}

/// Rebuild a xet file's bytes from the local CAS: its segments are chunk ranges of xorbs
/// stored as `<cas_dir>/xet/xorbs/xorbs/default.<xorb hash>`. Decompression is left to
/// xet-core-structures (the format library the xet client itself uses).
pub fn read_file(cas_dir: &Path, xet_hash: &str) -> anyhow::Result<Vec<u8>> {
    use xet_core_structures::xorb_object::XorbObject;
    let Some(file) = scan_cas(cas_dir)?
        .into_iter()
        .find(|f| f.xet_hash == xet_hash)
    else {
        bail!(
            "no shard in {} describes xet file {xet_hash}",
            cas_dir.display()
        );
    };
    let mut out = Vec::with_capacity(file.size as usize);
    for seg in &file.segments {
        let path = cas_dir
            .join("xet/xorbs/xorbs")
            .join(format!("default.{}", seg.xorb_hash));
        let mut reader = std::io::BufReader::new(
            std::fs::File::open(&path)
                .with_context(|| format!("opening xorb {}", path.display()))?,
        );
        let xorb = XorbObject::deserialize(&mut reader)
            .with_context(|| format!("reading xorb {}", path.display()))?;
        let bytes = xorb
            .get_bytes_by_chunk_range(&mut reader, seg.chunk_start, seg.chunk_end)
            .with_context(|| {
                format!(
                    "chunks {}..{} of xorb {}",
                    seg.chunk_start, seg.chunk_end, seg.xorb_hash
                )
            })?;
        out.extend_from_slice(&bytes);
    }
    if out.len() as u64 != file.size {
        bail!(
            "xet file {xet_hash}: rebuilt {} bytes, shard says {}",
            out.len(),
            file.size
        );
    }
    Ok(out)
}

//! Our gzip members: libdeflate for speed, plus the member's length in the header.
//!
//! Every member is an ordinary gzip member (RFC 1952: no name, mtime 0, OS Unix) whose header
//! carries one extra subfield, `OC` + u32 LE = the whole member's length in bytes. Readers
//! that don't know it skip it (gzip, GNU tar, Python); ours uses it to find member boundaries
//! without inflating, so members can be decompressed whole with libdeflate (BGZF, the format of
//! bgzip/htslib, does the same with its `BC` subfield).
//!
//! Data that would shrink by less than `STORE_BELOW` % (random bytes, embeddings, already
//! compressed media) is stored rather than compressed: it costs a copy instead of a deflate
//! pass, and the archive grows by less than that percentage of those bytes (borg's "auto"
//! compression makes the same trade).

use libdeflater::{CompressionLvl, Compressor, Crc, Decompressor};

/// Header: magic, CM=deflate, FLG=FEXTRA, MTIME=0, XFL=0, OS=3 (Unix), XLEN=8, then the
/// subfield `O` `C`, LEN=4, and the member length (patched in once known).
const HEADER: [u8; 20] = [
    0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 3, 8, 0, b'O', b'C', 4, 0, 0, 0, 0, 0,
];
const HEADER_LEN: usize = HEADER.len();
/// Offset of the u32 member length in `HEADER`.
const LEN_AT: usize = 16;
/// Header + CRC32 + ISIZE.
const OVERHEAD: usize = HEADER_LEN + 8;
/// Store a member whose samples shrink by less than this percentage.
const STORE_BELOW: usize = 10;
/// Sample size for the store-or-compress decision.
const SAMPLE: usize = 4 << 10;
/// Largest member we produce or accept on the fast path (uncompressed). Bigger members (or
/// foreign archives) go through the streaming decoder.
pub const MAX_MEMBER: usize = 8 << 20;

/// A per-thread compressor (libdeflate level 1: on OpenClaw-like text it is within 1 % of
/// `gzip -6` in size at several times the speed).
pub struct Packer {
    fast: Compressor,
    /// Deflate output, sized once for the largest member (so it is never zeroed again).
    scratch: Vec<u8>,
}

impl Default for Packer {
    fn default() -> Self {
        // Level 1 (not `fastest()`, which is level 0: stored blocks only).
        let level = CompressionLvl::new(1).unwrap_or_default();
        Packer {
            fast: Compressor::new(level),
            scratch: Vec::new(),
        }
    }
}

impl Packer {
    /// `data` as one gzip member, into `out` (emptied first).
    pub fn member(&mut self, data: &[u8], mut out: Vec<u8>) -> Vec<u8> {
        out.clear();
        out.extend_from_slice(&HEADER);
        if self.worth_compressing(data) {
            let bound = self.fast.deflate_compress_bound(data.len());
            if self.scratch.len() < bound {
                self.scratch.resize(bound, 0);
            }
            match self.fast.deflate_compress(data, &mut self.scratch) {
                Ok(n) if n < data.len() => out.extend_from_slice(&self.scratch[..n]),
                // Didn't shrink after all (or no room): store.
                _ => stored(data, &mut out),
            }
        } else {
            stored(data, &mut out);
        }
        let mut crc = Crc::new();
        crc.update(data);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        let len = out.len() as u32;
        out[LEN_AT..LEN_AT + 4].copy_from_slice(&len.to_le_bytes());
        out
    }

    /// False when none of three samples (start, middle, end) shrinks by `STORE_BELOW` %.
    /// Text usually decides on the first sample.
    fn worth_compressing(&mut self, data: &[u8]) -> bool {
        if data.len() < 8 * SAMPLE {
            return true;
        }
        let mut scratch = [0u8; SAMPLE + 1024];
        [0, data.len() / 2 - SAMPLE / 2, data.len() - SAMPLE]
            .into_iter()
            .any(|at| {
                let packed = self
                    .fast
                    .deflate_compress(&data[at..at + SAMPLE], &mut scratch)
                    .unwrap_or(SAMPLE);
                packed * 100 < SAMPLE * (100 - STORE_BELOW)
            })
    }
}

/// Deflate "stored" blocks (RFC 1951 §3.2.4): at most 65535 bytes each, byte-aligned.
fn stored(data: &[u8], out: &mut Vec<u8>) {
    out.reserve(data.len() + 5 * (data.len() / 65535 + 1));
    let mut blocks = data.chunks(65535).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
        return;
    }
    while let Some(b) = blocks.next() {
        let last = blocks.peek().is_none();
        let n = b.len() as u16;
        out.push(u8::from(last));
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&(!n).to_le_bytes());
        out.extend_from_slice(b);
    }
}

/// The length of the member starting at `head` (at least `HEADER_LEN` bytes), when it is one of
/// ours; None for any other gzip member.
pub fn member_len(head: &[u8]) -> Option<usize> {
    if head.len() < HEADER_LEN || head[..LEN_AT] != HEADER[..LEN_AT] {
        return None;
    }
    let len = u32::from_le_bytes(head[LEN_AT..LEN_AT + 4].try_into().ok()?) as usize;
    (len >= OVERHEAD + 5).then_some(len)
}

/// Bytes to read to know whether a member is ours and how long it is.
pub const PROBE: usize = HEADER_LEN;

/// Inflate one whole member of ours into `out` (emptied first). Checks CRC32 and length.
pub fn unpack(d: &mut Decompressor, member: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let n = member.len();
    if n < OVERHEAD + 5 {
        return Err("truncated gzip member".into());
    }
    let isize = u32::from_le_bytes(member[n - 4..].try_into().unwrap_or_default()) as usize;
    if isize > MAX_MEMBER {
        return Err(format!("gzip member too large ({isize} bytes)"));
    }
    out.clear();
    out.resize(isize, 0);
    match d.gzip_decompress(member, out) {
        Ok(got) if got == isize => Ok(()),
        Ok(_) => Err("gzip member length mismatch".into()),
        Err(e) => Err(format!("corrupt gzip member ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Deterministic incompressible bytes (BLAKE3's extendable output).
    fn noise(n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        blake3::Hasher::new().finalize_xof().fill(&mut v);
        v
    }

    #[test]
    fn members_are_plain_gzip_and_carry_their_length() {
        let text = b"hello openclaw ".repeat(20_000);
        let random = noise(300_000);
        let empty: &[u8] = b"";
        let mut p = Packer::default();
        let mut all = Vec::new();
        for data in [&text[..], &random[..], empty] {
            let m = p.member(data, Vec::new());
            assert_eq!(member_len(&m), Some(m.len()));
            let mut back = Vec::new();
            unpack(&mut Decompressor::new(), &m, &mut back).unwrap();
            assert_eq!(back, data);
            all.extend_from_slice(&m);
        }
        // A standard multi-member reader sees the concatenation.
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&all[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out.len(), text.len() + random.len());
        // Random data is stored (no expansion beyond block headers), text compressed.
        let r = p.member(&random, Vec::new());
        assert!(r.len() < random.len() + 64, "{}", r.len());
        assert!(p.member(&text, Vec::new()).len() < text.len() / 10);
    }

    #[test]
    fn corrupt_members_are_refused() {
        let mut p = Packer::default();
        let mut m = p.member(&b"abc".repeat(1000), Vec::new());
        let mid = m.len() / 2;
        m[mid] ^= 1;
        assert!(unpack(&mut Decompressor::new(), &m, &mut Vec::new()).is_err());
        let m = p.member(&b"abc".repeat(1000), Vec::new());
        assert!(unpack(&mut Decompressor::new(), &m[..m.len() - 3], &mut Vec::new()).is_err());
        assert_eq!(
            member_len(b"\x1f\x8b\x08\x00\0\0\0\0\0\x03xxxxxxxxxx"),
            None
        );
    }
}

//! The fingerprint's file format: compact binary, checked by a BLAKE3 trailer.
//!
//! It is read at the start and written at the end of every backup that uploads, so it must be
//! cheap for ~20k entries (JSON with hex paths was 3.5 MB and ~40 ms both ways). A file that
//! is torn, from another version or otherwise unreadable is ignored, which costs one upload
//! that may not have been needed, never a missed one.

use std::collections::BTreeMap;

use super::{Entry, Fingerprint, Kind, StatId};

const MAGIC: &[u8; 8] = b"ocfp\x00\x00\x00\x01";

pub fn encode(fp: &Fingerprint) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + fp.entries.len() * 96);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&fp.scan_start_ns.to_le_bytes());
    put_len(&mut out, fp.entries.len());
    for e in &fp.entries {
        put_bytes(&mut out, &e.rel);
        out.push(match e.kind {
            Kind::Dir => 0,
            Kind::File => 1,
            Kind::Symlink => 2,
            Kind::Sqlite => 3,
        });
        out.extend_from_slice(&e.mode.to_le_bytes());
        put_stat(&mut out, &e.stat);
        put_bytes(&mut out, &e.target);
        match &e.wal {
            Some(w) => {
                out.push(1);
                put_stat(&mut out, w);
            }
            None => out.push(0),
        }
    }
    for map in [&fp.sqlite, &fp.racy] {
        put_len(&mut out, map.len());
        for (k, v) in map {
            put_bytes(&mut out, k.as_bytes());
            put_bytes(&mut out, v.as_bytes());
        }
    }
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    out
}

/// None for anything but a complete, intact fingerprint file of this format.
pub fn decode(bytes: &[u8]) -> Option<Fingerprint> {
    let (body, sum) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
    if blake3::hash(body).as_bytes() != sum {
        return None;
    }
    let mut r = Reader(body);
    if r.take(MAGIC.len())? != MAGIC {
        return None;
    }
    let scan_start_ns = r.i64()?;
    let n = r.len()?;
    let mut entries = Vec::with_capacity(n.min(body.len() / 40));
    for _ in 0..n {
        let rel = r.bytes()?;
        let kind = match r.u8()? {
            0 => Kind::Dir,
            1 => Kind::File,
            2 => Kind::Symlink,
            3 => Kind::Sqlite,
            _ => return None,
        };
        let mode = u32::from_le_bytes(r.take(4)?.try_into().ok()?);
        let stat = r.stat()?;
        let target = r.bytes()?;
        let wal = match r.u8()? {
            0 => None,
            1 => Some(r.stat()?),
            _ => return None,
        };
        entries.push(Entry {
            rel,
            kind,
            mode,
            stat,
            target,
            wal,
        });
    }
    let mut maps = [BTreeMap::new(), BTreeMap::new()];
    for map in &mut maps {
        for _ in 0..r.len()? {
            let k = String::from_utf8(r.bytes()?).ok()?;
            let v = String::from_utf8(r.bytes()?).ok()?;
            map.insert(k, v);
        }
    }
    if !r.0.is_empty() {
        return None;
    }
    let [sqlite, racy] = maps;
    Some(Fingerprint {
        scan_start_ns,
        entries,
        sqlite,
        racy,
    })
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_len(out, b.len());
    out.extend_from_slice(b);
}

fn put_stat(out: &mut Vec<u8>, s: &StatId) {
    out.extend_from_slice(&s.size.to_le_bytes());
    out.extend_from_slice(&s.mtime_ns.to_le_bytes());
    out.extend_from_slice(&s.ctime_ns.to_le_bytes());
    out.extend_from_slice(&s.ino.to_le_bytes());
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn len(&mut self) -> Option<usize> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = self.len()?;
        Some(self.take(n)?.to_vec())
    }

    fn stat(&mut self) -> Option<StatId> {
        Some(StatId {
            size: self.u64()?,
            mtime_ns: self.i64()?,
            ctime_ns: self.i64()?,
            ino: self.u64()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_is_refused() {
        let stat = StatId {
            size: 5,
            mtime_ns: -3,
            ctime_ns: 1_700_000_000_123_456_789,
            ino: 42,
        };
        let fp = Fingerprint {
            scan_start_ns: 99,
            entries: vec![
                Entry {
                    rel: Vec::new(),
                    kind: Kind::Dir,
                    mode: 0o755,
                    stat: StatId::default(),
                    target: Vec::new(),
                    wal: None,
                },
                Entry {
                    rel: b"l\xffnk".to_vec(),
                    kind: Kind::Symlink,
                    mode: 0o777,
                    stat,
                    target: b"../x".to_vec(),
                    wal: None,
                },
                Entry {
                    rel: b"state/openclaw.sqlite".to_vec(),
                    kind: Kind::Sqlite,
                    mode: 0o600,
                    stat,
                    target: Vec::new(),
                    wal: Some(StatId {
                        ctime_ns: 0,
                        ..stat
                    }),
                },
            ],
            sqlite: [("aa".to_string(), "hash".to_string())].into(),
            racy: [("bb".to_string(), "sha".to_string())].into(),
        };
        let bytes = encode(&fp);
        let back = decode(&bytes).unwrap();
        assert_eq!(back.scan_start_ns, 99);
        assert_eq!(back.entries, fp.entries);
        assert_eq!(back.sqlite, fp.sqlite);
        assert_eq!(back.racy, fp.racy);
        // Torn, flipped or foreign: refused.
        assert!(decode(&bytes[..bytes.len() - 1]).is_none());
        let mut flipped = bytes.clone();
        flipped[20] ^= 1;
        assert!(decode(&flipped).is_none());
        assert!(decode(b"{\"scan_start_ns\": 1}").is_none());
        assert!(decode(b"").is_none());
    }
}

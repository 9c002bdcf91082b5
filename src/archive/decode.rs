//! Decompress a tar.gz on its own thread, so inflating overlaps with writing files.
//!
//! Members of ours (`gz`: their length is in the header) are read whole and inflated with
//! libdeflate, each recorded (offset, lengths, BLAKE3) so a restore can seed the backup's
//! member cache. Anything else (a seed's `tar czf`, a foreign member) is streamed through
//! flate2 from there on. Every member's CRC32 and length are checked either way.
//!
//! `decode` runs on the decoding thread and sends uncompressed buffers down a bounded channel;
//! `Chunks` is the `Read` the tar parser sees on the other end, and hands buffers back.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{Receiver, SyncSender};

use flate2::read::MultiGzDecoder;
use libdeflater::Decompressor;

use crate::archive::gz;

/// One member of ours: offset and length in the archive, uncompressed length, BLAKE3 (hex;
/// empty when the member must not be reused, see `gz::judged`).
pub type Member = (u64, u64, u64, String);

/// Buffers sent while streaming a foreign archive.
const STREAM_CHUNK: usize = 1 << 20;

/// Decode `file` into `out`, taking free buffers (given back for reuse) from `free`. Returns the member records
/// when every member was ours (None otherwise). A decoding error is sent down `out` too, so
/// the reader fails at the right place.
pub fn decode(
    file: File,
    out: SyncSender<io::Result<Vec<u8>>>,
    free: Receiver<Vec<u8>>,
) -> Option<Vec<Member>> {
    let fail = |e: io::Error| {
        let _ = out.send(Err(e));
        None
    };
    let size = match file.metadata() {
        Ok(m) => m.len(),
        Err(e) => return fail(e),
    };
    let mut members = Vec::new();
    let mut d = Decompressor::new();
    let mut packed = Vec::new();
    let mut off = 0u64;
    while off < size {
        let mut head = [0u8; gz::PROBE];
        let ours = file.read_exact_at(&mut head, off).is_ok()
            && gz::member_len(&head).is_some_and(|n| off + n as u64 <= size);
        if !ours {
            // From here on: a foreign gzip stream.
            stream(&file, off, &out, &free);
            return None;
        }
        let len = gz::member_len(&head).unwrap_or_default();
        packed.resize(len, 0);
        if let Err(e) = file.read_exact_at(&mut packed, off) {
            return fail(e);
        }
        let mut buf = free.try_recv().unwrap_or_default();
        if let Err(e) = gz::unpack(&mut d, &packed, &mut buf) {
            return fail(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{e} at byte {off}"),
            ));
        }
        // No content key (never reused) for a member an older version stored from a sample.
        let ukey = match gz::judged(&head, len, buf.len()) {
            true => blake3::hash(&buf).to_hex().to_string(),
            false => String::new(),
        };
        members.push((off, len as u64, buf.len() as u64, ukey));
        off += len as u64;
        if out.send(Ok(buf)).is_err() {
            return None; // The reader stopped (it has its own error).
        }
    }
    Some(members)
}

/// Stream a (multi-member) gzip from `off` to the end through flate2.
fn stream(file: &File, off: u64, out: &SyncSender<io::Result<Vec<u8>>>, free: &Receiver<Vec<u8>>) {
    let mut f = match file.try_clone() {
        Ok(f) => f,
        Err(e) => {
            let _ = out.send(Err(e));
            return;
        }
    };
    if let Err(e) = f.seek(SeekFrom::Start(off)) {
        let _ = out.send(Err(e));
        return;
    }
    let mut gz = MultiGzDecoder::new(BufReader::with_capacity(1 << 20, f));
    loop {
        let mut buf = free.try_recv().unwrap_or_default();
        buf.clear();
        let got = (&mut gz).take(STREAM_CHUNK as u64).read_to_end(&mut buf);
        match got {
            Ok(0) => return,
            Ok(_) => {
                if out.send(Ok(buf)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = out.send(Err(e));
                return;
            }
        }
    }
}

/// The reading end: the decoded bytes in order, as one `Read`.
pub struct Chunks {
    rx: Receiver<io::Result<Vec<u8>>>,
    back: SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Chunks {
    pub fn new(rx: Receiver<io::Result<Vec<u8>>>, back: SyncSender<Vec<u8>>) -> Self {
        Chunks {
            rx,
            back,
            cur: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(next)) => {
                    let done = std::mem::replace(&mut self.cur, next);
                    // Hand the buffer back for reuse (dropped if the decoder has enough).
                    let _ = self.back.try_send(done);
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::mpsc::sync_channel;

    /// Decode `bytes` as a file; the decoded bytes and the member records.
    fn run(bytes: &[u8]) -> (io::Result<Vec<u8>>, Option<Vec<Member>>) {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        let (tx, rx) = sync_channel(2);
        let (back_tx, back_rx) = sync_channel(2);
        std::thread::scope(|s| {
            let d = s.spawn(move || decode(f, tx, back_rx));
            let mut out = Vec::new();
            let r = Chunks::new(rx, back_tx).read_to_end(&mut out).map(|_| out);
            (r, d.join().unwrap())
        })
    }

    fn foreign(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn ours_foreign_and_mixed_archives_decode_alike() {
        let mut p = gz::Packer::default();
        let (a, b) = (b"first member ".repeat(5000), b"second".repeat(100));
        let mut ours = p.member(&a, Vec::new());
        ours.extend(p.member(&b, Vec::new()));
        let whole = [a.clone(), b.clone()].concat();

        let (got, members) = run(&ours);
        assert_eq!(got.unwrap(), whole);
        let members = members.expect("all members are ours");
        assert_eq!(members.len(), 2);
        assert_eq!(members[1].2, b.len() as u64);
        assert_eq!(members[0].3, blake3::hash(&a).to_hex().to_string());

        // A seed's single stream, and ours followed by a foreign member: same bytes, no records.
        let (got, members) = run(&foreign(&whole));
        assert_eq!((got.unwrap(), members.is_none()), (whole.clone(), true));
        let mut mixed = p.member(&a, Vec::new());
        mixed.extend(foreign(&b));
        let (got, members) = run(&mixed);
        assert_eq!((got.unwrap(), members.is_none()), (whole, true));
    }

    #[test]
    fn members_stored_by_an_older_rule_get_no_content_key() {
        let mut p = gz::Packer::default();
        let mut random = vec![0u8; 200_000];
        blake3::Hasher::new().finalize_xof().fill(&mut random);
        let now = p.member(&random, Vec::new());
        // The same member as a version that stored by a sample wrote it: XFL 0 (the header
        // has no checksum, so it stays a valid member).
        let mut old = now.clone();
        old[8] = 0;
        let (got, members) = run(&[now, old].concat());
        assert_eq!(got.unwrap(), random.repeat(2));
        let members = members.expect("all members are ours");
        assert_eq!(members[0].3, blake3::hash(&random).to_hex().to_string());
        assert_eq!(members[1].3, "", "never reused for its content");
    }

    #[test]
    fn damaged_members_fail_the_read() {
        let mut p = gz::Packer::default();
        let data = b"some state ".repeat(10_000);
        let good = p.member(&data, Vec::new());
        let mut flipped = good.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x40;
        assert!(run(&flipped).0.is_err(), "bit flip");
        assert!(run(&good[..good.len() - 10]).0.is_err(), "truncated");
        let mut trailing = good.clone();
        trailing.extend_from_slice(b"garbage after the last member");
        assert!(run(&trailing).0.is_err(), "trailing garbage");
    }
}

//! SHA-256 that records its state at fixed offsets and can resume from one.
//!
//! The sidecar is the SHA-256 of the whole archive, and hashing ~300 MB is the largest single
//! cost of a small-change backup (one core; SHA-256 cannot be split). But when a new archive
//! starts with the same bytes as the last one, the hash state after those bytes is the same
//! too. So the state is recorded every `EVERY` bytes (the member index keeps the list), and
//! the next archive resumes from the last recorded state inside the common prefix instead of
//! hashing it again (`write::hash_members`).

use sha2::digest::{consts::U64, generic_array::GenericArray};

/// Distance between recorded states (a multiple of the 64-byte block).
pub const EVERY: u64 = 4 << 20;

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// The state after `k * EVERY` bytes, as stored in the member index (hex).
pub type State = [u32; 8];

pub struct Sha256 {
    state: State,
    block: [u8; 64],
    fill: usize,
    len: u64,
    /// `states[k - 1]`: the state after `k * EVERY` bytes.
    states: Vec<State>,
}

impl Default for Sha256 {
    fn default() -> Self {
        Sha256::resume(&[])
    }
}

impl Sha256 {
    /// Continue after `states.len() * EVERY` bytes whose recorded states are `states`.
    pub fn resume(states: &[State]) -> Sha256 {
        Sha256 {
            state: states.last().copied().unwrap_or(IV),
            block: [0; 64],
            fill: 0,
            len: states.len() as u64 * EVERY,
            states: states.to_vec(),
        }
    }

    /// Bytes hashed so far (including those a resumed state stands for).
    pub fn position(&self) -> u64 {
        self.len
    }

    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = (EVERY - self.len % EVERY) as usize;
            let (now, rest) = data.split_at(room.min(data.len()));
            self.absorb(now);
            data = rest;
            if self.len % EVERY == 0 {
                // EVERY is a multiple of 64: the block buffer is empty here.
                self.states.push(self.state);
            }
        }
    }

    /// The digest, and the states recorded on the way.
    pub fn finish(mut self) -> ([u8; 32], Vec<State>) {
        let bits = self.len.wrapping_mul(8);
        let states = std::mem::take(&mut self.states);
        // Padding: 0x80, zeros up to 56 mod 64, the length in bits (big-endian).
        let mut pad = [0u8; 72];
        pad[0] = 0x80;
        let zeros = (119 - self.fill) % 64;
        pad[1 + zeros..9 + zeros].copy_from_slice(&bits.to_be_bytes());
        self.absorb(&pad[..9 + zeros]);
        debug_assert_eq!(self.fill, 0);
        let mut out = [0u8; 32];
        for (o, w) in out.chunks_exact_mut(4).zip(self.state) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        (out, states)
    }

    fn absorb(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.fill > 0 {
            let take = (64 - self.fill).min(data.len());
            self.block[self.fill..self.fill + take].copy_from_slice(&data[..take]);
            self.fill += take;
            data = &data[take..];
            if self.fill < 64 {
                return;
            }
            let block = self.block;
            compress(&mut self.state, &block);
            self.fill = 0;
        }
        let whole = data.len() / 64 * 64;
        compress(&mut self.state, &data[..whole]);
        let tail = &data[whole..];
        self.block[..tail.len()].copy_from_slice(tail);
        self.fill = tail.len();
    }
}

/// Run the compression function over whole 64-byte blocks (SHA-NI where the CPU has it).
fn compress(state: &mut State, blocks: &[u8]) {
    debug_assert_eq!(blocks.len() % 64, 0);
    // SAFETY: `GenericArray<u8, U64>` is `#[repr(transparent)]` over 64 bytes with alignment
    // 1, so a byte slice of whole blocks is a slice of them.
    let blocks = unsafe {
        std::slice::from_raw_parts(
            blocks.as_ptr().cast::<GenericArray<u8, U64>>(),
            blocks.len() / 64,
        )
    };
    sha2::compress256(state, blocks);
}

/// A state as 64 hex digits (for the index), and back.
pub fn state_hex(s: &State) -> String {
    s.iter().map(|w| format!("{w:08x}")).collect()
}

pub fn state_from_hex(h: &str) -> Option<State> {
    if h.len() != 64 || !h.is_ascii() {
        return None;
    }
    let mut s = [0u32; 8];
    for (i, w) in s.iter_mut().enumerate() {
        *w = u32::from_str_radix(&h[i * 8..i * 8 + 8], 16).ok()?;
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    fn data(n: usize) -> Vec<u8> {
        let mut x = 7u64;
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                (x >> 56) as u8
            })
            .collect()
    }

    #[test]
    fn equals_sha256_for_any_split_and_length() {
        for n in [0, 1, 55, 56, 63, 64, 65, 119, 120, 1000] {
            let d = data(n);
            let mut h = Sha256::default();
            let (a, b) = d.split_at(n / 3);
            h.update(a);
            h.update(b);
            assert_eq!(h.finish().0[..], sha2::Sha256::digest(&d)[..], "n={n}");
        }
    }

    #[test]
    fn resumes_from_a_recorded_state() {
        let d = data(3 * EVERY as usize + 12345);
        let mut h = Sha256::default();
        for piece in d.chunks(777_777) {
            h.update(piece);
        }
        let (full, states) = h.finish();
        assert_eq!(full[..], sha2::Sha256::digest(&d)[..]);
        assert_eq!(states.len(), 3);
        // Resume after 2 * EVERY bytes with the recorded states: same digest and states.
        let at = 2 * EVERY as usize;
        let mut r = Sha256::resume(&states[..2]);
        assert_eq!(r.position(), at as u64);
        r.update(&d[at..]);
        let (again, states_again) = r.finish();
        assert_eq!(again, full);
        assert_eq!(states_again, states);
        // A wrong state gives a wrong digest (the states really are used).
        let mut bad = states[..2].to_vec();
        bad[1][0] ^= 1;
        let mut r = Sha256::resume(&bad);
        r.update(&d[at..]);
        assert_ne!(r.finish().0, full);
        // Hex round trip.
        assert_eq!(state_from_hex(&state_hex(&states[0])), Some(states[0]));
        assert_eq!(state_from_hex("xyz"), None);
    }
}

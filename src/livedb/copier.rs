//! The copier: one thread that copies live databases, in the order they are queued, beside
//! the backup's decision and its archive, and hashes each copy once the queue is drained (a
//! waiting archive needs copies sooner than the fingerprint needs hashes).
//!
//! Dropping a `Copier` closes its queue and joins the thread: no connection to a live
//! database outlives the backup that started it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{anyhow, bail, Result};

/// A database to copy: its path in the archive (`rel`), the live file and its kept copy.
struct Job {
    rel: Vec<u8>,
    src: PathBuf,
    dst: PathBuf,
}

enum Event {
    Copied(Vec<u8>, Result<PathBuf, String>),
    Hashed(Vec<u8>, Result<String, String>),
}

/// What the thread has reported so far.
struct Seen {
    rx: Receiver<Event>,
    copies: HashMap<Vec<u8>, Result<PathBuf, String>>,
    hashes: HashMap<Vec<u8>, Result<String, String>>,
}

/// A copied database: its verified copy and the copy's logical hash.
pub struct Copied {
    pub path: PathBuf,
    pub hash: String,
}

pub struct Copier {
    jobs: Option<Sender<Job>>,
    queued: Mutex<HashSet<Vec<u8>>>,
    seen: Mutex<Seen>,
    thread: Option<JoinHandle<()>>,
}

impl Copier {
    pub fn start() -> Copier {
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (tx, rx) = mpsc::channel::<Event>();
        let thread = std::thread::spawn(move || run(job_rx, tx));
        Copier {
            jobs: Some(jobs),
            queued: Mutex::new(HashSet::new()),
            seen: Mutex::new(Seen {
                rx,
                copies: HashMap::new(),
                hashes: HashMap::new(),
            }),
            thread: Some(thread),
        }
    }

    /// Copy the live database `src` (archived at `rel`) into `dst`; a database already
    /// queued is not queued again.
    pub fn queue(&self, rel: &[u8], src: PathBuf, dst: PathBuf) {
        let mut q = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        if !q.insert(rel.to_vec()) {
            return;
        }
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(Job {
                rel: rel.to_vec(),
                src,
                dst,
            });
        }
    }

    /// No more jobs: the thread hashes what it copied, then ends.
    pub fn close(&mut self) {
        self.jobs = None;
    }

    /// The verified copy of the database at `rel`, once made.
    pub fn copy(&self, rel: &[u8]) -> Result<PathBuf> {
        self.wait(rel, |s| s.copies.get(rel).cloned())
    }

    /// The database at `rel`: its copy and the copy's logical hash, once made.
    pub fn copied(&self, rel: &[u8]) -> Result<Copied> {
        let path = self.copy(rel)?;
        let hash = self.wait(rel, |s| s.hashes.get(rel).cloned())?;
        Ok(Copied { path, hash })
    }

    /// Wait until `got` finds the result for `rel` among the events.
    fn wait<T>(&self, rel: &[u8], got: impl Fn(&Seen) -> Option<Result<T, String>>) -> Result<T> {
        let mut s = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let t = Instant::now();
        loop {
            if let Some(r) = got(&s) {
                tracing::debug!(
                    "backup: waited {} ms for the database {}",
                    t.elapsed().as_millis(),
                    String::from_utf8_lossy(rel)
                );
                return r.map_err(|e| anyhow!("{e}"));
            }
            match s.rx.recv() {
                Ok(Event::Copied(r, c)) => {
                    s.copies.insert(r, c);
                }
                Ok(Event::Hashed(r, h)) => {
                    s.hashes.insert(r, h);
                }
                Err(_) => bail!(
                    "internal: the database {} was never copied",
                    String::from_utf8_lossy(rel)
                ),
            }
        }
    }
}

impl Drop for Copier {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The thread: copy each job as it comes; hash copies while no job waits.
fn run(jobs: Receiver<Job>, tx: Sender<Event>) {
    let mut unhashed: VecDeque<(Vec<u8>, PathBuf)> = VecDeque::new();
    let mut open = true;
    loop {
        let job = if !open {
            None
        } else if unhashed.is_empty() {
            jobs.recv().ok()
        } else {
            match jobs.try_recv() {
                Ok(j) => Some(j),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => {
                    open = false;
                    None
                }
            }
        };
        match job {
            Some(j) => {
                let t = Instant::now();
                let made = super::copy(&j.src, &j.dst).map(|()| j.dst.clone());
                tracing::debug!(
                    "backup: copied {} in {} ms",
                    j.src.display(),
                    t.elapsed().as_millis()
                );
                if made.is_ok() {
                    unhashed.push_back((j.rel.clone(), j.dst));
                }
                let _ = tx.send(Event::Copied(j.rel, made.map_err(|e| format!("{e:#}"))));
            }
            None => {
                let Some((rel, path)) = unhashed.pop_front() else {
                    if open {
                        open = false; // recv() failed: the queue is closed
                        continue;
                    }
                    return;
                };
                let h = super::hash::of_copy(&path).map_err(|e| format!("{e:#}"));
                let _ = tx.send(Event::Hashed(rel, h));
            }
        }
    }
}

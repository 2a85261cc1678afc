//! Hashing on a second thread while the caller reads on.
//!
//! SHA-256 is over half of a verification's time, and each event's hash depends on that event
//! alone: the reader encodes events into batches, a worker thread hashes them, and the verdicts
//! are reached on the reader's thread in the order the events came. Nothing on the worker touches
//! anything but the batch it holds, so the reader may be a process that must not run code on
//! other threads (a PostgreSQL backend).

use std::fmt;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

use super::{ChainSetVerifier, Hashed, TooManyWaiting, Verdicts};
use crate::chain::{Event, Hash};

/// Why the events could not be verified in the order given: walk the chains in order instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abandoned {
    /// See [`TooManyWaiting`].
    TooManyWaiting,
    /// The hashing thread ended without handing a batch back (it panicked).
    HashingThreadLost,
}

impl From<TooManyWaiting> for Abandoned {
    fn from(_: TooManyWaiting) -> Abandoned {
        Abandoned::TooManyWaiting
    }
}

impl fmt::Display for Abandoned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Abandoned::TooManyWaiting => "too many events arrived before their predecessor",
            Abandoned::HashingThreadLost => "the hashing thread ended early",
        })
    }
}

/// Starts the worker thread; the caller decides how (a name, a signal mask).
pub type Spawn<'a> = dyn FnOnce(Box<dyn FnOnce() + Send>) -> std::io::Result<JoinHandle<()>> + 'a;

/// A [`ChainSetVerifier`] whose hashing runs on a second thread. When that thread cannot be
/// started it hashes inline, with the same verdicts.
pub struct PipelinedVerifier {
    set: ChainSetVerifier,
    batch_rows: usize,
    filling: Batch,
    worker: Option<Worker>,
}

impl PipelinedVerifier {
    /// Hands batches of `batch_rows` events to a thread started by `spawn`.
    pub fn new(
        set: ChainSetVerifier,
        batch_rows: usize,
        spawn: Box<Spawn<'_>>,
    ) -> PipelinedVerifier {
        PipelinedVerifier {
            set,
            batch_rows: batch_rows.max(1),
            filling: Batch::default(),
            worker: Worker::start(spawn),
        }
    }

    /// Whether hashing runs on a second thread.
    pub fn is_pipelined(&self) -> bool {
        self.worker.is_some()
    }

    /// Takes one stored event; its verdict is reached when its batch comes back hashed.
    pub fn offer(&mut self, event: &Event<'_>, stored_hash: &[u8]) -> Result<(), Abandoned> {
        if self.worker.is_none() {
            return Ok(self.set.offer(event, stored_hash)?);
        }
        let chain = self.set.chain_index(event.chain_id);
        self.filling.push(chain, event, stored_hash);
        if self.filling.rows.len() >= self.batch_rows {
            self.dispatch()?;
        }
        Ok(())
    }

    /// Each chain's verdict, once every event offered is checked.
    pub fn finish(mut self) -> Result<Verdicts, Abandoned> {
        if !self.filling.rows.is_empty() {
            self.dispatch()?;
        }
        if let Some(worker) = &mut self.worker {
            if let Some(hashed) = worker.collect()? {
                apply(&mut self.set, hashed)?;
            }
        }
        Ok(self.set.finish())
    }

    /// Sends the filled batch to be hashed, after applying the one hashed before it: one batch is
    /// hashed while the next fills.
    fn dispatch(&mut self) -> Result<(), Abandoned> {
        let worker = self.worker.as_mut().expect("only called with a worker");
        let mut spare = match worker.collect()? {
            Some(hashed) => apply(&mut self.set, hashed)?,
            None => Batch::default(),
        };
        spare.clear();
        worker.send(std::mem::replace(&mut self.filling, spare))
    }
}

/// Reaches the verdicts of a hashed batch's events, and gives the batch back for reuse.
fn apply(set: &mut ChainSetVerifier, batch: Batch) -> Result<Batch, Abandoned> {
    for (row, hash) in batch.rows.iter().zip(&batch.hashes) {
        let event = Hashed {
            event_id: row.event_id,
            prev_hash: row.prev_hash,
            hash: (row.stored_hash == Some(*hash)).then_some(*hash),
        };
        set.offer_hashed(row.chain, row.seq, event)?;
    }
    Ok(batch)
}

struct Worker {
    to_worker: Option<SyncSender<Batch>>,
    from_worker: Receiver<Batch>,
    thread: Option<JoinHandle<()>>,
    in_flight: bool,
}

impl Worker {
    fn start(spawn: Box<Spawn<'_>>) -> Option<Worker> {
        // One batch hashing, one filling: neither side ever waits on a full channel.
        let (to_worker, batches) = sync_channel::<Batch>(1);
        let (hashed, from_worker) = sync_channel::<Batch>(1);
        let thread = spawn(Box::new(move || {
            for mut batch in batches {
                batch.hash();
                if hashed.send(batch).is_err() {
                    return;
                }
            }
        }))
        .ok()?;
        Some(Worker {
            to_worker: Some(to_worker),
            from_worker,
            thread: Some(thread),
            in_flight: false,
        })
    }

    fn send(&mut self, batch: Batch) -> Result<(), Abandoned> {
        let to_worker = self.to_worker.as_ref().expect("open until drop");
        to_worker
            .send(batch)
            .map_err(|_| Abandoned::HashingThreadLost)?;
        self.in_flight = true;
        Ok(())
    }

    /// The batch in flight, hashed, if there is one.
    fn collect(&mut self) -> Result<Option<Batch>, Abandoned> {
        if !self.in_flight {
            return Ok(None);
        }
        self.in_flight = false;
        self.from_worker
            .recv()
            .map(Some)
            .map_err(|_| Abandoned::HashingThreadLost)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing the channel ends the worker's loop; it is joined before the reader goes on (or
        // unwinds), so no thread outlives the verification.
        self.to_worker = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Events to hash: their preimages back to back, and what their verdicts need.
#[derive(Default)]
struct Batch {
    preimages: Vec<u8>,
    rows: Vec<Row>,
    hashes: Vec<Hash>,
}

struct Row {
    chain: usize,
    seq: i64,
    event_id: [u8; 16],
    /// As stored, when 32 bytes long: a value of any other length matches no hash.
    prev_hash: Option<Hash>,
    stored_hash: Option<Hash>,
    /// Where this event's preimage ends in `preimages`.
    end: usize,
}

impl Batch {
    fn push(&mut self, chain: usize, event: &Event<'_>, stored_hash: &[u8]) {
        event.encode_into(&mut self.preimages);
        self.rows.push(Row {
            chain,
            seq: event.seq,
            event_id: *event.event_id,
            prev_hash: Hash::try_from(event.prev_hash).ok(),
            stored_hash: Hash::try_from(stored_hash).ok(),
            end: self.preimages.len(),
        });
    }

    fn hash(&mut self) {
        let mut start = 0;
        self.hashes.clear();
        for row in &self.rows {
            self.hashes
                .push(Sha256::digest(&self.preimages[start..row.end]).into());
            start = row.end;
        }
    }

    fn clear(&mut self) {
        self.preimages.clear();
        self.rows.clear();
        self.hashes.clear();
    }
}

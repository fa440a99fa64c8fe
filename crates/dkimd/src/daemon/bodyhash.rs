//! Hashing a message body as it arrives, on the connection's task for most
//! mail and on a thread of its own for the rest of a large body.
//!
//! Canonicalizing and hashing runs at about the speed of SHA-256, and so does
//! receiving the body from the MTA; on one thread the two add up. Once a body
//! has passed [`THREAD_AFTER`] bytes, the hasher moves to a blocking thread
//! and the connection hands it the body in batches of about [`BATCH`] bytes,
//! so that receiving and hashing overlap. Batches, not chunks: each hand-off
//! costs a wake-up on both sides, and one per 64 KB chunk cost more than it
//! saved (BENCHMARKS.md). The thread hands the emptied chunk buffers back
//! for the server to read later chunks into, so that memory is not freed on
//! one thread and allocated on the other for every chunk. Memory stays
//! bounded whatever the body's size: the batch being filled, one waiting,
//! one being hashed and at most [`POOL`] spare buffers, with at most one
//! such thread per CPU ([`Threads`]); a large body is hashed inline while
//! none is free, and asks again with every chunk.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

/// Body bytes hashed inline before the hasher may move to a thread.
pub const THREAD_AFTER: usize = 1024 * 1024;
/// Bytes handed over at once.
pub const BATCH: usize = 512 * 1024;
/// Batches waiting for the hashing thread before the connection waits.
const QUEUE: usize = 1;

/// What hashes a body: the signer's or the verifier's state.
pub trait BodySink: Send + 'static {
    /// Feeds a chunk.
    fn feed(&mut self, chunk: &[u8]);
    /// True when more body cannot change the outcome.
    fn done(&self) -> bool;
}

impl BodySink for dkim::Signing {
    fn feed(&mut self, chunk: &[u8]) {
        self.body(chunk);
    }
    fn done(&self) -> bool {
        false
    }
}

impl BodySink for dkim::Verification {
    fn feed(&mut self, chunk: &[u8]) {
        self.body(chunk);
    }
    fn done(&self) -> bool {
        self.body_done()
    }
}

/// The hashing threads a process may run at once; shared by every
/// connection.
#[derive(Clone)]
pub struct Threads(Option<Arc<Semaphore>>);

impl Threads {
    /// One thread per CPU when `enabled`; none otherwise.
    pub fn new(enabled: bool) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        Threads(enabled.then(|| Arc::new(Semaphore::new(cpus))))
    }

    fn try_take(&self) -> Option<OwnedSemaphorePermit> {
        self.0.as_ref()?.clone().try_acquire_owned().ok()
    }
}

/// Emptied chunk buffers kept for reuse, at most this many (1 MiB of
/// 64 KB chunks; the connection takes one back for every chunk it reads).
const POOL: usize = 16;

struct Offloaded<T> {
    tx: mpsc::Sender<Vec<Vec<u8>>>,
    /// Chunk buffers the thread has hashed, for the connection to read
    /// later chunks into: without them, every chunk would be allocated on
    /// one thread and freed on the other, and the allocator would hand the
    /// memory back to the kernel and fault it in again (thousands of page
    /// faults per 50 MB).
    pool: Arc<Mutex<Vec<Vec<u8>>>>,
    batch: Vec<Vec<u8>>,
    batch_bytes: usize,
    done: Arc<AtomicBool>,
    task: JoinHandle<Box<T>>,
}

enum State<T> {
    Inline(Box<T>),
    Thread(Offloaded<T>),
    /// Only while the hasher moves to its thread.
    Gone,
}

/// A body being hashed.
pub struct Body<T> {
    state: State<T>,
    seen: usize,
    threads: Threads,
}

impl<T: BodySink> Body<T> {
    /// Starts with the hasher on the connection's task.
    pub fn new(sink: Box<T>, threads: Threads) -> Self {
        Body {
            state: State::Inline(sink),
            seen: 0,
            threads,
        }
    }

    /// Feeds a chunk; `false` when more body cannot change the outcome (the
    /// rest may be dropped unread).
    pub async fn feed(&mut self, chunk: Vec<u8>) -> bool {
        self.seen = self.seen.saturating_add(chunk.len());
        match &mut self.state {
            State::Inline(sink) => {
                sink.feed(&chunk);
                if sink.done() {
                    return false;
                }
                if self.seen >= THREAD_AFTER {
                    if let Some(permit) = self.threads.try_take() {
                        self.move_to_thread(permit);
                    }
                }
                true
            }
            State::Thread(off) => {
                if off.done.load(Ordering::Relaxed) {
                    return false;
                }
                off.batch_bytes = off.batch_bytes.saturating_add(chunk.len());
                off.batch.push(chunk);
                if off.batch_bytes >= BATCH {
                    let batch = std::mem::take(&mut off.batch);
                    off.batch_bytes = 0;
                    // A send fails only when the thread has ended, which it
                    // does early only by panicking: finish() reports that.
                    let _ = off.tx.send(batch).await;
                }
                true
            }
            State::Gone => false,
        }
    }

    fn move_to_thread(&mut self, permit: OwnedSemaphorePermit) {
        let State::Inline(mut sink) = std::mem::replace(&mut self.state, State::Gone) else {
            return;
        };
        let (tx, mut rx) = mpsc::channel::<Vec<Vec<u8>>>(QUEUE);
        let done = Arc::new(AtomicBool::new(false));
        let thread_done = done.clone();
        let pool = Arc::new(Mutex::new(Vec::new()));
        let thread_pool = pool.clone();
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            while let Some(batch) = rx.blocking_recv() {
                for mut chunk in batch {
                    sink.feed(&chunk);
                    chunk.clear();
                    if let Ok(mut p) = thread_pool.lock() {
                        if p.len() < POOL {
                            p.push(chunk);
                        }
                    }
                }
                if sink.done() {
                    thread_done.store(true, Ordering::Relaxed);
                    break;
                }
            }
            sink
        });
        self.state = State::Thread(Offloaded {
            tx,
            pool,
            batch: Vec::new(),
            batch_bytes: 0,
            done,
            task,
        });
    }

    /// True once the hasher has moved to a thread.
    pub fn threaded(&self) -> bool {
        matches!(self.state, State::Thread(_))
    }

    /// A chunk buffer the hashing thread is done with, to read the next
    /// chunk into.
    pub fn spare(&mut self) -> Option<Vec<u8>> {
        match &self.state {
            State::Thread(off) => off.pool.lock().ok()?.pop(),
            _ => None,
        }
    }

    /// The hasher with the whole body fed, for the signature or the
    /// verification.
    pub async fn finish(self) -> anyhow::Result<Box<T>> {
        match self.state {
            State::Inline(sink) => Ok(sink),
            State::Thread(off) => {
                let Offloaded {
                    tx, batch, task, ..
                } = off;
                if !batch.is_empty() {
                    let _ = tx.send(batch).await;
                }
                drop(tx);
                task.await
                    .map_err(|e| anyhow::anyhow!("the body hashing thread failed: {e}"))
            }
            State::Gone => Err(anyhow::anyhow!("the body hasher was lost")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps what it is fed; done after `limit` bytes when set.
    struct Keep {
        bytes: Vec<u8>,
        limit: Option<usize>,
        thread: Option<std::thread::ThreadId>,
    }

    impl BodySink for Keep {
        fn feed(&mut self, chunk: &[u8]) {
            self.bytes.extend_from_slice(chunk);
            self.thread = Some(std::thread::current().id());
        }
        fn done(&self) -> bool {
            self.limit.is_some_and(|l| self.bytes.len() >= l)
        }
    }

    fn keep(limit: Option<usize>) -> Box<Keep> {
        Box::new(Keep {
            bytes: Vec::new(),
            limit,
            thread: None,
        })
    }

    /// 64 KB chunks of distinct bytes, `total` bytes in all.
    fn chunks(total: usize) -> Vec<Vec<u8>> {
        let body: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
        body.chunks(65535).map(<[u8]>::to_vec).collect()
    }

    async fn feed_all(b: &mut Body<Keep>, total: usize) -> Vec<u8> {
        let mut all = Vec::new();
        for c in chunks(total) {
            all.extend_from_slice(&c);
            assert!(b.feed(c).await);
        }
        all
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_body_moves_to_a_thread_and_arrives_whole_in_order() {
        let threads = Threads::new(true);
        let mut b = Body::new(keep(None), threads.clone());
        let mut all = Vec::new();
        let mut recycled = 0;
        for c in chunks(5 * BATCH + THREAD_AFTER + 12345) {
            all.extend_from_slice(&c);
            assert!(b.feed(c).await);
            if let Some(spare) = b.spare() {
                assert!(spare.is_empty() && spare.capacity() >= 65535);
                recycled += 1;
            }
        }
        assert!(b.threaded());
        assert!(recycled > 0, "hashed chunk buffers come back for reuse");
        let k = b.finish().await.unwrap();
        assert_eq!(k.bytes.len(), all.len());
        assert!(k.bytes == all, "the body arrives whole and in order");
        assert_ne!(k.thread, Some(std::thread::current().id()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn small_bodies_and_disabled_threads_stay_inline() {
        let mut b = Body::new(keep(None), Threads::new(true));
        let all = feed_all(&mut b, THREAD_AFTER - 1).await;
        assert!(!b.threaded());
        assert_eq!(b.finish().await.unwrap().bytes, all);

        let mut b = Body::new(keep(None), Threads::new(false));
        let all = feed_all(&mut b, 3 * THREAD_AFTER).await;
        assert!(!b.threaded());
        assert!(b.spare().is_none());
        assert_eq!(b.finish().await.unwrap().bytes, all);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn busy_threads_mean_inline_and_a_dropped_body_frees_its_thread() {
        let threads = Threads(Some(Arc::new(Semaphore::new(1))));
        let mut first = Body::new(keep(None), threads.clone());
        feed_all(&mut first, THREAD_AFTER + 1).await;
        assert!(first.threaded());
        let mut second = Body::new(keep(None), threads.clone());
        let all = feed_all(&mut second, 2 * THREAD_AFTER).await;
        assert!(!second.threaded(), "no thread free: hashed inline");
        assert_eq!(second.finish().await.unwrap().bytes, all);
        // An aborted message drops its body; the thread ends and is free
        // for the next large body.
        drop(first);
        let mut third = Body::new(keep(None), threads.clone());
        for _ in 0..200 {
            if threads.0.as_ref().unwrap().available_permits() == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let all = feed_all(&mut third, THREAD_AFTER + 1).await;
        assert!(third.threaded(), "the aborted body's thread was released");
        assert_eq!(third.finish().await.unwrap().bytes, all);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_finished_hasher_stops_taking_body() {
        // Inline: done as soon as the limit is reached.
        let mut b = Body::new(keep(Some(100)), Threads::new(true));
        assert!(!b.feed(vec![b'a'; 150]).await);
        // On the thread: done is seen after the batch that reaches it.
        let limit = THREAD_AFTER + 2 * BATCH;
        let mut b = Body::new(keep(Some(limit)), Threads::new(true));
        let mut fed = 0;
        let mut stopped = false;
        for c in chunks(limit + 20 * BATCH) {
            fed += c.len();
            if !b.feed(c).await {
                stopped = true;
                break;
            }
        }
        assert!(stopped && b.threaded());
        assert!(fed < limit + 20 * BATCH, "{fed}");
        let k = b.finish().await.unwrap();
        assert!(k.bytes.len() >= limit && k.bytes.len() < fed + 1);
    }

    /// Panics when fed on a thread other than the one it was made on.
    struct PanicsOnThread(std::thread::ThreadId);

    impl BodySink for PanicsOnThread {
        fn feed(&mut self, _chunk: &[u8]) {
            assert_eq!(std::thread::current().id(), self.0, "test panic");
        }
        fn done(&self) -> bool {
            false
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_panic_on_the_thread_is_an_error_and_frees_the_thread() {
        let threads = Threads(Some(Arc::new(Semaphore::new(1))));
        let sink = Box::new(PanicsOnThread(std::thread::current().id()));
        let mut b = Body::new(sink, threads.clone());
        for c in chunks(THREAD_AFTER + 3 * BATCH) {
            b.feed(c).await;
        }
        assert!(b.threaded());
        let e = b.finish().await.err().expect("the panic is reported");
        assert!(e.to_string().contains("hashing thread failed"), "{e}");
        assert_eq!(threads.0.as_ref().unwrap().available_permits(), 1);
    }
}

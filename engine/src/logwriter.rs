//! The writer thread for request records: appends batches from the workers
//! to `DIR/tollgate-requests-YYYY-MM-DD.jsonl`, starts a new file each UTC
//! day and when a file passes its size limit
//! (`tollgate-requests-YYYY-MM-DD.N.jsonl`), and exits after writing
//! everything once every worker has hung up.
//!
//! Workers' batches wait on a channel bounded by bytes
//! ([`QUEUE_BYTES_MAX`], 256 MiB): a disk whose writes block rather than
//! fail has batches past it dropped, counted and logged, not memory grown
//! without end (the ledger keeps the spend).
//!
//! Nothing a write refuses is dropped while it can be kept: what the disk
//! did not take (full, an I/O error) is kept to be written before the next
//! batch (up to [`PENDING_BYTES_MAX`]; tried again at most once a second
//! while writes fail), as the ledger keeps its spend. Of a write the file
//! took in part, the whole lines stay and are not written again, and the
//! torn last line is cut back out, so that the file holds whole lines
//! only; where it cannot be cut, the file is left and the line written
//! whole in the next part. A file renamed or deleted under the writer
//! (logrotate) is noticed within about a second and a new one opened at
//! the path, rather than records going on into the renamed file, which no
//! report reads, or into a deleted one. Written records are synced to the
//! disk once a second.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tollgate_policy::calendar;

/// Records not yet written kept at most (a disk full for a long time):
/// past it, new batches are logged as lost rather than held without bound.
const PENDING_BYTES_MAX: usize = 64 << 20;

/// How often the open file is synced and checked against its path.
const CHECK_EVERY: Duration = Duration::from_secs(1);

pub struct LogWriter {
    dir: PathBuf,
    file_bytes_max: u64,
    file: Option<Open>,
    /// With `[clickhouse]`: each batch written is offered to the table too.
    sink: Option<crate::clickhouse::Sink>,
    /// Batches the file did not take, oldest first, written before the next.
    pending: Vec<u8>,
    /// Whether the last write failed (logged once, and once recovered).
    failing: bool,
    /// When a write last failed: kept records are tried again a second on.
    last_try: Instant,
    /// Files left ending inside a line (their day and part, this day's),
    /// which records do not go on into.
    torn: Vec<(String, u32)>,
    last_check: Instant,
    /// Written since the last sync.
    dirty: bool,
}

/// The file records go to.
struct Open {
    file: File,
    path: PathBuf,
    day: String,
    part: u32,
    size: u64,
}

pub use calendar::utc_date;

impl LogWriter {
    pub fn new(dir: PathBuf, file_bytes_max: u64) -> std::io::Result<LogWriter> {
        std::fs::create_dir_all(&dir)?;
        Ok(LogWriter {
            dir,
            file_bytes_max,
            file: None,
            sink: None,
            pending: Vec::new(),
            failing: false,
            last_try: Instant::now(),
            torn: Vec::new(),
            last_check: Instant::now(),
            dirty: false,
        })
    }

    /// Runs until every sender is gone.
    fn run(mut self, rx: mpsc::Receiver<(BytesMut, usize)>, queue: &Queue) {
        loop {
            let dropped = queue.dropped.swap(0, Ordering::Relaxed);
            if dropped > 0 {
                tracing::error!(dropped, dir = %self.dir.display(), queued_bytes_max = QUEUE_BYTES_MAX, "request records dropped: the writer fell that far behind (is the disk stalled?)");
            }
            match rx.recv_timeout(CHECK_EVERY) {
                Ok((batch, held)) => {
                    queue.bytes.fetch_sub(held, Ordering::Relaxed);
                    let batch = batch.freeze();
                    self.append(&batch);
                    if let Some(sink) = &self.sink {
                        sink.offer(batch);
                    }
                }
                // A quiet second: records kept from a failed write are
                // tried again, and the file synced and checked.
                Err(mpsc::RecvTimeoutError::Timeout) => self.append(&[]),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            self.check();
        }
        // One last try, whenever the last one was.
        self.failing = false;
        self.append(&[]);
        if !self.pending.is_empty() {
            tracing::error!(bytes = self.pending.len(), dir = %self.dir.display(), "request records could not be written before exit: lost");
        }
        if let Some(open) = &self.file {
            let _ = open.file.sync_data();
        }
    }

    /// Writes what is kept and `batch` after it; keeps what the file does
    /// not take. While writes fail, they are tried again at most once a
    /// second (a nearly full disk is not written and cut back with every
    /// batch), and what the file took of them, whole lines, is not kept.
    fn append(&mut self, batch: &[u8]) {
        if self.pending.is_empty() {
            if batch.is_empty() {
                return;
            }
            let (done, result) = self.write(batch);
            if let Err(e) = result {
                self.failed(&e);
                self.keep(&batch[done..]);
            } else {
                self.recovered();
            }
            return;
        }
        if self.failing && self.last_try.elapsed() < CHECK_EVERY {
            self.keep(batch);
            return;
        }
        // Tried with the batch before the bound is applied: a disk that has
        // just freed room takes it rather than the bound dropping it.
        self.pending.extend_from_slice(batch);
        let pending = std::mem::take(&mut self.pending);
        let (done, result) = self.write(&pending);
        self.pending = pending;
        self.pending.drain(..done);
        match result {
            Ok(()) => {
                self.recovered();
                self.pending.shrink_to(PENDING_BYTES_MAX / 64);
            }
            Err(e) => {
                self.failed(&e);
                // Past the bound, the newest batch goes, whole. (Only where
                // nothing of it was written: what was kept before is within
                // the bound, and a batch is far smaller.)
                // `keep` applies the bound to it, as to any batch.
                if self.pending.len() > PENDING_BYTES_MAX && self.pending.len() >= batch.len() {
                    self.pending.truncate(self.pending.len() - batch.len());
                    self.keep(batch);
                }
            }
        }
    }

    /// Keeps `bytes` to write later, within the bound.
    fn keep(&mut self, bytes: &[u8]) {
        if self.pending.len() + bytes.len() > PENDING_BYTES_MAX {
            let lines = bytes.iter().filter(|&&b| b == b'\n').count();
            tracing::error!(lines, dir = %self.dir.display(), "request records lost: the disk has not taken them for too long");
        } else {
            self.pending.extend_from_slice(bytes);
        }
    }

    fn failed(&mut self, e: &std::io::Error) {
        self.last_try = Instant::now();
        if !std::mem::replace(&mut self.failing, true) {
            tracing::error!(error = %e, dir = %self.dir.display(), "cannot write request records: keeping them to write later");
        }
    }

    fn recovered(&mut self) {
        if std::mem::take(&mut self.failing) {
            tracing::warn!(dir = %self.dir.display(), "request records are written again");
        }
    }

    /// Once a second: syncs what was written, and lets go of a file that
    /// is no longer the one at its path (renamed or deleted), so that the
    /// next write opens the path again.
    fn check(&mut self) {
        if self.last_check.elapsed() < CHECK_EVERY {
            return;
        }
        self.last_check = Instant::now();
        let Some(open) = &self.file else { return };
        if std::mem::take(&mut self.dirty) {
            let _ = open.file.sync_data();
        }
        let same = match (open.file.metadata(), std::fs::metadata(&open.path)) {
            (Ok(mine), Ok(at_path)) => mine.ino() == at_path.ino() && mine.dev() == at_path.dev(),
            _ => false,
        };
        if !same {
            tracing::info!(file = %open.path.display(), "the records file was moved or removed: opening it again");
            self.file = None;
        }
    }

    /// Appends `bytes`; returns how many of them the file holds as whole
    /// lines (all of them, unless an error), and the error. Of a write the
    /// file took only part of, the torn last line is cut back out, so that
    /// the next write does not run on from it; where it cannot be, the
    /// file is left for its next part.
    fn write(&mut self, bytes: &[u8]) -> (usize, std::io::Result<()>) {
        if let Err(e) = self.open() {
            return (0, Err(e));
        }
        let open = self.file.as_mut().expect("opened above");
        let mut written = 0;
        let error = loop {
            if written == bytes.len() {
                break None;
            }
            match open.file.write(&bytes[written..]) {
                Ok(0) => break Some(std::io::Error::from(std::io::ErrorKind::WriteZero)),
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Some(e),
            }
        };
        self.dirty |= written > 0;
        let Some(e) = error else {
            open.size += bytes.len() as u64;
            return (bytes.len(), Ok(()));
        };
        let done = whole_lines(bytes, written);
        let torn = (written - done) as u64;
        let cut =
            torn == 0 || open.file.metadata().and_then(|m| open.file.set_len(m.len().saturating_sub(torn))).is_ok();
        if cut {
            open.size += done as u64;
        } else {
            // The file ends inside a line: the line is written again, whole,
            // in the next part. The whole lines before it are synced first.
            let _ = open.file.sync_data();
            self.torn.retain(|(day, _)| *day == open.day);
            self.torn.push((open.day.clone(), open.part));
            self.file = None;
        }
        (done, Err(e))
    }

    /// Opens the file records go to now: today's, its first part under
    /// the size limit (and not one left ending inside a line).
    fn open(&mut self) -> std::io::Result<()> {
        let today = utc_date(crate::unix_now().as_secs());
        let stale = match &self.file {
            Some(open) => open.day != today || open.size >= self.file_bytes_max,
            None => true,
        };
        if !stale {
            return Ok(());
        }
        let mut part = match &self.file {
            Some(open) if open.day == today => open.part + 1,
            _ => 0,
        };
        if let Some(open) = self.file.take() {
            let _ = open.file.sync_data();
        }
        loop {
            let name = if part == 0 {
                format!("tollgate-requests-{today}.jsonl")
            } else {
                format!("tollgate-requests-{today}.{part}.jsonl")
            };
            let path = self.dir.join(name);
            let size = std::fs::metadata(&path).map_or(0, |m| m.len());
            let torn = self.torn.iter().any(|(day, p)| *day == today && *p == part);
            if size < self.file_bytes_max && !torn {
                let file = OpenOptions::new().create(true).append(true).open(&path)?;
                self.file = Some(Open { file, path, day: today, part, size });
                return Ok(());
            }
            part += 1;
        }
    }
}

/// How many of the first `written` bytes of `bytes` end with a whole line:
/// up to and with the last newline among them.
fn whole_lines(bytes: &[u8], written: usize) -> usize {
    bytes[..written].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
}

/// Batches handed to the writer and not yet taken by it, at most: a disk
/// whose writes block rather than fail (a stalled network mount) left the
/// channel growing without bound, a worker's 64 KiB batch every 100 ms or
/// sooner (found by a review). Past it a worker's batch is dropped,
/// counted, and the writer logs how many records it lost; the ledger keeps
/// the spend whatever happens to the records.
pub const QUEUE_BYTES_MAX: usize = 256 << 20;

/// A worker's line to the writer thread: the channel, and the bytes queued
/// on it (shared by every worker and the writer; touched once a batch).
#[derive(Clone)]
pub struct RecordLine {
    /// Each batch with the bytes it counts in the queue.
    tx: mpsc::Sender<(BytesMut, usize)>,
    queue: Arc<Queue>,
}

struct Queue {
    bytes: AtomicUsize,
    /// Records dropped since the writer last said so.
    dropped: AtomicU64,
    /// [`QUEUE_BYTES_MAX`] (less in tests).
    max: usize,
}

impl RecordLine {
    /// A line whose queue holds `max` bytes at most, and its other end.
    fn new(max: usize) -> (RecordLine, mpsc::Receiver<(BytesMut, usize)>, Arc<Queue>) {
        let (tx, rx) = mpsc::channel();
        let queue = Arc::new(Queue { bytes: AtomicUsize::new(0), dropped: AtomicU64::new(0), max });
        (RecordLine { tx, queue: queue.clone() }, rx, queue)
    }

    /// Hands `batch` (whole record lines) to the writer, or drops it when
    /// the writer is [`QUEUE_BYTES_MAX`] behind: then `Err` with the records dropped.
    /// `held`: the memory the batch keeps while queued (the allocation it
    /// was split from, which a worker's next batch does not reuse: a batch
    /// of one record holds the 80 KiB reserved for a whole one), at least
    /// its length.
    pub fn send(&self, batch: BytesMut, held: usize) -> Result<(), u64> {
        let n = held.max(batch.len());
        let records = |batch: &[u8]| memchr::memchr_iter(b'\n', batch).count() as u64;
        if self.queue.bytes.load(Ordering::Relaxed).saturating_add(n) > self.queue.max {
            let lines = records(&batch);
            self.queue.dropped.fetch_add(lines, Ordering::Relaxed);
            return Err(lines);
        }
        self.queue.bytes.fetch_add(n, Ordering::Relaxed);
        if let Err(mpsc::SendError((batch, _))) = self.tx.send((batch, n)) {
            // The writer is gone (the process is ending).
            self.queue.bytes.fetch_sub(n, Ordering::Relaxed);
            return Err(records(&batch));
        }
        Ok(())
    }
}

/// A line to a thread that takes every batch and drops it, as a writer
/// that keeps up would take them (for benchmarks of the request path).
pub fn dropping_line() -> RecordLine {
    let (line, rx, queue) = RecordLine::new(QUEUE_BYTES_MAX);
    std::thread::spawn(move || {
        for (_, held) in rx {
            queue.bytes.fetch_sub(held, Ordering::Relaxed);
        }
    });
    line
}

/// Starts the writer thread; workers get clones of its line.
pub fn start(
    dir: PathBuf,
    file_bytes_max: u64,
    sink: Option<crate::clickhouse::Sink>,
) -> std::io::Result<(RecordLine, std::thread::JoinHandle<()>)> {
    let mut writer = LogWriter::new(dir, file_bytes_max)?;
    writer.sink = sink;
    let (line, rx, queue) = RecordLine::new(QUEUE_BYTES_MAX);
    let handle = std::thread::Builder::new().name("tollgate-records".into()).spawn(move || writer.run(rx, &queue))?;
    Ok((line, handle))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The queue to the writer is bounded: batches past its bound are
    /// dropped and their records counted, and once the writer takes what
    /// was queued, batches go again.
    #[test]
    fn batches_past_the_queues_bound_are_dropped_and_counted() {
        let (line, rx, queue) = RecordLine::new(1000);
        let batch = || BytesMut::from(&b"{\"a\":1}\n".repeat(50)[..]); // 400 bytes, 50 records
        assert!(line.send(batch(), 0).is_ok() && line.send(batch(), 0).is_ok(), "800 bytes queued");
        assert_eq!(line.send(batch(), 0), Err(50), "1,200 would pass 1,000");
        assert_eq!(queue.dropped.load(Ordering::Relaxed), 50);
        assert_eq!(queue.bytes.load(Ordering::Relaxed), 800);
        // The writer takes one (as `run` does): room again.
        let (_, held) = rx.recv().unwrap();
        queue.bytes.fetch_sub(held, Ordering::Relaxed);
        assert!(line.send(batch(), 0).is_ok());
        assert_eq!(queue.bytes.load(Ordering::Relaxed), 800);
        // A batch counts the memory it holds, not only its length.
        assert!(line.send(batch(), 300).is_err(), "800 + 300 would pass 1,000");
        let (_, held) = rx.recv().unwrap();
        queue.bytes.fetch_sub(held, Ordering::Relaxed);
        assert!(line.send(batch(), 600).is_ok());
        assert_eq!(queue.bytes.load(Ordering::Relaxed), 1000);
    }

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(1_795_400_000), "2026-11-23");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
    }

    fn lines(path: &std::path::Path) -> Vec<String> {
        std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect()
    }

    /// Batches the disk refuses (ENOSPC: `/dev/full`) are kept and written,
    /// in order and whole, once it takes writes again.
    #[test]
    fn records_a_full_disk_refuses_are_written_once_it_frees() {
        let dir = std::env::temp_dir().join(format!("tollgate-logwriter-full-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut w = LogWriter::new(dir.clone(), 1 << 20).unwrap();
        w.append(b"{\"n\":1}\n");
        let path = w.file.as_ref().unwrap().path.clone();
        let full = OpenOptions::new().append(true).open("/dev/full").unwrap();
        let real = std::mem::replace(&mut w.file.as_mut().unwrap().file, full);
        w.append(b"{\"n\":2}\n");
        w.append(b"{\"n\":3}\n{\"n\":4}\n");
        assert!(w.failing && !w.pending.is_empty(), "kept");
        assert_eq!(lines(&path), ["{\"n\":1}"]);
        w.file.as_mut().unwrap().file = real;
        // Within a second of the failure, nothing is tried: kept.
        w.append(b"{\"n\":5}\n");
        assert_eq!(lines(&path), ["{\"n\":1}"]);
        w.last_try = Instant::now() - CHECK_EVERY;
        w.append(&[]);
        assert!(w.pending.is_empty() && !w.failing);
        assert_eq!(lines(&path), ["{\"n\":1}", "{\"n\":2}", "{\"n\":3}", "{\"n\":4}", "{\"n\":5}"]);
        // A quiet second writes what is kept too.
        let full = OpenOptions::new().append(true).open("/dev/full").unwrap();
        let real = std::mem::replace(&mut w.file.as_mut().unwrap().file, full);
        w.append(b"{\"n\":6}\n");
        w.file.as_mut().unwrap().file = real;
        w.last_try = Instant::now() - CHECK_EVERY;
        w.append(&[]);
        assert_eq!(lines(&path).len(), 6);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A file renamed (logrotate) or deleted under the writer: within its
    /// check the writer opens the path again, so that later records are
    /// where reports and retention look for them.
    #[test]
    fn a_file_moved_or_removed_is_opened_again_at_its_path() {
        let dir = std::env::temp_dir().join(format!("tollgate-logwriter-moved-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut w = LogWriter::new(dir.clone(), 1 << 20).unwrap();
        w.append(b"{\"n\":1}\n");
        let path = w.file.as_ref().unwrap().path.clone();
        let moved = dir.join("rotated.jsonl.1");
        std::fs::rename(&path, &moved).unwrap();
        w.last_check = Instant::now() - CHECK_EVERY;
        w.check();
        w.append(b"{\"n\":2}\n");
        assert_eq!((lines(&moved), lines(&path)), (vec!["{\"n\":1}".to_string()], vec!["{\"n\":2}".to_string()]));
        std::fs::remove_file(&path).unwrap();
        w.last_check = Instant::now() - CHECK_EVERY;
        w.check();
        w.append(b"{\"n\":3}\n");
        assert_eq!(lines(&path), ["{\"n\":3}"]);
        // Unmoved, the file is kept open.
        w.last_check = Instant::now() - CHECK_EVERY;
        w.check();
        assert!(w.file.is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn whole_lines_end_at_the_last_newline_written() {
        for (bytes, written, whole) in
            [(&b"ab\ncd\n"[..], 6, 6), (b"ab\ncd\n", 5, 3), (b"ab\ncd\n", 3, 3), (b"ab\ncd\n", 2, 0), (b"ab", 0, 0)]
        {
            assert_eq!(whole_lines(bytes, written), whole, "{bytes:?} {written}");
        }
    }

    /// A write the file takes only part of (a non-blocking pipe, full at
    /// 64 KiB, and which cannot be cut back): the whole lines it took are
    /// not written again, and the torn line and the rest go whole into the
    /// next part, never run on from the torn one.
    #[test]
    fn a_write_taken_in_part_keeps_its_whole_lines_and_writes_the_rest_in_the_next_part() {
        let dir = std::env::temp_dir().join(format!("tollgate-logwriter-part-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut w = LogWriter::new(dir.clone(), 1 << 30).unwrap();
        w.append(b"{\"n\":0}\n");
        let first = w.file.as_ref().unwrap().path.clone();
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK) }, 0);
        // SAFETY: both descriptors are new and owned here, once each.
        let (read_end, write_end) = unsafe {
            use std::os::fd::FromRawFd;
            (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1]))
        };
        let real = std::mem::replace(&mut w.file.as_mut().unwrap().file, write_end);
        let line = |i: usize| format!("{{\"n\":{i},\"pad\":\"{}\"}}\n", "x".repeat(90));
        let batch: String = (1..=1000).map(line).collect();
        w.append(batch.as_bytes());
        let taken = {
            use std::io::Read;
            let mut v = Vec::new();
            let _ = (&read_end).read_to_end(&mut v);
            v
        };
        assert!(!taken.is_empty() && taken.len() < batch.len(), "taken in part: {}", taken.len());
        let done = whole_lines(batch.as_bytes(), taken.len());
        assert_eq!(w.pending, batch.as_bytes()[done..], "the torn line and the rest are kept");
        assert!(w.file.is_none() && w.torn.len() == 1, "the torn file is left");
        drop(real);
        w.last_try = Instant::now() - CHECK_EVERY;
        w.append(&[]);
        let next = w.file.as_ref().unwrap().path.clone();
        assert_ne!(next, first, "the next part");
        // The next part holds the rest exactly, from the torn line's start.
        assert_eq!(std::fs::read(&next).unwrap(), batch.as_bytes()[done..]);
        assert!(batch.as_bytes()[..done].ends_with(b"\n") && taken.starts_with(&batch.as_bytes()[..done]));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn rotates_by_size() {
        let dir = std::env::temp_dir().join(format!("tollgate-logwriter-{}", std::process::id()));
        let mut w = LogWriter::new(dir.clone(), 10).unwrap();
        w.write(b"0123456789ab\n").1.unwrap();
        w.write(b"second\n").1.unwrap();
        let mut names: Vec<_> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names[0].ends_with(".1.jsonl") || names[1].ends_with(".1.jsonl"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

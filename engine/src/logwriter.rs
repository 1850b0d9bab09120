//! The writer thread for request records: appends batches from the workers
//! to `DIR/tollgate-requests-YYYY-MM-DD.jsonl`, starts a new file each UTC
//! day and when a file passes its size limit
//! (`tollgate-requests-YYYY-MM-DD.N.jsonl`), and exits after writing
//! everything once every worker has hung up.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc;

use bytes::BytesMut;
use tollgate_policy::calendar;

pub struct LogWriter {
    dir: PathBuf,
    file_bytes_max: u64,
    file: Option<(File, String, u32, u64)>,
    /// With `[clickhouse]`: each batch written is offered to the table too.
    sink: Option<crate::clickhouse::Sink>,
}

pub use calendar::utc_date;

impl LogWriter {
    pub fn new(dir: PathBuf, file_bytes_max: u64) -> std::io::Result<LogWriter> {
        std::fs::create_dir_all(&dir)?;
        Ok(LogWriter { dir, file_bytes_max, file: None, sink: None })
    }

    /// Runs until every sender is gone.
    pub fn run(mut self, rx: mpsc::Receiver<BytesMut>) {
        for batch in rx {
            let batch = batch.freeze();
            if let Err(e) = self.write(&batch) {
                tracing::error!(error = %e, dir = %self.dir.display(), "cannot write request records");
            }
            if let Some(sink) = &self.sink {
                sink.offer(batch);
            }
        }
        if let Some((f, ..)) = &mut self.file {
            let _ = f.sync_data();
        }
    }

    fn write(&mut self, batch: &[u8]) -> std::io::Result<()> {
        let today = utc_date(crate::unix_now().as_secs());
        let stale = match &self.file {
            Some((_, day, _, size)) => *day != today || *size >= self.file_bytes_max,
            None => true,
        };
        if stale {
            let mut part = match &self.file {
                Some((_, day, part, _)) if *day == today => part + 1,
                _ => 0,
            };
            loop {
                let name = if part == 0 {
                    format!("tollgate-requests-{today}.jsonl")
                } else {
                    format!("tollgate-requests-{today}.{part}.jsonl")
                };
                let path = self.dir.join(name);
                let size = std::fs::metadata(&path).map_or(0, |m| m.len());
                if size < self.file_bytes_max {
                    let f = OpenOptions::new().create(true).append(true).open(&path)?;
                    self.file = Some((f, today.clone(), part, size));
                    break;
                }
                part += 1;
            }
        }
        let (f, _, _, size) = self.file.as_mut().expect("opened above");
        f.write_all(batch)?;
        *size += batch.len() as u64;
        Ok(())
    }
}

/// Starts the writer thread; workers get clones of the sender.
pub fn start(
    dir: PathBuf,
    file_bytes_max: u64,
    sink: Option<crate::clickhouse::Sink>,
) -> std::io::Result<(mpsc::Sender<BytesMut>, std::thread::JoinHandle<()>)> {
    let mut writer = LogWriter::new(dir, file_bytes_max)?;
    writer.sink = sink;
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::Builder::new().name("tollgate-records".into()).spawn(move || writer.run(rx))?;
    Ok((tx, handle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(1_795_400_000), "2026-11-23");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
    }

    #[test]
    fn rotates_by_size() {
        let dir = std::env::temp_dir().join(format!("tollgate-logwriter-{}", std::process::id()));
        let mut w = LogWriter::new(dir.clone(), 10).unwrap();
        w.write(b"0123456789ab\n").unwrap();
        w.write(b"second\n").unwrap();
        let mut names: Vec<_> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names[0].ends_with(".1.jsonl") || names[1].ends_with(".1.jsonl"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

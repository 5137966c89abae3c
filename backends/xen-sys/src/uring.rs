//! Asynchronous file I/O through io_uring with owned buffers: a buffer (and the file)
//! stay owned by the queue until the kernel reports the operation complete, so the
//! safe API cannot free memory the kernel is still writing.

use crate::iobuf::IoBuf;
use io_uring::{opcode, squeue, types, IoUring};
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

struct InFlight {
    tag: u64,
    buf: IoBuf,
    _file: Arc<File>,
}

/// A finished operation: the caller's tag, the kernel's result, the buffer back.
#[derive(Debug)]
pub struct Completion {
    /// The tag given at submission.
    pub tag: u64,
    /// Bytes transferred, or the error.
    pub result: io::Result<usize>,
    /// The buffer (read data for reads).
    pub buf: IoBuf,
}

/// An io_uring with owned buffers.
pub struct IoQueue {
    ring: IoUring,
    in_flight: HashMap<u64, InFlight>,
    next_key: u64,
}

impl std::fmt::Debug for IoQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoQueue")
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

impl IoQueue {
    /// A ring with `entries` submission slots.
    pub fn new(entries: u32) -> io::Result<Self> {
        Ok(Self {
            ring: IoUring::new(entries)?,
            in_flight: HashMap::new(),
            next_key: 1,
        })
    }

    /// Operations submitted and not yet completed.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    fn push(
        &mut self,
        entry: squeue::Entry,
        tag: u64,
        buf: IoBuf,
        file: &Arc<File>,
    ) -> io::Result<()> {
        let key = self.next_key;
        self.next_key += 1;
        let entry = entry.user_data(key);
        // SAFETY: the entry's buffer pointer (if any) points into `buf`, whose heap
        // allocation does not move when the IoBuf is moved into `in_flight`, and the fd
        // is `file`'s; both are kept in `in_flight` until the completion with this
        // key is reaped (`complete`), or until `drop` has waited for all completions.
        let pushed = unsafe { self.ring.submission().push(&entry).is_ok() };
        if !pushed {
            self.ring.submit()?;
            // SAFETY: as above.
            let again = unsafe { self.ring.submission().push(&entry).is_ok() };
            if !again {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "io_uring submission queue full",
                ));
            }
        }
        self.in_flight.insert(
            key,
            InFlight {
                tag,
                buf,
                _file: file.clone(),
            },
        );
        Ok(())
    }

    /// Queues a read of `buf.len()` bytes at `offset` into `buf` (given back in the
    /// completion).
    pub fn read(
        &mut self,
        file: &Arc<File>,
        offset: u64,
        mut buf: IoBuf,
        tag: u64,
    ) -> io::Result<()> {
        let len = buf.len() as u32;
        let e = opcode::Read::new(types::Fd(file.as_raw_fd()), buf.as_mut_ptr(), len)
            .offset(offset)
            .build();
        self.push(e, tag, buf, file)
    }

    /// Queues a write of `buf` at `offset`.
    pub fn write(
        &mut self,
        file: &Arc<File>,
        offset: u64,
        buf: IoBuf,
        tag: u64,
    ) -> io::Result<()> {
        let e = opcode::Write::new(types::Fd(file.as_raw_fd()), buf.as_ptr(), buf.len() as u32)
            .offset(offset)
            .build();
        self.push(e, tag, buf, file)
    }

    /// Whether completions are waiting to be reaped.
    pub fn has_completions(&mut self) -> bool {
        !self.ring.completion().is_empty()
    }

    /// Submits what is queued without waiting.
    pub fn submit(&mut self) -> io::Result<()> {
        self.ring.submit()?;
        Ok(())
    }

    /// Submits and waits for at least one completion, at most `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        if self.in_flight.is_empty() || !self.ring.completion().is_empty() {
            return self.submit();
        }
        let ts = types::Timespec::new()
            .sec(timeout.as_secs())
            .nsec(timeout.subsec_nanos());
        let args = types::SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::ETIME)
                    || e.kind() == io::ErrorKind::Interrupted =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Moves finished operations to `out`.
    pub fn complete(&mut self, out: &mut Vec<Completion>) {
        for cqe in self.ring.completion() {
            let Some(f) = self.in_flight.remove(&cqe.user_data()) else {
                continue;
            };
            let r = cqe.result();
            out.push(Completion {
                tag: f.tag,
                result: if r < 0 {
                    Err(io::Error::from_raw_os_error(-r))
                } else {
                    Ok(r as usize)
                },
                buf: f.buf,
            });
        }
    }
}

impl Drop for IoQueue {
    fn drop(&mut self) {
        // The kernel may still write into buffers we own: wait for every completion.
        let mut sink = Vec::new();
        while !self.in_flight.is_empty() {
            if self.ring.submit_and_wait(1).is_err() {
                // Cannot wait: leak the buffers rather than free memory in use.
                std::mem::forget(std::mem::take(&mut self.in_flight));
                return;
            }
            self.complete(&mut sink);
            sink.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_and_writes_complete_with_their_tags() {
        let dir = std::env::temp_dir().join(format!("sluice-uring-{}", std::process::id()));
        let mut f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&dir)
            .unwrap();
        f.write_all(&[7u8; 8192]).unwrap();
        let f = Arc::new(f);
        let Ok(mut q) = IoQueue::new(8) else {
            eprintln!("io_uring unavailable here; skipping");
            return;
        };
        let mut nines = IoBuf::new(512);
        nines.fill(9);
        q.write(&f, 4096, nines, 1).unwrap();
        q.read(&f, 0, IoBuf::new(4096), 2).unwrap();
        let mut done = vec![];
        while done.len() < 2 {
            q.wait(Duration::from_secs(5)).unwrap();
            q.complete(&mut done);
        }
        done.sort_by_key(|c| c.tag);
        assert_eq!(done[0].result.as_ref().unwrap(), &512);
        assert_eq!(&done[1].buf[..], &[7u8; 4096][..]);
        q.read(&f, 4096, IoBuf::new(512), 3).unwrap();
        let mut more = vec![];
        while more.is_empty() {
            q.wait(Duration::from_secs(5)).unwrap();
            q.complete(&mut more);
        }
        assert_eq!(&more[0].buf[..], &[9u8; 512][..]);
        std::fs::remove_file(&dir).unwrap();
    }
}

//! Asynchronous file I/O through io_uring with owned buffers: a buffer (and the file)
//! stay owned by the queue until the kernel reports the operation complete, so the
//! safe API cannot free memory the kernel is still writing.

use crate::iobuf::IoBuf;
use foldhash::HashMap;
use io_uring::{opcode, squeue, types, IoUring};
use sluice_abi::shared::SharedMem;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

struct InFlight {
    tag: u64,
    buf: Option<IoBuf>,
    /// Not disk I/O (a poll, or the read or write of a descriptor such as the event
    /// channel's): left out of [`IoQueue::in_flight`].
    aux: bool,
    /// A poll linked to the read after it: its completion is not reported (the read's
    /// is), and [`Drop`] cancels it (it may never complete on its own).
    silent_poll: bool,
    /// Vectored operations: the memory the kernel reads or writes, and the iovec array
    /// it was given, both kept until the completion.
    _spans: Vec<IoSpan>,
    _iov: Vec<libc::iovec>,
    _file: Arc<File>,
}

/// Memory that stays at one address, readable and writable, for as long as the value
/// lives (a grant mapping), so the kernel may do I/O into it while an `Rc` of it is held.
///
/// # Safety
/// `stable_mem` returns the same region every time, and that region stays allocated and
/// mapped until the value is dropped, whatever is done meanwhile through `&self`. It is
/// shared memory in the sense of [`SharedMem::new`]: accessed in this program only
/// atomically (the kernel's I/O then is one more writer).
pub unsafe trait StableMem {
    /// The region.
    fn stable_mem(&self) -> SharedMem<'_>;
}

// SAFETY: the mapping is unmapped only in `drop`; `mem` always returns it whole.
unsafe impl StableMem for crate::GrantMapping {
    fn stable_mem(&self) -> SharedMem<'_> {
        self.mem()
    }
}

/// `len` bytes at `offset` of a [`StableMem`] region: one piece of a vectored read or
/// write.
pub struct IoSpan {
    /// The region (kept alive until the operation completes).
    pub mem: Rc<dyn StableMem>,
    /// Offset in the region.
    pub offset: usize,
    /// Bytes.
    pub len: usize,
}

/// A finished operation: the caller's tag, the kernel's result, the buffer back.
#[derive(Debug)]
pub struct Completion {
    /// The tag given at submission.
    pub tag: u64,
    /// Bytes transferred, or the error.
    pub result: io::Result<usize>,
    /// The buffer (read data for reads); `None` for vectored operations.
    pub buf: Option<IoBuf>,
}

/// An io_uring with owned buffers.
pub struct IoQueue {
    ring: IoUring,
    in_flight: HashMap<u64, InFlight>,
    /// Entries of `in_flight` that are not disk I/O.
    aux: usize,
    next_key: u64,
    /// `io_uring_enter` calls so far.
    enters: u64,
    /// Whether completions are only posted inside `io_uring_enter` (`DEFER_TASKRUN`).
    deferred: bool,
}

impl std::fmt::Debug for IoQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoQueue")
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

/// A ring with `entries` submission slots for the calling thread only: single-issuer
/// with `IORING_SETUP_DEFER_TASKRUN` where the kernel takes it (Linux 6.1+), so that a
/// completion never interrupts the thread and is posted when it next waits in
/// `io_uring_enter` (true); a plain ring otherwise (false).
pub(crate) fn deferred_ring(entries: u32) -> io::Result<(IoUring, bool)> {
    match IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(entries)
    {
        Ok(r) => Ok((r, true)),
        Err(_) => Ok((IoUring::new(entries)?, false)),
    }
}

impl IoQueue {
    /// A ring with `entries` submission slots, to be used by the calling thread only:
    /// with `IORING_SETUP_DEFER_TASKRUN` (Linux 6.1+; single issuer, cooperative task
    /// running) where the kernel takes it, so that a completion never interrupts the
    /// thread (in a PV dom0 every interruption is a trip through Xen) and is posted
    /// when the thread next waits in `io_uring_enter`; a plain ring otherwise.
    pub fn new(entries: u32) -> io::Result<Self> {
        let (ring, deferred) = deferred_ring(entries)?;
        Ok(Self {
            ring,
            in_flight: HashMap::default(),
            aux: 0,
            next_key: 1,
            enters: 0,
            deferred,
        })
    }

    /// A plain ring (no deferred task running), e.g. for a queue shared between threads
    /// one at a time.
    pub fn new_plain(entries: u32) -> io::Result<Self> {
        Ok(Self {
            ring: IoUring::new(entries)?,
            in_flight: HashMap::default(),
            aux: 0,
            next_key: 1,
            enters: 0,
            deferred: false,
        })
    }

    /// Whether completions are posted only while waiting (`DEFER_TASKRUN`).
    pub fn deferred(&self) -> bool {
        self.deferred
    }

    /// Disk operations submitted and not yet completed (polls and descriptor reads and
    /// writes queued with [`IoQueue::poll_read`] and [`IoQueue::write_aux`] not counted).
    pub fn in_flight(&self) -> usize {
        self.in_flight.len() - self.aux
    }

    fn push(
        &mut self,
        entry: squeue::Entry,
        tag: u64,
        buf: Option<IoBuf>,
        spans: Vec<IoSpan>,
        iov: Vec<libc::iovec>,
        file: &Arc<File>,
    ) -> io::Result<()> {
        let key = self.push_entry(entry)?;
        self.track(key, tag, buf, spans, iov, file, false, false);
        Ok(())
    }

    /// Records an operation the kernel now holds.
    #[allow(clippy::too_many_arguments)]
    fn track(
        &mut self,
        key: u64,
        tag: u64,
        buf: Option<IoBuf>,
        spans: Vec<IoSpan>,
        iov: Vec<libc::iovec>,
        file: &Arc<File>,
        aux: bool,
        silent_poll: bool,
    ) {
        if aux {
            self.aux += 1;
        }
        self.in_flight.insert(
            key,
            InFlight {
                tag,
                buf,
                aux,
                silent_poll,
                _spans: spans,
                _iov: iov,
                _file: file.clone(),
            },
        );
    }

    /// Puts `entry` on the submission queue under a fresh key (submitting what is
    /// queued first if it is full). The caller then [`IoQueue::track`]s what the entry
    /// points at under that key.
    fn push_entry(&mut self, entry: squeue::Entry) -> io::Result<u64> {
        let key = self.next_key;
        self.next_key += 1;
        let entry = entry.user_data(key);
        // SAFETY: the entry's buffer pointer (if any) points into `buf`, whose heap
        // allocation does not move when the IoBuf is moved into `in_flight`; a vectored
        // entry points at `iov`'s heap array (which does not move either), whose
        // entries point into `spans`' regions (stable while their `Rc`s live: the
        // `StableMem` contract); the fd is `file`'s. All are kept in `in_flight` until
        // the completion with this key is reaped (`complete`), or until `drop` has
        // waited for all completions.
        let pushed = unsafe { self.ring.submission().push(&entry).is_ok() };
        if !pushed {
            self.enter()?;
            // SAFETY: as above.
            let again = unsafe { self.ring.submission().push(&entry).is_ok() };
            if !again {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "io_uring submission queue full",
                ));
            }
        }
        Ok(key)
    }

    /// Waits until `file` is readable, then reads up to `buf.len()` bytes from it (its
    /// current position; a stream ignores it) into `buf`: a poll linked to a read, so
    /// that a descriptor opened `O_NONBLOCK` (the event channel's) is read only once it
    /// has data, without a system call of its own. One completion, the read's, with
    /// `tag` and the buffer. Not counted in [`IoQueue::in_flight`]; cancelled when the
    /// queue is dropped.
    pub fn poll_read(&mut self, file: &Arc<File>, mut buf: IoBuf, tag: u64) -> io::Result<()> {
        // Both entries must go in together: a link does not span submissions.
        let room = {
            let sq = self.ring.submission();
            sq.capacity() - sq.len()
        };
        if room < 2 {
            self.enter()?;
        }
        let fd = types::Fd(file.as_raw_fd());
        let poll = opcode::PollAdd::new(fd, libc::POLLIN as u32)
            .build()
            .flags(squeue::Flags::IO_LINK);
        let read = opcode::Read::new(fd, buf.as_mut_ptr(), buf.len() as u32)
            .offset(u64::MAX)
            .build();
        let pkey = self.push_entry(poll)?;
        self.track(pkey, tag, None, Vec::new(), Vec::new(), file, true, true);
        let rkey = self.push_entry(read)?;
        self.track(
            rkey,
            tag,
            Some(buf),
            Vec::new(),
            Vec::new(),
            file,
            true,
            false,
        );
        Ok(())
    }

    /// Queues a write of `buf` to `file` at its current position (a stream, such as the
    /// event channel's descriptor, ignores it), not counted in [`IoQueue::in_flight`].
    pub fn write_aux(&mut self, file: &Arc<File>, buf: IoBuf, tag: u64) -> io::Result<()> {
        let e = opcode::Write::new(types::Fd(file.as_raw_fd()), buf.as_ptr(), buf.len() as u32)
            .offset(u64::MAX)
            .build();
        let key = self.push_entry(e)?;
        self.track(
            key,
            tag,
            Some(buf),
            Vec::new(),
            Vec::new(),
            file,
            true,
            false,
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
        self.push(e, tag, Some(buf), Vec::new(), Vec::new(), file)
    }

    /// Queues a write of `buf` at `offset`.
    pub fn write(&mut self, file: &Arc<File>, offset: u64, buf: IoBuf, tag: u64) -> io::Result<()> {
        let e = opcode::Write::new(types::Fd(file.as_raw_fd()), buf.as_ptr(), buf.len() as u32)
            .offset(offset)
            .build();
        self.push(e, tag, Some(buf), Vec::new(), Vec::new(), file)
    }

    /// Queues a vectored read at `offset` straight into `spans` (e.g. a guest's mapped
    /// pages: no bounce buffer). Refused (`InvalidInput`) if a span lies outside its
    /// region or there are none or more than `IOV_MAX`.
    pub fn readv(
        &mut self,
        file: &Arc<File>,
        offset: u64,
        spans: Vec<IoSpan>,
        tag: u64,
    ) -> io::Result<()> {
        let iov = Self::iovecs(&spans)?;
        let e = opcode::Readv::new(types::Fd(file.as_raw_fd()), iov.as_ptr(), iov.len() as u32)
            .offset(offset)
            .build();
        self.push(e, tag, None, spans, iov, file)
    }

    /// Queues a vectored write at `offset` straight from `spans` (as [`IoQueue::readv`]).
    pub fn writev(
        &mut self,
        file: &Arc<File>,
        offset: u64,
        spans: Vec<IoSpan>,
        tag: u64,
    ) -> io::Result<()> {
        let iov = Self::iovecs(&spans)?;
        let e = opcode::Writev::new(types::Fd(file.as_raw_fd()), iov.as_ptr(), iov.len() as u32)
            .offset(offset)
            .build();
        self.push(e, tag, None, spans, iov, file)
    }

    fn iovecs(spans: &[IoSpan]) -> io::Result<Vec<libc::iovec>> {
        let bad = |why: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, why.to_string()));
        if spans.is_empty() || spans.len() > 1024 {
            return bad("vectored I/O needs 1 to 1024 spans");
        }
        let mut iov = Vec::with_capacity(spans.len());
        for s in spans {
            let Ok(region) = s.mem.stable_mem().slice(s.offset, s.len) else {
                return bad("span outside its region");
            };
            iov.push(libc::iovec {
                iov_base: region.addr() as *mut libc::c_void,
                iov_len: s.len,
            });
        }
        Ok(iov)
    }

    /// Whether completions are waiting to be reaped.
    pub fn has_completions(&mut self) -> bool {
        !self.ring.completion().is_empty()
    }

    /// `io_uring_enter` calls so far (each one a syscall: in a PV dom0 a trip through Xen).
    pub fn enters(&self) -> u64 {
        self.enters
    }

    fn enter(&mut self) -> io::Result<()> {
        self.enters += 1;
        self.ring.submit()?;
        Ok(())
    }

    /// Submits what is queued without waiting (no syscall when nothing is queued).
    pub fn submit(&mut self) -> io::Result<()> {
        if !self.ring.submission().is_empty() {
            self.enter()?;
        }
        Ok(())
    }

    /// Submits and waits for at least one completion, at most `timeout`: one
    /// `io_uring_enter` ([`IoQueue::wait_for`]'s answer).
    pub fn wait(&mut self, timeout: Duration) -> io::Result<bool> {
        self.wait_for(1, timeout)
    }

    /// Submits what is queued and waits, in the same `io_uring_enter`, until `want`
    /// completions (at most as many as are pending) are posted or `timeout` passes.
    /// Without waiting (and without a system call when nothing is queued) when nothing
    /// is pending or completions are already posted. True when the completions wanted
    /// are posted; false when the wait ended without them (timed out or interrupted).
    pub fn wait_for(&mut self, want: usize, timeout: Duration) -> io::Result<bool> {
        let want = want.min(self.in_flight.len());
        if want == 0 || (!self.deferred && !self.ring.completion().is_empty()) {
            self.submit()?;
            return Ok(self.ring.completion().len() >= want);
        }
        let ts = types::Timespec::new()
            .sec(timeout.as_secs())
            .nsec(timeout.subsec_nanos());
        let args = types::SubmitArgs::new().timespec(&ts);
        self.enters += 1;
        match self.ring.submitter().submit_with_args(want, &args) {
            Ok(_) => Ok(true),
            Err(e)
                if e.raw_os_error() == Some(libc::ETIME)
                    || e.raw_os_error() == Some(libc::EBUSY)
                    || e.kind() == io::ErrorKind::Interrupted =>
            {
                Ok(false)
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
            if f.aux {
                self.aux -= 1;
            }
            let r = cqe.result();
            if f.silent_poll {
                // The linked read reports (a failed poll fails it with ECANCELED).
                continue;
            }
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
        // The kernel may still write into buffers we own: wait for every completion,
        // after cancelling the polls (which may never complete on their own).
        let polls: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.silent_poll)
            .map(|(&k, _)| k)
            .collect();
        for key in polls {
            // user_data 0 is no operation's key: its completion is skipped.
            let cancel = opcode::AsyncCancel::new(key).build().user_data(0);
            // SAFETY: a cancel entry points at no memory.
            while unsafe { self.ring.submission().push(&cancel).is_err() } {
                if self.ring.submit().is_err() {
                    break;
                }
            }
        }
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
        assert_eq!(&done[1].buf.as_ref().unwrap()[..], &[7u8; 4096][..]);
        q.read(&f, 4096, IoBuf::new(512), 3).unwrap();
        let mut more = vec![];
        while more.is_empty() {
            q.wait(Duration::from_secs(5)).unwrap();
            q.complete(&mut more);
        }
        assert_eq!(&more[0].buf.as_ref().unwrap()[..], &[9u8; 512][..]);
        std::fs::remove_file(&dir).unwrap();
    }

    struct Pages(sluice_abi::shared::SharedPages);
    // SAFETY: SharedPages is one heap allocation freed only on drop; `mem` is all of it.
    unsafe impl StableMem for Pages {
        fn stable_mem(&self) -> SharedMem<'_> {
            self.0.mem()
        }
    }

    #[test]
    fn vectored_io_goes_straight_to_stable_memory() {
        let path = std::env::temp_dir().join(format!("sluice-uringv-{}", std::process::id()));
        let f = Arc::new(
            File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .unwrap(),
        );
        f.set_len(16384).unwrap();
        let Ok(mut q) = IoQueue::new(8) else {
            eprintln!("io_uring unavailable here; skipping");
            return;
        };
        let src: Rc<dyn StableMem> = Rc::new(Pages(sluice_abi::shared::SharedPages::new(2)));
        src.stable_mem().fill(0, 8192, 5).unwrap();
        src.stable_mem().fill(4096, 512, 6).unwrap();
        let span = |m: &Rc<dyn StableMem>, offset, len| IoSpan {
            mem: m.clone(),
            offset,
            len,
        };
        // Two spans, the second from the other page: 1024 bytes of 5 then 512 of 6.
        q.writev(&f, 512, vec![span(&src, 0, 1024), span(&src, 4096, 512)], 1)
            .unwrap();
        let dst: Rc<dyn StableMem> = Rc::new(Pages(sluice_abi::shared::SharedPages::new(1)));
        let mut done = vec![];
        while done.is_empty() {
            q.wait(Duration::from_secs(5)).unwrap();
            q.complete(&mut done);
        }
        assert_eq!(done[0].result.as_ref().unwrap(), &1536);
        assert!(done[0].buf.is_none());
        q.readv(&f, 0, vec![span(&dst, 0, 2048)], 2).unwrap();
        // The queue keeps the region alive: dropping our handle changes nothing.
        let view = Rc::downgrade(&dst);
        drop(dst);
        assert!(view.upgrade().is_some());
        done.clear();
        while done.is_empty() {
            q.wait(Duration::from_secs(5)).unwrap();
            q.complete(&mut done);
        }
        assert_eq!(done[0].result.as_ref().unwrap(), &2048);
        assert!(view.upgrade().is_none(), "released with the completion");
        let mut back = [0u8; 2048];
        std::os::unix::fs::FileExt::read_exact_at(&*f, &mut back, 0).unwrap();
        assert!(back[..512].iter().all(|&b| b == 0));
        assert!(back[512..1536].iter().all(|&b| b == 5));
        assert!(back[1536..].iter().all(|&b| b == 6));
        // Spans outside their region, or none: refused before the kernel sees them.
        assert!(q.readv(&f, 0, vec![span(&src, 8000, 512)], 3).is_err());
        assert!(q.readv(&f, 0, vec![], 4).is_err());
        assert_eq!(q.in_flight(), 0);
        std::fs::remove_file(&path).unwrap();
    }

    /// A non-blocking pipe: (read end, write end).
    fn pipe() -> (Arc<File>, Arc<File>) {
        use std::os::fd::FromRawFd;
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        assert_eq!(
            unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK) },
            0
        );
        // SAFETY: both descriptors are fresh and owned by nobody else.
        unsafe {
            (
                Arc::new(File::from_raw_fd(fds[0])),
                Arc::new(File::from_raw_fd(fds[1])),
            )
        }
    }

    #[test]
    fn a_poll_linked_to_a_read_waits_for_data_and_is_cancelled_on_drop() {
        let Ok(mut q) = IoQueue::new(8) else {
            eprintln!("io_uring unavailable here; skipping");
            return;
        };
        let (r, w) = pipe();
        q.poll_read(&r, IoBuf::new(64), 7).unwrap();
        assert_eq!(q.in_flight(), 0, "descriptor operations are not disk I/O");
        // Nothing to read: the wait times out with nothing completed (the read did not
        // run early and fail with EAGAIN).
        q.wait_for(2, Duration::from_millis(50)).unwrap();
        let mut done = vec![];
        q.complete(&mut done);
        assert!(done.is_empty(), "{done:?}");
        // Data through the ring too: the write completes, then the poll and its read.
        let mut four = IoBuf::new(8);
        four.copy_from_slice(&[1, 0, 0, 0, 2, 0, 0, 0]);
        q.write_aux(&w, four, 8).unwrap();
        while done.len() < 2 {
            q.wait_for(3, Duration::from_secs(5)).unwrap();
            q.complete(&mut done);
        }
        done.sort_by_key(|c| c.tag);
        assert_eq!(done.len(), 2, "the poll's own completion is not reported");
        assert_eq!(done[0].tag, 7);
        assert_eq!(done[0].result.as_ref().unwrap(), &8);
        assert_eq!(
            &done[0].buf.as_ref().unwrap()[..8],
            &[1, 0, 0, 0, 2, 0, 0, 0]
        );
        assert_eq!(done[1].tag, 8);
        assert_eq!(done[1].result.as_ref().unwrap(), &8);
        drop(q);
        // Armed with nothing coming: dropping the queue cancels the poll instead of
        // waiting for it forever (on its own thread: a ring has a single issuer).
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut q = IoQueue::new(8).unwrap();
            q.poll_read(&r, IoBuf::new(64), 9).unwrap();
            q.submit().unwrap();
            q.wait_for(2, Duration::from_millis(20)).unwrap();
            drop(q);
            let _ = tx.send(());
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("drop returned (the armed poll was cancelled)");
    }
}

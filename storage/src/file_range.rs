//! Reading a byte range of a local file into the reader's own buffer.
//!
//! object_store hands a local object over as an open file; reading it is ours. Two costs
//! matter for a map run, which reads every byte of its input twice (the plan, then the units):
//! copies, and hand-overs to the blocking pool. So:
//! * bytes go straight into the caller's buffer (`pread` into its reserved room, one call per
//!   chunk), not into a chunk that the reader then copies;
//! * bytes already in memory (the page cache, tmpfs) are read on the calling thread: a read
//!   that would wait for the disk is refused by the kernel (`RWF_NOWAIT`) and only that one
//!   goes to the blocking pool. A hand-over there and back wakes two threads, for a copy that
//!   takes tens of microseconds; a runtime thread must never wait for a disk, though.

use std::fs::File;
use std::ops::Range;
use std::os::fd::AsRawFd;

use crate::error::{Result, StorageError};
use crate::ObjectRef;

/// Bytes read at a time (object_store's own file stream reads 8 KiB at a time).
pub(crate) const FILE_CHUNK: u64 = 1 << 20;

/// A byte range of a local file, read [`FILE_CHUNK`] at a time.
pub(crate) struct FileRange {
    /// `None` once a read on the blocking pool failed (the file went with it).
    file: Option<File>,
    position: u64,
    end: u64,
    object: ObjectRef,
    reads: InlineReads,
}

/// Whether a file's bytes can be read on the calling thread, as its first read found out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InlineReads {
    /// Not known yet.
    Probe,
    /// The file system refuses a read that would block (`RWF_NOWAIT`): ext4, xfs, btrfs.
    WhenCached,
    /// tmpfs, which has no `RWF_NOWAIT` and never waits for a disk.
    Always,
    /// Neither: every read goes to the blocking pool.
    Never,
}

impl FileRange {
    pub(crate) fn new(file: File, range: Range<u64>, object: ObjectRef) -> FileRange {
        FileRange { file: Some(file), position: range.start, end: range.end, object, reads: InlineReads::Probe }
    }

    /// Appends the next chunk of the range to `buf`; returns its length, 0 at the end of the
    /// range or of the file. Not cancel-safe: a read dropped while on the blocking pool loses
    /// the file (and `buf`'s bytes), and every later read fails.
    pub(crate) async fn read_into(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        let Some(file) = self.file.take() else {
            return Err(read_error(&self.object, "an earlier read of this range failed".to_string()));
        };
        if self.position >= self.end {
            self.file = Some(file);
            return Ok(0);
        }
        let len = (self.end - self.position).min(FILE_CHUNK);
        let before = buf.len();
        let inline = match read_now(&file, self.position, len as usize, buf, &mut self.reads) {
            Ok(inline) => inline,
            Err(e) => {
                self.file = Some(file);
                return Err(read_error(&self.object, e.to_string()));
            }
        };
        let file = match inline {
            Some(_) => file,
            None => {
                let (file, filled) = read_file(file, self.position, len, std::mem::take(buf), &self.object).await?;
                *buf = filled;
                file
            }
        };
        let read = buf.len() - before;
        self.position += read as u64;
        self.file = Some(file);
        Ok(read)
    }
}

/// Reads what of `len` bytes at `position` is in memory, on this thread, into `buf`'s room;
/// `None` when the read must go to the blocking pool.
#[cfg(target_os = "linux")]
fn read_now(
    file: &File,
    position: u64,
    len: usize,
    buf: &mut Vec<u8>,
    reads: &mut InlineReads,
) -> std::io::Result<Option<usize>> {
    buf.reserve(len);
    loop {
        match *reads {
            InlineReads::Never => return Ok(None),
            InlineReads::Always => {
                let before = buf.len();
                pread_append(file, position, len, buf)?;
                return Ok(Some(buf.len() - before));
            }
            InlineReads::Probe | InlineReads::WhenCached => {
                let room = &mut buf.spare_capacity_mut()[..len];
                let iov = libc::iovec { iov_base: room.as_mut_ptr().cast(), iov_len: room.len() };
                let offset = file_offset(position)?;
                // SAFETY: `iov` describes `room`, allocated memory that `preadv2` may write.
                let read = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, offset, libc::RWF_NOWAIT) };
                // 0 is the end of the file, which the pool's read confirms (the kernel may
                // answer so when nothing is cached).
                if read == 0 {
                    return Ok(None);
                }
                if read > 0 {
                    *reads = InlineReads::WhenCached;
                    // SAFETY: `preadv2` initialised the first `read` bytes of `room`.
                    unsafe { buf.set_len(buf.len() + read as usize) };
                    return Ok(Some(read as usize));
                }
                let error = std::io::Error::last_os_error();
                match error.raw_os_error() {
                    Some(libc::EINTR) => {}
                    // Not in memory (or the file is locked): the pool waits for it.
                    Some(libc::EAGAIN) => return Ok(None),
                    Some(libc::EOPNOTSUPP) if *reads == InlineReads::Probe => {
                        *reads = if on_tmpfs(file) { InlineReads::Always } else { InlineReads::Never };
                    }
                    _ if *reads == InlineReads::Probe => *reads = InlineReads::Never,
                    _ => return Err(error),
                }
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn read_now(_: &File, _: u64, _: usize, _: &mut Vec<u8>, _: &mut InlineReads) -> std::io::Result<Option<usize>> {
    Ok(None)
}

#[cfg(target_os = "linux")]
fn on_tmpfs(file: &File) -> bool {
    // SAFETY: `statfs` is plain data that `fstatfs` fills.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `stat` is a valid `statfs` to write.
    let done = unsafe { libc::fstatfs(file.as_raw_fd(), &mut stat) } == 0;
    done && stat.f_type == libc::TMPFS_MAGIC
}

fn file_offset(position: u64) -> std::io::Result<libc::off_t> {
    libc::off_t::try_from(position)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "file offset out of range"))
}

fn read_error(object: &ObjectRef, message: String) -> StorageError {
    StorageError::Read {
        object: object.to_string(),
        source: object_store::Error::Generic { store: "LocalFileSystem", source: message.into() },
    }
}

/// Appends up to `len` bytes of `file` from `position` to `buf` (fewer at the end of the
/// file), read on the blocking pool; hands the file and the buffer back.
///
/// The room for them is reserved here, on the runtime's thread, where the buffer's reader
/// frees it: one allocated on a blocking-pool thread and freed on another went back to
/// mimalloc late (the blocking threads come and go), and a map run's peak RSS grew with its
/// length (orders pass, 10M rows: 143-165 MB before, about 110-125 MB since). Nor is it
/// zeroed first: `pread` fills the reserved room directly, in one call for a whole chunk
/// (`read_to_end` would start at 8 KiB and double).
pub(crate) async fn read_file(
    file: File,
    position: u64,
    len: u64,
    mut buf: Vec<u8>,
    object: &ObjectRef,
) -> Result<(File, Vec<u8>)> {
    let len = usize::try_from(len).map_err(|_| read_error(object, format!("cannot read {len} bytes at once")))?;
    buf.reserve(len);
    let read = tokio::task::spawn_blocking(move || -> std::io::Result<(File, Vec<u8>)> {
        pread_append(&file, position, len, &mut buf)?;
        Ok((file, buf))
    })
    .await;
    match read {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(e)) => Err(read_error(object, e.to_string())),
        Err(e) => Err(read_error(object, e.to_string())),
    }
}

/// Appends up to `len` bytes of `file` from `position` to `buf`, within its spare capacity
/// (at least `len`); stops early at the end of the file.
fn pread_append(file: &File, mut position: u64, len: usize, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let target = buf.len() + len;
    assert!(buf.capacity() >= target, "pread_append needs its room reserved");
    while buf.len() < target {
        let wanted = target - buf.len();
        let room = &mut buf.spare_capacity_mut()[..wanted];
        let offset = file_offset(position)?;
        // SAFETY: `room` is allocated memory of `room.len()` bytes that `pread` may write.
        let read = unsafe { libc::pread(file.as_raw_fd(), room.as_mut_ptr().cast(), room.len(), offset) };
        if read < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        if read == 0 {
            break;
        }
        // SAFETY: `pread` initialised the first `read` bytes of `room` (at most its length).
        unsafe { buf.set_len(buf.len() + read as usize) };
        position += read as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use bytes::Bytes;

    use super::*;
    use crate::store::ByteSource;

    fn content() -> Vec<u8> {
        (0..(2 * FILE_CHUNK + 12_345)).map(|i| (i % 251) as u8).collect()
    }

    /// A range of `file` read in chunks, as chunks and into a buffer; the inline-read modes the
    /// file's reads found (its file system decides: a disk's page cache, tmpfs).
    async fn reads_the_range(file: File, content: &[u8]) -> Vec<InlineReads> {
        let object = ObjectRef::new("bucket", "key");
        let range = 1_000..(content.len() as u64 - 10);
        let file_range = |range: Range<u64>| FileRange::new(file.try_clone().unwrap(), range, object.clone());
        let mut source = ByteSource::File(file_range(range.clone()));
        let mut chunks = Vec::new();
        while let Some(chunk) = source.next_chunk().await {
            chunks.push(chunk.unwrap());
        }
        assert_eq!(chunks.concat(), &content[1_000..content.len() - 10]);
        assert!(chunks.iter().all(|c| c.len() as u64 <= FILE_CHUNK), "{:?}", chunks.iter().map(Bytes::len));

        // Read into a buffer, after what it holds.
        let mut into = file_range(range.clone());
        let mut buf = b"kept".to_vec();
        while into.read_into(&mut buf).await.unwrap() > 0 {}
        assert_eq!(&buf[..4], b"kept");
        assert_eq!(&buf[4..], &content[1_000..content.len() - 10]);

        // A range past the end of the file ends where the file does.
        let mut past = file_range(5..10 * FILE_CHUNK);
        let mut whole = b"x".to_vec();
        while past.read_into(&mut whole).await.unwrap() > 0 {}
        assert_eq!(whole[0], b'x');
        assert_eq!(&whole[1..], &content[5..]);
        let (_, pooled) = read_file(file, 5, 10 * FILE_CHUNK, b"x".to_vec(), &object).await.unwrap();
        assert_eq!(pooled, whole);
        vec![into.reads, past.reads]
    }

    #[tokio::test]
    async fn a_local_file_range_reads_in_chunks_and_whole() {
        let content = content();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&content).unwrap();
        // Out of the page cache (where the file system lets it go), so that reads that
        // would wait for the disk go to the blocking pool and give the same bytes.
        file.sync_all().unwrap();
        #[cfg(target_os = "linux")]
        // SAFETY: a hint about an open file's cached pages.
        unsafe {
            libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
        }
        reads_the_range(file, &content).await;
    }

    /// On tmpfs (where there is one), every read is made on the calling thread.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_file_on_tmpfs_is_read_in_place() {
        let Ok(dir) = tempfile::tempdir_in("/dev/shm") else { return };
        let content = content();
        let mut file = tempfile::tempfile_in(dir.path()).unwrap();
        file.write_all(&content).unwrap();
        if !on_tmpfs(&file) {
            return;
        }
        assert_eq!(reads_the_range(file, &content).await, [InlineReads::Always, InlineReads::Always]);
    }
}

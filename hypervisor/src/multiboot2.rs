//! Multiboot2 boot information (GRUB's `multiboot2` / `module2`), parsed from a copy in a
//! byte slice: every tag's size and every field's offset is checked against the slice and
//! the info's `total_size`, so hostile sizes give an error, never a read out of bounds.
//! Only `core`: this file is also compiled into a host test (xtask).

/// EAX at the multiboot2 entry.
pub const MAGIC: u32 = 0x36d7_6289;

pub const TAG_END: u32 = 0;
pub const TAG_CMDLINE: u32 = 1;
pub const TAG_MODULE: u32 = 3;
pub const TAG_BASIC_MEMINFO: u32 = 4;
pub const TAG_MMAP: u32 = 6;
pub const TAG_ACPI_OLD: u32 = 14;
pub const TAG_ACPI_NEW: u32 = 15;

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Error {
    /// Shorter than its 8-byte header, or `total_size` beyond what was copied.
    TotalSize(u32),
    /// A tag at this offset whose size is below 8 or runs past the end.
    TagSize(usize),
    /// A tag at this offset too short for its fields.
    TagTooShort(usize),
    /// A memory map whose entries are smaller than 24 bytes.
    MmapEntrySize(u32),
    /// No end tag before `total_size`.
    NoEndTag,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::TotalSize(n) => write!(f, "total_size {n} out of bounds"),
            Error::TagSize(o) => write!(f, "tag at offset {o}: bad size"),
            Error::TagTooShort(o) => write!(f, "tag at offset {o}: too short for its fields"),
            Error::MmapEntrySize(n) => write!(f, "memory map entry size {n} < 24"),
            Error::NoEndTag => write!(f, "no end tag"),
        }
    }
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(off..off.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// A NUL-terminated string in `b` (to the end when unterminated); `?` when not UTF-8.
fn c_str(b: &[u8]) -> &str {
    let n = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    core::str::from_utf8(&b[..n]).unwrap_or("?")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag<'a> {
    pub ty: u32,
    /// The tag's bytes after its 8-byte header (its declared size less 8).
    pub body: &'a [u8],
    pub offset: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Module<'a> {
    pub start: u32,
    pub end: u32,
    pub cmdline: &'a str,
}

#[derive(Debug, Clone, Copy)]
pub struct Info<'a> {
    bytes: &'a [u8],
}

impl<'a> Info<'a> {
    /// Checks the header and that the tags are well formed up to the end tag.
    pub fn parse(copy: &'a [u8]) -> Result<Self, Error> {
        let total = u32_at(copy, 0).ok_or(Error::TotalSize(0))?;
        if total < 8 || total as usize > copy.len() {
            return Err(Error::TotalSize(total));
        }
        let info = Info {
            bytes: &copy[..total as usize],
        };
        let mut end = false;
        for t in info.raw_tags() {
            let t = t?;
            match t.ty {
                TAG_END => end = true,
                TAG_MODULE if t.body.len() < 8 => return Err(Error::TagTooShort(t.offset)),
                TAG_BASIC_MEMINFO if t.body.len() < 8 => return Err(Error::TagTooShort(t.offset)),
                TAG_MMAP => {
                    let size = u32_at(t.body, 0).ok_or(Error::TagTooShort(t.offset))?;
                    if t.body.len() < 8 {
                        return Err(Error::TagTooShort(t.offset));
                    }
                    if size < 24 {
                        return Err(Error::MmapEntrySize(size));
                    }
                }
                TAG_ACPI_OLD if t.body.len() < 20 => return Err(Error::TagTooShort(t.offset)),
                TAG_ACPI_NEW if t.body.len() < 36 => return Err(Error::TagTooShort(t.offset)),
                _ => {}
            }
        }
        if !end {
            return Err(Error::NoEndTag);
        }
        Ok(info)
    }

    pub fn total_size(&self) -> usize {
        self.bytes.len()
    }

    /// Tags from offset 8, each 8-aligned, up to (not including) the end tag.
    fn raw_tags(&self) -> impl Iterator<Item = Result<Tag<'a>, Error>> + 'a {
        let b = self.bytes;
        let mut off = 8usize;
        let mut done = false;
        core::iter::from_fn(move || {
            if done || off >= b.len() {
                return None;
            }
            let (Some(ty), Some(size)) = (u32_at(b, off), u32_at(b, off + 4)) else {
                done = true;
                return Some(Err(Error::TagSize(off)));
            };
            let size = size as usize;
            let Some(end) = off.checked_add(size).filter(|&e| size >= 8 && e <= b.len()) else {
                done = true;
                return Some(Err(Error::TagSize(off)));
            };
            let tag = Tag {
                ty,
                body: &b[off + 8..end],
                offset: off,
            };
            if ty == TAG_END {
                done = true;
            }
            off = (end + 7) & !7;
            Some(Ok(tag))
        })
    }

    /// The tags (the info was checked by `parse`), the end tag excluded.
    pub fn tags(&self) -> impl Iterator<Item = Tag<'a>> + 'a {
        self.raw_tags()
            .map_while(|t| t.ok())
            .take_while(|t| t.ty != TAG_END)
    }

    pub fn cmdline(&self) -> Option<&'a str> {
        self.tags()
            .find(|t| t.ty == TAG_CMDLINE)
            .map(|t| c_str(t.body))
    }

    pub fn modules(&self) -> impl Iterator<Item = Module<'a>> + 'a {
        self.tags().filter(|t| t.ty == TAG_MODULE).map(|t| Module {
            start: u32_at(t.body, 0).unwrap_or(0),
            end: u32_at(t.body, 4).unwrap_or(0),
            cmdline: c_str(&t.body[8..]),
        })
    }

    /// Whether there is a memory map tag.
    pub fn has_mmap(&self) -> bool {
        self.tags().any(|t| t.ty == TAG_MMAP)
    }

    /// `f(base, len, type)` per memory-map entry (type 1 usable, 3 ACPI reclaimable, 4 NVS,
    /// 5 bad); without a map, the basic meminfo's upper memory as usable.
    pub fn for_each_entry(&self, mut f: impl FnMut(u64, u64, u32)) {
        if let Some(t) = self.tags().find(|t| t.ty == TAG_MMAP) {
            let size = u32_at(t.body, 0).unwrap_or(24).max(24) as usize;
            let entries = t.body.get(8..).unwrap_or(&[]);
            for e in entries.chunks_exact(size) {
                if let (Some(base), Some(len), Some(ty)) =
                    (u64_at(e, 0), u64_at(e, 8), u32_at(e, 16))
                {
                    f(base, len, ty);
                }
            }
        } else if let Some(t) = self.tags().find(|t| t.ty == TAG_BASIC_MEMINFO) {
            f(0x10_0000, u32_at(t.body, 4).unwrap_or(0) as u64 * 1024, 1);
        }
    }

    /// The RSDP copy from tag 15 (ACPI 2.0+: 36 bytes) or else tag 14 (20 bytes).
    pub fn rsdp(&self) -> Option<&'a [u8]> {
        let find = |ty, n: usize| {
            self.tags()
                .find(|t| t.ty == ty)
                .and_then(|t| t.body.get(..n))
        };
        find(TAG_ACPI_NEW, 36).or_else(|| find(TAG_ACPI_OLD, 20))
    }
}

//! Moving a request's data between the guest's pages and a local buffer: through
//! persistent mappings where both ends agreed (read-only ones only for reading), by
//! grant copy for the rest.

use crate::persistent::Access;
use crate::ring_server::Queue;
use sluice_abi::blkif::{BlkifRequestSegment, BlkifRsp};
use sluice_dom0::{warn_limited, CopyPtr, CopySegment, EventChannels, GrantMapper};

impl<G: GrantMapper, E: EventChannels> Queue<'_, G, E> {
    /// Moves the data of `copies`: through persistent mappings where they are on and
    /// the reference maps (writable), by grant copy for the rest.
    pub(crate) fn transfer(&self, copies: Vec<CopySegment<'_>>) -> Result<(), BlkifRsp> {
        let Some(cache) = &self.persistent else {
            let mut copies = copies;
            return self.copy(&mut copies);
        };
        let mut rest = Vec::new();
        for mut c in copies {
            let at = c.offset as usize;
            let access = match c.local {
                CopyPtr::ToGuest(_) => Access::Write,
                CopyPtr::FromGuest(_) => Access::Read,
            };
            let moved = cache.with_page(self.grants, c.gref, access, |page| match &mut c.local {
                CopyPtr::ToGuest(b) => page.write_bytes(at, b).is_ok(),
                CopyPtr::FromGuest(b) => page.read_bytes(at, b).is_ok(),
            });
            match moved {
                Ok(true) => {}
                Ok(false) => {
                    warn_limited!(
                        self.log,
                        "bad segment",
                        "{}: gref {}: offset {at} + {} bytes crosses the page",
                        self.name,
                        c.gref,
                        c.local.len()
                    );
                    return Err(BlkifRsp::Error);
                }
                Err(e) => {
                    tracing::debug!("{}: not mapping persistently: {e}", self.name);
                    rest.push(c);
                }
            }
        }
        if rest.is_empty() {
            return Ok(());
        }
        self.copy(&mut rest)
    }

    fn copy(&self, copies: &mut [CopySegment<'_>]) -> Result<(), BlkifRsp> {
        self.grants.copy(copies).map_err(|e| {
            warn_limited!(self.log, "grant copy", "{}: grant copy: {e}", self.name);
            BlkifRsp::Error
        })?;
        if let Some(bad) = copies.iter().find(|c| c.status != 0) {
            warn_limited!(
                self.log,
                "grant copy",
                "{}: grant copy of gref {} failed with status {}",
                self.name,
                bad.gref,
                bad.status
            );
            return Err(BlkifRsp::Error);
        }
        Ok(())
    }

    /// One copy segment per request segment, over consecutive parts of `buf`.
    pub(crate) fn copies<'b>(
        &self,
        segs: &[BlkifRequestSegment],
        buf: &'b mut [u8],
        to_guest: bool,
    ) -> Vec<CopySegment<'b>> {
        let mut out = Vec::with_capacity(segs.len());
        let mut rest = buf;
        for s in segs {
            let (chunk, tail) = std::mem::take(&mut rest).split_at_mut(s.byte_len());
            rest = tail;
            out.push(CopySegment {
                local: if to_guest {
                    CopyPtr::ToGuest(chunk)
                } else {
                    CopyPtr::FromGuest(chunk)
                },
                domid: self.domid,
                gref: s.gref.0,
                offset: s.byte_offset() as u16,
                status: 0,
            });
        }
        out
    }
}

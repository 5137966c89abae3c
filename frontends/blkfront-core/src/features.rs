//! What the backend offers (its xenstore nodes) and what the frontend chose.

use crate::error::NegotiationError;
use crate::platform::XenStore;
use alloc::format;
use alloc::string::String;
use sluice_abi::blkif::{
    keys, VdiskInfo, BLKIF_MAX_INDIRECT_SEGMENTS, BLKIF_MAX_SEGMENTS_PER_REQUEST,
    SEGMENTS_PER_INDIRECT_PAGE,
};

/// How the backend is asked to make writes durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushKind {
    /// `BLKIF_OP_FLUSH_DISKCACHE` (`feature-flush-cache`).
    FlushDiskcache,
    /// `BLKIF_OP_WRITE_BARRIER` (`feature-barrier`), the older protocol.
    WriteBarrier,
}

/// Discard support (`feature-discard` and its parameters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiscardInfo {
    /// `discard-granularity` in bytes (0: not given).
    pub granularity: u32,
    /// `discard-alignment` in bytes.
    pub alignment: u32,
    /// `discard-secure`: secure erase is offered.
    pub secure: bool,
}

/// What the backend advertises before the frontend connects (state InitWait).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingLimits {
    /// `multi-queue-max-queues` (1 when absent).
    pub max_queues: u32,
    /// `max-ring-page-order` (0 when absent).
    pub max_ring_page_order: u32,
}

/// The disk and the features the backend offers once it is Connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskInfo {
    /// Size in 512-byte sectors (`sectors`).
    pub sectors: u64,
    /// Logical block size (`sector-size`).
    pub sector_size: u32,
    /// Physical block size (`physical-sector-size`, else the logical one).
    pub physical_sector_size: u32,
    /// `info`: read-only, removable, CD-ROM.
    pub info: VdiskInfo,
    /// Cache flush, if any.
    pub flush: Option<FlushKind>,
    /// Discard, if offered.
    pub discard: Option<DiscardInfo>,
    /// The backend offers persistent grants (`feature-persistent`).
    pub persistent: bool,
    /// `feature-max-indirect-segments` (0: none).
    pub max_indirect_segments: u32,
}

/// Limits the frontend driver sets (module parameters in Linux).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrontendConfig {
    /// Most queues to use (blk-mq hardware queues).
    pub max_queues: u32,
    /// Largest ring to use, as a page order.
    pub max_ring_page_order: u32,
    /// Most segments per indirect request (0: never use indirect requests).
    pub max_indirect_segments: u32,
    /// Use persistent grants when the backend offers them.
    pub persistent: bool,
    /// Most pages (data + indirect) in flight per ring with persistent grants: each
    /// ring's pool of persistently granted pages never grows past it, so the backend's
    /// per-ring cache of persistent grants never has to evict (Linux blkback's
    /// `max_persistent_grants` and sluice-blkback's `PERSISTENT_GRANTS_PER_QUEUE`: 1056).
    pub persistent_pages_per_ring: usize,
    /// Most pages in flight per ring without persistent grants (each granted and
    /// mapped per request; bounds the grant-table entries and bounce memory a ring
    /// holds).
    pub pages_per_ring: usize,
}

/// Linux blkback's default persistent grants per ring (`xen_blkif_max_pgrants`), also
/// sluice-blkback's: 32 requests x (32 segments + 1 indirect page).
pub const DEFAULT_PERSISTENT_PAGES_PER_RING: usize = 1056;

/// Without persistent grants: eight 1 MiB requests (256 segments + 1 indirect page)
/// per ring; 8 rings x 2056 = 16448 grants, half of a default (64-frame) grant table.
pub const DEFAULT_PAGES_PER_RING: usize = 8 * 257;

impl Default for FrontendConfig {
    /// Linux blkfront's defaults: 4 queues, ring order 4, 32 indirect segments; the
    /// page budgets above.
    fn default() -> Self {
        FrontendConfig {
            max_queues: 4,
            max_ring_page_order: 4,
            max_indirect_segments: 32,
            persistent: true,
            persistent_pages_per_ring: DEFAULT_PERSISTENT_PAGES_PER_RING,
            pages_per_ring: DEFAULT_PAGES_PER_RING,
        }
    }
}

/// Largest ring the frontend ever asks for: 2^4 pages (`XENBUS_MAX_RING_GRANT_ORDER`).
pub const MAX_RING_PAGE_ORDER: u32 = 4;

/// Reads an optional unsigned node: `default` when absent, an error when malformed.
pub(crate) fn read_u64<P: XenStore + ?Sized>(
    p: &mut P,
    dir: &str,
    key: &'static str,
    default: Option<u64>,
) -> Result<u64, NegotiationError> {
    let path = format!("{dir}/{key}");
    match p.read_opt(&path).map_err(NegotiationError::Platform)? {
        None => default.ok_or(NegotiationError::MissingNode { key }),
        Some(v) => parse_u64(v.trim_end_matches('\0')).ok_or(NegotiationError::BadNode {
            key,
            value: truncate(v),
        }),
    }
}

fn truncate(mut v: String) -> String {
    if v.len() > 32 {
        let mut cut = 32;
        while !v.is_char_boundary(cut) {
            cut -= 1;
        }
        v.truncate(cut);
    }
    v
}

/// Decimal, as xenstore holds numbers; no sign, no spaces.
fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn read_u32<P: XenStore + ?Sized>(
    p: &mut P,
    dir: &str,
    key: &'static str,
    default: Option<u32>,
) -> Result<u32, NegotiationError> {
    let v = read_u64(p, dir, key, default.map(u64::from))?;
    u32::try_from(v).map_err(|_| NegotiationError::BadNode {
        key,
        value: format!("{v}"),
    })
}

fn read_bool<P: XenStore + ?Sized>(
    p: &mut P,
    dir: &str,
    key: &'static str,
) -> Result<bool, NegotiationError> {
    Ok(read_u64(p, dir, key, Some(0))? != 0)
}

impl RingLimits {
    /// Reads them from the backend directory.
    pub fn read<P: XenStore + ?Sized>(p: &mut P, backend: &str) -> Result<Self, NegotiationError> {
        Ok(RingLimits {
            max_queues: read_u32(p, backend, keys::MULTI_QUEUE_MAX_QUEUES, Some(1))?.max(1),
            max_ring_page_order: read_u32(p, backend, keys::MAX_RING_PAGE_ORDER, Some(0))?,
        })
    }
}

impl DiskInfo {
    /// Reads them from the backend directory; `sectors`, `info` and `sector-size` are
    /// required, as in Linux's blkfront.
    pub fn read<P: XenStore + ?Sized>(p: &mut P, backend: &str) -> Result<Self, NegotiationError> {
        let sectors = read_u64(p, backend, keys::SECTORS, None)?;
        let info_raw = read_u32(p, backend, keys::INFO, None)?;
        let sector_size = read_u32(p, backend, keys::SECTOR_SIZE, None)?;
        if sector_size < 512 || !sector_size.is_power_of_two() || sector_size > 4096 {
            return Err(NegotiationError::BadNode {
                key: keys::SECTOR_SIZE,
                value: format!("{sector_size}"),
            });
        }
        let physical_sector_size =
            read_u32(p, backend, keys::PHYSICAL_SECTOR_SIZE, Some(sector_size))?;
        let flush = if read_bool(p, backend, keys::FEATURE_FLUSH_CACHE)? {
            Some(FlushKind::FlushDiskcache)
        } else if read_bool(p, backend, keys::FEATURE_BARRIER)? {
            Some(FlushKind::WriteBarrier)
        } else {
            None
        };
        let discard = if read_bool(p, backend, keys::FEATURE_DISCARD)? {
            Some(DiscardInfo {
                granularity: read_u32(p, backend, keys::DISCARD_GRANULARITY, Some(0))?,
                alignment: read_u32(p, backend, keys::DISCARD_ALIGNMENT, Some(0))?,
                secure: read_bool(p, backend, keys::DISCARD_SECURE)?,
            })
        } else {
            None
        };
        Ok(DiskInfo {
            sectors,
            sector_size,
            physical_sector_size,
            info: VdiskInfo::from_bits_retain(info_raw),
            flush,
            discard,
            persistent: read_bool(p, backend, keys::FEATURE_PERSISTENT)?,
            max_indirect_segments: read_u32(
                p,
                backend,
                keys::FEATURE_MAX_INDIRECT_SEGMENTS,
                Some(0),
            )?,
        })
    }

    /// Segments one request may carry given the frontend's limit: indirect requests
    /// when both sides allow more than a direct request holds.
    pub fn max_segments(&self, config: &FrontendConfig) -> usize {
        let indirect = self
            .max_indirect_segments
            .min(config.max_indirect_segments)
            .min(BLKIF_MAX_INDIRECT_SEGMENTS as u32) as usize;
        indirect.max(BLKIF_MAX_SEGMENTS_PER_REQUEST)
    }
}

/// Pages one read or write of `segments` segments holds while in flight: a bounce page
/// per segment, plus its indirect pages when it does not fit in a ring slot.
pub fn request_pages(segments: usize) -> usize {
    if segments <= BLKIF_MAX_SEGMENTS_PER_REQUEST {
        segments
    } else {
        segments + segments.div_ceil(SEGMENTS_PER_INDIRECT_PAGE)
    }
}

/// The per-ring page budget (at least a direct request's 11 pages, so a flush with
/// data always fits) and the segments per request that fit in it whole: a request is
/// never bigger than the budget, so one always goes when its ring has nothing in flight.
pub fn budget_and_segments(budget: usize, max_segments: usize) -> (usize, usize) {
    let budget = budget.max(BLKIF_MAX_SEGMENTS_PER_REQUEST);
    let mut segs = max_segments.max(BLKIF_MAX_SEGMENTS_PER_REQUEST);
    while request_pages(segs) > budget {
        segs -= 1;
    }
    (budget, segs)
}

#[cfg(test)]
mod tests {
    use super::{budget_and_segments, parse_u64, request_pages};

    #[test]
    fn pages_and_budgets() {
        assert_eq!(request_pages(0), 0);
        assert_eq!(request_pages(11), 11);
        assert_eq!(request_pages(12), 13);
        assert_eq!(request_pages(256), 257);
        assert_eq!(request_pages(512), 513);
        assert_eq!(request_pages(513), 515);
        // Defaults never limit 256 segments.
        assert_eq!(budget_and_segments(1056, 256), (1056, 256));
        assert_eq!(budget_and_segments(2056, 256), (2056, 256));
        // A small budget limits the request so it fits whole.
        assert_eq!(budget_and_segments(100, 256), (100, 99));
        assert_eq!(budget_and_segments(0, 256), (11, 11));
        assert_eq!(budget_and_segments(12, 256), (12, 11));
        assert_eq!(budget_and_segments(13, 256), (13, 12));
    }

    #[test]
    fn decimal_only() {
        assert_eq!(parse_u64("4096"), Some(4096));
        assert_eq!(parse_u64(""), None);
        assert_eq!(parse_u64("-1"), None);
        assert_eq!(parse_u64(" 1"), None);
        assert_eq!(parse_u64("0x10"), None);
        assert_eq!(parse_u64("99999999999999999999999"), None);
    }
}

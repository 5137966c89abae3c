//! xenstore keys of the blkif protocol (the header's "Feature and Parameter
//! Negotiation" section).

/// Backend: maximum `ring-page-order` it supports.
pub const MAX_RING_PAGE_ORDER: &str = "max-ring-page-order";
/// Backend (legacy): maximum ring pages.
pub const MAX_RING_PAGES: &str = "max-ring-pages";
/// Frontend: ring pages used, as log2.
pub const RING_PAGE_ORDER: &str = "ring-page-order";
/// Frontend (legacy): ring pages used.
pub const NUM_RING_PAGES: &str = "num-ring-pages";
/// Frontend: grant of a one-page ring.
pub const RING_REF: &str = "ring-ref";
/// Frontend: grants of a multi-page ring are `ring-ref0`, `ring-ref1`, ...
pub const RING_REF_PREFIX: &str = "ring-ref";
/// Frontend: event channel.
pub const EVENT_CHANNEL: &str = "event-channel";
/// Frontend: request ABI ([`super::protocols`]).
pub const PROTOCOL: &str = "protocol";
/// Backend: maximum queues; frontend: `multi-queue-num-queues`.
pub const MULTI_QUEUE_MAX_QUEUES: &str = "multi-queue-max-queues";
/// Frontend: queues in use (each under `queue-N/`).
pub const MULTI_QUEUE_NUM_QUEUES: &str = "multi-queue-num-queues";
/// Backend: `BLKIF_OP_FLUSH_DISKCACHE` supported.
pub const FEATURE_FLUSH_CACHE: &str = "feature-flush-cache";
/// Backend: `BLKIF_OP_WRITE_BARRIER` supported.
pub const FEATURE_BARRIER: &str = "feature-barrier";
/// Backend: `BLKIF_OP_DISCARD` supported.
pub const FEATURE_DISCARD: &str = "feature-discard";
/// Backend: discard granularity in bytes.
pub const DISCARD_GRANULARITY: &str = "discard-granularity";
/// Backend: discard alignment in bytes.
pub const DISCARD_ALIGNMENT: &str = "discard-alignment";
/// Backend: `BLKIF_DISCARD_SECURE` honoured.
pub const DISCARD_SECURE: &str = "discard-secure";
/// Backend: `BLKIF_OP_INDIRECT` with at most this many segments.
pub const FEATURE_MAX_INDIRECT_SEGMENTS: &str = "feature-max-indirect-segments";
/// Both: persistent grants.
pub const FEATURE_PERSISTENT: &str = "feature-persistent";
/// Frontend: understands `sector-size` units (never set by this stack).
pub const FEATURE_LARGE_SECTOR_SIZE: &str = "feature-large-sector-size";
/// Backend: disk size in 512-byte sectors.
pub const SECTORS: &str = "sectors";
/// Backend: logical sector size in bytes.
pub const SECTOR_SIZE: &str = "sector-size";
/// Backend: physical sector size in bytes.
pub const PHYSICAL_SECTOR_SIZE: &str = "physical-sector-size";
/// Backend: [`super::VdiskInfo`] bits.
pub const INFO: &str = "info";
/// Backend: `r` or `w`.
pub const MODE: &str = "mode";
/// Backend: the backing path.
pub const PARAMS: &str = "params";
/// Backend: backing type (`file`, `phy`, ...).
pub const TYPE: &str = "type";
/// Frontend: `disk` or `cdrom`.
pub const DEVICE_TYPE: &str = "device-type";
/// Frontend: virtual device number.
pub const VIRTUAL_DEVICE: &str = "virtual-device";
/// Backend: `major:minor` of the backing device.
pub const PHYSICAL_DEVICE: &str = "physical-device";
/// Backend: path of the backing device.
pub const PHYSICAL_DEVICE_PATH: &str = "physical-device-path";
/// Frontend: the backend may trust this frontend's data.
pub const TRUSTED: &str = "trusted";

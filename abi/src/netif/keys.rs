//! xenstore keys of the netif protocol (see the header's "Feature and Parameter
//! Negotiation" section).

/// Backend/frontend: TX ring grant (`tx-ring-ref`).
pub const TX_RING_REF: &str = "tx-ring-ref";
/// RX ring grant (`rx-ring-ref`).
pub const RX_RING_REF: &str = "rx-ring-ref";
/// Control ring grant (`ctrl-ring-ref`).
pub const CTRL_RING_REF: &str = "ctrl-ring-ref";
/// Single event channel (`event-channel`).
pub const EVENT_CHANNEL: &str = "event-channel";
/// Split TX event channel (`event-channel-tx`).
pub const EVENT_CHANNEL_TX: &str = "event-channel-tx";
/// Split RX event channel (`event-channel-rx`).
pub const EVENT_CHANNEL_RX: &str = "event-channel-rx";
/// Control ring event channel (`event-channel-ctrl`).
pub const EVENT_CHANNEL_CTRL: &str = "event-channel-ctrl";
/// MAC address of the interface (`mac`).
pub const MAC: &str = "mac";
/// Backend: supports split event channels.
pub const FEATURE_SPLIT_EVENT_CHANNELS: &str = "feature-split-event-channels";
/// Backend: offers a control ring.
pub const FEATURE_CTRL_RING: &str = "feature-ctrl-ring";
/// Backend: maximum queues.
pub const MULTI_QUEUE_MAX_QUEUES: &str = "multi-queue-max-queues";
/// Frontend: queues in use.
pub const MULTI_QUEUE_NUM_QUEUES: &str = "multi-queue-num-queues";
/// Backend: accepts scatter-gather (`feature-sg`).
pub const FEATURE_SG: &str = "feature-sg";
/// Backend/frontend: TCPv4 segmentation offload.
pub const FEATURE_GSO_TCPV4: &str = "feature-gso-tcpv4";
/// Backend/frontend: TCPv6 segmentation offload.
pub const FEATURE_GSO_TCPV6: &str = "feature-gso-tcpv6";
/// Backend/frontend: checksum offload disabled for IPv4.
pub const FEATURE_NO_CSUM_OFFLOAD: &str = "feature-no-csum-offload";
/// Backend/frontend: IPv6 checksum offload.
pub const FEATURE_IPV6_CSUM_OFFLOAD: &str = "feature-ipv6-csum-offload";
/// Backend: supports RX copy (the only mode Linux uses).
pub const FEATURE_RX_COPY: &str = "feature-rx-copy";
/// Frontend: requests RX copy.
pub const REQUEST_RX_COPY: &str = "request-rx-copy";
/// Frontend: sends notifications when posting RX requests.
pub const FEATURE_RX_NOTIFY: &str = "feature-rx-notify";
/// Backend: supports multicast control.
pub const FEATURE_MULTICAST_CONTROL: &str = "feature-multicast-control";
/// Backend: multicast control may change at any time.
pub const FEATURE_DYNAMIC_MULTICAST_CONTROL: &str = "feature-dynamic-multicast-control";
/// Frontend: requests multicast control.
pub const REQUEST_MULTICAST_CONTROL: &str = "request-multicast-control";

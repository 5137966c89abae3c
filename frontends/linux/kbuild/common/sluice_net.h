/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Network-device glue every Sluice network frontend shares, as Rust's kernel crate sees
 * it through bindgen: an Ethernet net_device whose transmit and per-queue NAPI polls
 * call Rust in atomic context (BH disabled; Rust takes the queue's spinlock there), skb
 * accessors, and receive delivery.
 */
#ifndef SLUICE_NET_H
#define SLUICE_NET_H

#include <linux/types.h>

struct xenbus_device;
struct net_device;
struct sk_buff;

/*
 * An Ethernet device with room for `max_queues` queues (1 in use until
 * sluice_net_configure), MAC `mac`, carrier off, not yet registered. Its transmit hands
 * each skb to sluice_net_tx(ctx, queue, skb) (BH disabled); each queue has a NAPI
 * context whose poll calls sluice_net_poll(ctx, queue, budget) (softirq). NULL with *err
 * on failure.
 */
struct net_device *sluice_net_create(struct xenbus_device *dev, void *ctx,
				     unsigned int max_queues, const u8 *mac, int *err);
int sluice_net_register(struct net_device *nd);
/* Unregisters (if registered; NAPI disabled, transmit stopped), no callback into Rust
 * starts after it, waits for the work items. */
void sluice_net_unregister(struct net_device *nd);
/* sluice_net_unregister, then frees the device. */
void sluice_net_free(struct net_device *nd);
const char *sluice_net_name(struct net_device *nd);

/* Under rtnl: queues in use, offloads, largest MTU (and the MTU, when mtu != 0). */
int sluice_net_configure(struct net_device *nd, unsigned int queues, bool sg, bool csum4,
			 bool csum6, bool tso4, bool tso6, unsigned int max_mtu,
			 unsigned int mtu);
void sluice_net_carrier(struct net_device *nd, bool on);
void sluice_net_tx_stop(struct net_device *nd, unsigned int queue);
/* Wakes the queue if the device is up and the queue stopped (any context). */
void sluice_net_tx_wake(struct net_device *nd, unsigned int queue);
/* Schedules the queue's NAPI poll (any context: an interrupt, softirq or a task). */
void sluice_net_napi_kick(struct net_device *nd, unsigned int queue);
/* Queues the fault work item, which calls sluice_net_fault(ctx) in process context. */
void sluice_net_fault_kick(struct net_device *nd);
/* Counts and frees a sent (or dropped) skb (any context). */
void sluice_net_tx_done(struct net_device *nd, struct sk_buff *skb, bool sent);

/* skb geometry: part 0 is the linear head, 1..=nr_frags the page fragments. */
unsigned int sluice_skb_parts(struct sk_buff *skb);
const u8 *sluice_skb_part(struct sk_buff *skb, unsigned int i, unsigned int *len);
unsigned int sluice_skb_len(struct sk_buff *skb);
/* 0: checksum complete, 1: CHECKSUM_PARTIAL, 2: CHECKSUM_UNNECESSARY. */
int sluice_skb_csum(struct sk_buff *skb);
/* 0: no GSO, 1: TCPv4, 2: TCPv6, 3: another kind; *size: the segment size. */
int sluice_skb_gso(struct sk_buff *skb, unsigned int *size);

/* A receive skb of `len` bytes (GFP_ATOMIC), to fill through sluice_skb_part: a linear
 * buffer, or for a large packet a 256-byte head and order-0 page fragments. */
struct sk_buff *sluice_net_rx_alloc(struct net_device *nd, unsigned int len);
/* Frees an skb (one never delivered, or one not sent; any context). */
void sluice_skb_free(struct sk_buff *skb);
/*
 * Hands a filled skb to the stack from `queue`'s NAPI poll (napi_gro_receive): csum 0 none, 1 CHECKSUM_UNNECESSARY, 2 CHECKSUM_PARTIAL
 * (offsets set up from the headers); gso_type 0 none, 1 TCPv4, 2 TCPv6 (marked DODGY).
 * A packet whose checksum setup fails is dropped and counted. Counts rx stats.
 */
void sluice_net_rx_deliver(struct net_device *nd, struct sk_buff *skb, unsigned int queue,
			   int csum, int gso_type, unsigned int gso_size);
/* Counts a received packet dropped by the driver (malformed or out of memory). */
void sluice_net_rx_dropped(struct net_device *nd, unsigned long n);

/* CPUs online (one queue each, as xen-netfront). */
unsigned int sluice_net_num_cpus(void);

/* Implemented in the module's Rust half (sluice_kernel::net_driver!). sluice_net_tx: the
 * transmit (BH disabled), 0 when the skb was taken (sent or dropped), 1 to give it back
 * (NETDEV_TX_BUSY; the queue stopped). sluice_net_poll: a queue's NAPI poll (softirq),
 * packets received, `budget` if more wait. sluice_net_tx_timeout (the watchdog: a queue
 * stopped for watchdog_timeo) and sluice_net_fault (after sluice_net_fault_kick) run in
 * process context. */
int sluice_net_tx(void *ctx, unsigned int queue, struct sk_buff *skb);
int sluice_net_poll(void *ctx, unsigned int queue, int budget);
void sluice_net_tx_timeout(void *ctx, unsigned int queue);
void sluice_net_fault(void *ctx);

#endif

// SPDX-License-Identifier: GPL-2.0-only
/*
 * Network-device glue shared by Sluice's network frontends (see sluice_net.h), as
 * xen-netfront works: ndo_start_xmit hands the skb to Rust at once (BH disabled), each
 * queue has a NAPI context whose poll (softirq) runs Rust's receive and TX completion;
 * the watchdog and a device fault go to work items (process context).
 */
#include <linux/netdevice.h>
#include <linux/etherdevice.h>
#include <linux/skbuff.h>
#include <linux/workqueue.h>
#include <linux/rtnetlink.h>
#include <linux/slab.h>
#include <xen/xenbus.h>
#include "sluice_net.h"

struct sluice_net_queue {
	struct napi_struct napi;
	struct net_device *nd;
	unsigned int index;
};

struct sluice_net_priv {
	void *ctx;
	struct work_struct timeout_work;
	struct work_struct fault_work;
	unsigned int timeout_queue;
	unsigned int max_queues;
	bool registered;
	bool dying;
	struct sluice_net_queue *queues;
};

static struct sluice_net_priv *priv_of(struct net_device *nd)
{
	return netdev_priv(nd);
}

/* A queue's NAPI poll (softirq): Rust takes TX completions and up to `budget` packets. */
static int sluice_net_napi_poll(struct napi_struct *napi, int budget)
{
	struct sluice_net_queue *q = container_of(napi, struct sluice_net_queue, napi);
	struct sluice_net_priv *p = priv_of(q->nd);
	int done = 0;

	if (!READ_ONCE(p->dying))
		done = sluice_net_poll(p->ctx, q->index, budget);
	if (done > budget)
		done = budget;
	if (done < budget)
		napi_complete_done(napi, done);
	return done;
}

static void sluice_net_timeout_work(struct work_struct *work)
{
	struct sluice_net_priv *p = container_of(work, struct sluice_net_priv, timeout_work);

	if (!READ_ONCE(p->dying))
		sluice_net_tx_timeout(p->ctx, READ_ONCE(p->timeout_queue));
}

static void sluice_net_fault_work(struct work_struct *work)
{
	struct sluice_net_priv *p = container_of(work, struct sluice_net_priv, fault_work);

	if (!READ_ONCE(p->dying))
		sluice_net_fault(p->ctx);
}

/* The netdev watchdog (timer context): a queue stayed stopped; Rust decides in process
 * context. */
static void sluice_net_tx_timeout_cb(struct net_device *nd, unsigned int txqueue)
{
	struct sluice_net_priv *p = priv_of(nd);

	WRITE_ONCE(p->timeout_queue, txqueue);
	queue_work(system_highpri_wq, &p->timeout_work);
}

/* BH disabled, the queue's xmit lock held: Rust sends (copies) the skb at once. */
static netdev_tx_t sluice_net_xmit(struct sk_buff *skb, struct net_device *nd)
{
	struct sluice_net_priv *p = priv_of(nd);
	unsigned int qi = skb_get_queue_mapping(skb);

	if (qi >= p->max_queues)
		qi = 0;
	if (READ_ONCE(p->dying)) {
		nd->stats.tx_dropped++;
		dev_kfree_skb_any(skb);
		return NETDEV_TX_OK;
	}
	if (sluice_net_tx(p->ctx, qi, skb))
		return NETDEV_TX_BUSY;
	return NETDEV_TX_OK;
}

static int sluice_net_open(struct net_device *nd)
{
	struct sluice_net_priv *p = priv_of(nd);
	unsigned int i;

	for (i = 0; i < p->max_queues; i++) {
		napi_enable(&p->queues[i].napi);
		/* Responses that came while it was down raised no new event. */
		local_bh_disable();
		napi_schedule(&p->queues[i].napi);
		local_bh_enable();
	}
	netif_tx_start_all_queues(nd);
	return 0;
}

static int sluice_net_stop(struct net_device *nd)
{
	struct sluice_net_priv *p = priv_of(nd);
	unsigned int i;

	netif_tx_stop_all_queues(nd);
	for (i = 0; i < p->max_queues; i++)
		napi_disable(&p->queues[i].napi);
	return 0;
}

static const struct net_device_ops sluice_net_ops = {
	.ndo_open = sluice_net_open,
	.ndo_stop = sluice_net_stop,
	.ndo_start_xmit = sluice_net_xmit,
	.ndo_tx_timeout = sluice_net_tx_timeout_cb,
	.ndo_set_mac_address = eth_mac_addr,
	.ndo_validate_addr = eth_validate_addr,
};

struct net_device *sluice_net_create(struct xenbus_device *dev, void *ctx,
				     unsigned int max_queues, const u8 *mac, int *err)
{
	struct net_device *nd;
	struct sluice_net_priv *p;
	unsigned int i;

	if (max_queues == 0)
		max_queues = 1;
	nd = alloc_etherdev_mq(sizeof(*p), max_queues);
	if (!nd) {
		*err = -ENOMEM;
		return NULL;
	}
	p = priv_of(nd);
	p->ctx = ctx;
	p->max_queues = max_queues;
	INIT_WORK(&p->timeout_work, sluice_net_timeout_work);
	INIT_WORK(&p->fault_work, sluice_net_fault_work);
	p->queues = kcalloc(max_queues, sizeof(*p->queues), GFP_KERNEL);
	if (!p->queues) {
		free_netdev(nd);
		*err = -ENOMEM;
		return NULL;
	}
	for (i = 0; i < max_queues; i++) {
		p->queues[i].nd = nd;
		p->queues[i].index = i;
		netif_napi_add(nd, &p->queues[i].napi, sluice_net_napi_poll);
	}
	nd->netdev_ops = &sluice_net_ops;
	nd->watchdog_timeo = 5 * HZ;
	nd->min_mtu = ETH_MIN_MTU;
	nd->max_mtu = ETH_DATA_LEN;
	eth_hw_addr_set(nd, mac);
	SET_NETDEV_DEV(nd, &dev->dev);
	netif_set_real_num_tx_queues(nd, 1);
	netif_set_real_num_rx_queues(nd, 1);
	netif_carrier_off(nd);
	*err = 0;
	return nd;
}

int sluice_net_register(struct net_device *nd)
{
	int err = register_netdev(nd);

	if (!err)
		priv_of(nd)->registered = true;
	return err;
}

void sluice_net_unregister(struct net_device *nd)
{
	struct sluice_net_priv *p = priv_of(nd);

	if (p->registered)
		unregister_netdev(nd);
	p->registered = false;
	WRITE_ONCE(p->dying, true);
	cancel_work_sync(&p->timeout_work);
	cancel_work_sync(&p->fault_work);
}

void sluice_net_free(struct net_device *nd)
{
	struct sluice_net_priv *p = priv_of(nd);
	unsigned int i;

	sluice_net_unregister(nd);
	for (i = 0; i < p->max_queues; i++)
		netif_napi_del(&p->queues[i].napi);
	kfree(p->queues);
	free_netdev(nd);
}

const char *sluice_net_name(struct net_device *nd)
{
	return nd->name;
}

int sluice_net_configure(struct net_device *nd, unsigned int queues, bool sg, bool csum4,
			 bool csum6, bool tso4, bool tso6, unsigned int max_mtu,
			 unsigned int mtu)
{
	struct sluice_net_priv *p = priv_of(nd);
	netdev_features_t f = 0;
	int err;

	if (queues == 0 || queues > p->max_queues)
		return -EINVAL;
	if (sg)
		f |= NETIF_F_SG;
	if (csum4)
		f |= NETIF_F_IP_CSUM;
	if (csum6)
		f |= NETIF_F_IPV6_CSUM;
	if (sg && csum4 && tso4)
		f |= NETIF_F_TSO;
	if (sg && csum6 && tso6)
		f |= NETIF_F_TSO6;
	rtnl_lock();
	err = netif_set_real_num_tx_queues(nd, queues);
	if (!err)
		err = netif_set_real_num_rx_queues(nd, queues);
	if (!err) {
		nd->hw_features = f;
		nd->features = f;
		nd->max_mtu = max_mtu;
		if (nd->mtu > max_mtu)
			err = dev_set_mtu(nd, max_mtu);
		if (!err && mtu >= ETH_MIN_MTU && mtu <= max_mtu)
			err = dev_set_mtu(nd, mtu);
		netdev_features_change(nd);
	}
	rtnl_unlock();
	return err;
}

void sluice_net_carrier(struct net_device *nd, bool on)
{
	if (on)
		netif_carrier_on(nd);
	else
		netif_carrier_off(nd);
}

void sluice_net_tx_stop(struct net_device *nd, unsigned int queue)
{
	if (queue < nd->num_tx_queues)
		netif_stop_subqueue(nd, queue);
}

void sluice_net_tx_wake(struct net_device *nd, unsigned int queue)
{
	if (queue < nd->real_num_tx_queues && netif_running(nd) &&
	    __netif_subqueue_stopped(nd, queue))
		netif_wake_subqueue(nd, queue);
}

void sluice_net_napi_kick(struct net_device *nd, unsigned int queue)
{
	struct sluice_net_priv *p = priv_of(nd);

	if (queue >= p->max_queues)
		return;
	if (in_task()) {
		/* So the softirq runs at local_bh_enable, not later in ksoftirqd. */
		local_bh_disable();
		napi_schedule(&p->queues[queue].napi);
		local_bh_enable();
	} else {
		napi_schedule(&p->queues[queue].napi);
	}
}

void sluice_net_fault_kick(struct net_device *nd)
{
	queue_work(system_highpri_wq, &priv_of(nd)->fault_work);
}

void sluice_net_tx_done(struct net_device *nd, struct sk_buff *skb, bool sent)
{
	if (sent) {
		nd->stats.tx_packets++;
		nd->stats.tx_bytes += skb->len;
	} else {
		nd->stats.tx_dropped++;
	}
	dev_consume_skb_any(skb);
}

unsigned int sluice_skb_parts(struct sk_buff *skb)
{
	return 1 + skb_shinfo(skb)->nr_frags;
}

const u8 *sluice_skb_part(struct sk_buff *skb, unsigned int i, unsigned int *len)
{
	skb_frag_t *frag;

	if (i == 0) {
		*len = skb_headlen(skb);
		return skb->data;
	}
	if (i > skb_shinfo(skb)->nr_frags) {
		*len = 0;
		return NULL;
	}
	frag = &skb_shinfo(skb)->frags[i - 1];
	*len = skb_frag_size(frag);
	return skb_frag_address(frag);
}

unsigned int sluice_skb_len(struct sk_buff *skb)
{
	return skb->len;
}

int sluice_skb_csum(struct sk_buff *skb)
{
	if (skb->ip_summed == CHECKSUM_PARTIAL)
		return 1;
	if (skb->ip_summed == CHECKSUM_UNNECESSARY)
		return 2;
	return 0;
}

int sluice_skb_gso(struct sk_buff *skb, unsigned int *size)
{
	unsigned int t;

	*size = 0;
	if (!skb_is_gso(skb))
		return 0;
	*size = skb_shinfo(skb)->gso_size;
	t = skb_shinfo(skb)->gso_type;
	if (t & SKB_GSO_TCPV4)
		return 1;
	if (t & SKB_GSO_TCPV6)
		return 2;
	return 3;
}

/*
 * A packet up to this size is one linear buffer; a larger one (GSO, up to 64 KiB) gets
 * a linear head of SLUICE_NET_RX_HEAD bytes and order-0 pages for the rest, as
 * xen-netfront builds its skbs: no high-order atomic allocation, which fails often.
 */
#define SLUICE_NET_RX_LINEAR 2048
#define SLUICE_NET_RX_HEAD 256

struct sk_buff *sluice_net_rx_alloc(struct net_device *nd, unsigned int len)
{
	unsigned int head = len <= SLUICE_NET_RX_LINEAR ? len : SLUICE_NET_RX_HEAD;
	unsigned int rest = len - head;
	struct sk_buff *skb;
	int i;

	if (DIV_ROUND_UP(rest, PAGE_SIZE) > MAX_SKB_FRAGS)
		return NULL;
	skb = __netdev_alloc_skb(nd, head + NET_IP_ALIGN, GFP_ATOMIC | __GFP_NOWARN);
	if (!skb)
		return NULL;
	skb_reserve(skb, NET_IP_ALIGN);
	skb_put(skb, head);
	for (i = 0; rest > 0; i++) {
		unsigned int n = min_t(unsigned int, rest, PAGE_SIZE);
		struct page *pg = alloc_page(GFP_ATOMIC | __GFP_NOWARN);

		if (!pg) {
			kfree_skb(skb);
			return NULL;
		}
		skb_add_rx_frag(skb, i, pg, 0, n, PAGE_SIZE);
		rest -= n;
	}
	return skb;
}

void sluice_skb_free(struct sk_buff *skb)
{
	dev_kfree_skb_any(skb);
}

void sluice_net_rx_deliver(struct net_device *nd, struct sk_buff *skb, unsigned int queue,
			   int csum, int gso_type, unsigned int gso_size)
{
	unsigned int len = skb->len;
	bool recalculate = false;

	if (queue >= priv_of(nd)->max_queues)
		queue = 0;

	skb->protocol = eth_type_trans(skb, nd);
	/* skb_checksum_setup parses from the network header. */
	skb_reset_network_header(skb);
	skb_record_rx_queue(skb, queue);
	if (gso_type == 1 || gso_type == 2) {
		skb_shinfo(skb)->gso_size = gso_size;
		skb_shinfo(skb)->gso_type =
			(gso_type == 1 ? SKB_GSO_TCPV4 : SKB_GSO_TCPV6) | SKB_GSO_DODGY;
		skb_shinfo(skb)->gso_segs = 0;
	}
	if (csum == 2) {
		skb->ip_summed = CHECKSUM_PARTIAL;
	} else if (csum == 1) {
		skb->ip_summed = CHECKSUM_UNNECESSARY;
	}
	/* As xen-netfront: a GSO packet needs its checksum offsets set up. */
	if (skb->ip_summed != CHECKSUM_PARTIAL && skb_is_gso(skb)) {
		skb->ip_summed = CHECKSUM_PARTIAL;
		recalculate = true;
	}
	if (skb->ip_summed == CHECKSUM_PARTIAL && skb_checksum_setup(skb, recalculate)) {
		nd->stats.rx_errors++;
		kfree_skb(skb);
		return;
	}
	nd->stats.rx_packets++;
	nd->stats.rx_bytes += len;
	napi_gro_receive(&priv_of(nd)->queues[queue].napi, skb);
}

void sluice_net_rx_dropped(struct net_device *nd, unsigned long n)
{
	nd->stats.rx_dropped += n;
}

unsigned int sluice_net_num_cpus(void)
{
	return num_online_cpus();
}

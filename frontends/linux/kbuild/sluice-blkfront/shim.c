// SPDX-License-Identifier: GPL-2.0-only
/*
 * C half of sluice-blkfront: module metadata, the xenbus driver and blk-mq ops objects,
 * and wrappers for block-layer macros and static inline functions (the Xen glue every
 * frontend shares is kbuild/common/sluice_xen.c). The driver's logic is the
 * Rust object linked next to this file (frontends/linux/blkfront over
 * frontends/blkfront-core).
 */
#include <linux/module.h>
#include <linux/blkdev.h>
#include <linux/blk-mq.h>
#include <linux/slab.h>
#include <linux/err.h>
#include <xen/xen.h>
#include <xen/xenbus.h>
#include "sluice_xen.h"
#include "sluice_blkfront_shim.h"

static int sbf_major;

static unsigned int io_timeout = 30;
module_param(io_timeout, uint, 0444);
MODULE_PARM_DESC(io_timeout,
		 "Seconds a request may wait for the backend's answer before the device fails (default 30, at least 1)");

static unsigned int max_indirect_segments = 64;
module_param(max_indirect_segments, uint, 0444);
MODULE_PARM_DESC(max_indirect_segments,
		 "Most segments (4 KiB pages) per request, 11-256; the backend's limit applies too (default 64: 256 KiB requests)");

static blk_status_t sbf_queue_rq(struct blk_mq_hw_ctx *hctx, const struct blk_mq_queue_data *bd)
{
	return sluice_blk_queue_rq(hctx->queue->queuedata, hctx->queue_num, bd->rq);
}

/*
 * blk-mq's timeout work (process context, the request pinned by blk-mq). Rust fails the
 * device when the request is still outstanding: every outstanding request, this one
 * included, is ended before it returns, so BLK_EH_DONE. A request the driver has no
 * record of (its completion is on the way, or queue_rq has not handed it over yet)
 * gets its timer re-armed.
 */
static enum blk_eh_timer_return sbf_timeout(struct request *rq)
{
	if (sluice_blk_timeout(rq->q->queuedata, rq))
		return BLK_EH_DONE;
	return BLK_EH_RESET_TIMER;
}

static void sbf_complete(struct request *rq)
{
	blk_mq_end_request(rq, *(blk_status_t *)blk_mq_rq_to_pdu(rq));
}

static const struct blk_mq_ops sbf_mq_ops = {
	.queue_rq = sbf_queue_rq,
	.complete = sbf_complete,
	.timeout = sbf_timeout,
};

unsigned int sbf_io_timeout_secs(void) { return io_timeout ? io_timeout : 1; }
unsigned int sbf_max_indirect_segments(void) { return max_indirect_segments; }

static const struct block_device_operations sbf_fops = {
	.owner = THIS_MODULE,
};

const u8 sbf_sts_ok = (__force u8)BLK_STS_OK;
const u8 sbf_sts_resource = (__force u8)BLK_STS_RESOURCE;
const u8 sbf_sts_ioerr = (__force u8)BLK_STS_IOERR;
const u8 sbf_sts_notsupp = (__force u8)BLK_STS_NOTSUPP;

int sbf_blk_major(void) { return sbf_major; }

struct gendisk *sbf_disk_create(struct xenbus_device *dev, void *ctx,
				const struct sbf_disk_params *p, int *err)
{
	struct blk_mq_tag_set *set = kzalloc(sizeof(*set), GFP_KERNEL);
	struct gendisk *disk;
	struct request_queue *q;
	unsigned int max_sectors = p->max_segments * (PAGE_SIZE >> 9);

	if (!set) {
		*err = -ENOMEM;
		return NULL;
	}
	set->ops = &sbf_mq_ops;
	set->nr_hw_queues = p->nr_queues;
	set->queue_depth = p->queue_depth;
	set->numa_node = NUMA_NO_NODE;
	/*
	 * Not BLOCKING: queue_rq takes only the device's IRQ spinlock and never sleeps
	 * (as xen-blkfront), so blk-mq dispatches from the submitter's context.
	 */
	set->flags = BLK_MQ_F_SHOULD_MERGE;
	set->cmd_size = sizeof(blk_status_t);
	set->driver_data = ctx;
	set->timeout = sbf_io_timeout_secs() * HZ;
	*err = blk_mq_alloc_tag_set(set);
	if (*err) {
		kfree(set);
		return NULL;
	}
	disk = blk_mq_alloc_disk(set, ctx);
	if (IS_ERR(disk)) {
		*err = PTR_ERR(disk);
		blk_mq_free_tag_set(set);
		kfree(set);
		return NULL;
	}
	disk->major = sbf_major;
	disk->first_minor = p->first_minor;
	disk->minors = 16;
	disk->fops = &sbf_fops;
	disk->private_data = set;
	strscpy(disk->disk_name, p->name, DISK_NAME_LEN);
	q = disk->queue;
	blk_queue_logical_block_size(q, p->logical_block_size);
	blk_queue_physical_block_size(q, p->physical_block_size);
	blk_queue_max_hw_sectors(q, max_sectors);
	blk_queue_max_segments(q, p->max_segments);
	blk_queue_segment_boundary(q, PAGE_SIZE - 1);
	blk_queue_max_segment_size(q, PAGE_SIZE);
	blk_queue_dma_alignment(q, 511);
	blk_queue_write_cache(q, p->write_cache, false);
	if (p->discard_granularity) {
		q->limits.discard_granularity = p->discard_granularity;
		blk_queue_max_discard_sectors(q, UINT_MAX >> 9);
		if (p->secure_erase)
			blk_queue_max_secure_erase_sectors(q, UINT_MAX >> 9);
	}
	set_capacity(disk, p->sectors);
	set_disk_ro(disk, p->readonly);
	*err = device_add_disk(&dev->dev, disk, NULL);
	if (*err) {
		put_disk(disk);
		blk_mq_free_tag_set(set);
		kfree(set);
		return NULL;
	}
	return disk;
}

void sbf_disk_set_capacity(struct gendisk *disk, unsigned long long sectors)
{
	set_capacity_and_notify(disk, sectors);
}

void sbf_disk_destroy(struct gendisk *disk)
{
	struct blk_mq_tag_set *set = disk->private_data;

	del_gendisk(disk);
	put_disk(disk);
	blk_mq_free_tag_set(set);
	kfree(set);
}

void sbf_disk_run_queues(struct gendisk *disk)
{
	blk_mq_run_hw_queues(disk->queue, true);
}

int sbf_rq_info(struct request *rq, unsigned long long *sector, unsigned int *nr_sectors)
{
	*sector = blk_rq_pos(rq);
	*nr_sectors = blk_rq_sectors(rq);
	switch (req_op(rq)) {
	case REQ_OP_READ:
		return SBF_RQ_READ;
	case REQ_OP_WRITE:
		return SBF_RQ_WRITE;
	case REQ_OP_FLUSH:
		return SBF_RQ_FLUSH;
	case REQ_OP_DISCARD:
		return SBF_RQ_DISCARD;
	case REQ_OP_SECURE_ERASE:
		return SBF_RQ_SECURE_ERASE;
	default:
		return SBF_RQ_OTHER;
	}
}

unsigned int sbf_rq_nr_phys_segments(struct request *rq)
{
	return blk_rq_nr_phys_segments(rq);
}

unsigned int sbf_rq_segments(struct request *rq, unsigned long *addr, unsigned int *len,
			     unsigned int cap)
{
	struct req_iterator iter;
	struct bio_vec bv;
	unsigned long a, prev_end = 0;
	unsigned int n = 0;

	rq_for_each_segment(bv, rq, iter) {
		a = (unsigned long)page_address(bv.bv_page) + bv.bv_offset;
		/* Contiguous with the previous piece inside the same page: one segment. */
		if (n && a == prev_end && (a & (PAGE_SIZE - 1)) &&
		    (a & PAGE_MASK) == ((a + bv.bv_len - 1) & PAGE_MASK)) {
			if (n <= cap)
				len[n - 1] += bv.bv_len;
			prev_end = a + bv.bv_len;
			continue;
		}
		if (n < cap) {
			addr[n] = a;
			len[n] = bv.bv_len;
		}
		n++;
		prev_end = a + bv.bv_len;
	}
	return n;
}

void sbf_rq_start(struct request *rq)
{
	blk_mq_start_request(rq);
}

/*
 * As xen-blkfront: the status goes into the request's pdu and blk-mq completes it
 * (sbf_complete, in the block softirq or at once, as blk_mq_complete_request decides),
 * so the interrupt handler only hands requests over.
 */
void sbf_rq_end(struct request *rq, int result)
{
	blk_status_t *sts = blk_mq_rq_to_pdu(rq);

	*sts = result == 0 ? BLK_STS_OK : result == 1 ? BLK_STS_NOTSUPP : BLK_STS_IOERR;
	blk_mq_complete_request(rq);
}

static int sbf_probe(struct xenbus_device *dev, const struct xenbus_device_id *id)
{
	return sluice_xenbus_probe(dev);
}

static void sbf_otherend_changed(struct xenbus_device *dev, enum xenbus_state state)
{
	sluice_xenbus_otherend_changed(dev, state);
}

static void sbf_remove(struct xenbus_device *dev)
{
	sluice_xenbus_remove(dev);
}

static const struct xenbus_device_id sbf_ids[] = {
	{ "vbd" },
	{ "" }
};

static struct xenbus_driver sbf_driver = {
	/*
	 * Not the default (ids[0], "vbd"): xen-blkfront registers under that name,
	 * and a bus takes one driver per name, so with it loaded (a root disk) this module
	 * would fail to load. A device moves between the two through sysfs unbind/bind.
	 */
	.name = "sluice-vbd",
	.ids = sbf_ids,
	.probe = sbf_probe,
	.remove = sbf_remove,
	.otherend_changed = sbf_otherend_changed,
	/*
	 * Loaded as a module, so no boot waits on it: without this, registering the driver
	 * blocks insmod for up to 300 s (xenbus wait_for_devices) while any device's backend
	 * never offers the disk (refused, or a backend that is not running). Disks appear
	 * when they connect.
	 */
	.not_essential = true,
};

static int __init sbf_init(void)
{
	int err;

	if (!xen_domain())
		return -ENODEV;
	sbf_major = register_blkdev(0, "sluice-vbd");
	if (sbf_major < 0)
		return sbf_major;
	err = xenbus_register_frontend(&sbf_driver);
	if (err)
		unregister_blkdev(sbf_major, "sluice-vbd");
	return err;
}

static void __exit sbf_exit(void)
{
	xenbus_unregister_driver(&sbf_driver);
	unregister_blkdev(sbf_major, "sluice-vbd");
}

module_init(sbf_init);
module_exit(sbf_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("Sluice");
MODULE_DESCRIPTION("Sluice Xen virtual block frontend (Rust, over sluice-blkfront-core)");
MODULE_ALIAS("xen:vbd");

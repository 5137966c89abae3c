/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The block-specific C half of sluice-blkfront as Rust sees it (through bindgen):
 * wrappers for block-layer macros and static inline functions, and the glue objects C
 * declares more easily than Rust (the xenbus driver, blk-mq ops). The Xen glue is
 * kbuild/common/sluice_xen.h.
 */
#ifndef SLUICE_BLKFRONT_SHIM_H
#define SLUICE_BLKFRONT_SHIM_H

#include <linux/types.h>

struct xenbus_device;
struct gendisk;
struct request;

/* --- block device --- */
struct sbf_disk_params {
	unsigned long long sectors;
	unsigned int logical_block_size;
	unsigned int physical_block_size;
	unsigned int nr_queues;
	unsigned int queue_depth;
	unsigned int max_segments;
	unsigned int discard_granularity; /* 0: no discard */
	bool secure_erase;
	bool write_cache;
	bool readonly;
	int first_minor;
	char name[32];
};
/* Creates and adds the disk; blk-mq calls sluice_blk_queue_rq(ctx, queue, rq). */
struct gendisk *sbf_disk_create(struct xenbus_device *dev, void *ctx,
				const struct sbf_disk_params *p, int *err);
void sbf_disk_set_capacity(struct gendisk *disk, unsigned long long sectors);
void sbf_disk_destroy(struct gendisk *disk);
int sbf_blk_major(void);

/* --- requests --- */
enum sbf_rq_kind { SBF_RQ_READ, SBF_RQ_WRITE, SBF_RQ_FLUSH, SBF_RQ_DISCARD,
		   SBF_RQ_SECURE_ERASE, SBF_RQ_OTHER };
/* The request's kind, first 512-byte sector and length in sectors. */
int sbf_rq_info(struct request *rq, unsigned long long *sector, unsigned int *nr_sectors);
/* blk_rq_nr_phys_segments: a hint for sbf_rq_segments' arrays. */
unsigned int sbf_rq_nr_phys_segments(struct request *rq);
/* Its segments (kernel virtual address, length; pieces contiguous within one page
 * merged): writes the first `cap` and returns how many there are. */
unsigned int sbf_rq_segments(struct request *rq, unsigned long *addr, unsigned int *len,
			     unsigned int cap);
void sbf_rq_start(struct request *rq);
/* 0: ok, 1: not supported, 2: I/O error; through blk_mq_complete_request (any
 * context). */
void sbf_rq_end(struct request *rq, int result);
/* The status queue_rq returns. */
extern const u8 sbf_sts_ok, sbf_sts_resource, sbf_sts_ioerr, sbf_sts_notsupp;
/* The module parameter io_timeout: seconds before blk-mq calls
 * sluice_blk_timeout for an unanswered request. */
unsigned int sbf_io_timeout_secs(void);
/* The module parameter max_indirect_segments, as given (Rust clamps it). */
unsigned int sbf_max_indirect_segments(void);
/* Restarts the stopped queues of a disk (after completions freed ring space). */
void sbf_disk_run_queues(struct gendisk *disk);

/* Implemented in Rust (sluice_kernel::blk_driver!): ctx is the disk's queuedata. */
u8 sluice_blk_queue_rq(void *ctx, unsigned int queue, struct request *rq);
/* blk-mq's timeout for rq: true when the driver failed the device and ended rq
 * (BLK_EH_DONE), false when it has no record of rq (re-arm its timer). */
bool sluice_blk_timeout(void *ctx, struct request *rq);

#endif

/* The in-guest NVMe benchmark of `cargo xtask bench passthrough` (built static by the
 * xtask, run from the bench initramfs's /init, the same binary on Sluice and on bare
 * QEMU). O_DIRECT reads of /dev/nvme0n1, each job for argv[1] seconds by the guest's
 * CLOCK_MONOTONIC:
 *   randread-4k-qd1   pread of a random 4 KiB block, one at a time
 *   randread-4k-qd32  the same, 32 in flight (io_submit/io_getevents, raw syscalls)
 *   seqread-1m-qd1    pread of 1 MiB after 1 MiB, wrapping at the end
 *   seqread-1m-qd8    the same, 8 in flight
 * The host fills the disk image so that each 4 KiB block starts with its index (u64,
 * little-endian); every block read is checked against it (bad= counts mismatches).
 * argv[2]: the device (default /dev/nvme0n1; a file for a try on the host).
 * Output: "@@PT-BEGIN name" before a job, then one line
 * "@@PT name ops=N seconds=S iops=I mbs=M bad=B" (MB/s = 10^6 bytes/s). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_DEPTH 32

static int fd;
static uint64_t dev_bytes;
static long bad;
static uint64_t rng = 0x9E3779B97F4A7C15ull;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static uint64_t xorshift(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* The next offset of a job: random (aligned to bs) or sequential (wrapping). */
static uint64_t next_off(size_t bs, int random, uint64_t *seq) {
    uint64_t n = dev_bytes / bs;
    if (random) return (xorshift() % n) * bs;
    uint64_t off = *seq;
    *seq = (off + bs >= n * bs) ? 0 : off + bs;
    return off;
}

static void check(const unsigned char *buf, uint64_t off, size_t len) {
    for (size_t o = 0; o < len; o += 4096) {
        uint64_t v;
        memcpy(&v, buf + o, sizeof v);
        if (v != (off + o) / 4096) bad++;
    }
}

static void report(const char *name, size_t bs, long ops, double secs) {
    printf("@@PT %s ops=%ld seconds=%.3f iops=%.1f mbs=%.2f bad=%ld\n", name, ops, secs,
           ops / secs, ops * (double)bs / secs / 1e6, bad);
    bad = 0;
}

/* One request at a time (pread). */
static int job_sync(const char *name, size_t bs, int random, double seconds) {
    unsigned char *buf = aligned_alloc(4096, bs);
    uint64_t seq = 0;
    long ops = 0;
    if (!buf) return -1;
    printf("@@PT-BEGIN %s\n", name);
    double t0 = now(), t = t0;
    while (t - t0 < seconds) {
        uint64_t off = next_off(bs, random, &seq);
        if (pread(fd, buf, bs, off) != (ssize_t)bs) {
            printf("@@PT-ERROR %s: pread at %llu failed\n", name, (unsigned long long)off);
            return -1;
        }
        check(buf, off, bs);
        ops++;
        t = now();
    }
    report(name, bs, ops, t - t0);
    free(buf);
    return 0;
}

/* `depth` requests in flight: each completion is checked and its slot resubmitted
 * until the time is up; then the rest drain (counted, and within the time). */
static int job_aio(const char *name, size_t bs, int random, int depth, double seconds) {
    aio_context_t ctx = 0;
    struct iocb cbs[MAX_DEPTH], *list[MAX_DEPTH];
    struct io_event ev[MAX_DEPTH];
    uint64_t seq = 0;
    long ops = 0;
    int inflight = 0;
    unsigned char *buf = aligned_alloc(4096, bs * depth);
    if (!buf || depth > MAX_DEPTH || syscall(SYS_io_setup, depth, &ctx) != 0) {
        printf("@@PT-ERROR %s: io_setup failed\n", name);
        return -1;
    }
    printf("@@PT-BEGIN %s\n", name);
    double t0 = now(), t = t0;
    for (int i = 0; i < depth; i++) {
        memset(&cbs[i], 0, sizeof cbs[i]);
        cbs[i].aio_data = i;
        cbs[i].aio_lio_opcode = IOCB_CMD_PREAD;
        cbs[i].aio_fildes = fd;
        cbs[i].aio_buf = (uint64_t)(uintptr_t)(buf + i * bs);
        cbs[i].aio_nbytes = bs;
        cbs[i].aio_offset = next_off(bs, random, &seq);
        list[i] = &cbs[i];
    }
    if (syscall(SYS_io_submit, ctx, depth, list) != depth) {
        printf("@@PT-ERROR %s: io_submit failed\n", name);
        return -1;
    }
    inflight = depth;
    while (inflight > 0) {
        long n = syscall(SYS_io_getevents, ctx, 1, depth, ev, NULL);
        if (n <= 0) {
            printf("@@PT-ERROR %s: io_getevents returned %ld\n", name, n);
            return -1;
        }
        t = now();
        for (long k = 0; k < n; k++) {
            struct iocb *cb = (struct iocb *)(uintptr_t)ev[k].obj;
            if (ev[k].res != (int64_t)bs) {
                printf("@@PT-ERROR %s: read at %llu returned %lld\n", name,
                       (unsigned long long)cb->aio_offset, (long long)ev[k].res);
                return -1;
            }
            check((const unsigned char *)(uintptr_t)cb->aio_buf, cb->aio_offset, bs);
            ops++;
            inflight--;
            if (t - t0 < seconds) {
                cb->aio_offset = next_off(bs, random, &seq);
                if (syscall(SYS_io_submit, ctx, 1, &cb) != 1) {
                    printf("@@PT-ERROR %s: io_submit failed\n", name);
                    return -1;
                }
                inflight++;
            }
        }
    }
    report(name, bs, ops, t - t0);
    syscall(SYS_io_destroy, ctx);
    free(buf);
    return 0;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 10;
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *dev = argc > 2 ? argv[2] : "/dev/nvme0n1";
    fd = open(dev, O_RDONLY | O_DIRECT);
    if (fd < 0) {
        printf("@@PT-ERROR cannot open %s\n", dev);
        return 1;
    }
    off_t end = lseek(fd, 0, SEEK_END);
    if (end < (1 << 20)) {
        printf("@@PT-ERROR %s is %lld bytes\n", dev, (long long)end);
        return 1;
    }
    dev_bytes = end;
    /* Warm-up (not in the table): first touches of the queues and mappings. */
    if (job_sync("warm-up", 4096, 1, seconds < 1 ? seconds : 1)) return 1;
    if (job_sync("randread-4k-qd1", 4096, 1, seconds)) return 1;
    if (job_aio("randread-4k-qd32", 4096, 1, 32, seconds)) return 1;
    if (job_sync("seqread-1m-qd1", 1 << 20, 0, seconds)) return 1;
    if (job_aio("seqread-1m-qd8", 1 << 20, 0, 8, seconds)) return 1;
    return 0;
}

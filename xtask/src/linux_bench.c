/* The in-guest microbenchmark of `cargo xtask bench linux-boot` (built static by the
 * xtask, run from the bench initramfs's /init). Each figure is the median of 5
 * batches, in nanoseconds per operation by the guest's CLOCK_MONOTONIC:
 *   getppid   a bare system call (syscall(SYS_getppid): no libc caching)
 *   pipe-rtt  a one-byte pipe ping-pong between two processes (two context switches
 *             and four syscalls per round trip on one vCPU)
 *   fork      fork + child _exit + waitpid (page-table copy, COW faults, a switch)
 * argv[1]: a scale (1 = smoke). Output: "@@LB name ns_per_op" lines, after the
 * clock's smallest step (clock-step). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double bench_getppid(long n) {
    double t = now();
    for (long i = 0; i < n; i++)
        syscall(SYS_getppid);
    return (now() - t) / n;
}

static double bench_pipe(long n) {
    int a[2], b[2];
    char c = 0;
    if (pipe(a) || pipe(b)) return -1;
    pid_t p = fork();
    if (p == 0) {
        for (long i = 0; i < n; i++) {
            if (read(a[0], &c, 1) != 1 || write(b[1], &c, 1) != 1) _exit(1);
        }
        _exit(0);
    }
    double t = now();
    for (long i = 0; i < n; i++) {
        if (write(a[1], &c, 1) != 1 || read(b[0], &c, 1) != 1) return -1;
    }
    t = (now() - t) / n;
    waitpid(p, NULL, 0);
    close(a[0]); close(a[1]); close(b[0]); close(b[1]);
    return t;
}

static double bench_fork(long n) {
    double t = now();
    for (long i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0) _exit(0);
        if (p < 0 || waitpid(p, NULL, 0) != p) return -1;
    }
    return (now() - t) / n;
}

static void report(const char *name, double (*f)(long), long n) {
    double r[5];
    for (int i = 0; i < 5; i++) r[i] = f(n);
    qsort(r, 5, sizeof r[0], cmp);
    printf("@@LB %s %.0f\n", name, r[2]);
    fflush(stdout);
}

/* The smallest step of CLOCK_MONOTONIC seen in 1000 changes: what the figures above
 * can resolve (a coarse clock would make short batches read 0). */
static void clock_step(void) {
    double best = 1e18, t = now();
    for (int i = 0; i < 1000; i++) {
        double u;
        while ((u = now()) == t)
            ;
        if (u - t < best) best = u - t;
        t = u;
    }
    printf("@@LB clock-step %.0f\n", best);
}

int main(int argc, char **argv) {
    long s = argc > 1 ? atol(argv[1]) : 1;
    if (s < 1) s = 1;
    clock_step();
    report("getppid", bench_getppid, 2000 * s);
    report("pipe-rtt", bench_pipe, 200 * s);
    report("fork", bench_fork, 20 * s);
    return 0;
}

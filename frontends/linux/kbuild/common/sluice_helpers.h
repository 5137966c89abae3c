/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What Rust cannot call through bindgen: kernel macros and static inline functions,
 * wrapped as real functions. Rust sees these declarations through bindgen too.
 */
#ifndef SLUICE_HELPERS_H
#define SLUICE_HELPERS_H

#include <linux/types.h>

/* GFP_KERNEL is a macro of casts bindgen cannot evaluate. */
gfp_t sluice_gfp_kernel(void);
/* GFP_ATOMIC, for allocations in interrupt context. */
gfp_t sluice_gfp_atomic(void);
/* GFP_NOIO: may sleep, never recurses into block I/O (a block driver's allocations). */
gfp_t sluice_gfp_noio(void);
/*
 * What Rust's global allocator asks for: GFP_NOIO in a task that may sleep, GFP_ATOMIC
 * in interrupt or softirq context or under a spinlock (preempt count raised; Debian's
 * kernels have CONFIG_PREEMPT_COUNT).
 */
gfp_t sluice_gfp_for_context(void);
/*
 * BUG(): what a Rust panic ends in (an oops of the current task, as in Rust-for-Linux).
 * Declared without noreturn: objtool only knows the kernel's own noreturn functions, so
 * the Rust caller loops after it instead.
 */
void sluice_bug(void);

#endif

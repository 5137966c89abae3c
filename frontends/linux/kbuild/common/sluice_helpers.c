// SPDX-License-Identifier: GPL-2.0-only
/* Wrappers for kernel macros the Rust half of a Sluice module calls. */
#include <linux/bug.h>
#include <linux/gfp.h>
#include <linux/preempt.h>
#include "sluice_helpers.h"

gfp_t sluice_gfp_kernel(void)
{
	return GFP_KERNEL;
}

gfp_t sluice_gfp_noio(void)
{
	return GFP_NOIO;
}

gfp_t sluice_gfp_for_context(void)
{
	return in_task() && preemptible() ? GFP_NOIO : GFP_ATOMIC;
}

gfp_t sluice_gfp_atomic(void)
{
	return GFP_ATOMIC;
}

void sluice_bug(void)
{
	BUG();
}

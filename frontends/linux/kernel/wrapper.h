/* SPDX-License-Identifier: GPL-2.0-only */
/* The kernel APIs Sluice's Rust code calls; build.rs allowlists what it uses. */
#include <linux/printk.h>
#include <linux/slab.h>
#include <xen/grant_table.h>
#include <xen/xenbus.h>
#include "sluice_helpers.h"
#include "sluice_xen.h"
#include "sluice_net.h"
#include "sluice_tty.h"
#include "sluice_blkfront_shim.h"

// SPDX-License-Identifier: GPL-2.0-only
/*
 * C half of sluice-netfront: module metadata and the xenbus driver object for "vif".
 * The net_device glue is shared (kbuild/common/sluice_net.c); the driver's logic is
 * the Rust object linked next to this file (frontends/linux/netfront over
 * frontends/netfront-core).
 */
#include <linux/module.h>
#include <xen/xen.h>
#include <xen/xenbus.h>
#include "sluice_xen.h"

static int snf_probe(struct xenbus_device *dev, const struct xenbus_device_id *id)
{
	return sluice_xenbus_probe(dev);
}

static void snf_otherend_changed(struct xenbus_device *dev, enum xenbus_state state)
{
	sluice_xenbus_otherend_changed(dev, state);
}

static void snf_remove(struct xenbus_device *dev)
{
	sluice_xenbus_remove(dev);
}

static const struct xenbus_device_id snf_ids[] = {
	{ "vif" },
	{ "" }
};

static struct xenbus_driver snf_driver = {
	/*
	 * Not the default (ids[0], "vif"): xen-netfront registers under that name,
	 * and a bus takes one driver per name, so with it loaded (a root disk) this module
	 * would fail to load. A device moves between the two through sysfs unbind/bind.
	 */
	.name = "sluice-vif",
	.ids = snf_ids,
	.probe = snf_probe,
	.remove = snf_remove,
	.otherend_changed = snf_otherend_changed,
	/* Loaded as a module: insmod does not wait for vifs whose backend never connects. */
	.not_essential = true,
};

static int __init snf_init(void)
{
	if (!xen_domain())
		return -ENODEV;
	return xenbus_register_frontend(&snf_driver);
}

static void __exit snf_exit(void)
{
	xenbus_unregister_driver(&snf_driver);
}

module_init(snf_init);
module_exit(snf_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("Sluice");
MODULE_DESCRIPTION("Sluice Xen virtual network frontend (Rust, over sluice-netfront-core)");
MODULE_ALIAS("xen:vif");

// SPDX-License-Identifier: GPL-2.0-only
/*
 * C half of sluice-consfront: module metadata, the xenbus driver object for "console"
 * (secondary consoles, device/console/<n>, n >= 1) and the tty driver (lines
 * /dev/sluicecons<n>, glue in kbuild/common/sluice_tty.c). The driver's logic is the
 * Rust object linked next to this file (frontends/linux/consfront over
 * frontends/consfront-core).
 *
 * The stock kernel's hvc_xen (built in) binds every device/console/<n> first, as its
 * xenbus driver "xenconsole"; xenbus matches by device type only (no driver_override),
 * so a console is moved to this driver through the driver core's sysfs files:
 *   echo console-<n> > /sys/bus/xen/drivers/xenconsole/unbind
 *   echo console-<n> > /sys/bus/xen/drivers/sluice-consfront/bind
 */
#include <linux/module.h>
#include <xen/xen.h>
#include <xen/xenbus.h>
#include "sluice_tty.h"
#include "sluice_xen.h"

#define SCF_LINES 16

static int scf_probe(struct xenbus_device *dev, const struct xenbus_device_id *id)
{
	return sluice_xenbus_probe(dev);
}

static void scf_otherend_changed(struct xenbus_device *dev, enum xenbus_state state)
{
	sluice_xenbus_otherend_changed(dev, state);
}

static void scf_remove(struct xenbus_device *dev)
{
	sluice_xenbus_remove(dev);
}

static const struct xenbus_device_id scf_ids[] = {
	{ "console" },
	{ "" }
};

static struct xenbus_driver scf_driver = {
	.name = "sluice-consfront",
	.ids = scf_ids,
	.probe = scf_probe,
	.remove = scf_remove,
	.otherend_changed = scf_otherend_changed,
	.not_essential = true,
};

static int __init scf_init(void)
{
	int err;

	if (!xen_domain())
		return -ENODEV;
	err = sluice_tty_register("sluice-consfront", "sluicecons", SCF_LINES);
	if (err)
		return err;
	err = xenbus_register_frontend(&scf_driver);
	if (err)
		sluice_tty_unregister();
	return err;
}

static void __exit scf_exit(void)
{
	xenbus_unregister_driver(&scf_driver);
	sluice_tty_unregister();
}

module_init(scf_init);
module_exit(scf_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("Sluice");
MODULE_DESCRIPTION("Sluice Xen secondary console frontend (Rust, over sluice-consfront-core)");

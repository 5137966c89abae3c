// SPDX-License-Identifier: GPL-2.0-only
/*
 * C half of sluice-hello: module metadata and init/exit entry points; the logic is
 * the Rust object linked next to this file.
 */
#include <linux/module.h>

int sluice_hello_init(void);
void sluice_hello_exit(void);

static int __init sluice_hello_module_init(void)
{
	return sluice_hello_init();
}

static void __exit sluice_hello_module_exit(void)
{
	sluice_hello_exit();
}

module_init(sluice_hello_module_init);
module_exit(sluice_hello_module_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("Sluice");
MODULE_DESCRIPTION("Sluice smoke module: a no_std Rust object linked by Kbuild");

/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Xen glue every Sluice frontend module shares (xenbus device fields, xenstore, pages,
 * grants, event channels, the device mutex, spinlocks), as Rust's kernel crate sees it through
 * bindgen. Block- or net-specific glue stays in the module's own shim.
 */
#ifndef SLUICE_XEN_H
#define SLUICE_XEN_H

#include <linux/types.h>

struct xenbus_device;

/* --- xenbus device fields --- */
const char *sluice_xen_nodename(struct xenbus_device *dev);
const char *sluice_xen_otherend(struct xenbus_device *dev);
int sluice_xen_otherend_id(struct xenbus_device *dev);
void *sluice_xen_get_drvdata(struct xenbus_device *dev);
void sluice_xen_set_drvdata(struct xenbus_device *dev, void *data);

/* --- xenstore --- */
/* Reads `path`: a kmalloc'd NUL-terminated string (kfree it), or NULL with *err
 * (-ENOENT when the node does not exist). */
char *sluice_xs_read(const char *path, int *err);
/* Writes keys[i] = vals[i] for i < n in one transaction, retried on -EAGAIN. */
int sluice_xs_write_all(const char *const *keys, const char *const *vals, unsigned int n);

/* --- memory --- */
/* 2^order zeroed contiguous pages (GFP_NOIO where the caller may sleep, else
 * GFP_ATOMIC), or 0. */
unsigned long sluice_xen_alloc_pages(unsigned int order);
/* CPUs online. */
unsigned int sluice_xen_num_cpus(void);
void sluice_xen_free_pages(unsigned long addr, unsigned int order);
/* The Xen frame number of a kernel virtual address (virt_to_gfn). */
unsigned long sluice_xen_virt_to_gfn(unsigned long addr);

/* --- event channels: an interrupt calls sluice_xen_irq(ctx, queue) (the module's Rust
 * half, in interrupt context); unless that handled it, it queues a work item that calls
 * sluice_xen_event(ctx, queue) in process context --- */
struct sluice_evtchn;
struct sluice_evtchn *sluice_evtchn_bind(struct xenbus_device *dev, void *ctx,
					 unsigned int queue, const char *name,
					 unsigned int *port, int *err);
/* Unbinds the interrupt and closes the channel; the work item may still run once. */
void sluice_evtchn_unbind(struct sluice_evtchn *ch);
/* Waits for the work item and frees it; call without the device mutex held. */
void sluice_evtchn_free(struct sluice_evtchn *ch);
void sluice_evtchn_notify(unsigned int port);
/* Queues the channel's work item again (a driver that yields after a batch). */
void sluice_evtchn_kick(struct sluice_evtchn *ch);

/* --- a mutex (process context only) --- */
void *sluice_mutex_new(void);
void sluice_mutex_lock(void *m);
void sluice_mutex_unlock(void *m);
void sluice_mutex_free(void *m);
/* Sleeps (process context). */
void sluice_msleep(unsigned int ms);

/* --- a spinlock taken with BH disabled (process context or softirq, never hardirq) --- */
void *sluice_spin_new(void);
void sluice_spin_lock_bh(void *l);
void sluice_spin_unlock_bh(void *l);
void sluice_spin_free(void *l);
/* The same spinlock taken with interrupts disabled (any context, hardirq included). */
unsigned long sluice_spin_lock_irqsave(void *l);
void sluice_spin_unlock_irqrestore(void *l, unsigned long flags);

/* Implemented in the module's Rust half (sluice_kernel::xenbus_driver!). */
void sluice_xen_event(void *ctx, unsigned int queue);
bool sluice_xen_irq(void *ctx, unsigned int queue);
int sluice_xenbus_probe(struct xenbus_device *dev);
void sluice_xenbus_otherend_changed(struct xenbus_device *dev, int state);
void sluice_xenbus_remove(struct xenbus_device *dev);

#endif

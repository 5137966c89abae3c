// SPDX-License-Identifier: GPL-2.0-only
/*
 * Xen glue shared by Sluice's frontend modules: wrappers for the kernel's xenbus,
 * xenstore, page, grant and event-channel macros and static inlines, the
 * interrupt-to-work-item bridge, and the locks (mutex, BH spinlock). Rust calls them through sluice-kernel.
 */
#include <linux/slab.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/workqueue.h>
#include <linux/interrupt.h>
#include <linux/err.h>
#include <linux/delay.h>
#include <linux/gfp.h>
#include <linux/preempt.h>
#include <linux/cpumask.h>
#include <xen/xen.h>
#include <xen/xenbus.h>
#include <xen/events.h>
#include <xen/page.h>
#include "sluice_xen.h"

const char *sluice_xen_nodename(struct xenbus_device *dev) { return dev->nodename; }
const char *sluice_xen_otherend(struct xenbus_device *dev) { return dev->otherend; }
int sluice_xen_otherend_id(struct xenbus_device *dev) { return dev->otherend_id; }
void *sluice_xen_get_drvdata(struct xenbus_device *dev) { return dev_get_drvdata(&dev->dev); }
void sluice_xen_set_drvdata(struct xenbus_device *dev, void *data)
{
	dev_set_drvdata(&dev->dev, data);
}

char *sluice_xs_read(const char *path, int *err)
{
	char *s = xenbus_read(XBT_NIL, path, "", NULL);

	if (IS_ERR(s)) {
		*err = PTR_ERR(s);
		return NULL;
	}
	*err = 0;
	return s;
}

int sluice_xs_write_all(const char *const *keys, const char *const *vals, unsigned int n)
{
	struct xenbus_transaction xbt;
	unsigned int i;
	int err;

again:
	err = xenbus_transaction_start(&xbt);
	if (err)
		return err;
	for (i = 0; i < n; i++) {
		err = xenbus_write(xbt, keys[i], "", vals[i]);
		if (err) {
			xenbus_transaction_end(xbt, 1);
			return err;
		}
	}
	err = xenbus_transaction_end(xbt, 0);
	if (err == -EAGAIN)
		goto again;
	return err;
}

unsigned long sluice_xen_alloc_pages(unsigned int order)
{
	/* A block driver's data path allocates bounce pages under its IRQ spinlock. */
	gfp_t gfp = in_task() && preemptible() ? GFP_NOIO : GFP_ATOMIC;

	return __get_free_pages(gfp | __GFP_ZERO | __GFP_NOWARN, order);
}

unsigned int sluice_xen_num_cpus(void)
{
	return num_online_cpus();
}

void sluice_xen_free_pages(unsigned long addr, unsigned int order)
{
	free_pages(addr, order);
}

unsigned long sluice_xen_virt_to_gfn(unsigned long addr)
{
	return virt_to_gfn((void *)addr);
}

struct sluice_evtchn {
	struct work_struct work;
	void *ctx;
	unsigned int queue;
	int irq;
};

static irqreturn_t sluice_evtchn_interrupt(int irq, void *data)
{
	struct sluice_evtchn *ch = data;

	/* The driver's own interrupt-context handling (a NAPI schedule), else the work item. */
	if (!sluice_xen_irq(ch->ctx, ch->queue))
		queue_work(system_highpri_wq, &ch->work);
	return IRQ_HANDLED;
}

static void sluice_evtchn_work(struct work_struct *work)
{
	struct sluice_evtchn *ch = container_of(work, struct sluice_evtchn, work);

	sluice_xen_event(ch->ctx, ch->queue);
}

struct sluice_evtchn *sluice_evtchn_bind(struct xenbus_device *dev, void *ctx,
					 unsigned int queue, const char *name,
					 unsigned int *port, int *err)
{
	struct sluice_evtchn *ch = kzalloc(sizeof(*ch), GFP_KERNEL);
	evtchn_port_t p;

	if (!ch) {
		*err = -ENOMEM;
		return NULL;
	}
	INIT_WORK(&ch->work, sluice_evtchn_work);
	ch->ctx = ctx;
	ch->queue = queue;
	*err = xenbus_alloc_evtchn(dev, &p);
	if (*err) {
		kfree(ch);
		return NULL;
	}
	ch->irq = bind_evtchn_to_irqhandler(p, sluice_evtchn_interrupt, 0, name, ch);
	if (ch->irq < 0) {
		*err = ch->irq;
		xenbus_free_evtchn(dev, p);
		kfree(ch);
		return NULL;
	}
	*port = p;
	return ch;
}

void sluice_evtchn_unbind(struct sluice_evtchn *ch)
{
	if (ch->irq >= 0)
		unbind_from_irqhandler(ch->irq, ch);
	ch->irq = -1;
}

void sluice_evtchn_free(struct sluice_evtchn *ch)
{
	sluice_evtchn_unbind(ch);
	cancel_work_sync(&ch->work);
	kfree(ch);
}

void sluice_evtchn_notify(unsigned int port)
{
	notify_remote_via_evtchn(port);
}

void sluice_evtchn_kick(struct sluice_evtchn *ch)
{
	if (ch->irq >= 0)
		queue_work(system_highpri_wq, &ch->work);
}

void *sluice_mutex_new(void)
{
	struct mutex *m = kmalloc(sizeof(*m), GFP_KERNEL);

	if (m)
		mutex_init(m);
	return m;
}

void sluice_mutex_lock(void *m) { mutex_lock(m); }
void sluice_mutex_unlock(void *m) { mutex_unlock(m); }
void sluice_mutex_free(void *m) { kfree(m); }
void sluice_msleep(unsigned int ms) { msleep(ms); }

void *sluice_spin_new(void)
{
	spinlock_t *l = kmalloc(sizeof(*l), GFP_KERNEL);

	if (l)
		spin_lock_init(l);
	return l;
}

void sluice_spin_lock_bh(void *l) { spin_lock_bh(l); }
unsigned long sluice_spin_lock_irqsave(void *l)
{
	unsigned long flags;

	spin_lock_irqsave((spinlock_t *)l, flags);
	return flags;
}
void sluice_spin_unlock_irqrestore(void *l, unsigned long flags)
{
	spin_unlock_irqrestore((spinlock_t *)l, flags);
}
void sluice_spin_unlock_bh(void *l) { spin_unlock_bh(l); }
void sluice_spin_free(void *l) { kfree(l); }

// SPDX-License-Identifier: GPL-2.0-only
/*
 * tty glue for Sluice frontend modules (see sluice_tty.h). Each line is a tty_port with
 * a reference count: the module holds one, each installed tty one; the last put frees
 * the line. The module's slot array is looked up under a spinlock at install.
 */
#include <linux/kfifo.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/tty.h>
#include <linux/tty_driver.h>
#include <linux/tty_flip.h>
#include <linux/workqueue.h>
#include "sluice_tty.h"
#include "sluice_xen.h"

#define SLUICE_TTY_FIFO 4096

struct sluice_tty {
	struct tty_port port;
	spinlock_t lock; /* fifo and dead */
	DECLARE_KFIFO(out, u8, SLUICE_TTY_FIFO);
	bool dead;
	struct work_struct work;
	void *ctx;
	unsigned int queue;
	unsigned int index;
};

static struct tty_driver *sluice_tty_driver;
static struct sluice_tty **sluice_tty_lines;
static unsigned int sluice_tty_nlines;
static DEFINE_SPINLOCK(sluice_tty_lines_lock);

static void sluice_tty_work(struct work_struct *w)
{
	struct sluice_tty *t = container_of(w, struct sluice_tty, work);

	sluice_xen_event(t->ctx, t->queue);
}

static void sluice_tty_destruct(struct tty_port *port)
{
	kfree(container_of(port, struct sluice_tty, port));
}

static const struct tty_port_operations sluice_tty_port_ops = {
	.destruct = sluice_tty_destruct,
};

static int sluice_tty_install(struct tty_driver *drv, struct tty_struct *tty)
{
	struct sluice_tty *t = NULL;
	int err;

	spin_lock(&sluice_tty_lines_lock);
	if (tty->index >= 0 && tty->index < sluice_tty_nlines)
		t = sluice_tty_lines[tty->index];
	if (t)
		tty_port_get(&t->port);
	spin_unlock(&sluice_tty_lines_lock);
	if (!t)
		return -ENODEV;
	err = tty_port_install(&t->port, drv, tty);
	if (err) {
		tty_port_put(&t->port);
		return err;
	}
	tty->driver_data = t;
	return 0;
}

static void sluice_tty_cleanup(struct tty_struct *tty)
{
	struct sluice_tty *t = tty->driver_data;

	tty->driver_data = NULL;
	if (t)
		tty_port_put(&t->port);
}

static int sluice_tty_open(struct tty_struct *tty, struct file *filp)
{
	struct sluice_tty *t = tty->driver_data;

	return tty_port_open(&t->port, tty, filp);
}

static void sluice_tty_close(struct tty_struct *tty, struct file *filp)
{
	struct sluice_tty *t = tty->driver_data;

	tty_port_close(&t->port, tty, filp);
}

static void sluice_tty_hangup_op(struct tty_struct *tty)
{
	struct sluice_tty *t = tty->driver_data;

	tty_port_hangup(&t->port);
}

static int sluice_tty_write(struct tty_struct *tty, const u8 *buf, int count)
{
	struct sluice_tty *t = tty->driver_data;
	unsigned long flags;
	int n;

	spin_lock_irqsave(&t->lock, flags);
	n = t->dead ? -EIO : kfifo_in(&t->out, buf, count);
	spin_unlock_irqrestore(&t->lock, flags);
	if (n > 0)
		schedule_work(&t->work);
	return n;
}

static unsigned int sluice_tty_write_room(struct tty_struct *tty)
{
	struct sluice_tty *t = tty->driver_data;
	unsigned long flags;
	unsigned int n;

	spin_lock_irqsave(&t->lock, flags);
	n = t->dead ? 0 : kfifo_avail(&t->out);
	spin_unlock_irqrestore(&t->lock, flags);
	return n;
}

static unsigned int sluice_tty_chars_in_buffer(struct tty_struct *tty)
{
	return sluice_tty_pending(tty->driver_data);
}

static const struct tty_operations sluice_tty_ops = {
	.install = sluice_tty_install,
	.cleanup = sluice_tty_cleanup,
	.open = sluice_tty_open,
	.close = sluice_tty_close,
	.hangup = sluice_tty_hangup_op,
	.write = sluice_tty_write,
	.write_room = sluice_tty_write_room,
	.chars_in_buffer = sluice_tty_chars_in_buffer,
};

int sluice_tty_register(const char *driver_name, const char *name, unsigned int lines)
{
	struct tty_driver *drv;
	int err;

	sluice_tty_lines = kcalloc(lines, sizeof(*sluice_tty_lines), GFP_KERNEL);
	if (!sluice_tty_lines)
		return -ENOMEM;
	drv = tty_alloc_driver(lines, TTY_DRIVER_REAL_RAW | TTY_DRIVER_DYNAMIC_DEV |
				      TTY_DRIVER_RESET_TERMIOS);
	if (IS_ERR(drv)) {
		kfree(sluice_tty_lines);
		return PTR_ERR(drv);
	}
	drv->driver_name = driver_name;
	drv->name = name;
	drv->major = 0;
	drv->type = TTY_DRIVER_TYPE_SYSTEM;
	drv->subtype = SYSTEM_TYPE_TTY;
	drv->init_termios = tty_std_termios;
	tty_set_operations(drv, &sluice_tty_ops);
	err = tty_register_driver(drv);
	if (err) {
		tty_driver_kref_put(drv);
		kfree(sluice_tty_lines);
		return err;
	}
	sluice_tty_driver = drv;
	sluice_tty_nlines = lines;
	return 0;
}

void sluice_tty_unregister(void)
{
	tty_unregister_driver(sluice_tty_driver);
	tty_driver_kref_put(sluice_tty_driver);
	kfree(sluice_tty_lines);
	sluice_tty_nlines = 0;
}

struct sluice_tty *sluice_tty_new(void *ctx, unsigned int queue, unsigned int index, int *err)
{
	struct sluice_tty *t;
	struct device *dev;

	if (index >= sluice_tty_nlines) {
		*err = -EINVAL;
		return NULL;
	}
	t = kzalloc(sizeof(*t), GFP_KERNEL);
	if (!t) {
		*err = -ENOMEM;
		return NULL;
	}
	tty_port_init(&t->port);
	t->port.ops = &sluice_tty_port_ops;
	spin_lock_init(&t->lock);
	INIT_KFIFO(t->out);
	INIT_WORK(&t->work, sluice_tty_work);
	t->ctx = ctx;
	t->queue = queue;
	t->index = index;
	spin_lock(&sluice_tty_lines_lock);
	if (sluice_tty_lines[index]) {
		spin_unlock(&sluice_tty_lines_lock);
		tty_port_put(&t->port);
		*err = -EBUSY;
		return NULL;
	}
	sluice_tty_lines[index] = t;
	spin_unlock(&sluice_tty_lines_lock);
	dev = tty_port_register_device(&t->port, sluice_tty_driver, index, NULL);
	if (IS_ERR(dev)) {
		spin_lock(&sluice_tty_lines_lock);
		sluice_tty_lines[index] = NULL;
		spin_unlock(&sluice_tty_lines_lock);
		*err = PTR_ERR(dev);
		tty_port_put(&t->port);
		return NULL;
	}
	return t;
}

void sluice_tty_free(struct sluice_tty *t)
{
	unsigned long flags;

	spin_lock(&sluice_tty_lines_lock);
	sluice_tty_lines[t->index] = NULL;
	spin_unlock(&sluice_tty_lines_lock);
	spin_lock_irqsave(&t->lock, flags);
	t->dead = true;
	spin_unlock_irqrestore(&t->lock, flags);
	tty_unregister_device(sluice_tty_driver, t->index);
	tty_port_tty_hangup(&t->port, false);
	cancel_work_sync(&t->work);
	tty_port_put(&t->port);
}

unsigned int sluice_tty_take(struct sluice_tty *t, u8 *buf, unsigned int max)
{
	unsigned long flags;
	unsigned int n;

	spin_lock_irqsave(&t->lock, flags);
	n = kfifo_out(&t->out, buf, max);
	spin_unlock_irqrestore(&t->lock, flags);
	if (n)
		tty_port_tty_wakeup(&t->port);
	return n;
}

unsigned int sluice_tty_pending(struct sluice_tty *t)
{
	unsigned long flags;
	unsigned int n;

	spin_lock_irqsave(&t->lock, flags);
	n = kfifo_len(&t->out);
	spin_unlock_irqrestore(&t->lock, flags);
	return n;
}

unsigned int sluice_tty_room(struct sluice_tty *t, unsigned int want)
{
	int n = tty_buffer_request_room(&t->port, want);

	return n > 0 ? n : 0;
}

unsigned int sluice_tty_push(struct sluice_tty *t, const u8 *buf, unsigned int len)
{
	int n = tty_insert_flip_string(&t->port, buf, len);

	if (n > 0)
		tty_flip_buffer_push(&t->port);
	return n > 0 ? n : 0;
}

void sluice_tty_hangup(struct sluice_tty *t)
{
	tty_port_tty_hangup(&t->port, false);
}

/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * tty glue a Sluice frontend module links to expose its devices as tty lines
 * (/dev/<name><index>) of one tty driver. A tty's write may not sleep, so it only
 * queues bytes in the line's fifo and queues the line's work item, which calls
 * sluice_xen_event(ctx, queue) (the module's Rust half) in process context; that takes
 * the bytes with sluice_tty_take. Input goes to the line with sluice_tty_push.
 */
#ifndef SLUICE_TTY_H
#define SLUICE_TTY_H

#include <linux/types.h>

struct sluice_tty;

/* The module's tty driver: `lines` lines named `name`<index> (module init/exit). */
int sluice_tty_register(const char *driver_name, const char *name, unsigned int lines);
void sluice_tty_unregister(void);

/* Line `index` (its device node appears); writes kick sluice_xen_event(ctx, queue).
 * NULL with *err: -EBUSY (line taken), -EINVAL (index out of range), -ENOMEM, ... */
struct sluice_tty *sluice_tty_new(void *ctx, unsigned int queue, unsigned int index, int *err);
/* Removes the line: device node gone, open ttys hung up (their writes fail), work item
 * waited for. Call without a lock the work item takes. */
void sluice_tty_free(struct sluice_tty *t);
/* Takes up to `max` queued output bytes into buf; wakes writers when it took any. */
unsigned int sluice_tty_take(struct sluice_tty *t, u8 *buf, unsigned int max);
/* Output bytes queued. */
unsigned int sluice_tty_pending(struct sluice_tty *t);
/* Room for up to `want` input bytes (reserved in the flip buffer). */
unsigned int sluice_tty_room(struct sluice_tty *t, unsigned int want);
/* Delivers input bytes (after sluice_tty_room); returns how many the tty took. */
unsigned int sluice_tty_push(struct sluice_tty *t, const u8 *buf, unsigned int len);
/* Hangs up the line's open ttys (the device failed or closed). */
void sluice_tty_hangup(struct sluice_tty *t);

#endif

/*
 * resolve — putting one missing page into an address space through its
 * userfaultfd: the stored copy (an exclusive load) or zeros.  The handler
 * does this for the program and for the forked children it serves, and
 * reads their messages through a backlog: placing the pages of an mremap
 * the store could not follow means reading ahead of the one it handles.
 */
#ifndef ZSWAPU_RESOLVE_H
#define ZSWAPU_RESOLVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/uffd.h"

struct store;

/*
 * resolve_stored() : load the page stored at @addr into @buf (a page) and
 * copy it in.  @return 0 done (also when the page or the mapping turned
 * out to be there already or gone: the stored copy is dead either way);
 * -ENOENT nothing stored; -EAGAIN an event is pending, retry after
 * reading it (the entry stays); other -errno: the load failed (the entry
 * stays).
 */
int resolve_stored(struct uffd *u, struct store *s, void *buf, uintptr_t addr);

/*
 * resolve_stored_ahead() : resolve_stored() for @addr and, in the same
 * UFFDIO_COPY, up to @ahead following pages that are stored too (stopping
 * at the first that is not), decompressed into @buf, which holds
 * 1 + @ahead pages.  @return as resolve_stored() for @addr; *@extra gets
 * how many pages after it went in.
 */
#define RESOLVE_AHEAD_MAX 15
int resolve_stored_ahead(struct uffd *u, struct store *s, void *buf, uintptr_t addr,
			 unsigned int ahead, unsigned int *extra);

/*
 * resolve_zero() : a page never stored: the zero page for a read, a
 * zeroed writable page for a write (so the write does not fault again).
 * @return 0 (also when already there or gone), -EAGAIN, other -errno.
 */
int resolve_zero(struct uffd *u, const void *zero, uintptr_t addr, bool write);

/*
 * A uffd's messages read and not yet handled, oldest first.  The thread
 * that reads the uffd reads into it and pops them one at a time;
 * resolve_unmoved(), called for one of them, reads more into it while it
 * waits and looks at what is there: all of it came after.
 */
#define RESOLVE_BACKLOG_MAX 128
struct orphan_slot;

struct resolve_backlog {
	unsigned int head, n; /* m[head, head + n) */
	unsigned int forks;   /* fork events among them: resolve_backlog_drain() */
	/* the program's uffd: its fork events take their fork's pair
	 * (core/orphan.h), kept in the message (resolve_fork_pair());
	 * NULL for a child's */
	struct orphan_slot *orphans;
	struct uffd_msg m[RESOLVE_BACKLOG_MAX];
};

/* resolve_fork_pair() : a fork event's orphan pair (0: none), in bytes
 * the kernel leaves zero in that message. */
static inline uint64_t resolve_fork_pair(const struct uffd_msg *m)
{
	return m->arg.reserved.reserved2;
}

/*
 * resolve_backlog_read() : read up to @max messages from @fd (non-blocking)
 * behind those @b holds.  @return messages read; 0 for none or no room;
 * -errno of the read (-EAGAIN: none waiting).  A fork event's descriptor
 * is moved out of the low numbers (fdguard_adopt()) before it returns; a
 * discard (REMOVE) right behind an identical one is not kept.
 */
ssize_t resolve_backlog_read(struct resolve_backlog *b, int fd, unsigned int max);

/*
 * resolve_inject_fork_read_hold() : tests: the next read that brings a fork
 * event waits @ms between the read and adopting its descriptor, or with
 * @adopted after adopting it (before the event is handled): the windows
 * fdguard_arrival_begin() covers.
 */
void resolve_inject_fork_read_hold(unsigned int ms, bool adopted);

/*
 * resolve_inject_unmap_read_hold() : tests: the next read that brings an
 * unmap event waits @ms before its messages are handled (the munmap has
 * returned by then).
 */
void resolve_inject_unmap_read_hold(unsigned int ms);

/* resolve_backlog_pop() : the oldest message into *@out; false when empty. */
bool resolve_backlog_pop(struct resolve_backlog *b, struct uffd_msg *out);

/*
 * resolve_backlog_drain() : pop every message of @b and hand it to @fn,
 * a page fault only once the fork events still in @b are handled (then
 * at once, in the order they came).  The kernel copied a child's page
 * tables, with every stored page missing, before it let its fork event be
 * read; a fault resolved from the store between that read and the
 * handling of the event took its page out of the store before the
 * child's view of it was made, and the child read zeros there (28 of 100
 * children forked while three threads read stored pages; the tortures
 * park their workers around each fork).  Resolved after the event, the
 * page is in both.  @fn may read more into @b (resolve_unmoved()).
 */
typedef void (*resolve_msg_fn)(void *arg, const struct uffd_msg *m);
void resolve_backlog_drain(struct resolve_backlog *b, resolve_msg_fn fn, void *arg);

/*
 * resolve_unmoved() : after an mremap of [@from, @from + @len) to @to that
 * store_move() could not follow (-ENOMEM), put each page still stored in
 * the old range in at its new address, decompressed through @buf.  Only
 * from the thread that read the mremap event, before it handles anything
 * read after it (@b): nothing else may look at the old range meanwhile.
 *
 * Copies are refused until every event queued has been read, and the
 * munmap of the old range comes as one right after: so it reads what
 * waits into @b, to be handled next.  A page that a message in @b unmaps
 * or discards at its new address is dropped (as the program would have
 * it).  Pages that cannot go in are dropped and said on stderr:
 * unreadable ones, and all that are left when @b is full, when the copies
 * are still refused after a while, or when a message in @b moves the new
 * range again or forks the process (the child would miss them).
 * @return pages put in.
 */
size_t resolve_unmoved(struct uffd *u, struct store *s, void *buf, uintptr_t from,
		       uintptr_t to, size_t len, struct resolve_backlog *b);

#endif

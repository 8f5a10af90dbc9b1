/*
 * resolve — see resolve.h.
 */
#include "core/resolve.h"

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/fdguard.h"
#include "core/orphan.h"
#include "core/log.h"
#include "core/stats.h"
#include "core/store.h"
#include "core/uffd.h"

#define PAGE 4096UL
/*
 * Copies are refused (-EAGAIN) while an event is queued, and after it is
 * read until the thread that raised it has run (the kernel's
 * mmap_changing): a scheduling round once the events are read.
 */
#define UNMOVED_WAIT_NS (100ull * 1000 * 1000)

/*
 * A copy that failed with -EEXIST (a newer page is already there) or
 * -ENOENT/-ESRCH (the mapping or the process is gone) leaves nothing to
 * keep: the page's place is settled either way.
 */
static bool settled(int err)
{
	return err == -EEXIST || err == -ENOENT || err == -ESRCH;
}

int resolve_stored(struct uffd *u, struct store *s, void *buf, uintptr_t addr)
{
	struct store_load ld;
	int err = store_load_begin(s, addr, buf, &ld);
	if (err)
		return err;
	err = uffd_copy(u, addr, buf, PAGE, false);
	if (err == -EAGAIN) {
		store_load_end(s, addr, &ld, false);
		return err;
	}
	bool ok = err == 0 || settled(err); /* else the stored copy is still needed */
	store_load_end(s, addr, &ld, ok);
	if (err == -EEXIST)
		uffd_wake(u, addr, PAGE);
	return ok ? 0 : err;
}

int resolve_stored_ahead(struct uffd *u, struct store *s, void *buf, uintptr_t addr,
			 unsigned int ahead, unsigned int *extra)
{
	*extra = 0;
	if (ahead == 0)
		return resolve_stored(u, s, buf, addr);
	if (ahead > RESOLVE_AHEAD_MAX)
		ahead = RESOLVE_AHEAD_MAX;
	struct store_load ld[1 + RESOLVE_AHEAD_MAX];
	int err = store_load_begin(s, addr, buf, &ld[0]);
	if (err)
		return err;
	unsigned int n = 1;
	while (n <= ahead &&
	       store_load_begin(s, addr + n * PAGE, (uint8_t *)buf + n * PAGE, &ld[n]) == 0)
		n++;
	size_t copied;
	err = uffd_copy_partial(u, addr, buf, n * PAGE, false, &copied);
	/*
	 * The kernel copies a range only within one mapping: one that runs past
	 * the mapping's end gets -ENOENT before anything is copied, and the
	 * window can reach into the next mapping (glibc's heap is several,
	 * registered one by one).  That says nothing of the faulting page: it
	 * goes in alone and the rest stay stored.  Taken for "the mapping is
	 * gone", the page was dropped and its thread never woken
	 * (tests/integration/mallocchurn hung on it).
	 */
	if (err == -ENOENT && copied == 0 && n > 1) {
		while (n > 1) {
			n--;
			store_load_end(s, addr + n * PAGE, &ld[n], false);
		}
		err = uffd_copy_partial(u, addr, buf, PAGE, false, &copied);
	}
	unsigned int in = (unsigned int)(copied / PAGE);
	if (err == -EAGAIN && in == 0) {
		for (unsigned int i = 0; i < n; i++)
			store_load_end(s, addr + i * PAGE, &ld[i], false);
		return err;
	}
	/* the pages after the ones that went in stay stored */
	bool ok0 = in > 0 || settled(err);
	for (unsigned int i = 0; i < n; i++)
		store_load_end(s, addr + i * PAGE, &ld[i], i < in || (i == 0 && ok0));
	if (in == 0 && err == -EEXIST)
		uffd_wake(u, addr, PAGE);
	*extra = in > 1 ? in - 1 : 0;
	return ok0 ? 0 : err;
}

int resolve_zero(struct uffd *u, const void *zero, uintptr_t addr, bool write)
{
	int err = write ? uffd_copy(u, addr, zero, PAGE, false) : uffd_zeropage(u, addr, PAGE, false);
	if (err == -EEXIST)
		uffd_wake(u, addr, PAGE);
	return settled(err) ? 0 : err;
}

/* A test's hold: raw, since TSan's nanosleep() takes a lock its fork()
 * holds, and a fork may wait for this thread. */
static void hold_ms(unsigned int ms)
{
	if (!ms)
		return;
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };
	syscall(SYS_nanosleep, &ts, NULL);
}

static _Atomic unsigned int fork_read_hold_ms;
static _Atomic bool fork_read_hold_adopted;

void resolve_inject_fork_read_hold(unsigned int ms, bool adopted)
{
	atomic_store(&fork_read_hold_adopted, adopted);
	atomic_store(&fork_read_hold_ms, ms);
}

/* the test's windows: a fork event read, its descriptor not yet adopted
 * (or adopted, not yet listed) */
static void hold_fork_read(bool adopted)
{
	if (atomic_load_explicit(&fork_read_hold_ms, memory_order_relaxed) == 0 ||
	    atomic_load(&fork_read_hold_adopted) != adopted)
		return;
	hold_ms(atomic_exchange(&fork_read_hold_ms, 0));
}

static _Atomic unsigned int unmap_read_hold_ms;

void resolve_inject_unmap_read_hold(unsigned int ms)
{
	atomic_store(&unmap_read_hold_ms, ms);
}

static void hold_unmap_read(const struct uffd_msg *m, unsigned int n)
{
	if (atomic_load_explicit(&unmap_read_hold_ms, memory_order_relaxed) == 0)
		return;
	for (unsigned int i = 0; i < n; i++)
		if (m[i].event == UFFD_EVENT_UNMAP) {
			hold_ms(atomic_exchange(&unmap_read_hold_ms, 0));
			return;
		}
}

ssize_t resolve_backlog_read(struct resolve_backlog *b, int fd, unsigned int max)
{
	if (b->head + b->n + max > RESOLVE_BACKLOG_MAX) {
		memmove(b->m, b->m + b->head, b->n * sizeof(b->m[0]));
		b->head = 0;
	}
	if (max > RESOLVE_BACKLOG_MAX - b->n)
		max = RESOLVE_BACKLOG_MAX - b->n;
	if (!max)
		return 0;
	struct uffd_msg *m = &b->m[b->head + b->n];
	fdguard_arrival_begin();
	ssize_t r = read(fd, m, max * sizeof(b->m[0]));
	if (r < 0) {
		int err = -errno;
		fdguard_arrival_end(0);
		return err;
	}
	unsigned int got = (unsigned int)(r / (ssize_t)sizeof(b->m[0])), kept = 0;
	/* The read installed a fork event's descriptor at the lowest free
	 * number, and the forking thread runs on: out of the program's way
	 * now, not when the event's turn comes. */
	unsigned int forks = 0;
	for (unsigned int i = 0; i < got; i++) {
		if (m[i].event != UFFD_EVENT_FORK)
			continue;
		if (!forks++)
			hold_fork_read(false);
		m[i].arg.fork.ufd = (uint32_t)fdguard_adopt((int)m[i].arg.fork.ufd);
		/* its fork waits in orphan_parent() until this is taken */
		if (b->orphans)
			m[i].arg.reserved.reserved2 = orphan_take(b->orphans, (int)m[i].arg.fork.ufd);
	}
	fdguard_arrival_end(forks); /* each listed by children_fork() */
	if (forks)
		hold_fork_read(true);
	hold_unmap_read(m, got);
	for (unsigned int i = 0; i < got; i++) {
		/* A discard right behind the same discard changes nothing (no
		 * page came in between: that would be a fault, or one of our
		 * copies, which wait while messages are read ahead).  A thread
		 * discarding in a loop while resolve_unmoved() read ahead
		 * filled the backlog: the pages still to go in were lost. */
		const struct uffd_msg *prev = kept ? &m[kept - 1]
					    : b->n ? &b->m[b->head + b->n - 1] : NULL;
		if (prev && m[i].event == UFFD_EVENT_REMOVE && prev->event == UFFD_EVENT_REMOVE &&
		    prev->arg.remove.start == m[i].arg.remove.start &&
		    prev->arg.remove.end == m[i].arg.remove.end)
			continue;
		b->forks += m[i].event == UFFD_EVENT_FORK;
		m[kept++] = m[i];
	}
	b->n += kept;
	return got;
}

bool resolve_backlog_pop(struct resolve_backlog *b, struct uffd_msg *out)
{
	if (!b->n)
		return false;
	*out = b->m[b->head++];
	b->forks -= out->event == UFFD_EVENT_FORK;
	if (!--b->n)
		b->head = 0;
	return true;
}

void resolve_backlog_drain(struct resolve_backlog *b, resolve_msg_fn fn, void *arg)
{
	struct uffd_msg m, later[RESOLVE_BACKLOG_MAX];
	unsigned int nl = 0;
	while (resolve_backlog_pop(b, &m)) {
		if (b->forks && m.event == UFFD_EVENT_PAGEFAULT && nl < RESOLVE_BACKLOG_MAX) {
			later[nl++] = m;
			continue;
		}
		fn(arg, &m);
		for (unsigned int i = 0; !b->forks && i < nl; i++)
			fn(arg, &later[i]);
		if (!b->forks)
			nl = 0;
	}
}

/* What the messages read after the mremap say of the page going in at @dst. */
enum later { LATER_NONE, LATER_GONE, LATER_CANCEL };

/*
 * LATER_GONE: a later munmap or discard covers @dst, which is then to read
 * as the program left it (not there, or zeros): the page is dropped, not
 * lost.  LATER_CANCEL: the new range moves again, or the process forks (a
 * child would miss what goes in now).
 */
static enum later later_for(const struct resolve_backlog *b, uintptr_t to, size_t len,
			    uintptr_t dst)
{
	enum later v = LATER_NONE;
	for (unsigned int i = b->head; i < b->head + b->n; i++) {
		const struct uffd_msg *m = &b->m[i];
		switch (m->event) {
		case UFFD_EVENT_FORK:
			return LATER_CANCEL;
		case UFFD_EVENT_REMAP:
			if (m->arg.remap.from < to + len && m->arg.remap.from + m->arg.remap.len > to)
				return LATER_CANCEL;
			break;
		case UFFD_EVENT_REMOVE:
		case UFFD_EVENT_UNMAP:
			if (m->arg.remove.start <= dst && dst < m->arg.remove.end)
				v = LATER_GONE;
			break;
		default:
			break;
		}
	}
	return v;
}

/*
 * Copy @buf in at @dst; while refused, read what waits into @b.
 * -ECANCELED and -ESTALE: what later_for() says, seen before the copy.
 */
static int copy_deferring(struct uffd *u, uintptr_t dst, const void *buf, uintptr_t to,
			  size_t len, struct resolve_backlog *b, uint64_t *deadline)
{
	for (;;) {
		switch (later_for(b, to, len, dst)) {
		case LATER_CANCEL:
			return -ECANCELED;
		case LATER_GONE:
			return -ESTALE;
		case LATER_NONE:
			break;
		}
		int err = uffd_copy(u, dst, buf, PAGE, false);
		if (err != -EAGAIN)
			return err;
		uint64_t t = stats_now_ns();
		if (!*deadline)
			*deadline = t + UNMOVED_WAIT_NS;
		if (t >= *deadline || b->n == RESOLVE_BACKLOG_MAX)
			return err;
		/* none to read: read, but its thread has yet to run and say so */
		if (resolve_backlog_read(b, u->fd, RESOLVE_BACKLOG_MAX) <= 0)
			sched_yield();
	}
}

size_t resolve_unmoved(struct uffd *u, struct store *s, void *buf, uintptr_t from,
		       uintptr_t to, size_t len, struct resolve_backlog *b)
{
	size_t placed = 0, dropped = 0;
	uint64_t deadline = 0;
	uintptr_t a, at = from, end = from + len;
	while (store_first(s, at, end, &a) == 0) {
		at = a + PAGE; /* one that cannot be read stays for the sweep below */
		struct store_load ld;
		if (store_load_begin(s, a, buf, &ld))
			continue;
		int err = copy_deferring(u, a - from + to, buf, to, len, b, &deadline);
		/* taken out whatever came of it: the old address is not its own
		 * (one the program discarded since counts as invalidated) */
		store_load_end(s, a, &ld, err != -ESTALE);
		if (err == -ESTALE)
			store_invalidate(s, a, PAGE);
		if (err == -EEXIST)
			uffd_wake(u, a - from + to, PAGE);
		/* -ESTALE: the program unmapped or discarded it since */
		if (!err)
			placed++;
		else if (!settled(err) && err != -ESTALE)
			dropped++;
		if (err == -EAGAIN || err == -ECANCELED)
			break;
	}
	/* what is left could not go in: dropped, not handed to a new mapping */
	size_t lost = dropped + store_invalidate(s, from, len);
	if (lost)
		log_error("%zu stored pages lost in an mremap: no memory for their entries, "
			  "and they could not be put in at the new address", lost);
	return placed;
}

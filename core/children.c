/*
 * children — see children.h.
 *
 * A child's descriptor only ever sees that child: its faults are resolved
 * against its view (an exclusive load, as for the program), pages it never
 * had stored read as zeros, its REMOVE/UNMAP events drop view entries, its
 * REMAP events move them, its own forks take on grandchildren with a view
 * of its view.  The kernel gives no sign when a child exits or execs, but
 * an ioctl on its descriptor then fails with ESRCH: children_reap() probes
 * each child with a zero-page request at mmap_min_addr, an address no
 * program maps, and drops the views of the dead.
 */
#include "core/children.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fdguard.h"
#include "core/log.h"
#include "core/orphan.h"
#include "core/resolve.h"
#include "core/stats.h"
#include "core/index.h"
#include "core/store.h"
#include "pools/pagesrc.h"

#define PAGE 4096UL
#define MSGS 32
#define CHILD_RETRY_MAX 128

struct child_retry {
	uintptr_t addr;
	bool write;
};

struct child {
	struct uffd u;
	struct store *store;
	bool dead;
	struct orphan_log log; /* what it is owed, should this process die (orphan.h) */
	unsigned int nretry;
	struct child_retry retry[CHILD_RETRY_MAX];
	struct stats stats; /* the view's own gauges: its data is the root's */
};

#define CHILD_PAGES ((sizeof(struct child) + PAGE - 1) / PAGE)

/*
 * The list is the handler's alone, but a fork by another program thread
 * copies it at any moment, and the forked child closes the descriptors it
 * finds there (children_forget()).  So every state an edit passes through
 * is one it can close from: an entry is written before n counts it
 * (set_n()), and a child is freed only after n no longer does.  In
 * between an entry may stand twice; its second close finds the descriptor
 * closed (uffd_close() leaves -1).
 * (Freed first, and counted before it was written: under TSan a forked
 * child met a NULL entry, crashed in its atfork handler, and torture_fork_wp
 * counted its copy as a mismatch.)
 */
struct children {
	struct child *c[CHILDREN_MAX];
	size_t n; /* stored with set_n() */
	uint8_t *buf;  /* decompression page */
	uint8_t *zero; /* a zero page for write faults */
	uintptr_t probe;
	bool warned;
	struct resolve_backlog backlog; /* the messages of the child being served */
	struct children_counters cnt;
	children_new_fn on_new; /* children_on_new() */
	void *on_new_arg;
};

static void set_n(struct children *c, size_t n)
{
	__atomic_store_n(&c->n, n, __ATOMIC_RELEASE);
}

static void count(_Atomic uint64_t *c)
{
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

int children_create(struct children **out)
{
	struct children *c;
	int err = pagesrc_alloc((sizeof(*c) + PAGE - 1) / PAGE, (void **)&c);
	if (err)
		return err;
	memset(c, 0, sizeof(*c));
	err = pagesrc_alloc(2, (void **)&c->buf);
	if (err) {
		pagesrc_free(c, (sizeof(*c) + PAGE - 1) / PAGE);
		return err;
	}
	c->zero = c->buf + PAGE;
	memset(c->zero, 0, PAGE);
	/* the lowest address mmap may ever hand out; 64 KiB unless changed */
	c->probe = 65536;
	int fd = open("/proc/sys/vm/mmap_min_addr", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		char b[32];
		ssize_t n = read(fd, b, sizeof(b) - 1);
		if (n > 0) {
			b[n] = 0;
			unsigned long v = strtoul(b, NULL, 10);
			c->probe = (v + PAGE - 1) & ~(PAGE - 1);
		}
		close(fd);
	}
	if (c->probe == 0)
		c->probe = PAGE;
	*out = c;
	return 0;
}

void children_destroy(struct children *c)
{
	if (!c)
		return;
	pagesrc_free(c->buf, 2);
	pagesrc_free(c, (sizeof(*c) + PAGE - 1) / PAGE);
}

static void child_free(struct child *ch)
{
	orphan_log_close(&ch->log, NULL);
	store_destroy(ch->store);
	uffd_close(&ch->u);
	pagesrc_free(ch, CHILD_PAGES);
}

/*
 * Copy every page of @s but those in @absent (NULL: none) into the child
 * behind @u.  With @consume the entries go (the child's own view);
 * without, @s is someone else's store and keeps them.  Stops at the first
 * error other than "already there".
 */
static int fill(struct children *c, struct uffd *u, struct store *s, struct region_set *absent,
		bool consume)
{
	uintptr_t addr = 0, as, ae;
	while (store_first(s, addr, INDEX_ADDR_LIMIT, &addr) == 0) {
		if (absent && region_next(absent, addr, &as, &ae) && as == addr) {
			addr = ae;
			continue;
		}
		int err;
		if (consume) {
			err = resolve_stored(u, s, c->buf, addr);
		} else {
			struct store_load ld;
			err = store_load_begin(s, addr, c->buf, &ld);
			if (!err) {
				err = uffd_copy(u, addr, c->buf, PAGE, false);
				store_load_end(s, addr, &ld, false);
				if (err == -EEXIST || err == -ENOENT)
					err = 0;
			}
		}
		if (err == -EAGAIN) /* the child is changing its mappings: later */
			return err;
		if (err && err != -ENOENT)
			return err;
		addr += PAGE;
	}
	return 0;
}

void children_fork(struct children *c, int fd, const struct uffd *from, struct store *src,
		   struct region_set *absent, uint64_t orphan, children_staged_fn staged,
		   void *staged_arg)
{
	struct uffd u;
	uffd_from_fd(fd, from->features, &u);
	struct child *ch = NULL;
	int err = c->n == CHILDREN_MAX ? -ENOSPC
				       : pagesrc_alloc(CHILD_PAGES, (void **)&ch) ? -ENOMEM : 0;
	if (!err) {
		memset(ch, 0, sizeof(*ch));
		ch->u = u;
		stats_init(&ch->stats);
		err = store_fork(src, &ch->stats, &ch->store);
		if (err)
			pagesrc_free(ch, CHILD_PAGES);
	}
	/* what the child does not have, its view does not hold */
	uintptr_t s, e;
	for (uintptr_t a = 0; !err && absent && region_next(absent, a, &s, &e); a = e)
		store_invalidate(ch->store, s, e - s);
	if (staged)
		staged(staged_arg, &u);
	if (err) {
		/* The child is not running yet (the kernel waits for this
		 * event before it starts it), so a full copy now is exact;
		 * it needs no memory but the decompression page. */
		if (!c->warned) {
			log_warn("cannot keep serving a forked child (%s): copying its pages now",
				 err == -ENOSPC ? "too many children" : "no memory");
			c->warned = true;
		}
		/* counted first: the child may be done, and its parent looking,
		 * before fill() returns */
		count(&c->cnt.refused);
		int ferr = fill(c, &u, src, absent, false);
		if (ferr && ferr != -ESRCH) /* ESRCH: it has exec'd or exited: nothing to read */
			log_error("copying pages into a forked child failed: it may read zeros");
		/* it owes the child nothing more (what could not go in is lost
		 * either way); the child stops watching */
		struct orphan_log ol;
		orphan_log_open(&ol, orphan, NULL);
		orphan_log_close(&ol, NULL);
		uffd_close(&u);
		fdguard_arrival_listed();
		return;
	}
	orphan_log_open(&ch->log, orphan, store_index(ch->store));
	c->c[c->n] = ch;
	set_n(c, c->n + 1);
	fdguard_arrival_listed(); /* a fork copies it from the list now */
	count(&c->cnt.forks);
	if (c->on_new)
		c->on_new(c->on_new_arg, ch->u.fd);
}

void children_on_new(struct children *c, children_new_fn fn, void *arg)
{
	c->on_new = fn;
	c->on_new_arg = arg;
}

size_t children_pollfds(struct children *c, struct pollfd *p, size_t max)
{
	size_t n = c->n < max ? c->n : max;
	for (size_t i = 0; i < n; i++)
		p[i] = (struct pollfd){ .fd = c->c[i]->u.fd, .events = POLLIN };
	return n;
}

static void queue_retry(struct child *ch, uintptr_t addr, bool write)
{
	if (ch->nretry < CHILD_RETRY_MAX)
		ch->retry[ch->nretry++] = (struct child_retry){ addr, write };
	else /* dropped: wake the thread so that it faults again */
		uffd_wake(&ch->u, addr, PAGE);
}

static void child_fault(struct children *c, struct child *ch, uintptr_t addr, bool write)
{
	addr &= ~(PAGE - 1);
	int err = resolve_stored(&ch->u, ch->store, c->buf, addr);
	if (err == 0)
		count(&c->cnt.faults_store);
	else if (err == -ENOENT)
		err = resolve_zero(&ch->u, c->zero, addr, write);
	if (err == -EAGAIN) {
		queue_retry(ch, addr, write);
		return;
	}
	count(&c->cnt.faults);
	if (err == -ESRCH) {
		ch->dead = true;
	} else if (err) {
		/* the page cannot be had (a corrupt object): the child must not
		 * hang on it; zeros are all there is */
		log_error("a forked child's page at %#lx cannot be loaded (%s)", (unsigned long)addr,
			  strerrordesc_np(-err) ? strerrordesc_np(-err) : "error");
		resolve_zero(&ch->u, c->zero, addr, write);
	}
}

static void drop_retries(struct child *ch, uintptr_t start, uintptr_t end)
{
	unsigned int k = 0;
	for (unsigned int i = 0; i < ch->nretry; i++) {
		if (ch->retry[i].addr >= start && ch->retry[i].addr < end)
			uffd_wake(&ch->u, ch->retry[i].addr, PAGE);
		else
			ch->retry[k++] = ch->retry[i];
	}
	ch->nretry = k;
}

static void child_msg(struct children *c, struct child *ch, const struct uffd_msg *m)
{
	switch (m->event) {
	case UFFD_EVENT_PAGEFAULT:
		if (m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) {
			/* fork copied the parent's write-protected pages (WP
			 * detach) with their protection; the child's are its own */
			uintptr_t a = m->arg.pagefault.address & ~(PAGE - 1);
			int err = uffd_writeprotect(&ch->u, a, PAGE, false, false);
			if (err == -EAGAIN)
				queue_retry(ch, a, true);
			else if (err)
				uffd_wake(&ch->u, a, PAGE);
			break;
		}
		child_fault(c, ch, m->arg.pagefault.address,
			    m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE);
		break;
	case UFFD_EVENT_REMOVE:
	case UFFD_EVENT_UNMAP:
		drop_retries(ch, m->arg.remove.start, m->arg.remove.end);
		store_invalidate(ch->store, m->arg.remove.start,
				 m->arg.remove.end - m->arg.remove.start);
		orphan_log_drop(&ch->log, m->arg.remove.start, m->arg.remove.end);
		break;
	case UFFD_EVENT_REMAP:
		drop_retries(ch, m->arg.remap.from, m->arg.remap.from + m->arg.remap.len);
		orphan_log_move(&ch->log, m->arg.remap.from, m->arg.remap.to, m->arg.remap.len);
		if (store_move(ch->store, m->arg.remap.from, m->arg.remap.to,
			       m->arg.remap.len) == -ENOMEM)
			atomic_fetch_add_explicit(&c->cnt.remap_placed,
						  resolve_unmoved(&ch->u, ch->store, c->buf,
								  m->arg.remap.from, m->arg.remap.to,
								  m->arg.remap.len, &c->backlog),
						  memory_order_relaxed);
		break;
	case UFFD_EVENT_FORK: /* a grandchild: what this child misses, it misses */
		children_fork(c, (int)m->arg.fork.ufd, &ch->u, ch->store, NULL, 0, NULL, NULL);
		break;
	default:
		break;
	}
}

struct serving {
	struct children *c;
	struct child *ch;
};

static void child_msg_fn(void *arg, const struct uffd_msg *m)
{
	struct serving *sv = arg;
	child_msg(sv->c, sv->ch, m);
}

/* Read and handle what @ch sent (if @readable), then retry its waiting faults. */
static bool serve_one(struct children *c, struct child *ch, bool readable)
{
	if (readable) {
		ssize_t got;
		/* with what resolve_unmoved() reads meanwhile; a read that
		 * did not fill its buffer emptied the queue, and what comes
		 * after it is polled for (one read less per child fault) */
		struct serving sv = { c, ch };
		do {
			got = resolve_backlog_read(&c->backlog, ch->u.fd, MSGS);
			resolve_backlog_drain(&c->backlog, child_msg_fn, &sv);
		} while (got >= MSGS);
		orphan_log_flush(&ch->log, store_index(ch->store));
	}
	unsigned int nr = ch->nretry;
	struct child_retry r[CHILD_RETRY_MAX];
	memcpy(r, ch->retry, nr * sizeof(r[0]));
	ch->nretry = 0;
	for (unsigned int k = 0; k < nr; k++)
		child_fault(c, ch, r[k].addr, r[k].write);
	return ch->nretry > 0;
}

bool children_serve(struct children *c, const struct pollfd *p, size_t n)
{
	bool pending = false;
	/* children_fork() may append while we go: only the ones polled */
	for (size_t i = 0; i < n && i < c->n; i++)
		pending |= serve_one(c, c->c[i], p[i].revents & POLLIN);
	return pending;
}

void children_reap(struct children *c)
{
	struct child *dead[CHILDREN_MAX];
	size_t k = 0, nd = 0;
	for (size_t i = 0; i < c->n; i++) {
		struct child *ch = c->c[i];
		if (!ch->dead && uffd_zeropage(&ch->u, c->probe, PAGE, true) == -ESRCH)
			ch->dead = true;
		if (ch->dead)
			dead[nd++] = ch;
		else
			c->c[k++] = ch;
	}
	set_n(c, k);
	for (size_t i = 0; i < nd; i++) { /* listed no more: see struct children */
		count(&c->cnt.exited);
		child_free(dead[i]);
	}
}

void children_release_all(struct children *c)
{
	for (size_t i = 0; i < c->n; i++) {
		struct child *ch = c->c[i];
		int err;
		/* EAGAIN: the child is mid-mremap/madvise; read its events */
		while ((err = fill(c, &ch->u, ch->store, NULL, true)) == -EAGAIN)
			serve_one(c, ch, true);
		if (err && err != -ESRCH)
			log_error("giving a forked child its pages failed (%s): it may read zeros",
				  strerrordesc_np(-err) ? strerrordesc_np(-err) : "error");
		/* what it still owes now (nothing, unless that failed) */
		orphan_log_close(&ch->log, store_index(ch->store));
		count(&c->cnt.released);
	}
	size_t n = c->n;
	set_n(c, 0);
	for (size_t i = 0; i < n; i++) /* listed no more: see struct children */
		child_free(c->c[i]);
}

void children_forget(struct children *c)
{
	/* the list as the fork copied it: see struct children */
	for (size_t i = 0; i < c->n; i++) {
		uffd_close(&c->c[i]->u);
		orphan_log_forget(&c->c[i]->log);
	}
	c->n = 0;
}

size_t children_count(const struct children *c)
{
	return c->n;
}

const struct children_counters *children_counters(const struct children *c)
{
	return &c->cnt;
}

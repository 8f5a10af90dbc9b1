/*
 * engine — see engine.h for the roles.  Threads and locks:
 *
 *   handler thread  reads the uffd, resolves faults, applies events, serves
 *                   requests, steps aside on failure.  Takes reclaim's
 *                   batch.lock (briefly) and the store's locks.
 *   fault threads   one per CPU (core/fthreads.c, ZSWAPU_THREADS): read
 *                   the uffd and resolve, as the handler does, on the CPU
 *                   the fault came from, and so for forked children's
 *                   uffds (watched as they come).  The handler then leaves
 *                   those to them and keeps the rest (retries, reaping).
 *   reclaimer       core/reclaim.c; waits for the handler only for evlock,
 *                   around UFFDIO_MOVE, holding nothing the handler needs.
 *   callers         program threads in engine_* functions; they post a
 *                   request and sleep on req_cv until the handler is done.
 *
 * Locks: req_lock serialises requesters (outermost); req_mu guards the
 * request slot (leaf).  Lock order for a requester: req_lock -> reclaim
 * ctl/owner (pause) -> req_mu.  The handler takes req_mu alone.  role is
 * held by whichever thread reads the uffd and resolves (the handler or a
 * fault thread), from the read to the end of handling what it read: the
 * fields marked "handler only" are under it.  It is taken before
 * reclaim's evlock.
 *
 * A request is served a slice at a time so the handler keeps reading the
 * uffd in between: a UFFDIO_COPY that returns -EAGAIN waits for an event
 * that only this thread can read.
 */
#include "core/engine.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "core/children.h"
#include "core/fdguard.h"
#include "core/fthreads.h"
#include "core/index.h"
#include "core/log.h"
#include "core/orphan.h"
#include "core/maps.h"
#include "core/profile.h"
#include "core/region.h"
#include "core/resolve.h"
#include "core/uffd.h"
#include "core/writeback.h"
#include "pools/pagesrc.h"

#define PAGE 4096UL
#define MSGS 64
#define RETRY_MAX 256
#define REQ_SLICE 256 /* pages brought back between two uffd reads */
#define THROTTLE_MAX_NS (20ull * 1000 * 1000) /* see hold_fault() */
#define MAX_ENGINES 8

enum {
#define ENGINE_ENUM(name, desc) EC_##name,
	ENGINE_COUNTERS(ENGINE_ENUM)
#undef ENGINE_ENUM
	EC_NR
};

static const char *const counter_names[] = {
#define ENGINE_NAME(name, desc) #name,
	ENGINE_COUNTERS(ENGINE_NAME)
#undef ENGINE_NAME
};

struct request {
	uintptr_t start, end, cursor;
	int result;
	bool done;
};

struct retry {
	uintptr_t addr;
	bool write;
	bool wp; /* a write to a write-protected page */
	uint64_t held_since; /* held by back-pressure since (ns), or 0 */
};

struct engine {
	struct engine_options o;
	struct uffd uffd;
	struct stats *stats;
	struct store *store;
	struct region_set *regions;
	struct region_set *nofork;   /* MADV_DONTFORK ranges: not in a child */
	struct reclaim *reclaim;

	pthread_t handler;
	void *handler_stack;
	bool handler_running;
	int efd;
	pthread_mutex_t role;        /* see the top of the file */
	struct fthreads *fthreads;   /* NULL: the handler reads the uffd alone */
	bool kick;                   /* handler only: a fault thread must wake the handler */
	bool children_busy;          /* handler only: a child has faults to retry */
	bool children_unwatched;     /* handler only: it polls the children (a watch failed,
					or page tables shadowed: watch_child()) */
	uint8_t *buf;  /* handler's decompression pages (1 + RESOLVE_AHEAD_MAX) */
	uintptr_t ra_next;     /* where a sequential scan would fault next */
	unsigned int ra_win;   /* pages read ahead on such a fault */
	uint8_t *zero; /* zero pages for write faults (1 + RESOLVE_AHEAD_MAX) */
	bool in_events;  /* the handler holds evlock (handle_msg from the read loop) */
	struct resolve_backlog backlog; /* role: messages read, not yet handled */

	pthread_mutex_t req_lock, req_mu;
	pthread_cond_t req_cv;
	struct request *_Atomic req; /* written under req_mu; the poll loop peeks */
	bool handler_gone;           /* under req_mu: no more requests served */

	_Atomic bool stop, failed, stepped_aside;
	_Atomic bool released; /* failed on request: engine_release() */
	/* ends without exit handlers (engine_end()): tickets asked, served */
	_Atomic uint64_t end_asked, end_served;
	_Atomic bool end_core; /* ... and every page back for a core dump */
	bool forked_child;
	bool fork_events;            /* the kernel sends EVENT_FORK: children are served */
	bool wp;                     /* WP detach: regions registered MISSING|WP */
	struct children *children;   /* handler only */
	struct orphan_slot orphans;  /* a fork's pair for its child (orphan.h) */
	uint64_t last_reap_ns;
	struct retry retry[RETRY_MAX];
	unsigned int nretry;
	_Atomic uint64_t cnt[EC_NR];
};

static void inc(struct engine *e, int c)
{
	atomic_fetch_add_explicit(&e->cnt[c], 1, memory_order_relaxed);
}

const char *engine_counter_name(unsigned int i)
{
	return i < EC_NR ? counter_names[i] : NULL;
}

void engine_options_default(struct engine_options *o)
{
	memset(o, 0, sizeof(*o));
	store_options_default(&o->store);
	o->reclaim.limit_pool = true;
	o->readahead_max = RESOLVE_AHEAD_MAX;
}

/* ---- fail-safe ---- */

static void wake_handler(struct engine *e)
{
	uint64_t one = 1;
	ssize_t w = write(e->efd, &one, sizeof(one));
	(void)w;
}

/* reclaim_on_room(): the held faults go on now */
static void room_made(void *arg)
{
	wake_handler(arg);
}

/*
 * Start stepping aside (a failure, a release, a core dump): stop
 * detaching; the handler steps aside once no batch is in flight.
 * @return false when that had begun already.
 */
static bool begin_step_aside(struct engine *e)
{
	if (atomic_exchange(&e->failed, true))
		return false;
	reclaim_pause_async(e->reclaim);
	return true;
}

static void engine_fail(struct engine *e, const char *what, int err)
{
	if (begin_step_aside(e))
		log_error("%s failed: %s; putting stored pages back, the program continues "
			  "unmanaged",
			  what, strerrordesc_np(-err) ? strerrordesc_np(-err) : "unknown error");
}

int engine_release(struct engine *e)
{
	if (e->forked_child)
		return -ECHILD;
	if (!begin_step_aside(e))
		return -EALREADY;
	atomic_store(&e->released, true);
	log_warn("released on request (zswapu release): putting stored pages back, "
		 "the program continues unmanaged");
	wake_handler(e); /* it may be asleep, with nothing else to do */
	return 0;
}

/* ---- resolving ---- */

static int resolve_from_store(struct engine *e, uintptr_t addr)
{
	return resolve_stored(&e->uffd, e->store, e->buf, addr);
}

static void queue_retry(struct engine *e, uintptr_t addr, bool write, bool wp)
{
	if (e->nretry < RETRY_MAX)
		e->retry[e->nretry++] = (struct retry){ addr, write, wp, 0 };
	/* full: the fault message is dropped; the thread stays asleep until a
	 * later resolution wakes it, so wake it now to make it fault again */
	else
		uffd_wake(&e->uffd, addr, PAGE);
	inc(e, EC_faults_retried);
}

/* A fault served with the page's own data: it came back, so it is hot. */
static void served_data(struct engine *e, int how, uintptr_t addr)
{
	inc(e, EC_faults);
	inc(e, how);
	reclaim_note_refault(e->reclaim, addr);
	profile_refault(addr, PAGE, how == EC_faults_store);
}

/*
 * Back-pressure (reclaim_over_limit()): a fault that would add a page
 * while the process is over its limit waits in the retry queue, its
 * thread asleep, until the reclaimer has made room (it says so:
 * room_made(); the handler also looks every millisecond); THROTTLE_MAX_NS at
 * most, so a reclaimer that cannot keep up slows the program down but
 * never stops it.  True when the fault is held; else *held_ns is how long
 * it was (0: not at all).
 */
static bool hold_fault(struct engine *e, uintptr_t addr, bool write, uint64_t since,
		       uint64_t *held_ns)
{
	if (reclaim_over_limit(e->reclaim)) {
		uint64_t t = stats_now_ns();
		if (!since) {
			since = t;
			inc(e, EC_faults_held);
		}
		if (t - since < THROTTLE_MAX_NS && e->nretry < RETRY_MAX) {
			e->retry[e->nretry++] = (struct retry){ addr, write, false, since };
			return true;
		}
	}
	if (since) {
		uint64_t held = stats_now_ns() - since;
		atomic_fetch_add_explicit(&e->cnt[EC_held_us], held / 1000, memory_order_relaxed);
		atomic_fetch_add_explicit(&e->cnt[EC_stall_ns], held, memory_order_relaxed);
		*held_ns = held;
	}
	return false;
}

/* True when it brought back a page the reclaimer had taken. */
static bool handle_fault(struct engine *e, uintptr_t addr, bool write, uint64_t held_since)
{
	addr &= ~(PAGE - 1);
	int r = reclaim_fault(e->reclaim, addr);
	if (r == 1) {
		served_data(e, EC_faults_staging, addr);
		return true;
	}
	if (r == -EAGAIN) {
		queue_retry(e, addr, write, false);
		return false;
	}
	/* a first touch held at the limit is the program growing: it does
	 * not count as what the limit costs (limit_stall_ns), a refault does */
	uint64_t held = 0;
	if (hold_fault(e, addr, write, held_since, &held))
		return false;
	/*
	 * Readahead: a fault right after the pages the last one brought in is
	 * a sequential scan; bring the following stored pages in with it, in
	 * one UFFDIO_COPY, doubling the window up to RESOLVE_AHEAD_MAX while
	 * the scan goes on.  Any other fault closes the window, so random
	 * access pays nothing.
	 */
	if (addr == e->ra_next)
		e->ra_win = e->ra_win ? 2 * e->ra_win + 1 : 1;
	else
		e->ra_win = 0;
	if (e->ra_win > e->o.readahead_max)
		e->ra_win = e->o.readahead_max;
	unsigned int extra = 0;
	int err = resolve_stored_ahead(&e->uffd, e->store, e->buf, addr, e->ra_win, &extra);
	e->ra_next = addr + (1 + extra) * PAGE;
	if (extra) {
		reclaim_note_installed(e->reclaim, extra);
		atomic_fetch_add_explicit(&e->cnt[EC_readahead_pages], extra, memory_order_relaxed);
		profile_refault(addr + PAGE, extra * PAGE, true);
	}
	if (err == 0) {
		served_data(e, EC_faults_store, addr);
		atomic_fetch_add_explicit(&e->cnt[EC_limit_stall_ns], held, memory_order_relaxed);
		return true;
	}
	if (err == -EAGAIN) {
		queue_retry(e, addr, write, false);
		return false;
	}
	if (err != -ENOENT) {
		engine_fail(e, "loading a page", err);
		/* the data is still in the store; the fault is retried after
		 * the engine has stepped aside and put everything back */
		queue_retry(e, addr, write, false);
		return false;
	}
	/*
	 * Never stored: zeros; a write gets a writable page at once.  In a
	 * sequential scan (a first fill), the following pages that are
	 * neither stored nor in a batch in flight get zeros in the same
	 * call.  Only under evlock: no MOVE can then take a page from the
	 * window between the checks and the copy (a page moved to staging
	 * is missing here but holds data).
	 */
	/*
	 * Once failed, a page may be poisoned for lost data (lose_page()), and
	 * a fault queued before that must not cover it with zeros: ZEROPAGE
	 * refuses a poisoned entry (EEXIST), a COPY would overwrite it.  So no
	 * COPY of zeros then: a write pays one more (kernel) fault.
	 */
	bool failed = atomic_load_explicit(&e->failed, memory_order_relaxed);
	unsigned int zn = 0;
	if (e->in_events && e->ra_win && !failed) {
		uintptr_t lim = reclaim_batch_clip(e->reclaim, addr + PAGE,
						   addr + (1 + e->ra_win) * PAGE), first;
		if (store_first(e->store, addr + PAGE, lim, &first) == 0)
			lim = first;
		zn = (unsigned int)((lim - addr) / PAGE) - 1;
	}
	if (zn) {
		size_t copied = 0;
		err = uffd_copy_partial(&e->uffd, addr, e->zero, (1 + zn) * PAGE, false, &copied);
		if (copied >= PAGE) {
			err = 0;
			e->ra_next = addr + copied;
			reclaim_note_installed(e->reclaim, copied / PAGE - 1);
			atomic_fetch_add_explicit(&e->cnt[EC_zero_ahead_pages], copied / PAGE - 1,
						  memory_order_relaxed);
		} else if (err == -EEXIST || err == -ENOENT || err == -ESRCH) {
			err = resolve_zero(&e->uffd, e->zero, addr, write);
		}
	} else {
		err = resolve_zero(&e->uffd, e->zero, addr, write && !failed);
	}
	if (err == -EAGAIN)
		queue_retry(e, addr, write, false);
	else if (err)
		engine_fail(e, write ? "UFFDIO_COPY of a zero page" : "UFFDIO_ZEROPAGE", err);
	inc(e, EC_faults);
	inc(e, EC_faults_zero);
	return false;
}

/*
 * A write to a write-protected page (WP detach mode): the reclaimer's copy
 * of it is stale; the page goes back to the program writable.  Only under
 * evlock (see reclaim_wp_fault()).
 */
static void handle_wp_fault(struct engine *e, uintptr_t addr)
{
	addr &= ~(PAGE - 1);
	bool locked = !e->in_events;
	if (locked)
		reclaim_events_lock(e->reclaim);
	int err = reclaim_wp_fault(e->reclaim, addr);
	if (locked)
		reclaim_events_unlock(e->reclaim);
	if (err == -EAGAIN) {
		queue_retry(e, addr, true, true);
		return;
	}
	inc(e, EC_wp_faults);
	if (err) {
		engine_fail(e, "UFFDIO_WRITEPROTECT", err);
		/* stepping aside unregisters the range, which unprotects it */
		queue_retry(e, addr, true, true);
	}
}

static void drop_retries(struct engine *e, uintptr_t start, uintptr_t end)
{
	unsigned int k = 0;
	for (unsigned int i = 0; i < e->nretry; i++) {
		if (e->retry[i].addr >= start && e->retry[i].addr < end)
			uffd_wake(&e->uffd, e->retry[i].addr, PAGE);
		else
			e->retry[k++] = e->retry[i];
	}
	e->nretry = k;
}

static void run_retries(struct engine *e)
{
	unsigned int n = e->nretry;
	struct retry r[RETRY_MAX];
	memcpy(r, e->retry, n * sizeof(r[0]));
	e->nretry = 0;
	for (unsigned int i = 0; i < n; i++)
		if (r[i].wp)
			handle_wp_fault(e, r[i].addr);
		else
			handle_fault(e, r[i].addr, r[i].write, r[i].held_since);
}

static void copy_staged(void *arg, struct uffd *child)
{
	reclaim_copy_staged(((struct engine *)arg)->reclaim, child);
}

static void handle_msg(struct engine *e, const struct uffd_msg *m)
{
	switch (m->event) {
	case UFFD_EVENT_PAGEFAULT: {
		uint64_t t0 = stats_now_ns(); /* vDSO: no syscall on this path */
		profile_fault(m->arg.pagefault.address, m->arg.pagefault.feat.ptid);
		/* a write to a page in a WP batch waited on the reclaimer too */
		bool taken = true;
		if (m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP)
			handle_wp_fault(e, m->arg.pagefault.address);
		else
			taken = handle_fault(e, m->arg.pagefault.address,
					     m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE, 0);
		uint64_t dt = stats_now_ns() - t0;
		stats_count_fault_ns(e->stats, dt);
		atomic_fetch_add_explicit(&e->cnt[EC_stall_ns], dt, memory_order_relaxed);
		if (taken)
			atomic_fetch_add_explicit(&e->cnt[EC_limit_stall_ns], dt, memory_order_relaxed);
		break;
	}
	case UFFD_EVENT_REMOVE:
	case UFFD_EVENT_UNMAP: {
		uintptr_t s = m->arg.remove.start, end = m->arg.remove.end;
		if (reclaim_is_staging(e->reclaim, s, end))
			break;
		/* a zap of the reclaimer's own (WP mode) is not counted */
		if (!reclaim_event_remove(e->reclaim, s, end, m->event == UFFD_EVENT_UNMAP))
			inc(e, m->event == UFFD_EVENT_REMOVE ? EC_events_remove : EC_events_unmap);
		store_invalidate(e->store, s, end - s);
		drop_retries(e, s, end);
		if (m->event == UFFD_EVENT_UNMAP) {
			region_remove(e->regions, s, end);
			region_remove(e->nofork, s, end);
		}
		break;
	}
	case UFFD_EVENT_FORK:
		/* the batch held still: its staged pages go to the child too,
		 * and nothing is committed while the view is taken */
		reclaim_hold(e->reclaim);
		/* a program that forks and execs in a loop outruns the periodic
		 * reap: the dead go first, rather than the new child be refused
		 * and copied every page */
		if (children_count(e->children) == CHILDREN_MAX)
			children_reap(e->children);
		children_fork(e->children, (int)m->arg.fork.ufd, &e->uffd, e->store, e->nofork,
			      resolve_fork_pair(m), copy_staged, e);
		orphan_settle(&e->orphans, resolve_fork_pair(m));
		reclaim_unhold(e->reclaim);
		e->kick = true; /* the handler polls the child's uffd from now on */
		break;
	case UFFD_EVENT_REMAP: {
		uintptr_t from = m->arg.remap.from, to = m->arg.remap.to;
		size_t len = m->arg.remap.len;
		inc(e, EC_events_remap);
		drop_retries(e, from, from + len);
		/* moves staged pages and the store's entries under one lock */
		if (reclaim_event_remap(e->reclaim, from, to, len) == -ENOMEM)
			atomic_fetch_add_explicit(&e->cnt[EC_remap_placed],
						  resolve_unmoved(&e->uffd, e->store, e->buf,
								  from, to, len, &e->backlog),
						  memory_order_relaxed);
		if (region_move(e->regions, from, to, len))
			log_warn("region table full: %#lx.. no longer reclaimed", (unsigned long)to);
		/* the mapping keeps its DONTFORK; a full table forgets it (a
		 * child is then served the parent's pages there: ghosts, see
		 * engine_fork_advice()) */
		region_move(e->nofork, from, to, len);
		break;
	}
	default:
		break;
	}
}

static void handle_msg_fn(void *arg, const struct uffd_msg *m)
{
	handle_msg(arg, m);
}

/* Read what the uffd holds and handle it, with what is read meanwhile
 * (resolve_unmoved()).  @return messages read first, or -errno. */
static ssize_t handle_msgs(struct engine *e)
{
	ssize_t n = resolve_backlog_read(&e->backlog, e->uffd.fd, MSGS);
	resolve_backlog_drain(&e->backlog, handle_msg_fn, e);
	return n;
}

/* ---- requests (bring pages back) ---- */

/* One slice of a bring-back request; true when the request is complete. */
static bool serve_slice(struct engine *e, struct request *r)
{
	for (int n = 0; n < REQ_SLICE; n++) {
		uintptr_t addr;
		if (store_first(e->store, r->cursor, r->end, &addr))
			return true;
		r->cursor = addr; /* where it stopped, on an error */
		int err = resolve_from_store(e, addr);
		if (err == -EAGAIN)
			return false; /* read events first, then go on */
		if (err && err != -ENOENT) {
			r->result = err;
			return true;
		}
		if (!err)
			inc(e, EC_pages_brought_back);
		r->cursor = addr + PAGE;
	}
	return false;
}

/* Drop the views of children that exited or exec'd; under role. */
static void reap_children(struct engine *e)
{
	children_reap(e->children);
	e->last_reap_ns = stats_now_ns();
}

static void serve_request(struct engine *e)
{
	pthread_mutex_lock(&e->req_mu);
	struct request *r = e->req;
	pthread_mutex_unlock(&e->req_mu);
	if (!r || !serve_slice(e, r))
		return;
	/*
	 * An empty request is a sync (zswapu_stats()): count the children
	 * that are gone now, not at the next second's look.  The shim's exit
	 * hands a child still counted live all its pages, the parent's own
	 * brought back with them (dontfork: 16 MiB resident went to 48 at
	 * exit, the child reaped 1 ms before).
	 */
	if (r->start == r->end && children_count(e->children))
		reap_children(e);
	pthread_mutex_lock(&e->req_mu);
	r->done = true;
	e->req = NULL;
	pthread_cond_broadcast(&e->req_cv);
	pthread_mutex_unlock(&e->req_mu);
}

/* Caller side: have the handler bring back [start, end); waits. */
static int bring_back(struct engine *e, uintptr_t start, uintptr_t end)
{
	struct request r = { .start = start, .end = end, .cursor = start };
	pthread_mutex_lock(&e->req_mu);
	if (e->handler_gone) { /* it broke off after a read error */
		pthread_mutex_unlock(&e->req_mu);
		return -ECANCELED;
	}
	e->req = &r;
	pthread_mutex_unlock(&e->req_mu);
	wake_handler(e);
	pthread_mutex_lock(&e->req_mu);
	while (!r.done)
		pthread_cond_wait(&e->req_cv, &e->req_mu);
	pthread_mutex_unlock(&e->req_mu);
	return r.result;
}

/* ---- stepping aside ---- */

/* Unregister every managed range (and forget it when @forget). */
static void unregister_all(struct engine *e, bool forget)
{
	uintptr_t(*v)[2];
	size_t np = (REGION_MAX * sizeof(*v) + PAGE - 1) / PAGE;
	if (pagesrc_alloc(np, (void **)&v))
		return;
	size_t n = region_snapshot(e->regions, v, REGION_MAX);
	for (size_t i = 0; i < n; i++) {
		uffd_unregister(&e->uffd, v[i][0], v[i][1] - v[i][0]);
		if (forget)
			region_remove(e->regions, v[i][0], v[i][1]);
	}
	pagesrc_free(v, np);
}

/*
 * A stored page that cannot be read back (the writeback file failing for
 * good, a corrupt object): its data is gone.  Zeros in its place would be
 * a silent corruption; poisoned, the page raises SIGBUS when touched, as a
 * swap read error does in the kernel.  Its waiting threads are woken to
 * meet it.  @return whether it was poisoned (6.6+).
 */
static bool lose_page(struct engine *e, uintptr_t addr)
{
	int err = uffd_poison(&e->uffd, addr, PAGE);
	store_invalidate(e->store, addr, PAGE);
	drop_retries(e, addr, addr + PAGE);
	inc(e, EC_pages_lost);
	return err == 0 || err == -EEXIST;
}

static void step_aside(struct engine *e)
{
	/* everything back first, from the handler itself (it is the resolver) */
	struct request all = { .start = 0, .end = INDEX_ADDR_LIMIT, .cursor = 0 };
	size_t lost = 0, poisoned = 0;
	int why = 0;
	for (;;) {
		if (serve_slice(e, &all)) {
			if (!all.result)
				break;
			why = why ? why : all.result;
			lost++;
			poisoned += lose_page(e, all.cursor);
			all.result = 0;
			all.cursor += PAGE;
			continue;
		}
		handle_msgs(e);
		run_retries(e);
	}
	/* said before the program can touch a lost page: SIGBUS may end it */
	if (lost)
		log_error("%zu stored pages could not be read back (%s): %s", lost,
			  strerrordesc_np(-why) ? strerrordesc_np(-why) : "unknown error",
			  poisoned == lost ? "the program gets SIGBUS if it touches one, as from a "
					     "swap read error"
					   : "this kernel cannot poison pages (6.6+): they read as zeros");
	unregister_all(e, true);
	run_retries(e); /* faults queued during the failure: now plain zeros or gone */
	atomic_store(&e->stepped_aside, true);
}

/*
 * Each thread that resolves faults, as it starts: what its loads would
 * allocate, now.  Left to the first load, that could meet a full arena,
 * fail the engine, and the bring-back would then need the same memory.
 */
static void load_ready(void *arg)
{
	struct engine *e = arg;
	int err = store_load_ready(e->store);
	if (err)
		log_warn("a fault-resolving thread could not set up its load buffers (%s): "
			 "its first load tries again",
			 strerrordesc_np(-err) ? strerrordesc_np(-err) : "unknown error");
}

/* ---- the handler thread ---- */

/*
 * Read what the uffd holds and act on it; the caller holds the role.
 * @return messages read, 0 for none, or -errno of a failed read.
 */
static ssize_t read_and_handle(struct engine *e)
{
	reclaim_events_lock(e->reclaim);
	e->in_events = true;
	ssize_t n = handle_msgs(e);
	e->in_events = false;
	reclaim_events_unlock(e->reclaim);
	if (n < 0)
		return n == -EAGAIN || n == -EINTR ? 0 : n;
	if (e->nretry)
		run_retries(e);
	return n;
}

/*
 * The children's messages waiting now, and their retries; under role.
 * @return the child faults served.
 */
static uint64_t serve_children(struct engine *e)
{
	size_t n = children_count(e->children);
	if (!n)
		return 0;
	const struct children_counters *cc = children_counters(e->children);
	uint64_t before = atomic_load_explicit(&cc->faults, memory_order_relaxed);
	struct pollfd cp[CHILDREN_MAX];
	size_t nc = children_pollfds(e->children, cp, CHILDREN_MAX);
	if (poll(cp, nc, 0) > 0 || e->children_busy)
		e->children_busy = children_serve(e->children, cp, nc);
	return atomic_load_explicit(&cc->faults, memory_order_relaxed) - before;
}

/*
 * The process is about to end without exit handlers (engine_end()): its
 * forked children get every page they still read through us, since the
 * kernel drops their registrations with our descriptor; for a core dump,
 * the process's own pages come back too (stepping aside, as on failure:
 * the dump is written after the engine's threads are gone, and skips a
 * page that is not there).  Under role, after every message read: a
 * child whose fork() has returned is taken on by then.
 */
static void serve_end(struct engine *e, uint64_t asked)
{
	reap_children(e);
	children_release_all(e->children);
	if (atomic_load(&e->end_core))
		begin_step_aside(e); /* done below, once quiet */
	atomic_store(&e->end_served, asked);
}

static void *handler_main(void *arg)
{
	struct engine *e = arg;
	bool burst = true;
	pthread_setname_np(pthread_self(), "zswapu-handler"); /* for top -H, perf, gdb */
	load_ready(e);
	/* with fault threads the uffd is theirs: the handler reads it only
	 * when it is up anyway (requests, retries, children, failure) */
	bool poll_uffd = !e->fthreads;
	pagesrc_defer_release(true); /* given back when idle, below */
	while (!atomic_load(&e->stop)) {
		pthread_mutex_lock(&e->role);
		ssize_t n = read_and_handle(e);
		e->kick = false;
		if (n > 0) {
			/* a busy program must not starve its children */
			serve_children(e);
			pthread_mutex_unlock(&e->role);
			continue;
		}
		if (n < 0) {
			engine_fail(e, "reading userfaultfd", (int)n);
			atomic_store(&e->stepped_aside, true);
			pthread_mutex_unlock(&e->role);
			break;
		}
		if (e->nretry)
			run_retries(e);
		serve_request(e);
		uint64_t asked = atomic_load(&e->end_asked);
		if (asked != atomic_load_explicit(&e->end_served, memory_order_relaxed))
			serve_end(e, asked);
		if (atomic_load(&e->failed) && !atomic_load(&e->stepped_aside) &&
		    reclaim_is_quiet(e->reclaim))
			step_aside(e);
		struct pollfd p[2 + CHILDREN_MAX] = {
			{ .fd = poll_uffd ? e->uffd.fd : -1, .events = POLLIN },
			{ .fd = e->efd, .events = POLLIN },
		};
		size_t nc = children_pollfds(e->children, p + 2, CHILDREN_MAX);
		/* the fault threads watch the children's descriptors (unless
		 * that failed for one); the handler retries for them and reaps */
		for (size_t i = 0; e->fthreads && !e->children_unwatched && i < nc; i++)
			p[2 + i].fd = -1;
		/* with retries pending or a failure to finish, keep turning */
		bool busy = e->nretry || e->req || e->children_busy ||
			    (atomic_load(&e->failed) && !atomic_load(&e->stepped_aside));
		/* a bring-back goes on at once: it slept 1 ms after each slice
		 * (1.4 ms of work), 9-10 us a page for zswapu_hot() and
		 * zswapu_shutdown() against 4.6-5.8 now; faults still come
		 * in between slices, read at the top of the loop */
		bool requested = e->req != NULL;
		pthread_mutex_unlock(&e->role);
		/*
		 * Waking a sleeping handler on an idle vCPU costs ~50 us here
		 * (NUMBERS.md; fault_bench's placement table), more than the
		 * rest of a fault.  So while faults come in a burst, poll for
		 * the next one a while first; a spin that found nothing, or a
		 * long sleep, ends the burst: sparse faults cost no CPU.
		 */
		uint64_t idle_ns = stats_now_ns(), spin_ns = e->o.spin_us * 1000ull;
		bool spun = false;
		if (poll_uffd && spin_ns && burst) {
			bool got = false;
			while (!got && stats_now_ns() - idle_ns < spin_ns)
				got = uffd_pending(e->uffd.fd);
			if (got)
				continue;
			spun = true;
		}
		if (!busy)
			pagesrc_release_excess();
		/* children give no sign when they exit: look every second */
		poll(p, 2 + nc, requested ? 0 : busy ? 1 : nc ? 1000 : -1);
		if (p[1].revents & POLLIN) {
			uint64_t v;
			ssize_t r = read(e->efd, &v, sizeof(v));
			(void)r;
		}
		burst = !spun && p[0].revents && stats_now_ns() - idle_ns < 4 * spin_ns;
		pthread_mutex_lock(&e->role);
		if (!nc || !children_count(e->children)) {
			e->children_busy = false; /* the last one is gone */
			pthread_mutex_unlock(&e->role);
			continue;
		}
		e->children_busy = children_serve(e->children, p + 2, nc);
		if (stats_now_ns() - e->last_reap_ns > 1000000000ull)
			reap_children(e);
		pthread_mutex_unlock(&e->role);
	}
	/* the engine is going away: children get the rest of their pages */
	pthread_mutex_lock(&e->role);
	children_release_all(e->children);
	pthread_mutex_unlock(&e->role);
	atomic_store(&e->end_served, UINT64_MAX); /* every engine_end() is answered */
	pthread_mutex_lock(&e->req_mu);
	e->handler_gone = true;
	struct request *r = e->req;
	if (r) {
		r->result = -ECANCELED;
		r->done = true;
		e->req = NULL;
		pthread_cond_broadcast(&e->req_cv);
	}
	pthread_mutex_unlock(&e->req_mu);
	return NULL;
}

/* ---- fault threads ---- */

/*
 * fthreads' take(): read and resolve as the handler does, only what the
 * poll saw (a fault of the program need not look at the children, nor a
 * child's fault read the program's uffd: two system calls of the six a
 * child's fault made before its page went in); wake the handler for what
 * only it does.
 */
static long take_faults(void *arg, unsigned int ready)
{
	struct engine *e = arg;
	pthread_mutex_lock(&e->role);
	ssize_t n = ready & FTHREADS_READY_FD ? read_and_handle(e) : 0;
	if (n >= 0 && ((ready & FTHREADS_READY_WATCHED) || e->children_busy))
		n += (ssize_t)serve_children(e);
	/* retries run on the handler's clock (children's too), a failure is
	 * its to finish, and it reaps the children */
	bool kick = e->kick || e->nretry || e->children_busy || n < 0 ||
		    atomic_load(&e->failed);
	e->kick = false;
	pthread_mutex_unlock(&e->role);
	if (n < 0)
		engine_fail(e, "reading userfaultfd", (int)n);
	if (kick)
		wake_handler(e);
	return n;
}

static _Atomic int children_on_handler = -1;

void engine_force_children_on_handler(int on)
{
	atomic_store(&children_on_handler, on);
}

/*
 * children_on_new(): a forked child's faults go to the fault threads too,
 * on the CPU they come from, except where the page tables are shadowed.
 * A child's fault wakes the fault thread on its CPU there as well, and
 * each switch between the child's address space and ours traps to the
 * hypervisor: fault_bench's forked child read a page in 56 us so, in
 * 25-28 us from the handler alone, which runs on the other CPU (on a
 * guest with hardware paging: 7-14 us so, 61-67 from the handler, whose
 * every fault paid a wake-up from idle).
 */
static void watch_child(void *arg, int fd)
{
	struct engine *e = arg;
	int on = atomic_load(&children_on_handler);
	if (on < 0)
		on = reclaim_shadow_paging() == 1;
	if (on) {
		e->children_unwatched = true;
		return;
	}
	int err = fthreads_watch(e->fthreads, fd);
	if (err && !e->children_unwatched)
		log_warn("a forked child's faults go to the handler alone: %s",
			 strerrordesc_np(-err) ? strerrordesc_np(-err) : "error");
	e->children_unwatched |= err != 0;
}

/* ---- fork: atfork handlers ---- */

static pthread_mutex_t engines_lock = PTHREAD_MUTEX_INITIALIZER;
static struct engine *engines[MAX_ENGINES];
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* engines whose prepare step took req_lock and paused reclaim */
static bool prepared[MAX_ENGINES];

static void fork_prepare(void)
{
	fdguard_fork_prepare();
	orphan_fork_lock();
	pthread_mutex_lock(&engines_lock);
	for (int i = 0; i < MAX_ENGINES; i++) {
		struct engine *e = engines[i];
		prepared[i] = false;
		if (!e || atomic_load(&e->stepped_aside))
			continue;
		/* with fork events the handler serves the child (children.c),
		 * and the child takes over should this process die */
		if (e->fork_events) {
			if (!atomic_load(&e->stop) && !atomic_load(&e->failed))
				orphan_prepare(&e->orphans);
			continue;
		}
		pthread_mutex_lock(&e->req_lock);
		reclaim_pause(e->reclaim);
		prepared[i] = true;
		/* the child will not be managed: it must see every byte */
		if (bring_back(e, 0, INDEX_ADDR_LIMIT))
			engine_fail(e, "bringing pages back before fork", -EIO);
	}
}

static void fork_parent(void)
{
	for (int i = 0; i < MAX_ENGINES; i++) {
		if (engines[i])
			orphan_parent(&engines[i]->orphans);
		if (!prepared[i])
			continue;
		reclaim_resume(engines[i]->reclaim);
		pthread_mutex_unlock(&engines[i]->req_lock);
	}
	pthread_mutex_unlock(&engines_lock);
	orphan_fork_unlock();
}

static void fork_child(void)
{
	/* No engine thread exists here: the engines are inert copies.  The
	 * child's memory is served by the parent's handler (fork events) or
	 * holds everything (brought back in prepare). */
	bool strays = fdguard_fork_missed();
	struct engine *had[MAX_ENGINES];
	orphan_forked();
	for (int i = 0; i < MAX_ENGINES; i++) {
		struct engine *e = had[i] = engines[i];
		if (!e)
			continue;
		e->forked_child = true;
		if (prepared[i])
			pthread_mutex_unlock(&e->req_lock);
		children_forget(e->children);
		if (e->fork_events && strays)
			uffd_close_strays(&e->uffd);
		/* the parent's descriptors it would keep open for nothing: the
		 * writeback file's blocks and the rings, for one */
		writeback_forked_child(store_writeback_file(e->store));
		reclaim_forked_child(e->reclaim);
		fthreads_forked_child(e->fthreads);
		uffd_close(&e->uffd);
		fdguard_close(e->efd);
		e->efd = -1;
		engines[i] = NULL;
	}
	pthread_mutex_init(&engines_lock, NULL);
	/* after the strays went: what it receives is a fork event's descriptor too */
	for (int i = 0; i < MAX_ENGINES; i++)
		if (had[i])
			orphan_child(&had[i]->orphans, had[i]->uffd.features);
	orphan_child_done();
}

static void install_atfork(void)
{
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

static void track(struct engine *e, bool add)
{
	pthread_mutex_lock(&engines_lock);
	for (int i = 0; i < MAX_ENGINES; i++)
		if (add ? engines[i] == NULL : engines[i] == e) {
			engines[i] = add ? e : NULL;
			break;
		}
	pthread_mutex_unlock(&engines_lock);
}

/* ---- life cycle ---- */

static void engine_free(struct engine *e)
{
	reclaim_destroy(e->reclaim);
	children_destroy(e->children); /* before the store their views share */
	store_destroy(e->store);
	region_set_destroy(e->regions);
	region_set_destroy(e->nofork);
	if (e->stats)
		pagesrc_free(e->stats, (sizeof(struct stats) + PAGE - 1) / PAGE);
	if (e->buf)
		pagesrc_free(e->buf, 2 * (1 + RESOLVE_AHEAD_MAX));
	fdguard_close(e->efd);
	uffd_close(&e->uffd);
	pagesrc_free(e, (sizeof(*e) + PAGE - 1) / PAGE);
}

/*
 * MOVE detaches a batch in one ioctl; write-protect + copy + zap costs a
 * copy and an event round trip per run (docs/design.md), so AUTO takes
 * MOVE whenever the kernel has it.
 */
static int pick_detach(const struct uffd *u, enum reclaim_detach *d)
{
	bool move = uffd_has(u, UFFD_FEATURE_MOVE);
	bool wp = uffd_has(u, UFFD_FEATURE_PAGEFAULT_FLAG_WP);
	if (*d == RECLAIM_DETACH_AUTO)
		*d = move ? RECLAIM_DETACH_MOVE : RECLAIM_DETACH_WP;
	if (*d == RECLAIM_DETACH_MOVE && !move) {
		log_error("ZSWAPU_DETACH=move: this kernel has no UFFDIO_MOVE (Linux 6.8+)");
		return -EOPNOTSUPP;
	}
	if (*d == RECLAIM_DETACH_WP && !wp) {
		log_error("this kernel can neither move nor write-protect pages with userfaultfd "
			  "(UFFDIO_MOVE: Linux 6.8+; write-protect: 5.7+)");
		return -EOPNOTSUPP;
	}
	return 0;
}

enum reclaim_detach engine_detach_mode(const struct engine *e)
{
	return e->wp ? RECLAIM_DETACH_WP : RECLAIM_DETACH_MOVE;
}

int engine_create(const struct engine_options *o, struct engine **out)
{
	struct engine *e;
	pagesrc_set_budget(o->reclaim.limit_bytes);
	int err = pagesrc_alloc((sizeof(*e) + PAGE - 1) / PAGE, (void **)&e);
	if (err)
		return err;
	memset(e, 0, sizeof(*e));
	e->o = *o;
	e->uffd.fd = -1;
	e->efd = -1;
	orphan_slot_init(&e->orphans);
	e->backlog.orphans = &e->orphans;
	pthread_mutex_init(&e->req_lock, NULL);
	pthread_mutex_init(&e->role, NULL);
	pthread_mutex_init(&e->req_mu, NULL);
	pthread_cond_init(&e->req_cv, NULL);
	/* the /proc files the reclaimer and the scanner read while the program
	 * runs: opened now, not then (maps_preopen() says why); without them
	 * they are opened per read, as before */
	maps_preopen();

	err = uffd_open(o->no_fork_events ? UFFD_WANT_FEATURES & ~UFFD_FEATURE_EVENT_FORK
					  : UFFD_WANT_FEATURES,
			&e->uffd);
	e->fork_events = !err && uffd_has(&e->uffd, UFFD_FEATURE_EVENT_FORK);
	if (!err)
		err = children_create(&e->children);
	struct reclaim_options ro = o->reclaim;
	if (!err)
		err = pick_detach(&e->uffd, &ro.detach);
	e->wp = !err && ro.detach == RECLAIM_DETACH_WP;
	if (!err)
		err = pagesrc_alloc((sizeof(struct stats) + PAGE - 1) / PAGE, (void **)&e->stats);
	if (!err) {
		stats_init(e->stats);
		err = store_create(&o->store, e->stats, &e->store);
	}
	if (!err)
		err = region_set_create(&e->regions);
	if (!err)
		err = region_set_create(&e->nofork);
	if (!err)
		err = reclaim_create(&ro, &e->uffd, e->store, e->regions, &e->reclaim);
	if (!err)
		err = pagesrc_alloc(2 * (1 + RESOLVE_AHEAD_MAX), (void **)&e->buf);
	if (!err) {
		e->zero = e->buf + (1 + RESOLVE_AHEAD_MAX) * PAGE;
		memset(e->zero, 0, (1 + RESOLVE_AHEAD_MAX) * PAGE);
		e->efd = fdguard_adopt(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
		if (e->efd < 0)
			err = -errno;
	}
	if (!err) {
		/* first: the handler looks whether there are any */
		int ferr = fthreads_start(e->uffd.fd, o->fault_threads, o->spin_us, take_faults,
					  load_ready, e, &e->fthreads);
		if (ferr)
			log_warn("fault threads: %s; one handler serves every fault",
				 strerrordesc_np(-ferr) ? strerrordesc_np(-ferr) : "unknown error");
		if (e->fthreads)
			children_on_new(e->children, watch_child, e);
		err = pagesrc_thread_create(&e->handler, handler_main, e, &e->handler_stack);
		e->handler_running = !err;
	}
	if (!err) {
		reclaim_on_room(e->reclaim, room_made, e);
		reclaim_watch_stall(e->reclaim, &e->cnt[EC_limit_stall_ns]);
		err = reclaim_start(e->reclaim);
	}
	if (err) {
		fthreads_stop(e->fthreads);
		if (e->handler_running) {
			atomic_store(&e->stop, true);
			wake_handler(e);
			pagesrc_thread_join(e->handler, e->handler_stack);
		}
		engine_free(e);
		return err;
	}
	pthread_once(&atfork_once, install_atfork);
	track(e, true);
	*out = e;
	return 0;
}

void engine_destroy(struct engine *e)
{
	if (!e || e->forked_child)
		return;
	track(e, false);
	reclaim_stop(e->reclaim);
	pthread_mutex_lock(&e->req_lock);
	if (!atomic_load(&e->stepped_aside)) {
		bring_back(e, 0, INDEX_ADDR_LIMIT);
		unregister_all(e, false);
	}
	pthread_mutex_unlock(&e->req_lock);
	fthreads_stop(e->fthreads);
	atomic_store(&e->stop, true);
	wake_handler(e);
	pagesrc_thread_join(e->handler, e->handler_stack);
	engine_free(e);
}

static int check_range(struct engine *e, uintptr_t start, size_t len)
{
	if (e->forked_child)
		return -ECHILD;
	if (atomic_load(&e->failed))
		return -ECANCELED;
	if ((start | len) & (PAGE - 1) || len == 0 || start + len < start ||
	    start + len > INDEX_ADDR_LIMIT)
		return -EINVAL;
	uintptr_t a, b;
	pagesrc_range(&a, &b);
	if (start < b && start + len > a)
		return -EFAULT; /* engine memory is never managed */
	return 0;
}

int engine_register(struct engine *e, uintptr_t start, size_t len)
{
	int err = check_range(e, start, len);
	if (err)
		return err;
	err = uffd_register(&e->uffd, start, len, e->wp);
	if (err)
		return err;
	/*
	 * Under evlock, which the uffd's reader holds from a read until it has
	 * handled what it read: an unmap or a move of what was here before
	 * (munmap and mremap return once their event is read) is handled
	 * first.  Added before it, the range was taken out again by it, left
	 * registered but never reclaimed: 1,800-3,500 of the remap torture's
	 * 16,384 pages at its end (a munmap, an mmap and a register in a row).
	 */
	reclaim_events_lock(e->reclaim);
	err = region_add(e->regions, start, start + len);
	reclaim_events_unlock(e->reclaim);
	if (err)
		uffd_unregister(&e->uffd, start, len);
	else
		reclaim_memory_added(e->reclaim, len);
	return err;
}

int engine_unregister(struct engine *e, uintptr_t start, size_t len)
{
	int err = check_range(e, start, len);
	if (err)
		return err;
	pthread_mutex_lock(&e->req_lock);
	region_remove(e->regions, start, start + len); /* the hand leaves it */
	region_remove(e->nofork, start, start + len);
	reclaim_pause(e->reclaim);                      /* no batch in flight */
	err = bring_back(e, start, start + len);
	if (!err)
		err = uffd_unregister(&e->uffd, start, len);
	reclaim_resume(e->reclaim);
	pthread_mutex_unlock(&e->req_lock);
	return err;
}

int engine_fork_advice(struct engine *e, uintptr_t start, size_t len, bool dontfork)
{
	len = (len + PAGE - 1) & ~(PAGE - 1); /* as madvise rounds it */
	if (!len)
		return 0;
	int err = check_range(e, start, len);
	if (err)
		return err;
	uintptr_t end = start + len, s, t;
	if (!dontfork) {
		region_remove(e->nofork, start, end);
		return 0;
	}
	/*
	 * Only what is registered: unmap and remap events keep those ranges
	 * current.  Memory not registered changes without a word, and a
	 * record left over there would take pages from a child that has them.
	 */
	for (uintptr_t a = start; !err && region_next(e->regions, a, &s, &t) && s < end; a = t)
		err = region_add(e->nofork, s, t < end ? t : end);
	return err;
}

long engine_reclaim(struct engine *e, uintptr_t start, size_t len)
{
	int err = check_range(e, start, len);
	if (err)
		return err;
	return reclaim_range(e->reclaim, start, start + len);
}

void engine_map_change_begin(struct engine *e)
{
	reclaim_map_change_begin(e->reclaim);
}

void engine_map_change_end(struct engine *e)
{
	reclaim_map_change_end(e->reclaim);
}

bool engine_managed(struct engine *e, uintptr_t addr)
{
	return region_contains(e->regions, addr);
}

int engine_hot(struct engine *e, uintptr_t start, size_t len)
{
	int err = check_range(e, start, len);
	if (err)
		return err;
	pthread_mutex_lock(&e->req_lock);
	err = bring_back(e, start, start + len);
	pthread_mutex_unlock(&e->req_lock);
	return err;
}

void engine_sync(struct engine *e)
{
	if (e->forked_child)
		return;
	pthread_mutex_lock(&e->req_lock);
	bring_back(e, 0, 0); /* an empty request: served once all read faults are */
	pthread_mutex_unlock(&e->req_lock);
}

int engine_end(struct engine *e, bool core, unsigned int timeout_ms)
{
	if (e->forked_child)
		return -ECHILD;
	if (core)
		atomic_store(&e->end_core, true);
	uint64_t ticket = atomic_fetch_add(&e->end_asked, 1) + 1;
	wake_handler(e);
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		uint64_t served = atomic_load(&e->end_served);
		if (served >= ticket && (!core || atomic_load(&e->stepped_aside) || served == UINT64_MAX))
			return 0;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (timeout_ms && (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 >=
					  timeout_ms)
			return -ETIMEDOUT;
		nanosleep(&(struct timespec){ 0, 1000 * 1000 }, NULL);
	}
}

struct zpool *engine_zpool(struct engine *e)
{
	return store_zpool(e->store);
}

bool engine_forked_child(struct engine *e)
{
	return e->forked_child;
}

int engine_set_limit(struct engine *e, size_t limit, size_t max_pool)
{
	if (e->forked_child)
		return -ECHILD;
	if (atomic_load(&e->failed))
		return -ECANCELED;
	int err = reclaim_set_limit(e->reclaim, limit);
	if (err)
		return err;
	store_set_max_pool(e->store, max_pool);
	pagesrc_set_budget(limit);
	return 0;
}

size_t engine_limit(struct engine *e)
{
	return reclaim_limit(e->reclaim);
}

bool engine_failed(struct engine *e)
{
	return atomic_load(&e->failed);
}

void engine_snapshot(struct engine *e, struct engine_snapshot *out)
{
	memset(out, 0, sizeof(*out));
	stats_snapshot(e->stats, &out->store);
	reclaim_get_counters(e->reclaim, &out->reclaim);
	uint64_t *h = (uint64_t *)&out->handler;
	for (int i = 0; i < EC_NR; i++)
		h[i] = atomic_load(&e->cnt[i]);
	const struct children_counters *cc = children_counters(e->children);
	out->handler.forks = atomic_load(&cc->forks);
	out->handler.child_faults = atomic_load(&cc->faults);
	out->handler.child_faults_store = atomic_load(&cc->faults_store);
	out->handler.children_exited = atomic_load(&cc->exited);
	out->handler.forks_refused = atomic_load(&cc->refused);
	out->handler.children_released = atomic_load(&cc->released);
	out->handler.remap_placed += atomic_load(&cc->remap_placed);
	out->features = e->uffd.features;
	out->regions = region_count(e->regions);
	out->region_bytes = region_bytes(e->regions);
	out->pool_bytes = store_pool_bytes(e->store);
	out->anon_rss = reclaim_anon_rss();
	out->limit = engine_limit(e);
	out->limit_set = reclaim_limit_set(e->reclaim);
	out->released = atomic_load(&e->released);
	out->failed = atomic_load(&e->failed);
	out->stepped_aside = atomic_load(&e->stepped_aside);
}

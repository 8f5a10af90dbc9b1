/*
 * reclaim — see reclaim.h for the scheme and the locking rules.
 *
 * Page states in the batch in flight (batch.state[i], under batch.lock):
 *   EMPTY    the slot got no page (a hole in the source range)
 *   MOVED    in staging, not yet in the store: a fault copies it back
 *   STORED   committed to the store: a fault loads it from there
 *   RETURNED copied back to the program (fault, or poor compression)
 *   DROPPED  the program unmapped/discarded it: nothing to keep
 * The batch's phase is MOVING while UFFDIO_MOVE runs (the states are not
 * known yet: the handler waits for READY if a fault falls in the range),
 * READY while pages are compressed and committed, IDLE otherwise.
 *
 * WP mode (kernels without UFFDIO_MOVE; regions registered MISSING|WP):
 * a batch leaves by write-protect + copy + zap, with two more states:
 *   PROTECTED present and write-protected; its staging copy is being made
 *   ZAPPING   the reclaimer is zapping it (MADV_DONTNEED); copy complete
 * 1. Under evlock: UFFDIO_WRITEPROTECT the runs, then /proc/self/pagemap:
 *    pages present *and* protected are PROTECTED (one present but not
 *    protected was filled by a fault after the ioctl: not ours).
 * 2. No lock: copy them to staging with process_vm_readv (an unmapped
 *    page fails with EFAULT instead of SIGSEGV; a discarded one faults to
 *    the handler, who can serve it since we hold nothing).  A write to a
 *    PROTECTED page arrives as a WP fault: the handler makes it RETURNED
 *    (copy stale) and unprotects it, under batch.lock and evlock.
 * 3. Under batch.lock, PROTECTED -> ZAPPING (the "window" opens over their
 *    span); then MADV_DONTNEED per run with no lock held: the madvise
 *    waits until the handler has read its REMOVE event.  Meanwhile the
 *    handler defers WP faults on ZAPPING pages and every missing fault in
 *    the span (a page put there now could be zapped with the batch), and
 *    counts the REMOVE events naming each ZAPPING page.
 * 4. Under evlock (so every event the zap sent has been handled) and
 *    batch.lock: a ZAPPING page still present was not zapped (moved by
 *    mremap, or its VMA changed): RETURNED; named by two REMOVE events:
 *    the program discarded it too: DROPPED; else MOVED, and the batch goes
 *    on as in MOVE mode.  Deferred faults are then answered (a writer
 *    refaults on the missing page and gets the staging copy).
 * The whole range is unprotected at the end.  Known hole: a program that
 * maps *present* pages over a ZAPPING run during the window (mremap onto
 * it, mmap MAP_POPULATE) has them zapped; see docs/design.md.
 *
 * Event race (madvise(MADV_DONTNEED) vs. detach): the kernel zaps the
 * pages only after the handler has read the REMOVE event, so a detach
 * between that read and the zap would rescue data the program has just
 * discarded.  Ranges named by a REMOVE event are therefore quarantined: the
 * hand does not detach from them for QUARANTINE_NS after the event.
 */
#include "core/reclaim.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "core/fdguard.h"
#include "core/maps.h"
#include "core/log.h"
#include "core/profile.h"
#include "core/stats.h"
#include "pools/pagesrc.h"

#define PAGE 4096UL
#define QUARANTINE_NS (200ull * 1000 * 1000)
#define QUARANTINE_SLOTS 64
/*
 * Referenced filter, hashed by page address: 2^22 bits (512 KiB), or 16
 * bits per page of a smaller limit (at least 2^15): it holds the pages
 * that came back since the hand last passed, a few times the limit at
 * most, and under a 10 MiB limit 512 KiB of it would be 5 % of the limit.
 * The unfit filters (unfit_mark()) are sized alike.
 */
#define REF_SHIFT_MAX 22
#define REF_SHIFT_MIN 15
#define REF_PAGES(r) ((1UL << (r)->ref_shift) / 8 / PAGE)
/*
 * Pages taken per batch: RECLAIM_BATCH, or 1/32 of a smaller limit (at
 * least 64): a batch in flight is resident twice over for a moment
 * (staging and the compressed copy), 2 MiB of a 10 MiB limit.  The window
 * they are taken from may span RECLAIM_BATCH pages (hand_step()).
 */
#define BATCH_MIN 64
/* Limit hysteresis: start above limit - HIGH_MARGIN, stop below - LOW. */
#define MARGIN_HIGH_PCT 2
#define MARGIN_LOW_PCT 4
#define IDLE_POLL_NS (10ull * 1000 * 1000)
/*
 * Pages reach staging with page-table entries the program never used
 * (MOVE installs them; the WP copy writes into a staging area zapped after
 * every batch).  On guests whose hypervisor shadows the page tables in
 * software, the first access from user space to such an entry costs a
 * shadow page-table fault, about 2 us: perf put 26 % of reclaim CPU on the
 * first load in compress_same_filled there.  The kernel reads them without
 * one, so on such a machine each run of WARM_PAGES pages is copied with one
 * process_vm_readv() into a buffer whose entries stay put, and compressed
 * from there (lz4 on python pages: 6.9 us a page from fresh entries, 5.0
 * copied, 4.2 from warm ones).  With hardware-assisted paging a fresh
 * entry costs ~10 ns more than a used one, and the copy is pure loss
 * (fault_bench reclaim/raw 0.63 with it, 0.74-0.82 without), so the
 * reclaimer measures which machine it is on at its first batch:
 * choose_source().
 */
#define WARM_PAGES 64
/* what a first access must cost over a second one for the copy to pay */
#define FRESH_COSTLY_NS 500

enum { EMPTY, MOVED, STORED, RETURNED, DROPPED, PROTECTED, ZAPPING };

/* /proc/self/pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst) */
#define PM_PRESENT (1ULL << 63)
#define PM_SWAP (1ULL << 62)
#define PM_UFFD_WP (1ULL << 57)
#define PM_GUARD_REGION (1ULL << 58) /* since Linux 6.15 */
enum { IDLE, MOVING, READY };
enum { C_BATCHES, C_MOVED, C_STORED, C_POOR, C_REFAULT_STAGING, C_DROPPED,
       C_BUSY, C_PASSES, C_SKIPPED_REF, C_COMPACTED, C_REFAULTS, C_BACKOFFS,
       C_WP_WRITES, C_UNREACHABLE, C_REFUSED, C_SKIPPED_UNFIT, C_RAISED, C_LOWERED,
       C_BATCH_ERRORS, C_EMPTIED_EARLY, C_NR };

struct quarantine {
	uintptr_t start, end;
	uint64_t until_ns;
};

struct reclaim {
	struct reclaim_options o;
	struct uffd *uffd;
	struct store *store;
	struct region_set *regions;

	pthread_mutex_t owner; /* one batch at a time */
	struct {
		pthread_mutex_t lock;
		_Atomic int phase;
		_Atomic uintptr_t lo, hi; /* source range while MOVING/READY */
		unsigned int n;
		uintptr_t addr[RECLAIM_BATCH];
		_Atomic uint8_t state[RECLAIM_BATCH]; /* written under lock, peeked without */
	} batch;
	uint8_t *staging; /* RECLAIM_BATCH pages of engine memory */
	uint8_t *warm;    /* WARM_PAGES pages, or NULL: see WARM_PAGES */
	bool source_chosen; /* warm decided: choose_source(), under owner */
	const uint8_t *src[WARM_PAGES]; /* where commit_batch() compresses from */
	unsigned char present[RECLAIM_BATCH];
	/* hand_step()'s look at the program's pages: its own, since present[]
	 * belongs to whoever holds owner and hand_step() looks before taking it */
	unsigned char hpresent[RECLAIM_BATCH];
	uintptr_t busy[RECLAIM_BATCH]; /* pages MOVE refused (-EBUSY) */
	unsigned int nbusy;

	/* WP mode (see the top of the file) */
	bool wp;
	pthread_rwlock_t maplock; /* WP mode: see reclaim_map_change_begin() */
	int pagemap;                      /* /proc/self/pagemap, both modes */
	uint64_t pm[RECLAIM_BATCH];       /* reclaimer only */
	struct iovec liov[RECLAIM_BATCH], riov[RECLAIM_BATCH];
	uint16_t slot[RECLAIM_BATCH];     /* batch index of each iovec */
	uint8_t nremove[RECLAIM_BATCH];   /* REMOVE events per ZAPPING page, under batch.lock */
	_Atomic bool zapping;             /* the zap window is open */
	_Atomic uintptr_t zlo, zhi;       /* ... over these addresses */

	_Atomic uint64_t *ref; /* referenced filter */
	_Atomic uint64_t *unfit; /* unfit filters, UNFIT_FILTERS of them: see unfit_mark() */
	_Atomic unsigned int unfit_gen;
	unsigned int ref_shift; /* 2^ref_shift bits in each */
	pthread_mutex_t evlock; /* see reclaim_events_lock() */
	_Atomic bool move_waiting; /* the reclaimer wants evlock */

	pthread_mutex_t qlock;
	struct quarantine q[QUARANTINE_SLOTS];

	/* thread control, under ctl */
	pthread_mutex_t ctl;
	pthread_cond_t wake, paused_cv;
	pthread_t thread;
	bool running, stop;
	int pause_depth;
	bool in_batch_loop;
	uintptr_t hand;
	uint64_t last_sweep_ns;
	uint64_t last_compact_ns;
	uint64_t win_moved, win_stored, backoff_ns; /* thrash_check(), reclaimer only */
	uint64_t unreach_ns; /* reclaimer only: see out_of_reach() */
	/* bytes registered so far, changed under ctl: see idle_wait() */
	_Atomic uint64_t added;
	uint64_t wake_at_added; /* under ctl: a rest ends when added reaches it */
	size_t shortfall;       /* reclaimer only: see out_of_reach() */

	_Atomic uint64_t cnt[C_NR]; /* struct reclaim_counters, in order */
	void *thread_stack;

	/* back-pressure: see reclaim_over_limit() */
	_Atomic size_t usage_seen;     /* the last usage() read */
	_Atomic uint64_t seen_ns;      /* ... when */
	_Atomic uint64_t installed;    /* faults counted since */
	_Atomic bool able;             /* the reclaimer can bring usage down */
	_Atomic bool held;             /* a fault waits for room: see room_usage() */
	void (*room_fn)(void *);       /* reclaim_on_room() */
	void *room_arg;
	_Atomic size_t own;            /* engine_own() */
	/* o.limit_bytes as it is now: reclaim_set_limit() changes it, and
	 * stall_control() raises it over `given` */
	_Atomic size_t limit, given;
	const _Atomic uint64_t *stall_src; /* reclaim_watch_stall() */
	/* the stall control's, reclaimer only: see stall_control() */
	uint64_t stall_t, stall_v;     /* the window's start, and the stall then */
	uint64_t calm_since;           /* the first quiet window's start; 0: not quiet */
	uint64_t calm_need_ns;         /* ... needed before a lowering; 0: the calm */
	uint64_t probe_ns;             /* the last lowering, while it may be undone; 0: none */
	_Atomic uint64_t own_ns;       /* ... looked at then */
	uint64_t able_again_ns;        /* reclaimer only: gave up until then */
};

static void count(struct reclaim *r, int c, uint64_t n)
{
	atomic_fetch_add_explicit(&r->cnt[c], n, memory_order_relaxed);
}

static uint64_t now_ns(void)
{
	return stats_now_ns();
}

/* ---- referenced and unfit filters ---- */

static uint64_t ref_hash(const struct reclaim *r, uintptr_t addr)
{
	uint64_t x = addr >> 12;
	x *= 0x9E3779B97F4A7C15ULL;
	return x >> (64 - r->ref_shift);
}

/* 64-bit words in a filter */
static size_t filter_words(const struct reclaim *r)
{
	return REF_PAGES(r) * PAGE / sizeof(uint64_t);
}

static void filter_set(struct reclaim *r, _Atomic uint64_t *f, uintptr_t addr)
{
	uint64_t b = ref_hash(r, addr);
	atomic_fetch_or_explicit(&f[b / 64], 1ULL << (b % 64), memory_order_relaxed);
}

static bool filter_test(struct reclaim *r, _Atomic uint64_t *f, uintptr_t addr)
{
	uint64_t b = ref_hash(r, addr);
	return atomic_load_explicit(&f[b / 64], memory_order_relaxed) & (1ULL << (b % 64));
}

static void ref_mark(struct reclaim *r, uintptr_t addr)
{
	filter_set(r, r->ref, addr);
}

/*
 * A page taken and sent back (incompressible; or refused by MOVE) is
 * left by the hand until the filter is cleared, every UNFIT_PASSES
 * passes: 1 to 4 passes.  Skipped once, as a referenced page is, it was
 * taken again at every other pass, each time a MOVE, a compression and
 * a copy back: xz -6 of 600 KB under 2.5 MiB sent back 33,000-48,000
 * pages a run, 15,000-26,000 since (its run time, 7-9 s, is its faults'
 * and did not change).  A page rewritten compressible meanwhile waits
 * that long.
 *
 * Most such pages stay unfit (a compressor's hash tables, random or
 * already compressed data, another protection): zstd -19 --long=27 under
 * 200 MiB sent back 9.2 million pages in 20 minutes, more than half of
 * all it took.  So the filters go by generations of UNFIT_PASSES: one
 * for this generation, one for the last, and one for pages unfit in two
 * generations in a row, which the hand leaves until UNFIT_LONG_PASSES
 * have passed (a page rewritten compressible meanwhile waits that long).
 */
#define UNFIT_PASSES 4
#define UNFIT_LONG_PASSES 32
enum { UNFIT_FILTERS = 3, UNFIT_LONG = 2 }; /* filters 0 and 1 by turns: this generation, the last */

static _Atomic uint64_t *unfit_filter(struct reclaim *r, unsigned int which)
{
	unsigned int g = atomic_load_explicit(&r->unfit_gen, memory_order_relaxed);
	unsigned int k = which == UNFIT_LONG ? UNFIT_LONG : (g + which) % 2;
	return r->unfit + k * filter_words(r);
}

static void unfit_mark(struct reclaim *r, uintptr_t addr)
{
	if (filter_test(r, unfit_filter(r, 1), addr))
		filter_set(r, unfit_filter(r, UNFIT_LONG), addr);
	filter_set(r, unfit_filter(r, 0), addr);
}

static bool unfit_test(struct reclaim *r, uintptr_t addr)
{
	return filter_test(r, unfit_filter(r, 0), addr) ||
	       filter_test(r, unfit_filter(r, UNFIT_LONG), addr);
}

static void filter_clear(struct reclaim *r, _Atomic uint64_t *f)
{
	/* atomic stores: the marks of a zswapu_reclaim() may race (one lost
	 * to the clear is a page tried a generation early) */
	for (size_t i = 0; i < filter_words(r); i++)
		atomic_store_explicit(&f[i], 0, memory_order_relaxed);
}

/* At a pass's end: every UNFIT_PASSES, the next generation. */
static void unfit_pass_done(struct reclaim *r, uint64_t passes)
{
	if (passes % UNFIT_LONG_PASSES == 0)
		filter_clear(r, unfit_filter(r, UNFIT_LONG));
	if (passes % UNFIT_PASSES == 0) {
		atomic_fetch_add_explicit(&r->unfit_gen, 1, memory_order_relaxed);
		filter_clear(r, unfit_filter(r, 0)); /* the one before last */
	}
}

void reclaim_note_refault(struct reclaim *r, uintptr_t addr)
{
	ref_mark(r, addr);
	count(r, C_REFAULTS, 1);
}

/* Test and clear: true when the page was referenced since the last pass. */
static bool ref_test_clear(struct reclaim *r, uintptr_t addr)
{
	uint64_t b = ref_hash(r, addr), bit = 1ULL << (b % 64);
	if (!(atomic_load_explicit(&r->ref[b / 64], memory_order_relaxed) & bit))
		return false;
	atomic_fetch_and_explicit(&r->ref[b / 64], ~bit, memory_order_relaxed);
	return true;
}

/* ---- quarantine ---- */

static void quarantine(struct reclaim *r, uintptr_t start, uintptr_t end)
{
	/* keeps later batches off the range until the kernel has zapped it */
	uint64_t until = now_ns() + QUARANTINE_NS, t = now_ns();
	pthread_mutex_lock(&r->qlock);
	int slot = -1;
	for (int i = 0; i < QUARANTINE_SLOTS; i++)
		if (r->q[i].until_ns < t) {
			slot = i;
			break;
		}
	if (slot < 0) {
		/* Table full (a program that madvises in a loop): widen the
		 * live slot nearest to the range rather than stopping the
		 * hand everywhere; a hull over a gap only delays reclaim of
		 * the gap by QUARANTINE_NS. */
		uintptr_t best_gap = UINTPTR_MAX;
		for (int i = 0; i < QUARANTINE_SLOTS; i++) {
			struct quarantine *q = &r->q[i];
			uintptr_t gap = q->end < start ? start - q->end :
					end < q->start ? q->start - end : 0;
			if (gap < best_gap) {
				best_gap = gap;
				slot = i;
			}
		}
		struct quarantine *q = &r->q[slot];
		q->start = q->start < start ? q->start : start;
		q->end = q->end > end ? q->end : end;
		q->until_ns = until;
	} else {
		r->q[slot] = (struct quarantine){ start, end, until };
	}
	pthread_mutex_unlock(&r->qlock);
}

bool reclaim_event_remove(struct reclaim *r, uintptr_t start, uintptr_t end, bool unmap)
{
	/*
	 * Inside the span of a zap in flight: most likely the zap's own event
	 * (the program's are told apart per page, below).  Not quarantined:
	 * the hand would otherwise soon find its own trail quarantined.
	 */
	bool own = !unmap && atomic_load(&r->zapping) && start >= atomic_load(&r->zlo) &&
		   end <= atomic_load(&r->zhi);
	if (!own)
		quarantine(r, start, end);

	/* pages of the batch in the range are gone for the program */
	int phase;
	while ((phase = atomic_load(&r->batch.phase)) == MOVING &&
	       start < atomic_load(&r->batch.hi) && end > atomic_load(&r->batch.lo))
		sched_yield();
	pthread_mutex_lock(&r->batch.lock);
	if (atomic_load(&r->batch.phase) == READY)
		for (unsigned int i = 0; i < r->batch.n; i++) {
			uint8_t st = r->batch.state[i];
			if (r->batch.addr[i] < start || r->batch.addr[i] >= end)
				continue;
			if (st == ZAPPING && !unmap) {
				/* ours or the program's: counted, decided after the zap */
				if (r->nremove[i] < 255)
					r->nremove[i]++;
			} else if (st == MOVED || st == PROTECTED || st == ZAPPING) {
				r->batch.state[i] = DROPPED;
				count(r, C_DROPPED, 1);
			}
		}
	pthread_mutex_unlock(&r->batch.lock);
	return own;
}

uintptr_t reclaim_batch_clip(struct reclaim *r, uintptr_t start, uintptr_t end)
{
	if (atomic_load(&r->batch.phase) == IDLE)
		return end;
	uintptr_t lo = atomic_load(&r->batch.lo), hi = atomic_load(&r->batch.hi);
	if (start >= hi || end <= lo)
		return end;
	return lo > start ? lo : start;
}

void reclaim_hold(struct reclaim *r)
{
	/* MOVING only begins under evlock, which the caller holds */
	while (atomic_load(&r->batch.phase) == MOVING)
		sched_yield();
	pthread_mutex_lock(&r->batch.lock);
}

void reclaim_unhold(struct reclaim *r)
{
	pthread_mutex_unlock(&r->batch.lock);
}

void reclaim_copy_staged(struct reclaim *r, struct uffd *to)
{
	if (atomic_load(&r->batch.phase) != READY)
		return;
	for (unsigned int i = 0; i < r->batch.n; i++) {
		/* a ZAPPING page's staging copy is exact (it was write-protected
		 * since); the child may or may not still have the page */
		if (r->batch.state[i] != MOVED && r->batch.state[i] != ZAPPING)
			continue;
		int err = uffd_copy(to, r->batch.addr[i], r->staging + i * PAGE, PAGE, false);
		if (err && err != -EEXIST && err != -ENOENT)
			log_error("copying a staged page into a forked child failed (error %d)", -err);
	}
}

void reclaim_events_lock(struct reclaim *r)
{
	pthread_mutex_lock(&r->evlock);
}

void reclaim_events_unlock(struct reclaim *r)
{
	pthread_mutex_unlock(&r->evlock);
	/*
	 * The handler would take it straight back under a stream of faults
	 * (mutexes are not fair): wait until the reclaimer has it.  It sets
	 * move_waiting right before it locks, so this is short.  One yield was
	 * not enough for WP detach, which takes evlock twice per batch: its
	 * thread torture got 68 batches through in a run.
	 */
	while (atomic_load_explicit(&r->move_waiting, memory_order_relaxed))
		sched_yield();
}

/* First quarantined address in [start, end), or end; *resume gets where to go on. */
static uintptr_t quarantine_clip(struct reclaim *r, uintptr_t start, uintptr_t end,
				 uintptr_t *resume)
{
	uint64_t t = now_ns();
	uintptr_t stop = end;
	*resume = end;
	pthread_mutex_lock(&r->qlock);
	for (int i = 0; i < QUARANTINE_SLOTS; i++) {
		struct quarantine *q = &r->q[i];
		if (q->until_ns < t || q->end <= start || q->start >= stop)
			continue;
		if (q->start <= start) { /* the head is quarantined */
			stop = start;
			if (q->end > *resume || *resume == end)
				*resume = q->end < end ? q->end : end;
		} else {
			stop = q->start;
			*resume = stop;
		}
	}
	pthread_mutex_unlock(&r->qlock);
	if (stop > start)
		*resume = stop;
	return stop;
}

int reclaim_event_remap(struct reclaim *r, uintptr_t from, uintptr_t to, size_t len)
{
	while (atomic_load(&r->batch.phase) == MOVING &&
	       from < atomic_load(&r->batch.hi) && from + len > atomic_load(&r->batch.lo))
		sched_yield();
	/* The store's entries move with the handler's store_move(); pages
	 * still in staging move here, under the same lock the commit takes. */
	pthread_mutex_lock(&r->batch.lock);
	if (atomic_load(&r->batch.phase) == READY)
		for (unsigned int i = 0; i < r->batch.n; i++)
			if (r->batch.addr[i] >= from && r->batch.addr[i] < from + len)
				r->batch.addr[i] = r->batch.addr[i] - from + to;
	int err = store_move(r->store, from, to, len);
	pthread_mutex_unlock(&r->batch.lock);
	return err;
}

bool reclaim_is_staging(struct reclaim *r, uintptr_t start, uintptr_t end)
{
	uintptr_t s = (uintptr_t)r->staging;
	return start >= s && end <= s + RECLAIM_BATCH * PAGE;
}

int reclaim_fault(struct reclaim *r, uintptr_t addr)
{
	if (atomic_load(&r->batch.phase) == IDLE)
		return 0;
	while (atomic_load(&r->batch.phase) == MOVING) {
		if (addr < atomic_load(&r->batch.lo) || addr >= atomic_load(&r->batch.hi))
			return 0;
		sched_yield();
	}
	/*
	 * While a zap runs, nothing missing in its span is filled: a page put
	 * there now (a new mapping's zero page, written at once) could be
	 * zapped with the batch.  Answered once the zap is decided.
	 */
	if (atomic_load(&r->zapping) && addr >= atomic_load(&r->zlo) &&
	    addr < atomic_load(&r->zhi))
		return -EAGAIN;
	int ret = 0;
	pthread_mutex_lock(&r->batch.lock);
	if (atomic_load(&r->batch.phase) == READY) {
		for (unsigned int i = 0; i < r->batch.n; i++) {
			if (r->batch.addr[i] != addr || r->batch.state[i] != MOVED)
				continue;
			int err = uffd_copy(r->uffd, addr, r->staging + i * PAGE, PAGE, false);
			if (err == 0 || err == -EEXIST) {
				r->batch.state[i] = RETURNED;
				count(r, C_REFAULT_STAGING, 1);
				ret = 1;
			} else if (err == -ENOENT) {
				r->batch.state[i] = DROPPED; /* the mapping went away */
				ret = 1;
			} else {
				/* -EAGAIN: an event is pending; never fall back to zeros */
				ret = err;
			}
			break;
		}
	}
	pthread_mutex_unlock(&r->batch.lock);
	return ret;
}

int reclaim_wp_fault(struct reclaim *r, uintptr_t addr)
{
	int ret = 0;
	/*
	 * Under batch.lock, and the caller holds evlock: the reclaimer marks
	 * pages ZAPPING under batch.lock and write-protects and scans under
	 * evlock, so a page is never unprotected between its scan and its
	 * zap.
	 */
	pthread_mutex_lock(&r->batch.lock);
	if (atomic_load(&r->batch.phase) == READY)
		for (unsigned int i = 0; i < r->batch.n; i++) {
			if (r->batch.addr[i] != addr)
				continue;
			if (r->batch.state[i] == ZAPPING) {
				ret = -EAGAIN;
			} else if (r->batch.state[i] == PROTECTED) {
				r->batch.state[i] = RETURNED; /* its copy is stale */
				count(r, C_WP_WRITES, 1);
			}
			break;
		}
	if (!ret) {
		/* a page no longer present (zapped, moved, unmapped) is not
		 * protected either: this only wakes the writer, who faults again */
		int err = uffd_writeprotect(r->uffd, addr, PAGE, false, false);
		if (err == -ENOENT || err == -ESRCH) {
			uffd_wake(r->uffd, addr, PAGE);
			err = 0;
		}
		ret = err;
	}
	pthread_mutex_unlock(&r->batch.lock);
	return ret;
}

/* ---- one batch ---- */

/*
 * Put a page that will not be stored back where it came from.  Called with
 * batch.lock held and state MOVED.  -EAGAIN (an event not read yet) leaves
 * it MOVED for the caller to retry without the lock: the handler may need
 * batch.lock before it can read that event.  If the copy fails for good,
 * the page's data exists only in staging, so it is stored as-is instead.
 */
static int return_page(struct reclaim *r, unsigned int i)
{
	/* batch.lock is held and the handler takes it under evlock: try only */
	if (pthread_mutex_trylock(&r->evlock))
		return -EAGAIN;
	int err = uffd_copy(r->uffd, r->batch.addr[i], r->staging + i * PAGE, PAGE, false);
	pthread_mutex_unlock(&r->evlock);
	if (err == -EAGAIN)
		return err;
	if (err == 0 || err == -EEXIST || err == -ENOENT) {
		/* ENOENT: the mapping is gone, and the page with it */
		r->batch.state[i] = err == -ENOENT ? DROPPED : RETURNED;
		return 0;
	}
	log_error("cannot put a page back (error %d); keeping it stored as-is", -err);
	if (store_page_raw(r->store, r->batch.addr[i], r->staging + i * PAGE) == 0)
		r->batch.state[i] = STORED;
	return 0;
}

/*
 * Points src[] at a copy in the warm buffer of each MOVED page of batch
 * slots [base, lim) (at its staging page where the copy could not be made:
 * the contents are the same, only slower to read).
 */
static void warm_fill(struct reclaim *r, unsigned int base, unsigned int lim)
{
	size_t k = 0;
	for (unsigned int i = base; i < lim; i++) {
		r->src[i - base] = r->staging + i * PAGE;
		if (!r->warm || r->batch.state[i] != MOVED) /* racy: commit_batch() rechecks */
			continue;
		r->liov[k] = (struct iovec){ r->warm + k * PAGE, PAGE };
		r->riov[k] = (struct iovec){ r->staging + i * PAGE, PAGE };
		r->slot[k++] = (uint16_t)i;
	}
	if (!k)
		return;
	/* staging is ours and a page in it never changes: a copy is exact */
	ssize_t got = process_vm_readv(getpid(), r->liov, k, r->riov, k, 0);
	for (size_t j = 0; got > 0 && j < (size_t)got / PAGE; j++)
		r->src[r->slot[j] - base] = r->liov[j].iov_base;
}

static size_t room_usage(struct reclaim *r);

/*
 * A batch's pages leave the process only when staging is emptied, at the
 * end of the batch: a fault held for room (reclaim_over_limit()) waited
 * for all of its compression, 2-4 ms for 512 pages here and more on a
 * loaded machine.  While one is held, slots [base, lim), committed, go at
 * once and the held faults are told.  A slot still MOVED (its return was
 * refused, retried after the loop) keeps them all; staging is read only
 * for MOVED (and, before the commit, ZAPPING) slots, and none becomes
 * MOVED again, so no lock is needed.
 */
static void empty_committed(struct reclaim *r, unsigned int base, unsigned int lim)
{
	if (!atomic_load_explicit(&r->held, memory_order_relaxed))
		return;
	unsigned int pages = 0;
	for (unsigned int i = base; i < lim; i++) {
		if (r->batch.state[i] == MOVED)
			return;
		pages += r->batch.state[i] != EMPTY;
	}
	if (!pages)
		return;
	madvise(r->staging + base * PAGE, (lim - base) * PAGE, MADV_DONTNEED);
	count(r, C_EMPTIED_EARLY, pages);
	room_usage(r);
}

/* Compress and commit every MOVED page of the batch; send back the rest. */
static long commit_batch(struct reclaim *r)
{
	long stored = 0;
	bool retry = false;
	for (unsigned int i = 0; i < r->batch.n; i++) {
		if (i % WARM_PAGES == 0) {
			if (i)
				empty_committed(r, i - WARM_PAGES, i);
			warm_fill(r, i, i + WARM_PAGES < r->batch.n ? i + WARM_PAGES : r->batch.n);
		}
		if (r->batch.state[i] != MOVED) /* racy read: rechecked below */
			continue;
		struct store_prep prep;
		int err = store_prepare(r->store, r->src[i % WARM_PAGES], &prep);
		pthread_mutex_lock(&r->batch.lock);
		if (r->batch.state[i] != MOVED) {
			if (!err)
				store_abort(r->store, &prep);
		} else if (err || store_commit(r->store, r->batch.addr[i], &prep)) {
			/* poor compression or no pool or index memory: the page goes back */
			count(r, C_POOR, 1);
			unfit_mark(r, r->batch.addr[i]);
			retry |= return_page(r, i) == -EAGAIN;
		} else {
			profile_stored(r->batch.addr[i]);
			r->batch.state[i] = STORED;
			stored++;
		}
		pthread_mutex_unlock(&r->batch.lock);
	}
	while (retry) {
		struct timespec ts = { 0, 50 * 1000 };
		nanosleep(&ts, NULL);
		retry = false;
		for (unsigned int i = 0; i < r->batch.n; i++) {
			pthread_mutex_lock(&r->batch.lock);
			if (r->batch.state[i] == MOVED)
				retry |= return_page(r, i) == -EAGAIN;
			pthread_mutex_unlock(&r->batch.lock);
		}
	}
	return stored;
}

/*
 * Break copy-on-write sharing of the pages MOVE refused, so the next pass
 * can take them: MADV_POPULATE_WRITE write-faults them without changing a
 * byte, atomically with the program's own writes.  A page that vanished
 * meanwhile faults to the handler, which is why this runs with the batch
 * IDLE; a read-only mapping just fails, and its pages stay resident.
 */
static void unshare_busy(struct reclaim *r)
{
	for (unsigned int i = 0; i < r->nbusy;) {
		unsigned int j = i + 1;
		while (j < r->nbusy && r->busy[j] == r->busy[j - 1] + PAGE)
			j++;
		madvise((void *)r->busy[i], (j - i) * PAGE, MADV_POPULATE_WRITE);
		i = j;
	}
}

static bool skipped(const uint64_t *skip, size_t i)
{
	return skip && (skip[i / 64] >> (i % 64) & 1);
}

static void evlock_take(struct reclaim *r)
{
	atomic_store(&r->move_waiting, true);
	pthread_mutex_lock(&r->evlock);
	atomic_store(&r->move_waiting, false);
}

/* pagemap entries of the @n pages from @addr into @pm. */
static int read_pagemap(struct reclaim *r, uintptr_t addr, size_t n, uint64_t *pm)
{
	size_t want = n * sizeof(*pm);
	ssize_t got = pread(r->pagemap, pm, want, (off_t)(addr / PAGE * sizeof(*pm)));
	return got == (ssize_t)want ? 0 : got < 0 ? -errno : -EIO;
}

/* Whether the page at @addr is a guard region's (pagemap says so). */
static bool guard_page(struct reclaim *r, uintptr_t addr)
{
	uint64_t pm;
	return read_pagemap(r, addr, 1, &pm) == 0 && (pm & PM_GUARD_REGION);
}

/*
 * What a detach's ioctl error means for its batch.  EAGAIN: an event is
 * pending.  ENOENT: the rest of the run's mapping is gone (munmap, or
 * mmap(MAP_FIXED) over it: V8 decommits its heap pages so), its unmap
 * event not read yet; what moved before is dropped by that event like a
 * page moved just before an unmap.  Either way a race, not a failure: the
 * batch takes what it has, the rest waits for a later pass (0).  Taken for
 * an error, ENOENT stopped reclaim and the holding of faults for 20 ms
 * (give_up()), 4 times a run of node under a 30 MiB limit, and in 3 runs
 * of 45 node grew to 41-53 MiB meanwhile.
 */
static int unless_race(int err)
{
	return err == -EAGAIN || err == -ENOENT ? 0 : err;
}

/*
 * MOVE detach of [start, end): moves the pages not skipped into staging
 * and sets up the batch (MOVED or EMPTY).  *@len gets the bytes the batch
 * covers (0: nothing), *@nmoved the pages moved.  @return 0 or -errno.
 */
static int detach_move(struct reclaim *r, uintptr_t start, uintptr_t end, const uint64_t *skip,
		       size_t *len_out, size_t *nmoved)
{
	uintptr_t st = (uintptr_t)r->staging;
	*len_out = 0;
	*nmoved = 0;
	/* MOVE needs the destination registered with the same uffd. */
	int err = uffd_register(r->uffd, st, end - start, false);
	if (err)
		return err;
	evlock_take(r);
	/*
	 * Under evlock every event read so far has been handled, so its
	 * quarantine is visible here; one read later finds the batch's pages
	 * in staging with contents from before it, and drops them.
	 */
	uintptr_t resume, full_end = end;
	end = quarantine_clip(r, start, end, &resume);
	atomic_store(&r->batch.lo, start);
	atomic_store(&r->batch.hi, end);
	atomic_store(&r->batch.phase, end > start ? MOVING : IDLE);
	size_t len = end - start, npages = len / PAGE;
	r->nbusy = 0;
	/* one MOVE per run of pages not skipped: a skipped page splits the
	 * run, not the batch */
	for (size_t run = 0; !err && run < len;) {
		if (skipped(skip, run / PAGE)) {
			run += PAGE;
			continue;
		}
		size_t run_end = run + PAGE;
		while (run_end < len && !skipped(skip, run_end / PAGE))
			run_end += PAGE;
		size_t done = run, cap = run_end - run;
		while (!err && done < run_end) {
			size_t moved = 0, want = cap < run_end - done ? cap : run_end - done;
			err = uffd_move(r->uffd, st + done, start + done, want, true, &moved);
			done += moved;
			if (err == -EINVAL && !moved && want > PAGE) {
				/*
				 * The run crosses a mapping boundary (the region
				 * set merges adjacent registrations) and MOVE
				 * takes one VMA per call: halve until a part
				 * fits, grow again after each success, a binary
				 * search for the boundary, down to one page.
				 */
				cap = want / 2 & ~(PAGE - 1);
				err = 0;
				continue;
			}
			if (err == -EINVAL && !moved) {
				/*
				 * MOVE refuses this page's mapping: another
				 * protection than staging's (mprotect: V8 flips
				 * its code pages and decommits heap pages so,
				 * glibc's arenas too), mlocked behind the shim's
				 * back, no longer anonymous.  The page stays
				 * where it is; the rest of the run is still
				 * taken (ending the batch here left every page
				 * behind such a mapping resident).  The hand
				 * leaves it a few passes (unfit_mark()).
				 */
				count(r, C_REFUSED, 1);
				unfit_mark(r, start + done);
				done += PAGE;
				cap = PAGE;
				err = 0;
				continue;
			}
			if (!err && cap < run_end - done)
				cap *= 2;
			if (err == -EBUSY) {
				/* a page shared copy-on-write since a fork: MOVE only
				 * takes exclusive pages, so unshare it after the batch */
				count(r, C_BUSY, 1);
				r->busy[r->nbusy++] = start + done;
				done += PAGE;
				err = 0;
			}
			if (err == -EAGAIN && guard_page(r, start + done)) {
				/* a guard region's marker (MADV_GUARD_INSTALL): MOVE
				 * says EAGAIN there as for a pending event; no page
				 * to take, the rest of the run is */
				done += PAGE;
				err = 0;
			}
		}
		run = run_end;
	}
	pthread_mutex_unlock(&r->evlock);
	err = unless_race(err);
	int uerr = uffd_unregister(r->uffd, st, full_end - start);
	if (!err)
		err = uerr;
	if (!len)
		return err;

	/*
	 * What moved: a page present in staging, or one the kernel had
	 * swapped out, whose swap entry MOVE carries along.  Not mincore():
	 * it calls a swapped page absent once it has left the swap cache,
	 * and such a page, taken for empty, was lost with the zap of staging.
	 * Its data comes back when compression reads it (a swap-in).
	 */
	int perr = read_pagemap(r, st, npages, r->pm);
	if (perr) {
		/* cannot happen with the file open; mincore() is right but for
		 * swapped pages, and taking an empty page for moved would store
		 * zeros over a page stored before */
		mincore((void *)st, len, r->present);
		for (size_t i = 0; i < npages; i++)
			r->pm[i] = r->present[i] & 1 ? PM_PRESENT : 0;
	}
	pthread_mutex_lock(&r->batch.lock);
	r->batch.n = npages;
	for (size_t i = 0; i < npages; i++) {
		r->batch.addr[i] = start + i * PAGE;
		r->batch.state[i] = r->pm[i] & (PM_PRESENT | PM_SWAP) ? MOVED : EMPTY;
		*nmoved += r->batch.state[i] == MOVED;
	}
	atomic_store(&r->batch.phase, READY);
	pthread_mutex_unlock(&r->batch.lock);
	*len_out = len;
	return err;
}

/*
 * WP detach, step 1 (under evlock): write-protect the runs of pages not
 * skipped and mark the pages that are present and protected PROTECTED.
 * A page present but not protected was put in after the ioctl (a missing
 * fault resolved meanwhile): it is not the batch's.
 */
static int wp_protect(struct reclaim *r, uintptr_t start, size_t npages, const uint64_t *skip)
{
	int err = 0;
	for (size_t i = 0; !err && i < npages;) {
		if (skipped(skip, i)) {
			i++;
			continue;
		}
		size_t j = i + 1;
		while (j < npages && !skipped(skip, j))
			j++;
		err = uffd_writeprotect(r->uffd, start + i * PAGE, (j - i) * PAGE, true, false);
		i = j;
	}
	if (!err)
		err = read_pagemap(r, start, npages, r->pm);
	pthread_mutex_lock(&r->batch.lock);
	r->batch.n = npages;
	for (size_t i = 0; i < npages; i++) {
		r->batch.addr[i] = start + i * PAGE;
		bool mine = !err && !skipped(skip, i) && (r->pm[i] & PM_PRESENT) &&
			    (r->pm[i] & PM_UFFD_WP);
		r->batch.state[i] = mine ? PROTECTED : EMPTY;
		r->nremove[i] = 0;
	}
	atomic_store(&r->batch.phase, READY);
	pthread_mutex_unlock(&r->batch.lock);
	return err;
}

/* Mark page @i of the batch not ours any more (its copy failed). */
static void wp_forget(struct reclaim *r, unsigned int i)
{
	pthread_mutex_lock(&r->batch.lock);
	if (r->batch.state[i] == PROTECTED)
		r->batch.state[i] = EMPTY; /* stays protected until the batch ends */
	pthread_mutex_unlock(&r->batch.lock);
}

/*
 * WP detach, step 2 (no lock held): copy the PROTECTED pages to staging.
 * process_vm_readv, not memcpy: the program may unmap or mprotect a page
 * meanwhile, which makes this fail with EFAULT instead of killing it with
 * SIGSEGV, and a page it discarded faults to the handler, who is free to
 * serve it (this thread holds nothing the handler needs).  Returns the
 * number of iovecs set up; r->riov keeps where each page was read from.
 */
static size_t wp_copy(struct reclaim *r)
{
	size_t k = 0;
	pthread_mutex_lock(&r->batch.lock); /* REMAP events move batch.addr */
	for (unsigned int i = 0; i < r->batch.n; i++)
		if (r->batch.state[i] == PROTECTED) {
			r->riov[k] = (struct iovec){ (void *)r->batch.addr[i], PAGE };
			r->liov[k] = (struct iovec){ r->staging + i * PAGE, PAGE };
			r->slot[k++] = (uint16_t)i;
		}
	pthread_mutex_unlock(&r->batch.lock);
	pid_t self = getpid();
	for (size_t done = 0; done < k;) {
		ssize_t got = process_vm_readv(self, r->liov + done, k - done, r->riov + done,
					       k - done, 0);
		if (got < 0 && errno != EFAULT && errno != ENOMEM) {
			/* cannot read at all: nothing of this batch is taken */
			while (done < k)
				wp_forget(r, r->slot[done++]);
			break;
		}
		done += got > 0 ? (size_t)got / PAGE : 0;
		if (done < k) /* unmapped or unreadable now */
			wp_forget(r, r->slot[done++]);
	}
	return k;
}

/*
 * WP detach, step 3: zap the pages still PROTECTED (and read from where
 * they are now), then decide what each is.  The REMOVE events of the zap
 * arrive like the program's: the handler counts, per ZAPPING page, every
 * REMOVE that names it while the window is open; ours is one, so a page
 * named twice was discarded by the program as well.  A page still present
 * afterwards was not zapped (the program moved or split its mapping
 * meanwhile) and simply stays.
 */
static void wp_zap(struct reclaim *r, size_t k)
{
	uintptr_t lo = UINTPTR_MAX, hi = 0;
	pthread_mutex_lock(&r->batch.lock);
	for (size_t j = 0; j < k; j++) {
		unsigned int i = r->slot[j];
		if (r->batch.state[i] != PROTECTED)
			continue;
		if (r->batch.addr[i] != (uintptr_t)r->riov[j].iov_base) { /* moved: copy is not it */
			r->batch.state[i] = EMPTY;
			continue;
		}
		r->batch.state[i] = ZAPPING;
		r->nremove[i] = 0;
		lo = r->batch.addr[i] < lo ? r->batch.addr[i] : lo;
		hi = r->batch.addr[i] + PAGE > hi ? r->batch.addr[i] + PAGE : hi;
	}
	atomic_store(&r->zlo, lo);
	atomic_store(&r->zhi, hi);
	atomic_store(&r->zapping, lo < hi);
	pthread_mutex_unlock(&r->batch.lock);
	if (lo >= hi)
		return;
	/* batch.addr of ZAPPING pages only changes under a REMAP event, after
	 * which the page is found present at its new place below */
	for (size_t j = 0; j < k;) {
		unsigned int i = r->slot[j];
		if (r->batch.state[i] != ZAPPING) {
			j++;
			continue;
		}
		uintptr_t a = (uintptr_t)r->riov[j].iov_base;
		size_t n = 1;
		while (j + n < k && (uintptr_t)r->riov[j + n].iov_base == a + n * PAGE &&
		       r->batch.state[r->slot[j + n]] == ZAPPING)
			n++;
		/* never under a lock: the madvise waits until the handler has
		 * read its REMOVE event */
		madvise((void *)a, n * PAGE, MADV_DONTNEED);
		j += n;
	}
	/* under evlock, every event the zap sent has been handled */
	evlock_take(r);
	pthread_mutex_lock(&r->batch.lock);
	/* the span is at most a batch unless a REMAP moved pages out of it:
	 * those are read one by one */
	size_t span = (hi - lo) / PAGE;
	bool whole = span <= RECLAIM_BATCH && read_pagemap(r, lo, span, r->pm) == 0;
	for (unsigned int i = 0; i < r->batch.n; i++) {
		if (r->batch.state[i] != ZAPPING)
			continue;
		uintptr_t a = r->batch.addr[i];
		uint64_t pm = 0;
		int err = 0;
		if (whole && a >= lo && a < hi)
			pm = r->pm[(a - lo) / PAGE];
		else
			err = read_pagemap(r, a, 1, &pm);
		if (err || (pm & PM_PRESENT))
			r->batch.state[i] = RETURNED;
		else if (r->nremove[i] >= 2)
			r->batch.state[i] = DROPPED;
		else
			r->batch.state[i] = MOVED;
		if (r->batch.state[i] == DROPPED)
			count(r, C_DROPPED, 1);
	}
	atomic_store(&r->zapping, false);
	pthread_mutex_unlock(&r->batch.lock);
	pthread_mutex_unlock(&r->evlock);
}

/* WP detach of [start, end): as detach_move(), by write-protect + copy + zap. */
static int detach_wp(struct reclaim *r, uintptr_t start, uintptr_t end, const uint64_t *skip,
		     size_t *len_out, size_t *nmoved)
{
	*len_out = 0;
	*nmoved = 0;
	r->nbusy = 0;
	/* taken before evlock: a change holding it waits on the handler */
	pthread_rwlock_wrlock(&r->maplock);
	evlock_take(r);
	uintptr_t resume;
	end = quarantine_clip(r, start, end, &resume);
	if (end <= start) {
		pthread_mutex_unlock(&r->evlock);
		pthread_rwlock_unlock(&r->maplock);
		return 0;
	}
	atomic_store(&r->batch.lo, start);
	atomic_store(&r->batch.hi, end);
	atomic_store(&r->batch.phase, MOVING);
	size_t len = end - start;
	int err = wp_protect(r, start, len / PAGE, skip);
	pthread_mutex_unlock(&r->evlock);
	*len_out = len;
	if (!err)
		wp_zap(r, wp_copy(r));
	/* what was not taken loses its protection now, not at its next write */
	uffd_writeprotect(r->uffd, start, len, false, false);
	pthread_rwlock_unlock(&r->maplock);
	for (unsigned int i = 0; i < r->batch.n; i++)
		*nmoved += r->batch.state[i] == MOVED;
	return unless_race(err);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static _Atomic int shadow_paging = -1; /* reclaim_shadow_paging() */

int reclaim_shadow_paging(void)
{
	return atomic_load(&shadow_paging);
}

#define FRESH_SAMPLES 64
int reclaim_time_fresh_entries(void *area, size_t pages, uint64_t *first_ns, uint64_t *second_ns)
{
	uint64_t first[FRESH_SAMPLES], second[FRESH_SAMPLES];
	size_t n = pages < FRESH_SAMPLES ? pages : FRESH_SAMPLES;
	if (!n)
		return -EINVAL;
	if (madvise(area, n * PAGE, MADV_POPULATE_WRITE))
		return -errno;
	volatile const uint8_t *p = area;
	for (int pass = 0; pass < 2; pass++) {
		uint64_t *d = pass ? second : first;
		for (size_t i = 0; i < n; i++) {
			uint64_t t = now_ns();
			(void)p[i * PAGE + 64 * (size_t)pass];
			d[i] = now_ns() - t;
		}
	}
	madvise(area, n * PAGE, MADV_DONTNEED);
	qsort(first, n, sizeof(*first), cmp_u64);
	qsort(second, n, sizeof(*second), cmp_u64);
	*first_ns = first[n / 2];
	*second_ns = second[n / 2];
	return 0;
}

/*
 * Whether a first user access to a page-table entry the kernel installed
 * costs a shadow page-table fault here (see WARM_PAGES), timed on staging
 * (empty between batches).  When it cannot tell (no MADV_POPULATE_WRITE
 * before 5.14) it says yes: the copy is then a cost, never a wrong result.
 */
static bool fresh_entries_costly(struct reclaim *r)
{
	uint64_t f, s;
	if (reclaim_time_fresh_entries(r->staging, WARM_PAGES, &f, &s))
		return true;
	bool costly = f > s + FRESH_COSTLY_NS;
	atomic_store(&shadow_paging, costly);
	log_debug("a fresh page-table entry costs %llu ns on first read, %llu on the next: "
		  "reclaim compresses from %s", (unsigned long long)f, (unsigned long long)s,
		  costly ? "a warm copy" : "staging");
	return costly;
}

static _Atomic int force_warm = -1; /* reclaim_force_warm_copy() */

void reclaim_force_warm_copy(int warm)
{
	atomic_store(&force_warm, warm);
}

/*
 * At the first batch, not at create: every process started under the
 * shim creates an engine, most never reclaim, and fork+exec stays cheap.
 * Without the warm buffer (no memory for it) pages are compressed from
 * staging: slower on such a guest, as correct.
 */
static void choose_source(struct reclaim *r)
{
	r->source_chosen = true;
	int f = atomic_load(&force_warm);
	if ((f < 0 ? fresh_entries_costly(r) : f) &&
	    pagesrc_alloc(WARM_PAGES, (void **)&r->warm))
		r->warm = NULL;
}

/*
 * Detach [start, end) (at most RECLAIM_BATCH pages, one region) and store
 * it.  Returns pages stored, or -errno when nothing could be moved.
 */
static long do_batch(struct reclaim *r, uintptr_t start, uintptr_t end, const uint64_t *skip)
{
	size_t len, nmoved;
	if (!r->source_chosen)
		choose_source(r);
	int err = r->wp ? detach_wp(r, start, end, skip, &len, &nmoved)
			: detach_move(r, start, end, skip, &len, &nmoved);
	if (!len) {
		atomic_store(&r->batch.phase, IDLE);
		return err;
	}

	long stored = commit_batch(r);

	pthread_mutex_lock(&r->batch.lock);
	atomic_store(&r->batch.phase, IDLE);
	r->batch.n = 0;
	pthread_mutex_unlock(&r->batch.lock);
	/* staging is unregistered now: zapping it sends no event */
	madvise(r->staging, len, MADV_DONTNEED);
	unshare_busy(r);

	count(r, C_BATCHES, 1);
	count(r, C_MOVED, nmoved);
	count(r, C_STORED, stored);
	if (err && nmoved == 0)
		return err;
	return stored;
}

static bool paused(struct reclaim *r);

long reclaim_range(struct reclaim *r, uintptr_t start, uintptr_t end)
{
	start &= ~(PAGE - 1);
	end = (end + PAGE - 1) & ~(PAGE - 1);
	long total = 0;
	pthread_mutex_lock(&r->owner);
	uintptr_t s, e, a = start;
	while (a < end && !paused(r) && region_next(r->regions, a, &s, &e) && s < end) {
		if (e > end)
			e = end;
		uintptr_t resume, be = s + RECLAIM_BATCH * PAGE < e ? s + RECLAIM_BATCH * PAGE : e;
		be = quarantine_clip(r, s, be, &resume);
		if (be > s) {
			long n = do_batch(r, s, be, NULL);
			if (n >= 0 && r->nbusy) { /* unshared now: take them too */
				long m = do_batch(r, s, be, NULL);
				n = m < 0 ? n : n + m;
			}
			store_writeback(r->store);
			if (n < 0) {
				total = n;
				break;
			}
			total += n;
		}
		a = resume > s ? resume : s + PAGE;
	}
	pthread_mutex_unlock(&r->owner);
	return total;
}

/* ---- the clock hand and the policy ---- */

size_t reclaim_anon_rss(void)
{
	char buf[128];
	if (!maps_read_small("/proc/self/statm", buf, sizeof(buf)))
		return 0;
	unsigned long size, resident, shared;
	char *p = buf;
	size = strtoul(p, &p, 10);
	resident = strtoul(p, &p, 10);
	shared = strtoul(p, &p, 10);
	(void)size;
	return (resident > shared ? resident - shared : 0) * PAGE;
}

/*
 * The engine's own resident memory besides the pool (index, buffers,
 * stacks, cached free pages: 1-4 MiB), looked at every OWN_NS.  It is not
 * the program's, and under a limit of a few MiB it would be all of it: the
 * reclaimer would take every page of the program and still not get under.
 */
#define OWN_NS (50ull * 1000 * 1000)
static size_t engine_own(struct reclaim *r)
{
	uint64_t t = now_ns(), last = atomic_load_explicit(&r->own_ns, memory_order_relaxed);
	if ((!last || t - last >= OWN_NS) &&
	    atomic_compare_exchange_strong(&r->own_ns, &last, t)) {
		size_t res = pagesrc_resident_bytes(), pool = store_pool_bytes(r->store);
		atomic_store_explicit(&r->own, res > pool ? res - pool : 0, memory_order_relaxed);
	}
	return atomic_load_explicit(&r->own, memory_order_relaxed);
}

/* The limit now (0: none): o.limit_bytes until reclaim_set_limit(). */
static inline size_t limit_of(struct reclaim *r)
{
	return atomic_load_explicit(&r->limit, memory_order_relaxed);
}

/*
 * What the limit is compared with: the program's resident anonymous
 * memory, plus the pool unless ZSWAPU_LIMIT_POOL=0.  Published for
 * reclaim_over_limit().
 */
static size_t usage(struct reclaim *r)
{
	size_t u = reclaim_anon_rss(), own = engine_own(r);
	if (!r->o.limit_pool)
		own += store_pool_bytes(r->store);
	u = u > own ? u - own : 0;
	atomic_store_explicit(&r->usage_seen, u, memory_order_relaxed);
	atomic_store_explicit(&r->installed, 0, memory_order_relaxed);
	atomic_store_explicit(&r->seen_ns, now_ns(), memory_order_relaxed);
	return u;
}

/*
 * Back-pressure.  A reclaimer in its own thread trails a program whose
 * working set is hot: what it takes comes straight back, and the resident
 * size stayed far over the limit (measured: sqlite3 under a 10 MiB limit
 * peaked at 32 MiB; 100,001 of the 133,257 pages taken came back).  The
 * kernel holds a cgroup's limit by reclaiming before it charges a page;
 * here the fault handler holds a fault that would add a page while usage
 * is over the limit (core/engine.c), and this wakes the reclaimer.  Usage
 * is the last read plus a page per fault since, read afresh (one pread)
 * only when that estimate is over, at most every FRESH_NS.  Never while
 * the reclaimer cannot bring it down (see give_up()): then the program
 * runs over its limit rather than waiting for nothing.
 */
#define FRESH_NS (200ull * 1000)
bool reclaim_over_limit(struct reclaim *r)
{
	size_t lim = limit_of(r);
	if (!lim || !atomic_load_explicit(&r->able, memory_order_relaxed))
		return false;
	uint64_t n = atomic_fetch_add_explicit(&r->installed, 1, memory_order_relaxed) + 1;
	size_t est = atomic_load_explicit(&r->usage_seen, memory_order_relaxed) + n * PAGE;
	if (est <= lim)
		return false;
	if (now_ns() - atomic_load_explicit(&r->seen_ns, memory_order_relaxed) >= FRESH_NS &&
	    usage(r) <= lim)
		return false;
	atomic_store_explicit(&r->held, true, memory_order_relaxed);
	pthread_mutex_lock(&r->ctl);
	pthread_cond_signal(&r->wake);
	pthread_mutex_unlock(&r->ctl);
	return true;
}

size_t reclaim_limit(struct reclaim *r)
{
	return limit_of(r);
}

size_t reclaim_limit_set(struct reclaim *r)
{
	return atomic_load_explicit(&r->given, memory_order_relaxed);
}

void reclaim_watch_stall(struct reclaim *r, const _Atomic uint64_t *ns)
{
	r->stall_src = ns;
}

int reclaim_set_limit(struct reclaim *r, size_t bytes)
{
	/* no thread to hold one: it was started without a limit or cold age */
	if (!bytes || !limit_of(r))
		return -EINVAL;
	atomic_store(&r->given, bytes);
	atomic_store(&r->limit, bytes);
	/* at once, not at the end of a rest: the estimate the held faults
	 * go by is compared with the new limit from the next fault on */
	pthread_mutex_lock(&r->ctl);
	pthread_cond_signal(&r->wake);
	pthread_mutex_unlock(&r->ctl);
	return 0;
}

void reclaim_on_room(struct reclaim *r, void (*fn)(void *), void *arg)
{
	r->room_fn = fn;
	r->room_arg = arg;
}

/*
 * usage(), and when it is under the limit with a fault held, the held
 * faults are told (reclaim_on_room()) instead of finding out at their
 * next look, a millisecond later.  xz under a 2.4 MiB limit, every fault
 * held: 34,000 held faults waited 40 s of its 62 s run that way.
 */
static size_t room_usage(struct reclaim *r)
{
	size_t u = usage(r);
	if (u <= limit_of(r) && atomic_load_explicit(&r->held, memory_order_relaxed) &&
	    atomic_exchange(&r->held, false) && r->room_fn)
		r->room_fn(r->room_arg);
	return u;
}

/* see reclaim_set_unknown_hook() */
static void (*_Atomic unknown_hook)(void);

void reclaim_set_unknown_hook(void (*fn)(void))
{
	unknown_hook = fn;
}

void reclaim_note_installed(struct reclaim *r, unsigned int pages)
{
	if (limit_of(r))
		atomic_fetch_add_explicit(&r->installed, pages, memory_order_relaxed);
}

/* The reclaimer cannot get usage under the limit: no back-pressure for a while. */
#define GIVE_UP_NS (20ull * 1000 * 1000)
static void give_up(struct reclaim *r, uint64_t ns)
{
	atomic_store(&r->able, false);
	r->able_again_ns = now_ns() + ns;
}

/*
 * Advance the hand over up to one batch worth of pages: skip referenced
 * pages (clearing their bit), detach and store the rest in runs.
 * Returns pages stored (>= 0), or -errno; *wrapped is set when the hand
 * went past the last region.
 */
static long hand_step(struct reclaim *r, bool *wrapped)
{
	uintptr_t s, e;
	*wrapped = false;
	if (!region_next(r->regions, r->hand, &s, &e)) {
		*wrapped = true;
		r->hand = 0;
		count(r, C_PASSES, 1);
		unfit_pass_done(r, atomic_load(&r->cnt[C_PASSES]));
		if (!region_next(r->regions, 0, &s, &e))
			return 0;
	}
	uintptr_t resume;
	uintptr_t lim = s + RECLAIM_BATCH * PAGE < e ? s + RECLAIM_BATCH * PAGE : e;
	lim = quarantine_clip(r, s, lim, &resume);
	if (lim == s) {
		r->hand = resume > s ? resume : s + PAGE;
		return 0;
	}
	/*
	 * A program thrashing under its limit leaves the hand mostly absent
	 * pages: a batch over them costs two registrations of staging (the mmap
	 * lock taken for writing, which stalls the program's faults) to move
	 * nothing (measured: sqlite3 under a 10 MiB limit, 272,626 batches for
	 * 138,102 pages).  mincore() takes it only for reading.  A page that
	 * turns up after the look waits for the next pass.
	 */
	size_t n = (lim - s) / PAGE;
	bool looked = mincore((void *)s, lim - s, r->hpresent) == 0;
	/*
	 * Referenced pages get their second chance by being skipped (their
	 * bit cleared), not by ending the batch there: hot pages spread over
	 * a region would otherwise cut every batch down to a page or two,
	 * each paying a whole batch's fixed cost (measured: the hand fell
	 * behind a random-access workload and the limit was not held).  For
	 * the same reason the window spans up to RECLAIM_BATCH pages and ends
	 * where batch_pages pages are to be taken: a window of batch_pages
	 * over a thrashing working set (xz under 2.4 MiB, a third of it
	 * resident and most of that hot) held 4.6 pages to take a batch.
	 */
	uint64_t skip[RECLAIM_BATCH / 64] = { 0 };
	size_t i, nref = 0, nunfit = 0, take = 0;
	for (i = 0; i < n && take < r->o.batch_pages; i++) {
		bool ref = ref_test_clear(r, s + i * PAGE);
		bool unfit = !ref && unfit_test(r, s + i * PAGE);
		bool leave = ref || unfit || (looked && !(r->hpresent[i] & 1));
		if (leave)
			skip[i / 64] |= 1ULL << (i % 64);
		nref += ref;
		nunfit += unfit;
		take += !leave;
	}
	count(r, C_SKIPPED_REF, nref);
	count(r, C_SKIPPED_UNFIT, nunfit);
	lim = s + i * PAGE;
	r->hand = lim;
	if (!take)
		return 0;
	pthread_mutex_lock(&r->owner);
	long got = do_batch(r, s, lim, skip);
	store_writeback(r->store); /* the pool over its cap: oldest pages to the file */
	pthread_mutex_unlock(&r->owner);
	return got;
}

static bool should_stop(struct reclaim *r)
{
	pthread_mutex_lock(&r->ctl);
	while (r->pause_depth > 0 && !r->stop) {
		atomic_store(&r->able, false); /* back when the loop turns again */
		r->in_batch_loop = false;
		pthread_cond_broadcast(&r->paused_cv);
		pthread_cond_wait(&r->wake, &r->ctl);
	}
	r->in_batch_loop = true;
	bool stop = r->stop;
	pthread_mutex_unlock(&r->ctl);
	return stop;
}

/*
 * Wait @ns, or until woken.  With @until (a value r->added is to reach;
 * 0: none), also not past the registration that takes r->added there: a
 * rest because the regions held too little to take ends when enough
 * memory is added (the shim registering what grew, after the reclaimer
 * asked it to look).  Resting on regardless let mallocchurn's start,
 * 1 MiB/ms, run 20 ms unchecked: peaks of 27-35 MiB under an 11 MiB
 * limit.  True when that much was added.
 */
static bool idle_wait(struct reclaim *r, uint64_t ns, uint64_t until)
{
	pthread_mutex_lock(&r->ctl);
	r->in_batch_loop = false;
	pthread_cond_broadcast(&r->paused_cv);
	bool added = until && atomic_load(&r->added) >= until;
	if (!r->stop && !added) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t t = (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec + ns;
		ts.tv_sec = t / 1000000000ull;
		ts.tv_nsec = t % 1000000000ull;
		r->wake_at_added = until;
		pthread_cond_timedwait(&r->wake, &r->ctl, &ts);
		r->wake_at_added = 0;
		added = until && atomic_load(&r->added) >= until;
	}
	pthread_mutex_unlock(&r->ctl);
	return added;
}

void reclaim_memory_added(struct reclaim *r, size_t len)
{
	pthread_mutex_lock(&r->ctl);
	uint64_t now = atomic_load(&r->added) + len;
	atomic_store(&r->added, now);
	if (r->wake_at_added && now >= r->wake_at_added)
		pthread_cond_signal(&r->wake);
	pthread_mutex_unlock(&r->ctl);
}

/*
 * Loads free objects all over the pool; without compaction its pages stay
 * tied up (measured: 879 MiB of pool holding 360 MiB of objects after a
 * random-access phase).  Compact when a quarter of the pool is holes,
 * at most every COMPACT_NS.
 */
#define COMPACT_NS (100ull * 1000 * 1000)
static void maybe_compact(struct reclaim *r)
{
	uint64_t t = now_ns();
	if (t - r->last_compact_ns < COMPACT_NS)
		return;
	r->last_compact_ns = t;
	size_t pool = store_pool_bytes(r->store), data = store_compressed_bytes(r->store);
	if (pool > data + data / 3 + (2u << 20))
		count(r, C_COMPACTED, store_compact(r->store));
}

/*
 * When the pool itself fills the limit (the pool counting against it),
 * compressing more cannot bring usage under it: every page taken comes
 * straight back and the program crawls (measured: a python dict build,
 * 306 MiB compressed into 76 MiB of pool under an 80 MiB limit, ran 285 s
 * against 6 s native).  Checked once per window of WINDOW_PAGES reclaimed:
 * the hand then rests, 20 ms doubling up to 1 s while it lasts, and the
 * program runs over its limit rather than at a fraction of its speed.  A
 * refault-rate trigger was tried first and dropped: a workload whose hot
 * set fits (hotcold) also refaults a lot while the hand learns it, and
 * resting let it run over a limit it could keep.
 */
#define WINDOW_PAGES 8192
#define BACKOFF_MIN_NS (20ull * 1000 * 1000)
#define BACKOFF_MAX_NS (1000ull * 1000 * 1000)

/* Returns how long to rest now (0: go on). */
static uint64_t thrash_check(struct reclaim *r)
{
	uint64_t moved = atomic_load(&r->cnt[C_MOVED]), stored = atomic_load(&r->cnt[C_STORED]);
	if (moved - r->win_moved < WINDOW_PAGES)
		return 0;
	/*
	 * Fewer than half the pages taken stayed stored: the rest did not
	 * compress and went back, and under a limit the hand takes them again
	 * at every pass while the program's faults are held (torture_poor, a
	 * third of its pages incompressible: the reclaimer spent its time
	 * returning them and the run did not finish in 10 minutes).
	 */
	bool futile = stored - r->win_stored < (moved - r->win_moved) / 2;
	r->win_moved = moved;
	r->win_stored = stored;
	if (futile ||
	    (r->o.limit_pool && store_pool_bytes(r->store) >= limit_of(r) / 10 * 9)) {
		r->backoff_ns = r->backoff_ns ? 2 * r->backoff_ns : BACKOFF_MIN_NS;
		if (r->backoff_ns > BACKOFF_MAX_NS)
			r->backoff_ns = BACKOFF_MAX_NS;
		count(r, C_BACKOFFS, 1);
		return r->backoff_ns;
	}
	r->backoff_ns = 0;
	return 0;
}

/* The managed pages resident now: at most what the hand could take. */
static size_t managed_resident(struct reclaim *r)
{
	size_t n = 0;
	uintptr_t s, e;
	for (uintptr_t a = 0; region_next(r->regions, a, &s, &e); a = e)
		for (uintptr_t p = s; p < e; p += RECLAIM_BATCH * PAGE) {
			size_t len = e - p < RECLAIM_BATCH * PAGE ? e - p : RECLAIM_BATCH * PAGE;
			if (mincore((void *)p, len, r->hpresent) != 0) {
				n += len / PAGE; /* changing under us: assume it all there */
				continue;
			}
			for (size_t i = 0; i < len / PAGE; i++)
				n += r->hpresent[i] & 1;
		}
	return n * PAGE;
}

/*
 * A limit the hand cannot reach: taking every managed page resident would
 * leave usage over it by more than an eighth.  The rest is memory the
 * engine does not manage.  The test for "nothing left to take" in
 * reclaim_thread() does not see this case: the held faults let pages
 * trickle back, so every pass takes a few.  (Measured: under TSan the
 * shadow of a managed page stays when the page leaves; torture_threads
 * held every fault for 20 ms and did 1,000 page operations a second.)
 * Then faults are not held until a pass finds the limit in reach again,
 * and the hand rests for unreach_ns: 20 ms, doubling up to 1 s while it
 * lasts.  The eighth: with the pool nearly filling a small limit (torture
 * runs: 3.1 MiB of pool under 3.6 MiB) taking all would miss by 15-340
 * KiB; there holding faults still keeps usage near the limit, and resting
 * let the program run 5 times over it.
 */
#define REACH_SLACK_DIV 8
static bool out_of_reach(struct reclaim *r)
{
	uintptr_t s, e;
	if (!region_next(r->regions, 0, &s, &e))
		return false; /* none yet: "nothing to take" waits for them */
	size_t u = usage(r), lim = limit_of(r), mr = 0;
	if (u <= lim + lim / REACH_SLACK_DIV ||
	    (mr = managed_resident(r)) >= u - lim - lim / REACH_SLACK_DIV) {
		if (r->unreach_ns && now_ns() >= r->able_again_ns)
			atomic_store(&r->able, true); /* back-pressure helps again */
		r->unreach_ns = 0;
		return false;
	}
	r->shortfall = u - lim - lim / REACH_SLACK_DIV - mr;
	r->unreach_ns = r->unreach_ns ? 2 * r->unreach_ns : GIVE_UP_NS;
	if (r->unreach_ns > BACKOFF_MAX_NS)
		r->unreach_ns = BACKOFF_MAX_NS;
	count(r, C_UNREACHABLE, 1);
	return true;
}

/* The hysteresis marks: @pct percent under the limit @lim. */
static inline size_t under(size_t lim, unsigned int pct)
{
	return lim - lim / 100 * pct;
}

/*
 * The stall control (ZSWAPU_STALL_MAX).  A limit the program's hot set
 * does not fit is held all the same: each fault brings back a page that
 * pushes out another the program needs next, and it ran 40-120x slower
 * (perl, a JVM, mawk under 30 % of their size) where the kernel's zswap in
 * a cgroup OOM-kills them.  With stall_max_pct the limit gives: while the
 * program is at it and waits on what it costs (refaults, held or not)
 * more than that share of a window, it is raised by a quarter, once a
 * window; a first touch's fault is not counted, held or not, or a program
 * that merely grows would raise it.  Like memory.high rather than
 * memory.max, but with the time the program loses as the measure.  The
 * window is STALL_WINDOW_MS: with 1 s, perl and a JVM whose limits had to
 * double or triple spent 4-6 s getting there (2.3-2.7 s with 250 ms).
 * Once the stall has stayed under half the maximum for STALL_CALM_MS (a
 * phase ended), a raised limit comes down by a fifth, at most down to the
 * limit given: a program whose hot set shrank gets back under it, one
 * whose set is still there raises it again a window later.  Such a probe
 * costs that program a window of refaults and the reclaimer a fifth of
 * its memory, so each one undone within the calm doubles the calm the
 * next one waits for, up to STALL_CALM_MAX_NS; one that holds resets it
 * (engine/basic/stall_control_probes_less_often: 5 s of steady access at
 * a 20 ms window and a 200 ms calm probed 16 times, now 8-10).  A limit set
 * meanwhile (reclaim_set_limit()) wins: the exchange fails and the next
 * window starts from it.
 */
#define STALL_WINDOW_MS 250
#define STALL_CALM_MS 10000
#define STALL_CALM_MAX_NS (300ull * 1000 * 1000 * 1000)
static void stall_control(struct reclaim *r)
{
	if (!r->o.stall_max_pct || !r->stall_src)
		return;
	uint64_t t = now_ns(), start = r->stall_t;
	uint64_t win = (r->o.stall_window_ms ? r->o.stall_window_ms : STALL_WINDOW_MS) * 1000000ull;
	if (start && t - start < win)
		return;
	uint64_t calm = (r->o.stall_calm_ms ? r->o.stall_calm_ms : STALL_CALM_MS) * 1000000ull;
	uint64_t v = atomic_load_explicit(r->stall_src, memory_order_relaxed);
	uint64_t pct = start ? (v - r->stall_v) * 100 / (t - start) : 0;
	r->stall_t = t;
	r->stall_v = v;
	if (!start)
		return;
	size_t lim = limit_of(r), given = reclaim_limit_set(r), to = lim;
	/*
	 * Only a limit the program is at: refaults under it (pages stored
	 * before, read back in a scan) are not the limit's doing, and raising
	 * it there went on without end (hotcold's verify pass: raised 21
	 * times, to 100 times the memory it had).
	 */
	bool at_limit = atomic_load_explicit(&r->usage_seen, memory_order_relaxed) >=
			under(lim, MARGIN_LOW_PCT);
	uint64_t need = r->calm_need_ns ? r->calm_need_ns : calm;
	if (r->probe_ns && t - r->probe_ns > calm) {
		r->probe_ns = 0; /* the last lowering held */
		r->calm_need_ns = calm;
	}
	if (pct > r->o.stall_max_pct && at_limit) {
		r->calm_since = 0;
		if (r->probe_ns) { /* the last lowering undone: probe less often */
			r->probe_ns = 0;
			r->calm_need_ns = 2 * need < STALL_CALM_MAX_NS ? 2 * need : STALL_CALM_MAX_NS;
		}
		to = lim + lim / 4;
	} else if (lim > given && pct < r->o.stall_max_pct / 2.0) {
		if (!r->calm_since)
			r->calm_since = start;
		if (t - r->calm_since < need)
			return;
		r->calm_since = 0;
		r->probe_ns = t;
		to = lim - lim / 5 > given ? lim - lim / 5 : given;
	} else {
		r->calm_since = 0;
	}
	to &= ~(size_t)(PAGE - 1);
	if (to == lim || !atomic_compare_exchange_strong(&r->limit, &lim, to))
		return;
	count(r, to > lim ? C_RAISED : C_LOWERED, 1);
	log_info("stall %llu %% over the last %.2f s: limit %s to %zu KiB",
		 (unsigned long long)pct, (t - start) / 1e9, to > lim ? "raised" : "lowered", to >> 10);
}

static void *reclaim_thread(void *arg)
{
	struct reclaim *r = arg;
	pthread_setname_np(pthread_self(), "zswapu-reclaim");
	r->last_sweep_ns = now_ns();
	while (!should_stop(r)) {
		bool work = false;
		stall_control(r);
		/* read once a turn: reclaim_set_limit() may change it */
		size_t lim = limit_of(r);
		size_t high = under(lim, MARGIN_HIGH_PCT), low = under(lim, MARGIN_LOW_PCT);
		/* also while resting: the program's faults keep freeing objects
		 * (hotcold, pool counted: 935 MiB of pool held 634 MiB) */
		if (lim)
			maybe_compact(r);
		/* out of reach, faults stay free until a pass says otherwise */
		if (lim && !r->unreach_ns && now_ns() >= r->able_again_ns)
			atomic_store(&r->able, true);
		if (lim && room_usage(r) > high) {
			/* reclaim until below the low mark or a whole pass found nothing */
			long since_wrap = 0;
			int wraps = 0;
			uint64_t added_then = 0; /* r->added when wraps became 1 */
			while (!should_stop(r) && room_usage(r) > low) {
				bool wrapped;
				if (wraps >= 2) {
					/* nothing to take: wait instead of passing over
					 * empty regions again (a shell whose limit was
					 * below its own size spun at 60 % of a core) */
					if (usage(r) > lim)
						give_up(r, GIVE_UP_NS);
					/* the second pass saw all added before the first ended */
					if (idle_wait(r, GIVE_UP_NS, added_then + 1))
						r->able_again_ns = now_ns();
					break;
				}
				if (store_pool_full(r->store)) {
					/* pool at its cap, no file: every page would come back */
					give_up(r, IDLE_POLL_NS);
					idle_wait(r, IDLE_POLL_NS, 0);
					break;
				}
				long n = hand_step(r, &wrapped);
				if (n < 0) {
					count(r, C_BATCH_ERRORS, 1);
					give_up(r, GIVE_UP_NS);
					idle_wait(r, GIVE_UP_NS, 0);
					break;
				}
				maybe_compact(r);
				stall_control(r);
				uint64_t rest = thrash_check(r);
				if (rest) {
					give_up(r, rest);
					idle_wait(r, rest, 0);
					break;
				}
				since_wrap += n;
				/* a limit raised meanwhile ends the pass */
				lim = limit_of(r);
				low = under(lim, MARGIN_LOW_PCT);
				if (wrapped) {
					wraps = since_wrap ? 0 : wraps + 1;
					since_wrap = 0;
					uint64_t added = atomic_load(&r->added);
					if (wraps == 1)
						added_then = added;
					bool far = out_of_reach(r);
					/* the rest may be memory no scan has
					 * registered yet: the shim looks now */
					if ((wraps == 1 || far) && unknown_hook)
						unknown_hook();
					if (far) {
						give_up(r, r->unreach_ns);
						/* memory that may close the gap */
						idle_wait(r, r->unreach_ns, added + r->shortfall);
						break;
					}
				}
			}
			work = true;
		} else {
			r->unreach_ns = 0; /* under: the next time starts short */
		}
		if (r->o.cold_age_ms &&
		    now_ns() - r->last_sweep_ns >= r->o.cold_age_ms * 1000000ull) {
			bool wrapped = false;
			r->hand = 0;
			while (!should_stop(r) && !wrapped)
				if (hand_step(r, &wrapped) < 0)
					break;
			r->last_sweep_ns = now_ns();
			work = true;
		}
		maybe_compact(r);
		if (!work)
			idle_wait(r, IDLE_POLL_NS, 0);
	}
	atomic_store(&r->able, false);
	pthread_mutex_lock(&r->ctl);
	r->in_batch_loop = false;
	pthread_cond_broadcast(&r->paused_cv);
	pthread_mutex_unlock(&r->ctl);
	return NULL;
}

void reclaim_map_change_begin(struct reclaim *r)
{
	if (r->wp)
		pthread_rwlock_rdlock(&r->maplock);
}

void reclaim_map_change_end(struct reclaim *r)
{
	if (r->wp)
		pthread_rwlock_unlock(&r->maplock);
}

/* ---- life cycle ---- */

int reclaim_create(const struct reclaim_options *o, struct uffd *u,
		   struct store *s, struct region_set *rs, struct reclaim **out)
{
	if (o->batch_pages > RECLAIM_BATCH)
		return -EINVAL;
	size_t npages = (sizeof(struct reclaim) + PAGE - 1) / PAGE;
	struct reclaim *r;
	int err = pagesrc_alloc(npages, (void **)&r);
	if (err)
		return err;
	memset(r, 0, sizeof(*r));
	r->o = *o;
	atomic_init(&r->limit, o->limit_bytes);
	atomic_init(&r->given, o->limit_bytes);
	size_t limit_pages = o->limit_bytes / PAGE;
	if (!r->o.batch_pages) {
		r->o.batch_pages = RECLAIM_BATCH;
		if (limit_pages && limit_pages / 32 < RECLAIM_BATCH)
			r->o.batch_pages = limit_pages / 32 > BATCH_MIN ? limit_pages / 32 : BATCH_MIN;
	}
	r->ref_shift = REF_SHIFT_MAX;
	while (limit_pages && r->ref_shift > REF_SHIFT_MIN &&
	       (1UL << (r->ref_shift - 1)) >= 16 * limit_pages)
		r->ref_shift--;
	r->uffd = u;
	r->store = s;
	r->regions = rs;
	r->wp = o->detach == RECLAIM_DETACH_WP;
	pthread_rwlock_init(&r->maplock, NULL);
	/*
	 * The pagemap tells which pages a detach took (MOVE: present or
	 * swapped in staging; WP: present and protected in the program).  WP
	 * also copies with process_vm_readv, which a seccomp filter may forbid.
	 */
	r->pagemap = fdguard_adopt(open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
	err = r->pagemap < 0 ? -errno : 0;
	if (!err && r->wp) {
		uint64_t probe = 0;
		struct iovec l = { &probe, sizeof(probe) }, rv = { &r->o, sizeof(probe) };
		if (process_vm_readv(getpid(), &l, 1, &rv, 1, 0) != sizeof(probe))
			err = -EOPNOTSUPP;
	}
	if (err) {
		fdguard_close(r->pagemap);
		pagesrc_free(r, npages);
		return err;
	}
	pthread_mutex_init(&r->owner, NULL);
	pthread_mutex_init(&r->batch.lock, NULL);
	pthread_mutex_init(&r->qlock, NULL);
	pthread_mutex_init(&r->evlock, NULL);
	pthread_mutex_init(&r->ctl, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->wake, &ca);
	pthread_cond_init(&r->paused_cv, &ca);
	pthread_condattr_destroy(&ca);
	err = pagesrc_alloc(RECLAIM_BATCH, (void **)&r->staging);
	if (!err) {
		/* staging must start empty: MOVE only fills absent pages */
		madvise(r->staging, RECLAIM_BATCH * PAGE, MADV_DONTNEED);
		err = pagesrc_alloc(REF_PAGES(r), (void **)&r->ref);
	}
	if (!err)
		err = pagesrc_alloc(UNFIT_FILTERS * REF_PAGES(r), (void **)&r->unfit);
	if (!err) {
		memset((void *)r->ref, 0, REF_PAGES(r) * PAGE);
		memset((void *)r->unfit, 0, UNFIT_FILTERS * REF_PAGES(r) * PAGE);
	}
	if (err) {
		reclaim_destroy(r);
		return err;
	}
	*out = r;
	return 0;
}

void reclaim_forked_child(struct reclaim *r)
{
	fdguard_close(r->pagemap); /* the parent's pagemap, opened as /proc/self */
	r->pagemap = -1;
}

void reclaim_destroy(struct reclaim *r)
{
	if (!r)
		return;
	reclaim_stop(r);
	if (r->staging)
		pagesrc_free(r->staging, RECLAIM_BATCH);
	if (r->warm)
		pagesrc_free(r->warm, WARM_PAGES);
	if (r->ref)
		pagesrc_free((void *)r->ref, REF_PAGES(r));
	if (r->unfit)
		pagesrc_free((void *)r->unfit, UNFIT_FILTERS * REF_PAGES(r));
	fdguard_close(r->pagemap);
	pagesrc_free(r, (sizeof(struct reclaim) + PAGE - 1) / PAGE);
}

int reclaim_start(struct reclaim *r)
{
	if (!r->o.limit_bytes && !r->o.cold_age_ms)
		return 0; /* only explicit reclaim_range() calls */
	r->stop = false;
	int err = pagesrc_thread_create(&r->thread, reclaim_thread, r, &r->thread_stack);
	if (err)
		return err;
	r->running = true;
	return 0;
}

void reclaim_stop(struct reclaim *r)
{
	if (!r->running)
		return;
	pthread_mutex_lock(&r->ctl);
	r->stop = true;
	pthread_cond_broadcast(&r->wake);
	pthread_mutex_unlock(&r->ctl);
	pagesrc_thread_join(r->thread, r->thread_stack);
	r->running = false;
	r->thread_stack = NULL;
}

void reclaim_pause(struct reclaim *r)
{
	pthread_mutex_lock(&r->ctl);
	r->pause_depth++;
	while (r->running && r->in_batch_loop && !r->stop)
		pthread_cond_wait(&r->paused_cv, &r->ctl);
	pthread_mutex_unlock(&r->ctl);
	/* an explicit reclaim_range() in another thread finishes its batch */
	pthread_mutex_lock(&r->owner);
	pthread_mutex_unlock(&r->owner);
}

void reclaim_pause_async(struct reclaim *r)
{
	pthread_mutex_lock(&r->ctl);
	r->pause_depth++;
	pthread_cond_broadcast(&r->wake);
	pthread_mutex_unlock(&r->ctl);
}

bool reclaim_is_quiet(struct reclaim *r)
{
	pthread_mutex_lock(&r->ctl);
	bool quiet = r->pause_depth > 0 && !(r->running && r->in_batch_loop);
	pthread_mutex_unlock(&r->ctl);
	if (!quiet || pthread_mutex_trylock(&r->owner))
		return false;
	pthread_mutex_unlock(&r->owner);
	return true;
}

static bool paused(struct reclaim *r)
{
	pthread_mutex_lock(&r->ctl);
	bool p = r->pause_depth > 0;
	pthread_mutex_unlock(&r->ctl);
	return p;
}

void reclaim_resume(struct reclaim *r)
{
	pthread_mutex_lock(&r->ctl);
	if (r->pause_depth > 0)
		r->pause_depth--;
	pthread_cond_broadcast(&r->wake);
	pthread_mutex_unlock(&r->ctl);
}

void reclaim_get_counters(struct reclaim *r, struct reclaim_counters *c)
{
	_Static_assert(sizeof(*c) == sizeof(r->cnt), "counters out of step");
	uint64_t *o = (uint64_t *)c;
	for (size_t i = 0; i < sizeof(r->cnt) / sizeof(r->cnt[0]); i++)
		o[i] = atomic_load(&r->cnt[i]);
}

const char *reclaim_counter_name(unsigned int i)
{
	static const char *const names[] = {
		"batches", "moved", "stored", "returned_poor", "refaulted_staging",
		"dropped", "busy", "passes", "skipped_referenced", "compacted_pages",
		"refaults", "thrash_backoffs", "wp_write_faults", "limit_unreachable",
		"refused", "skipped_unfit", "limit_raised", "limit_lowered", "batch_errors",
		"emptied_early",
	};
	_Static_assert(sizeof(names) / sizeof(names[0]) * sizeof(uint64_t) ==
			       sizeof(struct reclaim_counters),
		       "a reclaim counter without a name");
	return i < sizeof(names) / sizeof(names[0]) ? names[i] : NULL;
}

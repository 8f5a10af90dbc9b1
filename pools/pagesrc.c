/*
 * pagesrc — see pagesrc.h for what it is for.
 *
 * Layout of the arena, two zones of one reservation:
 *   [ main: meta | pages ... ][ data: meta | pages ... ]
 * The data zone holds what only this process's engine reads, the
 * compressed objects (pagesrc_alloc_data()).  It is MADV_WIPEONFORK: a
 * forked child (which the parent's engine serves) gets none of it, and
 * starts the zone afresh (fork_child()).
 * Without that, each child kept the pool as it was at the fork, shared
 * until the parent rewrote or freed those pages, then the child's alone;
 * and fork copied the pool's page tables.  The main zone keeps what a
 * forked child's inert copy of the engine still reads (the engine and
 * its descriptors, counters, tables).
 *
 * In each zone:   [ meta: released-run stacks | pages ... ]
 *
 * Free runs are kept by length (1..PAGESRC_MAX_RUN) in two forms:
 *   - cached runs stay resident; they are linked through their own first
 *     word (writing the link costs nothing, the page is there anyway);
 *   - released runs were MADV_DONTNEED'd; linking through them would fault
 *     a page back in, so their page numbers sit in per-length stacks in the
 *     meta area.  The meta area is part of the NORESERVE mapping: only the
 *     stack slots actually used become resident.
 * Allocation order: cached run of the exact length, released run of the
 * exact length, the bump pointer, then the shortest longer run, split.
 * Runs are not coalesced: the pools ask for a handful of fixed lengths, so
 * exact-length reuse is the common case, and the reservation is many times
 * the memory the pools can ever hold.
 *
 * Locking: `lock` protects everything below it in struct pagesrc; madvise
 * runs outside it.  `base`/`size` are written once under `init_once`.
 */
#include "pools/pagesrc.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MIN_RESERVE (64UL << 20)
#define MAX_RESERVE (1UL << 40)
/*
 * Resident free pages kept for reuse before giving memory back.  A page
 * given back costs a TLB shootdown now and a fault (17 us on these
 * guests, NUMBERS.md) when it is used again.
 */
#define CACHE_HIGH 2048
#define CACHE_LOW 512
/* Past this, even a thread that defers releases gives memory back. */
#define CACHE_HARD 16384
/* Fresh pages are populated this many at a time, ahead of the bump. */
#define POPULATE_AHEAD 512

/* Set on latency-critical threads (the fault handler): see pagesrc.h. */
static __thread bool tls_defer __attribute__((tls_model("initial-exec")));
/* Set around the index's moves: see pagesrc.h, the reserve. */
static __thread bool tls_use_reserve __attribute__((tls_model("initial-exec")));

struct cached_run {
	struct cached_run *next;
};

struct zone {
	uintptr_t base, size; /* its part of the reservation */
	uintptr_t pages;      /* first allocatable page */
	size_t npages;        /* allocatable pages */
	/* under the lock: */
	size_t bump;          /* pages handed out from the top, ever */
	size_t populated;     /* pages below this were populated ahead */
	struct cached_run *cached[PAGESRC_MAX_RUN + 1];
	uint32_t *released[PAGESRC_MAX_RUN + 1]; /* stacks of page numbers */
	size_t nreleased[PAGESRC_MAX_RUN + 1];
};

enum { Z_MAIN, Z_DATA, Z_NR };

static struct pagesrc {
	pthread_once_t init_once;
	int init_err;
	uintptr_t base, size; /* whole reservation */
	struct zone z[Z_NR];

	pthread_mutex_t lock;
	size_t used, ncached, nreleased_pages, limit; /* both zones */
	size_t reserve; /* pages ordinary allocations leave free */
	/* CACHE_* and POPULATE_AHEAD, or less under a budget */
	size_t cache_high, cache_low, cache_hard, populate_ahead;
} ps = {
	.init_once = PTHREAD_ONCE_INIT,
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.cache_high = CACHE_HIGH,
	.cache_low = CACHE_LOW,
	.cache_hard = CACHE_HARD,
	.populate_ahead = POPULATE_AHEAD,
};

static size_t phys_bytes(void)
{
	long pages = sysconf(_SC_PHYS_PAGES);
	return pages > 0 ? (size_t)pages * PAGESRC_PAGE_SIZE : (4UL << 30);
}

static void zone_init(struct zone *z, uintptr_t base, size_t size)
{
	z->base = base;
	z->size = size;
	/* Meta: one u32 stack per run length, deep enough for every run. */
	size_t total = size / PAGESRC_PAGE_SIZE;
	size_t slots = 0;
	for (size_t k = 1; k <= PAGESRC_MAX_RUN; k++)
		slots += total / k + 1;
	size_t meta_pages = (slots * sizeof(uint32_t) + PAGESRC_PAGE_SIZE - 1) /
			    PAGESRC_PAGE_SIZE;
	uint32_t *slot = (uint32_t *)base;
	for (size_t k = 1; k <= PAGESRC_MAX_RUN; k++) {
		z->released[k] = slot;
		slot += total / k + 1;
	}
	z->pages = base + meta_pages * PAGESRC_PAGE_SIZE;
	z->npages = total - meta_pages;
}

/*
 * A forked child has its copy of the bookkeeping, and one thread: another
 * that was inside the lock at the fork left it held, and what it was
 * changing half done.  (Holding the lock across fork() instead deadlocks:
 * with fork events, fork() waits for the handler to read the event, and
 * the handler may wait for the lock.)
 *
 * The data zone came through the fork wiped (MADV_WIPEONFORK), and with
 * it the links of its cached runs and its stacks of released runs: they
 * read as zeros, every released run as page 0.  Nothing in it is this
 * process's: the objects are the parent's, and the inert copy of its
 * engine never frees them.  So the zone starts afresh, for the engine a
 * child that lives on starts (its pool's pages were handed out over and
 * over as page 0 before).  When the lock was held, the main zone's free
 * runs are dropped too (left to the inert copy: at most the cache), and
 * the child takes new pages from the bump pointer only.
 */
static void fork_child(void)
{
	bool whole = pthread_mutex_trylock(&ps.lock) == 0;
	if (whole)
		pthread_mutex_unlock(&ps.lock);
	else
		pthread_mutex_init(&ps.lock, NULL);
	for (struct zone *z = ps.z; z < ps.z + Z_NR; z++) {
		if (z == &ps.z[Z_MAIN] && whole)
			continue;
		memset(z->cached, 0, sizeof(z->cached));
		memset(z->nreleased, 0, sizeof(z->nreleased));
	}
	ps.z[Z_DATA].bump = ps.z[Z_DATA].populated = 0;
	/* the counters, from what is left: the main zone's */
	struct zone *z = &ps.z[Z_MAIN];
	ps.ncached = ps.nreleased_pages = 0;
	for (size_t k = 1; k <= PAGESRC_MAX_RUN; k++) {
		for (struct cached_run *r = z->cached[k]; r; r = r->next)
			ps.ncached += k;
		ps.nreleased_pages += k * z->nreleased[k];
	}
	ps.used = z->bump - ps.ncached - ps.nreleased_pages;
}

static void do_init(void)
{
	size_t want = 2 * phys_bytes();
	if (want > MAX_RESERVE)
		want = MAX_RESERVE;
	void *p = MAP_FAILED;
	for (; want >= MIN_RESERVE; want /= 2) {
		p = mmap(NULL, want, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p != MAP_FAILED)
			break;
	}
	if (p == MAP_FAILED) {
		ps.init_err = -ENOMEM;
		return;
	}
	/*
	 * Pool pages are freed one zspage at a time; a huge page here would be
	 * split by the first MADV_DONTNEED and cost more than it saves.
	 */
	madvise(p, want, MADV_NOHUGEPAGE);
	ps.base = (uintptr_t)p;
	ps.size = want;
	/* half each: the pool may grow to RAM, the rest to the index, slabs,
	 * staging; a failure (before 4.14) only leaves the data to children */
	size_t half = want / 2 & ~(PAGESRC_PAGE_SIZE - 1);
	zone_init(&ps.z[Z_MAIN], ps.base, half);
	zone_init(&ps.z[Z_DATA], ps.base + half, want - half);
	madvise((void *)ps.z[Z_DATA].base, ps.z[Z_DATA].size, MADV_WIPEONFORK);
	pthread_atfork(NULL, NULL, fork_child);
}

int pagesrc_init(void)
{
	pthread_once(&ps.init_once, do_init);
	return ps.init_err;
}

bool pagesrc_contains(const void *p)
{
	return (uintptr_t)p - ps.base < ps.size;
}

void pagesrc_range(uintptr_t *start, uintptr_t *end)
{
	pagesrc_init();
	*start = ps.base;
	*end = ps.base + ps.size;
}

void pagesrc_set_limit(size_t max_pages)
{
	pthread_mutex_lock(&ps.lock);
	ps.limit = max_pages;
	pthread_mutex_unlock(&ps.lock);
}

void pagesrc_reserve_adjust(long delta)
{
	pthread_mutex_lock(&ps.lock);
	ps.reserve += (size_t)delta; /* wraps back for a negative delta */
	pthread_mutex_unlock(&ps.lock);
}

bool pagesrc_use_reserve(bool use)
{
	bool was = tls_use_reserve;
	tls_use_reserve = use;
	return was;
}

static uintptr_t page_addr(const struct zone *z, size_t pfn)
{
	return z->pages + pfn * PAGESRC_PAGE_SIZE;
}

static size_t page_num(const struct zone *z, uintptr_t a)
{
	return (a - z->pages) / PAGESRC_PAGE_SIZE;
}

static struct zone *zone_of(uintptr_t a)
{
	return a >= ps.z[Z_DATA].base ? &ps.z[Z_DATA] : &ps.z[Z_MAIN];
}

/* Put a run on its zone's free lists; caller holds the lock. */
static void put_run_locked(uintptr_t a, size_t k, bool resident)
{
	struct zone *z = zone_of(a);
	if (resident) {
		struct cached_run *r = (struct cached_run *)a;
		r->next = z->cached[k];
		z->cached[k] = r;
		ps.ncached += k;
	} else {
		z->released[k][z->nreleased[k]++] = (uint32_t)page_num(z, a);
		ps.nreleased_pages += k;
	}
}

/* Take any free run of length k in @z; caller holds the lock.  0 when none. */
static uintptr_t take_run_locked(struct zone *z, size_t k)
{
	if (z->cached[k]) {
		struct cached_run *r = z->cached[k];
		z->cached[k] = r->next;
		ps.ncached -= k;
		return (uintptr_t)r;
	}
	if (z->nreleased[k]) {
		ps.nreleased_pages -= k;
		return page_addr(z, z->released[k][--z->nreleased[k]]);
	}
	return 0;
}

static int alloc_in(struct zone *z, size_t npages, size_t keep, void **out)
{
	if (npages == 0 || npages > PAGESRC_MAX_RUN)
		return -EINVAL;

	pthread_mutex_lock(&ps.lock);
	/* One page always fits when used + 1 <= npages: any free run splits. */
	size_t all = ps.z[Z_MAIN].npages + ps.z[Z_DATA].npages;
	size_t cap = ps.limit && ps.limit < all ? ps.limit : all;
	size_t kept = tls_use_reserve ? 0 : ps.reserve + keep;
	if (ps.used + npages + kept > cap) {
		pthread_mutex_unlock(&ps.lock);
		return -ENOMEM;
	}
	/*
	 * Pages not known resident are populated with one madvise instead of
	 * faulting one by one on first touch (17 us each here, against about
	 * 1 us populated).  Done outside the lock; a racing user of the
	 * range just faults as it would have.
	 */
	uintptr_t pop = 0;
	size_t npop = 0;
	bool was_cached = z->cached[npages] != NULL;
	uintptr_t a = take_run_locked(z, npages);
	if (a && !was_cached) {
		pop = a;
		npop = npages;
	}
	if (!a && z->bump + npages <= z->npages) {
		a = page_addr(z, z->bump);
		z->bump += npages;
		if (z->bump > z->populated) {
			size_t from = z->populated > z->bump - npages ? z->populated : z->bump - npages;
			size_t to = from + ps.populate_ahead;
			to = to < z->bump ? z->bump : to;
			to = to > z->npages ? z->npages : to;
			pop = page_addr(z, from);
			npop = to - from;
			z->populated = to;
		}
	}
	for (size_t k = npages + 1; !a && k <= PAGESRC_MAX_RUN; k++) {
		bool resident = z->cached[k] != NULL;
		a = take_run_locked(z, k);
		if (a)
			put_run_locked(a + npages * PAGESRC_PAGE_SIZE, k - npages,
				       resident);
	}
	if (a) {
		ps.used += npages;
		ps.reserve += keep;
	}
	pthread_mutex_unlock(&ps.lock);
	if (!a)
		return -ENOMEM;
	if (npop)
		madvise((void *)pop, npop * PAGESRC_PAGE_SIZE, MADV_POPULATE_WRITE);
	*out = (void *)a;
	return 0;
}

int pagesrc_alloc(size_t npages, void **out)
{
	return pagesrc_alloc_reserving(npages, 0, out);
}

int pagesrc_alloc_data(size_t npages, void **out)
{
	int err = pagesrc_init();
	return err ? err : alloc_in(&ps.z[Z_DATA], npages, 0, out);
}

int pagesrc_alloc_reserving(size_t npages, size_t keep, void **out)
{
	int err = pagesrc_init();
	return err ? err : alloc_in(&ps.z[Z_MAIN], npages, keep, out);
}

/*
 * Release cached runs to the kernel down to `keep` pages.  Runs are taken
 * off the cache under the lock, madvised without it (a syscall each, so
 * never while other threads wait on us), then filed as released.
 */
struct run {
	uintptr_t a;
	size_t k;
};

/* Insertion sort: glibc's qsort may malloc, which engine code must not. */
static void sort_runs(struct run *v, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		struct run x = v[i];
		size_t j = i;
		for (; j > 0 && v[j - 1].a > x.a; j--)
			v[j] = v[j - 1];
		v[j] = x;
	}
}

static void release_cached(size_t keep)
{
	enum { BATCH = 256 };
	struct run batch[BATCH];

	for (;;) {
		size_t n = 0;
		pthread_mutex_lock(&ps.lock);
		for (struct zone *z = ps.z; z < ps.z + Z_NR; z++) {
			for (size_t k = PAGESRC_MAX_RUN; k >= 1 && n < BATCH; k--) {
				while (z->cached[k] && n < BATCH && ps.ncached > keep) {
					struct cached_run *r = z->cached[k];
					z->cached[k] = r->next;
					ps.ncached -= k;
					batch[n].a = (uintptr_t)r;
					batch[n++].k = k;
				}
			}
		}
		pthread_mutex_unlock(&ps.lock);
		if (n == 0)
			return;
		/*
		 * Each madvise costs a TLB shootdown on the other CPU: sort the
		 * batch and give back adjacent runs with one call.
		 */
		sort_runs(batch, n);
		for (size_t i = 0; i < n;) {
			uintptr_t a = batch[i].a, end = a + batch[i].k * PAGESRC_PAGE_SIZE;
			for (i++; i < n && batch[i].a == end; i++)
				end += batch[i].k * PAGESRC_PAGE_SIZE;
			madvise((void *)a, end - a, MADV_DONTNEED);
		}
		pthread_mutex_lock(&ps.lock);
		for (size_t i = 0; i < n; i++)
			put_run_locked(batch[i].a, batch[i].k, false);
		pthread_mutex_unlock(&ps.lock);
	}
}

void pagesrc_free(void *p, size_t npages)
{
	if (!p)
		return;
	pthread_mutex_lock(&ps.lock);
	put_run_locked((uintptr_t)p, npages, true);
	ps.used -= npages;
	bool over = ps.ncached > (tls_defer ? ps.cache_hard : ps.cache_high);
	/*
	 * A deferring thread past the hard cap gives back a step, not all the
	 * way to the low mark: at ~0.9 us a page, 16,000 pages held one fault
	 * for 14 ms (fault_bench, 6 times in 393,216 faults).  It pays a
	 * step each time it passes the cap again; the rest goes when it idles.
	 */
	size_t low = tls_defer ? ps.cache_hard - ps.cache_hard / 32 : ps.cache_low;
	pthread_mutex_unlock(&ps.lock);
	if (over)
		release_cached(low);
}

void pagesrc_trim(void)
{
	release_cached(0);
}

void pagesrc_defer_release(bool defer)
{
	tls_defer = defer;
}

void pagesrc_release_excess(void)
{
	pthread_mutex_lock(&ps.lock);
	bool over = ps.ncached > ps.cache_high;
	size_t low = ps.cache_low;
	pthread_mutex_unlock(&ps.lock);
	if (over)
		release_cached(low);
}

static size_t clamp(size_t v, size_t lo, size_t hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

void pagesrc_set_budget(size_t bytes)
{
	size_t pages = bytes / PAGESRC_PAGE_SIZE;
	pthread_mutex_lock(&ps.lock);
	ps.cache_high = pages ? clamp(pages / 64, 64, CACHE_HIGH) : CACHE_HIGH;
	ps.cache_low = ps.cache_high / 4;
	ps.cache_hard = pages ? clamp(4 * ps.cache_high, 256, CACHE_HARD) : CACHE_HARD;
	ps.populate_ahead = pages ? clamp(pages / 64, 16, POPULATE_AHEAD) : POPULATE_AHEAD;
	bool over = ps.ncached > ps.cache_high;
	size_t low = ps.cache_low;
	pthread_mutex_unlock(&ps.lock);
	if (over)
		release_cached(low);
}

size_t pagesrc_resident_bytes(void)
{
	if (pagesrc_init())
		return 0;
	size_t n = 0;
	for (struct zone *z = ps.z; z < ps.z + Z_NR; z++) {
		pthread_mutex_lock(&ps.lock);
		size_t top = z->bump > z->populated ? z->bump : z->populated;
		pthread_mutex_unlock(&ps.lock);
		unsigned char v[4096];
		for (uintptr_t a = z->base, end = page_addr(z, top); a < end;) {
			size_t len = end - a < sizeof(v) * PAGESRC_PAGE_SIZE
					     ? end - a
					     : sizeof(v) * PAGESRC_PAGE_SIZE;
			if (mincore((void *)a, len, v))
				break;
			for (size_t i = 0; i < len / PAGESRC_PAGE_SIZE; i++)
				n += v[i] & 1;
			a += len;
		}
	}
	return n * PAGESRC_PAGE_SIZE;
}

void pagesrc_get_stats(struct pagesrc_stats *st)
{
	pagesrc_init();
	pthread_mutex_lock(&ps.lock);
	st->reserved_bytes = ps.size;
	st->used_pages = ps.used;
	st->cached_pages = ps.ncached;
	st->released_pages = ps.nreleased_pages;
	st->high_water = ps.z[Z_MAIN].bump + ps.z[Z_DATA].bump;
	st->reserve_pages = ps.reserve;
	pthread_mutex_unlock(&ps.lock);
}

/* Sanitizers run thread-start code that wants far more stack (TSan checks
 * for about 900 KiB); the engine itself needs little. */
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define STACK_PAGES (PAGESRC_MAX_RUN - 1)
#else
#define STACK_PAGES 32
#endif

int pagesrc_thread_create(pthread_t *t, void *(*fn)(void *), void *arg, void **stack)
{
	void *mem;
	int err = pagesrc_alloc(STACK_PAGES + 1, &mem);
	if (err)
		return err;
	/* an overflow must fault, not scribble over the pool next door */
	if (mprotect(mem, PAGESRC_PAGE_SIZE, PROT_NONE)) {
		err = -errno;
		pagesrc_free(mem, STACK_PAGES + 1);
		return err;
	}
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setstack(&at, (char *)mem + PAGESRC_PAGE_SIZE, STACK_PAGES * PAGESRC_PAGE_SIZE);
	/*
	 * The kernel delivers a process-directed signal to any thread that
	 * does not block it.  A program's handler run on the fault handler
	 * thread that touches a stored page faults where no one can serve it
	 * (found: dash's SIGCHLD handler on the handler thread, the shell and
	 * the handler both asleep in handle_userfault for good).  Engine
	 * threads start with every signal blocked (glibc keeps its own).
	 */
	sigset_t all;
	sigfillset(&all);
	err = -pthread_attr_setsigmask_np(&at, &all);
	if (!err)
		err = -pthread_create(t, &at, fn, arg);
	pthread_attr_destroy(&at);
	if (err) {
		pagesrc_thread_join(0, mem);
		return err;
	}
	*stack = mem;
	return 0;
}

void pagesrc_thread_join(pthread_t t, void *stack)
{
	if (t)
		pthread_join(t, NULL);
	mprotect(stack, PAGESRC_PAGE_SIZE, PROT_READ | PROT_WRITE);
	pagesrc_free(stack, STACK_PAGES + 1);
}

/*
 * profile — see profile.h for the scheme, the threads and the lock.
 *
 * Layout: `sites` is a hash table of stacks (chained through indices,
 * entries in pagesrc chunks, at most SITES_MAX; site 0 stands for the
 * stacks beyond that); `root` is a treap of live sampled ranges keyed by
 * start (the ranges never overlap: inserting one evicts what it covers,
 * which can only be stale: a block freed behind the wrappers' back);
 * `profile_filter` is a counting filter of the sampled heap pointers, so
 * free() looks at one byte and takes the lock only for a likely hit;
 * `slots` are the fault samples in flight.
 */
#define UNW_LOCAL_ONLY
#include "core/profile.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <libunwind.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "core/flame.h"
#include "core/log.h"
#include "core/stats.h"
#include "pools/pagesrc.h"

#define PAGE 4096UL
#define CHUNK_PAGES PAGESRC_MAX_RUN
#define CHUNK_BYTES (CHUNK_PAGES * PAGESRC_PAGE_SIZE)
#define SITES_PER_CHUNK (CHUNK_BYTES / sizeof(struct site))
#define SITES_MAX 65536
#define SITE_CHUNKS ((SITES_MAX + SITES_PER_CHUNK - 1) / SITES_PER_CHUNK)
#define BUCKETS 65536
#define RANGES_PER_CHUNK (CHUNK_BYTES / sizeof(struct range))
#define RANGE_CHUNKS 256 /* ~9.5 M live samples */
#define FILTER_SIZE (1UL << PROFILE_FILTER_BITS)
#define SLOTS 64
#define RECENT 8
#define LATE_NS (100ull * 1000 * 1000)
#define STALE_NS (1000ull * 1000 * 1000)

enum { FK_FIRST_TOUCH, FK_REFAULT, FK_NR };
enum { S_FREE, S_SENT, S_TAKEN, S_DONE };

struct site {
	uint32_t next, depth; /* hash chain: index + 1, 0 ends it */
	uint64_t hash;
	/* bytes, estimated: allocated; stored and not loaded back since (what
	 * the site has in the pool); faulted back */
	double alloc, stored, refaulted;
	uint64_t faults[FK_NR][2]; /* [kind][in a system call] */
	uintptr_t pc[PROFILE_DEPTH]; /* innermost first; return addresses + 0 */
};

struct range {
	uintptr_t start, end, key; /* key: the pointer free() will get */
	double weight;
	uint32_t site, prio;
	bool heap;
	struct range *l, *r;
};

struct slot {
	_Atomic int state;
	int tid;
	uintptr_t addr;
	uint64_t sent_ns;
	_Atomic int kind;
	int kmode, depth;
	uintptr_t pc[PROFILE_DEPTH];
};

__thread struct profile_thread profile_tls __attribute__((tls_model("initial-exec")));
_Atomic bool profile_on;
_Atomic(uint8_t) *profile_filter;

static struct {
	pthread_mutex_t lock;
	bool live;              /* under lock: tables in use */
	char prefix[256];
	double rate;
	pid_t pid;
	/* sites */
	struct site *chunk[SITE_CHUNKS];
	uint32_t nsites, *buckets;
	/* live samples */
	struct range *root, *free_ranges;
	struct range *rchunk[RANGE_CHUNKS];
	size_t nrchunks, rused; /* ranges handed out of the last chunk */
	uint64_t prio_state;
	/* exact: every page seen; loaded = refaulted from the store */
	uint64_t total_stored, total_refaulted, total_loaded;
	_Atomic uint64_t lost_busy; /* attributions that found the lock taken */
	/* fault sampling: the handler thread's, but for the slots */
	_Atomic bool faults_on;
	struct slot *slots;
	unsigned int next_slot;
	int64_t fault_left;
	uint64_t fault_rng;
	struct { uintptr_t addr; unsigned int slot; } recent[RECENT];
	unsigned int nrecent;
	uint64_t fault_samples, fault_kmode;
	_Atomic uint64_t fault_sent, fault_late, fault_lost, fault_no_slot;
} P = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* ---- random numbers ---- */

static uint64_t next_rand(uint64_t *s)
{
	/* xorshift64*: fast, and good enough for sampling */
	uint64_t x = *s ? *s : 0x9E3779B97F4A7C15ULL;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* An exponential draw of mean @mean: -ln(u) * mean, u in (0, 1]. */
static double exp_draw(uint64_t *s, double mean)
{
	double u = ((next_rand(s) >> 11) + 1) * (1.0 / 9007199254740992.0);
	return -log(u) * mean;
}

/* ---- sites ---- */

static struct site *site(uint32_t i)
{
	return &P.chunk[i / SITES_PER_CHUNK][i % SITES_PER_CHUNK];
}

static uint64_t hash_pcs(const uintptr_t *pc, unsigned int n)
{
	uint64_t h = n;
	for (unsigned int i = 0; i < n; i++)
		h = (h ^ pc[i]) * 0x100000001B3ULL + (h >> 29);
	return h;
}

/* The site of stack @pc[0..n); site 0 when the table is full.  Under lock. */
static uint32_t site_get(const uintptr_t *pc, unsigned int n)
{
	if (n > PROFILE_DEPTH)
		n = PROFILE_DEPTH;
	uint64_t h = hash_pcs(pc, n);
	uint32_t *b = &P.buckets[h % BUCKETS];
	for (uint32_t i = *b; i; i = site(i - 1)->next) {
		struct site *s = site(i - 1);
		if (s->hash == h && s->depth == n && !memcmp(s->pc, pc, n * sizeof(*pc)))
			return i - 1;
	}
	uint32_t id = P.nsites;
	if (id >= SITES_MAX)
		return 0;
	struct site **c = &P.chunk[id / SITES_PER_CHUNK];
	if (!*c && pagesrc_alloc(CHUNK_PAGES, (void **)c))
		return 0;
	P.nsites++;
	struct site *s = site(id);
	memset(s, 0, sizeof(*s));
	s->hash = h;
	s->depth = n;
	memcpy(s->pc, pc, n * sizeof(*pc));
	s->next = *b;
	*b = id + 1;
	return id;
}

/* ---- the map of live samples: a treap keyed by start ---- */

static struct range *range_new(void)
{
	struct range *r = P.free_ranges;
	if (r) {
		P.free_ranges = r->r;
		return r;
	}
	if (!P.nrchunks || P.rused == RANGES_PER_CHUNK) {
		if (P.nrchunks == RANGE_CHUNKS)
			return NULL;
		/* chunks are kept across restarts (tests): reuse before allocating */
		if (!P.rchunk[P.nrchunks] && pagesrc_alloc(CHUNK_PAGES, (void **)&P.rchunk[P.nrchunks]))
			return NULL;
		P.nrchunks++;
		P.rused = 0;
	}
	return &P.rchunk[P.nrchunks - 1][P.rused++];
}

static void filter_add(uintptr_t key, int d)
{
	uint64_t h = (key >> 4) * 0x9E3779B97F4A7C15ULL >> (64 - PROFILE_FILTER_BITS);
	uint8_t v = atomic_load_explicit(&profile_filter[h], memory_order_relaxed);
	/* a saturated counter stays (a false positive costs a lookup, no more) */
	if (v == UINT8_MAX || (d < 0 && v == 0))
		return;
	atomic_store_explicit(&profile_filter[h], (uint8_t)(v + d), memory_order_relaxed);
}

static void range_free(struct range *r)
{
	if (r->heap)
		filter_add(r->key, -1);
	r->r = P.free_ranges;
	P.free_ranges = r;
}

/* Every node of @t, freed. */
static void free_tree(struct range *t)
{
	while (t) {
		free_tree(t->l);
		struct range *next = t->r;
		range_free(t);
		t = next;
	}
}

/* @t split into keys < @key (*l) and >= @key (*r). */
static void split(struct range *t, uintptr_t key, struct range **l, struct range **r)
{
	if (!t) {
		*l = *r = NULL;
	} else if (t->start < key) {
		split(t->r, key, &t->r, r);
		*l = t;
	} else {
		split(t->l, key, l, &t->l);
		*r = t;
	}
}

/* Every key of @a below every key of @b. */
static struct range *join(struct range *a, struct range *b)
{
	if (!a || !b)
		return a ? a : b;
	if (a->prio > b->prio) {
		a->r = join(a->r, b);
		return a;
	}
	b->l = join(a, b->l);
	return b;
}

static struct range *rightmost(struct range *t)
{
	while (t && t->r)
		t = t->r;
	return t;
}

/*
 * Take [s, e) out of the map: nodes inside go, a node across an end is
 * cut (one across both ends leaves its two outer parts).  Under lock.
 */
static void remove_span(uintptr_t s, uintptr_t e)
{
	struct range *a, *b, *m, *c;
	split(P.root, s, &a, &b);
	split(b, e, &m, &c);
	/* the last node before s may reach into the span */
	struct range *last = rightmost(a);
	if (last && last->end > s) {
		if (last->end > e) {
			struct range *tail = range_new();
			if (tail) {
				*tail = *last;
				tail->start = e;
				tail->heap = false; /* free() names the head */
				tail->l = tail->r = NULL;
				tail->prio = (uint32_t)(next_rand(&P.prio_state) >> 32);
				c = join(tail, c);
			}
		}
		last->end = s;
	}
	/* the last node in the span may reach past it */
	struct range *over = rightmost(m);
	if (over && over->end > e) {
		struct range *tail = range_new();
		if (tail) {
			*tail = *over;
			tail->start = e;
			tail->heap = false;
			tail->l = tail->r = NULL;
			c = join(tail, c);
		}
	}
	free_tree(m);
	P.root = join(a, c);
}

static void range_insert(uintptr_t start, size_t size, uint32_t s, double w, bool heap)
{
	uintptr_t end = start + size;
	remove_span(start, end);
	struct range *r = range_new();
	if (!r)
		return;
	*r = (struct range){ .start = start, .end = end, .key = start, .weight = w, .site = s,
			     .prio = (uint32_t)(next_rand(&P.prio_state) >> 32), .heap = heap };
	if (heap)
		filter_add(start, 1);
	struct range *a, *b;
	split(P.root, start, &a, &b);
	P.root = join(join(a, r), b);
}

/* The node whose heap block starts at @key, taken out; NULL if none. */
static void remove_key(uintptr_t key)
{
	struct range *a, *b, *m, *c;
	split(P.root, key, &a, &b);
	split(b, key + 1, &m, &c);
	if (m && m->key == key && m->heap)
		range_free(m);
	else
		c = join(m, c);
	P.root = join(a, c);
}

/*
 * Add the weighted bytes of the samples overlapping [a, b) to their
 * sites (field at @off of struct site).  The rest of the bytes is not
 * counted here: it is the exact total minus the estimates, at the end.
 * Under lock.
 */
static void attribute(uintptr_t a, uintptr_t b, size_t off, double sign)
{
	struct range *stack[128];
	int n = 0;
	if (P.root)
		stack[n++] = P.root;
	while (n) {
		struct range *t = stack[--n];
		if (t->start < b) {
			if (t->end > a) {
				uintptr_t lo = t->start > a ? t->start : a;
				uintptr_t hi = t->end < b ? t->end : b;
				*(double *)((char *)site(t->site) + off) +=
					sign * (double)(hi - lo) * t->weight;
			}
			if (t->r && n < 128)
				stack[n++] = t->r;
		}
		if (t->l && t->start > a && n < 128)
			stack[n++] = t->l;
	}
}

/* ---- life cycle ---- */

static uintptr_t on_stack(void)
{
	return (uintptr_t)__builtin_frame_address(0);
}

/* Engine threads run on arena stacks: they never sample nor wait for the lock. */
static bool engine_thread(void)
{
	return pagesrc_contains((void *)on_stack());
}

static void on_signal(int sig, siginfo_t *si, void *ucv);

static int reset_tables(void)
{
	if (!P.buckets) {
		size_t np = BUCKETS * sizeof(uint32_t) / PAGESRC_PAGE_SIZE;
		if (pagesrc_alloc(np, (void **)&P.buckets))
			return -ENOMEM;
	}
	memset(P.buckets, 0, BUCKETS * sizeof(uint32_t));
	if (!profile_filter) {
		void *f;
		if (pagesrc_alloc(FILTER_SIZE / PAGESRC_PAGE_SIZE, &f))
			return -ENOMEM;
		atomic_store(&profile_filter, f);
	}
	memset((void *)profile_filter, 0, FILTER_SIZE);
	if (!P.slots) {
		size_t np = (SLOTS * sizeof(struct slot) + PAGE - 1) / PAGE;
		if (pagesrc_alloc(np, (void **)&P.slots))
			return -ENOMEM;
	}
	memset(P.slots, 0, SLOTS * sizeof(struct slot));
	P.nsites = 0;
	P.root = P.free_ranges = NULL;
	P.nrchunks = P.rused = 0;
	P.total_stored = P.total_refaulted = P.total_loaded = 0;
	atomic_store(&P.lost_busy, 0);
	P.fault_samples = P.fault_kmode = 0;
	atomic_store(&P.fault_sent, 0);
	atomic_store(&P.fault_late, 0);
	atomic_store(&P.fault_lost, 0);
	atomic_store(&P.fault_no_slot, 0);
	P.nrecent = 0;
	/* site 0: stacks beyond SITES_MAX */
	uintptr_t none = 0;
	site_get(&none, 0);
	return 0;
}

static bool install_handler(void)
{
	struct sigaction old, sa;
	if (sigaction(PROFILE_SIGNAL, NULL, &old))
		return false;
	if ((old.sa_flags & SA_SIGINFO) ? old.sa_sigaction != on_signal
					: old.sa_handler != SIG_DFL) {
		log_error("profile: the program handles signal %d itself: no fault sites",
			  PROFILE_SIGNAL);
		return false;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_signal;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	return sigaction(PROFILE_SIGNAL, &sa, NULL) == 0;
}

int profile_start(const char *prefix, size_t rate)
{
	if (!prefix || !*prefix || strlen(prefix) >= sizeof(P.prefix))
		return -EINVAL;
	pthread_mutex_lock(&P.lock);
	if (P.live) {
		pthread_mutex_unlock(&P.lock);
		return -EALREADY;
	}
	int err = reset_tables();
	if (err) {
		pthread_mutex_unlock(&P.lock);
		return err;
	}
	strcpy(P.prefix, prefix);
	P.rate = (double)rate;
	P.pid = getpid();
	P.prio_state = (uint32_t)P.pid | 1;
	P.fault_rng = stats_now_ns() | 1;
	P.fault_left = (int64_t)exp_draw(&P.fault_rng, PROFILE_FAULT_PERIOD) + 1;
	P.live = true;
	pthread_mutex_unlock(&P.lock);
	atomic_store(&P.faults_on, install_handler());
	atomic_store(&profile_on, true);
	return 0;
}

void profile_forked(void)
{
	atomic_store(&profile_on, false);
	atomic_store(&P.faults_on, false);
	atomic_store(&profile_filter, NULL);
	pthread_mutex_init(&P.lock, NULL);
	P.live = false;
}

/* ---- allocation hooks ---- */

static int64_t next_budget(struct profile_thread *t)
{
	if (P.rate <= 0)
		return 0;
	double d = exp_draw(&t->rng, P.rate);
	return d > (double)INT64_MAX / 2 ? INT64_MAX / 2 : (int64_t)d;
}

__attribute__((noinline)) void profile_alloc(void *p, size_t size, bool heap)
{
	struct profile_thread *t = &profile_tls;
	if (!t->init) {
		/* a new thread: its first budget, then this allocation against it */
		t->init = true;
		t->rng = ((uint64_t)(uintptr_t)t * 0x9E3779B97F4A7C15ULL) ^ stats_now_ns();
		t->left = next_budget(t) - (int64_t)size;
		if (t->left >= 0)
			return;
	}
	t->left = next_budget(t);
	if (engine_thread() || t->busy)
		return;
	t->busy++;
	void *ret = __builtin_return_address(0);
	void *pcs[PROFILE_DEPTH + 8];
	int n = unw_backtrace(pcs, PROFILE_DEPTH + 8);
	/* drop our frames: up to and including the wrapper that called us */
	int skip = 0;
	while (skip < n && pcs[skip] != ret)
		skip++;
	skip = skip < n ? skip + 1 : (n > 2 ? 2 : 0);
	double w = P.rate <= 0 || size == 0 ? 1.0 : 1.0 / -expm1(-(double)size / P.rate);
	pthread_mutex_lock(&P.lock);
	if (P.live) {
		uint32_t s = site_get((const uintptr_t *)pcs + skip, (unsigned int)(n - skip));
		site(s)->alloc += (double)size * w;
		range_insert((uintptr_t)p, size, s, w, heap);
	}
	pthread_mutex_unlock(&P.lock);
	t->busy--;
}

void profile_free_slow(void *p)
{
	if (profile_tls.busy || engine_thread())
		return;
	pthread_mutex_lock(&P.lock);
	if (P.live)
		remove_key((uintptr_t)p);
	pthread_mutex_unlock(&P.lock);
}

void profile_unmap(void *p, size_t len)
{
	if (!atomic_load_explicit(&profile_on, memory_order_relaxed) || !len ||
	    pagesrc_contains(p) || profile_tls.busy || engine_thread())
		return;
	uintptr_t s = (uintptr_t)p & ~(PAGE - 1), e = ((uintptr_t)p + len + PAGE - 1) & ~(PAGE - 1);
	pthread_mutex_lock(&P.lock);
	if (P.live)
		remove_span(s, e);
	pthread_mutex_unlock(&P.lock);
}

void profile_remap(void *old, size_t oldlen, void *new_, size_t newlen)
{
	if (!atomic_load_explicit(&profile_on, memory_order_relaxed) || pagesrc_contains(old) ||
	    profile_tls.busy || engine_thread())
		return;
	uintptr_t o = (uintptr_t)old, n = (uintptr_t)new_;
	pthread_mutex_lock(&P.lock);
	if (P.live) {
		/* the sample that starts the old mapping moves with it */
		struct range *a, *b, *m, *c;
		split(P.root, o, &a, &b);
		split(b, o + 1, &m, &c);
		P.root = join(a, c);
		uint32_t s = m ? m->site : 0;
		double w = m ? m->weight : 0;
		if (m)
			range_free(m);
		remove_span(o, o + oldlen);
		if (m)
			range_insert(n, newlen, s, w, false);
	}
	pthread_mutex_unlock(&P.lock);
}

/* ---- engine hooks ---- */

void profile_stored(uintptr_t page)
{
	if (!atomic_load_explicit(&profile_on, memory_order_relaxed))
		return;
	if (pthread_mutex_trylock(&P.lock)) {
		atomic_fetch_add_explicit(&P.lost_busy, PAGE, memory_order_relaxed);
		return;
	}
	if (P.live) {
		P.total_stored += PAGE;
		attribute(page, page + PAGE, offsetof(struct site, stored), 1);
	}
	pthread_mutex_unlock(&P.lock);
}

void profile_refault(uintptr_t addr, size_t len, bool from_store)
{
	if (!atomic_load_explicit(&profile_on, memory_order_relaxed))
		return;
	/* a sampled fault served with data is a refault; the others first touches */
	for (unsigned int i = 0; i < P.nrecent; i++)
		if (P.recent[i].addr == addr) {
			atomic_store(&P.slots[P.recent[i].slot].kind, FK_REFAULT);
			P.recent[i].addr = 0;
		}
	if (pthread_mutex_trylock(&P.lock)) {
		atomic_fetch_add_explicit(&P.lost_busy, len, memory_order_relaxed);
		return;
	}
	if (P.live) {
		P.total_refaulted += len;
		attribute(addr, addr + len, offsetof(struct site, refaulted), 1);
		if (from_store) {
			P.total_loaded += len;
			attribute(addr, addr + len, offsetof(struct site, stored), -1);
		}
	}
	pthread_mutex_unlock(&P.lock);
}

/* Fold finished fault samples into their sites; drop stale ones.  Under lock. */
static void harvest(void)
{
	uint64_t now = stats_now_ns();
	for (unsigned int i = 0; i < SLOTS; i++) {
		struct slot *s = &P.slots[i];
		int st = atomic_load(&s->state);
		if (st == S_DONE) {
			uint32_t id = site_get(s->pc, (unsigned int)s->depth);
			int kind = atomic_load(&s->kind);
			site(id)->faults[kind][s->kmode]++;
			P.fault_samples++;
			P.fault_kmode += s->kmode;
			atomic_store(&s->state, S_FREE);
		} else if (st == S_SENT && now - s->sent_ns > STALE_NS &&
			   atomic_compare_exchange_strong(&s->state, &st, S_FREE)) {
			atomic_fetch_add(&P.fault_lost, 1);
		}
	}
}

void profile_fault(uintptr_t addr, unsigned int tid)
{
	if (!tid || !atomic_load_explicit(&P.faults_on, memory_order_relaxed) ||
	    !atomic_load_explicit(&profile_on, memory_order_relaxed))
		return;
	if (--P.fault_left > 0)
		return;
	P.fault_left = (int64_t)exp_draw(&P.fault_rng, PROFILE_FAULT_PERIOD) + 1;
	/* the program may have taken the signal over since */
	struct sigaction cur;
	if (sigaction(PROFILE_SIGNAL, NULL, &cur) || !(cur.sa_flags & SA_SIGINFO) ||
	    cur.sa_sigaction != on_signal) {
		atomic_store(&P.faults_on, false);
		log_error("profile: the program took signal %d over: no more fault sites",
			  PROFILE_SIGNAL);
		return;
	}
	if (pthread_mutex_trylock(&P.lock) == 0) {
		if (P.live)
			harvest();
		pthread_mutex_unlock(&P.lock);
	}
	struct slot *s = NULL;
	for (unsigned int i = 0; i < SLOTS && !s; i++) {
		struct slot *c = &P.slots[(P.next_slot + i) % SLOTS];
		if (atomic_load(&c->state) == S_FREE) {
			s = c;
			P.next_slot = (P.next_slot + i + 1) % SLOTS;
		}
	}
	if (!s) {
		atomic_fetch_add(&P.fault_no_slot, 1);
		return;
	}
	s->tid = (int)tid;
	s->addr = addr & ~(PAGE - 1);
	s->sent_ns = stats_now_ns();
	atomic_store(&s->kind, FK_FIRST_TOUCH);
	atomic_store(&s->state, S_SENT);
	if (syscall(SYS_tgkill, P.pid, (pid_t)tid, PROFILE_SIGNAL)) {
		atomic_store(&s->state, S_FREE);
		return;
	}
	atomic_fetch_add(&P.fault_sent, 1);
	unsigned int r = P.nrecent < RECENT ? P.nrecent++ : (unsigned int)(s - P.slots) % RECENT;
	P.recent[r].addr = s->addr;
	P.recent[r].slot = (unsigned int)(s - P.slots);
}

/*
 * On the faulting thread, which has left the kernel's userfault wait (or
 * its system call) without the page.  Async-signal-safe: no lock, no
 * allocation; libunwind's local unwinding is signal-safe.
 */
static void on_signal(int sig, siginfo_t *si, void *ucv)
{
	(void)sig;
	if (si->si_code != SI_TKILL || si->si_pid != P.pid || !P.slots)
		return;
	int saved = errno;
	profile_tls.busy++;
	int tid = (int)syscall(SYS_gettid);
	for (unsigned int i = 0; i < SLOTS; i++) {
		struct slot *s = &P.slots[i];
		int st = S_SENT;
		/* the state first: tid is written before the slot is SENT */
		if (atomic_load(&s->state) != S_SENT || s->tid != tid ||
		    !atomic_compare_exchange_strong(&s->state, &st, S_TAKEN))
			continue;
		if (stats_now_ns() - s->sent_ns > LATE_NS) {
			atomic_fetch_add(&P.fault_late, 1);
			atomic_store(&s->state, S_FREE);
			break;
		}
		ucontext_t *uc = ucv;
		uintptr_t ip = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
		const unsigned char *code = (const unsigned char *)ip;
		/* interrupted right after `syscall`: the fault was the kernel's */
		s->kmode = ip > 2 && code[-2] == 0x0f && code[-1] == 0x05;
		unw_cursor_t c;
		int n = 0;
		if (unw_init_local2(&c, (unw_context_t *)uc, UNW_INIT_SIGNAL_FRAME) == 0) {
			do {
				unw_word_t pc;
				if (unw_get_reg(&c, UNW_REG_IP, &pc) || !pc)
					break;
				/* frame 0 is the instruction itself; +1 makes it look
				 * like the return addresses the others are */
				s->pc[n] = n == 0 && !s->kmode ? pc + 1 : pc;
				n++;
			} while (n < PROFILE_DEPTH && unw_step(&c) > 0);
		}
		s->depth = n;
		atomic_store(&s->state, n ? S_DONE : S_FREE);
		break;
	}
	profile_tls.busy--;
	errno = saved;
}

/* ---- inspection ---- */

int profile_site_of(uintptr_t addr, struct profile_counts *out)
{
	int err = -ENOENT;
	pthread_mutex_lock(&P.lock);
	if (!P.live) {
		err = -ENODEV;
	} else {
		struct range *t = P.root;
		while (t && !(t->start <= addr && addr < t->end))
			t = addr < t->start ? t->l : t->r;
		if (t) {
			struct site *s = site(t->site);
			*out = (struct profile_counts){ s->alloc, s->stored, s->refaulted, 0, s->depth };
			for (int k = 0; k < FK_NR; k++)
				out->fault_samples += s->faults[k][0] + s->faults[k][1];
			err = 0;
		}
	}
	pthread_mutex_unlock(&P.lock);
	return err;
}

void profile_totals(uint64_t *stored, uint64_t *refaulted)
{
	pthread_mutex_lock(&P.lock);
	*stored = P.total_stored;
	*refaulted = P.total_refaulted;
	pthread_mutex_unlock(&P.lock);
}

/* What the sites do not account for of @total: never below 0. */
static uint64_t rest_of(double total, double attributed)
{
	return total > attributed ? (uint64_t)(total - attributed + 0.5) : 0;
}

/* ---- output ---- */

/* Names of program counters, looked up once each. */
struct symtab {
	uintptr_t *pc;
	const char **name;
	size_t cap;
	char *strings;
	size_t used, strcap;
};

static const char *intern(struct symtab *t, const char *s)
{
	size_t n = strlen(s) + 1;
	if (t->used + n > t->strcap)
		return "[no room for names]";
	char *p = t->strings + t->used;
	memcpy(p, s, n);
	t->used += n;
	return p;
}

/* The function containing return address @pc (as the unwinder gave it). */
static void lookup(uintptr_t pc, char *buf, size_t len)
{
	uintptr_t ip = pc - 1;
	unw_context_t uc;
	unw_cursor_t c;
	unw_word_t off;
	/* a cursor placed at @ip: unw_get_proc_name reads the ELF .symtab,
	 * which knows static functions that dladdr does not */
	if (unw_getcontext(&uc) == 0) {
		uc.uc_mcontext.gregs[REG_RIP] = (greg_t)ip;
		if (unw_init_local(&c, &uc) == 0 && unw_get_proc_name(&c, buf, len, &off) == 0 &&
		    buf[0])
			return;
	}
	Dl_info di;
	if (!dladdr((void *)ip, &di))
		memset(&di, 0, sizeof(di));
	if (di.dli_sname && di.dli_sname[0]) {
		snprintf(buf, len, "%s", di.dli_sname);
	} else if (di.dli_fname && di.dli_fname[0]) {
		const char *base = strrchr(di.dli_fname, '/');
		snprintf(buf, len, "[%s+0x%lx]", base ? base + 1 : di.dli_fname,
			 (unsigned long)(ip - (uintptr_t)di.dli_fbase));
	} else {
		snprintf(buf, len, "[0x%lx]", (unsigned long)ip);
	}
}

static const char *name_of(struct symtab *t, uintptr_t pc)
{
	size_t i = (pc * 0x9E3779B97F4A7C15ULL) >> 20 & (t->cap - 1);
	while (t->pc[i] && t->pc[i] != pc)
		i = (i + 1) & (t->cap - 1);
	if (!t->pc[i]) {
		char buf[FLAME_NAME_MAX];
		lookup(pc, buf, sizeof(buf));
		t->pc[i] = pc;
		t->name[i] = intern(t, buf);
	}
	return t->name[i];
}

static void *map(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		       -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

enum view { V_STORED, V_REFAULTED, V_FAULTS, V_ALLOC, V_NR };

static const struct {
	const char *suffix, *title, *unit;
	enum flame_palette palette;
} views[V_NR] = {
	[V_STORED] = { "alloc-stored", "Compressed and not faulted back, by allocation site",
		       "bytes", FLAME_MEM },
	[V_REFAULTED] = { "alloc-refaulted", "Pages faulted back, by allocation site", "bytes",
			  FLAME_MEM },
	[V_FAULTS] = { "fault-sites", "Faults on managed memory, by faulting code", "faults",
		       FLAME_HOT },
	[V_ALLOC] = { "alloc", "Allocated bytes, by allocation site", "bytes", FLAME_MEM },
};

static int write_file(const char *path, struct flame *f, const struct flame_svg *svg)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	int err = svg ? flame_write_svg(f, svg, fd) : flame_write_folded(f, fd);
	if (close(fd) && !err)
		err = -errno;
	return err;
}

/* Add site @s's stack (root first) with @count to @f, under @top (may be NULL). */
static int add_site(struct flame *f, struct symtab *t, const struct site *s, const char *top,
		    const char *leaf, uint64_t count)
{
	const char *frames[PROFILE_DEPTH + 3];
	size_t n = 0;
	if (top)
		frames[n++] = top;
	if (s->depth == 0) /* site 0: the table was full, or no frame unwound */
		frames[n++] = "[stack not kept]";
	else if (s->depth == PROFILE_DEPTH)
		frames[n++] = "[deeper stack, cut]";
	for (unsigned int i = s->depth; i-- > 0;)
		frames[n++] = name_of(t, s->pc[i]);
	if (leaf)
		frames[n++] = leaf;
	return flame_add(f, frames, n, count);
}

static int write_view(enum view v, const char *prefix, struct symtab *t, const char *subtitle,
		      const double *sums)
{
	struct flame *f;
	int err = flame_create(&f);
	if (err)
		return err;
	for (uint32_t i = 0; i < P.nsites && !err; i++) {
		const struct site *s = site(i);
		switch (v) {
		case V_STORED:
			err = add_site(f, t, s, NULL, NULL, s->stored > 0 ? (uint64_t)(s->stored + 0.5) : 0);
			break;
		case V_REFAULTED:
			err = add_site(f, t, s, NULL, NULL, (uint64_t)(s->refaulted + 0.5));
			break;
		case V_ALLOC:
			err = add_site(f, t, s, NULL, NULL, (uint64_t)(s->alloc + 0.5));
			break;
		case V_FAULTS:
			for (int k = 0; k < FK_NR && !err; k++)
				for (int m = 0; m < 2 && !err; m++)
					err = add_site(f, t, s,
						       k == FK_REFAULT ? "refault" : "first touch",
						       m ? "[in a system call]" : NULL,
						       s->faults[k][m] * PROFILE_FAULT_PERIOD);
			break;
		default:
			break;
		}
	}
	const char *none = "[not in a sampled allocation]";
	if (!err && v == V_STORED)
		err = flame_add(f, &none, 1, rest_of((double)P.total_stored - (double)P.total_loaded, sums[V_STORED]));
	if (!err && v == V_REFAULTED)
		err = flame_add(f, &none, 1, rest_of((double)P.total_refaulted, sums[V_REFAULTED]));
	char path[600];
	if (!err) {
		snprintf(path, sizeof(path), "%s.%s.folded", prefix, views[v].suffix);
		err = write_file(path, f, NULL);
	}
	if (!err) {
		struct flame_svg o = { .title = views[v].title, .subtitle = subtitle,
				       .unit = views[v].unit, .palette = views[v].palette };
		snprintf(path, sizeof(path), "%s.%s.svg", prefix, views[v].suffix);
		err = write_file(path, f, &o);
	}
	flame_destroy(f);
	return err;
}

/* @in with "%p" replaced by the pid. */
static void expand(const char *in, char *out, size_t len)
{
	size_t o = 0;
	for (; *in && o + 1 < len; in++) {
		if (in[0] == '%' && in[1] == 'p') {
			o += (size_t)snprintf(out + o, len - o, "%d", (int)P.pid);
			if (o >= len)
				o = len - 1;
			in++;
		} else {
			out[o++] = *in;
		}
	}
	out[o] = '\0';
}

static double mib(double bytes)
{
	return bytes / 1048576.0;
}

int profile_finish(char *written, size_t len)
{
	atomic_store(&profile_on, false);
	atomic_store(&P.faults_on, false);
	profile_tls.busy++;
	pthread_mutex_lock(&P.lock);
	if (!P.live) {
		pthread_mutex_unlock(&P.lock);
		profile_tls.busy--;
		return -ENODEV;
	}
	harvest();
	/* from here on nothing changes the tables: every writer checks live */
	P.live = false;
	pthread_mutex_unlock(&P.lock);

	char prefix[512];
	expand(P.prefix, prefix, sizeof(prefix));
	if (written)
		snprintf(written, len, "%s", prefix);
	size_t frames = 0;
	double sums[V_NR] = { 0 };
	for (uint32_t i = 0; i < P.nsites; i++) {
		frames += site(i)->depth;
		sums[V_STORED] += site(i)->stored > 0 ? site(i)->stored : 0;
		sums[V_REFAULTED] += site(i)->refaulted;
		sums[V_ALLOC] += site(i)->alloc;
	}
	struct symtab t = { .cap = 1024 };
	while (t.cap < 2 * frames)
		t.cap *= 2;
	t.strcap = 64 << 20;
	t.pc = map(t.cap * sizeof(*t.pc));
	t.name = map(t.cap * sizeof(*t.name));
	t.strings = map(t.strcap);
	int err = t.pc && t.name && t.strings ? 0 : -ENOMEM;
	char sub[V_NR][400];
	uint64_t lost = atomic_load(&P.lost_busy);
	snprintf(sub[V_STORED], sizeof(sub[0]),
		 "%.1f MiB stored and not faulted back (of %.1f MiB stored), %.1f MiB of it "
		 "attributed (estimated); one allocation sampled per %.0f KiB%s",
		 mib((double)P.total_stored - (double)P.total_loaded), mib((double)P.total_stored),
		 mib(sums[V_STORED]), P.rate / 1024, lost ? "; some pages unseen" : "");
	snprintf(sub[V_REFAULTED], sizeof(sub[0]),
		 "%.1f MiB faulted back, %.1f MiB of it attributed (estimated); one allocation "
		 "sampled per %.0f KiB",
		 mib((double)P.total_refaulted), mib(sums[V_REFAULTED]), P.rate / 1024);
	snprintf(sub[V_FAULTS], sizeof(sub[0]),
		 "%llu faults sampled (1 in %d, counts are estimated faults), %llu of them in "
		 "system calls; %llu late, %llu lost",
		 (unsigned long long)P.fault_samples, PROFILE_FAULT_PERIOD,
		 (unsigned long long)P.fault_kmode, (unsigned long long)atomic_load(&P.fault_late),
		 (unsigned long long)(atomic_load(&P.fault_lost) + atomic_load(&P.fault_no_slot)));
	snprintf(sub[V_ALLOC], sizeof(sub[0]),
		 "%.1f MiB allocated (estimated) through malloc and mmap; one allocation sampled "
		 "per %.0f KiB", mib(sums[V_ALLOC]), P.rate / 1024);
	for (int v = 0; v < V_NR; v++) {
		int e = err ? err : write_view(v, prefix, &t, sub[v], sums);
		if (e && !err)
			err = e;
	}
	if (t.pc)
		munmap(t.pc, t.cap * sizeof(*t.pc));
	if (t.name)
		munmap(t.name, t.cap * sizeof(*t.name));
	if (t.strings)
		munmap(t.strings, t.strcap);
	profile_tls.busy--;
	return err;
}

/*
 * preload — libzswapu-preload.so, the LD_PRELOAD shim: an unmodified
 * program runs with its cold memory compressed.  `zswapu run` loads it;
 * `LD_PRELOAD=.../libzswapu-preload.so prog` does the same by hand.
 *
 * The library is built from this file and the same objects as
 * libzswapu.so; it exports the interposed calls below and the zswapu_*
 * API (so a program that also links libzswapu.so talks to this one engine:
 * its zswapu_init() gets -EALREADY), nothing else.
 *
 * Start (constructor): read the ZSWAPU_* options (core/options.c) once.
 * ZSWAPU_ENABLED=0, a program named in ZSWAPU_EXCLUDE, a bad value or an
 * engine that cannot start: the program runs unmanaged; the last two say
 * so in one stderr line.  Otherwise start the engine, keep out the memory
 * that exists already (the loader's and the libraries': engine threads
 * touch it, see discover_exclude_present), and start the scanner thread.
 *
 * Management begins at start with ZSWAPU_COLD_AGE, or when the resident
 * size first reaches 3/4 of ZSWAPU_LIMIT (armed()): a registered range
 * costs a fault-handler round trip on the first touch of each page, which
 * a program that fits in its limit should not pay.
 *
 * Discovery (core/discover.c) runs on the scanner thread, an engine thread
 * on engine memory: every ZSWAPU_SCAN_INTERVAL (with a limit, up to ten
 * times as often: scan_gap()) it rereads /proc/self/maps and registers new
 * private anonymous memory (the brk heap and malloc's own mmaps are found
 * only this way; a large allocation asks for a scan at once, and so does
 * the reclaimer when it finds nothing to take), and every 1 to 30 s it reads smaps
 * (VmFlags: memory locked behind the wrappers' back, munlock, memory
 * mapped again where other memory was).  The fast path: an interposed
 * mmap() of MMAP_FAST_MIN or more of private anonymous writable memory is
 * registered before mmap returns.
 *
 * Memory that must stay resident: mlock/mlock2/mlockall(MCL_CURRENT) and
 * madvise(MADV_DONTDUMP, MADV_WIPEONFORK, and MADV_DONTFORK unless the
 * engine detaches with MOVE, which refuses pages pinned for DMA; the engine
 * is then told of DONTFORK instead, see madvise()) first unregister
 * what they cover (zswapu_unregister brings the pages back), tell
 * discovery to keep it out, and then run; mlockall(MCL_FUTURE) stops the
 * fast path.  A scan that one of them raced is aborted (`gen`) and redone:
 * a registration never lands on memory locked after the scan read maps.
 * munmap and mremap need nothing here for the engine, which sees them
 * as userfaultfd events; they are wrapped for the profiler.
 *
 * Profiling (ZSWAPU_PROFILE, core/profile.h): malloc, calloc, realloc,
 * free, posix_memalign, aligned_alloc, memalign and mmap are wrapped so
 * that sampled allocations are recorded; munmap and mremap keep the
 * profiler's map of sampled ranges current.  Without ZSWAPU_PROFILE the
 * wrappers add one load and a branch.  The real allocator is found with
 * dlsym(RTLD_NEXT) (glibc's, or one preloaded after us); dlsym itself
 * allocates, so while a thread resolves, its allocations come from a
 * static buffer that is never freed.
 *
 * fork: a child is served its stored pages by the parent's engine (or got
 * them all before the fork, without fork events); it does not manage its
 * own memory at first, since its ranges belong to the parent's
 * userfaultfd.  One that lives on starts an engine of its own once the
 * parent has ended and handed it its pages, or once it has lived a second
 * and grown to the limit's mark (adopt_check()).  After exec the shim
 * starts afresh in the new program.
 *
 * Exit (destructor): stop the scanner and the live stats (the file
 * /dev/shm/zswapu.PID goes), print the stats if ZSWAPU_STATS=1,
 * then stop the engine only if a forked child still depends on it (it
 * gets its pages first).  Otherwise the engine keeps serving faults until
 * the process is gone: bringing every stored page back at exit would
 * raise the resident size past the limit at the last moment and cost
 * the time to decompress it all, for memory about to be freed; and
 * destructors that run after this one may still touch managed memory.
 *
 * Locks: `lock` orders registration against mlock & co (it is held
 * across zswapu_register/unregister, never while touching program
 * memory); the scanner thread waits on `cv` between scans.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/compress.h"
#include "core/discover.h"
#include "core/fdguard.h"
#include "core/log.h"
#include "core/maps.h"
#include "core/options.h"
#include "core/profile.h"
#include "core/reclaim.h"
#include "libzswapu/publish.h"
#include "libzswapu/zswapu.h"
#include "pools/pagesrc.h"

#define EXPORT __attribute__((visibility("default")))
#define PAGE 4096UL
/* mmap()s this large are registered at once; smaller ones wait for a scan
 * (python's arenas are 1 MiB; small mappings are many and cheap to miss) */
#define MMAP_FAST_MIN (1UL << 20)
/* a full scan reads smaps, a walk of every page table (~10 ms per 300 MB
 * here): they are spaced by FULL_SPACING times the last one's duration,
 * FULL_MIN_MS..FULL_MAX_MS apart, to stay near 1% of a core; quick ones
 * (maps) run every ZSWAPU_SCAN_INTERVAL */
#define FULL_SPACING 100
#define FULL_MIN_MS 1000
#define FULL_MAX_MS 30000
/* stats are sampled this often for their peaks (ZSWAPU_STATS=1) */
#define SAMPLE_MS 250
#define KEEP_MAX 16 /* the executable's load segments */

enum { OFF, ON };

static struct {
	struct options o;
	_Atomic int state;
	_Atomic bool armed; /* see armed() */
	pthread_mutex_t lock;
	unsigned long gen;  /* bumped under lock by mlock & co */
	unsigned long scan_gen; /* gen when the scan in progress began */
	bool lock_future;   /* mlockall(MCL_FUTURE) in force */
	bool dontfork_managed; /* MOVE detach: MADV_DONTFORK memory is managed */
	_Atomic bool dontfork_seen; /* ... and the program has used it */
	struct discover *disc;
	pthread_t scanner;
	void *scanner_stack;
	bool scanner_running, stop;
	pthread_cond_t cv;
	/* scans asked for by large allocations (large_alloc()), under lock */
	unsigned long scan_asked, scan_done;
	_Atomic bool kicked; /* unregistered memory suspected: see kick_scanner() */
	_Atomic uint64_t alert_until; /* ms: unarmed, look at the size closely until then */
	pthread_cond_t scanned_cv;
	struct timespec t0;
	int stats_fd; /* stderr as it was at start (ZSWAPU_STATS=1) */
	/* peaks seen by the scanner's samples, for the exit table */
	struct zswapu_stats peak; /* at the moment stored_pages peaked */
	uint64_t peak_anon;
	bool enospc_logged;
	/* the process whose engine this is (0: none); a forked or vforked
	 * child sees the same value and another getpid() */
	_Atomic pid_t owner;
	_Atomic bool forked; /* it has forked (fork(), not vfork or spawn) */
	/* the page this process's forked children watch (see adopt_check());
	 * a watching child's threads read it while one of them replaces it */
	struct handover *_Atomic ho;
	/* a forked child that watches its parent's page, the count it saw at
	 * its fork, and its pid (a vforked child shares this memory) */
	_Atomic bool adopt_watch;
	uint64_t adopt_seen;
	pid_t adopt_pid;
	size_t adopt_base; /* its resident anonymous memory at the fork */
	_Atomic uint64_t adopt_next; /* ms: the next look at a live parent's child */
	/* a worker's engine (adopt_slow()): the parent's page and what its
	 * limit was raised by until the parent hands over; scanner only */
	const struct handover *worker_ho;
	size_t worker_raise;
} g = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
};

/* ---- the real calls ------------------------------------------------------------------ */

/*
 * dlsym may allocate, and an allocator may mmap through us: while this
 * thread resolves, calls fall through to the raw system call.
 */
static __thread int resolving __attribute__((tls_model("initial-exec")));

static void *real(void *_Atomic *slot, const char *name)
{
	void *f = atomic_load_explicit(slot, memory_order_acquire);
	if (f || resolving)
		return f;
	resolving = 1;
	f = dlsym(RTLD_NEXT, name);
	resolving = 0;
	atomic_store_explicit(slot, f, memory_order_release);
	return f;
}

static void *_Atomic real_mmap, *_Atomic real_mlockall, *_Atomic real_munlockall;
static void *_Atomic real_munmap, *_Atomic real_mremap;

static void *call_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	void *f = real(&real_mmap, "mmap");
	return f ? ((void *(*)(void *, size_t, int, int, int, off_t))f)(addr, len, prot, flags,
									 fd, off)
		 : (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

/* The calls on a range that must first take it out of zswapu. */
enum range_call { CALL_MADVISE, CALL_MLOCK, CALL_MLOCK2, CALL_NR };

static const struct {
	const char *name;
	long nr;
} range_calls[CALL_NR] = {
	[CALL_MADVISE] = { "madvise", SYS_madvise },
	[CALL_MLOCK] = { "mlock", SYS_mlock },
	[CALL_MLOCK2] = { "mlock2", SYS_mlock2 },
};
static void *_Atomic real_range[CALL_NR];

/* @arg: madvise's advice, mlock2's flags; mlock has none. */
static int call_range(enum range_call c, const void *addr, size_t len, int arg)
{
	void *f = real(&real_range[c], range_calls[c].name);
	if (!f)
		return (int)syscall(range_calls[c].nr, addr, len, arg);
	switch (c) {
	case CALL_MADVISE:
		return ((int (*)(void *, size_t, int))f)((void *)addr, len, arg);
	case CALL_MLOCK:
		return ((int (*)(const void *, size_t))f)(addr, len);
	default:
		return ((int (*)(const void *, size_t, unsigned int))f)(addr, len,
									  (unsigned int)arg);
	}
}

static int call_mlockall(int flags)
{
	void *f = real(&real_mlockall, "mlockall");
	return f ? ((int (*)(int))f)(flags) : (int)syscall(SYS_mlockall, flags);
}

/* ---- registration and its opposite --------------------------------------------------- */

static bool on(void)
{
	return atomic_load_explicit(&g.state, memory_order_acquire) == ON;
}

static void engine_gone(int err)
{
	if (err == -ECANCELED || err == -ENODEV)
		atomic_store(&g.state, OFF);
}

/* discover's callback, on the scanner thread. */
static int scanned(enum discover_op op, uintptr_t start, size_t len, void *arg)
{
	(void)arg;
	if (op == DISCOVER_UNREGISTER)
		return zswapu_unregister((void *)start, len);
	/* one VMA: registered whole or not at all */
	if (op == DISCOVER_MANAGED)
		return zswapu_managed((void *)start) && zswapu_managed((char *)start + len - 1);
	if (op == DISCOVER_DONTFORK || op == DISCOVER_DOFORK)
		return zswapu_fork_advice((void *)start, len,
					  op == DISCOVER_DONTFORK ? MADV_DONTFORK : MADV_DOFORK);
	pthread_mutex_lock(&g.lock);
	int err = g.gen != g.scan_gen ? -EAGAIN : zswapu_register((void *)start, len);
	pthread_mutex_unlock(&g.lock);
	return err;
}

/* The mmap fast path, on the program's thread. */
static void register_mapped(void *p, size_t len)
{
	uintptr_t s = (uintptr_t)p, e = (s + len + PAGE - 1) & ~(PAGE - 1);
	if (discover_excluded(g.disc, s, e))
		return;
	int saved = errno;
	pthread_mutex_lock(&g.lock);
	int err = g.lock_future ? 0 : zswapu_register(p, e - s);
	pthread_mutex_unlock(&g.lock);
	engine_gone(err);
	errno = saved;
}

/*
 * Bring back and unregister every managed piece of [start, end), before
 * the caller locks it, marks it DONTDUMP and so on.  Called with g.lock
 * held, on the program's thread (its stack holds the reader's buffer).
 */
static void unmanage(uintptr_t start, uintptr_t end)
{
	char buf[1024];
	struct maps_reader rd;
	if (maps_open(&rd, "/proc/self/maps", buf, sizeof(buf)))
		return;
	struct maps_vma v;
	while (maps_next(&rd, &v) > 0) {
		if (v.end <= start || !maps_candidate(&v))
			continue;
		if (v.start >= end)
			break;
		uintptr_t s = v.start > start ? v.start : start;
		uintptr_t e = v.end < end ? v.end : end;
		/* -EINVAL/-EFAULT: a range zswapu never had; nothing to undo */
		engine_gone(zswapu_unregister((void *)s, e - s));
	}
	maps_close(&rd);
}

/* Page-aligned [addr, addr+len) as mlock rounds it, out and kept out. */
static void unmanage_range(const void *addr, size_t len)
{
	uintptr_t s = (uintptr_t)addr & ~(PAGE - 1);
	uintptr_t e = ((uintptr_t)addr + len + PAGE - 1) & ~(PAGE - 1);
	if (e <= s)
		return;
	unmanage(s, e);
	discover_keep_out(g.disc, s, e);
}

/* Does this process run the engine (not a forked or vforked child of the one that does)? */
static bool is_owner(void)
{
	pid_t owner = atomic_load(&g.owner);
	return owner && owner == getpid();
}

/* ---- forked children that live on ----------------------------------------------------- */

/*
 * A forked child does not manage its memory at first: the ranges it
 * inherited belong to the parent's userfaultfd, which serves their stored
 * pages, and most children exec within milliseconds.  Two kinds live on
 * and would otherwise run unmanaged, every page they fault or map resident:
 *
 * - A daemon made by fork() and exit() (redis-style).  Once the parent's
 *   engine has handed it its pages (the parent ending, see
 *   children_first() and the destructor), the parent's descriptor for it
 *   is closed, and with it the kernel dropped those registrations.  The
 *   parent counts each such hand-over on a shared page (`ho`).
 * - A worker whose parent lives on (prefork servers, multiprocessing
 *   pools): memory it maps or grows into is its own, and the parent's
 *   engine never takes a page of it.
 *
 * A child has no thread to notice either: it looks in the calls it makes
 * anyway (the allocator, mmap & co., adopt_check()).  Once the count has
 * moved past what it saw at its fork, or once it has lived ADOPT_AFTER_MS
 * and would be armed (a cold age, or its resident size ARM_PCT of the
 * limit past what it was at the fork), it starts an engine and discovery
 * of its own, as daemon()'s does (start_managing()).  What the parent still serves refuses that
 * engine's registration (-EBUSY, kept out); full scans try again, and
 * succeed once the parent has handed the pages over.
 */
struct handover {
	_Atomic uint64_t released;
};

#define ADOPT_AFTER_MS 1000
#define ADOPT_POLL_MS 100
#define ADOPT_EVERY 16 /* calls on one thread between looks at the clock */
#define ARM_PCT 75     /* see armed() */

static int start_managing(const struct discover *like);
static uint64_t now_ms(void);

/* Is the resident size @over past ARM_PCT of the limit?  (One pread.)
 * The engine's limit once there is one: `zswapu limit` changes it. */
static bool at_arm_mark(size_t over)
{
	size_t limit = zswapu_limit();
	if (!limit)
		limit = g.o.z.limit_bytes;
	return limit && reclaim_anon_rss() >= over + limit / 100 * ARM_PCT;
}

static __thread unsigned int adopt_calls __attribute__((tls_model("initial-exec")));

/* A live parent's child: has it lived long enough, and grown to need us? */
static bool worker_due(void)
{
	if (++adopt_calls % ADOPT_EVERY)
		return false;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	uint64_t t = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	if (t < atomic_load_explicit(&g.adopt_next, memory_order_relaxed))
		return false;
	atomic_store_explicit(&g.adopt_next, t + ADOPT_POLL_MS, memory_order_relaxed);
	return g.o.z.cold_age_ms > 0 || at_arm_mark(g.adopt_base);
}

/* In the parent, once its children have their pages. */
static void children_handed_over(void)
{
	struct handover *ho = atomic_load(&g.ho);
	if (ho)
		atomic_fetch_add(&ho->released, 1);
}

static __attribute__((noinline)) void adopt_slow(void)
{
	bool ended = atomic_load(&atomic_load(&g.ho)->released) != g.adopt_seen;
	if (!ended && !worker_due())
		return;
	if (getpid() != g.adopt_pid)
		return;
	if (!atomic_exchange(&g.adopt_watch, false))
		return; /* another thread is at it */
	int saved = errno;
	/* what it inherited is mostly still the parent's too (a page is
	 * copied when one of them writes it), and not this engine's to take:
	 * a worker is held to the limit on top of it, or under a parent at
	 * its limit it would find the limit out of reach and cycle its own
	 * hot pages */
	struct handover *parent = atomic_load(&g.ho);
	if (!ended && g.o.z.limit_bytes) {
		g.o.z.limit_bytes += g.adopt_base;
		g.worker_raise = g.adopt_base;
		g.worker_ho = parent;
	}
	if (start_managing(g.disc) == 0) {
		log_info(ended ? "the parent has ended: managing this process's memory from now on"
			       : "a forked child that lives on and has grown: managing its own memory "
				 "(the parent's engine serves what it inherited)");
	}
	errno = saved;
}

/*
 * A worker's parent has handed its pages over (ended): what the worker
 * inherited is its engine's to take now (full scans register it), and
 * the limit goes back to the one every process has.  On the scanner.
 */
static void worker_parent_check(void)
{
	if (!g.worker_raise || atomic_load(&g.worker_ho->released) == g.adopt_seen)
		return;
	/* unless `zswapu limit` has set one since: that one stays */
	size_t limit = zswapu_limit();
	if (limit == g.o.z.limit_bytes && limit > g.worker_raise &&
	    zswapu_set_limit(limit - g.worker_raise) == 0)
		log_info("the parent has ended: the limit is back to %zu bytes",
			 limit - g.worker_raise);
	g.worker_raise = 0;
}

/* One load and a branch unless this is a forked child of a managed process. */
static inline void adopt_check(void)
{
	if (__builtin_expect(atomic_load_explicit(&g.adopt_watch, memory_order_relaxed), 0))
		adopt_slow();
}

/* ---- interposed calls ---------------------------------------------------------------- */

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	adopt_check();
	/* over registered memory, mapping and registering exclude a WP detach */
	bool fixed = (flags & MAP_FIXED) && on();
	if (fixed)
		zswapu_map_change_begin();
	void *p = call_mmap(addr, len, prot, flags, fd, off);
	if (p != MAP_FAILED && (flags & MAP_ANONYMOUS) && profile_sampling(len))
		profile_alloc(p, len, false);
	if (p != MAP_FAILED && len >= MMAP_FAST_MIN && on() && g.armed && (flags & MAP_ANONYMOUS) &&
	    (flags & MAP_TYPE) == MAP_PRIVATE &&
	    (prot & (PROT_READ | PROT_WRITE)) == (PROT_READ | PROT_WRITE) &&
	    !(flags & (MAP_LOCKED | MAP_HUGETLB | MAP_GROWSDOWN)))
		register_mapped(p, len);
	if (fixed)
		zswapu_map_change_end();
	return p;
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
	__attribute__((alias("mmap")));

EXPORT int munmap(void *addr, size_t len)
{
	adopt_check();
	profile_unmap(addr, len);
	void *f = real(&real_munmap, "munmap");
	return f ? ((int (*)(void *, size_t))f)(addr, len) : (int)syscall(SYS_munmap, addr, len);
}

EXPORT void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
	adopt_check();
	void *to = NULL;
	if (flags & MREMAP_FIXED) {
		va_list ap;
		va_start(ap, flags);
		to = va_arg(ap, void *);
		va_end(ap);
	}
	void *f = real(&real_mremap, "mremap");
	bool bracket = on();
	if (bracket) /* see zswapu_map_change_begin() */
		zswapu_map_change_begin();
	void *p = f ? ((void *(*)(void *, size_t, size_t, int, ...))f)(old, old_len, new_len,
								       flags, to)
		    : (void *)syscall(SYS_mremap, old, old_len, new_len, flags, to);
	if (bracket)
		zswapu_map_change_end();
	if (p != MAP_FAILED)
		profile_remap(old, old_len, p, new_len);
	return p;
}

/* ---- the allocator (for the profiler) ------------------------------------------------- */

static void *_Atomic r_malloc, *_Atomic r_calloc, *_Atomic r_realloc, *_Atomic r_free,
	*_Atomic r_memalign, *_Atomic r_posix_memalign, *_Atomic r_aligned_alloc;

/* Allocations made while dlsym resolves; a 16-byte header holds the size. */
static _Alignas(64) char boot[65536];
static _Atomic size_t boot_used;

static void *boot_alloc(size_t n, size_t align)
{
	if (align < 16)
		align = 16;
	size_t at, next;
	do {
		at = atomic_load(&boot_used);
		size_t start = (at + 16 + align - 1) & ~(align - 1);
		next = start + n;
		if (n > sizeof(boot) || next > sizeof(boot))
			return NULL;
		if (atomic_compare_exchange_weak(&boot_used, &at, next)) {
			*(size_t *)(boot + start - 16) = n;
			return boot + start; /* zeroed: static, never reused */
		}
	} while (1);
}

static bool in_boot(const void *p)
{
	return (const char *)p >= boot && (const char *)p < boot + sizeof(boot);
}

/* The real allocator's entry points; false while this thread resolves them. */
static bool alloc_resolved(void)
{
	if (atomic_load_explicit(&r_free, memory_order_acquire))
		return true;
	if (resolving)
		return false;
	resolving = 1;
	atomic_store(&r_malloc, dlsym(RTLD_NEXT, "malloc"));
	atomic_store(&r_calloc, dlsym(RTLD_NEXT, "calloc"));
	atomic_store(&r_realloc, dlsym(RTLD_NEXT, "realloc"));
	atomic_store(&r_memalign, dlsym(RTLD_NEXT, "memalign"));
	atomic_store(&r_posix_memalign, dlsym(RTLD_NEXT, "posix_memalign"));
	atomic_store(&r_aligned_alloc, dlsym(RTLD_NEXT, "aligned_alloc"));
	void *f = dlsym(RTLD_NEXT, "free");
	resolving = 0;
	atomic_store_explicit(&r_free, f, memory_order_release);
	return f != NULL;
}

/*
 * A large allocation: malloc maps it, or grows its heap for it, with calls
 * the shim does not see, so until the next scan the program fills memory
 * that nothing can take back (measured: mtshadow's malloc(64 MiB), filled
 * before the scan, put the resident size at 56 MiB under a 19 MiB limit).
 * Once armed, unless its end is managed already, ask the scanner for a
 * quick scan now and wait for it, SCAN_WAIT_MS at most.  The size of a
 * block does not arm management: sort mallocs more than it fills (its
 * buffer is larger than its limit at 1.5x its peak), and armed by it ran
 * 1.40x its native time.
 */
#define SCAN_WAIT_MS 20
#define ALERT_MS 200
#define ALERT_POLL_MS 1
static uint64_t now_ms(void);
static void large_alloc(void *p, size_t n)
{
	if (!on() || !g.o.z.limit_bytes || pagesrc_contains(p))
		return;
	if (!atomic_load_explicit(&g.armed, memory_order_relaxed)) {
		/* a fill at memory speed (sort reading its input) passes 3/4
		 * of a small limit between two looks 10 ms apart: look every
		 * ALERT_POLL_MS for a while (sort: 16 MiB under 5 before) */
		atomic_store(&g.alert_until, now_ms() + ALERT_MS);
		return;
	}
	if (zswapu_managed((char *)p + n - 1))
		return;
	int saved = errno;
	uint64_t until = now_ms() + SCAN_WAIT_MS;
	struct timespec ts = { .tv_sec = until / 1000, .tv_nsec = until % 1000 * 1000000 };
	pthread_mutex_lock(&g.lock);
	unsigned long ticket = ++g.scan_asked;
	pthread_cond_broadcast(&g.cv);
	while (g.scan_done < ticket && !g.stop &&
	       pthread_cond_timedwait(&g.scanned_cv, &g.lock, &ts) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&g.lock);
	errno = saved;
}

EXPORT void *malloc(size_t n)
{
	adopt_check();
	if (!alloc_resolved())
		return boot_alloc(n, 16);
	void *p = ((void *(*)(size_t))r_malloc)(n);
	if (p && profile_sampling(n))
		profile_alloc(p, n, true);
	if (p && n >= MMAP_FAST_MIN)
		large_alloc(p, n);
	return p;
}

EXPORT void free(void *p)
{
	if (!p || in_boot(p))
		return;
	profile_free(p); /* first: once freed, another thread may get p */
	if (alloc_resolved())
		((void (*)(void *))r_free)(p);
}

EXPORT void *calloc(size_t n, size_t size)
{
	adopt_check();
	size_t bytes;
	if (__builtin_mul_overflow(n, size, &bytes)) {
		errno = ENOMEM;
		return NULL;
	}
	if (!alloc_resolved())
		return boot_alloc(bytes, 16);
	void *p = ((void *(*)(size_t, size_t))r_calloc)(n, size);
	if (p && profile_sampling(bytes))
		profile_alloc(p, bytes, true);
	if (p && bytes >= MMAP_FAST_MIN)
		large_alloc(p, bytes);
	return p;
}

EXPORT void *realloc(void *old, size_t n)
{
	adopt_check();
	if (in_boot(old) || !alloc_resolved()) {
		void *p = alloc_resolved() ? malloc(n) : boot_alloc(n, 16);
		if (p && old) {
			size_t had = *(size_t *)((char *)old - 16);
			memcpy(p, old, had < n ? had : n);
		}
		return p;
	}
	profile_free(old);
	void *p = ((void *(*)(void *, size_t))r_realloc)(old, n);
	if (p && profile_sampling(n))
		profile_alloc(p, n, true);
	if (p && n >= MMAP_FAST_MIN)
		large_alloc(p, n);
	return p;
}

EXPORT int posix_memalign(void **out, size_t align, size_t n)
{
	adopt_check();
	if (!alloc_resolved()) {
		*out = boot_alloc(n, align);
		return *out ? 0 : ENOMEM;
	}
	int r = ((int (*)(void **, size_t, size_t))r_posix_memalign)(out, align, n);
	if (r == 0 && profile_sampling(n))
		profile_alloc(*out, n, true);
	if (r == 0 && n >= MMAP_FAST_MIN)
		large_alloc(*out, n);
	return r;
}

EXPORT void *aligned_alloc(size_t align, size_t n)
{
	adopt_check();
	if (!alloc_resolved())
		return boot_alloc(n, align);
	void *p = ((void *(*)(size_t, size_t))r_aligned_alloc)(align, n);
	if (p && profile_sampling(n))
		profile_alloc(p, n, true);
	if (p && n >= MMAP_FAST_MIN)
		large_alloc(p, n);
	return p;
}

EXPORT void *memalign(size_t align, size_t n)
{
	adopt_check();
	if (!alloc_resolved())
		return boot_alloc(n, align);
	void *p = ((void *(*)(size_t, size_t))r_memalign)(align, n);
	if (p && profile_sampling(n))
		profile_alloc(p, n, true);
	if (p && n >= MMAP_FAST_MIN)
		large_alloc(p, n);
	return p;
}

/* Run @c over [addr, addr+len) after taking it out of zswapu. */
static int unmanaged_op(enum range_call c, const void *addr, size_t len, int arg)
{
	adopt_check();
	if (!on())
		return call_range(c, addr, len, arg);
	pthread_mutex_lock(&g.lock);
	g.gen++;
	int saved = errno;
	unmanage_range(addr, len);
	errno = saved;
	int r = call_range(c, addr, len, arg);
	pthread_mutex_unlock(&g.lock);
	return r;
}

EXPORT int mlock(const void *addr, size_t len)
{
	return unmanaged_op(CALL_MLOCK, addr, len, 0);
}

EXPORT int mlock2(const void *addr, size_t len, unsigned int flags)
{
	return unmanaged_op(CALL_MLOCK2, addr, len, (int)flags);
}

EXPORT int madvise(void *addr, size_t len, int advice)
{
	adopt_check();
	bool fork_advice = (advice == MADV_DONTFORK || advice == MADV_DOFORK) && on() &&
			   g.dontfork_managed;
	/* pages these mark (secrets, device buffers) stay resident: maps.h */
	if (advice == MADV_DONTDUMP || advice == MADV_WIPEONFORK ||
	    (advice == MADV_DONTFORK && !fork_advice))
		return unmanaged_op(CALL_MADVISE, addr, len, advice);
	if (!fork_advice)
		return call_range(CALL_MADVISE, addr, len, advice);
	/*
	 * Managed (MOVE), but a forked child will not have a DONTFORK
	 * mapping, and the engine must know it before a fork: told after the
	 * mark is made, before it is lifted (zswapu.h).
	 */
	int saved = errno;
	atomic_store(&g.dontfork_seen, true);
	if (advice == MADV_DOFORK)
		engine_gone(zswapu_fork_advice(addr, len, advice));
	errno = saved;
	int r = call_range(CALL_MADVISE, addr, len, advice);
	saved = errno;
	if (r == 0 && advice == MADV_DONTFORK)
		engine_gone(zswapu_fork_advice(addr, len, advice));
	errno = saved;
	return r;
}

/* ---- ends that skip the exit handlers ------------------------------------------------ */

/*
 * A forked child reads its stored pages through this engine.  Ended
 * without exit handlers (the destructor hands the children their pages),
 * the process would take the engine with it, and the kernel would drop
 * the children's registrations: daemon(3)'s child read 13,056 of 16,384
 * pages as zeros.  So every such end hands them their pages first.
 */
#define END_WAIT_MS 30000 /* a wedged engine must not keep a process from ending */

static void children_first(void)
{
	/* no fork, no child to serve: _exit() needs no round trip */
	if (atomic_load(&g.forked) && is_owner()) {
		int saved = errno;
		int err = zswapu_before_end(0, END_WAIT_MS);
		if (err && err != -ENODEV)
			log_error("forked children could not all get their pages before the process "
				  "ended (%s): they may read zeros",
				  strerrordesc_np(-err) ? strerrordesc_np(-err) : "unknown error");
		else
			children_handed_over();
		errno = saved;
	}
}

static void *_Atomic real__exit;

EXPORT __attribute__((noreturn)) void _exit(int status)
{
	children_first();
	/* no destructor removes /dev/shm/zswapu.PID (multiprocessing's
	 * workers end this way, one file each) */
	if (is_owner())
		publish_gone();
	void *f = real(&real__exit, "_exit");
	if (f)
		((void (*)(int))f)(status);
	for (;;)
		syscall(SYS_exit_group, status);
}

EXPORT __attribute__((noreturn)) void _Exit(int status)
{
	_exit(status);
}

/*
 * The daemon that daemon() leaves runs on as a forked child, which the
 * shim does not manage.  Once its parent is gone (it handed the child its
 * pages first), nothing ties it to the parent's engine: it starts its own.
 * The parent is on its way out (_exit() right after the fork): a pidfd
 * wakes the child when it has gone, the kernel having reparented the
 * child by then; kernels before 5.3 look every 5 ms.  30 s at most.
 */
static void manage_daemon(pid_t parent)
{
	int fd = (int)syscall(SYS_pidfd_open, parent, 0);
	/* still our parent: the pid was not reused before the open */
	if (fd >= 0 && getppid() == parent)
		while (poll(&(struct pollfd){ .fd = fd, .events = POLLIN }, 1, 30000) < 0 &&
		       errno == EINTR)
			;
	if (fd >= 0)
		close(fd);
	for (int i = 0; fd < 0 && i < 6000 && getppid() == parent; i++)
		nanosleep(&(struct timespec){ 0, 5 * 1000 * 1000 }, NULL);
	if (getppid() == parent)
		return; /* its pages may still be the parent's to serve */
	start_managing(g.disc);
}

/*
 * glibc's daemon() forks and ends the parent with its own _exit(), out of
 * our reach: this is the same function (daemon(3)) with our _exit().
 */
EXPORT int daemon(int nochdir, int noclose)
{
	pid_t parent = getpid();
	bool managed = is_owner();
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid > 0)
		_exit(0);
	if (managed)
		manage_daemon(parent);
	if (setsid() < 0)
		return -1;
	if (!nochdir && chdir("/") < 0)
		return -1;
	if (!noclose) {
		int fd = open("/dev/null", O_RDWR);
		if (fd < 0)
			return -1;
		struct stat st;
		/* as glibc: not a character device, not the real /dev/null */
		if (fstat(fd, &st) < 0 || !S_ISCHR(st.st_mode)) {
			close(fd);
			errno = ENODEV;
			return -1;
		}
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		if (fd > 2)
			close(fd);
	}
	return 0;
}

/*
 * exec replaces the address space, the engine with it: the children
 * first here too.  glibc's exec functions call execve() inside libc,
 * so each is wrapped; the execl family builds its argv as glibc does.
 */
static void *_Atomic real_execve, *_Atomic real_execv, *_Atomic real_execvp,
	*_Atomic real_execvpe, *_Atomic real_fexecve, *_Atomic real_execveat;

typedef int (*exec_fn)(const char *, char *const[], char *const[]);

static int no_exec(void)
{
	errno = ENOSYS;
	return -1;
}

EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	children_first();
	void *f = real(&real_execve, "execve");
	return f ? ((exec_fn)f)(path, argv, envp) : no_exec();
}

EXPORT int execv(const char *path, char *const argv[])
{
	children_first();
	void *f = real(&real_execv, "execv");
	return f ? ((int (*)(const char *, char *const[]))f)(path, argv) : no_exec();
}

EXPORT int execvp(const char *file, char *const argv[])
{
	children_first();
	void *f = real(&real_execvp, "execvp");
	return f ? ((int (*)(const char *, char *const[]))f)(file, argv) : no_exec();
}

EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	children_first();
	void *f = real(&real_execvpe, "execvpe");
	return f ? ((exec_fn)f)(file, argv, envp) : no_exec();
}

EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	children_first();
	void *f = real(&real_fexecve, "fexecve");
	return f ? ((int (*)(int, char *const[], char *const[]))f)(fd, argv, envp) : no_exec();
}

EXPORT int execveat(int dirfd, const char *path, char *const argv[], char *const envp[],
		    int flags)
{
	children_first();
	void *f = real(&real_execveat, "execveat");
	return f ? ((int (*)(int, const char *, char *const[], char *const[], int))f)(
			   dirfd, path, argv, envp, flags)
		 : no_exec();
}

enum execl_kind { EXECL, EXECLP, EXECLE };

/*
 * The execl family: the arguments up to the NULL (@count goes through
 * them once to size argv, @fill again to copy them; for execle, the
 * environment follows the NULL), then the matching exec*v*.
 */
static int execl_call(enum execl_kind k, const char *path, const char *arg, va_list *count,
		      va_list *fill)
{
	size_t n = 1;
	while (va_arg(*count, const char *))
		n++;
	char *argv[n + 1];
	argv[0] = (char *)arg;
	for (size_t i = 1; i <= n; i++)
		argv[i] = va_arg(*fill, char *);
	if (k == EXECLE)
		return execve(path, argv, va_arg(*fill, char *const *));
	return k == EXECLP ? execvp(path, argv) : execv(path, argv);
}

#define EXECL_BODY(kind, path, arg)                                   \
	va_list count, fill;                                          \
	va_start(count, arg);                                         \
	va_copy(fill, count);                                         \
	int r = execl_call(kind, path, arg, &count, &fill);           \
	va_end(fill);                                                 \
	va_end(count);                                                \
	return r

EXPORT int execl(const char *path, const char *arg, ...)
{
	EXECL_BODY(EXECL, path, arg);
}

EXPORT int execlp(const char *file, const char *arg, ...)
{
	EXECL_BODY(EXECLP, file, arg);
}

EXPORT int execle(const char *path, const char *arg, ...)
{
	EXECL_BODY(EXECLE, path, arg);
}

/* ---- fatal signals ---------------------------------------------------------------------- */

/*
 * A signal whose default action ends the process ends it without exit
 * handlers too: children_first(), and for a core dump, every stored page
 * back first (the kernel writes the dump once the engine's threads are
 * gone, and leaves out every page that is not there: zeros in gdb).  So
 * where the program leaves such a signal at SIG_DFL, on_fatal() is
 * installed instead; it does that, restores SIG_DFL and sends the signal
 * again, with its siginfo, to take the default action.  The program sees
 * SIG_DFL: sigaction() and signal() below report it, and a handler of its
 * own replaces ours (setting SIG_DFL again brings ours back).
 */
static const int core_signals[] = { SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS,
				    SIGFPE,  SIGSEGV, SIGXCPU, SIGXFSZ, SIGSYS };
static const int term_signals[] = { SIGHUP,  SIGINT,  SIGPIPE, SIGALRM,   SIGTERM, SIGUSR1,
				    SIGUSR2, SIGPROF, SIGIO,   SIGVTALRM, SIGPWR,  SIGSTKFLT };

static _Atomic bool fatal_watched; /* on_fatal() is in use: sigaction() translates */
/* what the kernel reported for the program's SIG_DFL where on_fatal stands
 * (flags and mask as set: glibc adds SA_RESTORER, for one) */
static struct sigaction dfl_view[NSIG];
static void *_Atomic real_sigaction, *_Atomic real_signal;

static bool in_list(const int *l, size_t n, int sig)
{
	for (size_t i = 0; i < n; i++)
		if (l[i] == sig)
			return true;
	return false;
}

static bool is_core(int sig)
{
	return in_list(core_signals, sizeof(core_signals) / sizeof(*core_signals), sig);
}

static bool watched(int sig)
{
	return is_core(sig) || in_list(term_signals, sizeof(term_signals) / sizeof(*term_signals), sig);
}

/* Resolved at start: on_fatal() cannot call dlsym. */
static int call_sigaction(int sig, const struct sigaction *a, struct sigaction *o)
{
	void *f = atomic_load_explicit(&real_sigaction, memory_order_acquire);
	if (!f) {
		errno = ENOSYS;
		return -1;
	}
	return ((int (*)(int, const struct sigaction *, struct sigaction *))f)(sig, a, o);
}

/* Will the kernel write a core dump?  Only syscalls: a signal handler's. */
static bool dump_expected(void)
{
	if (prctl(PR_GET_DUMPABLE) <= 0)
		return false;
	struct rlimit rl;
	if (getrlimit(RLIMIT_CORE, &rl) == 0 && rl.rlim_cur > 1)
		return true;
	/* a pipe (systemd-coredump, apport) is fed whatever RLIMIT_CORE says
	 * (but 1, which the kernel uses to break recursion) */
	char c[2];
	return maps_read_small("/proc/sys/kernel/core_pattern", c, sizeof(c)) && c[0] == '|' &&
	       rl.rlim_cur != 1;
}

static void on_fatal(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	int saved = errno;
	uintptr_t a, b, sp = (uintptr_t)&a;
	pagesrc_range(&a, &b);
	/* not in a forked child (the engine is the parent's), not on an
	 * engine thread (one crashing cannot wait for itself) */
	if (is_owner() && !(sp >= a && sp < b)) {
		bool core = is_core(sig) && dump_expected();
		if (core || atomic_load(&g.forked)) {
			int err = zswapu_before_end(core ? ZSWAPU_END_CORE : 0, END_WAIT_MS);
			if (core && err && err != -ENODEV)
				log_error("signal %d: the stored pages could not all come back (%s): the "
					  "core dump has zeros for those left",
					  sig, strerrordesc_np(-err) ? strerrordesc_np(-err) : "unknown error");
			if (!err || err == -ENODEV)
				children_handed_over();
		}
		publish_gone();
	}
	struct sigaction dfl;
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	call_sigaction(sig, &dfl, NULL);
	/* pending until this handler returns, then the default action: a
	 * fault's siginfo (address, code) goes into the dump unchanged */
	siginfo_t again = *si;
	syscall(SYS_rt_tgsigqueueinfo, getpid(), syscall(SYS_gettid), sig, &again);
	errno = saved;
}

static void install_ours(int sig)
{
	struct sigaction a;
	memset(&a, 0, sizeof(a));
	a.sa_sigaction = on_fatal;
	/* every signal held off meanwhile: the one sent again waits for the return */
	a.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigfillset(&a.sa_mask);
	call_sigaction(sig, &a, NULL);
}

/* At start (one thread): on_fatal() where the disposition is SIG_DFL. */
static void watch_fatal_signals(void)
{
	if (!atomic_load(&real_sigaction))
		return;
	for (int sig = 1; sig < NSIG; sig++) {
		struct sigaction cur;
		if (watched(sig) && call_sigaction(sig, NULL, &cur) == 0 &&
		    cur.sa_handler == SIG_DFL) {
			dfl_view[sig] = cur;
			install_ours(sig);
		}
	}
	atomic_store(&fatal_watched, true);
}

EXPORT int sigaction(int sig, const struct sigaction *restrict act, struct sigaction *restrict old)
{
	void *f = real(&real_sigaction, "sigaction");
	if (!f || !atomic_load(&fatal_watched) || sig <= 0 || sig >= NSIG || !watched(sig))
		return f ? call_sigaction(sig, act, old) : (errno = ENOSYS, -1);
	struct sigaction prev;
	int r = call_sigaction(sig, act, &prev);
	/*
	 * The program's SIG_DFL is set for real and read back (what a later
	 * query reports), then on_fatal stands in for it; a fatal signal in
	 * between takes the default action.  A forked child gets what it asks.
	 */
	if (r == 0 && act && act->sa_handler == SIG_DFL && is_owner() &&
	    call_sigaction(sig, NULL, &dfl_view[sig]) == 0)
		install_ours(sig);
	if (r == 0 && old) {
		*old = prev;
		if ((prev.sa_flags & SA_SIGINFO) && prev.sa_sigaction == on_fatal)
			*old = dfl_view[sig]; /* what the program left there */
	}
	return r;
}

/*
 * glibc's other ways to set a handler, through sigaction() above for the
 * signals we watch, so that none hands the program on_fatal (set again
 * as a plain handler, it would be called without its siginfo).  signal()
 * and bsd_signal(): BSD semantics; sysv_signal() (what signal() is in a
 * strict -std=c99 build: __sysv_signal) resets and does not block.
 */
static __sighandler_t set_handler(int sig, __sighandler_t h, int flags, bool block_self)
{
	struct sigaction a, o;
	memset(&a, 0, sizeof(a));
	a.sa_handler = h;
	sigemptyset(&a.sa_mask);
	if (block_self)
		sigaddset(&a.sa_mask, sig);
	a.sa_flags = flags;
	return sigaction(sig, &a, &o) < 0 ? SIG_ERR : o.sa_handler;
}

static bool set_by_us(int sig)
{
	return atomic_load(&fatal_watched) && sig > 0 && sig < NSIG && watched(sig);
}

static __sighandler_t call_real_signal(void *_Atomic *slot, const char *name, int sig,
				       __sighandler_t h)
{
	void *f = real(slot, name);
	if (!f) {
		errno = ENOSYS;
		return SIG_ERR;
	}
	return ((__sighandler_t(*)(int, __sighandler_t))f)(sig, h);
}

static void *_Atomic real_bsd_signal, *_Atomic real_sysv_signal, *_Atomic real___sysv_signal,
	*_Atomic real_sigset;

EXPORT __sighandler_t signal(int sig, __sighandler_t h)
{
	if (!set_by_us(sig))
		return call_real_signal(&real_signal, "signal", sig, h);
	return set_handler(sig, h, SA_RESTART, true);
}

EXPORT __sighandler_t bsd_signal(int sig, __sighandler_t h)
{
	if (!set_by_us(sig))
		return call_real_signal(&real_bsd_signal, "bsd_signal", sig, h);
	return set_handler(sig, h, SA_RESTART, true);
}

EXPORT __sighandler_t sysv_signal(int sig, __sighandler_t h)
{
	if (!set_by_us(sig))
		return call_real_signal(&real_sysv_signal, "sysv_signal", sig, h);
	return set_handler(sig, h, SA_RESETHAND | SA_NODEFER, false);
}

EXPORT __sighandler_t __sysv_signal(int sig, __sighandler_t h)
{
	if (!set_by_us(sig))
		return call_real_signal(&real___sysv_signal, "__sysv_signal", sig, h);
	return set_handler(sig, h, SA_RESETHAND | SA_NODEFER, false);
}

/* sigset(): as glibc's, SIG_HOLD blocks the signal instead */
EXPORT __sighandler_t sigset(int sig, __sighandler_t h)
{
	if (!set_by_us(sig))
		return call_real_signal(&real_sigset, "sigset", sig, h);
	sigset_t one, was;
	sigemptyset(&one);
	sigaddset(&one, sig);
	if (h == SIG_HOLD) {
		struct sigaction o;
		if (sigaction(sig, NULL, &o) < 0 || pthread_sigmask(SIG_BLOCK, &one, &was))
			return SIG_ERR;
		return sigismember(&was, sig) ? SIG_HOLD : o.sa_handler;
	}
	__sighandler_t old = set_handler(sig, h, 0, false);
	if (old == SIG_ERR || pthread_sigmask(SIG_UNBLOCK, &one, &was))
		return SIG_ERR;
	return sigismember(&was, sig) ? SIG_HOLD : old;
}

/*
 * mlockall(MCL_CURRENT) itself would lock and populate the engine's arena:
 * a reservation of twice the RAM, mostly never touched.  So every other
 * mapping is locked one by one instead (mappings made meanwhile by other
 * threads are not, unless MCL_FUTURE), and the real call gets only
 * MCL_FUTURE.  The first error is returned, as mlockall would.
 */
static int lock_all_but_engine(bool onfault)
{
	uintptr_t a, b;
	pagesrc_range(&a, &b);
	char buf[1024];
	struct maps_reader rd;
	int r = -1;
	if (maps_open(&rd, "/proc/self/maps", buf, sizeof(buf)))
		return call_mlockall(MCL_CURRENT | (onfault ? MCL_ONFAULT : 0));
	struct maps_vma v;
	r = 0;
	while (maps_next(&rd, &v) > 0) {
		/* what mlockall skips: inaccessible and special mappings */
		if ((v.start < b && v.end > a) || v.kind == MAPS_SPECIAL ||
		    !(v.read || v.write || v.exec))
			continue;
		int e = call_range(onfault ? CALL_MLOCK2 : CALL_MLOCK, (void *)v.start,
				   v.end - v.start, onfault ? MLOCK_ONFAULT : 0);
		if (e && !r) {
			r = e;
			break;
		}
	}
	maps_close(&rd);
	return r;
}

EXPORT int mlockall(int flags)
{
	if (!on())
		return call_mlockall(flags);
	pthread_mutex_lock(&g.lock);
	g.gen++;
	int saved = errno, r = 0;
	if (flags & MCL_CURRENT) {
		unmanage(0, UINTPTR_MAX & ~(PAGE - 1));
		discover_keep_out(g.disc, 0, UINTPTR_MAX & ~(PAGE - 1));
		r = lock_all_but_engine(flags & MCL_ONFAULT);
	}
	if (r == 0 && (flags & MCL_FUTURE)) {
		r = call_mlockall(flags & ~MCL_CURRENT);
		if (r == 0)
			g.lock_future = true;
	}
	if (r == 0)
		errno = saved;
	pthread_mutex_unlock(&g.lock);
	return r;
}

EXPORT int munlockall(void)
{
	void *f = real(&real_munlockall, "munlockall");
	int r = f ? ((int (*)(void))f)() : (int)syscall(SYS_munlockall);
	if (r == 0 && on()) {
		/* what it unlocked comes back with the next full scan */
		pthread_mutex_lock(&g.lock);
		g.lock_future = false;
		pthread_mutex_unlock(&g.lock);
	}
	return r;
}

/* ---- the engine's descriptors (core/fdguard.h) ---------------------------------------- */

static void *_Atomic real_close, *_Atomic real_close_range, *_Atomic real_dup2, *_Atomic real_dup3;

/* One line, the first time: a close-all loop would print one per descriptor. */
static void refused(const char *call, int fd)
{
	static _Atomic bool said;
	if (!atomic_exchange(&said, true))
		log_error("the program's %s() would take descriptor %d, which zswapu uses (userfaultfd, "
			  "writeback file or ring); it stays open, the call skips it", call, fd);
}

EXPORT int close(int fd)
{
	if (fdguard_owned(fd)) {
		refused("close", fd);
		errno = EBADF; /* what closing a descriptor one does not have gives */
		return -1;
	}
	void *f = real(&real_close, "close");
	return f ? ((int (*)(int))f)(fd) : (int)syscall(SYS_close, fd);
}

static int call_close_range(unsigned int first, unsigned int last, int flags)
{
	void *f = real(&real_close_range, "close_range");
	return f ? ((int (*)(unsigned int, unsigned int, int))f)(first, last, flags)
		 : (int)syscall(SYS_close_range, first, last, flags);
}

/* The range in pieces around the engine's descriptors. */
EXPORT int close_range(unsigned int first, unsigned int last, int flags)
{
	/* only marking close-on-exec: the engine's are already */
	if (flags & CLOSE_RANGE_CLOEXEC || first >= FDGUARD_MAX || first > last)
		return call_close_range(first, last, flags);
	unsigned int lo = first;
	for (int g = fdguard_next((int)lo); g >= 0 && (unsigned int)g <= last;
	     g = fdguard_next((int)lo)) {
		refused("close_range", g);
		if ((unsigned int)g > lo && call_close_range(lo, (unsigned int)g - 1, flags))
			return -1;
		lo = (unsigned int)g + 1;
	}
	return lo <= last ? call_close_range(lo, last, flags) : 0;
}

EXPORT void closefrom(int lowfd)
{
	if (lowfd < 0)
		lowfd = 0;
	close_range((unsigned int)lowfd, ~0U, 0);
}

/* dup2()/dup3() onto one of the engine's: refused with EBUSY. */
static bool dup_refused(const char *call, int oldfd, int newfd)
{
	if (oldfd == newfd || !fdguard_owned(newfd))
		return false;
	refused(call, newfd);
	errno = EBUSY;
	return true;
}

EXPORT int dup2(int oldfd, int newfd)
{
	if (dup_refused("dup2", oldfd, newfd))
		return -1;
	void *f = real(&real_dup2, "dup2");
	return f ? ((int (*)(int, int))f)(oldfd, newfd) : (int)syscall(SYS_dup2, oldfd, newfd);
}

EXPORT int dup3(int oldfd, int newfd, int flags)
{
	if (dup_refused("dup3", oldfd, newfd))
		return -1;
	void *f = real(&real_dup3, "dup3");
	return f ? ((int (*)(int, int, int))f)(oldfd, newfd, flags)
		 : (int)syscall(SYS_dup3, oldfd, newfd, flags);
}

/* ---- the scanner thread --------------------------------------------------------------- */

/*
 * Compress and expand one page now, so that the compressor's lazily bound
 * library calls are resolved before any fault depends on them (the
 * loader's lookup walks memory that is not the engine's).
 */
static void warm_up(void)
{
	struct compress_cfg cfg;
	if (compress_parse_quiet(g.o.compressor, &cfg))
		return;
	unsigned char page[COMPRESS_PAGE_SIZE], out[COMPRESS_PAGE_SIZE];
	for (size_t i = 0; i < sizeof(page); i++)
		page[i] = (unsigned char)(i * 7 / 13);
	size_t n;
	if (!compress_page(&cfg, page, out, sizeof(out), &n))
		compress_decompress(&cfg, out, n, page);
}

static void sample(void)
{
	struct zswapu_stats st;
	if (zswapu_stats(&st))
		return;
	if (st.stored_pages >= g.peak.stored_pages)
		g.peak = st;
	if (st.anon_rss_bytes > g.peak_anon)
		g.peak_anon = st.anon_rss_bytes;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* @return ranges registered (>= 0) or -errno */
static int scan_once(bool full)
{
	int r;
	do {
		pthread_mutex_lock(&g.lock);
		g.scan_gen = g.gen;
		pthread_mutex_unlock(&g.lock);
		r = discover_scan(g.disc, full);
	} while (r == -EAGAIN && on());
	if (r == -ENOSPC && !g.enospc_logged) {
		g.enospc_logged = true;
		log_error("more separate ranges than the engine can manage: some memory stays "
			  "unmanaged");
	} else if (r < 0 && r != -ENOSPC) {
		log_debug("scan: %s", strerrordesc_np(-r));
	}
	engine_gone(r);
	return r;
}

/*
 * Has management begun?  A limit arms it when the resident size first
 * reaches ARM_PCT of the limit: until then no reclaim would run anyway,
 * and a registered range makes the first touch of each of its pages a
 * round trip through the fault handler, which a program that fits should
 * not pay (armed at half the limit, a program peaking at two thirds of it
 * ran 1.10-2.2x its native time: python, sort, gcc).  The last quarter
 * is room for what grows while the scanner looks (every 10 ms) and
 * registers.  A cold age arms it at start; neither: never.
 */
static bool armed(void)
{
	if (atomic_load_explicit(&g.armed, memory_order_relaxed))
		return true;
	if (!at_arm_mark(0))
		return false;
	if (!atomic_exchange(&g.armed, true))
		log_info("resident size reached %d %% of the limit: managing memory from now on",
			 ARM_PCT);
	return true;
}

/*
 * The reclaimer is over its mark and found nothing to take: what grew is
 * not registered yet (the brk heap grows in steps the shim does not see).
 * Scan now.  On the reclaimer's thread, which must not wait for g.lock
 * (its holder may be waiting for the reclaimer to pause): the flag alone
 * is seen at the scanner's next turn, the signal only makes it sooner.
 */
static void kick_scanner(void)
{
	atomic_store(&g.kicked, true);
	if (pthread_mutex_trylock(&g.lock) == 0) {
		pthread_cond_broadcast(&g.cv);
		pthread_mutex_unlock(&g.lock);
	}
}

/* Sleep until @wake (ms, CLOCK_MONOTONIC) or until told to stop; false to stop. */
static bool sleep_until(uint64_t wake)
{
	pthread_mutex_lock(&g.lock);
	if (!g.stop && g.scan_asked == g.scan_done && !atomic_load(&g.kicked)) {
		struct timespec ts = { .tv_sec = wake / 1000, .tv_nsec = wake % 1000 * 1000000 };
		pthread_cond_timedwait(&g.cv, &g.lock, &ts);
	}
	bool stop = g.stop;
	pthread_mutex_unlock(&g.lock);
	return !stop;
}

/*
 * Time to the next quick scan after one that took @took ms.  With a
 * limit, memory the scans have not found yet grows unchecked: sqlite3
 * building an index grew its heap by 5 MiB between two scans 100 ms
 * apart, half its 10 MiB limit.  So while a quick scan is cheap they run
 * up to ten times as often as ZSWAPU_SCAN_INTERVAL, every SCAN_MIN_MS at
 * the most, at about 2 % of a core (QUICK_SPACING times the last one).
 */
#define SCAN_MIN_MS 10
#define QUICK_SPACING 50
static uint64_t scan_gap(uint64_t took)
{
	uint64_t gap = g.o.scan_ms;
	if (g.o.z.limit_bytes) {
		uint64_t want = took * QUICK_SPACING, lo = gap / 10 > SCAN_MIN_MS ? gap / 10 : SCAN_MIN_MS;
		gap = want < lo ? lo : want < gap ? want : gap;
	}
	return gap;
}

static void *scanner_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "zswapu-scan");
	warm_up();
	/* unarmed, the resident size is looked at this often (one pread) */
	uint64_t poll = SCAN_MIN_MS;
	uint64_t next_scan = 0, next_full = 0, next_sample = 0, wake;
	do {
		uint64_t t = now_ms();
		worker_parent_check();
		pthread_mutex_lock(&g.lock);
		unsigned long asked = g.scan_asked;
		pthread_mutex_unlock(&g.lock);
		bool kicked = atomic_exchange(&g.kicked, false);
		if (t >= next_scan || asked != g.scan_done || kicked) {
			if (armed()) {
				/* the first scan is a full one */
				bool full = t >= next_full;
				int got = scan_once(full);
				uint64_t took = now_ms() - t, gap = took * FULL_SPACING;
				if (full)
					next_full = t + (gap < FULL_MIN_MS   ? FULL_MIN_MS
							 : gap > FULL_MAX_MS ? FULL_MAX_MS
									     : gap);
				/*
				 * What a quick scan registered may be DONTFORK
				 * (V8 marks its reservations before it makes
				 * them writable), which only smaps shows and
				 * the engine must know before a fork: the
				 * next full scan comes within FULL_MIN_MS.
				 */
				else if (got > 0 && atomic_load(&g.dontfork_seen) &&
					 next_full > t + FULL_MIN_MS)
					next_full = t + FULL_MIN_MS;
				next_scan = g.o.scan_ms ? t + scan_gap(full ? 0 : took) : UINT64_MAX;
			} else {
				next_scan = !g.o.z.limit_bytes ? UINT64_MAX
					    : t < atomic_load(&g.alert_until) ? t + ALERT_POLL_MS
									       : t + poll;
			}
			pthread_mutex_lock(&g.lock);
			g.scan_done = asked;
			pthread_cond_broadcast(&g.scanned_cv);
			pthread_mutex_unlock(&g.lock);
		}
		if (g.o.stats && t >= next_sample) {
			sample();
			next_sample = t + SAMPLE_MS;
		}
		wake = next_scan;
		if (g.o.stats && next_sample < wake)
			wake = next_sample;
		if (wake == UINT64_MAX)
			wake = t + 3600 * 1000;
	} while (on() && sleep_until(wake));
	return NULL;
}

/* ---- the stats table at exit ---------------------------------------------------------- */

struct outbuf {
	char b[6144];
	size_t n;
};

static void put(struct outbuf *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct outbuf *o, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(o->b + o->n, sizeof(o->b) - o->n, fmt, ap);
	va_end(ap);
	if (m > 0)
		o->n = o->n + m < sizeof(o->b) ? o->n + m : sizeof(o->b) - 1;
}

static const char *mib(uint64_t bytes, char *buf, size_t len)
{
	snprintf(buf, len, "%.1f MiB", bytes / 1048576.0);
	return buf;
}

/* A "Key:  N kB" line of /proc/self/status, in bytes; 0 if absent. */
static uint64_t status_kb(const char *key)
{
	char buf[4096];
	if (!maps_read_small("/proc/self/status", buf, sizeof(buf)))
		return 0;
	const char *p = strstr(buf, key);
	return p ? strtoull(p + strlen(key), NULL, 10) * 1024 : 0;
}

static void print_stats(const struct zswapu_stats *st)
{
	struct outbuf o = { .n = 0 };
	char a[32], b[32], c[32];
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	double secs = (t.tv_sec - g.t0.tv_sec) + (t.tv_nsec - g.t0.tv_nsec) / 1e9;
	const struct zswapu_stats *pk = &g.peak;
	put(&o, "zswapu: stats of %s (pid %d) after %.2f s\n", program_invocation_short_name,
	    (int)getpid(), secs);
	put(&o, "  %-28s %s, %s, limit %s%s, cold age %u ms\n", "setting", g.o.compressor,
	    g.o.pool, g.o.z.limit_bytes ? mib(g.o.z.limit_bytes, a, sizeof(a)) : "none",
	    g.o.z.limit_bytes ? (g.o.z.limit_includes_pool ? " (pool counted)" : " (pool not counted)")
			      : "",
	    g.o.z.cold_age_ms);
	put(&o, "  %-28s %s\n", "peak_resident (VmHWM)", mib(status_kb("VmHWM:"), a, sizeof(a)));
	put(&o, "  %-28s %s\n", "peak_anon_resident", mib(g.peak_anon, a, sizeof(a)));
	if (pk->pool_total_size)
		put(&o, "  %-28s %.2f (at the peak: %s stored in %s of pool)\n",
		    "compression_ratio", pk->stored_pages * 4096.0 / pk->pool_total_size,
		    mib(pk->stored_pages * 4096, b, sizeof(b)), mib(pk->pool_total_size, c, sizeof(c)));
	else
		put(&o, "  %-28s - (no pool in use at any sample)\n", "compression_ratio");
	put(&o, "  %-28s %llu\n", "peak_stored_pages", (unsigned long long)pk->stored_pages);
	const struct {
		const char *name;
		uint64_t v;
	} rows[] = {
		{ "stored_pages", st->stored_pages },
		{ "pool_total_size", st->pool_total_size },
		{ "stored_incompressible_pages", st->stored_incompressible_pages },
		{ "same_filled_pages", st->same_filled_pages },
		{ "zero_filled_pages", st->zero_filled_pages },
		{ "reject_compress_poor", st->reject_compress_poor },
		{ "reject_compress_fail", st->reject_compress_fail },
		{ "reject_alloc_fail", st->reject_alloc_fail },
		{ "decompress_fail", st->decompress_fail },
		{ "stores", st->stores },
		{ "loads", st->loads },
		{ "invalidates", st->invalidates },
		{ "faults", st->faults },
		{ "faults_from_store", st->faults_from_store },
		{ "faults_zero", st->faults_zero },
		{ "reclaim_batches", st->reclaim_batches },
		{ "reclaimed_pages", st->reclaimed_pages },
		{ "load_p50_ns", st->load_p50_ns },
		{ "load_p99_ns", st->load_p99_ns },
		{ "anon_rss_bytes", st->anon_rss_bytes },
		{ "managed_bytes", st->managed_bytes },
		{ "forks", st->forks },
		{ "child_faults", st->child_faults },
		{ "reject_pool_limit", st->reject_pool_limit },
		{ "pool_limit_hit", st->pool_limit_hit },
		{ "written_back_pages", st->written_back_pages },
		{ "writeback_bytes", st->writeback_bytes },
		{ "wb_stored_pages", st->wb_stored_pages },
		{ "wb_reads", st->wb_reads },
		{ "wb_read_p50_ns", st->wb_read_p50_ns },
		{ "wb_read_p99_ns", st->wb_read_p99_ns },
		{ "wb_errors", st->wb_errors },
		{ "wb_file_bytes", st->wb_file_bytes },
		{ "wb_live_bytes", st->wb_live_bytes },
		{ "faults_held", st->faults_held },
		{ "held_us", st->held_us },
		{ "limit_unreachable", st->limit_unreachable },
		{ "failed", st->failed },
		{ "stall_ns", st->stall_ns },
		{ "limit_stall_ns", st->limit_stall_ns },
		{ "limit_bytes", st->limit_bytes },
		{ "limit_set_bytes", st->limit_set_bytes },
		{ "limit_raised", st->limit_raised },
		{ "limit_lowered", st->limit_lowered },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		put(&o, "  %-28s %llu\n", rows[i].name, (unsigned long long)rows[i].v);
	put(&o, "  %-28s at least %.1f %% of the run waiting on faults (stall_ns / run time)\n",
	    "stall", secs > 0 ? st->stall_ns / 1e7 / secs : 0.0);
	struct discover_stats ds;
	discover_get_stats(g.disc, &ds);
	put(&o, "  %-28s %llu (%llu full); ranges: %llu registered (%llu mapped again where "
		"one was), %llu failed, %llu taken back, %llu kept resident\n",
	    "scans", (unsigned long long)ds.scans, (unsigned long long)ds.smaps_reads,
	    (unsigned long long)ds.registered, (unsigned long long)ds.dropped,
	    (unsigned long long)ds.failed,
	    (unsigned long long)ds.unregistered, (unsigned long long)ds.kept_out);
	/* one write: the table stays whole among other threads' output */
	ssize_t w = write(g.stats_fd, o.b, o.n);
	(void)w;
}

/* ---- start and stop ------------------------------------------------------------------- */

/* The executable's name as the ZSWAPU_EXCLUDE list may give it. */
static bool excluded(void)
{
	if (!g.o.exclude[0])
		return false;
	if (options_excluded(&g.o, program_invocation_short_name))
		return true;
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return false;
	exe[n] = '\0';
	const char *base = strrchr(exe, '/');
	return options_excluded(&g.o, base ? base + 1 : exe);
}

struct keep {
	uintptr_t r[KEEP_MAX][2];
	size_t n;
};

/* The executable's own segments (its .bss is the program's to lose, not ours). */
static int main_segments(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	struct keep *k = arg;
	for (int i = 0; i < info->dlpi_phnum && k->n < KEEP_MAX; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD)
			continue;
		uintptr_t s = info->dlpi_addr + ph->p_vaddr;
		k->r[k->n][0] = s & ~(PAGE - 1);
		k->r[k->n][1] = (s + ph->p_memsz + PAGE - 1) & ~(PAGE - 1);
		k->n++;
	}
	return 1; /* the executable comes first: stop there */
}

static const char *why(int err)
{
	switch (err) {
	case -EPERM:
	case -EACCES:
		return "userfaultfd is not permitted here (it needs read/write access to "
		       "/dev/userfaultfd, CAP_SYS_PTRACE, or vm.unprivileged_userfaultfd=1)";
	case -ENOSYS:
		return "this kernel has no userfaultfd";
	case -EOPNOTSUPP:
		return "this kernel lacks a userfaultfd feature zswapu needs (see the line above, "
		       "or ZSWAPU_DETACH)";
	case -EINVAL:
		return "the options were refused (see above)";
	default:
		return strerrordesc_np(-err) ? strerrordesc_np(-err) : "unknown error";
	}
}

static void after_fork_parent(void)
{
	atomic_store(&g.forked, true);
}

static void after_fork_child(void)
{
	/* the parent's engine serves this process; it manages nothing itself */
	atomic_store(&g.state, OFF);
	pthread_mutex_init(&g.lock, NULL);
	g.scanner_running = false;
	profile_forked();
	/* a child of the managing process watches its page from the count
	 * now; a child of a watching child (served by the same engine, handed
	 * its pages with it) keeps what that one saw */
	struct handover *ho = atomic_load(&g.ho);
	if (ho && !atomic_load(&g.adopt_watch)) {
		g.adopt_seen = atomic_load(&ho->released);
		atomic_store(&g.adopt_watch, true);
	}
	g.adopt_pid = getpid();
	g.adopt_base = atomic_load(&g.adopt_watch) && g.o.z.limit_bytes ? reclaim_anon_rss() : 0;
	atomic_store(&g.adopt_next, now_ms() + ADOPT_AFTER_MS);
}

/*
 * @like: a forked child's copy of its parent's discovery, whose exclusions
 * it takes over (what is mapped now is mostly the program's by then);
 * NULL at the program's start.
 */
static int start_discovery(const struct discover *like)
{
	int err = discover_create(NULL, NULL, scanned, NULL, &g.disc);
	if (err)
		return err;
	g.dontfork_managed = zswapu_detach_mode() == ZSWAPU_DETACH_MOVE;
	if (g.dontfork_managed)
		discover_manage_dontfork(g.disc);
	uintptr_t a, b;
	pagesrc_range(&a, &b);
	discover_exclude(g.disc, a, b);
	if (like) {
		discover_exclude_as(g.disc, like);
	} else {
		struct keep k = { .n = 0 };
		dl_iterate_phdr(main_segments, &k);
		err = discover_exclude_present(g.disc, (const uintptr_t(*)[2])k.r, k.n);
		if (err)
			return err;
	}
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&g.cv, &ca);
	pthread_cond_init(&g.scanned_cv, &ca);
	pthread_condattr_destroy(&ca);
	atomic_store(&g.armed, g.o.z.cold_age_ms > 0);
	/* a program's start is often its fastest growth (mallocchurn: 1 MiB
	 * a ms; polled every 10 ms it armed at 17 MiB under an 11 MiB limit) */
	atomic_store(&g.alert_until, now_ms() + ALERT_MS);
	reclaim_set_unknown_hook(kick_scanner);
	atomic_store(&g.state, ON);
	err = pagesrc_thread_create(&g.scanner, scanner_main, NULL, &g.scanner_stack);
	if (err) {
		atomic_store(&g.state, OFF);
		return err;
	}
	g.scanner_running = true;
	return 0;
}

/*
 * The engine and discovery, for the program at its start (@like NULL) or
 * for a forked child that takes over from its parent (daemon(),
 * adopt_slow(); @like: the parent's discovery, see start_discovery()).
 * @return 0, or -errno after one line.
 */
static int start_managing(const struct discover *like)
{
	/* a forked child's watch ends here, started or not (the engine's own
	 * calls come through the wrappers meanwhile) */
	atomic_store(&g.adopt_watch, false);
	int r = zswapu_init(&g.o.z);
	if (r) {
		log_error("cannot start: %s; running unmanaged", why(r));
		return r;
	}
	r = start_discovery(like);
	if (r) {
		log_error("cannot start region discovery: %s; running unmanaged",
			  strerrordesc_np(-r) ? strerrordesc_np(-r) : "unknown error");
		discover_destroy(g.disc);
		g.disc = NULL;
		zswapu_shutdown();
		return r;
	}
	atomic_store(&g.owner, getpid());
	atomic_store(&g.forked, false); /* a forked child has no child of its own yet */
	/* this process's children watch a page of its own (adopt_check());
	 * without one they run unmanaged after it ends, as before */
	struct handover *ho = call_mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
					MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	/* the parent's page stays mapped: another thread of a child may be
	 * reading it in adopt_slow() */
	atomic_store(&g.ho, ho == MAP_FAILED ? NULL : ho);
	return 0;
}

__attribute__((constructor)) static void preload_start(void)
{
	char err[400];
	int r = options_load(&g.o, NULL, err, sizeof(err));
	log_set_level(g.o.z.log_level);
	if (!g.o.enabled)
		return; /* a true no-op, even with other bad values */
	if (r) {
		log_error("%s; running unmanaged", err);
		return;
	}
	options_warn(&g.o, NULL);
	if (excluded()) {
		log_info("%s is in ZSWAPU_EXCLUDE: running unmanaged", program_invocation_short_name);
		return;
	}
	options_log_values(&g.o);
	clock_gettime(CLOCK_MONOTONIC, &g.t0);
	/* programs may close stderr before exit (coreutils' close_stdout does):
	 * keep a descriptor of our own for the table */
	g.stats_fd = g.o.stats ? fdguard_adopt(fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3)) : -1;
	/* resolve now, not in the middle of a call that holds g.lock */
	real(&real_mmap, "mmap");
	real(&real_mlockall, "mlockall");
	real(&real_munlockall, "munlockall");
	real(&real_munmap, "munmap");
	real(&real_mremap, "mremap");
	/* and these, which run in signal handlers and forked children, where
	 * dlsym may not: _exit, exec, and what sets a disposition */
	real(&real__exit, "_exit");
	real(&real_execve, "execve");
	real(&real_execv, "execv");
	real(&real_execvp, "execvp");
	real(&real_execvpe, "execvpe");
	real(&real_fexecve, "fexecve");
	real(&real_execveat, "execveat");
	real(&real_sigaction, "sigaction");
	real(&real_signal, "signal");
	real(&real_bsd_signal, "bsd_signal");
	real(&real_sysv_signal, "sysv_signal");
	real(&real___sysv_signal, "__sysv_signal");
	real(&real_sigset, "sigset");
	alloc_resolved();
	for (int c = 0; c < CALL_NR; c++)
		real(&real_range[c], range_calls[c].name);
	if (start_managing(NULL))
		return;
	pthread_atfork(NULL, after_fork_parent, after_fork_child);
	if (g.o.signals)
		watch_fatal_signals();
	if (g.o.profile[0]) {
		r = profile_start(g.o.profile, g.o.profile_rate);
		if (r)
			log_error("cannot profile: %s", strerrordesc_np(-r) ? strerrordesc_np(-r)
									 : "unknown error");
	}
}

__attribute__((destructor)) static void preload_stop(void)
{
	/* never started, or a forked child: nothing of ours runs here */
	if (!g.scanner_running)
		return;
	pthread_mutex_lock(&g.lock);
	g.stop = true;
	pthread_cond_broadcast(&g.cv);
	pthread_mutex_unlock(&g.lock);
	pagesrc_thread_join(g.scanner, g.scanner_stack);
	g.scanner_running = false;
	/* the engine may serve faults till the end, but the process is no
	 * longer one to watch: /dev/shm/zswapu.PID goes now */
	publish_stop();
	if (g.o.profile[0]) {
		char prefix[600];
		int err = profile_finish(prefix, sizeof(prefix));
		/* asked for: said at the error level, which shows by default */
		if (err)
			log_error("cannot write the profile %s.*: %s", prefix,
				  strerrordesc_np(-err) ? strerrordesc_np(-err) : "unknown error");
		else
			log_error("profile written: %s.{alloc-stored,alloc-refaulted,fault-sites,"
				  "alloc}.{folded,svg}", prefix);
	}
	struct zswapu_stats st;
	if (zswapu_stats(&st))
		return;
	if (g.o.stats && g.stats_fd >= 0) {
		sample(); /* the peaks include the last moment */
		print_stats(&st);
		fdguard_close(g.stats_fd);
	}
	/* a live forked child still reads its stored pages through this
	 * engine: it gets them all before the engine goes (see the top) */
	if (st.forks > st.children_exited) {
		atomic_store(&g.state, OFF);
		zswapu_shutdown();
		children_handed_over();
	}
}

/*
 * profile — where the memory zswapu compresses comes from, and which code
 * faults it back (ZSWAPU_PROFILE, `zswapu profile`; docs/profiling.md).
 * No ptrace: the process profiles itself, with libunwind.
 *
 * Allocation sites.  The shim's malloc/calloc/realloc/memalign and mmap
 * wrappers count the bytes each thread allocates; one allocation is
 * sampled per ZSWAPU_PROFILE_RATE bytes on average (a Poisson process
 * over the bytes, as tcmalloc's and jemalloc's heap profilers do: an
 * allocation of s bytes is sampled with probability 1 - exp(-s/rate), and
 * a sample stands for s / that probability bytes).  A sampled allocation's
 * backtrace becomes a site, and its address range goes into a map of live
 * samples (a treap keyed by address) until it is freed or unmapped.  When
 * the reclaimer stores a page or a fault brings one back, the bytes of the
 * sampled allocations on that page, each scaled by its weight, are added
 * to their sites (the estimate is unbiased): "refaulted" counts every
 * page faulted back; "stored" adds a stored page and takes a page loaded
 * back from the store away again, so it ends as what each site has in the
 * pool (pages discarded while compressed, by free or munmap, are not
 * taken away: the store does not say which were there).  The exact totals minus the
 * sites' estimates is shown as "[not in a sampled allocation]": memory no
 * wrapped allocator handed out (stacks, malloc's free space and headers,
 * memory from before the start), plus the estimates' error.
 *
 * Fault sites.  The fault handler picks one fault in FAULT_PERIOD (at
 * random) and, before resolving it, sends the faulting thread (the
 * message's ptid, UFFD_FEATURE_THREAD_ID) a real-time signal with tgkill.
 * The thread is in the kernel's userfault wait, which a signal interrupts;
 * it returns to user space without the page, runs the signal handler,
 * which unwinds from the signal frame (frame 0 = the faulting
 * instruction) into a preallocated slot, and executes the access again,
 * which then finds the page (or faults once more).  A fault taken in
 * kernel mode (a read(2) into a stored page) is not interrupted: the
 * kernel retries it until it is resolved, and the signal arrives when the
 * system call returns; the handler sees that (the instruction before the
 * interrupted one is `syscall`) and the sample is counted apart, under the
 * call site of the system call.  A signal that arrives more than 100 ms
 * late (the thread had it blocked) is dropped.
 *
 * Output (profile_finish(), at exit): PREFIX.alloc-stored, .alloc-refaulted,
 * .fault-sites and .alloc, each as folded stacks (.folded) and as an SVG
 * flame graph (.svg, core/flame.c), symbolised in the process
 * (unw_get_proc_name, which reads .symtab, then dladdr).
 *
 * Locks and threads: one mutex guards the sites and the map.  Program
 * threads take it (sampled allocations, frees of sampled pointers,
 * munmap of sampled ranges) and touch only engine memory under it.  Engine
 * threads only ever try it: the reclaimer (profile_stored) and the fault
 * handler (profile_refault, profile_fault) must never wait for a program
 * thread, which may be faulting on a page only they can bring back (BRIEF
 * trap 2); an attribution that finds the lock taken is counted as lost.
 * The fault slots are lock-free (states FREE -> SENT -> TAKEN -> DONE by
 * compare-and-swap); the signal handler takes no lock and allocates
 * nothing.  All memory is the engine's (pagesrc), never malloc's.
 */
#ifndef ZSWAPU_PROFILE_H
#define ZSWAPU_PROFILE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Frames kept per stack (innermost first; deeper stacks lose their roots). */
#define PROFILE_DEPTH 64
/* One fault in this many is sampled, on average. */
#define PROFILE_FAULT_PERIOD 64
/* The signal sent to a faulting thread. */
#define PROFILE_SIGNAL (SIGRTMAX - 4)

/* Per-thread sampling state, read inline by the shim's wrappers. */
struct profile_thread {
	int64_t left;  /* bytes until the next sampled allocation */
	uint64_t rng;
	int busy;      /* > 0: in the profiler; nothing is sampled */
	bool init;
};

extern __thread struct profile_thread profile_tls __attribute__((tls_model("initial-exec")));
extern _Atomic bool profile_on;
extern _Atomic(uint8_t) *profile_filter;
#define PROFILE_FILTER_BITS 16

/*
 * profile_start() : start profiling into files named @prefix.* ("%p" in
 * it becomes the pid), sampling one allocation per @rate bytes (0: every
 * one).  Installs the fault-sampling signal handler unless the program has
 * one of its own for PROFILE_SIGNAL (then fault sites are off, one line
 * says so).  @return 0, -EALREADY, -EINVAL (empty prefix), -ENOMEM.
 */
int profile_start(const char *prefix, size_t rate);

/*
 * profile_finish() : stop, and write the files.  @written (if not NULL)
 * gets the prefix as expanded.  @return 0, -ENODEV when not profiling,
 * or the first -errno of writing.  Profiling can start again after.
 */
int profile_finish(char *written, size_t len);

/* profile_forked() : in a forked child: stop, write nothing (the data is the parent's). */
void profile_forked(void);

/* ---- allocation hooks (program threads, through the shim) ---- */

/* Should an allocation of @size be sampled?  Counts it against the thread's budget. */
static inline bool profile_sampling(size_t size)
{
	if (!atomic_load_explicit(&profile_on, memory_order_relaxed))
		return false;
	struct profile_thread *t = &profile_tls;
	if (t->busy)
		return false;
	t->left -= (int64_t)size;
	return t->left < 0;
}

/*
 * profile_alloc() : after profile_sampling() said yes: record @p's
 * backtrace (from the caller of the caller of this function, i.e. from
 * the program's call to the wrapper) and its range [p, p+size).  @heap:
 * freed by free() (a malloc-family block) rather than munmap.
 */
void profile_alloc(void *p, size_t size, bool heap);

void profile_free_slow(void *p);

/* profile_free() : before @p goes back to the allocator. */
static inline void profile_free(void *p)
{
	_Atomic(uint8_t) *f = atomic_load_explicit(&profile_filter, memory_order_relaxed);
	if (!f || !p)
		return;
	uint64_t h = ((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ULL >> (64 - PROFILE_FILTER_BITS);
	if (atomic_load_explicit(&f[h], memory_order_relaxed))
		profile_free_slow(p);
}

/* profile_unmap() : before [p, p+len) is unmapped. */
void profile_unmap(void *p, size_t len);
/* profile_remap() : after mremap moved or resized [old, old+oldlen) to [new, new+newlen). */
void profile_remap(void *old, size_t oldlen, void *new_, size_t newlen);

/* ---- engine hooks (engine threads; cheap and lock-free when not profiling) ---- */

/* profile_stored() : the reclaimer committed the page at @page to the store. */
void profile_stored(uintptr_t page);
/*
 * profile_refault() : a fault brought [addr, addr+len) back with its
 * data, decompressed (@from_store) or still in the reclaimer's staging.
 */
void profile_refault(uintptr_t addr, size_t len, bool from_store);
/* profile_fault() : the handler is about to resolve a fault of thread @tid at @addr. */
void profile_fault(uintptr_t addr, unsigned int tid);

/* ---- inspection (tests) ---- */

struct profile_counts {
	double alloc, stored, refaulted; /* bytes, estimated */
	uint64_t fault_samples;
	unsigned int depth;              /* frames in the site's stack */
};

/*
 * profile_site_of() : the counts of the site whose live sample covers
 * @addr.  @return 0, -ENOENT (no live sample there), -ENODEV.
 */
int profile_site_of(uintptr_t addr, struct profile_counts *out);

/* profile_totals() : every byte stored / faulted back while profiling (exact). */
void profile_totals(uint64_t *stored, uint64_t *refaulted);

#endif

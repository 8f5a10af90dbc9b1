/*
 * pagesrc — the engine's own page allocator.
 *
 * Every page zswapu uses for itself (pool pages, entry slabs, staging area,
 * buffers, engine thread stacks) comes from one large private anonymous
 * reservation made once with mmap(MAP_NORESERVE).  Two things follow:
 *   - "is this address engine memory?" is one range compare
 *     (pagesrc_contains), which region discovery and the reclaimer use so
 *     that engine memory is never registered with userfaultfd nor reclaimed
 *     (BRIEF trap 2);
 *   - the engine never calls malloc, so a program thread that faults while
 *     holding a malloc lock cannot deadlock the fault handler.
 *
 * Allocations are runs of 1..PAGESRC_MAX_RUN contiguous pages.  Freed runs
 * are kept resident in a small cache (reused first: no page fault on reuse)
 * and beyond it handed back to the kernel with MADV_DONTNEED, so pool pages
 * that are no longer needed stop counting in the process's RSS.
 *
 * Locking: one mutex protects the free lists, the bump pointer and the
 * counters.  It is a leaf lock: nothing else is taken while holding it.
 */
#ifndef ZSWAPU_PAGESRC_H
#define ZSWAPU_PAGESRC_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PAGESRC_PAGE_SIZE 4096UL
#define PAGESRC_PAGE_SHIFT 12
/*
 * Longest run one call can ask for: zspages and slabs are short; the
 * reclaimer's staging area (one 2 MiB batch) is the longest user.
 */
#define PAGESRC_MAX_RUN 512

struct pagesrc_stats {
	size_t reserved_bytes; /* size of the address-space reservation */
	size_t used_pages;     /* handed out and not freed */
	size_t cached_pages;   /* freed, still resident, reused first */
	size_t released_pages; /* freed and given back to the kernel */
	size_t high_water;     /* bump pointer, in pages */
	size_t reserve_pages;  /* left free by ordinary allocations */
};

/*
 * pagesrc_init() : reserve the arena.  Idempotent and thread-safe; every
 * other function calls it on first use, so explicit calls are optional.
 * The reservation is sized from physical memory (twice RAM, at most 1 TiB)
 * and halved on failure (strict overcommit) down to 64 MiB.
 * @return 0, or -ENOMEM when no reservation could be made.
 */
int pagesrc_init(void);

/*
 * pagesrc_alloc() : allocate @npages (1..PAGESRC_MAX_RUN) contiguous,
 * page-aligned pages.  Their contents are unspecified (reused cached pages
 * keep old data; callers that need zeros clear them).
 * @return 0 and *@out, -EINVAL for a bad count, -ENOMEM when the arena is
 * exhausted or over the limit set with pagesrc_set_limit().
 */
int pagesrc_alloc(size_t npages, void **out);

/*
 * pagesrc_alloc_data() : as pagesrc_alloc(), from the data zone, which a
 * forked child does not inherit (MADV_WIPEONFORK: zeros there): for what
 * only this process's engine reads, the compressed objects, never for
 * what a forked child's copy of the engine looks at.
 */
int pagesrc_alloc_data(size_t npages, void **out);

/* pagesrc_free() : give back a run from pagesrc_alloc*(@npages). */
void pagesrc_free(void *p, size_t npages);

/* pagesrc_contains() : true when @p lies in the engine's arena.  Lock-free. */
bool pagesrc_contains(const void *p);

/* pagesrc_range() : the arena's bounds (for region discovery to skip). */
void pagesrc_range(uintptr_t *start, uintptr_t *end);

/*
 * pagesrc_set_limit() : cap on pages in use (0 = none).  Used by tests to
 * exercise the -ENOMEM paths of the pools and the index; callers see the
 * cap as an allocation failure, as they would an exhausted arena.
 */
void pagesrc_set_limit(size_t max_pages);
/*
 * The reserve: pages that ordinary allocations leave free, for a thread
 * that must not fail once it has started.  The index's move (mremap) is
 * one: the kernel has already moved the pages, so their entries must
 * find slots at the new address or be lost; it needs at most twice the
 * index's own pages, which the index keeps reserved.  Ordinary
 * allocations fail with -ENOMEM once the arena (or the limit) has no
 * more than the reserve left.
 *
 * pagesrc_alloc_reserving() : pagesrc_alloc(), and add @keep pages to
 * the reserve in the same step: an ordinary allocation fails unless both
 * fit.  pagesrc_reserve_adjust() : add @delta pages (negative: remove) to
 * the reserve.  pagesrc_use_reserve() : on the calling thread, allocations
 * may (@use) or may not take reserved pages; @return the previous setting,
 * for the caller to put back.
 */
int pagesrc_alloc_reserving(size_t npages, size_t keep, void **out);
void pagesrc_reserve_adjust(long delta);
bool pagesrc_use_reserve(bool use);

/* pagesrc_trim() : give every cached page back to the kernel now. */
void pagesrc_trim(void);

/*
 * pagesrc_defer_release() : on the calling thread, free pages go to the
 * cache (up to a hard cap) instead of back to the kernel: giving memory
 * back costs a TLB shootdown, which the fault handler must not pay while
 * a program thread waits.  Such a thread calls pagesrc_release_excess()
 * when it is idle.
 */
void pagesrc_defer_release(bool defer);
void pagesrc_release_excess(void);

/*
 * pagesrc_set_budget() : the memory limit the engine works under (0:
 * none).  Free pages kept resident and pages populated ahead scale with it
 * (1/64 of it, within the defaults): 8 MiB of cache and 2 MiB populated
 * ahead fit a 1 GiB limit, not a 10 MiB one.
 */
void pagesrc_set_budget(size_t bytes);

/*
 * pagesrc_resident_bytes() : the arena's resident memory, counted with
 * mincore() (a syscall per 16 MiB of arena in use: not for hot paths).
 */
size_t pagesrc_resident_bytes(void);

void pagesrc_get_stats(struct pagesrc_stats *st);

/*
 * pagesrc_thread_create() : start an engine thread on a stack of arena
 * memory, so that region discovery and the reclaimer never take it for
 * the program's, below a PROT_NONE guard page.  *@stack is what
 * pagesrc_thread_join() needs.  @return 0 or -errno.
 */
int pagesrc_thread_create(pthread_t *t, void *(*fn)(void *), void *arg, void **stack);
/* pagesrc_thread_join() : join @t and give its stack back. */
void pagesrc_thread_join(pthread_t t, void *stack);

#endif

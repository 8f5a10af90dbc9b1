/*
 * discover — finds the memory zswapu may manage in /proc/self/maps and
 * registers it (BRIEF trap 3: malloc's own mmaps and the brk heap do not
 * go through an interposed mmap; the maps file is where they show).
 *
 * What is managed: private, readable and writable anonymous memory and the
 * brk heap, a whole VMA at a time (registering part of one splits it, and
 * VMAs are scarce: vm.max_map_count), minus
 *   - the exclusions the caller sets up (the engine's arena, the memory
 *     the loader and the libraries set up before the program ran),
 *   - ranges that must stay resident: mlocked, MADV_DONTDUMP, WIPEONFORK,
 *     sealed... (MAPS_VM_KEEP_RESIDENT in maps.h), and DONTFORK unless
 *     discover_manage_dontfork() says otherwise.
 *
 * Two kinds of scan.  A quick scan reads plain maps (microseconds) and
 * compares it with the `known` table (ranges managed, or kept out):
 * ranges not seen before are registered, unless the caller said they must
 * stay resident (discover_keep_out(): the shim's mlock and madvise
 * wrappers).  A full scan reads smaps, which shows each VMA's VmFlags but
 * walks every page table (about 10 ms for 300 MB here): it catches what
 * the quick ones cannot see — memory locked or marked without going
 * through the wrappers (it is unregistered, its pages brought back), a
 * range unmapped and mapped again at the same place (not registered any
 * more: `um` is gone), a range unlocked again — and retries the ranges a
 * registration failed for.  The caller runs a full scan first and then
 * now and then.
 *
 * Registering and unregistering go through a callback (zswapu_register()
 * and zswapu_unregister() in the shim, a recorder in the tests); a
 * registration may be refused with -EAGAIN to abort the scan: the shim
 * does so when an mlock() raced it, and the next scan starts over.
 *
 * Memory: the state, its tables and the reader's buffer come from the
 * engine's page source (pagesrc): a scan neither mallocs nor touches
 * managed memory.  discover_scan() runs on one thread at a time;
 * discover_keep_out() may be called from any thread (a leaf lock);
 * discover_excluded() from any thread once the exclusions are set up.
 */
#ifndef ZSWAPU_DISCOVER_H
#define ZSWAPU_DISCOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Ranges remembered between scans (merged when adjacent): the engine's REGION_MAX. */
#define DISCOVER_KNOWN_MAX 8192
/* Ranges never registered; more are merged into their neighbours. */
#define DISCOVER_EXCL_MAX 128
/* discover_keep_out() calls between two scans; more make the next scan a full one. */
#define DISCOVER_KEEP_MAX 64

enum discover_op {
	DISCOVER_REGISTER,
	DISCOVER_UNREGISTER,
	DISCOVER_DONTFORK,
	DISCOVER_DOFORK,
	DISCOVER_MANAGED,
};

/*
 * The callback.  DISCOVER_REGISTER: 0 when registered; -EAGAIN aborts the
 * scan (nothing of it is remembered); -ECANCELED/-ENODEV (the engine is
 * gone) end it; -ENOSPC (the engine's table is full) leaves the rest of
 * the scan out; anything else leaves that range out.  Ranges left out are
 * tried again by the next full scan.  DISCOVER_UNREGISTER: the result only
 * matters when it is -ECANCELED/-ENODEV.  DISCOVER_DONTFORK / _DOFORK
 * (after discover_manage_dontfork()): a full scan saw a managed range
 * marked MADV_DONTFORK, or not; the result as for UNREGISTER.
 * DISCOVER_MANAGED: does the engine still have the VMA [start, start+len)
 * that an earlier scan registered (1) or not (0)?  Asked by quick scans,
 * which cannot see registrations; a full scan reads them from smaps.
 */
typedef int (*discover_fn)(enum discover_op op, uintptr_t start, size_t len, void *arg);

struct discover_stats {
	uint64_t scans;        /* discover_scan() calls */
	uint64_t smaps_reads;  /* of which full */
	uint64_t registered;   /* successful registrations */
	uint64_t unregistered; /* managed ranges found to need residency */
	uint64_t failed;       /* registrations that failed (other than -EAGAIN) */
	uint64_t dropped;      /* VMAs a quick scan found the engine no longer had */
	uint64_t kept_out;     /* candidate ranges the last scan left resident */
	size_t known;          /* ranges in the table now */
	size_t managed_bytes;  /* bytes of the ranges known as managed */
};

struct discover;

/*
 * discover_create() : an empty scanner reading @maps and @smaps (NULL:
 * /proc/self/maps and /proc/self/smaps; tests give files) and calling
 * @fn(..., @arg).  @return 0 or -ENOMEM.
 */
int discover_create(const char *maps, const char *smaps, discover_fn fn, void *arg,
		    struct discover **out);
void discover_destroy(struct discover *d);

/* discover_exclude() : never register any of [start, end). */
void discover_exclude(struct discover *d, uintptr_t start, uintptr_t end);

/*
 * discover_exclude_present() : exclude every candidate VMA mapped now,
 * except the brk heap and what lies in the @nkeep ranges of @keep.  Run at
 * start, this keeps out the memory the loader and the libraries set up
 * before the program ran (link maps, the main thread's TLS, libraries'
 * .bss), which engine threads may touch (lazy binding, pthread lists).
 * @return 0 or -errno.
 */
int discover_exclude_present(struct discover *d, const uintptr_t (*keep)[2], size_t nkeep);

/*
 * discover_exclude_as() : every exclusion of @from (a forked child's copy
 * of its parent's, which the child's own discovery takes over: what the
 * parent left out at its start, the child must too).
 */
void discover_exclude_as(struct discover *d, const struct discover *from);

/* discover_excluded() : does [start, end) overlap an exclusion? */
bool discover_excluded(const struct discover *d, uintptr_t start, uintptr_t end);

/*
 * discover_manage_dontfork() : from now on MADV_DONTFORK memory is
 * managed, not kept resident (for the MOVE detach, which refuses pages
 * pinned for DMA; WP's zap would not), and every full scan reports each
 * managed range as DISCOVER_DONTFORK or DISCOVER_DOFORK.  Before any scan.
 */
void discover_manage_dontfork(struct discover *d);

/*
 * discover_keep_out() : [start, end) must stay resident (the caller has
 * already unregistered it); scans leave it out until a full scan finds it
 * unlocked again.
 */
void discover_keep_out(struct discover *d, uintptr_t start, uintptr_t end);

/*
 * discover_scan() : one scan, quick or @full.  @return the number of
 * ranges registered (>= 0); -EAGAIN when the callback aborted it; -ENOSPC
 * after a scan that found the engine's table full; -ECANCELED, -ENODEV
 * from the callback (the caller stops scanning); -errno when the file
 * cannot be read.
 */
int discover_scan(struct discover *d, bool full);

void discover_get_stats(struct discover *d, struct discover_stats *st);

#endif

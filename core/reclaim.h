/*
 * reclaim — takes pages out of the program atomically, compresses them into
 * the store, and keeps the process under its limit.
 *
 * Detach: a batch of up to RECLAIM_BATCH contiguous pages is moved out of
 * the program with one UFFDIO_MOVE into a private staging area (a write
 * racing the detach either lands before the move, and is in the moved page,
 * or faults and waits for the engine: no write is lost).  Each moved page is
 * compressed from staging and committed to the store unless, meanwhile, the
 * program touched it (the fault handler copied it back from staging) or an
 * event removed it.  Pages that do not compress well enough go back.
 * Without UFFDIO_MOVE (Linux < 6.8), or with detach = WP, the batch is
 * write-protected, copied and zapped instead (reclaim.c explains the
 * write-fault and REMOVE-event races of that path).
 *
 * Cold detection: a clock hand sweeps the managed regions.  A page that was
 * faulted back in since the hand last passed has its bit set in a hashed
 * "referenced" filter; the hand clears the bit and passes over it (second
 * chance).  Pages the program touches without faulting are invisible to
 * user space: they are detached when the hand reaches them and, if hot,
 * fault straight back and are spared on the next pass.
 *
 * Writeback: the reclaimer thread also writes the pool's oldest pages to
 * the file when the pool reaches its cap (store_writeback() after each
 * batch, under `owner`).  Not a thread of its own: the pool grows only by
 * the reclaimer's batches, so writing back right after each one keeps it
 * within a batch of its cap with no signalling; a third busy thread would
 * only compete for the two cores; and the fault handler, which reads the
 * file, never waits for it (its own ring).
 *
 * Modes: with a limit, the hand moves while the process's resident
 * anonymous memory (pool included, unless limit_pool is off) is above
 * limit - margin; proactively (cold_age), it sweeps every region once per
 * cold_age.
 *
 * Threads and locks: one reclaimer thread; reclaim_range() may run from any
 * thread.  `owner` serialises batches (one staging area).  `batch.lock`
 * guards the per-page states the fault handler reads; lock order:
 * owner -> batch.lock -> store/index locks; evlock (see below) is taken
 * before batch.lock, and only tried under it.  The reclaimer waits for the
 * fault handler only to take evlock around UFFDIO_MOVE, never while holding
 * batch.lock (staging is unregistered while it is zapped, so that zap sends
 * no event), so the handler may wait for batch.lock.
 */
#ifndef ZSWAPU_RECLAIM_H
#define ZSWAPU_RECLAIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/region.h"
#include "core/store.h"
#include "core/uffd.h"

#define RECLAIM_BATCH 512

/* How pages leave the program (ZSWAPU_DETACH); engine_create() resolves AUTO. */
enum reclaim_detach {
	RECLAIM_DETACH_AUTO, /* MOVE where the kernel has it, else WP */
	RECLAIM_DETACH_MOVE, /* UFFDIO_MOVE into staging (6.8+) */
	RECLAIM_DETACH_WP,   /* write-protect, copy, zap (5.7+); regions registered MISSING|WP */
};

/* stall_max_pct's top: summed over threads, a stall goes over 100 % */
#define RECLAIM_STALL_MAX_PCT 1000

struct reclaim_options {
	size_t limit_bytes;     /* 0: no limit */
	bool limit_pool;        /* the pool counts against the limit */
	unsigned int cold_age_ms; /* 0: no proactive sweeps */
	unsigned int batch_pages; /* 1..RECLAIM_BATCH; 0: from the limit */
	enum reclaim_detach detach; /* MOVE or WP by the time reclaim_create() sees it */
	/* ZSWAPU_STALL_MAX: raise the limit while the program waits more than
	 * this percent of the time on what the limit costs it (see
	 * reclaim_watch_stall()); 0: the limit holds whatever it costs */
	unsigned int stall_max_pct;   /* 0..RECLAIM_STALL_MAX_PCT */
	unsigned int stall_window_ms; /* ... measured over this; 0: 250 (tests shorten it) */
	unsigned int stall_calm_ms;   /* a raised limit comes down after this long
				       * under half of it; 0: 10000 (tests shorten it) */
};

struct reclaim_counters {
	uint64_t batches, moved, stored, returned_poor, refaulted_staging,
		dropped, busy, passes, skipped_referenced, compacted_pages, refaults,
		thrash_backoffs, wp_write_faults, limit_unreachable,
		refused, /* pages MOVE would not take (another protection, mlocked) */
		skipped_unfit, /* pages the hand left: sent back lately (unfit_mark()) */
		limit_raised, limit_lowered, /* steps of the stall control (stall_max_pct) */
		batch_errors, /* batches that failed: the reclaimer rested, faults not held */
		emptied_early; /* pages out of staging before their batch ended, for held faults */
};

struct reclaim;

int reclaim_create(const struct reclaim_options *o, struct uffd *u,
		   struct store *s, struct region_set *rs, struct reclaim **out);
void reclaim_destroy(struct reclaim *r);
/* reclaim_forked_child() : in a forked child, close its copies of the
 * reclaimer's descriptors (the parent's pagemap). */
void reclaim_forked_child(struct reclaim *r);

/* reclaim_start() / reclaim_stop() : the background thread. */
int reclaim_start(struct reclaim *r);
void reclaim_stop(struct reclaim *r);

/*
 * reclaim_pause() : wait until no batch is in flight and keep it so until
 * reclaim_resume() (fork, shutdown).  Nests.
 */
void reclaim_pause(struct reclaim *r);
void reclaim_resume(struct reclaim *r);
/* reclaim_pause_async() : like reclaim_pause() without waiting (handler). */
void reclaim_pause_async(struct reclaim *r);
/* reclaim_is_quiet() : paused and no batch in flight. */
bool reclaim_is_quiet(struct reclaim *r);

/*
 * reclaim_range() : detach and compress every present page in
 * [start, end) now (zswapu_reclaim); pages must be in managed regions.
 * @return pages stored, or -errno when the engine cannot detach.
 */
long reclaim_range(struct reclaim *r, uintptr_t start, uintptr_t end);

/*
 * reclaim_force_warm_copy() : for tests, process-wide, read when a reclaim
 * instance takes its first batch: 1 always compresses from a warm copy,
 * 0 never, -1 (the default) lets it measure which is faster (WARM_PAGES
 * in reclaim.c).  Machines differ, and each path must stay tested.
 */
void reclaim_force_warm_copy(int warm);

/*
 * reclaim_shadow_paging() : what the first batch measured (WARM_PAGES in
 * reclaim.c), process-wide: 1 when a first access to a page-table entry
 * traps to the hypervisor (page tables shadowed in software), 0 when not,
 * -1 before any measure (none yet, or forced by reclaim_force_warm_copy()).
 */
int reclaim_shadow_paging(void);

/*
 * reclaim_time_fresh_entries() : the median cost in ns (clock reads
 * included) of a first and of a second user read of each page of area
 * (pages of them, at most 64 timed) just populated from the kernel side,
 * as staging pages and new pool pages are.  Tens of ns apart with
 * hardware-assisted paging; microseconds where the hypervisor shadows the
 * page tables (WARM_PAGES in reclaim.c).  Empties the pages again.
 * 0, or -errno (-EINVAL before Linux 5.14: no MADV_POPULATE_WRITE).
 */
int reclaim_time_fresh_entries(void *area, size_t pages, uint64_t *first_ns, uint64_t *second_ns);

/*
 * reclaim_set_unknown_hook() : @fn is called (on the reclaimer thread, so
 * it must not block) when usage is over the mark and a whole pass of the
 * hand found nothing to take: the memory is somewhere not registered yet
 * (the LD_PRELOAD shim then scans for it at once).  Process-wide.
 */
void reclaim_set_unknown_hook(void (*fn)(void));

/*
 * reclaim_memory_added() : @len bytes were registered.  A reclaimer
 * resting because its regions held nothing to take (over the mark), or
 * too little to bring usage under the limit, starts again at once when
 * enough was added, instead of at the end of the rest.
 */
void reclaim_memory_added(struct reclaim *r, size_t len);

/*
 * reclaim_set_limit() : hold usage under @bytes from now on (the batch
 * size and the refault table keep the sizes the first limit gave them).
 * @return 0; -EINVAL when @bytes is 0 or the reclaimer was created
 * without a limit (it has no limit to change).
 */
int reclaim_set_limit(struct reclaim *r, size_t bytes);
/* reclaim_limit() : the limit now (0: none), raised by the stall control
 * or not. */
size_t reclaim_limit(struct reclaim *r);
/* reclaim_limit_set() : the limit given (at creation or last set), which
 * the stall control may have raised the limit above. */
size_t reclaim_limit_set(struct reclaim *r);

/*
 * reclaim_watch_stall() : @ns counts the time the program's threads waited
 * on what the limit costs (faults that brought back pages that had been
 * taken, their time held at the limit included), in ns.  With
 * stall_max_pct, the reclaimer reads it once a window and, while usage is
 * at the limit, raises the limit by a quarter when it grew by more than
 * stall_max_pct percent of the window; after stall_calm_ms in a row
 * under half of that, it lowers a raised limit by a fifth, never below
 * the one given.  Set before reclaim_start().
 */
void reclaim_watch_stall(struct reclaim *r, const _Atomic uint64_t *ns);

/*
 * reclaim_on_room() : @fn(@arg) is called on the reclaimer's thread (so it
 * must not block) when usage has come under the limit while a fault was
 * held (reclaim_over_limit() said true).  Set before reclaim_start().
 */
void reclaim_on_room(struct reclaim *r, void (*fn)(void *), void *arg);

/* Called by the fault handler thread only. */

/*
 * reclaim_over_limit() : a fault is about to add a page: true when the
 * process is over its limit and the reclaimer is working on it (it has
 * been woken); the handler then holds the fault (back-pressure).
 */
bool reclaim_over_limit(struct reclaim *r);
/* reclaim_note_installed() : a fault brought @pages more in (readahead). */
void reclaim_note_installed(struct reclaim *r, unsigned int pages);

/*
 * reclaim_fault() : if @addr is a page of the batch in flight, still in
 * staging, copy it back to the program.  @return 1 resolved; 0 not a
 * staging page (look in the store); -EAGAIN the copy must be retried after
 * reading pending events (never answer such a fault with zeros).
 */
int reclaim_fault(struct reclaim *r, uintptr_t addr);
/*
 * reclaim_wp_fault() : (handler, under evlock) the program wrote to @addr
 * while it was write-protected.  A page of the batch in flight goes back
 * to the program (its staging copy is stale) and loses its protection,
 * which wakes the writer.  @return 0; -EAGAIN the page is being zapped
 * right now: answer again later (the writer then refaults on a missing
 * page, served from staging); other -errno: the ioctl failed.
 */
int reclaim_wp_fault(struct reclaim *r, uintptr_t addr);
/* reclaim_note_refault() : @addr was faulted back in: spare it next pass. */
void reclaim_note_refault(struct reclaim *r, uintptr_t addr);
/*
 * A range was removed (madvise; @unmap: munmap) or moved (mremap) by the
 * program.  REMOVE events also come from the reclaimer's own zaps in WP
 * mode: see the top of reclaim.c for how they are told apart.  @return
 * true when the event lies inside a zap in flight (most likely its own).
 */
bool reclaim_event_remove(struct reclaim *r, uintptr_t start, uintptr_t end, bool unmap);
/*
 * reclaim_events_lock() / reclaim_events_unlock() : the handler holds this
 * across each read of the uffd and the handling of the events it read.
 * The kernel acts on an event as soon as it is read (the zap after
 * MADV_DONTNEED, the program's return from MADV_FREE and its next writes,
 * the move of mremap), so no detach may be in flight then: a page moved
 * after the read could hold data written after the event, which handling
 * the event would then discard.  The reclaimer takes it around UFFDIO_MOVE
 * and, without waiting, around copying a page back.
 */
/*
 * reclaim_hold() / reclaim_unhold() : (handler, under evlock) keep the batch
 * in flight still: nothing committed, nothing copied back.  In between,
 * reclaim_copy_staged() copies the pages it has in staging to @to: a
 * forked child needs them, its parent still has them in the batch.
 */
void reclaim_hold(struct reclaim *r);
/*
 * reclaim_batch_clip() : (handler, under evlock) the first address of
 * [start, end) that a batch in flight covers, or @end: pages there may be
 * in staging, missing from the program yet not in the store.
 */
uintptr_t reclaim_batch_clip(struct reclaim *r, uintptr_t start, uintptr_t end);
void reclaim_unhold(struct reclaim *r);
void reclaim_copy_staged(struct reclaim *r, struct uffd *to);

void reclaim_events_lock(struct reclaim *r);
void reclaim_events_unlock(struct reclaim *r);
/*
 * reclaim_event_remap() : (handler, under evlock) pages of [@from, @from +
 * @len) now live at @to: those in staging and the store's entries follow.
 * @return store_move()'s: on -ENOMEM the caller puts in what stayed.
 */
int reclaim_event_remap(struct reclaim *r, uintptr_t from, uintptr_t to, size_t len);
/* reclaim_is_staging() : events for the staging area are the engine's own. */
bool reclaim_is_staging(struct reclaim *r, uintptr_t start, uintptr_t end);

void reclaim_get_counters(struct reclaim *r, struct reclaim_counters *c);
/* reclaim_counter_name() : field @i of struct reclaim_counters; NULL past the last. */
const char *reclaim_counter_name(unsigned int i);

/* reclaim_anon_rss() : resident anonymous bytes of this process (statm). */
size_t reclaim_anon_rss(void);

/*
 * reclaim_map_change_begin/end() : bracket an mremap(), or an mmap(MAP_FIXED)
 * and its registration, that may put present pages into a registered range.
 * In WP detach mode the zap (MADV_DONTNEED) of a batch cannot tell such
 * pages from the ones it copied and would discard them, so a detach and a
 * bracketed change exclude each other (a read-write lock: many changes, or
 * one detach).  In MOVE mode (atomic per page) both are no-ops.
 */
void reclaim_map_change_begin(struct reclaim *r);
void reclaim_map_change_end(struct reclaim *r);

#endif

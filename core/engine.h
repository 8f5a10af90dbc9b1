/*
 * engine — one managed address space: the userfaultfd, the store, the
 * regions, the reclaimer, and the fault handler thread that serves them.
 *
 * The handler thread is the only one that puts pages into the program
 * (UFFDIO_COPY/ZEROPAGE): faults, "bring back" requests (zswapu_hot,
 * unregister, shutdown, fork) and the fail-safe all go through it, so two
 * resolvers can never race on one address (a zero page installed over data
 * another thread is still decompressing).
 *
 * Fork: with UFFD_FEATURE_EVENT_FORK (the default where the kernel has
 * it) a forked child gets its own userfaultfd and is served from a
 * store_fork() view of the parent's entries (core/children.h): fork+exec
 * decompresses nothing.  Without it (old kernels, or no_fork_events), a
 * pthread_atfork() prepare handler pauses reclaim and brings every stored
 * page back before fork(), so the child (whose copies of the registered
 * ranges are unregistered by the kernel) sees all data; a raw
 * clone()/syscall(SYS_fork) bypasses atfork handlers and is not covered
 * then (docs/design.md).  vfork/posix_spawn share the address space and
 * need nothing.
 *
 * Fail-safe: on an unexpected kernel error the engine logs one line,
 * stops reclaiming, brings every stored page back, unregisters everything
 * and leaves the program to run unmanaged.
 */
#ifndef ZSWAPU_ENGINE_H
#define ZSWAPU_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/reclaim.h"
#include "core/stats.h"
#include "core/store.h"

struct engine_options {
	struct store_options store;
	struct reclaim_options reclaim;
	unsigned int spin_us; /* handler polls this long before sleeping */
	/* Fault threads, one per CPU (engine.c): 0 = up to 4, 1 = none (the
	 * handler alone reads the uffd). */
	unsigned int fault_threads;
	/* Do not ask for EVENT_FORK (as on kernels without it): fork()
	 * then brings every stored page back first (tests use this). */
	bool no_fork_events;
	/* Pages read ahead on a sequential fault at most; 0 turns it off. */
	unsigned int readahead_max;
};

void engine_options_default(struct engine_options *o);

/* Handler-side counters (faults by how they were served, events). */
#define ENGINE_COUNTERS(X)                                                    \
	X(faults, "missing faults served")                                    \
	X(faults_store, "faults served from the store (decompressed)")        \
	X(faults_staging, "faults served from pages still in staging")       \
	X(faults_zero, "faults on pages never stored (zero-filled)")          \
	X(faults_retried, "fault resolutions retried after EAGAIN")           \
	X(events_remove, "madvise/remove events")                             \
	X(events_unmap, "munmap events")                                      \
	X(events_remap, "mremap events")                                      \
	X(remap_placed, "stored pages put in at an mremap's destination (no index memory)") \
	X(pages_brought_back, "pages put back by hot/unregister/shutdown/fork")  \
	X(readahead_pages, "stored pages brought in ahead of a sequential scan") \
	X(zero_ahead_pages, "never-stored pages zero-filled ahead of a first fill") \
	X(forks, "forked children served their stored pages")                  \
	X(child_faults, "faults of forked children served")                   \
	X(child_faults_store, "... from the pages stored at the fork")        \
	X(children_exited, "forked children that exited or exec'd")           \
	X(forks_refused, "forked children given every page at once instead") \
	X(children_released, "forked children handed all their pages at once (parent ending, engine stopping)") \
	X(wp_faults, "writes to write-protected pages answered (WP detach)") \
	X(pages_lost, "stored pages unreadable when the engine stepped aside (poisoned)") \
	X(faults_held, "faults held while the process was over its limit")    \
	X(held_us, "time those faults were held, summed (us)")                \
	X(stall_ns, "time the program's threads waited on their faults: the handler's time on each, held time included, summed (ns)") \
	X(limit_stall_ns, "... of it on faults that brought back a page the reclaimer had taken, held time included: what the limit costs (ns)")

struct engine_counters {
#define ENGINE_FIELD(name, desc) uint64_t name;
	ENGINE_COUNTERS(ENGINE_FIELD)
#undef ENGINE_FIELD
};

struct engine_snapshot {
	struct stats_snapshot store;
	struct reclaim_counters reclaim;
	struct engine_counters handler;
	uint64_t features;
	size_t regions, region_bytes, pool_bytes, anon_rss;
	size_t limit;       /* now (engine_set_limit(), the stall control); 0: none */
	size_t limit_set;   /* as set (engine_create(), engine_set_limit()) */
	bool failed;        /* stepping aside: a failure, or released */
	bool released;      /* on request (engine_release()) */
	bool stepped_aside; /* done: every stored page back, nothing registered */
};

struct engine;

/*
 * engine_create() : open userfaultfd, build the store, start the handler
 * and (if a limit or cold_age is set) the reclaimer.  @return 0; -EINVAL
 * bad options; -ENOSYS/-EPERM/-EOPNOTSUPP userfaultfd unusable (also: no
 * way to detach pages, or not the one o->reclaim.detach asks for: one
 * line on stderr says which); -ENOMEM.
 */
int engine_create(const struct engine_options *o, struct engine **out);

/*
 * engine_detach_mode() : how this engine detaches pages (MOVE or WP, never
 * AUTO), resolved at creation from o->reclaim.detach and the kernel.
 */
enum reclaim_detach engine_detach_mode(const struct engine *e);

/*
 * engine_destroy() : stop reclaiming, bring every stored page back,
 * unregister every range, stop the handler, free everything.
 */
void engine_destroy(struct engine *e);

/* engine_register() : manage [start, start+len) (page-aligned). */
int engine_register(struct engine *e, uintptr_t start, size_t len);
/* engine_unregister() : bring the range's pages back and stop managing it. */
int engine_unregister(struct engine *e, uintptr_t start, size_t len);
/*
 * engine_fork_advice() : [start, start+len) (@start page-aligned, @len
 * rounded up as madvise does) is now marked
 * MADV_DONTFORK (@dontfork) or MADV_DOFORK.  A forked child has no
 * DONTFORK mapping, and its view must not hold the parent's pages there:
 * a mapping of its own that came there later (an mremap growing in place)
 * would read them instead of zeros.  Only the registered part is kept,
 * and kept current by unmap and remap events and engine_unregister().
 * @return 0; check_range()'s errors (as engine_register()); -ENOSPC the
 * table is full (the range is then not known as DONTFORK).
 */
int engine_fork_advice(struct engine *e, uintptr_t start, size_t len, bool dontfork);
/* engine_reclaim() : compress the range's present pages now; pages stored. */
long engine_reclaim(struct engine *e, uintptr_t start, size_t len);
/* engine_map_change_begin/end() : see reclaim_map_change_begin(). */
void engine_map_change_begin(struct engine *e);
void engine_map_change_end(struct engine *e);

/* engine_managed() : @addr lies in a registered range. */
bool engine_managed(struct engine *e, uintptr_t addr);
/* engine_hot() : bring the range's stored pages back now. */
int engine_hot(struct engine *e, uintptr_t start, size_t len);

/*
 * engine_sync() : wait until the handler has finished with every fault it
 * has read.  A fault's counters move just after the faulting thread has
 * been let go, so a snapshot right after a fault may not show it yet;
 * after engine_sync() it does.
 */
void engine_sync(struct engine *e);

/*
 * engine_end() : the process is about to end without its exit handlers
 * (_exit, exec, a fatal signal's default action).  Every live forked child
 * gets all the pages it still reads through this engine and is no longer
 * served (the kernel drops its registration when our descriptor goes);
 * with @core, every stored page of the process comes back too and the
 * engine steps aside (a core dump is written once the engine's threads
 * are gone, and leaves out a page that is not there).  Waits at most
 * @timeout_ms (0: as long as it takes).  Async-signal-safe: it takes no
 * lock; the handler does the work.
 * @return 0; -ETIMEDOUT; -ECHILD a forked child's copy.
 */
int engine_end(struct engine *e, bool core, unsigned int timeout_ms);

void engine_snapshot(struct engine *e, struct engine_snapshot *out);
bool engine_failed(struct engine *e);
/* engine_forked_child() : @e is the inert copy a fork left in a child. */
bool engine_forked_child(struct engine *e);

/*
 * engine_release() : step aside on request, as after a failure (`zswapu
 * release`: gdb and /proc/PID/mem cannot fault a stored page in).  The
 * handler puts every stored page back and unregisters every range; from
 * now on registration answers -ECANCELED.  Returns at once: the snapshot's
 * stepped_aside says when it is done.
 * @return 0; -EALREADY stepping aside already; -ECHILD a forked child's copy.
 */
int engine_release(struct engine *e);
/*
 * engine_set_limit() : hold the process under @limit bytes from now on,
 * with a pool cap of @max_pool (0: keep the cap as it is).  Pages over a
 * lower limit leave at the reclaimer's pace, as when a program grows past
 * one.  @return 0; -EINVAL @limit 0 or an engine created without a limit;
 * -ECHILD a forked child's copy; -ECANCELED stepping aside.
 */
int engine_set_limit(struct engine *e, size_t limit, size_t max_pool);
/* engine_limit() : the limit now; 0: none. */
size_t engine_limit(struct engine *e);
/* engine_zpool() : the store's pool, for its class and driver tables. */
struct zpool *engine_zpool(struct engine *e);

/*
 * engine_force_children_on_handler() : for tests, process-wide, read as
 * each forked child is taken on: 1 its faults go to the handler alone, 0
 * to the fault threads, -1 (the default) as this machine's page tables
 * say (watch_child() in engine.c).  Each path must stay tested anywhere.
 */
void engine_force_children_on_handler(int on);
const char *engine_counter_name(unsigned int i);

#endif

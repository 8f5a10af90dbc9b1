/*
 * zswapu — the public API over the process's one engine (core/engine.c).
 * `lock` serialises init and shutdown against each other; the other calls
 * read the engine pointer under it and then run without it (the engine is
 * thread-safe), so a long unregister does not block stats.
 */
#include "libzswapu/zswapu.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "core/engine.h"
#include "core/log.h"
#include "libzswapu/publish.h"
#include "pools/zpool.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct engine *engine;
/* Calls in flight on `engine`: shutdown waits for them to drain. */
static unsigned int users;
/* the engine for zswapu_before_end(), which takes no lock, and its callers */
static struct engine *_Atomic ending_engine;
static _Atomic unsigned int ending_users;
static pthread_cond_t drained = PTHREAD_COND_INITIALIZER;
/* the engine's pool cap as a share of its limit (0: none, or in bytes) */
static unsigned int cap_pct;

/*
 * A forked child has one thread: another that was in get() or put() at
 * the fork left `lock` held, and `users` counting a call that will never
 * end.  The child calls in here still: the shim asks the (inert) engine
 * for its limit, and starts an engine of its own (zswapu_init()).
 */
static void forked_child(void)
{
	pthread_mutex_init(&lock, NULL);
	pthread_cond_init(&drained, NULL);
	users = 0;
}

static void install_forked_child(void)
{
	pthread_atfork(NULL, NULL, forked_child);
}

ZSWAPU_API void zswapu_options_init(struct zswapu_options *o)
{
	memset(o, 0, sizeof(*o));
	o->size = sizeof(*o);
	o->limit_includes_pool = 1;
	o->spin_us = 50;
	o->log_level = LOG_ERROR;
}

/* The cap's share of the limit: 0 when none or given in bytes (zswap's
 * max_pool_percent when only a file is given). */
static unsigned int pool_cap_pct(const struct zswapu_options *in)
{
	if (in->max_pool_bytes)
		return 0;
	return !in->max_pool_percent && in->writeback_dir ? 20 : in->max_pool_percent;
}

/* The cap in bytes. */
static int pool_cap_options(const struct zswapu_options *in, struct engine_options *o)
{
	if (in->max_pool_percent > 100 || in->accept_percent > 100) {
		log_error("max_pool_percent %u / accept_percent %u: accepted are 0..100",
			  in->max_pool_percent, in->accept_percent);
		return -EINVAL;
	}
	o->store.max_pool = in->max_pool_bytes ? in->max_pool_bytes
					       : in->limit_bytes / 100 * pool_cap_pct(in);
	if (in->accept_percent)
		o->store.accept_pct = in->accept_percent;
	o->store.writeback_dir = in->writeback_dir && *in->writeback_dir ? in->writeback_dir
									 : NULL;
	return 0;
}

/* Translate the public options; -EINVAL with a message for bad ones. */
static int to_engine_options(const struct zswapu_options *in, struct engine_options *o)
{
	engine_options_default(o);
	if (in->size != sizeof(*in)) {
		log_error("struct zswapu_options of an unknown size (%zu): call zswapu_options_init()",
			  in->size);
		return -EINVAL;
	}
	if (in->compressor && compress_parse(in->compressor, &o->store.compressor))
		return -EINVAL;
	if (in->pool) {
		if (!zpool_has_pool(in->pool)) {
			log_error("unknown pool '%s': accepted are zsmalloc, z3fold, zbud", in->pool);
			return -EINVAL;
		}
		o->store.pool = in->pool;
	}
	if (in->max_compressed)
		o->store.max_compressed = in->max_compressed;
	o->store.store_incompressible = in->store_incompressible != 0;
	o->reclaim.limit_bytes = in->limit_bytes;
	o->reclaim.limit_pool = in->limit_includes_pool != 0;
	o->reclaim.cold_age_ms = in->cold_age_ms;
	if (in->stall_max_percent > RECLAIM_STALL_MAX_PCT) {
		log_error("stall_max_percent %u: accepted are 0..%u", in->stall_max_percent,
			  RECLAIM_STALL_MAX_PCT);
		return -EINVAL;
	}
	o->reclaim.stall_max_pct = in->stall_max_percent;
	o->spin_us = in->spin_us;
	o->fault_threads = in->fault_threads;
	if (in->detach < ZSWAPU_DETACH_AUTO || in->detach > ZSWAPU_DETACH_WP) {
		log_error("unknown detach mode %d: accepted are auto, move, wp", in->detach);
		return -EINVAL;
	}
	/* the public values are reclaim_detach's */
	_Static_assert(ZSWAPU_DETACH_WP == RECLAIM_DETACH_WP, "detach values out of step");
	o->reclaim.detach = (enum reclaim_detach)in->detach;
	return pool_cap_options(in, o);
}

ZSWAPU_API int zswapu_init(const struct zswapu_options *in)
{
	struct zswapu_options defaults;
	if (!in) {
		zswapu_options_init(&defaults);
		in = &defaults;
	}
	if (in->size == sizeof(*in))
		log_set_level(in->log_level);
	struct engine_options o;
	int err = to_engine_options(in, &o);
	if (err)
		return err;
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, install_forked_child);
	pthread_mutex_lock(&lock);
	/* a forked child may start its own: the parent's copy is inert (its
	 * memory is left as it is; ranges the parent still serves refuse
	 * registration with -EBUSY) */
	if (engine && !engine_forked_child(engine)) {
		pthread_mutex_unlock(&lock);
		return -EALREADY;
	}
	err = engine_create(&o, &engine);
	if (!err) {
		cap_pct = pool_cap_pct(in);
		atomic_store(&ending_engine, engine);
		publish_start(engine, in);
	}
	pthread_mutex_unlock(&lock);
	return err;
}

static struct engine *get(void)
{
	pthread_mutex_lock(&lock);
	struct engine *e = engine;
	if (e)
		users++;
	pthread_mutex_unlock(&lock);
	return e;
}

static void put(void)
{
	pthread_mutex_lock(&lock);
	if (--users == 0)
		pthread_cond_broadcast(&drained);
	pthread_mutex_unlock(&lock);
}

ZSWAPU_API void zswapu_shutdown(void)
{
	pthread_mutex_lock(&lock);
	struct engine *e = engine;
	engine = NULL; /* new calls see "not initialised" */
	atomic_store(&ending_engine, NULL);
	while (users)
		pthread_cond_wait(&drained, &lock);
	pthread_mutex_unlock(&lock);
	/* a fatal signal's handler in zswapu_before_end() (bounded wait) */
	while (atomic_load(&ending_users))
		nanosleep(&(struct timespec){ 0, 1000 * 1000 }, NULL);
	publish_stop();
	engine_destroy(e);
}

ZSWAPU_API int zswapu_register(void *addr, size_t len)
{
	struct engine *e = get();
	if (!e)
		return -ENODEV;
	int err = engine_register(e, (uintptr_t)addr, len);
	put();
	return err;
}

ZSWAPU_API int zswapu_unregister(void *addr, size_t len)
{
	struct engine *e = get();
	if (!e)
		return -ENODEV;
	int err = engine_unregister(e, (uintptr_t)addr, len);
	put();
	return err;
}

ZSWAPU_API long zswapu_reclaim(void *addr, size_t len)
{
	struct engine *e = get();
	if (!e)
		return -ENODEV;
	long n = engine_reclaim(e, (uintptr_t)addr, len);
	put();
	return n;
}

/* the engine a thread's open bracket holds (and its reference) */
static __thread struct engine *map_change_engine;

ZSWAPU_API int zswapu_managed(const void *addr)
{
	struct engine *e = get();
	if (!e)
		return 0;
	int in = engine_managed(e, (uintptr_t)addr);
	put();
	return in;
}

ZSWAPU_API void zswapu_map_change_begin(void)
{
	struct engine *e = get();
	if (!e)
		return;
	engine_map_change_begin(e);
	map_change_engine = e;
}

ZSWAPU_API void zswapu_map_change_end(void)
{
	struct engine *e = map_change_engine;
	if (!e)
		return;
	map_change_engine = NULL;
	engine_map_change_end(e);
	put();
}

ZSWAPU_API int zswapu_fork_advice(void *addr, size_t len, int advice)
{
	if (advice != MADV_DONTFORK && advice != MADV_DOFORK)
		return -EINVAL;
	struct engine *e = get();
	if (!e)
		return -ENODEV;
	int err = engine_fork_advice(e, (uintptr_t)addr, len, advice == MADV_DONTFORK);
	put();
	return err;
}

ZSWAPU_API int zswapu_detach_mode(void)
{
	struct engine *e = get();
	if (!e)
		return -ENODEV;
	int mode = (int)engine_detach_mode(e);
	put();
	return mode;
}

ZSWAPU_API int zswapu_before_end(unsigned int flags, unsigned int timeout_ms)
{
	if (flags & ~ZSWAPU_END_CORE)
		return -EINVAL;
	/* no lock (a signal handler may interrupt its holder): the engine
	 * stays while ending_users says someone is in here */
	atomic_fetch_add(&ending_users, 1);
	struct engine *e = atomic_load(&ending_engine);
	int err = e ? engine_end(e, flags & ZSWAPU_END_CORE, timeout_ms) : -ENODEV;
	atomic_fetch_sub(&ending_users, 1);
	return err == -ECHILD ? -ENODEV : err;
}

ZSWAPU_API int zswapu_set_limit(size_t bytes)
{
	struct engine *e = get();
	if (!e)
		return -ENODEV;
	/* a cap set in bytes stays; one set as a share follows the limit */
	pthread_mutex_lock(&lock);
	size_t cap = bytes / 100 * cap_pct;
	pthread_mutex_unlock(&lock);
	int err = engine_set_limit(e, bytes, cap);
	put();
	return err == -ECHILD ? -ENODEV : err; /* a forked child's copy */
}

ZSWAPU_API size_t zswapu_limit(void)
{
	struct engine *e = get();
	if (!e)
		return 0;
	size_t limit = engine_forked_child(e) ? 0 : engine_limit(e);
	put();
	return limit;
}

ZSWAPU_API int zswapu_hot(void *addr, size_t len)
{
	struct engine *e = get();
	if (!e)
		return -ENODEV;
	int err = engine_hot(e, (uintptr_t)addr, len);
	put();
	return err;
}

ZSWAPU_API int zswapu_stats(struct zswapu_stats *st)
{
	struct engine *e = get();
	if (!e)
		return -ENODEV;
	struct engine_snapshot s;
	engine_sync(e); /* the caller's own faults are counted */
	engine_snapshot(e, &s);
	put();
	memset(st, 0, sizeof(*st));
	const uint64_t *c = s.store.c;
	st->stored_pages = c[STAT_STORED_PAGES];
	st->pool_total_size = c[STAT_POOL_TOTAL_SIZE];
	st->stored_incompressible_pages = c[STAT_STORED_INCOMPRESSIBLE_PAGES];
	st->same_filled_pages = c[STAT_SAME_FILLED_PAGES];
	st->zero_filled_pages = c[STAT_ZERO_FILLED_PAGES];
	st->compressed_bytes = c[STAT_COMPRESSED_BYTES];
	st->reject_compress_poor = c[STAT_REJECT_COMPRESS_POOR];
	st->reject_compress_fail = c[STAT_REJECT_COMPRESS_FAIL];
	st->reject_alloc_fail = c[STAT_REJECT_ALLOC_FAIL];
	st->decompress_fail = c[STAT_DECOMPRESS_FAIL];
	st->stores = c[STAT_STORES];
	st->loads = c[STAT_LOADS];
	st->invalidates = c[STAT_INVALIDATES];
	st->faults = s.handler.faults;
	st->faults_from_store = s.handler.faults_store;
	st->faults_zero = s.handler.faults_zero;
	st->readahead_pages = s.handler.readahead_pages;
	st->reclaim_batches = s.reclaim.batches;
	st->reclaimed_pages = s.reclaim.moved;
	st->load_p50_ns = stats_lat_quantile_ns(&s.store, 0.50);
	st->load_p99_ns = stats_lat_quantile_ns(&s.store, 0.99);
	st->anon_rss_bytes = s.anon_rss;
	st->managed_bytes = s.region_bytes;
	st->failed = s.failed;
	st->forks = s.handler.forks;
	st->child_faults = s.handler.child_faults;
	st->children_exited = s.handler.children_exited;
	st->reject_pool_limit = c[STAT_REJECT_POOL_LIMIT];
	st->pool_limit_hit = c[STAT_POOL_LIMIT_HIT];
	st->written_back_pages = c[STAT_WRITTEN_BACK_PAGES];
	st->writeback_bytes = c[STAT_WRITEBACK_BYTES];
	st->wb_stored_pages = c[STAT_WB_STORED_PAGES];
	st->wb_reads = c[STAT_WB_READS];
	st->wb_read_p50_ns = stats_hist_quantile_ns(s.store.wb_read_ns, 0.50);
	st->wb_read_p99_ns = stats_hist_quantile_ns(s.store.wb_read_ns, 0.99);
	st->wb_errors = c[STAT_WB_ERRORS];
	st->wb_file_bytes = c[STAT_WB_FILE_BYTES];
	st->wb_live_bytes = c[STAT_WB_LIVE_BYTES];
	st->faults_held = s.handler.faults_held;
	st->held_us = s.handler.held_us;
	st->limit_unreachable = s.reclaim.limit_unreachable;
	st->stall_ns = s.handler.stall_ns;
	st->limit_stall_ns = s.handler.limit_stall_ns;
	st->limit_bytes = s.limit;
	st->limit_set_bytes = s.limit_set;
	st->limit_raised = s.reclaim.limit_raised;
	st->limit_lowered = s.reclaim.limit_lowered;
	return 0;
}

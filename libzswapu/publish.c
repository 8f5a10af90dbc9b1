/*
 * publish — see publish.h.
 */
#include "libzswapu/publish.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "core/engine.h"
#include "core/log.h"
#include "core/shmstat.h"
#include "libzswapu/zswapu.h"
#include "pools/pagesrc.h"
#include "pools/zpool.h"

#define PAGE 4096UL
#define RATE_SLOTS 11 /* rates over the last ~1 s of samples */

/* Where a published counter's value comes from. */
enum source { SRC_STATS, SRC_ENGINE, SRC_RECLAIM, SRC_GAUGE, SRC_ZERO };

enum gauge {
	G_ANON_RSS, G_MANAGED, G_REGIONS, G_POOL_BYTES, G_FAILED, G_RELEASED, G_STEPPED_ASIDE,
	G_FAULTS_PER_SEC, G_RECLAIMED_PER_SEC, G_LIMIT, G_STALL_PCT, G_LIMIT_SET, G_NR
};

static const char *const gauge_names[G_NR] = {
	[G_ANON_RSS] = "anon_rss_bytes",
	[G_MANAGED] = "managed_bytes",
	[G_REGIONS] = "regions",
	[G_POOL_BYTES] = "pool_pages_bytes",
	[G_FAILED] = "failed",
	[G_RELEASED] = "released",
	[G_STEPPED_ASIDE] = "stepped_aside",
	[G_FAULTS_PER_SEC] = "faults_per_sec",
	[G_RECLAIMED_PER_SEC] = "reclaimed_per_sec",
	[G_LIMIT] = "limit_bytes", /* now: zswapu_set_limit() changes it */
	/* stall_ns over the last second, in percent of it (top's CPU % alike:
	 * over 100 with several threads waiting at once) */
	[G_STALL_PCT] = "stall_pct",
	/* as set: the stall control may hold limit_bytes above it */
	[G_LIMIT_SET] = "limit_set_bytes",
};

/* Published even before anything counts them, so readers can rely on them. */
static const char *const writeback_names[] = { "written_back_pages", "writeback_bytes",
					       "wb_reads" };

struct publisher {
	struct engine *e;
	struct shmstat_writer w;
	struct shmstat_info info;
	struct { uint8_t src; uint8_t idx; } from[SHMSTAT_MAX_COUNTERS];
	struct shmstat_sample sample;
	struct zpool_class_stat rows[SHMSTAT_MAX_CLASSES];
	struct zpool_stat prow[SHMSTAT_MAX_POOL_ROWS];
	struct { uint64_t t, faults, moved, stall_ns; } ring[RATE_SLOTS];
	unsigned int nring;
	pthread_t thread;
	void *stack;
	bool stop;
	pthread_mutex_t mu;
	pthread_cond_t cv;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
/* _Atomic: publish_gone() reads it without the lock */
static struct publisher *_Atomic pub;

#define PUB_PAGES ((sizeof(struct publisher) + PAGE - 1) / PAGE)

static void add_name(struct publisher *p, const char *name, enum source src, unsigned idx)
{
	struct shmstat_info *in = &p->info;
	if (in->ncounters >= SHMSTAT_MAX_COUNTERS || shmstat_find(in, name) >= 0)
		return;
	snprintf(in->names[in->ncounters], SHMSTAT_NAME_LEN, "%s", name);
	p->from[in->ncounters].src = (uint8_t)src;
	p->from[in->ncounters].idx = (uint8_t)idx;
	in->ncounters++;
}

static void build_names(struct publisher *p)
{
	const char *n;
	for (unsigned i = 0; (n = stats_counter_name(i)); i++)
		add_name(p, n, SRC_STATS, i);
	for (unsigned i = 0; (n = engine_counter_name(i)); i++)
		add_name(p, n, SRC_ENGINE, i);
	for (unsigned i = 0; (n = reclaim_counter_name(i)); i++) {
		char full[SHMSTAT_NAME_LEN];
		snprintf(full, sizeof(full), "reclaim_%s", n);
		add_name(p, full, SRC_RECLAIM, i);
	}
	for (unsigned i = 0; i < G_NR; i++)
		add_name(p, gauge_names[i], SRC_GAUGE, i);
	for (unsigned i = 0; i < sizeof(writeback_names) / sizeof(writeback_names[0]); i++)
		add_name(p, writeback_names[i], SRC_ZERO, 0);
}

/* Events per second over the samples in the ring (the last second). */
static uint64_t rate(uint64_t now_v, uint64_t then_v, uint64_t dt_ns)
{
	return dt_ns ? (uint64_t)((now_v - then_v) * 1e9 / (double)dt_ns) : 0;
}

static void fill(struct publisher *p)
{
	struct engine_snapshot s;
	struct shmstat_sample *out = &p->sample;
	engine_snapshot(p->e, &s);
	uint64_t now = stats_now_ns();
	unsigned slot = p->nring % RATE_SLOTS;
	p->ring[slot].t = now;
	p->ring[slot].faults = s.handler.faults;
	p->ring[slot].moved = s.reclaim.moved;
	p->ring[slot].stall_ns = s.handler.stall_ns;
	unsigned oldest = p->nring >= RATE_SLOTS - 1 ? (p->nring + 1) % RATE_SLOTS : 0;
	p->nring++;
	uint64_t gauge[G_NR] = {
		[G_ANON_RSS] = s.anon_rss,
		[G_MANAGED] = s.region_bytes,
		[G_REGIONS] = s.regions,
		[G_POOL_BYTES] = s.pool_bytes,
		[G_FAILED] = s.failed,
		[G_RELEASED] = s.released,
		[G_STEPPED_ASIDE] = s.stepped_aside,
		[G_FAULTS_PER_SEC] = rate(s.handler.faults, p->ring[oldest].faults,
					  now - p->ring[oldest].t),
		[G_RECLAIMED_PER_SEC] = rate(s.reclaim.moved, p->ring[oldest].moved,
					     now - p->ring[oldest].t),
		[G_LIMIT] = s.limit,
		[G_LIMIT_SET] = s.limit_set,
		[G_STALL_PCT] = rate(s.handler.stall_ns, p->ring[oldest].stall_ns,
				     now - p->ring[oldest].t) / 10000000,
	};
	const uint64_t *handler = (const uint64_t *)&s.handler;
	const uint64_t *reclaim = (const uint64_t *)&s.reclaim;
	for (uint64_t i = 0; i < p->info.ncounters; i++) {
		unsigned k = p->from[i].idx;
		switch (p->from[i].src) {
		case SRC_STATS: out->values[i] = s.store.c[k]; break;
		case SRC_ENGINE: out->values[i] = handler[k]; break;
		case SRC_RECLAIM: out->values[i] = reclaim[k]; break;
		case SRC_GAUGE: out->values[i] = gauge[k]; break;
		default: out->values[i] = 0; break;
		}
	}
	memcpy(out->load_ns, s.store.load_ns, sizeof(out->load_ns));
	memcpy(out->fault_ns, s.store.fault_ns, sizeof(out->fault_ns));
	struct zpool *pool = engine_zpool(p->e);
	size_t nc = zpool_class_stats(pool, p->rows, SHMSTAT_MAX_CLASSES);
	out->nclasses = nc < SHMSTAT_MAX_CLASSES ? nc : SHMSTAT_MAX_CLASSES;
	for (size_t i = 0; i < out->nclasses; i++) {
		const struct zpool_class_stat *r = &p->rows[i];
		out->classes[i] = (struct shmstat_class){
			r->class_idx, r->size, r->almost_full, r->almost_empty,
			r->obj_allocated, r->obj_used, r->pages_used, r->pages_per_zspage,
		};
	}
	size_t np = zpool_driver_stats(pool, p->prow, SHMSTAT_MAX_POOL_ROWS);
	out->npool = np < SHMSTAT_MAX_POOL_ROWS ? np : SHMSTAT_MAX_POOL_ROWS;
	for (size_t i = 0; i < out->npool; i++) {
		snprintf(out->pool_names[i], SHMSTAT_NAME_LEN, "%s", p->prow[i].name);
		out->pool_values[i] = p->prow[i].value;
	}
}

static void *publisher_main(void *arg)
{
	struct publisher *p = arg;
	pthread_setname_np(pthread_self(), "zswapu-stats");
	pthread_mutex_lock(&p->mu);
	while (!p->stop) {
		pthread_mutex_unlock(&p->mu);
		fill(p);
		shmstat_publish(&p->w, &p->sample);
		/* the next sample shows it (released, then stepped aside) */
		uint64_t limit = 0, asked = shmstat_take_requests(&p->w, &limit);
		if (asked & SHMSTAT_REQ_RELEASE)
			engine_release(p->e);
		/* the next sample's limit_bytes says whether it took */
		if (asked & SHMSTAT_REQ_LIMIT) {
			int err = zswapu_set_limit(limit);
			if (err)
				log_warn("zswapu limit: a limit of %llu bytes refused: %s",
					 (unsigned long long)limit, strerrordesc_np(-err));
		}
		pthread_mutex_lock(&p->mu);
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += PUBLISH_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		if (!p->stop)
			pthread_cond_timedwait(&p->cv, &p->mu, &ts);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

/* A forked child has the parent's pointer but no thread: the file is the parent's. */
static void forked_child(void)
{
	pthread_mutex_init(&lock, NULL);
	pub = NULL;
}

static void install_atfork(void)
{
	pthread_atfork(NULL, NULL, forked_child);
}

/*
 * The program's name: the one it was invoked by, unless it has written over
 * its argv (a server's process titles: postgres's backends showed "res
 * postgres [lo" from the middle of theirs), then the kernel's 15 bytes.
 */
static void program_name(char *out, size_t n)
{
	char comm[16] = "";
	const char *name = program_invocation_short_name;
	if (prctl(PR_GET_NAME, comm) == 0 && comm[0] && strncmp(name, comm, strlen(comm)) != 0)
		name = comm;
	snprintf(out, n, "%s", name);
}

void publish_start(struct engine *e, const struct zswapu_options *o)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, install_atfork);
	pthread_mutex_lock(&lock);
	struct publisher *p = NULL;
	int err = pub ? -EALREADY : pagesrc_alloc(PUB_PAGES, (void **)&p);
	if (err) {
		pthread_mutex_unlock(&lock);
		return;
	}
	memset(p, 0, sizeof(*p));
	p->e = e;
	program_name(p->info.comm, sizeof(p->info.comm));
	snprintf(p->info.compressor, sizeof(p->info.compressor), "%s",
		 o->compressor ? o->compressor : "lz4");
	snprintf(p->info.pool, sizeof(p->info.pool), "%s", zpool_driver_name(engine_zpool(e)));
	p->info.limit_bytes = o->limit_bytes;
	p->info.limit_pool = o->limit_includes_pool != 0;
	p->info.cold_age_ms = o->cold_age_ms;
	build_names(p);
	pthread_mutex_init(&p->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cv, &ca);
	pthread_condattr_destroy(&ca);
	err = shmstat_create(NULL, &p->info, &p->w);
	if (!err) {
		/* readers find a first sample as soon as the file exists */
		fill(p);
		shmstat_publish(&p->w, &p->sample);
		err = pagesrc_thread_create(&p->thread, publisher_main, p, &p->stack);
		if (err)
			shmstat_destroy(&p->w);
	}
	if (err) {
		log_debug("no live stats in %s: %s", SHMSTAT_DIR,
			  strerrordesc_np(-err) ? strerrordesc_np(-err) : "unknown error");
		pagesrc_free(p, PUB_PAGES);
	} else {
		pub = p;
	}
	pthread_mutex_unlock(&lock);
}

void publish_stop(void)
{
	pthread_mutex_lock(&lock);
	struct publisher *p = pub;
	pub = NULL;
	pthread_mutex_unlock(&lock);
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	pagesrc_thread_join(p->thread, p->stack);
	shmstat_destroy(&p->w);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	pagesrc_free(p, PUB_PAGES);
}

void publish_gone(void)
{
	struct publisher *p = atomic_load(&pub);
	if (p && p->w.seg)
		unlink(p->w.path);
}

/* A program that exits without zswapu_shutdown() leaves no file behind. */
__attribute__((destructor)) static void publish_at_exit(void)
{
	publish_stop();
}

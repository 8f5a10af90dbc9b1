/*
 * pooltest — helpers the pool driver suites share: a seeded byte pattern
 * to fill objects with and verify them by, put/check of one object through
 * the zpool interface, and reading a row of a driver's stats.  Header only
 * (static inline): each suite is its own object file.
 */
#ifndef ZSWAPU_TESTS_POOLTEST_H
#define ZSWAPU_TESTS_POOLTEST_H

#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "pools/zpool.h"

static inline uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	return x ^ (x >> 33);
}

static inline uint8_t seed_byte(unsigned seed, size_t i)
{
	return (uint8_t)(seed * 131 + i * 7 + (i >> 8));
}

static inline void fill_seed(void *p, size_t n, unsigned seed)
{
	uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		b[i] = seed_byte(seed, i);
}

static inline int same_seed(const void *p, size_t n, unsigned seed)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		if (b[i] != seed_byte(seed, i))
			return 0;
	return 1;
}

/* Allocate @size bytes filled from @seed; fails the test if it can't. */
static inline unsigned long put_seed(struct zpool *zp, size_t size, unsigned seed)
{
	unsigned long h = 0;
	ck_assert_int_eq(zpool_malloc(zp, size, &h), 0);
	ck_assert_uint_ne(h, 0);
	fill_seed(zpool_map_handle(zp, h, ZPOOL_MM_WO), size, seed);
	zpool_unmap_handle(zp, h);
	return h;
}

static inline void check_seed(struct zpool *zp, unsigned long h, size_t size, unsigned seed)
{
	int ok = same_seed(zpool_map_handle(zp, h, ZPOOL_MM_RO), size, seed);
	zpool_unmap_handle(zp, h);
	ck_assert_msg(ok, "object %#lx (%zu bytes) corrupted", h, size);
}

static inline uint64_t stat_of(struct zpool *zp, const char *name)
{
	struct zpool_stat rows[64];
	size_t n = zpool_driver_stats(zp, rows, 64);
	for (size_t i = 0; i < n && i < 64; i++)
		if (!strcmp(rows[i].name, name))
			return rows[i].value;
	ck_abort_msg("no driver stat %s", name);
	return 0;
}

/*
 * An owner's record of its objects for shrink tests: the evict callback
 * checks and frees what the pool hands it, and can be made to fail.
 */
struct evict_log {
	struct zpool *zp;
	int fail_after;        /* evicts that succeed before failing; -1: never fail */
	int calls;
	unsigned long order[16]; /* order[k]: the handle of call k, if it succeeded */
	unsigned long handles[16];
	unsigned long free_too; /* an "owner" frees this one during the first evict */
	size_t size[16];
	unsigned seed[16];
	int tries[16];         /* evicts asked per object */
	int n;                 /* registered objects */
	int corrupt;
};

static inline int lookup(struct evict_log *log, unsigned long h)
{
	for (int i = 0; i < log->n; i++)
		if (log->handles[i] == h)
			return i;
	return -1;
}

static inline int evict_cb(struct zpool *pool, unsigned long handle, void *arg)
{
	struct evict_log *log = arg;
	ck_assert_ptr_eq(pool, log->zp);
	int i = lookup(log, handle);
	ck_assert_int_ge(i, 0);
	log->calls++;
	log->tries[i]++;
	if (log->fail_after >= 0 && log->calls > log->fail_after)
		return -EBUSY;
	log->order[log->calls - 1] = handle;
	/* "write back": the data must still be what the owner put there */
	if (!same_seed(zpool_map_handle(pool, handle, ZPOOL_MM_RO), log->size[i], log->seed[i]))
		log->corrupt++;
	zpool_unmap_handle(pool, handle);
	zpool_free(pool, handle);
	log->handles[i] = 0;
	if (log->free_too) {
		zpool_free(pool, log->free_too);
		log->handles[lookup(log, log->free_too)] = 0;
		log->free_too = 0;
	}
	return 0;
}

static inline unsigned long put_logged(struct evict_log *log, size_t size, unsigned seed)
{
	unsigned long h = put_seed(log->zp, size, seed);
	log->handles[log->n] = h;
	log->size[log->n] = size;
	log->seed[log->n++] = seed;
	return h;
}

static inline void check_logged(struct evict_log *log)
{
	for (int i = 0; i < log->n; i++)
		if (log->handles[i])
			check_seed(log->zp, log->handles[i], log->size[i], log->seed[i]);
}

/* A @driver pool whose evictions go to @log, failing after @fail_after (-1: never). */
static inline struct zpool *log_pool(struct evict_log *log, const char *driver, int fail_after)
{
	memset(log, 0, sizeof(*log));
	log->fail_after = fail_after;
	struct zpool_ops ops = { .evict = evict_cb, .arg = log };
	ck_assert_int_eq(zpool_create_pool(driver, &ops, &log->zp), 0);
	return log->zp;
}

#endif

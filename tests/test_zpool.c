/*
 * test_zpool — the contract every pool driver must keep, run against each
 * driver in turn (shrink only where the driver has an LRU): contents survive any malloc/free/map sequence (checked
 * against a pattern regenerated from the handle), boundary sizes, pages go
 * back to zero when everything is freed, -ENOMEM when the page source says
 * no, compaction keeps every object, and four threads at once.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pools/pagesrc.h"
#include "pools/zpool.h"
#include "tests/pooltest.h"

#define NDRIVERS 3

static const char *drv(int i)
{
	return zpool_driver_names()[i];
}

/* The bytes an object holds are a function of (handle, generation). */
static void fill(uint8_t *p, size_t n, unsigned long h, uint64_t gen)
{
	uint64_t s = mix64(h ^ (gen << 40));
	for (size_t i = 0; i < n; i++) {
		if ((i & 7) == 0)
			s = mix64(s + i);
		p[i] = (uint8_t)(s >> ((i & 7) * 8));
	}
}

static int same(const uint8_t *p, size_t n, unsigned long h, uint64_t gen)
{
	uint8_t ref[8192];
	fill(ref, n, h, gen);
	return memcmp(p, ref, n) == 0;
}

struct obj {
	unsigned long handle;
	size_t size;
	uint64_t gen;
};

static void put_obj(struct zpool *zp, struct obj *o, size_t size, uint64_t gen)
{
	int err = zpool_malloc(zp, size, &o->handle);
	ck_assert_int_eq(err, 0);
	ck_assert_uint_ne(o->handle, 0);
	uint8_t *p = zpool_map_handle(zp, o->handle, ZPOOL_MM_WO);
	ck_assert_ptr_nonnull(p);
	fill(p, size, o->handle, gen);
	zpool_unmap_handle(zp, o->handle);
	o->size = size;
	o->gen = gen;
}

static void check_obj(struct zpool *zp, const struct obj *o)
{
	uint8_t *p = zpool_map_handle(zp, o->handle, ZPOOL_MM_RO);
	int ok = same(p, o->size, o->handle, o->gen);
	zpool_unmap_handle(zp, o->handle);
	ck_assert_msg(ok, "object %#lx (%zu bytes) corrupted", o->handle, o->size);
}

/* Random sizes in 1..max, biased towards real compressed-page sizes. */
static size_t rand_size(uint64_t *s, size_t max)
{
	uint64_t r = mix64((*s)++);
	if (r % 8 == 0)
		return 1 + (r >> 8) % max;
	size_t sz = 200 + (r >> 8) % 2600;
	return sz > max ? max : sz;
}

/* Check and free every live object; the pool must then hold no page. */
static void free_all_checked(struct zpool *zp, struct obj *objs, int n)
{
	for (int i = 0; i < n; i++)
		if (objs[i].handle) {
			check_obj(zp, &objs[i]);
			zpool_free(zp, objs[i].handle);
		}
	ck_assert_uint_eq(zpool_get_total_pages(zp), 0);
}

START_TEST(random_sequence)
{
	struct zpool *zp;
	ck_assert_int_eq(zpool_create_pool(drv(_i), NULL, &zp), 0);
	size_t max = zpool_max_size(zp);
	enum { N = 3000, OPS = 60000 };
	static struct obj objs[N];
	memset(objs, 0, sizeof(objs));
	uint64_t seed = 42, gen = 1;
	for (int op = 0; op < OPS; op++) {
		uint64_t r = mix64(seed++);
		struct obj *o = &objs[r % N];
		if (o->handle) {
			check_obj(zp, o);
			if ((r >> 32) % 3 == 0) { /* rewrite in place via RW */
				uint8_t *p = zpool_map_handle(zp, o->handle, ZPOOL_MM_RW);
				ck_assert(same(p, o->size, o->handle, o->gen));
				fill(p, o->size, o->handle, ++gen);
				zpool_unmap_handle(zp, o->handle);
				o->gen = gen;
			} else {
				zpool_free(zp, o->handle);
				o->handle = 0;
			}
		} else {
			put_obj(zp, o, rand_size(&seed, max), ++gen);
		}
	}
	free_all_checked(zp, objs, N);
	zpool_destroy_pool(zp);
}
END_TEST

START_TEST(boundary_sizes)
{
	struct zpool *zp;
	ck_assert_int_eq(zpool_create_pool(drv(_i), NULL, &zp), 0);
	size_t max = zpool_max_size(zp);
	ck_assert_uint_ge(max, 3968); /* every driver must hold a poorly compressed page */
	size_t sizes[] = { 1, 63, 64, 65, 127, 128, 129, max - 1, max };
	struct obj objs[sizeof(sizes) / sizeof(sizes[0])];
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		put_obj(zp, &objs[i], sizes[i], i + 1);
	unsigned long h = 0;
	ck_assert_int_eq(zpool_malloc(zp, max + 1, &h), -ENOSPC);
	ck_assert_int_eq(zpool_malloc(zp, 0, &h), -EINVAL);
	ck_assert_uint_eq(h, 0);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		check_obj(zp, &objs[i]);
		zpool_free(zp, objs[i].handle);
	}
	ck_assert_uint_eq(zpool_get_total_pages(zp), 0);
	zpool_destroy_pool(zp);
}
END_TEST

START_TEST(unknown_driver)
{
	struct zpool *zp = NULL;
	ck_assert_int_eq(zpool_create_pool("buddy", NULL, &zp), -EINVAL);
	ck_assert(!zpool_has_pool("buddy"));
	ck_assert(zpool_has_pool(drv(_i)));
	ck_assert_ptr_null(zp);
}
END_TEST

START_TEST(pages_follow_objects)
{
	struct zpool *zp;
	ck_assert_int_eq(zpool_create_pool(drv(_i), NULL, &zp), 0);
	ck_assert_str_eq(zpool_driver_name(zp), drv(_i));
	ck_assert_uint_eq(zpool_get_total_pages(zp), 0);
	enum { N = 2000 };
	static struct obj objs[N];
	size_t bytes = 0;
	for (int i = 0; i < N; i++) {
		put_obj(zp, &objs[i], 1000, i);
		bytes += 1000;
	}
	uint64_t pages = zpool_get_total_pages(zp);
	/* 1000-byte objects: at least 2 per page in every driver, at most 4. */
	ck_assert_uint_ge(pages, bytes / 4096);
	ck_assert_uint_le(pages, N / 2 + 16);
	struct pagesrc_stats st;
	pagesrc_get_stats(&st);
	ck_assert_uint_ge(st.used_pages, pages);
	for (int i = 0; i < N; i++) {
		check_obj(zp, &objs[i]);
		zpool_free(zp, objs[i].handle);
	}
	ck_assert_uint_eq(zpool_get_total_pages(zp), 0);
	zpool_destroy_pool(zp);
	/* Everything went back to the page source: nothing but cache left. */
	pagesrc_get_stats(&st);
	ck_assert_uint_eq(st.used_pages, 0);
	pagesrc_trim();
	pagesrc_get_stats(&st);
	ck_assert_uint_eq(st.cached_pages, 0);
}
END_TEST

START_TEST(out_of_pages)
{
	struct zpool *zp;
	ck_assert_int_eq(zpool_create_pool(drv(_i), NULL, &zp), 0);
	struct pagesrc_stats st;
	pagesrc_get_stats(&st);
	pagesrc_set_limit(st.used_pages + 64);
	enum { N = 4096 };
	static struct obj objs[N];
	int n = 0, err = 0;
	for (; n < N; n++) {
		err = zpool_malloc(zp, 3000, &objs[n].handle);
		if (err)
			break;
		uint8_t *p = zpool_map_handle(zp, objs[n].handle, ZPOOL_MM_WO);
		fill(p, 3000, objs[n].handle, 7);
		zpool_unmap_handle(zp, objs[n].handle);
		objs[n].size = 3000;
		objs[n].gen = 7;
	}
	ck_assert_int_eq(err, -ENOMEM);
	ck_assert_int_gt(n, 16);
	for (int i = 0; i < n; i++) {
		check_obj(zp, &objs[i]);
		zpool_free(zp, objs[i].handle);
	}
	pagesrc_set_limit(0);
	ck_assert_uint_eq(zpool_get_total_pages(zp), 0);
	zpool_destroy_pool(zp);
}
END_TEST

START_TEST(compaction_keeps_objects)
{
	struct zpool *zp;
	ck_assert_int_eq(zpool_create_pool(drv(_i), NULL, &zp), 0);
	enum { N = 6000 };
	static struct obj objs[N];
	uint64_t seed = 7;
	for (int i = 0; i < N; i++)
		put_obj(zp, &objs[i], 16 + mix64(seed++) % 1200, i + 1);
	/* free three of four, scattered, to leave sparse pages */
	for (int i = 0; i < N; i++)
		if (mix64(seed++) % 4) {
			zpool_free(zp, objs[i].handle);
			objs[i].handle = 0;
		}
	uint64_t before = zpool_get_total_pages(zp);
	unsigned long freed = 0;
	int err = zpool_compact(zp, &freed);
	if (err == -EOPNOTSUPP) { /* zbud: nothing to move, by design */
		ck_assert_str_eq(drv(_i), "zbud");
	} else {
		ck_assert_int_eq(err, 0);
		/* z3fold compacts inside a page (room, not pages); zsmalloc
		 * moves objects between zspages and must free some here. */
		if (!strcmp(drv(_i), "zsmalloc"))
			ck_assert_uint_gt(freed, 0);
		ck_assert_uint_eq(zpool_get_total_pages(zp), before - freed);
	}
	free_all_checked(zp, objs, N);
	zpool_destroy_pool(zp);
}
END_TEST

struct hammer_arg {
	struct zpool *zp;
	int id;
	long errors;
	long ops;
	int compactor;
	_Atomic int *stop;
};

static void *hammer(void *p)
{
	struct hammer_arg *a = p;
	if (a->compactor) { /* a fifth thread compacts while four mutate */
		while (!*a->stop) {
			unsigned long freed;
			zpool_compact(a->zp, &freed);
			a->ops++;
		}
		return NULL;
	}
	enum { N = 800 };
	struct obj *objs = calloc(N, sizeof(*objs));
	size_t max = zpool_max_size(a->zp);
	uint64_t seed = 1000 * a->id + 1, gen = (uint64_t)a->id << 32;
	for (int op = 0; op < 80000; op++) {
		struct obj *o = &objs[mix64(seed++) % N];
		if (o->handle) {
			uint8_t *q = zpool_map_handle(a->zp, o->handle, ZPOOL_MM_RO);
			if (!same(q, o->size, o->handle, o->gen))
				a->errors++;
			zpool_unmap_handle(a->zp, o->handle);
			zpool_free(a->zp, o->handle);
			o->handle = 0;
		} else {
			size_t sz = rand_size(&seed, max);
			if (zpool_malloc(a->zp, sz, &o->handle)) {
				a->errors++;
				continue;
			}
			uint8_t *q = zpool_map_handle(a->zp, o->handle, ZPOOL_MM_WO);
			fill(q, sz, o->handle, ++gen);
			zpool_unmap_handle(a->zp, o->handle);
			o->size = sz;
			o->gen = gen;
		}
		a->ops++;
	}
	for (int i = 0; i < N; i++)
		if (objs[i].handle) {
			uint8_t *q = zpool_map_handle(a->zp, objs[i].handle, ZPOOL_MM_RO);
			if (!same(q, objs[i].size, objs[i].handle, objs[i].gen))
				a->errors++;
			zpool_unmap_handle(a->zp, objs[i].handle);
			zpool_free(a->zp, objs[i].handle);
		}
	free(objs);
	return NULL;
}

START_TEST(four_threads)
{
	struct zpool *zp;
	ck_assert_int_eq(zpool_create_pool(drv(_i), NULL, &zp), 0);
	_Atomic int stop = 0;
	pthread_t t[5];
	struct hammer_arg a[5];
	for (int i = 0; i < 5; i++) {
		a[i] = (struct hammer_arg){ .zp = zp, .id = i, .compactor = i == 4, .stop = &stop };
		pthread_create(&t[i], NULL, hammer, &a[i]);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	stop = 1;
	pthread_join(t[4], NULL);
	for (int i = 0; i < 4; i++) {
		ck_assert_int_eq(a[i].errors, 0);
		ck_assert_int_eq(a[i].ops, 80000);
	}
	ck_assert_uint_eq(zpool_get_total_pages(zp), 0);
	zpool_destroy_pool(zp);
}
END_TEST

/* ---- shrink racing with the objects' owners ---- */

/*
 * Owners keep objects in slots, each slot under its own lock; the evict
 * callback finds a handle's slot by scanning, "writes it back" (checks its
 * bytes) and frees it.  An owner may free a handle the reclaimer already
 * picked: evict then finds no slot, which must mean the object is gone and
 * its slot in the page was not handed to someone else meanwhile.  Owners
 * go on until the shrinker has freed some pages, so the two overlap.
 */
enum { RACE_OWNERS = 3, RACE_SLOTS = 200, RACE_OPS = 30000, RACE_MIN_RECLAIMED = 50 };

struct race {
	struct zpool *zp;
	pthread_mutex_t lock[RACE_OWNERS * RACE_SLOTS];
	_Atomic unsigned long h[RACE_OWNERS * RACE_SLOTS]; /* written under lock[i] */
	size_t size[RACE_OWNERS * RACE_SLOTS];
	_Atomic int errors, evicted, owners_left, reclaimed;
};

static int race_evict(struct zpool *zp, unsigned long handle, void *arg)
{
	struct race *r = arg;
	for (int i = 0; i < RACE_OWNERS * RACE_SLOTS; i++) {
		if (r->h[i] != handle) /* unlocked peek, checked again below */
			continue;
		pthread_mutex_lock(&r->lock[i]);
		if (r->h[i] == handle) {
			if (!same(zpool_map_handle(zp, handle, ZPOOL_MM_RO), r->size[i], handle, 0))
				r->errors++;
			zpool_unmap_handle(zp, handle);
			zpool_free(zp, handle);
			r->h[i] = 0;
			r->evicted++;
			pthread_mutex_unlock(&r->lock[i]);
			return 0;
		}
		pthread_mutex_unlock(&r->lock[i]);
	}
	return 0; /* its owner freed it first */
}

struct race_owner {
	struct race *r;
	int id;
};

static void race_step(struct race *r, int i, uint64_t s)
{
	pthread_mutex_lock(&r->lock[i]);
	if (r->h[i]) {
		if (!same(zpool_map_handle(r->zp, r->h[i], ZPOOL_MM_RO), r->size[i], r->h[i], 0))
			r->errors++;
		zpool_unmap_handle(r->zp, r->h[i]);
		zpool_free(r->zp, r->h[i]);
		r->h[i] = 0;
	} else {
		size_t sz = 100 + (s >> 40) % (zpool_max_size(r->zp) - 99);
		unsigned long h;
		if (zpool_malloc(r->zp, sz, &h) == 0) {
			fill(zpool_map_handle(r->zp, h, ZPOOL_MM_WO), sz, h, 0);
			zpool_unmap_handle(r->zp, h);
			r->h[i] = h;
			r->size[i] = sz;
		} else {
			r->errors++;
		}
	}
	pthread_mutex_unlock(&r->lock[i]);
}

static void *race_owner_fn(void *p)
{
	struct race_owner *o = p;
	uint64_t s = (uint64_t)o->id * 104729 + 17;
	for (int op = 0; op < RACE_OPS || o->r->reclaimed < RACE_MIN_RECLAIMED; op++) {
		s = s * 6364136223846793005ULL + 1442695040888963407ULL;
		race_step(o->r, o->id * RACE_SLOTS + (int)((s >> 33) % RACE_SLOTS), s);
	}
	o->r->owners_left--;
	return NULL;
}

START_TEST(shrink_races_owners)
{
	static struct race r;
	memset(&r, 0, sizeof(r));
	for (int i = 0; i < RACE_OWNERS * RACE_SLOTS; i++)
		pthread_mutex_init(&r.lock[i], NULL);
	struct zpool_ops ops = { .evict = race_evict, .arg = &r };
	ck_assert_int_eq(zpool_create_pool(drv(_i), &ops, &r.zp), 0);
	unsigned int none;
	if (zpool_shrink(r.zp, 0, &none) == -EOPNOTSUPP) { /* zsmalloc: no LRU of its own */
		zpool_destroy_pool(r.zp);
		return;
	}
	r.owners_left = RACE_OWNERS;
	pthread_t t[RACE_OWNERS];
	struct race_owner o[RACE_OWNERS];
	for (int i = 0; i < RACE_OWNERS; i++) {
		o[i] = (struct race_owner){ &r, i };
		pthread_create(&t[i], NULL, race_owner_fn, &o[i]);
	}
	while (r.owners_left) {
		unsigned int n = 0;
		zpool_shrink(r.zp, 2, &n);
		r.reclaimed += (int)n;
	}
	for (int i = 0; i < RACE_OWNERS; i++)
		pthread_join(t[i], NULL);
	ck_assert_int_eq(r.errors, 0);
	ck_assert_int_gt(r.evicted, 0);
	ck_assert_int_ge(r.reclaimed, RACE_MIN_RECLAIMED);
	for (int i = 0; i < RACE_OWNERS * RACE_SLOTS; i++)
		if (r.h[i])
			zpool_free(r.zp, r.h[i]);
	ck_assert_uint_eq(zpool_get_total_pages(r.zp), 0);
	zpool_destroy_pool(r.zp);
	for (int i = 0; i < RACE_OWNERS * RACE_SLOTS; i++)
		pthread_mutex_destroy(&r.lock[i]);
}
END_TEST

/*
 * The page source under a budget (the engine sets the process's limit):
 * free pages kept resident for reuse stay within 1/64 of it, where 8 MiB
 * of them was most of a 10 MiB limit; without one, up to 8 MiB are kept.
 * pagesrc_resident_bytes() sees pages come and go.
 */
START_TEST(budget_bounds_the_cache)
{
	enum { N = 512 };
	static void *p[N];
	struct pagesrc_stats st;
	pagesrc_trim();
	size_t before = pagesrc_resident_bytes();
	for (int round = 0; round < 2; round++) {
		pagesrc_set_budget(round == 0 ? 16 << 20 : 0); /* 16 MiB: 64 pages kept */
		for (int i = 0; i < N; i++) {
			ck_assert_int_eq(pagesrc_alloc(1, &p[i]), 0);
			memset(p[i], i, 4096);
		}
		ck_assert_uint_ge(pagesrc_resident_bytes(), before + N * 4096);
		for (int i = 0; i < N; i++)
			pagesrc_free(p[i], 1);
		pagesrc_get_stats(&st);
		if (round == 0) {
			ck_assert_uint_le(st.cached_pages, 64);
			/* the cache, and pages populated ahead (64 too) */
			ck_assert_uint_le(pagesrc_resident_bytes(), before + (64 + 64) * 4096);
		} else {
			ck_assert_uint_ge(st.cached_pages, N);
		}
		pagesrc_trim();
	}
}
END_TEST

/*
 * A thread that defers releases (the fault threads) keeps freed pages up
 * to the hard cap, then gives back a step (1/32 of the cap), not all the
 * way to the low mark: that took 14 ms inside one fault.  The rest goes
 * when it calls pagesrc_release_excess() (idle).
 */
START_TEST(deferring_thread_gives_back_a_step)
{
	enum { N = 512 };
	static void *p[N];
	struct pagesrc_stats st;
	pagesrc_trim();
	pagesrc_set_budget(16 << 20); /* high 64, low 16, hard cap 256 pages */
	pagesrc_defer_release(true);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(pagesrc_alloc(1, &p[i]), 0);
	for (int i = 0; i < N; i++)
		pagesrc_free(p[i], 1);
	pagesrc_get_stats(&st);
	ck_assert_uint_ge(st.cached_pages, 256 - 256 / 32);
	ck_assert_uint_le(st.cached_pages, 256);
	pagesrc_release_excess();
	pagesrc_get_stats(&st);
	ck_assert_uint_le(st.cached_pages, 16);
	pagesrc_defer_release(false);
	pagesrc_set_budget(0);
	pagesrc_trim();
}
END_TEST

/*
 * The data zone (pool objects) is wiped in a forked child, its free-run
 * bookkeeping with it: the stacks of released runs read as page 0 there,
 * the cached runs' links as the end.  A child that starts an engine of
 * its own (a daemon, a prefork worker) allocates from it: every page it
 * gets must be its own.  Before the child reset the zone, each of them
 * was the zone's first page, and its pool's objects overwrote each other.
 * The main zone is inherited as it was.
 */
START_TEST(data_zone_fresh_in_a_forked_child)
{
	enum { N = 300 };
	static void *p[N];
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(pagesrc_alloc_data(1, &p[i]), 0);
	for (int i = 0; i < N; i++)
		pagesrc_free(p[i], 1);
	pagesrc_trim(); /* all released: on the stacks */
	for (int i = 0; i < N / 2; i++)
		ck_assert_int_eq(pagesrc_alloc_data(1, &p[i]), 0);
	for (int i = 0; i < N / 4; i++)
		pagesrc_free(p[i], 1); /* and some cached */
	void *keep;
	ck_assert_int_eq(pagesrc_alloc(1, &keep), 0);
	memset(keep, 0x5a, PAGESRC_PAGE_SIZE);
	struct pagesrc_stats before;
	pagesrc_get_stats(&before);
	pid_t pid = fork();
	if (pid == 0) {
		static void *q[N];
		static unsigned char page[PAGESRC_PAGE_SIZE];
		struct pagesrc_stats st;
		pagesrc_get_stats(&st);
		/* the parent's data pages are not this process's to count */
		if (st.used_pages >= before.used_pages)
			_exit(1);
		for (int i = 0; i < N; i++) {
			if (pagesrc_alloc_data(1, &q[i]))
				_exit(2);
			memset(q[i], i % 251 + 1, PAGESRC_PAGE_SIZE);
		}
		for (int i = 0; i < N; i++) {
			memset(page, i % 251 + 1, PAGESRC_PAGE_SIZE);
			if (memcmp(q[i], page, PAGESRC_PAGE_SIZE))
				_exit(3);
		}
		_exit(((unsigned char *)keep)[PAGESRC_PAGE_SIZE - 1] != 0x5a ? 4 : 0);
	}
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
	for (int i = N / 4; i < N / 2; i++)
		pagesrc_free(p[i], 1);
	pagesrc_free(keep, 1);
}
END_TEST

Suite *zpool_suite(void)
{
	Suite *s = suite_create("zpool");
	TCase *tc = tcase_create("contract");
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, random_sequence, 0, NDRIVERS);
	tcase_add_loop_test(tc, boundary_sizes, 0, NDRIVERS);
	tcase_add_loop_test(tc, unknown_driver, 0, NDRIVERS);
	tcase_add_loop_test(tc, pages_follow_objects, 0, NDRIVERS);
	tcase_add_loop_test(tc, out_of_pages, 0, NDRIVERS);
	tcase_add_loop_test(tc, compaction_keeps_objects, 0, NDRIVERS);
	tcase_add_loop_test(tc, four_threads, 0, NDRIVERS);
	tcase_add_loop_test(tc, shrink_races_owners, 0, NDRIVERS);
	tcase_add_test(tc, budget_bounds_the_cache);
	tcase_add_test(tc, deferring_thread_gives_back_a_step);
	tcase_add_test(tc, data_zone_fresh_in_a_forked_child);
	suite_add_tcase(s, tc);
	return s;
}

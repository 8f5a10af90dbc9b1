/*
 * test_z3fold — what the generic zpool contract cannot see: three buddies
 * per page at their places, headless pages, middle-buddy compaction (moved
 * data intact, a hole that now takes an object it could not before, a lone
 * middle turned first, a mapped middle left alone), per-CPU shards used
 * from threads on different CPUs, LRU-ordered shrink with evict callbacks
 * (also racing with owner threads), and driver_stats.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pools/pagesrc.h"
#include "pools/z3fold.h"
#include "pools/zpool.h"
#include "tests/pooltest.h"

static uint8_t *where(struct zpool *zp, unsigned long h)
{
	uint8_t *p = zpool_map_handle(zp, h, ZPOOL_MM_RO);
	zpool_unmap_handle(zp, h);
	return p;
}

static uintptr_t page_of(unsigned long h)
{
	ck_assert(!z3fold_handle_is_headless(h));
	return h & ~(PAGESRC_PAGE_SIZE - 1);
}

static struct zpool *new_pool(void)
{
	struct zpool *zp;
	ck_assert_int_eq(zpool_create_pool("z3fold", NULL, &zp), 0);
	return zp;
}

START_TEST(three_per_page)
{
	struct zpool *zp = new_pool();
	ck_assert_uint_eq(zpool_max_size(zp), 4096);
	enum { N = 60 };
	unsigned long h[N];
	for (int i = 0; i < N; i++)
		h[i] = put_seed(zp, 1300, i); /* 21 chunks: three fill 63 */
	ck_assert_uint_eq(zpool_get_total_pages(zp), N / 3);
	for (int i = 0; i < N; i += 3) {
		/* per page: first, then last, then the middle between them */
		uintptr_t page = page_of(h[i]);
		ck_assert_uint_eq(page_of(h[i + 1]), page);
		ck_assert_uint_eq(page_of(h[i + 2]), page);
		ck_assert_ptr_eq(where(zp, h[i]), (void *)(page + 64));
		ck_assert_ptr_eq(where(zp, h[i + 1]) + 21 * 64, (void *)(page + 4096));
		ck_assert_ptr_eq(where(zp, h[i + 2]), (void *)(page + 64 + 21 * 64));
	}
	ck_assert_uint_eq(stat_of(zp, "unbuddied_pages"), 0);
	for (int i = 0; i < N; i++) {
		check_seed(zp, h[i], 1300, i);
		zpool_free(zp, h[i]);
	}
	ck_assert_uint_eq(zpool_get_total_pages(zp), 0);
	zpool_destroy_pool(zp);
}
END_TEST

START_TEST(headless_pages)
{
	struct zpool *zp = new_pool();
	unsigned long shared = put_seed(zp, Z3FOLD_MAX_BUDDY_SIZE, 1); /* 62 chunks */
	ck_assert(!z3fold_handle_is_headless(shared));
	ck_assert_ptr_eq(where(zp, shared), (void *)(page_of(shared) + 64));
	unsigned long a = put_seed(zp, 4000, 2), b = put_seed(zp, 4096, 3);
	ck_assert(z3fold_handle_is_headless(a));
	ck_assert(z3fold_handle_is_headless(b));
	/* the object fills its page from offset 0 */
	uint8_t *pa = where(zp, a), *pb = where(zp, b);
	ck_assert_uint_eq((uintptr_t)pa % 4096, 0);
	ck_assert_uint_eq((uintptr_t)pb % 4096, 0);
	ck_assert_ptr_ne(pa, pb);
	ck_assert_uint_eq(stat_of(zp, "pages"), 3);
	ck_assert_uint_eq(stat_of(zp, "headless_pages"), 2);
	ck_assert_uint_eq(stat_of(zp, "desc_pages"), 1);
	ck_assert_uint_eq(zpool_get_total_pages(zp), 4);
	ck_assert_uint_eq(stat_of(zp, "object_bytes"), Z3FOLD_MAX_BUDDY_SIZE + 4000 + 4096);
	check_seed(zp, a, 4000, 2);
	check_seed(zp, b, 4096, 3);
	check_seed(zp, shared, Z3FOLD_MAX_BUDDY_SIZE, 1);
	unsigned long h;
	ck_assert_int_eq(zpool_malloc(zp, 4097, &h), -ENOSPC);
	zpool_free(zp, a);
	ck_assert_uint_eq(stat_of(zp, "headless_pages"), 1);
	check_seed(zp, b, 4096, 3);
	zpool_free(zp, b);
	/* the descriptor slab went back with the last headless page */
	ck_assert_uint_eq(stat_of(zp, "desc_pages"), 0);
	zpool_free(zp, shared);
	ck_assert_uint_eq(zpool_get_total_pages(zp), 0);
	zpool_destroy_pool(zp);
}
END_TEST

/* first (21 chunks) + last (21) + middle (10 at chunk 22): an 11-chunk gap */
static void three_buddies(struct zpool *zp, unsigned long h[3])
{
	h[0] = put_seed(zp, 1300, 10);
	h[1] = put_seed(zp, 1300, 11);
	h[2] = put_seed(zp, 600, 12);
	ck_assert_ptr_eq(where(zp, h[2]), (void *)(page_of(h[0]) + 22 * 64));
	ck_assert_uint_eq(zpool_get_total_pages(zp), 1);
}

START_TEST(middle_moves_to_last)
{
	struct zpool *zp = new_pool(), *control = new_pool();
	unsigned long h[3], c[3];
	three_buddies(zp, h);
	three_buddies(control, c);
	uintptr_t page = page_of(h[0]);
	zpool_free(zp, h[0]);
	zpool_free(control, c[0]);

	unsigned long freed = 99;
	ck_assert_int_eq(zpool_compact(zp, &freed), 0);
	ck_assert_uint_eq(freed, 0);
	ck_assert_uint_eq(stat_of(zp, "compactions"), 1);
	/* slid against the last buddy: 64 - 21 - 10 = chunk 33 */
	ck_assert_ptr_eq(where(zp, h[2]), (void *)(page + 33 * 64));
	check_seed(zp, h[2], 600, 12);
	check_seed(zp, h[1], 1300, 11);

	/* 1800 bytes (29 chunks) now fit before the middle (32 chunks free) */
	unsigned long n = put_seed(zp, 1800, 13);
	ck_assert_uint_eq(page_of(n), page);
	ck_assert_ptr_eq(where(zp, n), (void *)(page + 64));
	ck_assert_uint_eq(zpool_get_total_pages(zp), 1);
	check_seed(zp, h[2], 600, 12);
	check_seed(zp, h[1], 1300, 11);
	check_seed(zp, n, 1800, 13);
	/* a second pass finds nothing more to move */
	ck_assert_int_eq(zpool_compact(zp, &freed), 0);
	ck_assert_uint_eq(stat_of(zp, "compactions"), 1);

	/* without compaction the hole is 21 chunks: a new page is needed */
	unsigned long cn = put_seed(control, 1800, 13);
	ck_assert_uint_ne(page_of(cn), page_of(c[1]));
	ck_assert_uint_eq(zpool_get_total_pages(control), 2);

	zpool_destroy_pool(zp);
	zpool_destroy_pool(control);
}
END_TEST

START_TEST(lone_middle_becomes_first)
{
	struct zpool *zp = new_pool();
	unsigned long h[3];
	three_buddies(zp, h);
	uintptr_t page = page_of(h[0]);
	zpool_free(zp, h[0]);
	zpool_free(zp, h[1]);
	unsigned long freed;
	ck_assert_int_eq(zpool_compact(zp, &freed), 0);
	ck_assert_uint_eq(stat_of(zp, "compactions"), 1);
	ck_assert_ptr_eq(where(zp, h[2]), (void *)(page + 64));
	check_seed(zp, h[2], 600, 12);
	/* 3000 bytes (47 chunks) fit after it: before, the largest hole was 32 */
	unsigned long big = put_seed(zp, 3000, 14);
	ck_assert_uint_eq(page_of(big), page);
	ck_assert_ptr_eq(where(zp, big) + 47 * 64, (void *)(page + 4096));
	ck_assert_uint_eq(zpool_get_total_pages(zp), 1);
	/* the old middle handle frees the first slot, which takes a new object */
	zpool_free(zp, h[2]);
	ck_assert_uint_eq(stat_of(zp, "objects"), 1);
	unsigned long f = put_seed(zp, 900, 15);
	ck_assert_ptr_eq(where(zp, f), (void *)(page + 64));
	check_seed(zp, big, 3000, 14);
	check_seed(zp, f, 900, 15);
	zpool_free(zp, big);
	zpool_free(zp, f);
	ck_assert_uint_eq(zpool_get_total_pages(zp), 0);
	zpool_destroy_pool(zp);
}
END_TEST

START_TEST(mapped_middle_stays)
{
	struct zpool *zp = new_pool();
	unsigned long h[3];
	three_buddies(zp, h);
	uintptr_t page = page_of(h[0]);
	uint8_t *m = zpool_map_handle(zp, h[2], ZPOOL_MM_RW);
	zpool_free(zp, h[0]);
	unsigned long freed;
	ck_assert_int_eq(zpool_compact(zp, &freed), 0);
	ck_assert_uint_eq(stat_of(zp, "compactions"), 0);
	ck_assert(same_seed(m, 600, 12));
	ck_assert_ptr_eq(m, (void *)(page + 22 * 64));
	zpool_unmap_handle(zp, h[2]);
	ck_assert_int_eq(zpool_compact(zp, &freed), 0);
	ck_assert_uint_eq(stat_of(zp, "compactions"), 1);
	ck_assert_ptr_eq(where(zp, h[2]), (void *)(page + 33 * 64));
	check_seed(zp, h[2], 600, 12);
	zpool_destroy_pool(zp);
}
END_TEST

/* ---- per-CPU shards ---- */

struct on_cpu {
	struct zpool *zp;
	int cpu;
	size_t size;
	unsigned long handle;
	int err, ran_on;
};

static void *alloc_on_cpu(void *p)
{
	struct on_cpu *a = p;
	a->ran_on = sched_getcpu();
	a->err = zpool_malloc(a->zp, a->size, &a->handle);
	return NULL;
}

static pthread_t start_on(struct on_cpu *a, void *(*fn)(void *))
{
	pthread_attr_t attr;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(a->cpu, &set);
	pthread_attr_init(&attr);
	ck_assert_int_eq(pthread_attr_setaffinity_np(&attr, sizeof(set), &set), 0);
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, &attr, fn, a), 0);
	pthread_attr_destroy(&attr);
	return t;
}

static unsigned long alloc_on(struct zpool *zp, int cpu, size_t size)
{
	struct on_cpu a = { .zp = zp, .cpu = cpu, .size = size };
	pthread_join(start_on(&a, alloc_on_cpu), NULL);
	ck_assert_int_eq(a.err, 0);
	ck_assert_int_eq(a.ran_on, cpu);
	return a.handle;
}

static uint64_t shard_pages(struct zpool *zp, unsigned shard)
{
	char name[32];
	snprintf(name, sizeof(name), "shard%u_unbuddied", shard);
	return stat_of(zp, name);
}

/* Random malloc/map/free on one CPU, checking every object it reads. */
static void *hammer_on_cpu(void *p)
{
	struct on_cpu *a = p;
	enum { N = 200 };
	unsigned long h[N] = { 0 };
	size_t sz[N];
	uint64_t s = (uint64_t)a->cpu * 7919 + 1;
	for (int op = 0; op < 20000; op++) {
		s = s * 6364136223846793005ULL + 1442695040888963407ULL;
		int i = (int)((s >> 33) % N);
		if (h[i]) {
			if (!same_seed(zpool_map_handle(a->zp, h[i], ZPOOL_MM_RO), sz[i], (unsigned)h[i]))
				a->err++;
			zpool_unmap_handle(a->zp, h[i]);
			zpool_free(a->zp, h[i]);
			h[i] = 0;
			continue;
		}
		sz[i] = 100 + (s >> 40) % 2500;
		if (zpool_malloc(a->zp, sz[i], &h[i])) {
			a->err++;
			h[i] = 0;
			continue;
		}
		fill_seed(zpool_map_handle(a->zp, h[i], ZPOOL_MM_WO), sz[i], (unsigned)h[i]);
		zpool_unmap_handle(a->zp, h[i]);
	}
	for (int i = 0; i < N; i++)
		if (h[i])
			zpool_free(a->zp, h[i]);
	return NULL;
}

START_TEST(shards_per_cpu)
{
	cpu_set_t set;
	ck_assert_int_eq(sched_getaffinity(0, sizeof(set), &set), 0);
	int cpus[2], n = 0;
	for (int c = 0; c < CPU_SETSIZE && n < 2; c++)
		if (CPU_ISSET(c, &set))
			cpus[n++] = c;
	struct zpool *zp = new_pool();
	unsigned nshards = (unsigned)stat_of(zp, "shards");
	ck_assert_uint_ge(nshards, 1);
	if (n < 2) { /* one CPU: one shard holds everything */
		ck_assert_uint_eq(nshards, 1);
		zpool_destroy_pool(zp);
		return;
	}
	unsigned s0 = (unsigned)cpus[0] % nshards, s1 = (unsigned)cpus[1] % nshards;
	ck_assert_uint_ne(s0, s1);

	/* CPU A starts a page in its shard */
	unsigned long a1 = alloc_on(zp, cpus[0], 1000);
	ck_assert_uint_eq(shard_pages(zp, s0), 1);
	ck_assert_uint_eq(shard_pages(zp, s1), 0);
	/* CPU B has nothing in its shard: it takes A's page, which follows it */
	unsigned long b1 = alloc_on(zp, cpus[1], 1000);
	ck_assert_uint_eq(page_of(b1), page_of(a1));
	ck_assert_uint_eq(zpool_get_total_pages(zp), 1);
	ck_assert_uint_eq(shard_pages(zp, s0), 0);
	ck_assert_uint_eq(shard_pages(zp, s1), 1);
	/* 3000 bytes fit nowhere: each CPU's new page lands in its own shard */
	unsigned long a2 = alloc_on(zp, cpus[0], 3000);
	unsigned long b2 = alloc_on(zp, cpus[1], 3000);
	ck_assert_uint_ne(page_of(a2), page_of(b2));
	ck_assert_uint_eq(zpool_get_total_pages(zp), 3);
	ck_assert_uint_eq(shard_pages(zp, s0), 1);
	ck_assert_uint_eq(shard_pages(zp, s1), 2);
	zpool_free(zp, a1);
	zpool_free(zp, b1);
	zpool_free(zp, a2);
	zpool_free(zp, b2);
	ck_assert_uint_eq(zpool_get_total_pages(zp), 0);

	/* both CPUs at once, two threads each, with a compactor */
	struct on_cpu t[4];
	pthread_t tid[4];
	for (int i = 0; i < 4; i++) {
		t[i] = (struct on_cpu){ .zp = zp, .cpu = cpus[i % 2] };
		tid[i] = start_on(&t[i], hammer_on_cpu);
	}
	for (int k = 0; k < 50; k++) {
		unsigned long freed;
		zpool_compact(zp, &freed);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(tid[i], NULL);
		ck_assert_int_eq(t[i].err, 0);
	}
	ck_assert_uint_eq(zpool_get_total_pages(zp), 0);
	ck_assert_uint_eq(shard_pages(zp, s0), 0);
	ck_assert_uint_eq(shard_pages(zp, s1), 0);
	ck_assert_uint_eq(stat_of(zp, "objects"), 0);
	zpool_destroy_pool(zp);
}
END_TEST

/* ---- shrink ---- */

START_TEST(shrink_lru_order)
{
	static struct evict_log log;
	struct zpool *zp = log_pool(&log, "z3fold", -1);
	unsigned long hl = put_logged(&log, 4000, 1);
	unsigned long f = put_logged(&log, 1300, 2);
	unsigned long l = put_logged(&log, 1300, 3);
	unsigned long m = put_logged(&log, 1300, 4);
	ck_assert_uint_eq(page_of(m), page_of(f));
	ck_assert_uint_eq(zpool_get_total_pages(zp), 3); /* + descriptor slab */

	/* the headless page is the oldest */
	unsigned int reclaimed = 9;
	ck_assert_int_eq(zpool_shrink(zp, 1, &reclaimed), 0);
	ck_assert_uint_eq(reclaimed, 1);
	ck_assert_int_eq(log.calls, 1);
	ck_assert_uint_eq(log.order[0], hl);
	ck_assert_uint_eq(stat_of(zp, "headless_pages"), 0);
	ck_assert_uint_eq(zpool_get_total_pages(zp), 1);
	check_logged(&log);

	/* then the headed page, middle first as in the seed */
	ck_assert_int_eq(zpool_shrink(zp, 1, &reclaimed), 0);
	ck_assert_int_eq(log.calls, 4);
	ck_assert_uint_eq(log.order[1], m);
	ck_assert_uint_eq(log.order[2], f);
	ck_assert_uint_eq(log.order[3], l);
	ck_assert_int_eq(log.corrupt, 0);
	ck_assert_uint_eq(zpool_get_total_pages(zp), 0);
	ck_assert_uint_eq(stat_of(zp, "reclaimed_pages"), 2);
	ck_assert_int_eq(zpool_shrink(zp, 1, &reclaimed), -EINVAL);
	zpool_destroy_pool(zp);
}
END_TEST

START_TEST(shrink_partial_evict)
{
	static struct evict_log log;
	struct zpool *zp = log_pool(&log, "z3fold", 0);
	unsigned long hl = put_logged(&log, 4000, 4);
	put_logged(&log, 1300, 1);
	put_logged(&log, 1300, 2);
	unsigned long m = put_logged(&log, 600, 3);

	/* every evict fails: everything stays where it was */
	unsigned int reclaimed = 9;
	ck_assert_int_eq(zpool_shrink(zp, 1, &reclaimed), -EAGAIN);
	ck_assert_uint_eq(reclaimed, 0);
	ck_assert_int_ge(log.calls, 2);
	ck_assert_uint_eq(zpool_get_total_pages(zp), 3);
	ck_assert_uint_eq(stat_of(zp, "objects"), 4);
	ck_assert_uint_eq(stat_of(zp, "headless_pages"), 1);
	check_logged(&log);
	ck_assert_ptr_eq(where(zp, m), (void *)(page_of(m) + 22 * 64));

	/* with the headless page gone: the middle buddy goes, the first fails */
	zpool_free(zp, hl);
	log.handles[0] = 0;
	log.calls = 0;
	log.fail_after = 1;
	ck_assert_int_eq(zpool_shrink(zp, 1, &reclaimed), -EAGAIN);
	ck_assert_uint_eq(reclaimed, 0);
	ck_assert_uint_eq(log.order[0], m);
	ck_assert_int_eq(lookup(&log, m), -1);
	ck_assert_uint_eq(stat_of(zp, "objects"), 2);
	ck_assert_uint_eq(zpool_get_total_pages(zp), 1);
	check_logged(&log);
	/* the page is back on its lists: the freed middle slot is usable */
	unsigned long n = put_seed(zp, 1000, 9);
	ck_assert_uint_eq(page_of(n), page_of(m));
	check_seed(zp, n, 1000, 9);
	check_logged(&log);
	zpool_destroy_pool(zp);
}
END_TEST

START_TEST(driver_stats_agree)
{
	struct zpool *zp = new_pool();
	static const size_t sizes[] = { 1300, 1300, 1300, 4000, 600, 2000, 500 };
	enum { N = sizeof(sizes) / sizeof(sizes[0]) };
	unsigned long h[N];
	size_t bytes = 0;
	for (int i = 0; i < N; i++) {
		h[i] = put_seed(zp, sizes[i], i);
		bytes += sizes[i];
	}
	/* 1300 x 3 | 4000 headless | 600 first, 2000 last, 500 middle */
	ck_assert_uint_eq(page_of(h[4]), page_of(h[5]));
	ck_assert_uint_eq(page_of(h[4]), page_of(h[6]));
	ck_assert_uint_eq(stat_of(zp, "pages"), 3);
	ck_assert_uint_eq(stat_of(zp, "headless_pages"), 1);
	ck_assert_uint_eq(stat_of(zp, "desc_pages"), 1);
	ck_assert_uint_eq(zpool_get_total_pages(zp), 4);
	ck_assert_uint_eq(stat_of(zp, "unbuddied_pages"), 0);
	ck_assert_uint_eq(stat_of(zp, "objects"), N);
	ck_assert_uint_eq(stat_of(zp, "object_bytes"), bytes);
	zpool_free(zp, h[5]);
	ck_assert_uint_eq(stat_of(zp, "objects"), N - 1);
	ck_assert_uint_eq(stat_of(zp, "object_bytes"), bytes - 2000);
	ck_assert_uint_eq(stat_of(zp, "unbuddied_pages"), 1);
	/* the middle already sits against the first: nothing to gain */
	unsigned long freed;
	ck_assert_int_eq(zpool_compact(zp, &freed), 0);
	ck_assert_uint_eq(stat_of(zp, "compactions"), 0);
	for (int i = 0; i < N; i++)
		if (i != 5) {
			check_seed(zp, h[i], sizes[i], i);
			zpool_free(zp, h[i]);
		}
	ck_assert_uint_eq(stat_of(zp, "pages"), 0);
	ck_assert_uint_eq(stat_of(zp, "objects"), 0);
	ck_assert_uint_eq(stat_of(zp, "object_bytes"), 0);
	ck_assert_uint_eq(zpool_get_total_pages(zp), 0);
	zpool_destroy_pool(zp);
}
END_TEST

Suite *z3fold_suite(void)
{
	Suite *s = suite_create("z3fold");
	TCase *tc = tcase_create("z3fold");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, three_per_page);
	tcase_add_test(tc, headless_pages);
	tcase_add_test(tc, middle_moves_to_last);
	tcase_add_test(tc, lone_middle_becomes_first);
	tcase_add_test(tc, mapped_middle_stays);
	tcase_add_test(tc, shards_per_cpu);
	tcase_add_test(tc, shrink_lru_order);
	tcase_add_test(tc, shrink_partial_evict);
	tcase_add_test(tc, driver_stats_agree);
	suite_add_tcase(s, tc);
	return s;
}

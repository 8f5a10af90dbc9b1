/*
 * test_zbud — what the generic zpool contract cannot see: two buddies per
 * page and never three, first/last placement, handle decoding, tightest-fit
 * choice of page, LRU-ordered shrink with evict callbacks (including a
 * failing one, an owner freeing during reclaim, and shrink racing with
 * owner threads), and driver_stats.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pools/pagesrc.h"
#include "pools/zbud.h"
#include "pools/zpool.h"
#include "tests/pooltest.h"

static uintptr_t page_of(unsigned long h)
{
	return (uintptr_t)zbud_handle_page(h);
}

/* Count handles per page: every page must hold exactly @per. */
static void check_per_page(const unsigned long *h, int n, int per)
{
	for (int i = 0; i < n; i++) {
		int k = 0;
		for (int j = 0; j < n; j++)
			k += page_of(h[j]) == page_of(h[i]);
		ck_assert_int_eq(k, per);
	}
}

START_TEST(two_per_page_never_three)
{
	struct zpool *zp;
	ck_assert_int_eq(zpool_create_pool("zbud", NULL, &zp), 0);
	ck_assert_uint_eq(zpool_max_size(zp), 4032);
	enum { N = 60 };
	unsigned long h[N];
	/* 1980 bytes = 31 chunks: two fill a page's 63 */
	for (int i = 0; i < N; i++)
		h[i] = put_seed(zp, 1980, i);
	ck_assert_uint_eq(zpool_get_total_pages(zp), N / 2);
	check_per_page(h, N, 2);
	for (int i = 0; i < N; i++) {
		check_seed(zp, h[i], 1980, i);
		zpool_free(zp, h[i]);
	}
	/* 1300 bytes: three would fit by chunks (3 x 21 = 63), zbud takes two */
	for (int i = 0; i < N; i++)
		h[i] = put_seed(zp, 1300, i);
	ck_assert_uint_eq(zpool_get_total_pages(zp), N / 2);
	check_per_page(h, N, 2);
	ck_assert_uint_eq(stat_of(zp, "buddied_pages"), N / 2);
	ck_assert_uint_eq(stat_of(zp, "unbuddied_pages"), 0);
	for (int i = 0; i < N; i++) {
		check_seed(zp, h[i], 1300, i);
		zpool_free(zp, h[i]);
	}
	ck_assert_uint_eq(zpool_get_total_pages(zp), 0);
	zpool_destroy_pool(zp);
}
END_TEST

START_TEST(first_and_last_placement)
{
	struct zpool *zp;
	ck_assert_int_eq(zpool_create_pool("zbud", NULL, &zp), 0);
	unsigned long a = put_seed(zp, 1000, 1), b = put_seed(zp, 1500, 2);
	ck_assert_uint_eq(page_of(a), page_of(b));
	uintptr_t page = page_of(a);
	ck_assert(zbud_handle_is_first(a));
	ck_assert(!zbud_handle_is_first(b));

	uint8_t *pa = zpool_map_handle(zp, a, ZPOOL_MM_RO);
	zpool_unmap_handle(zp, a);
	uint8_t *pb = zpool_map_handle(zp, b, ZPOOL_MM_RO);
	zpool_unmap_handle(zp, b);
	ck_assert_ptr_eq(pa, (void *)(page + 64));
	/* 1500 bytes = 24 chunks, right-justified: ends at the page end */
	ck_assert_ptr_eq(pb + 24 * 64, (void *)(page + 4096));

	/* the freed first slot is reused by the next object that fits */
	zpool_free(zp, a);
	check_seed(zp, b, 1500, 2);
	unsigned long c = put_seed(zp, 2000, 3);
	ck_assert_uint_eq(c, a);
	ck_assert(zbud_handle_is_first(c));
	check_seed(zp, b, 1500, 2);
	check_seed(zp, c, 2000, 3);

	/* a whole-page object (63 chunks) sits alone and decodes as first */
	unsigned long d = put_seed(zp, 4032, 4);
	ck_assert(zbud_handle_is_first(d));
	ck_assert_uint_ne(page_of(d), page);
	unsigned long e = put_seed(zp, 64, 5);
	ck_assert_uint_ne(page_of(e), page_of(d));
	ck_assert_int_eq(zpool_malloc(zp, 4033, &a), -ENOSPC);
	ck_assert_uint_eq(zpool_get_total_pages(zp), 3);
	check_seed(zp, d, 4032, 4);
	zpool_free(zp, b);
	zpool_free(zp, c);
	zpool_free(zp, d);
	zpool_free(zp, e);
	ck_assert_uint_eq(zpool_get_total_pages(zp), 0);
	zpool_destroy_pool(zp);
}
END_TEST

START_TEST(tightest_hole_first)
{
	struct zpool *zp;
	ck_assert_int_eq(zpool_create_pool("zbud", NULL, &zp), 0);
	unsigned long big = put_seed(zp, 3000, 1);  /* 47 chunks: 16 free */
	unsigned long mid = put_seed(zp, 1100, 2);  /* 18 chunks: new page, 45 free */
	ck_assert_uint_ne(page_of(big), page_of(mid));
	unsigned long s = put_seed(zp, 900, 3);     /* 15 chunks: the 16-chunk hole */
	ck_assert_uint_eq(page_of(s), page_of(big));
	unsigned long t = put_seed(zp, 2000, 4);    /* 32 chunks: only the 45 hole */
	ck_assert_uint_eq(page_of(t), page_of(mid));
	ck_assert_uint_eq(zpool_get_total_pages(zp), 2);
	check_seed(zp, big, 3000, 1);
	check_seed(zp, mid, 1100, 2);
	check_seed(zp, s, 900, 3);
	check_seed(zp, t, 2000, 4);
	zpool_destroy_pool(zp); /* frees the objects still in it */
}
END_TEST

/* ---- shrink ---- */

START_TEST(shrink_lru_order)
{
	static struct evict_log log;
	struct zpool *zp = log_pool(&log, "zbud", -1);
	unsigned long a1 = put_logged(&log, 1900, 1);
	put_logged(&log, 1900, 2);
	unsigned long b1 = put_logged(&log, 1900, 3), b2 = put_logged(&log, 1900, 4);
	unsigned long c1 = put_logged(&log, 1900, 5), c2 = put_logged(&log, 1900, 6);
	ck_assert_uint_eq(zpool_get_total_pages(zp), 3);
	/* re-filling page A makes it the most recent: B is now the oldest */
	zpool_free(zp, a1);
	log.handles[0] = 0;
	unsigned long a3 = put_logged(&log, 1900, 7);
	ck_assert_uint_eq(page_of(a3), page_of(a1));

	unsigned int reclaimed = 0;
	ck_assert_int_eq(zpool_shrink(zp, 1, &reclaimed), 0);
	ck_assert_uint_eq(reclaimed, 1);
	ck_assert_int_eq(log.calls, 2);
	ck_assert_int_eq(lookup(&log, b1), -1); /* both B buddies went */
	ck_assert_int_eq(lookup(&log, b2), -1);
	ck_assert_int_ge(lookup(&log, c1), 0);
	ck_assert_uint_eq(zpool_get_total_pages(zp), 2);
	ck_assert_uint_eq(stat_of(zp, "reclaimed_pages"), 1);
	check_logged(&log);

	/* then C, then A: two pages asked, two freed, four evicts more */
	ck_assert_int_eq(zpool_shrink(zp, 2, &reclaimed), 0);
	ck_assert_uint_eq(reclaimed, 2);
	ck_assert_int_eq(log.calls, 6);
	ck_assert_int_eq(lookup(&log, c2), -1);
	ck_assert_int_eq(lookup(&log, a3), -1);
	ck_assert_int_eq(log.corrupt, 0);
	ck_assert_uint_eq(zpool_get_total_pages(zp), 0);
	ck_assert_int_eq(zpool_shrink(zp, 1, &reclaimed), -EINVAL);
	ck_assert_uint_eq(reclaimed, 0);
	zpool_destroy_pool(zp);
}
END_TEST

START_TEST(failing_evict_keeps_data)
{
	static struct evict_log log;
	struct zpool *zp = log_pool(&log, "zbud", 0);
	put_logged(&log, 2000, 1);
	put_logged(&log, 1500, 2);
	unsigned int reclaimed = 7;
	ck_assert_int_eq(zpool_shrink(zp, 1, &reclaimed), -EAGAIN);
	ck_assert_uint_eq(reclaimed, 0);
	ck_assert_int_ge(log.calls, 1);
	/* a failed evict ends that page's turn: the last buddy is never asked */
	ck_assert_int_eq(log.tries[0], log.calls);
	ck_assert_int_eq(log.tries[1], 0);
	ck_assert_uint_eq(zpool_get_total_pages(zp), 1);
	check_logged(&log);
	/* the page went back on its list */
	ck_assert_uint_eq(stat_of(zp, "buddied_pages"), 1);
	ck_assert_uint_eq(stat_of(zp, "objects"), 2);

	/* first evict succeeds, second fails: the page keeps its last buddy */
	log.calls = 0;
	log.fail_after = 1;
	ck_assert_int_eq(zpool_shrink(zp, 1, &reclaimed), -EAGAIN);
	ck_assert_uint_eq(reclaimed, 0);
	ck_assert_uint_eq(log.handles[0], 0); /* first was evicted */
	ck_assert_uint_ne(log.handles[1], 0);
	ck_assert_uint_eq(zpool_get_total_pages(zp), 1);
	ck_assert_uint_eq(stat_of(zp, "unbuddied_pages"), 1);
	check_logged(&log);
	ck_assert_int_eq(log.corrupt, 0);

	log.fail_after = -1;
	ck_assert_int_eq(zpool_shrink(zp, 1, &reclaimed), 0);
	ck_assert_uint_eq(reclaimed, 1);
	ck_assert_uint_eq(zpool_get_total_pages(zp), 0);
	zpool_destroy_pool(zp);
}
END_TEST

/* The owner frees the last buddy while the first is being evicted. */
START_TEST(owner_frees_during_reclaim)
{
	static struct evict_log log;
	struct zpool *zp = log_pool(&log, "zbud", -1);
	put_logged(&log, 2000, 1);
	log.free_too = put_logged(&log, 1000, 2);
	unsigned int reclaimed = 0;
	ck_assert_int_eq(zpool_shrink(zp, 1, &reclaimed), 0);
	ck_assert_uint_eq(reclaimed, 1);
	ck_assert_int_eq(log.calls, 1); /* no evict for the freed buddy */
	ck_assert_uint_eq(zpool_get_total_pages(zp), 0);
	ck_assert_uint_eq(stat_of(zp, "objects"), 0);
	zpool_destroy_pool(zp);
}
END_TEST

START_TEST(driver_stats_agree)
{
	struct zpool *zp;
	ck_assert_int_eq(zpool_create_pool("zbud", NULL, &zp), 0);
	static const size_t sizes[] = { 100, 3000, 2000, 1900, 64, 4032, 700 };
	enum { N = sizeof(sizes) / sizeof(sizes[0]) };
	unsigned long h[N];
	size_t bytes = 0;
	for (int i = 0; i < N; i++) {
		h[i] = put_seed(zp, sizes[i], i);
		bytes += sizes[i];
	}
	/* 100+3000 | 2000+1900 | 64+700 | 4032 alone: 4 pages, all full */
	ck_assert_uint_eq(page_of(h[0]), page_of(h[1]));
	ck_assert_uint_eq(page_of(h[2]), page_of(h[3]));
	ck_assert_uint_eq(page_of(h[4]), page_of(h[6]));
	ck_assert_uint_eq(zpool_get_total_pages(zp), 4);
	ck_assert_uint_eq(stat_of(zp, "pages"), 4);
	ck_assert_uint_eq(stat_of(zp, "buddied_pages"), 4);
	ck_assert_uint_eq(stat_of(zp, "unbuddied_pages"), 0);
	ck_assert_uint_eq(stat_of(zp, "objects"), N);
	ck_assert_uint_eq(stat_of(zp, "object_bytes"), bytes);
	zpool_free(zp, h[1]);
	ck_assert_uint_eq(stat_of(zp, "objects"), N - 1);
	ck_assert_uint_eq(stat_of(zp, "object_bytes"), bytes - 3000);
	ck_assert_uint_eq(stat_of(zp, "buddied_pages"), 3);
	ck_assert_uint_eq(stat_of(zp, "unbuddied_pages"), 1);
	for (int i = 0; i < N; i++)
		if (i != 1)
			zpool_free(zp, h[i]);
	ck_assert_uint_eq(stat_of(zp, "pages"), 0);
	ck_assert_uint_eq(stat_of(zp, "objects"), 0);
	ck_assert_uint_eq(stat_of(zp, "object_bytes"), 0);
	ck_assert_int_eq(zpool_compact(zp, NULL), -EOPNOTSUPP);
	zpool_destroy_pool(zp);
}
END_TEST

Suite *zbud_suite(void)
{
	Suite *s = suite_create("zbud");
	TCase *tc = tcase_create("zbud");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, two_per_page_never_three);
	tcase_add_test(tc, first_and_last_placement);
	tcase_add_test(tc, tightest_hole_first);
	tcase_add_test(tc, shrink_lru_order);
	tcase_add_test(tc, failing_evict_keeps_data);
	tcase_add_test(tc, owner_frees_during_reclaim);
	tcase_add_test(tc, driver_stats_agree);
	suite_add_tcase(s, tc);
	return s;
}

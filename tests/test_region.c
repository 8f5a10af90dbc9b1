/* test_region — the managed-range set: merge, split, move, walk. */
#include <check.h>
#include <errno.h>

#include "core/region.h"

#define P 4096UL

static void expect(struct region_set *rs, const uintptr_t (*want)[2], size_t n)
{
	uintptr_t got[16][2];
	size_t k = region_snapshot(rs, got, 16);
	ck_assert_uint_eq(k, n);
	for (size_t i = 0; i < n; i++) {
		ck_assert_uint_eq(got[i][0], want[i][0]);
		ck_assert_uint_eq(got[i][1], want[i][1]);
	}
}

START_TEST(merge_and_split)
{
	struct region_set *rs;
	ck_assert_int_eq(region_set_create(&rs), 0);
	ck_assert_int_eq(region_add(rs, 10 * P, 20 * P), 0);
	ck_assert_int_eq(region_add(rs, 30 * P, 40 * P), 0);
	ck_assert_int_eq(region_add(rs, 20 * P, 25 * P), 0); /* adjacent: merges */
	expect(rs, (const uintptr_t[][2]){ { 10 * P, 25 * P }, { 30 * P, 40 * P } }, 2);
	ck_assert_int_eq(region_add(rs, 24 * P, 31 * P), 0); /* bridges both */
	expect(rs, (const uintptr_t[][2]){ { 10 * P, 40 * P } }, 1);
	region_remove(rs, 15 * P, 16 * P); /* split */
	expect(rs, (const uintptr_t[][2]){ { 10 * P, 15 * P }, { 16 * P, 40 * P } }, 2);
	ck_assert(region_contains(rs, 14 * P));
	ck_assert(!region_contains(rs, 15 * P));
	ck_assert(region_contains(rs, 16 * P));
	ck_assert_uint_eq(region_bytes(rs), 29 * P);
	region_remove(rs, 0, 12 * P); /* trims the head */
	region_remove(rs, 39 * P, 50 * P); /* trims the tail */
	expect(rs, (const uintptr_t[][2]){ { 12 * P, 15 * P }, { 16 * P, 39 * P } }, 2);
	ck_assert_int_eq(region_add(rs, 5 * P, 5 * P), -EINVAL);
	region_set_destroy(rs);
}
END_TEST

START_TEST(move_and_walk)
{
	struct region_set *rs;
	ck_assert_int_eq(region_set_create(&rs), 0);
	ck_assert_int_eq(region_add(rs, 100 * P, 110 * P), 0);
	ck_assert_int_eq(region_add(rs, 200 * P, 210 * P), 0);
	/* mremap of part of the first one, to above the second */
	ck_assert_int_eq(region_move(rs, 104 * P, 300 * P, 4 * P), 0);
	expect(rs, (const uintptr_t[][2]){ { 100 * P, 104 * P }, { 108 * P, 110 * P },
					   { 200 * P, 210 * P }, { 300 * P, 304 * P } }, 4);
	uintptr_t s, e, a = 0;
	size_t seen = 0;
	while (region_next(rs, a, &s, &e)) {
		seen += e - s;
		a = e;
	}
	ck_assert_uint_eq(seen, 20 * P);
	ck_assert(region_next(rs, 205 * P, &s, &e));
	ck_assert_uint_eq(s, 205 * P);
	ck_assert_uint_eq(e, 210 * P);
	ck_assert(!region_next(rs, 304 * P, &s, &e));
	region_set_destroy(rs);
}
END_TEST

START_TEST(table_full)
{
	struct region_set *rs;
	ck_assert_int_eq(region_set_create(&rs), 0);
	int err = 0;
	size_t i;
	for (i = 0; i < REGION_MAX + 1 && !err; i++)
		err = region_add(rs, (2 * i + 1) * P, (2 * i + 2) * P);
	ck_assert_int_eq(err, -ENOSPC);
	ck_assert_uint_eq(region_count(rs), REGION_MAX);
	region_set_destroy(rs);
}
END_TEST

Suite *region_suite(void)
{
	Suite *s = suite_create("region");
	TCase *tc = tcase_create("region");
	tcase_add_test(tc, merge_and_split);
	tcase_add_test(tc, move_and_walk);
	tcase_add_test(tc, table_full);
	suite_add_tcase(s, tc);
	return s;
}

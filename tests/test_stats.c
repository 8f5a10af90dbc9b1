/*
 * test_stats — counters, the two histograms at their bin edges, quantiles
 * of known distributions, snapshots, names, and the clock.
 */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/stats.h"

static struct stats *fresh(void)
{
	struct stats *s = malloc(sizeof(*s));
	memset(s, 0xff, sizeof(*s)); /* init must clear whatever was there */
	stats_init(s);
	return s;
}

static uint64_t csize_total(const struct stats_snapshot *sn)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < STATS_CSIZE_BINS; i++)
		n += sn->csize[i];
	return n;
}

START_TEST(test_init_and_counters)
{
	struct stats *s = fresh();
	struct stats_snapshot sn;
	stats_snapshot(s, &sn);
	for (unsigned i = 0; i < STAT_NR; i++)
		ck_assert_uint_eq(sn.c[i], 0);
	ck_assert_uint_eq(csize_total(&sn), 0);
	for (unsigned i = 0; i < STATS_LAT_BINS; i++)
		ck_assert_uint_eq(sn.load_ns[i], 0);

	stats_inc(s, STAT_STORES);
	stats_inc(s, STAT_STORES);
	stats_add(s, STAT_POOL_TOTAL_SIZE, 8192);
	stats_add(s, STAT_POOL_TOTAL_SIZE, -4096); /* gauges go down */
	stats_add(s, STAT_STORED_PAGES, 5);
	stats_add(s, STAT_STORED_PAGES, -5);
	stats_add(s, STAT_ENTRY_BYTES, 48);
	stats_snapshot(s, &sn);
	ck_assert_uint_eq(sn.c[STAT_STORES], 2);
	ck_assert_uint_eq(sn.c[STAT_POOL_TOTAL_SIZE], 4096);
	ck_assert_uint_eq(sn.c[STAT_STORED_PAGES], 0);
	ck_assert_uint_eq(sn.c[STAT_ENTRY_BYTES], 48);
	ck_assert_uint_eq(sn.c[STAT_LOADS], 0);
	free(s);
}
END_TEST

START_TEST(test_csize_bins)
{
	struct stats *s = fresh();
	static const struct {
		size_t len;
		unsigned bin;
	} cases[] = {
		{ 0, 0 },     { 1, 0 },	    { 63, 0 },	    { 64, 1 },	    { 65, 1 },
		{ 127, 1 },   { 128, 2 },   { 2047, 31 },   { 2048, 32 },   { 4031, 62 },
		{ 4032, 63 }, { 4095, 63 }, { 4096, 64 },   { 9000, 64 },
	};
	size_t n = sizeof(cases) / sizeof(cases[0]);
	for (size_t i = 0; i < n; i++) {
		struct stats_snapshot before, after;
		stats_snapshot(s, &before);
		stats_count_csize(s, cases[i].len);
		stats_snapshot(s, &after);
		for (unsigned b = 0; b < STATS_CSIZE_BINS; b++)
			ck_assert_msg(after.csize[b] - before.csize[b] == (b == cases[i].bin),
				      "len %zu: bin %u changed by %llu", cases[i].len, b,
				      (unsigned long long)(after.csize[b] - before.csize[b]));
	}
	free(s);
}
END_TEST

/* The bin a latency lands in, found through the public interface. */
static unsigned lat_bin_of(uint64_t ns)
{
	struct stats *s = fresh();
	struct stats_snapshot sn;
	stats_count_load_ns(s, ns);
	stats_snapshot(s, &sn);
	free(s);
	unsigned found = STATS_LAT_BINS, hits = 0;
	for (unsigned b = 0; b < STATS_LAT_BINS; b++) {
		if (sn.load_ns[b]) {
			found = b;
			hits += (unsigned)sn.load_ns[b];
		}
	}
	ck_assert_uint_eq(hits, 1);
	return found;
}

START_TEST(test_lat_bins)
{
	static const struct {
		uint64_t ns;
		unsigned bin;
	} cases[] = {
		{ 0, 0 },	{ 63, 0 },    { 64, 1 },    { 79, 1 },	  { 80, 2 },
		{ 95, 2 },	{ 96, 3 },    { 111, 3 },   { 112, 4 },	  { 127, 4 },
		{ 128, 5 },	{ 159, 5 },   { 160, 6 },   { 255, 8 },	  { 256, 9 },
		{ 1000, 16 },	/* 768..1023 */
		{ 16384, 33 },	/* a fault round trip: 2^14 */
		{ 805306367, 94 }, { 805306368, 95 }, { 2000000000, 95 }, { UINT64_MAX, 95 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		ck_assert_msg(lat_bin_of(cases[i].ns) == cases[i].bin, "%llu ns -> bin %u, want %u",
			      (unsigned long long)cases[i].ns, lat_bin_of(cases[i].ns),
			      cases[i].bin);

	/* Bounds are increasing, each bin is at most 25 % wider than its start,
	 * and a value just under a bin's upper bound lands in that bin while the
	 * bound itself lands in the next one. */
	ck_assert_uint_eq(stats_lat_bin_upper_ns(0), 64);
	ck_assert_uint_eq(stats_lat_bin_upper_ns(1), 80);
	ck_assert_uint_eq(stats_lat_bin_upper_ns(4), 128);
	ck_assert_uint_eq(stats_lat_bin_upper_ns(STATS_LAT_BINS - 1), UINT64_MAX);
	ck_assert_uint_eq(stats_lat_bin_upper_ns(STATS_LAT_BINS - 2), 805306368);
	for (unsigned b = 1; b < STATS_LAT_BINS - 1; b++) {
		uint64_t lo = stats_lat_bin_upper_ns(b - 1), hi = stats_lat_bin_upper_ns(b);
		ck_assert_uint_gt(hi, lo);
		ck_assert_uint_le((hi - lo) * 4, lo);
		ck_assert_uint_eq(lat_bin_of(hi - 1), b);
		ck_assert_uint_eq(lat_bin_of(hi), b + 1);
	}
	/* about one second at the top, as the header says */
	ck_assert_uint_gt(stats_lat_bin_upper_ns(STATS_LAT_BINS - 2), 500000000);
	ck_assert_uint_lt(stats_lat_bin_upper_ns(STATS_LAT_BINS - 2), 2000000000);
}
END_TEST

START_TEST(test_quantile)
{
	struct stats *s = fresh();
	struct stats_snapshot sn;
	stats_snapshot(s, &sn);
	ck_assert_uint_eq(stats_lat_quantile_ns(&sn, 0.5), 0);

	/* 90 fast loads (~1 us), 9 at ~16 us, 1 at ~1 ms */
	for (int i = 0; i < 90; i++)
		stats_count_load_ns(s, 1000);
	for (int i = 0; i < 9; i++)
		stats_count_load_ns(s, 16000);
	stats_count_load_ns(s, 1000000);
	stats_snapshot(s, &sn);
	uint64_t b1 = stats_lat_bin_upper_ns(16);	/* 1000 ns is in [896, 1024) */
	uint64_t b16 = stats_lat_bin_upper_ns(lat_bin_of(16000));
	uint64_t b1m = stats_lat_bin_upper_ns(lat_bin_of(1000000));
	ck_assert_uint_eq(b1, 1024);
	ck_assert_uint_eq(stats_lat_quantile_ns(&sn, 0), b1);
	ck_assert_uint_eq(stats_lat_quantile_ns(&sn, 0.5), b1);
	ck_assert_uint_eq(stats_lat_quantile_ns(&sn, 0.90), b1);
	ck_assert_uint_eq(stats_lat_quantile_ns(&sn, 0.901), b16);
	ck_assert_uint_eq(stats_lat_quantile_ns(&sn, 0.99), b16);
	ck_assert_uint_eq(stats_lat_quantile_ns(&sn, 0.995), b1m);
	ck_assert_uint_eq(stats_lat_quantile_ns(&sn, 1), b1m);
	ck_assert_uint_eq(stats_lat_quantile_ns(&sn, 7), b1m); /* clamped */
	ck_assert_uint_ge(b16, 16000);
	ck_assert_uint_le(b16, 16000 * 5 / 4);
	ck_assert_uint_ge(b1m, 1000000);
	ck_assert_uint_le(b1m, 1000000 * 5 / 4);

	/* uniform 1..100 us: the median is within one bin (25 %) of 50 us */
	struct stats *u = fresh();
	for (uint64_t us = 1; us <= 100; us++)
		stats_count_load_ns(u, us * 1000);
	stats_snapshot(u, &sn);
	uint64_t p50 = stats_lat_quantile_ns(&sn, 0.5);
	ck_assert_uint_ge(p50, 50000);
	ck_assert_uint_le(p50, 50000 * 5 / 4);
	uint64_t p99 = stats_lat_quantile_ns(&sn, 0.99);
	ck_assert_uint_ge(p99, 99000);
	ck_assert_uint_le(p99, 99000 * 5 / 4);
	free(u);
	free(s);
}
END_TEST

START_TEST(test_snapshot_copies_all)
{
	struct stats *s = fresh();
	for (unsigned i = 0; i < STAT_NR; i++)
		stats_add(s, i, 1000 + i);
	for (unsigned i = 0; i < STATS_CSIZE_BINS; i++)
		for (unsigned k = 0; k <= i % 5; k++)
			stats_count_csize(s, i * 64);
	for (unsigned b = 0; b < STATS_LAT_BINS; b++)
		for (unsigned k = 0; k <= b % 3; k++)
			stats_count_load_ns(s, b ? stats_lat_bin_upper_ns(b - 1) : 0);
	struct stats_snapshot sn;
	memset(&sn, 0xee, sizeof(sn));
	stats_snapshot(s, &sn);
	for (unsigned i = 0; i < STAT_NR; i++)
		ck_assert_uint_eq(sn.c[i], 1000 + i);
	for (unsigned i = 0; i < STATS_CSIZE_BINS; i++)
		ck_assert_uint_eq(sn.csize[i], i % 5 + 1);
	for (unsigned b = 0; b < STATS_LAT_BINS; b++)
		ck_assert_uint_eq(sn.load_ns[b], b % 3 + 1);
	/* a snapshot is a copy: later updates do not reach it */
	stats_inc(s, STAT_LOADS);
	ck_assert_uint_eq(sn.c[STAT_LOADS], 1000 + STAT_LOADS);
	free(s);
}
END_TEST

START_TEST(test_names)
{
	ck_assert_str_eq(stats_counter_name(STAT_STORED_PAGES), "stored_pages");
	ck_assert_str_eq(stats_counter_name(STAT_POOL_TOTAL_SIZE), "pool_total_size");
	ck_assert_str_eq(stats_counter_name(STAT_REJECT_COMPRESS_POOR), "reject_compress_poor");
	ck_assert_str_eq(stats_counter_name(STAT_ENTRY_BYTES), "entry_bytes");
	ck_assert_ptr_null(stats_counter_name(STAT_NR));
	ck_assert_ptr_null(stats_counter_desc(STAT_NR));
	for (unsigned i = 0; i < STAT_NR; i++) {
		const char *n = stats_counter_name(i), *d = stats_counter_desc(i);
		ck_assert_ptr_nonnull(n);
		ck_assert_ptr_nonnull(d);
		ck_assert_uint_gt(strlen(d), 10);
		ck_assert_uint_eq(strspn(n, "abcdefghijklmnopqrstuvwxyz_"), strlen(n));
		for (unsigned j = 0; j < i; j++)
			ck_assert_str_ne(n, stats_counter_name(j));
	}
}
END_TEST

#define MT_THREADS 4
#define MT_ITERS 20000

static void *mt_worker(void *p)
{
	struct stats *s = p;
	for (int i = 0; i < MT_ITERS; i++) {
		stats_inc(s, STAT_LOADS);
		stats_count_load_ns(s, 20000);
		stats_count_csize(s, 1000);
	}
	return NULL;
}

/* Relaxed atomics still count every update exactly. */
START_TEST(test_concurrent_exact)
{
	struct stats *s = fresh();
	pthread_t th[MT_THREADS];
	for (int t = 0; t < MT_THREADS; t++)
		ck_assert_int_eq(pthread_create(&th[t], NULL, mt_worker, s), 0);
	for (int t = 0; t < MT_THREADS; t++)
		pthread_join(th[t], NULL);
	struct stats_snapshot sn;
	stats_snapshot(s, &sn);
	ck_assert_uint_eq(sn.c[STAT_LOADS], MT_THREADS * MT_ITERS);
	ck_assert_uint_eq(sn.load_ns[lat_bin_of(20000)], MT_THREADS * MT_ITERS);
	ck_assert_uint_eq(sn.csize[1000 / 64], MT_THREADS * MT_ITERS);
	free(s);
}
END_TEST

START_TEST(test_now_ns)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t ref = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
	uint64_t a = stats_now_ns();
	ck_assert_uint_ge(a, ref);
	ck_assert_uint_lt(a - ref, 1000000000ULL);
	struct timespec d = { 0, 5000000 };
	nanosleep(&d, NULL);
	uint64_t b = stats_now_ns();
	ck_assert_uint_ge(b - a, 5000000);
	ck_assert_uint_lt(b - a, 2000000000ULL);
}
END_TEST

/* The fault histogram: its own bins, the same binning and quantiles as loads. */
START_TEST(test_fault_hist)
{
	struct stats *s = fresh();
	for (int i = 0; i < 90; i++)
		stats_count_fault_ns(s, 5000);
	for (int i = 0; i < 10; i++)
		stats_count_fault_ns(s, 2000000);
	stats_count_load_ns(s, 100);
	struct stats_snapshot sn;
	stats_snapshot(s, &sn);
	uint64_t faults = 0, loads = 0;
	for (unsigned i = 0; i < STATS_LAT_BINS; i++) {
		faults += sn.fault_ns[i];
		loads += sn.load_ns[i];
	}
	ck_assert_uint_eq(faults, 100);
	ck_assert_uint_eq(loads, 1); /* the two never mix */
	ck_assert_uint_eq(sn.fault_ns[lat_bin_of(5000)], 90);
	ck_assert_uint_eq(stats_hist_quantile_ns(sn.fault_ns, 0.5),
			  stats_lat_bin_upper_ns(lat_bin_of(5000)));
	ck_assert_uint_eq(stats_hist_quantile_ns(sn.fault_ns, 0.99),
			  stats_lat_bin_upper_ns(lat_bin_of(2000000)));
	/* the load quantile is the generic one over load_ns */
	ck_assert_uint_eq(stats_lat_quantile_ns(&sn, 0.5), stats_hist_quantile_ns(sn.load_ns, 0.5));
	stats_init(s);
	stats_snapshot(s, &sn);
	ck_assert_uint_eq(stats_hist_quantile_ns(sn.fault_ns, 0.5), 0);
	free(s);
}
END_TEST

Suite *stats_suite(void)
{
	Suite *s = suite_create("stats");
	TCase *tc = tcase_create("stats");
	tcase_add_test(tc, test_init_and_counters);
	tcase_add_test(tc, test_csize_bins);
	tcase_add_test(tc, test_lat_bins);
	tcase_add_test(tc, test_quantile);
	tcase_add_test(tc, test_fault_hist);
	tcase_add_test(tc, test_snapshot_copies_all);
	tcase_add_test(tc, test_names);
	tcase_add_test(tc, test_concurrent_exact);
	tcase_add_test(tc, test_now_ns);
	suite_add_tcase(s, tc);
	return s;
}

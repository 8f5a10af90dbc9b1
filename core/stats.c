/*
 * stats — see stats.h.
 *
 * No locks: every field is a relaxed atomic updated independently, so a
 * counter is exact but a snapshot is not one instant (as zswap's debugfs).
 *
 * Latency bins (load and fault, STATS_LAT_BINS = 96 each), log-linear with 4 bins per
 * power of two, so each bin is at most 25 % wide relative to its start:
 *   bin 0                  [0, 64) ns
 *   ns >= 64:  e = floor(log2(ns)), sub = the two bits below the leading
 *              one = (ns >> (e - 2)) & 3,
 *              bin = 1 + 4 * (e - 6) + sub, covering
 *              [2^e + sub * 2^(e-2), 2^e + (sub + 1) * 2^(e-2)) ns
 *   e.g. 64..79 -> 1, 80..95 -> 2, 96..111 -> 3, 112..127 -> 4, 128..159 -> 5.
 *   The last bin (95) starts at 2^29 + 2 * 2^27 ns (805 ms) and holds
 *   everything above: its upper bound is reported as UINT64_MAX.
 */
#include "core/stats.h"

#include <time.h>

#define LAT_MIN_SHIFT 6 /* bin 1 starts at 64 ns */
#define LAT_SUB_BITS 2	/* 4 bins per power of two */
#define LAT_SUB (1u << LAT_SUB_BITS)

static const char *const counter_names[STAT_NR] = {
#define STATS_NAME(id, name, desc) [STAT_##id] = #name,
	STATS_COUNTERS(STATS_NAME)
#undef STATS_NAME
};

static const char *const counter_descs[STAT_NR] = {
#define STATS_DESC(id, name, desc) [STAT_##id] = desc,
	STATS_COUNTERS(STATS_DESC)
#undef STATS_DESC
};

void stats_init(struct stats *s)
{
	for (unsigned i = 0; i < STAT_NR; i++)
		atomic_store_explicit(&s->c[i], 0, memory_order_relaxed);
	for (unsigned i = 0; i < STATS_CSIZE_BINS; i++)
		atomic_store_explicit(&s->csize[i], 0, memory_order_relaxed);
	for (unsigned i = 0; i < STATS_LAT_BINS; i++)
		atomic_store_explicit(&s->load_ns[i], 0, memory_order_relaxed);
	for (unsigned i = 0; i < STATS_LAT_BINS; i++)
		atomic_store_explicit(&s->fault_ns[i], 0, memory_order_relaxed);
	for (unsigned i = 0; i < STATS_LAT_BINS; i++)
		atomic_store_explicit(&s->wb_read_ns[i], 0, memory_order_relaxed);
}

void stats_count_csize(struct stats *s, size_t len)
{
	size_t bin = len / 64;
	if (bin >= STATS_CSIZE_BINS)
		bin = STATS_CSIZE_BINS - 1;
	atomic_fetch_add_explicit(&s->csize[bin], 1, memory_order_relaxed);
}

static unsigned lat_bin(uint64_t ns)
{
	if (ns < (1u << LAT_MIN_SHIFT))
		return 0;
	unsigned e = 63 - (unsigned)__builtin_clzll(ns);
	unsigned sub = (unsigned)(ns >> (e - LAT_SUB_BITS)) & (LAT_SUB - 1);
	unsigned bin = 1 + LAT_SUB * (e - LAT_MIN_SHIFT) + sub;
	return bin < STATS_LAT_BINS ? bin : STATS_LAT_BINS - 1;
}

void stats_count_load_ns(struct stats *s, uint64_t ns)
{
	atomic_fetch_add_explicit(&s->load_ns[lat_bin(ns)], 1, memory_order_relaxed);
}

void stats_count_fault_ns(struct stats *s, uint64_t ns)
{
	atomic_fetch_add_explicit(&s->fault_ns[lat_bin(ns)], 1, memory_order_relaxed);
}

void stats_count_wb_read_ns(struct stats *s, uint64_t ns)
{
	atomic_fetch_add_explicit(&s->wb_read_ns[lat_bin(ns)], 1, memory_order_relaxed);
}

uint64_t stats_lat_bin_upper_ns(unsigned bin)
{
	if (bin == 0)
		return 1u << LAT_MIN_SHIFT;
	if (bin >= STATS_LAT_BINS - 1)
		return UINT64_MAX;
	unsigned e = LAT_MIN_SHIFT + (bin - 1) / LAT_SUB;
	uint64_t sub = (bin - 1) % LAT_SUB;
	return (1ULL << e) + (sub + 1) * (1ULL << (e - LAT_SUB_BITS));
}

void stats_snapshot(const struct stats *s, struct stats_snapshot *out)
{
	for (unsigned i = 0; i < STAT_NR; i++)
		out->c[i] = atomic_load_explicit(&s->c[i], memory_order_relaxed);
	for (unsigned i = 0; i < STATS_CSIZE_BINS; i++)
		out->csize[i] = atomic_load_explicit(&s->csize[i], memory_order_relaxed);
	for (unsigned i = 0; i < STATS_LAT_BINS; i++)
		out->load_ns[i] = atomic_load_explicit(&s->load_ns[i], memory_order_relaxed);
	for (unsigned i = 0; i < STATS_LAT_BINS; i++)
		out->fault_ns[i] = atomic_load_explicit(&s->fault_ns[i], memory_order_relaxed);
	for (unsigned i = 0; i < STATS_LAT_BINS; i++)
		out->wb_read_ns[i] = atomic_load_explicit(&s->wb_read_ns[i], memory_order_relaxed);
}

const char *stats_counter_name(enum stats_counter id)
{
	return (unsigned)id < STAT_NR ? counter_names[id] : NULL;
}

const char *stats_counter_desc(enum stats_counter id)
{
	return (unsigned)id < STAT_NR ? counter_descs[id] : NULL;
}

/* The smallest bin whose cumulative count reaches ceil(q * total). */
uint64_t stats_lat_quantile_ns(const struct stats_snapshot *s, double q)
{
	return stats_hist_quantile_ns(s->load_ns, q);
}

uint64_t stats_hist_quantile_ns(const uint64_t bins[STATS_LAT_BINS], double q)
{
	uint64_t total = 0;
	for (unsigned i = 0; i < STATS_LAT_BINS; i++)
		total += bins[i];
	if (total == 0)
		return 0;
	if (!(q > 0))
		q = 0; /* NaN too */
	if (q > 1)
		q = 1;
	double want = q * (double)total;
	uint64_t rank = (uint64_t)want;
	if ((double)rank < want || rank == 0)
		rank++;
	uint64_t seen = 0;
	for (unsigned i = 0; i < STATS_LAT_BINS; i++) {
		seen += bins[i];
		if (seen >= rank)
			return stats_lat_bin_upper_ns(i);
	}
	return stats_lat_bin_upper_ns(STATS_LAT_BINS - 1);
}

uint64_t stats_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

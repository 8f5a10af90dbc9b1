/*
 * stats — the engine's counters, named like zswap's debugfs files, and four
 * histograms (compressed size, load latency, fault service time, writeback reads).
 *
 * A struct stats is plain memory holding only atomics (no pointers), so the
 * engine can place it in a shared-memory segment that `zswapu stat` maps.
 * Counters are updated with relaxed atomics: each is exact, but a snapshot
 * taken while the engine runs is not one consistent instant (as zswap's).
 * Gauges (stored_pages, pool_total_size ...) go up and down; the rest only
 * count up.
 */
#ifndef ZSWAPU_STATS_H
#define ZSWAPU_STATS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* X(id, name, description): one row per counter, in snapshot order. */
#define STATS_COUNTERS(X)                                                        \
	X(STORED_PAGES, stored_pages, "pages held compressed (incl. same-filled)") \
	X(POOL_TOTAL_SIZE, pool_total_size, "bytes of pool memory")              \
	X(STORED_INCOMPRESSIBLE_PAGES, stored_incompressible_pages,             \
	  "pages stored as-is because they did not compress")                   \
	X(SAME_FILLED_PAGES, same_filled_pages, "stored pages of one repeated non-zero word") \
	X(ZERO_FILLED_PAGES, zero_filled_pages, "stored pages that are all zeros") \
	X(REJECT_COMPRESS_POOR, reject_compress_poor, "pages left resident: compressed too poorly") \
	X(REJECT_COMPRESS_FAIL, reject_compress_fail, "pages left resident: compressor error") \
	X(REJECT_ALLOC_FAIL, reject_alloc_fail, "pages left resident: pool allocation failed") \
	X(DECOMPRESS_FAIL, decompress_fail, "loads whose data did not decompress") \
	X(LOADS, loads, "pages loaded back")                                     \
	X(STORES, stores, "pages stored")                                        \
	X(INVALIDATES, invalidates, "entries dropped by invalidate")             \
	X(DUPLICATE_ENTRY, duplicate_entry, "stores that replaced an existing entry") \
	X(COMPRESSED_BYTES, compressed_bytes, "sum of compressed sizes of stored pages") \
	X(ENTRY_BYTES, entry_bytes, "bytes of entry metadata")                  \
	X(REJECT_POOL_LIMIT, reject_pool_limit,                                  \
	  "pages left resident: the pool was at its cap and could not write back") \
	X(POOL_LIMIT_HIT, pool_limit_hit, "times the pool reached its cap")     \
	X(WRITTEN_BACK_PAGES, written_back_pages, "pages written back to the file") \
	X(WRITEBACK_BYTES, writeback_bytes, "bytes written to the writeback file") \
	X(WB_STORED_PAGES, wb_stored_pages, "stored pages whose data is in the file") \
	X(WB_READS, wb_reads, "objects read back from the file")                \
	X(WB_ERRORS, wb_errors, "writeback I/O errors (the first stops writeback)") \
	X(WB_FILE_BYTES, wb_file_bytes, "bytes of the file in use (64 KiB blocks)") \
	X(WB_LIVE_BYTES, wb_live_bytes, "bytes of live objects in the file")

enum stats_counter {
#define STATS_ENUM(id, name, desc) STAT_##id,
	STATS_COUNTERS(STATS_ENUM)
#undef STATS_ENUM
	STAT_NR
};

/* Compressed size: 64-byte bins, [0,64) .. [4032,4096), plus 4096 itself. */
#define STATS_CSIZE_BINS 65
/*
 * Latency: log-linear bins, 4 per power of two from 64 ns (bin 0 holds
 * everything below) to about 1 s (the last bin holds everything above).
 */
#define STATS_LAT_BINS 96

struct stats {
	_Atomic uint64_t c[STAT_NR];
	_Atomic uint64_t csize[STATS_CSIZE_BINS];
	_Atomic uint64_t load_ns[STATS_LAT_BINS];
	/* the fault handler's time per fault message, from reading it to the
	 * page being in place (the kernel's round trip is not in it) */
	_Atomic uint64_t fault_ns[STATS_LAT_BINS];
	_Atomic uint64_t wb_read_ns[STATS_LAT_BINS]; /* reads from the writeback file */
};

struct stats_snapshot {
	uint64_t c[STAT_NR];
	uint64_t csize[STATS_CSIZE_BINS];
	uint64_t load_ns[STATS_LAT_BINS];
	uint64_t fault_ns[STATS_LAT_BINS];
	uint64_t wb_read_ns[STATS_LAT_BINS];
};

void stats_init(struct stats *s);

static inline void stats_add(struct stats *s, enum stats_counter id, int64_t delta)
{
	atomic_fetch_add_explicit(&s->c[id], (uint64_t)delta, memory_order_relaxed);
}

static inline void stats_inc(struct stats *s, enum stats_counter id)
{
	stats_add(s, id, 1);
}

/* stats_count_csize() : a page of @len compressed bytes was stored. */
void stats_count_csize(struct stats *s, size_t len);
/* stats_count_load_ns() : a load took @ns nanoseconds. */
void stats_count_load_ns(struct stats *s, uint64_t ns);
/* stats_count_fault_ns() : the handler spent @ns nanoseconds on a fault. */
void stats_count_fault_ns(struct stats *s, uint64_t ns);
/* stats_count_wb_read_ns() : a read from the writeback file took @ns. */
void stats_count_wb_read_ns(struct stats *s, uint64_t ns);

void stats_snapshot(const struct stats *s, struct stats_snapshot *out);

/* stats_counter_name() : "stored_pages" ...; NULL past the last. */
const char *stats_counter_name(enum stats_counter id);
const char *stats_counter_desc(enum stats_counter id);

/* stats_lat_bin_upper_ns() : upper bound of latency bin @bin in ns. */
uint64_t stats_lat_bin_upper_ns(unsigned bin);

/*
 * stats_lat_quantile_ns() : the latency at quantile @q (0..1) of a
 * snapshot's histogram, as its bin's upper bound; 0 when it is empty.
 */
uint64_t stats_lat_quantile_ns(const struct stats_snapshot *s, double q);
/* stats_hist_quantile_ns() : the same for any latency histogram @bins. */
uint64_t stats_hist_quantile_ns(const uint64_t bins[STATS_LAT_BINS], double q);

/* stats_now_ns() : CLOCK_MONOTONIC in ns (vDSO, no syscall). */
uint64_t stats_now_ns(void);

#endif

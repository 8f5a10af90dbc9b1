/*
 * test_store — the store/load/invalidate paths against known pages: round
 * trips of synthetic and real heap pages for every compressor x pool with
 * exact counters; zero/same pages use no pool memory; incompressible pages
 * rejected or stored as-is; replacing frees the old object; invalidate and
 * move over ranges with holes; decompression failure keeps the entry; pool
 * exhaustion; bad options with their messages; threads against a shadow
 * (exact per-owner shadow, and racing on shared pages).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/index.h"
#include "core/log.h"
#include "core/store.h"
#include "pools/pagesrc.h"
#include "pools/zpool.h"
#include "tests/corpus.h"

#define PAGE 4096UL
#define CHUNK (2UL << 20)
#define ZONE (1UL << 44)
/* Test pages live across the zone 0/1 edge, so both sides are exercised. */
#define BASE (ZONE - 64 * CHUNK)

static const char *const compressors[] = { "lz4", "lz4:8", "zstd:1", "zstd:3", "zstd:-1" };
#define NCOMP 5
#define NPOOLS 3

static const char *pool_name(int i)
{
	return zpool_driver_names()[i];
}

static uint64_t cnt(struct stats *st, enum stats_counter id)
{
	return atomic_load(&st->c[id]);
}

static struct store *make_store(const char *comp, const char *pool, bool incompressible,
				struct stats *st)
{
	struct store_options o;
	store_options_default(&o);
	ck_assert_int_eq(compress_parse(comp, &o.compressor), 0);
	o.pool = pool;
	o.store_incompressible = incompressible;
	stats_init(st);
	struct store *s;
	int err = store_create(&o, st, &s);
	ck_assert_msg(err == 0, "store_create(%s, %s) = %d", comp, pool, err);
	return s;
}

/* Gauges that must match the store's real memory whenever it is quiet. */
static void check_memory_gauges(struct store *s, struct stats *st)
{
	ck_assert_uint_eq(cnt(st, STAT_POOL_TOTAL_SIZE), store_pool_bytes(s));
	ck_assert_uint_eq(store_pool_bytes(s), zpool_get_total_pages(store_zpool(s)) * PAGE);
	ck_assert_uint_eq(cnt(st, STAT_ENTRY_BYTES), index_entry_bytes(store_index(s)));
	ck_assert_uint_eq(cnt(st, STAT_STORED_PAGES), store_entry_count(s));
}

static uint64_t hist_sum(const _Atomic uint64_t *h, int n)
{
	uint64_t sum = 0;
	for (int i = 0; i < n; i++)
		sum += atomic_load(&h[i]);
	return sum;
}

/* ---- the page set: synthetic kinds plus real heap pages ----------------- */

#define SYNTH_PER_KIND 40
#define REAL_PER_CORPUS 256 /* every 16th page of each corpus */

static uint8_t *pages;  /* npages * PAGE */
static size_t npages;

/* Loaded once in the runner before the tests fork (an unchecked fixture). */
static void load_pages(void)
{
	if (pages)
		return;
	npages = CORPUS_KINDS * SYNTH_PER_KIND + CORPUS_NR * REAL_PER_CORPUS;
	pages = malloc(npages * PAGE);
	size_t n = 0;
	for (int k = 0; k < CORPUS_KINDS; k++)
		for (int i = 0; i < SYNTH_PER_KIND; i++)
			corpus_synth(k, 1000 * k + i, pages + n++ * PAGE);
	for (size_t c = 0; c < CORPUS_NR; c++) {
		size_t got;
		uint8_t *all = corpus_load(corpus_names[c], &got);
		for (size_t i = 0; i < REAL_PER_CORPUS; i++)
			memcpy(pages + n++ * PAGE, all + (i * 16 % got) * PAGE, PAGE);
		free(all);
	}
}

static const uint8_t *page_at(size_t i)
{
	return pages + i * PAGE;
}

/* What the store should do with a page, predicted independently. */
struct expect {
	size_t stored, zero, same, poor, bytes, as_is;
};

static int predict(const struct compress_cfg *cfg, const uint8_t *p, unsigned int cap,
		   bool as_is_ok, struct expect *x)
{
	static uint8_t buf[PAGE];
	size_t len;
	const uint64_t *w = (const uint64_t *)p;
	size_t i = 1;
	while (i < PAGE / 8 && w[i] == w[0])
		i++;
	if (i == PAGE / 8) {
		x->stored++;
		if (w[0])
			x->same++;
		else
			x->zero++;
		return 1;
	}
	int err = compress_page(cfg, p, buf, cap, &len);
	if (err == -E2BIG && as_is_ok) {
		x->stored++;
		x->as_is++;
		x->bytes += PAGE;
		return 1;
	}
	ck_assert_int_ne(err == 0 || err == -E2BIG, 0);
	if (err) {
		x->poor++;
		return 0;
	}
	x->stored++;
	x->bytes += len;
	return 1;
}

START_TEST(round_trip)
{
	const char *comp = compressors[_i % NCOMP];
	const char *pool = pool_name(_i / NCOMP);
	struct stats st;
	struct store *s = make_store(comp, pool, false, &st);
	struct compress_cfg cfg;
	compress_parse(comp, &cfg);
	struct expect x = { 0 };
	char *kept = calloc(npages, 1);
	size_t bad = 0;
	for (size_t i = 0; i < npages; i++) {
		kept[i] = (char)predict(&cfg, page_at(i), STORE_MAX_COMPRESSED_DEFAULT, false, &x);
		int err = store_page(s, BASE + i * PAGE, page_at(i));
		bad += err != (kept[i] ? 0 : -E2BIG);
	}
	ck_assert_uint_eq(bad, 0);
	ck_assert_uint_gt(x.stored, npages / 2);
	ck_assert_uint_ge(x.poor, SYNTH_PER_KIND); /* at least the random pages */
	ck_assert_uint_eq(cnt(&st, STAT_STORES), x.stored);
	ck_assert_uint_eq(cnt(&st, STAT_STORED_PAGES), x.stored);
	ck_assert_uint_eq(cnt(&st, STAT_ZERO_FILLED_PAGES), x.zero);
	ck_assert_uint_eq(cnt(&st, STAT_SAME_FILLED_PAGES), x.same);
	ck_assert_uint_eq(cnt(&st, STAT_REJECT_COMPRESS_POOR), x.poor);
	ck_assert_uint_eq(cnt(&st, STAT_COMPRESSED_BYTES), x.bytes);
	ck_assert_uint_eq(cnt(&st, STAT_STORED_INCOMPRESSIBLE_PAGES), 0);
	ck_assert_uint_eq(cnt(&st, STAT_REJECT_ALLOC_FAIL), 0);
	ck_assert_uint_eq(cnt(&st, STAT_REJECT_COMPRESS_FAIL), 0);
	ck_assert_uint_eq(hist_sum(st.csize, STATS_CSIZE_BINS), x.stored - x.zero - x.same);
	ck_assert_uint_eq(store_entry_count(s), x.stored);
	/* the pool holds the compressed bytes, and not wildly more */
	ck_assert_uint_ge(store_pool_bytes(s), x.bytes);
	ck_assert_uint_le(store_pool_bytes(s), 2 * x.bytes + 64 * PAGE);
	check_memory_gauges(s, &st);

	uint8_t *out = malloc(PAGE);
	size_t wrong = 0;
	for (size_t i = 0; i < npages; i++) {
		memset(out, 0xa5, PAGE);
		int err = store_load(s, BASE + i * PAGE, out);
		wrong += err != (kept[i] ? 0 : -ENOENT);
		wrong += !err && memcmp(out, page_at(i), PAGE) != 0;
		/* the load was exclusive: a second finds nothing */
		wrong += store_load(s, BASE + i * PAGE, out) != -ENOENT;
	}
	ck_assert_uint_eq(wrong, 0);
	ck_assert_uint_eq(cnt(&st, STAT_LOADS), x.stored);
	ck_assert_uint_eq(hist_sum(st.load_ns, STATS_LAT_BINS), x.stored);
	ck_assert_uint_eq(cnt(&st, STAT_STORED_PAGES), 0);
	ck_assert_uint_eq(cnt(&st, STAT_ZERO_FILLED_PAGES), 0);
	ck_assert_uint_eq(cnt(&st, STAT_SAME_FILLED_PAGES), 0);
	ck_assert_uint_eq(cnt(&st, STAT_COMPRESSED_BYTES), 0);
	ck_assert_uint_eq(cnt(&st, STAT_DECOMPRESS_FAIL), 0);
	ck_assert_uint_eq(store_pool_bytes(s), 0);
	/* one spare slab per index cache: entries, chunks, leaves */
	ck_assert_uint_le(cnt(&st, STAT_ENTRY_BYTES), 3 * PAGE);
	check_memory_gauges(s, &st);
	store_destroy(s);
	ck_assert_uint_eq(cnt(&st, STAT_POOL_TOTAL_SIZE), 0);
	ck_assert_uint_eq(cnt(&st, STAT_ENTRY_BYTES), 0);
	free(out);
	free(kept);
}
END_TEST

START_TEST(zero_and_same_use_no_pool)
{
	struct stats st;
	struct store *s = make_store("lz4", pool_name(_i), false, &st);
	uint8_t p[PAGE], out[PAGE];
	for (int i = 0; i < 1000; i++) {
		corpus_synth(i % 2 ? CORPUS_SAME : CORPUS_ZERO, i, p);
		ck_assert_int_eq(store_page(s, BASE + i * PAGE, p), 0);
	}
	ck_assert_uint_eq(store_pool_bytes(s), 0);
	ck_assert_uint_eq(cnt(&st, STAT_POOL_TOTAL_SIZE), 0);
	ck_assert_uint_eq(cnt(&st, STAT_ZERO_FILLED_PAGES), 500);
	ck_assert_uint_eq(cnt(&st, STAT_SAME_FILLED_PAGES), 500);
	ck_assert_uint_eq(cnt(&st, STAT_STORED_PAGES), 1000);
	ck_assert_uint_eq(cnt(&st, STAT_COMPRESSED_BYTES), 0);
	ck_assert_uint_eq(hist_sum(st.csize, STATS_CSIZE_BINS), 0);
	/* 1000 entries of 16 bytes: 4 slabs of 252; 16 leaves of 64 slots
	 * (BASE is chunk-aligned): 3 slabs of 7; one chunk: one slab */
	ck_assert_uint_eq(cnt(&st, STAT_ENTRY_BYTES), (4 + 3 + 1) * PAGE);
	int wrong = 0;
	for (int i = 0; i < 1000; i++) {
		corpus_synth(i % 2 ? CORPUS_SAME : CORPUS_ZERO, i, p);
		wrong += store_load(s, BASE + i * PAGE, out) != 0 || memcmp(out, p, PAGE);
	}
	ck_assert_int_eq(wrong, 0);
	ck_assert_uint_eq(cnt(&st, STAT_ZERO_FILLED_PAGES), 0);
	ck_assert_uint_eq(cnt(&st, STAT_SAME_FILLED_PAGES), 0);
	check_memory_gauges(s, &st);
	store_destroy(s);
}
END_TEST

/* A page that compresses to more than the default threshold but fits the pool. */
static void poor_page(const struct compress_cfg *cfg, size_t cap, uint8_t *p)
{
	uint8_t buf[PAGE];
	for (size_t r = 3500; r < PAGE; r += 8) {
		corpus_synth(CORPUS_RANDOM, 77, p);
		memset(p + r, 0, PAGE - r);
		size_t len;
		if (compress_page(cfg, p, buf, cap, &len) == 0 &&
		    len > STORE_MAX_COMPRESSED_DEFAULT)
			return;
	}
	ck_abort_msg("no poorly compressible page found");
}

START_TEST(incompressible)
{
	const char *pool = pool_name(_i);
	struct stats st;
	uint8_t rnd[PAGE], poor[PAGE], out[PAGE];
	corpus_synth(CORPUS_RANDOM, 5, rnd);

	/* rejected by default, counted, nothing kept */
	struct store *s = make_store("lz4", pool, false, &st);
	ck_assert_int_eq(store_page(s, BASE, rnd), -E2BIG);
	ck_assert_uint_eq(cnt(&st, STAT_REJECT_COMPRESS_POOR), 1);
	ck_assert_uint_eq(cnt(&st, STAT_STORED_PAGES), 0);
	ck_assert_uint_eq(store_pool_bytes(s), 0);
	ck_assert_int_eq(store_load(s, BASE, out), -ENOENT);

	/* store_page_raw keeps a poor page compressed when the pool can hold it */
	size_t max = zpool_max_size(store_zpool(s));
	poor_page(&COMPRESS_CFG_DEFAULT, max < PAGE - 1 ? max : PAGE - 1, poor);
	ck_assert_int_eq(store_page(s, BASE, poor), -E2BIG);
	ck_assert_int_eq(store_page_raw(s, BASE, poor), 0);
	ck_assert_uint_gt(cnt(&st, STAT_COMPRESSED_BYTES), STORE_MAX_COMPRESSED_DEFAULT);
	ck_assert_uint_lt(cnt(&st, STAT_COMPRESSED_BYTES), PAGE);
	ck_assert_int_eq(store_load(s, BASE, out), 0);
	ck_assert_mem_eq(out, poor, PAGE);
	int raw = store_page_raw(s, BASE, rnd);
	ck_assert_int_eq(raw, max >= PAGE ? 0 : -E2BIG);
	store_destroy(s);

	/* with store_incompressible, a pool that takes 4 KiB objects keeps it as-is */
	s = make_store("lz4", pool, true, &st);
	int err = store_page(s, BASE + PAGE, rnd);
	if (max >= PAGE) {
		ck_assert_int_eq(err, 0);
		ck_assert_uint_eq(cnt(&st, STAT_STORED_INCOMPRESSIBLE_PAGES), 1);
		ck_assert_uint_eq(cnt(&st, STAT_COMPRESSED_BYTES), PAGE);
		ck_assert_uint_eq(cnt(&st, STAT_REJECT_COMPRESS_POOR), 0);
		ck_assert_uint_eq(atomic_load(&st.csize[STATS_CSIZE_BINS - 1]), 1);
		ck_assert_uint_ge(store_pool_bytes(s), PAGE);
		ck_assert_int_eq(store_load(s, BASE + PAGE, out), 0);
		ck_assert_mem_eq(out, rnd, PAGE);
		ck_assert_uint_eq(cnt(&st, STAT_STORED_INCOMPRESSIBLE_PAGES), 0);
	} else {
		ck_assert_int_eq(err, -E2BIG);
		ck_assert_uint_eq(cnt(&st, STAT_REJECT_COMPRESS_POOR), 1);
	}
	ck_assert_uint_eq(store_pool_bytes(s), 0);
	check_memory_gauges(s, &st);
	store_destroy(s);
}
END_TEST

START_TEST(replace_frees_old)
{
	struct stats st;
	struct store *s = make_store("lz4", pool_name(_i), false, &st);
	enum { N = 2000 };
	uint8_t p[PAGE], out[PAGE];
	for (int i = 0; i < N; i++) {
		corpus_synth(CORPUS_TEXT, i, p);
		ck_assert_int_eq(store_page(s, BASE + i * PAGE, p), 0);
	}
	size_t first = store_pool_bytes(s);
	uint64_t bytes_first = cnt(&st, STAT_COMPRESSED_BYTES);
	for (int round = 1; round <= 3; round++)
		for (int i = 0; i < N; i++) {
			corpus_synth(CORPUS_TEXT, round * N + i, p);
			ck_assert_int_eq(store_page(s, BASE + i * PAGE, p), 0);
		}
	ck_assert_uint_eq(cnt(&st, STAT_DUPLICATE_ENTRY), 3 * N);
	ck_assert_uint_eq(cnt(&st, STAT_STORES), 4 * N);
	ck_assert_uint_eq(cnt(&st, STAT_STORED_PAGES), N);
	ck_assert_uint_eq(store_entry_count(s), N);
	/* old objects were freed: the pool did not grow fourfold */
	ck_assert_uint_le(store_pool_bytes(s), first + first / 4 + 16 * PAGE);
	ck_assert_uint_le(cnt(&st, STAT_COMPRESSED_BYTES), bytes_first + bytes_first / 10);
	check_memory_gauges(s, &st);
	int wrong = 0;
	for (int i = 0; i < N; i++) {
		corpus_synth(CORPUS_TEXT, 3 * N + i, p);
		wrong += store_load(s, BASE + i * PAGE, out) != 0 || memcmp(out, p, PAGE);
	}
	ck_assert_int_eq(wrong, 0);
	/* a same-filled page over a compressed one frees the object too */
	corpus_synth(CORPUS_TEXT, 1, p);
	ck_assert_int_eq(store_page(s, BASE, p), 0);
	corpus_synth(CORPUS_ZERO, 1, p);
	ck_assert_int_eq(store_page(s, BASE, p), 0);
	ck_assert_uint_eq(store_pool_bytes(s), 0);
	ck_assert_uint_eq(cnt(&st, STAT_COMPRESSED_BYTES), 0);
	check_memory_gauges(s, &st);
	store_destroy(s);
}
END_TEST

/* Page i of the hole pattern: every third page is a hole, one in five zero. */
static int hole(size_t i)
{
	return i % 3 == 1;
}

static void pattern_page(size_t i, uint8_t *p)
{
	corpus_synth(i % 5 == 0 ? CORPUS_ZERO : CORPUS_HEAP, i, p);
}

START_TEST(invalidate_and_move)
{
	struct stats st;
	struct store *s = make_store("zstd:1", pool_name(_i), false, &st);
	enum { N = 3 * 512 }; /* three chunks from BASE + 1.5 chunks: crosses chunk edges */
	uintptr_t a0 = BASE + CHUNK + 256 * PAGE;
	uint8_t p[PAGE], out[PAGE];
	size_t stored = 0, empty_pool = store_pool_bytes(s);
	for (size_t i = 0; i < N; i++) {
		if (hole(i))
			continue;
		pattern_page(i, p);
		ck_assert_int_eq(store_page(s, a0 + i * PAGE, p), 0);
		stored++;
	}
	ck_assert_uint_gt(store_pool_bytes(s), empty_pool);
	ck_assert_uint_eq(store_entry_count(s), stored);

	/* unaligned start drops nothing; a ragged length rounds up */
	ck_assert_uint_eq(store_invalidate(s, a0 + 1, 10 * PAGE), 0);
	ck_assert_uint_eq(store_invalidate(s, a0, 3 * PAGE - 100), 2); /* pages 0, 2 */
	ck_assert_int_eq(store_load(s, a0, out), -ENOENT);
	ck_assert_int_eq(store_load(s, a0 + 2 * PAGE, out), -ENOENT);
	size_t dropped = 2;

	/* a range with holes spanning a chunk edge */
	size_t lo = 200, hi = 700, expect = 0;
	for (size_t i = lo; i < hi; i++)
		expect += !hole(i);
	ck_assert_uint_eq(store_invalidate(s, a0 + lo * PAGE, (hi - lo) * PAGE), expect);
	dropped += expect;
	ck_assert_uint_eq(cnt(&st, STAT_INVALIDATES), dropped);
	ck_assert_uint_eq(store_entry_count(s), stored - dropped);
	size_t wrong = 0;
	for (size_t i = lo; i < hi; i++)
		wrong += store_load(s, a0 + i * PAGE, out) != -ENOENT;
	ck_assert_uint_eq(wrong, 0);

	/*
	 * Move pages [700, 1100) to the far side of the zone edge, onto a
	 * place where ten pages are already stored: those are dropped.
	 */
	uintptr_t dst = ZONE + 5 * CHUNK + 3 * PAGE;
	corpus_synth(CORPUS_TEXT, 9, p);
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(store_page(s, dst + i * 40 * PAGE, p), 0);
	size_t moved = 0;
	for (size_t i = 700; i < 1100; i++)
		moved += !hole(i);
	ck_assert_int_eq(store_move(s, a0 + 700 * PAGE, dst, 400 * PAGE), 0);
	ck_assert_uint_eq(cnt(&st, STAT_INVALIDATES), dropped + 10);
	ck_assert_uint_eq(store_entry_count(s), stored - dropped);
	for (size_t i = 700; i < 1100; i++) {
		int err = store_load(s, dst + (i - 700) * PAGE, out);
		pattern_page(i, p);
		wrong += hole(i) ? err != -ENOENT : err != 0 || memcmp(out, p, PAGE);
		wrong += store_load(s, a0 + i * PAGE, out) != -ENOENT;
	}
	ck_assert_uint_eq(wrong, 0);
	ck_assert_uint_eq(cnt(&st, STAT_LOADS), moved);
	ck_assert_int_eq(store_move(s, a0, a0 + PAGE, 2 * PAGE), -EINVAL); /* overlap */
	ck_assert_int_eq(store_move(s, a0 + 1, a0 + CHUNK, PAGE), -EINVAL);

	/* everything else, in one call: the pool goes back to empty */
	size_t rest = stored - dropped - moved;
	ck_assert_uint_eq(store_invalidate(s, 0, INDEX_ADDR_LIMIT), rest);
	ck_assert_uint_eq(store_invalidate(s, 0, SIZE_MAX), 0); /* clipped, not wrapped */
	ck_assert_uint_eq(store_entry_count(s), 0);
	ck_assert_uint_eq(store_pool_bytes(s), empty_pool);
	ck_assert_uint_eq(cnt(&st, STAT_STORED_PAGES), 0);
	ck_assert_uint_eq(cnt(&st, STAT_COMPRESSED_BYTES), 0);
	check_memory_gauges(s, &st);
	store_destroy(s);
}
END_TEST

/*
 * Forked views: a child sees the parent's pages as they were at the fork
 * whatever the parent does afterwards (loads, invalidates, new stores), a
 * grandchild forked from the child likewise, data is shared not copied,
 * and the pool empties only when every view has let go.
 */
START_TEST(fork_views)
{
	struct stats st, cst, gst;
	struct store *s = make_store("lz4", pool_name(_i), false, &st);
	enum { N = 600 };
	uint8_t p[PAGE], out[PAGE];
	size_t empty_pool = store_pool_bytes(s);
	for (size_t i = 0; i < N; i++) {
		pattern_page(i, p);
		ck_assert_int_eq(store_page(s, BASE + i * PAGE, p), 0);
	}
	size_t pool_before = store_pool_bytes(s);
	struct store *c, *g;
	stats_init(&cst);
	ck_assert_int_eq(store_fork(s, &cst, &c), 0);
	ck_assert_uint_eq(store_entry_count(c), N);
	ck_assert_uint_eq(cnt(&cst, STAT_STORED_PAGES), N);
	ck_assert_uint_eq(store_pool_bytes(s), pool_before); /* shared, not copied */

	/* the parent moves on: loads a third, drops a third, overwrites */
	for (size_t i = 0; i < N; i += 3)
		ck_assert_int_eq(store_load(s, BASE + i * PAGE, out), 0);
	ck_assert_uint_eq(store_invalidate(s, BASE + 1 * PAGE, PAGE), 1);
	corpus_synth(CORPUS_TEXT, 77, p);
	ck_assert_int_eq(store_page(s, BASE + 2 * PAGE, p), 0);
	stats_init(&gst);
	ck_assert_int_eq(store_fork(c, &gst, &g), 0); /* a grandchild of the child */

	size_t wrong = 0;
	for (size_t i = 0; i < N; i++) { /* the child's pages are the old ones */
		pattern_page(i, p);
		wrong += store_load(c, BASE + i * PAGE, out) != 0 || memcmp(out, p, PAGE);
	}
	ck_assert_uint_eq(wrong, 0);
	ck_assert_uint_eq(store_entry_count(c), 0);
	store_destroy(c);
	for (size_t i = 0; i < N; i++) { /* and the grandchild's too */
		pattern_page(i, p);
		wrong += store_load(g, BASE + i * PAGE, out) != 0 || memcmp(out, p, PAGE);
	}
	ck_assert_uint_eq(wrong, 0);
	corpus_synth(CORPUS_TEXT, 77, p);
	ck_assert_int_eq(store_load(s, BASE + 2 * PAGE, out), 0);
	ck_assert_mem_eq(out, p, PAGE);
	store_destroy(g);
	size_t left = store_entry_count(s);
	ck_assert_uint_eq(left, N - N / 3 - 2); /* a third loaded, 1 dropped, 2 loaded */
	ck_assert_uint_eq(store_invalidate(s, 0, INDEX_ADDR_LIMIT), left);
	ck_assert_uint_eq(store_pool_bytes(s), empty_pool);
	ck_assert_uint_eq(cnt(&st, STAT_STORED_PAGES), 0);
	check_memory_gauges(s, &st);
	store_destroy(s);
}
END_TEST

/* More views of one entry than its reference count can hold: copies. */
START_TEST(fork_many_views)
{
	struct stats st, vst;
	struct store *s = make_store("lz4", "zsmalloc", false, &st);
	uint8_t p[PAGE], out[PAGE];
	corpus_synth(CORPUS_TEXT, 5, p);
	ck_assert_int_eq(store_page(s, BASE, p), 0);
	enum { VIEWS = 300 };
	static struct store *v[VIEWS];
	stats_init(&vst);
	for (int i = 0; i < VIEWS; i++)
		ck_assert_int_eq(store_fork(s, &vst, &v[i]), 0);
	ck_assert_int_eq(store_load(s, BASE, out), 0); /* the parent's own goes */
	for (int i = VIEWS - 1; i >= 0; i--) {
		ck_assert_int_eq(store_load(v[i], BASE, out), 0);
		ck_assert_mem_eq(out, p, PAGE);
		store_destroy(v[i]);
	}
	ck_assert_uint_eq(zpool_get_total_pages(store_zpool(s)), 0);
	store_destroy(s);
}
END_TEST

/* Overwrite the pool object behind @addr so it no longer decompresses. */
static void corrupt(struct store *s, uintptr_t addr)
{
	struct index_entry *e;
	ck_assert_int_eq(index_get(store_index(s), addr, &e), 0);
	uint8_t *p = zpool_map_handle(store_zpool(s), e->handle, ZPOOL_MM_RW);
	memset(p, 0xff, e->length);
	zpool_unmap_handle(store_zpool(s), e->handle);
	ck_assert(!index_entry_put(e));
}

START_TEST(decompress_fail_keeps_entry)
{
	struct stats st;
	struct store *s = make_store(compressors[_i], "zsmalloc", false, &st);
	uint8_t p[PAGE], out[PAGE];
	corpus_synth(CORPUS_TEXT, 3, p);
	ck_assert_int_eq(store_page(s, BASE, p), 0);
	ck_assert_int_eq(store_page(s, BASE + PAGE, p), 0);
	corrupt(s, BASE);
	ck_assert_int_eq(store_load(s, BASE, out), -EIO);
	ck_assert_int_eq(store_load(s, BASE, out), -EIO);
	ck_assert_uint_eq(cnt(&st, STAT_DECOMPRESS_FAIL), 2);
	ck_assert_uint_eq(cnt(&st, STAT_LOADS), 0);
	ck_assert_uint_eq(store_entry_count(s), 2);
	ck_assert_uint_eq(cnt(&st, STAT_STORED_PAGES), 2);
	/* the other page is unaffected */
	ck_assert_int_eq(store_load(s, BASE + PAGE, out), 0);
	ck_assert_mem_eq(out, p, PAGE);
	/* a new store over the bad entry replaces it */
	ck_assert_int_eq(store_page(s, BASE, p), 0);
	ck_assert_int_eq(store_load(s, BASE, out), 0);
	ck_assert_mem_eq(out, p, PAGE);
	/* and invalidate drops a bad one */
	ck_assert_int_eq(store_page(s, BASE, p), 0);
	corrupt(s, BASE);
	ck_assert_uint_eq(store_invalidate(s, BASE, PAGE), 1);
	ck_assert_uint_eq(store_pool_bytes(s), 0);
	check_memory_gauges(s, &st);
	store_destroy(s);
}
END_TEST

START_TEST(pool_exhausted)
{
	struct stats st;
	struct store *s = make_store("lz4", pool_name(_i), false, &st);
	struct pagesrc_stats ps;
	pagesrc_get_stats(&ps);
	pagesrc_set_limit(ps.used_pages + 40);
	enum { N = 4000 };
	uint8_t p[PAGE], out[PAGE];
	int stored = 0, failed = 0, other = 0;
	for (int i = 0; i < N; i++) {
		corpus_synth(CORPUS_TEXT, i, p);
		int err = store_page(s, BASE + i * PAGE, p);
		stored += err == 0;
		failed += err == -ENOMEM;
		other += err != 0 && err != -ENOMEM;
	}
	pagesrc_set_limit(0);
	ck_assert_int_eq(other, 0);
	ck_assert_int_gt(stored, 40);
	ck_assert_int_gt(failed, 0);
	ck_assert_uint_eq(cnt(&st, STAT_REJECT_ALLOC_FAIL), failed);
	ck_assert_uint_eq(cnt(&st, STAT_STORED_PAGES), stored);
	int wrong = 0, loaded = 0;
	for (int i = 0; i < N; i++) {
		corpus_synth(CORPUS_TEXT, i, p);
		int err = store_load(s, BASE + i * PAGE, out);
		loaded += err == 0;
		wrong += (err != 0 && err != -ENOENT) || (!err && memcmp(out, p, PAGE));
	}
	ck_assert_int_eq(wrong, 0);
	ck_assert_int_eq(loaded, stored);
	check_memory_gauges(s, &st);
	store_destroy(s);
}
END_TEST

/* ---- bad input ---------------------------------------------------------- */

static int log_pipe[2];

static void capture_start(void)
{
	ck_assert_int_eq(pipe2(log_pipe, O_NONBLOCK), 0);
	log_set_fd(log_pipe[1]);
}

/* The messages logged since capture_start(). */
static const char *capture_end(void)
{
	static char buf[4096];
	log_set_fd(-1);
	ssize_t n = read(log_pipe[0], buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = '\0';
	close(log_pipe[0]);
	close(log_pipe[1]);
	return buf;
}

static int create_with(struct store_options *o, const char **msg)
{
	struct stats st;
	struct store *s = NULL;
	stats_init(&st);
	capture_start();
	int err = store_create(o, &st, &s);
	*msg = capture_end();
	if (!err)
		store_destroy(s);
	return err;
}

START_TEST(bad_input)
{
	struct store_options o;
	const char *msg;

	store_options_default(&o);
	ck_assert_int_eq(create_with(&o, &msg), 0);
	ck_assert_str_eq(msg, "");

	o.pool = "buddy";
	ck_assert_int_eq(create_with(&o, &msg), -EINVAL);
	ck_assert_ptr_nonnull(strstr(msg, "pool 'buddy'"));
	ck_assert_ptr_nonnull(strstr(msg, "zsmalloc"));

	store_options_default(&o);
	o.compressor = (struct compress_cfg){ COMPRESS_ZSTD, 99 };
	ck_assert_int_eq(create_with(&o, &msg), -EINVAL);
	ck_assert_ptr_nonnull(strstr(msg, "zstd:99"));
	o.compressor = (struct compress_cfg){ COMPRESS_LZ4, 0 };
	ck_assert_int_eq(create_with(&o, &msg), -EINVAL);
	ck_assert_ptr_nonnull(strstr(msg, "lz4:0"));
	o.compressor = (struct compress_cfg){ (enum compress_algo)7, 1 };
	ck_assert_int_eq(create_with(&o, &msg), -EINVAL);
	ck_assert_ptr_nonnull(strstr(msg, "accepted are lz4"));

	store_options_default(&o);
	o.max_compressed = 0;
	ck_assert_int_eq(create_with(&o, &msg), -EINVAL);
	ck_assert_ptr_nonnull(strstr(msg, "max_compressed 0"));
	o.max_compressed = 4096;
	ck_assert_int_eq(create_with(&o, &msg), -EINVAL);
	ck_assert_ptr_nonnull(strstr(msg, "max_compressed 4096"));
	o.pool = "zbud";
	o.max_compressed = 4050; /* below a page, above zbud's largest object */
	ck_assert_int_eq(create_with(&o, &msg), -EINVAL);
	ck_assert_ptr_nonnull(strstr(msg, "pool zbud"));

	store_options_default(&o);
	o.shards = 12;
	ck_assert_int_eq(create_with(&o, &msg), -EINVAL);
	ck_assert_ptr_nonnull(strstr(msg, "shards 12"));

	/* bad addresses */
	struct stats st;
	struct store *s = make_store("lz4", "zsmalloc", false, &st);
	uint8_t p[PAGE], out[PAGE];
	corpus_synth(CORPUS_TEXT, 1, p);
	ck_assert_int_eq(store_page(s, BASE + 8, p), -EINVAL);
	ck_assert_int_eq(store_page(s, INDEX_ADDR_LIMIT, p), -EINVAL);
	ck_assert_int_eq(store_page_raw(s, 0x123, p), -EINVAL);
	ck_assert_int_eq(store_load(s, BASE + 8, out), -EINVAL);
	ck_assert_int_eq(store_load(s, INDEX_ADDR_LIMIT + PAGE, out), -EINVAL);
	struct store_prep prep;
	ck_assert_int_eq(store_prepare(s, p, &prep), 0);
	ck_assert_int_eq(store_commit(s, BASE + 1, &prep), -EINVAL);
	ck_assert_int_eq(store_prepare(s, p, &prep), 0);
	store_abort(s, &prep);
	ck_assert_uint_eq(cnt(&st, STAT_STORES), 0);
	ck_assert_uint_eq(cnt(&st, STAT_STORED_PAGES), 0);
	ck_assert_uint_eq(store_entry_count(s), 0);
	ck_assert_uint_eq(store_pool_bytes(s), 0);
	check_memory_gauges(s, &st);
	store_destroy(s);
}
END_TEST

/* ---- threads ------------------------------------------------------------ */

/*
 * A page's content is a function of (addr, gen): a same-filled word that
 * encodes both (one page in eight) or a text page whose first 16 bytes are
 * addr and gen.  check_page() tells whether a loaded page is exactly some
 * generation's page for that address, and which.
 */
#define SAME_TAG 0x8000000000000000ULL

static void gen_page(uintptr_t addr, uint64_t gen, uint8_t *p)
{
	if (gen % 8 == 0) {
		compress_fill_page(p, SAME_TAG | gen << 24 | ((addr >> 12) & 0xffffff));
		return;
	}
	corpus_text_page(p, corpus_mix64(addr ^ gen << 40));
	memcpy(p, &addr, 8);
	memcpy(p + 8, &gen, 8);
}

/* The generation the page holds for @addr, or 0 when it is not valid. */
static uint64_t check_page(uintptr_t addr, const uint8_t *p)
{
	uint64_t w, gen;
	memcpy(&w, p, 8);
	if (w & SAME_TAG)
		gen = (w & ~SAME_TAG) >> 24;
	else
		memcpy(&gen, p + 8, 8);
	if (gen == 0 || gen > (1ULL << 38))
		return 0;
	uint8_t ref[PAGE];
	gen_page(addr, gen, ref);
	return memcmp(ref, p, PAGE) ? 0 : gen;
}

/*
 * Exact shadow: thread t of n owns the chunks j with j % n == t (pages
 * 0..63 each), all in one 2 MiB-chunk range so every thread hits every
 * tree.  Each thread stores, loads, invalidates ranges of its chunks and
 * moves pages between them, and knows exactly what every load must give.
 */
#define X_CHUNKS 32
#define X_PAGES 64
#define X_OPS 6000

struct xpage {
	uint64_t gen;     /* 0: nothing stored */
	uintptr_t origin; /* the address the data was made for (moves keep it) */
};

struct xthread {
	struct store *s;
	unsigned int id, n;
	struct xpage sh[X_CHUNKS][X_PAGES];
	long errors, loads, stores;
	pthread_t thread;
};

static uintptr_t x_addr(unsigned int chunk, unsigned int page)
{
	return BASE + chunk * CHUNK + page * PAGE;
}

static void x_step(struct xthread *x, uint64_t *rs, uint64_t *next_gen, uint8_t *buf)
{
	unsigned int k = (unsigned int)(corpus_rand(rs) % (X_CHUNKS / x->n));
	unsigned int c = k * x->n + x->id, p = (unsigned int)(corpus_rand(rs) % X_PAGES);
	unsigned int r = (unsigned int)(corpus_rand(rs) % 100);
	uintptr_t a = x_addr(c, p);
	if (r < 45) {
		uint64_t g = (*next_gen)++;
		gen_page(a, g, buf);
		if (store_page(x->s, a, buf))
			x->errors++;
		x->sh[c][p] = (struct xpage){ g, a };
		x->stores++;
	} else if (r < 85) {
		int err = store_load(x->s, a, buf);
		struct xpage *sp = &x->sh[c][p];
		if (err != (sp->gen ? 0 : -ENOENT) ||
		    (!err && check_page(sp->origin, buf) != sp->gen))
			x->errors++;
		x->loads += err == 0;
		sp->gen = 0;
	} else if (r < 95) {
		unsigned int len = 1 + (unsigned int)(corpus_rand(rs) % (X_PAGES - p));
		size_t expect = 0;
		for (unsigned int i = p; i < p + len; i++) {
			expect += x->sh[c][i].gen != 0;
			x->sh[c][i].gen = 0;
		}
		if (store_invalidate(x->s, a, len * PAGE) != expect)
			x->errors++;
	} else {
		/* move pages [p, X_PAGES) of chunk c to another chunk of ours */
		unsigned int c2 = (unsigned int)(corpus_rand(rs) % (X_CHUNKS / x->n)) * x->n + x->id;
		if (c2 == c)
			return;
		if (store_move(x->s, a, x_addr(c2, p), (X_PAGES - p) * PAGE))
			x->errors++;
		for (unsigned int i = p; i < X_PAGES; i++) {
			x->sh[c2][i] = x->sh[c][i];
			x->sh[c][i].gen = 0;
		}
	}
}

static void *x_run(void *arg)
{
	struct xthread *x = arg;
	uint64_t rs = 17 + x->id, next_gen = ((uint64_t)x->id << 32) + 1;
	uint8_t *buf = malloc(PAGE);
	for (int op = 0; op < X_OPS; op++)
		x_step(x, &rs, &next_gen, buf);
	free(buf);
	return NULL;
}

START_TEST(threads_exact_shadow)
{
	unsigned int n = _i == 0 ? 2 : 4;
	struct stats st;
	struct store *s = make_store("lz4", "zsmalloc", false, &st);
	struct xthread *x = calloc(n, sizeof(*x));
	for (unsigned int i = 0; i < n; i++) {
		x[i] = (struct xthread){ .s = s, .id = i, .n = n };
		pthread_create(&x[i].thread, NULL, x_run, &x[i]);
	}
	long loads = 0, stores = 0;
	for (unsigned int i = 0; i < n; i++) {
		pthread_join(x[i].thread, NULL);
		ck_assert_int_eq(x[i].errors, 0);
		loads += x[i].loads;
		stores += x[i].stores;
	}
	ck_assert_uint_eq(cnt(&st, STAT_STORES), stores);
	ck_assert_uint_eq(cnt(&st, STAT_LOADS), loads);
	size_t live = 0, wrong = 0;
	uint8_t buf[PAGE];
	for (unsigned int i = 0; i < n; i++)
		for (unsigned int c = 0; c < X_CHUNKS; c++)
			for (unsigned int p = 0; p < X_PAGES; p++) {
				struct xpage *sp = &x[i].sh[c][p];
				if (!sp->gen)
					continue;
				live++;
				wrong += store_load(s, x_addr(c, p), buf) != 0 ||
					 check_page(sp->origin, buf) != sp->gen;
			}
	ck_assert_uint_eq(wrong, 0);
	ck_assert_uint_gt(live, 0);
	ck_assert_uint_eq(store_entry_count(s), 0);
	ck_assert_uint_eq(store_pool_bytes(s), 0);
	check_memory_gauges(s, &st);
	store_destroy(s);
	free(x);
}
END_TEST

/*
 * Racing: every thread stores, loads and invalidates ranges of the same
 * 256 pages.  Whatever the interleaving, a load returns -ENOENT or exactly
 * a page some thread stored at that address; the accounting balances;
 * nothing is left behind.
 */
#define R_PAGES 256
#define R_OPS 6000

struct rthread {
	struct store *s;
	_Atomic(uintptr_t) *gen_addr; /* gen -> address it was stored at */
	unsigned int id;
	long errors, loads, stores, invalidated;
	pthread_t thread;
};

static void *r_run(void *arg)
{
	struct rthread *t = arg;
	uint64_t rs = 1000 + t->id;
	uint8_t *buf = malloc(PAGE);
	for (unsigned int op = 0; op < R_OPS; op++) {
		unsigned int p = (unsigned int)(corpus_rand(&rs) % R_PAGES);
		uintptr_t a = BASE + CHUNK - 128 * PAGE + p * PAGE; /* across a chunk edge */
		unsigned int r = (unsigned int)(corpus_rand(&rs) % 100);
		if (r < 45) {
			uint64_t g = 1 + t->id * R_OPS + op;
			atomic_store(&t->gen_addr[g], a);
			gen_page(a, g, buf);
			t->errors += store_page(t->s, a, buf) != 0;
			t->stores++;
		} else if (r < 85) {
			int err = store_load(t->s, a, buf);
			if (err == 0) {
				uint64_t g = check_page(a, buf);
				if (!g || atomic_load(&t->gen_addr[g]) != a)
					t->errors++;
				t->loads++;
			} else if (err != -ENOENT) {
				t->errors++;
			}
		} else {
			unsigned int len = 1 + (unsigned int)(corpus_rand(&rs) % 16);
			t->invalidated += store_invalidate(t->s, a, len * PAGE);
		}
	}
	free(buf);
	return NULL;
}

START_TEST(threads_racing)
{
	unsigned int n = _i == 0 ? 2 : 4;
	struct stats st;
	struct store *s = make_store("lz4", pool_name(_i == 0 ? 0 : 2), false, &st);
	_Atomic(uintptr_t) *gen_addr = calloc(4 * R_OPS + 2, sizeof(*gen_addr));
	struct rthread t[4];
	for (unsigned int i = 0; i < n; i++) {
		t[i] = (struct rthread){ .s = s, .gen_addr = gen_addr, .id = i };
		pthread_create(&t[i].thread, NULL, r_run, &t[i]);
	}
	long loads = 0, stores = 0, invalidated = 0;
	for (unsigned int i = 0; i < n; i++) {
		pthread_join(t[i].thread, NULL);
		ck_assert_int_eq(t[i].errors, 0);
		loads += t[i].loads;
		stores += t[i].stores;
		invalidated += t[i].invalidated;
	}
	ck_assert_uint_eq(cnt(&st, STAT_STORES), stores);
	ck_assert_uint_eq(cnt(&st, STAT_LOADS), loads);
	ck_assert_uint_eq(cnt(&st, STAT_INVALIDATES), invalidated);
	check_memory_gauges(s, &st);
	/*
	 * Every stored entry left by exactly one way: replaced, invalidated,
	 * taken by a load (at most one per successful load), or still there.
	 */
	long left = (long)store_entry_count(s);
	long dup = (long)cnt(&st, STAT_DUPLICATE_ENTRY);
	ck_assert_int_le(dup + invalidated + left, stores);
	ck_assert_int_ge(dup + invalidated + left + loads, stores);
	ck_assert_uint_eq(store_invalidate(s, BASE, 2 * CHUNK), left);
	ck_assert_uint_eq(store_pool_bytes(s), 0);
	ck_assert_uint_eq(cnt(&st, STAT_STORED_PAGES), 0);
	ck_assert_uint_eq(cnt(&st, STAT_COMPRESSED_BYTES), 0);
	check_memory_gauges(s, &st);
	store_destroy(s);
	free(gen_addr);
}
END_TEST

Suite *store_suite(void)
{
	Suite *s = suite_create("store");
	TCase *rt = tcase_create("round_trip");
	tcase_set_timeout(rt, 120);
	tcase_add_unchecked_fixture(rt, load_pages, NULL);
	tcase_add_loop_test(rt, round_trip, 0, NCOMP * NPOOLS);
	suite_add_tcase(s, rt);

	TCase *paths = tcase_create("paths");
	tcase_set_timeout(paths, 60);
	tcase_add_loop_test(paths, zero_and_same_use_no_pool, 0, NPOOLS);
	tcase_add_loop_test(paths, incompressible, 0, NPOOLS);
	tcase_add_loop_test(paths, replace_frees_old, 0, NPOOLS);
	tcase_add_loop_test(paths, invalidate_and_move, 0, NPOOLS);
	tcase_add_loop_test(paths, fork_views, 0, NPOOLS);
	tcase_add_test(paths, fork_many_views);
	tcase_add_loop_test(paths, decompress_fail_keeps_entry, 0, NCOMP);
	tcase_add_loop_test(paths, pool_exhausted, 0, NPOOLS);
	tcase_add_test(paths, bad_input);
	suite_add_tcase(s, paths);

	TCase *threads = tcase_create("threads");
	tcase_set_timeout(threads, 120);
	tcase_add_loop_test(threads, threads_exact_shadow, 0, 2);
	tcase_add_loop_test(threads, threads_racing, 0, 2);
	suite_add_tcase(s, threads);
	return s;
}

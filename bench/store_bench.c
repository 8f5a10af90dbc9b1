/*
 * store_bench — how fast and how densely the store (core/store.h) keeps
 * real pages, for each compressor x pool, against the raw compressor.
 *
 * Input: the page sets.  Real: the 4096 pages of each heap dump in
 * ../shared/data/pages (python, redis, node, sqlite), in dump order.
 * Synthetic (tests/corpus.h, the generators the unit tests use): 4096 pages
 * each of text, zero-filled and random (incompressible) pages.
 *
 * For each compressor (lz4 at acceleration 1, zstd at level 1: the store's
 * defaults for those names), pool (zsmalloc, z3fold, zbud) and page set,
 * one run is, in this order, on one thread:
 *   1. raw compress: compress_page() over every page of the set, with the
 *      cap the store uses (max_compressed), into one scratch page, as the
 *      store compresses into its per-thread buffer;
 *   2. store: store_page() of every page at consecutive addresses into a
 *      new store with default options but the compressor and pool;
 *   3. warm store: the same again, each page over its own entry (see
 *      one_run() for why both);
 *   4. load: store_load() of every stored page, in the same order, into a
 *      pre-touched array, then (untimed) each page compared with its
 *      original, every rejected page checked to load as "none" (-ENOENT),
 *      and the store checked empty;
 *   5. raw decompress: compress_decompress() of every page the raw codec
 *      kept, into the same array.
 * Raw and store passes run back to back so that the ratio of the two sees
 * the same machine state (this VM's neighbours come and go): store_vs_raw
 * is the median over runs of each run's own store/raw ratio, and the
 * throughputs are medians of --runs runs.
 *
 * What is reported:
 *   - store and load throughput in pages/s and MB/s (10^6 bytes of
 *     uncompressed pages); store counts every page offered, rejected ones
 *     included (the reject path is part of a store's cost: the page was
 *     compressed before it was found too big), load counts pages loaded;
 *   - store_vs_raw (target >= 0.70), and warm_store_vs_raw and load_vs_raw
 *     (no target);
 *   - effective ratio = original bytes of the stored pages / (pool bytes +
 *     entry metadata bytes), taken right after the last store;
 *   - ideal ratio = original bytes / sum of their compressed sizes, zero-
 *     and same-filled pages counting 0 (they need no pool memory), i.e.
 *     what a pool with no waste and entries of no size would reach; gap =
 *     1 - effective / ideal (target for zsmalloc <= 5 %);
 *   - metadata bytes per stored page (target <= 48): index_entry_bytes(),
 *     the slab pages holding the entries, the index's leaves and chunks
 *     (16-byte entries, 252 to a 4 KiB slab; 8 bytes of slot per page in
 *     512-byte leaves, 7 to a slab; 128 bytes per 2 MiB chunk; plus at
 *     most one spare slab per cache).
 *     The index's fixed part (tree roots and locks: a few KiB per store,
 *     whatever the number of entries) is not per page and is left out.
 *
 * Scale: each set is 16 MiB, so the pools are small.  Every size class in
 * use leaves one partly filled zspage (up to 4 pages) and the entry slab
 * one partly filled page, which costs a few percent of effective ratio on
 * the real sets (more on the very compressible ones, whose pools are
 * smallest) and more again with --quick; pool_bench measures pool density
 * over whole dumps, without entries.
 *
 * The store's own counters are checked against the raw codec's result on
 * the same pages (pages stored and rejected, sum of compressed sizes): a
 * difference means one of the two measured something else and the
 * benchmark fails.  Exit status: 0 when every row ran, whatever the
 * targets; 1 when a page came back wrong, an operation failed or the
 * counters disagree; 2 on bad usage.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "core/compress.h"
#include "core/index.h"
#include "core/stats.h"
#include "core/store.h"
#include "pools/zpool.h"
#include "tests/corpus.h"

#define PAGE COMPRESS_PAGE_SIZE
#define SYNTH_PAGES CORPUS_PAGES  /* as many as a real set */
#define QUICK_PAGES 512           /* per set, with --quick */
/* Any page-aligned address below 2^47 will do; 2 MiB chunks map to shards. */
#define BASE_ADDR (1UL << 40)
#define MB 1e6

static const char *const compressor_specs[] = { "lz4", "zstd" };
static const enum corpus_kind synth_kinds[] = { CORPUS_TEXT, CORPUS_ZERO, CORPUS_RANDOM };
#define NCOMPS (sizeof(compressor_specs) / sizeof(compressor_specs[0]))
#define MAX_POOLS 8 /* more than zpool has drivers */
#define NSYNTH (sizeof(synth_kinds) / sizeof(synth_kinds[0]))
#define NSETS (CORPUS_NR + NSYNTH)

struct pageset {
	const char *name;
	uint8_t *pages; /* n * PAGE */
	size_t n;
};

/*
 * What the raw codec makes of each page of a set, untimed, for one
 * compressor: the store must do exactly this, so it is both the reference
 * for the store's counters and the input of the raw decompress pass.
 */
struct plan {
	bool *same;       /* same-filled: the store keeps no pool data */
	uint16_t *clen;   /* compressed length, 0 when over the cap */
	uint8_t *cdata;   /* page k's compressed bytes at k * PAGE */
	size_t stored;    /* same-filled or compressed within the cap */
	size_t rejected;
	size_t same_filled;
	uint64_t csum;    /* compressed bytes of the stored pages that are not same-filled */
};

/* One run's throughputs, pages/s. */
struct sample {
	double raw_c, store, warm, load, raw_d;
};

/* After a store pass: what the store held. */
struct held {
	size_t stored, rejected;
	uint64_t pool_bytes, meta_bytes;
};

enum verdict { NA, MET, MISSED };

enum target { T_VS_RAW, T_GAP, T_META, NTARGETS };

/* The targets; a floor must be reached, a ceiling not passed. */
static const struct {
	const char *what;
	double limit;
	double scale;     /* printed as value * scale, then unit */
	const char *unit;
	bool floor;
} targets[NTARGETS] = {
	[T_VS_RAW] = { "store_vs_raw", 0.70, 1, "", true },
	[T_GAP] = { "zsmalloc gap to ideal", 0.05, 100, " %", false },
	[T_META] = { "metadata per page", 48, 1, " B", false },
};

struct row {
	struct compress_cfg cfg;
	const char *pool;
	const struct pageset *set;
	const struct plan *plan; /* only while the row is measured */
	size_t same_filled;
	uint64_t csum;
	struct held held;
	double store_pps, warm_pps, load_pps, raw_c_pps, raw_d_pps;
	double vs_raw, warm_vs_raw, load_vs_raw;
	double effective, ideal, gap, meta_pp;
	enum verdict verdict[NTARGETS];
};

static uintptr_t addr_of(size_t k)
{
	return BASE_ADDR + k * PAGE;
}

static const uint8_t *page_at(const struct pageset *set, size_t k)
{
	return set->pages + k * PAGE;
}

static double rate(size_t n, uint64_t t0, uint64_t t1)
{
	return t1 > t0 ? (double)n * 1e9 / (double)(t1 - t0) : NAN;
}

/* ---- plan and raw codec passes --------------------------------------- */

/* The cap compress_page() gets inside the store (default options). */
static unsigned int store_cap(void)
{
	struct store_options o;
	store_options_default(&o);
	return o.max_compressed;
}

static int plan_make(const struct compress_cfg *cfg, const struct pageset *set,
		     struct plan *p)
{
	unsigned int cap = store_cap();
	*p = (struct plan){
		.same = bench_xcalloc(set->n, sizeof(*p->same)),
		.clen = bench_xcalloc(set->n, sizeof(*p->clen)),
		.cdata = bench_xcalloc(set->n, PAGE),
	};
	for (size_t k = 0; k < set->n; k++) {
		uint64_t word;
		size_t len;
		int err = compress_page(cfg, page_at(set, k), p->cdata + k * PAGE, cap, &len);
		if (err && err != -E2BIG) {
			char name[32];
			fprintf(stderr, "store_bench: %s %s: compress_page: %s\n",
				compress_name(cfg, name, sizeof(name)), set->name, strerror(-err));
			return err;
		}
		p->clen[k] = err ? 0 : (uint16_t)len;
		p->same[k] = compress_same_filled(page_at(set, k), &word);
		if (p->same[k]) {
			p->same_filled++;
			p->stored++;
		} else if (p->clen[k]) {
			p->stored++;
			p->csum += p->clen[k];
		} else {
			p->rejected++;
		}
	}
	return 0;
}

static void plan_free(struct plan *p)
{
	free(p->same);
	free(p->clen);
	free(p->cdata);
}

/* Pages/s of compress_page() over the whole set; NAN on a codec error. */
static double raw_compress(const struct compress_cfg *cfg, const struct pageset *set)
{
	static uint8_t scratch[PAGE];
	unsigned int cap = store_cap();
	int bad = 0;
	uint64_t t0 = bench_now_ns();
	for (size_t k = 0; k < set->n; k++) {
		size_t len;
		int err = compress_page(cfg, page_at(set, k), scratch, cap, &len);
		bad |= err && err != -E2BIG;
	}
	uint64_t t1 = bench_now_ns();
	return bad ? NAN : rate(set->n, t0, t1);
}

/* Pages/s of compress_decompress() over the pages the codec kept. */
static double raw_decompress(const struct compress_cfg *cfg, const struct pageset *set,
			     const struct plan *p, uint8_t *dst)
{
	size_t n = 0;
	int bad = 0;
	uint64_t t0 = bench_now_ns();
	for (size_t k = 0; k < set->n; k++) {
		if (!p->clen[k])
			continue;
		bad |= compress_decompress(cfg, p->cdata + k * PAGE, p->clen[k], dst + k * PAGE);
		n++;
	}
	uint64_t t1 = bench_now_ns();
	return bad || !n ? NAN : rate(n, t0, t1);
}

/* ---- the store pass -------------------------------------------------- */

/* Prints what went wrong in row @w; @return @err, or -EIO when it is 0. */
static int __attribute__((format(printf, 3, 4)))
run_error(const struct row *w, int err, const char *fmt, ...)
{
	char name[32];
	va_list ap;
	fprintf(stderr, "store_bench: %s %s %s: ", compress_name(&w->cfg, name, sizeof(name)),
		w->pool, w->set->name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s%s\n", err ? ": " : "", err ? strerror(-err) : "");
	return err ? err : -EIO;
}

/*
 * Stores every page; the pages offered per second go to *@pps and the
 * rejected count to *@rejected.  Any failure but the expected "compressed
 * too poorly" stops the pass.
 */
static int store_all(struct store *s, const struct row *w, double *pps, size_t *rejected)
{
	const struct pageset *set = w->set;
	int err = 0;
	*rejected = 0;
	uint64_t t0 = bench_now_ns();
	for (size_t k = 0; k < set->n && !err; k++) {
		int rc = store_page(s, addr_of(k), page_at(set, k));
		if (rc == -E2BIG)
			++*rejected;
		else
			err = rc;
	}
	uint64_t t1 = bench_now_ns();
	if (err)
		return run_error(w, err, "store_page");
	*pps = rate(set->n, t0, t1);
	return 0;
}

static void snapshot(struct store *s, size_t rejected, struct held *h)
{
	*h = (struct held){
		.stored = store_entry_count(s),
		.rejected = rejected,
		.pool_bytes = store_pool_bytes(s),
		.meta_bytes = index_entry_bytes(store_index(s)),
	};
}

/* The store's counters must tell what the raw codec predicted. */
static int check_counters(const struct row *w, const struct stats *st, const struct held *h)
{
	const struct plan *p = w->plan;
	struct stats_snapshot snap;
	stats_snapshot(st, &snap);
	if (h->stored == p->stored && h->rejected == p->rejected &&
	    snap.c[STAT_STORED_PAGES] == p->stored &&
	    snap.c[STAT_REJECT_COMPRESS_POOR] == p->rejected &&
	    snap.c[STAT_COMPRESSED_BYTES] == p->csum &&
	    snap.c[STAT_ENTRY_BYTES] == h->meta_bytes)
		return 0;
	return run_error(w, 0,
			 "the store disagrees with the raw codec: stored %zu (expected %zu), "
			 "rejected %zu (%zu), compressed bytes %llu (%llu), entry bytes %llu "
			 "(accessor %llu)",
			 h->stored, p->stored, h->rejected, p->rejected,
			 (unsigned long long)snap.c[STAT_COMPRESSED_BYTES],
			 (unsigned long long)p->csum, (unsigned long long)snap.c[STAT_ENTRY_BYTES],
			 (unsigned long long)h->meta_bytes);
}

/* Loads every stored page into @dst; the pages loaded per second go to *@pps. */
static int load_all(struct store *s, const struct row *w, uint8_t *dst, double *pps)
{
	const struct pageset *set = w->set;
	const struct plan *p = w->plan;
	int err = 0;
	uint64_t t0 = bench_now_ns();
	for (size_t k = 0; k < set->n && !err; k++)
		if (p->same[k] || p->clen[k])
			err = store_load(s, addr_of(k), dst + k * PAGE);
	uint64_t t1 = bench_now_ns();
	if (err)
		return run_error(w, err, "store_load of a stored page");
	*pps = rate(p->stored, t0, t1);
	return 0;
}

/* Untimed: every page as it was stored, rejected pages absent, store empty. */
static int verify(struct store *s, const struct row *w, const uint8_t *dst)
{
	const struct pageset *set = w->set;
	const struct plan *p = w->plan;
	static uint8_t scratch[PAGE];
	for (size_t k = 0; k < set->n; k++) {
		if (p->same[k] || p->clen[k]) {
			if (memcmp(dst + k * PAGE, page_at(set, k), PAGE))
				return run_error(w, 0, "page %zu loaded differs from the original", k);
		} else if (store_load(s, addr_of(k), scratch) != -ENOENT) {
			return run_error(w, 0, "page %zu was rejected but did not load as none", k);
		}
	}
	if (store_entry_count(s))
		return run_error(w, 0, "entries left after loading every page");
	return 0;
}

/*
 * One run: raw compress, store, the same pages stored again over their
 * entries (warm), load, verify, raw decompress.
 *
 * The first store fills an empty pool: every pool page is new and its
 * first touch is a page fault, as when a program's cold memory first goes
 * to the store.  The warm pass replaces each entry by a new one of the
 * same size, so the pool reuses the slots just freed and takes no new
 * page: what a store costs once the pool has its size, as in a steady
 * state of reclaim and refaults.  Density is read after the first pass.
 */
static int one_run(const struct row *w, uint8_t *dst, struct sample *smp, struct held *h)
{
	struct store_options o;
	store_options_default(&o);
	o.compressor = w->cfg;
	o.pool = w->pool;
	struct stats st;
	stats_init(&st);
	struct store *s;
	smp->raw_c = raw_compress(&w->cfg, w->set);
	if (!(smp->raw_c > 0))
		return run_error(w, 0, "raw compress failed");
	int err = store_create(&o, &st, &s);
	if (err)
		return run_error(w, err, "store_create");
	size_t rejected, again;
	err = store_all(s, w, &smp->store, &rejected);
	if (!err) {
		snapshot(s, rejected, h);
		err = check_counters(w, &st, h);
	}
	if (!err)
		err = store_all(s, w, &smp->warm, &again);
	if (!err && (again != rejected || store_entry_count(s) != h->stored))
		err = run_error(w, 0, "storing the pages again changed what is stored");
	if (!err)
		err = load_all(s, w, dst, &smp->load);
	if (!err)
		err = verify(s, w, dst);
	store_destroy(s);
	if (err)
		return err;
	smp->raw_d = raw_decompress(&w->cfg, w->set, w->plan, dst);
	if (isnan(smp->raw_d) && w->plan->stored > w->plan->same_filled)
		return run_error(w, 0, "raw decompress failed");
	return 0;
}

/* ---- a row: runs, medians, targets ----------------------------------- */

static enum verdict judge(enum target t, bool applies, double v)
{
	if (!applies)
		return NA;
	return (targets[t].floor ? v >= targets[t].limit : v <= targets[t].limit) ? MET : MISSED;
}

static void evaluate(struct row *w)
{
	const struct held *h = &w->held;
	double orig = (double)h->stored * PAGE;
	double used = (double)(h->pool_bytes + h->meta_bytes);
	w->same_filled = w->plan->same_filled;
	w->csum = w->plan->csum;
	w->effective = h->stored ? orig / used : NAN;
	w->ideal = h->stored ? orig / (double)w->csum : NAN; /* inf when all same-filled */
	w->gap = isfinite(w->ideal) ? 1 - w->effective / w->ideal : NAN;
	w->meta_pp = h->stored ? (double)h->meta_bytes / (double)h->stored : NAN;
	/* a set the store never compresses (all same-filled) has no codec to compare with */
	w->verdict[T_VS_RAW] = judge(T_VS_RAW, w->same_filled < w->set->n, w->vs_raw);
	w->verdict[T_GAP] = judge(T_GAP, !strcmp(w->pool, "zsmalloc") && isfinite(w->gap), w->gap);
	w->verdict[T_META] = judge(T_META, h->stored > 0, w->meta_pp);
}

/* Median over runs of one quantity of the samples. */
static double median_of(const struct sample *smp, int runs, double (*get)(const struct sample *))
{
	double *v = bench_xcalloc((size_t)runs, sizeof(*v));
	for (int r = 0; r < runs; r++)
		v[r] = get(&smp[r]);
	double m = bench_median(v, (size_t)runs);
	free(v);
	return m;
}

static double get_raw_c(const struct sample *x) { return x->raw_c; }
static double get_store(const struct sample *x) { return x->store; }
static double get_warm(const struct sample *x) { return x->warm; }
static double get_load(const struct sample *x) { return x->load; }
static double get_raw_d(const struct sample *x) { return x->raw_d; }
static double get_vs_raw(const struct sample *x) { return x->store / x->raw_c; }
static double get_warm_vs_raw(const struct sample *x) { return x->warm / x->raw_c; }
static double get_load_vs_raw(const struct sample *x) { return x->load / x->raw_d; }

static int measure_row(struct row *w, int runs, uint8_t *dst)
{
	struct sample *smp = bench_xcalloc((size_t)runs, sizeof(*smp));
	int err = 0;
	for (int r = 0; r < runs && !err; r++)
		err = one_run(w, dst, &smp[r], &w->held);
	if (!err) {
		w->raw_c_pps = median_of(smp, runs, get_raw_c);
		w->store_pps = median_of(smp, runs, get_store);
		w->warm_pps = median_of(smp, runs, get_warm);
		w->load_pps = w->plan->stored ? median_of(smp, runs, get_load) : NAN;
		w->raw_d_pps = median_of(smp, runs, get_raw_d);
		w->vs_raw = median_of(smp, runs, get_vs_raw);
		w->warm_vs_raw = median_of(smp, runs, get_warm_vs_raw);
		w->load_vs_raw = median_of(smp, runs, get_load_vs_raw);
		evaluate(w);
	}
	free(smp);
	return err;
}

/* ---- report ---------------------------------------------------------- */

static const char *algo_name(const struct compress_cfg *cfg)
{
	return cfg->algo == COMPRESS_ZSTD ? "zstd" : "lz4";
}

static const char *verdict_name(enum verdict v)
{
	return v == MET ? "met" : v == MISSED ? "missed" : "n/a";
}

/* A table cell: "-" where there is nothing to show (no page loaded, no ideal). */
static const char *cell(char *buf, size_t len, double v, int prec, double scale,
			const char *suffix)
{
	if (!isfinite(v))
		return "-";
	snprintf(buf, len, "%.*f%s", prec, v * scale, suffix);
	return buf;
}

static void print_header(void)
{
	printf("%-7s %-8s %-6s %6s %4s %8s %6s %8s %8s %6s %8s %6s %5s %6s %6s %6s %5s %7s\n",
	       "codec", "pool", "pages", "stored", "rej", "store/s", "MB/s", "warm/s", "load/s",
	       "MB/s", "raw_c/s", "vs_raw", "warm", "ld_raw", "eff", "ideal", "gap%", "meta/pg");
}

static void print_row(const struct row *w)
{
	char name[32], c[13][16];
	printf("%-7s %-8s %-6s %6zu %4zu %8s %6s %8s %8s %6s %8s %6s %5s %6s %6s %6s %5s %7s\n",
	       compress_name(&w->cfg, name, sizeof(name)), w->pool, w->set->name,
	       w->held.stored, w->held.rejected, cell(c[0], 16, w->store_pps, 1, 1e-3, "k"),
	       cell(c[1], 16, w->store_pps, 0, PAGE / MB, ""),
	       cell(c[2], 16, w->warm_pps, 1, 1e-3, "k"), cell(c[3], 16, w->load_pps, 1, 1e-3, "k"),
	       cell(c[4], 16, w->load_pps, 0, PAGE / MB, ""),
	       cell(c[5], 16, w->raw_c_pps, 1, 1e-3, "k"), cell(c[6], 16, w->vs_raw, 2, 1, ""),
	       cell(c[7], 16, w->warm_vs_raw, 2, 1, ""), cell(c[8], 16, w->load_vs_raw, 2, 1, ""),
	       cell(c[9], 16, w->effective, 2, 1, ""), cell(c[10], 16, w->ideal, 2, 1, ""),
	       cell(c[11], 16, w->gap, 1, 100, ""), cell(c[12], 16, w->meta_pp, 2, 1, ""));
	fflush(stdout);
}

static void print_json(const struct row *w, const struct bench_opts *o)
{
	struct bench_json j;
	bench_json_begin(&j, stdout);
	bench_json_str(&j, "bench", "store_bench");
	bench_json_str(&j, "compressor", algo_name(&w->cfg));
	bench_json_num(&j, "level", w->cfg.level, 0);
	bench_json_str(&j, "pool", w->pool);
	bench_json_str(&j, "pages", w->set->name);
	bench_json_u64(&j, "npages", w->set->n);
	bench_json_u64(&j, "stored", w->held.stored);
	bench_json_u64(&j, "rejected", w->held.rejected);
	bench_json_u64(&j, "same_filled", w->same_filled);
	bench_json_num(&j, "store_pages_per_s", w->store_pps, 0);
	bench_json_num(&j, "store_mb_per_s", w->store_pps * PAGE / MB, 1);
	bench_json_num(&j, "warm_store_pages_per_s", w->warm_pps, 0);
	bench_json_num(&j, "load_pages_per_s", w->load_pps, 0);
	bench_json_num(&j, "load_mb_per_s", w->load_pps * PAGE / MB, 1);
	bench_json_num(&j, "raw_compress_pages_per_s", w->raw_c_pps, 0);
	bench_json_num(&j, "raw_decompress_pages_per_s", w->raw_d_pps, 0);
	bench_json_num(&j, "store_vs_raw", w->vs_raw, 3);
	bench_json_num(&j, "warm_store_vs_raw", w->warm_vs_raw, 3);
	bench_json_num(&j, "load_vs_raw", w->load_vs_raw, 3);
	bench_json_u64(&j, "original_bytes", (uint64_t)w->held.stored * PAGE);
	bench_json_u64(&j, "compressed_bytes", w->csum);
	bench_json_u64(&j, "pool_bytes", w->held.pool_bytes);
	bench_json_u64(&j, "metadata_bytes", w->held.meta_bytes);
	bench_json_num(&j, "effective_ratio", w->effective, 4);
	bench_json_num(&j, "ideal_ratio", w->ideal, 4);
	bench_json_num(&j, "gap_to_ideal", w->gap, 4);
	bench_json_num(&j, "metadata_bytes_per_page", w->meta_pp, 2);
	bench_json_u64(&j, "entry_size", sizeof(struct index_entry));
	bench_json_u64(&j, "runs", (uint64_t)o->runs);
	bench_json_bool(&j, "quick", o->quick);
	bench_json_str(&j, "target_store_vs_raw", verdict_name(w->verdict[T_VS_RAW]));
	bench_json_str(&j, "target_gap_to_ideal", verdict_name(w->verdict[T_GAP]));
	bench_json_str(&j, "target_metadata", verdict_name(w->verdict[T_META]));
	bench_json_end(&j);
}

static void print_legend(int runs)
{
	printf("\nstore/s, warm/s, load/s, raw_c/s: pages per second (k = 1000), median of %d run%s;\n"
	       "MB/s of uncompressed pages (10^6 B).  store: into an empty pool, every page offered\n"
	       "(rej: rejected, compressing too poorly); warm: the same pages again over their entries,\n"
	       "the pool already at its size; load: every page stored.  raw_c = compress_page() alone\n"
	       "on the same pages; vs_raw = store/s / raw_c/s, warm = warm/s / raw_c/s, ld_raw =\n"
	       "load/s / raw decompress/s, each the median of the runs' own ratios.\n"
	       "eff = stored bytes / (pool + entry bytes); ideal = stored bytes / sum of compressed\n"
	       "sizes (same-filled pages 0); gap = 1 - eff/ideal; meta/pg = entry slab bytes per page.\n",
	       runs, runs > 1 ? "s" : "");
}

static double target_value(const struct row *w, enum target t)
{
	return t == T_VS_RAW ? w->vs_raw : t == T_GAP ? w->gap : w->meta_pp;
}

/* One line per target: met or missed over the rows it applies to, and the worst row. */
static void print_target(FILE *f, const struct row *rows, size_t nrows, enum target t,
			 bool quick)
{
	size_t applies = 0, missed = 0;
	const struct row *worst = NULL;
	double wv = 0;
	for (size_t k = 0; k < nrows; k++) {
		const struct row *w = &rows[k];
		if (w->verdict[t] == NA)
			continue;
		double x = target_value(w, t);
		applies++;
		missed += w->verdict[t] == MISSED;
		if (!worst || (targets[t].floor ? x < wv : x > wv)) {
			worst = w;
			wv = x;
		}
	}
	char head[64], name[32];
	snprintf(head, sizeof(head), "%s %s %g%s:", targets[t].what, targets[t].floor ? ">=" : "<=",
		 targets[t].limit * targets[t].scale, targets[t].unit);
	if (!applies) {
		fprintf(f, "%-32s n/a (no row it applies to)\n", head);
		return;
	}
	fprintf(f, "%-32s %s on %zu of %zu rows; worst %.2f%s (%s %s %s)\n", head,
		!missed ? "met" : quick ? "below (quick run)" : "MISSED", missed ? missed : applies,
		applies, wv * targets[t].scale, targets[t].unit,
		compress_name(&worst->cfg, name, sizeof(name)), worst->pool, worst->set->name);
}

static void print_targets(const struct row *rows, size_t nrows, bool quick, FILE *f)
{
	fputc('\n', f);
	for (int t = 0; t < NTARGETS; t++)
		print_target(f, rows, nrows, (enum target)t, quick);
	if (quick)
		fprintf(f, "--quick stores %d pages per set: the last partly filled zspage and "
			   "slab weigh more than in a full run; judge the targets on a full run\n",
			QUICK_PAGES);
}

/* ---- data and options ------------------------------------------------ */

/* Keeps every k-th page, so a quick run sees the whole dump's mix. */
static void subsample(struct pageset *set, size_t target)
{
	if (set->n <= target)
		return;
	size_t step = (set->n + target - 1) / target, n = 0;
	for (size_t k = 0; k < set->n; k += step)
		memmove(set->pages + n++ * PAGE, page_at(set, k), PAGE);
	set->n = n;
}

static bool selected(const char *want, const char *name)
{
	return !want || !strcmp(want, name);
}

/*
 * The real sets go through corpus_load(), which reads $ZSWAPU_PAGES_DIR;
 * it aborts on a missing file, so each file is checked first to fail
 * with a message naming --data instead.
 */
static int load_real(const struct bench_opts *o, const char *name, struct pageset *set)
{
	char dir[4096], path[4200];
	snprintf(dir, sizeof(dir), "%s/pages", o->data);
	snprintf(path, sizeof(path), "%s/%s.pages.xz", dir, name);
	if (access(path, R_OK)) {
		fprintf(stderr, "store_bench: %s: %s (see --data)\n", path, strerror(errno));
		return -errno;
	}
	setenv("ZSWAPU_PAGES_DIR", dir, 1);
	set->name = name;
	set->pages = corpus_load(name, &set->n);
	return 0;
}

static void make_synth(enum corpus_kind kind, size_t n, struct pageset *set)
{
	set->name = corpus_kind_names[kind];
	set->n = n;
	set->pages = bench_xcalloc(n, PAGE);
	for (size_t k = 0; k < n; k++)
		corpus_synth(kind, 0x5109e + 7919 * kind + k, set->pages + k * PAGE);
}

/* Loads the selected sets; @return how many, or -errno. */
static int load_sets(const struct bench_opts *o, const char *only, struct pageset *sets)
{
	int n = 0;
	for (size_t c = 0; c < CORPUS_NR; c++) {
		if (!selected(only, corpus_names[c]))
			continue;
		int err = load_real(o, corpus_names[c], &sets[n]);
		if (err)
			return err;
		if (o->quick)
			subsample(&sets[n], QUICK_PAGES);
		n++;
	}
	for (size_t s = 0; s < NSYNTH; s++)
		if (selected(only, corpus_kind_names[synth_kinds[s]]))
			make_synth(synth_kinds[s], o->quick ? QUICK_PAGES : SYNTH_PAGES, &sets[n++]);
	return n;
}

/* What runs: compressors, pools, and the one page set asked for (NULL: all). */
struct selection {
	struct compress_cfg cfg[NCOMPS];
	size_t ncfg;
	const char *pools[MAX_POOLS];
	size_t npools;
	const char *pages;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: store_bench [options]\n"
		   "Stores and loads real and synthetic pages through the store: speed against\n"
		   "the raw compressor, effective compression ratio, metadata per page.\n"
		   "%s"
		   "  --compressor SPEC  one compressor only (lz4, zstd, lz4:8, zstd:3, ...)\n"
		   "  --pool NAME        one pool only (zsmalloc, z3fold, zbud)\n"
		   "  --pages NAME       one page set only (python, redis, node, sqlite, text,\n"
		   "                     zero, random)\n",
		bench_common_usage());
}

/* Both compressors, or the one given (compress_parse() logs what it accepts). */
static int select_compressors(const char *only, struct selection *sel)
{
	sel->ncfg = 0;
	for (size_t c = 0; c < (only ? 1 : NCOMPS); c++)
		if (compress_parse(only ? only : compressor_specs[c], &sel->cfg[sel->ncfg++]))
			return -EINVAL;
	return 0;
}

/* Every pool driver zpool has (zsmalloc, z3fold, zbud), or the one named. */
static int select_pools(const char *only, struct selection *sel)
{
	if (only && !zpool_has_pool(only)) {
		fprintf(stderr, "store_bench: unknown pool '%s'\n", only);
		return -EINVAL;
	}
	sel->npools = 0;
	for (const char *const *d = zpool_driver_names(); *d && sel->npools < MAX_POOLS; d++)
		if (selected(only, *d))
			sel->pools[sel->npools++] = *d;
	return 0;
}

struct own_opts {
	const char *comp, *pool, **pages;
};

/* bench_parse_args()'s callback: --compressor, --pool and --pages take a value. */
static int own_arg(void *ctx, const char *arg, const char *val)
{
	struct own_opts *w = ctx;
	const char **slot = !strcmp(arg, "--compressor") ? &w->comp
			    : !strcmp(arg, "--pool")     ? &w->pool
			    : !strcmp(arg, "--pages")    ? w->pages
							 : NULL;
	if (!slot || !val)
		return 0;
	*slot = val;
	return 2;
}

/* @return -1 to go on and run, else the exit status (help, bad use). */
static int parse_args(int argc, char **argv, struct bench_opts *o, struct selection *sel)
{
	struct own_opts w = { .pages = &sel->pages };
	int ret = bench_parse_args(o, argc, argv, "store_bench", usage, own_arg, &w);
	if (ret >= 0)
		return ret;
	bench_opts_finish(o);
	if (select_compressors(w.comp, sel) || select_pools(w.pool, sel))
		return 2;
	return -1;
}

/* Every selected compressor x pool x set; @return the exit status. */
static int run_all(const struct bench_opts *o, const struct selection *sel,
		   const struct pageset *sets, int nsets)
{
	size_t maxn = 0;
	for (int s = 0; s < nsets; s++)
		maxn = sets[s].n > maxn ? sets[s].n : maxn;
	/* pre-touched so that no run pays first-touch faults on its loads */
	uint8_t *dst = bench_xcalloc(maxn, PAGE);
	memset(dst, 0xa5, maxn * PAGE);
	struct row *rows = bench_xcalloc(sel->ncfg * sel->npools * (size_t)nsets, sizeof(*rows));
	size_t nrows = 0;
	int ret = 0;
	if (!o->json)
		print_header();
	for (size_t c = 0; c < sel->ncfg; c++)
		for (int s = 0; s < nsets; s++) {
			struct plan plan;
			if (plan_make(&sel->cfg[c], &sets[s], &plan)) {
				plan_free(&plan);
				ret = 1;
				continue;
			}
			for (size_t p = 0; p < sel->npools; p++) {
				struct row *w = &rows[nrows];
				*w = (struct row){ .cfg = sel->cfg[c], .pool = sel->pools[p],
						   .set = &sets[s], .plan = &plan };
				if (measure_row(w, o->runs, dst)) {
					ret = 1;
					continue;
				}
				w->plan = NULL; /* freed below; evaluate() copied what it needs */
				if (o->json)
					print_json(w, o);
				else
					print_row(w);
				nrows++;
			}
			plan_free(&plan);
		}
	if (nrows && !o->json)
		print_legend(o->runs);
	if (nrows)
		print_targets(rows, nrows, o->quick, o->json ? stderr : stdout);
	free(rows);
	free(dst);
	return ret;
}

int main(int argc, char **argv)
{
	struct bench_opts o;
	struct selection sel = { 0 };
	int ret = parse_args(argc, argv, &o, &sel);
	if (ret >= 0)
		return ret;
	struct pageset sets[NSETS];
	int nsets = load_sets(&o, sel.pages, sets);
	if (nsets == 0) {
		fprintf(stderr, "store_bench: no page set named '%s'\n", sel.pages);
		return 2;
	}
	if (nsets < 0)
		return 1;
	ret = run_all(&o, &sel, sets, nsets);
	for (int s = 0; s < nsets; s++)
		free(sets[s].pages);
	return ret;
}

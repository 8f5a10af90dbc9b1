/*
 * test_compress — the codecs over real heap pages (all four corpora) and
 * synthetic ones: byte-identical round trips, the dst cap (-E2BIG), hostile
 * input to decompress, same-filled detection, option parsing and its
 * message, per-thread contexts under concurrency, and compression ratios
 * against the figures in NUMBERS.md (a broken codec shows as a ratio).
 */
#define ZSTD_STATIC_LINKING_ONLY
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <lz4.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "core/compress.h"
#include "core/log.h"
#include "pools/pagesrc.h"
#include "tests/corpus.h"
#include "tests/logcap.h"

#define PAGE COMPRESS_PAGE_SIZE

/*
 * TSan makes every byte read many times dearer; the whole-corpus scans
 * test no concurrency, so under TSan they read every 4th page (ratios on
 * such a sample stay within 3 % of the full corpus).
 */
#ifdef __SANITIZE_THREAD__
#define SCAN_STRIDE 4
#else
#define SCAN_STRIDE 1
#endif

static uint8_t *corpus[CORPUS_NR];
static size_t corpus_npages[CORPUS_NR];

static void load_corpora(void)
{
	for (size_t c = 0; c < CORPUS_NR; c++)
		if (!corpus[c])
			corpus[c] = corpus_load(corpus_names[c], &corpus_npages[c]);
}

static void free_corpora(void)
{
	for (size_t c = 0; c < CORPUS_NR; c++) {
		free(corpus[c]);
		corpus[c] = NULL;
	}
}

static const char *const specs[] = { "lz4", "lz4:8", "zstd:1", "zstd:3", "zstd:-1" };
#define NSPECS (sizeof(specs) / sizeof(specs[0]))

static struct compress_cfg cfg_of(const char *spec)
{
	struct compress_cfg cfg;
	ck_assert_int_eq(compress_parse(spec, &cfg), 0);
	return cfg;
}

/*
 * Compress, decompress, compare; returns the compressed length.  Check
 * writes a mark per ck_assert (a syscall): per-page checks use plain
 * comparisons and assert once.
 */
static size_t round_trip(const struct compress_cfg *cfg, const uint8_t *page)
{
	uint8_t dst[2 * PAGE], out[PAGE];
	size_t len = 0;
	int err = compress_page(cfg, page, dst, sizeof(dst), &len);
	if (err || len < 1 || len > sizeof(dst))
		ck_abort_msg("compress: %d, len %zu", err, len);
	memset(out, 0xa5, sizeof(out));
	err = compress_decompress(cfg, dst, len, out);
	if (err || memcmp(out, page, PAGE) != 0)
		ck_abort_msg("round trip changed the page (decompress %d)", err);
	return len;
}

START_TEST(test_round_trip_real)
{
	struct compress_cfg cfg = cfg_of(specs[_i]);
	for (size_t c = 0; c < CORPUS_NR; c++) {
		ck_assert_uint_eq(corpus_npages[c], CORPUS_PAGES);
		/* every 3rd page keeps the suite fast; the ratio test reads all */
		for (size_t i = _i % 3; i < corpus_npages[c]; i += 3 * SCAN_STRIDE)
			round_trip(&cfg, corpus[c] + i * PAGE);
	}
}
END_TEST

START_TEST(test_round_trip_synthetic)
{
	struct compress_cfg cfg = cfg_of(specs[_i]);
	uint8_t page[PAGE];
	for (int k = 0; k < CORPUS_KINDS; k++) {
		for (uint64_t seed = 1; seed <= 16; seed++) {
			corpus_synth(k, seed, page);
			size_t len = round_trip(&cfg, page);
			if (k == CORPUS_ZERO || k == CORPUS_SAME)
				ck_assert_uint_lt(len, 128);
			if (k == CORPUS_TEXT || k == CORPUS_HEAP)
				ck_assert_uint_lt(len, PAGE * 5 / 8);
		}
	}
}
END_TEST

/* Every level parse accepts works, switching levels within one thread. */
START_TEST(test_all_zstd_levels)
{
	const uint8_t *page = corpus[0] + 100 * PAGE;
	char spec[32];
	struct compress_cfg cfg;
	int lo = ZSTD_minCLevel(), accepted = 0;
	for (int l = lo; l <= ZSTD_maxCLevel(); l++) {
		if (l < -7 && l != lo)
			continue; /* the fast levels below -7 behave alike */
		snprintf(spec, sizeof(spec), "zstd:%d", l);
		log_set_level(0);
		int err = compress_parse(spec, &cfg);
		log_set_level(LOG_ERROR);
		if (err)
			break; /* higher levels need more than one pagesrc run */
		round_trip(&cfg, page);
		accepted = l;
	}
	ck_assert_int_ge(accepted, 9);
	/* and back down: a smaller level after a larger one still works */
	round_trip(&(struct compress_cfg){ COMPRESS_ZSTD, 1 }, page);
	round_trip(&(struct compress_cfg){ COMPRESS_ZSTD, accepted }, page);
	round_trip(&(struct compress_cfg){ COMPRESS_ZSTD, -3 }, page);
}
END_TEST

START_TEST(test_cap_e2big)
{
	struct compress_cfg cfg = cfg_of(specs[_i]);
	uint8_t dst[2 * PAGE], dst2[2 * PAGE];
	for (size_t c = 0; c < CORPUS_NR; c++) {
		for (size_t i = 7; i < corpus_npages[c]; i += 401) {
			const uint8_t *page = corpus[c] + i * PAGE;
			size_t len, len2;
			ck_assert_int_eq(compress_page(&cfg, page, dst, sizeof(dst), &len), 0);
			/* an exact cap fits and gives the same bytes */
			ck_assert_int_eq(compress_page(&cfg, page, dst2, len, &len2), 0);
			ck_assert_uint_eq(len2, len);
			ck_assert(memcmp(dst, dst2, len) == 0);
			memset(dst2, 0x5a, sizeof(dst2));
			ck_assert_int_eq(compress_page(&cfg, page, dst2, len - 1, &len2), -E2BIG);
			/* nothing written past the cap */
			for (size_t j = len - 1; j < sizeof(dst2); j++)
				if (dst2[j] != 0x5a)
					ck_abort_msg("wrote past the cap at %zu", j);
			ck_assert_int_eq(compress_page(&cfg, page, dst2, 1, &len2), -E2BIG);
			ck_assert_int_eq(compress_page(&cfg, page, dst2, 0, &len2), -E2BIG);
		}
	}
}
END_TEST

START_TEST(test_random_incompressible)
{
	struct compress_cfg cfg = cfg_of(specs[_i]);
	uint8_t page[PAGE], dst[2 * PAGE];
	for (uint64_t seed = 1; seed <= 32; seed++) {
		corpus_synth(CORPUS_RANDOM, seed, page);
		size_t len = round_trip(&cfg, page);
		ck_assert_uint_gt(len, PAGE - 512);
		ck_assert_int_eq(compress_page(&cfg, page, dst, PAGE - 512, &len), -E2BIG);
	}
}
END_TEST

/* Decompress into a page with guard bytes either side. */
static int guarded_decompress(const struct compress_cfg *cfg, const void *src,
			      size_t len)
{
	static uint8_t buf[3 * PAGE];
	memset(buf, 0xc3, sizeof(buf));
	int err = compress_decompress(cfg, src, len, buf + PAGE);
	for (size_t j = 0; j < PAGE; j++)
		if (buf[j] != 0xc3 || buf[2 * PAGE + j] != 0xc3)
			ck_abort_msg("decompress wrote outside the page");
	if (err != 0 && err != -EIO)
		ck_abort_msg("decompress returned %d", err);
	return err;
}

/* Heap copy of exactly @len bytes, so ASan sees any read past the end. */
static uint8_t *exact_copy(const void *src, size_t len)
{
	uint8_t *p = malloc(len);
	memcpy(p, src, len);
	return p;
}

START_TEST(test_decompress_hostile)
{
	struct compress_cfg cfg = cfg_of(specs[_i]);
	uint8_t dst[2 * PAGE];
	uint64_t rs = 12345 + _i;
	for (size_t c = 0; c < CORPUS_NR; c++) {
		for (size_t i = 3; i < corpus_npages[c]; i += 509) {
			size_t len;
			ck_assert_int_eq(compress_page(&cfg, corpus[c] + i * PAGE, dst,
						       sizeof(dst), &len), 0);
			/* truncated: an lz4/zstd stream missing its tail is invalid */
			size_t cuts[] = { len - 1, len / 2, 1 };
			for (size_t k = 0; k < 3; k++) {
				uint8_t *p = exact_copy(dst, cuts[k]);
				ck_assert_int_eq(guarded_decompress(&cfg, p, cuts[k]), -EIO);
				free(p);
			}
			/* bit flips: -EIO or some page, never a crash or overrun */
			for (int k = 0; k < 64; k++) {
				uint8_t *p = exact_copy(dst, len);
				size_t bit = corpus_rand(&rs) % (len * 8);
				p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
				guarded_decompress(&cfg, p, len);
				free(p);
			}
		}
	}
	/* garbage of many lengths */
	for (int k = 0; k < 300; k++) {
		size_t len = 1 + corpus_rand(&rs) % (2 * PAGE);
		uint8_t *p = malloc(len);
		for (size_t j = 0; j < len; j++)
			p[j] = (uint8_t)corpus_rand(&rs);
		guarded_decompress(&cfg, p, len);
		free(p);
	}
	ck_assert_int_eq(compress_decompress(&cfg, dst, 0, dst + PAGE), -EIO);
}
END_TEST

/* A valid stream of @n bytes (not a page) in the format compress_page uses. */
static size_t encode_len(enum compress_algo algo, const uint8_t *src, size_t n,
			 uint8_t *dst, size_t cap)
{
	if (algo == COMPRESS_LZ4) {
		int r = LZ4_compress_default((const char *)src, (char *)dst, (int)n, (int)cap);
		ck_assert_int_gt(r, 0);
		return (size_t)r;
	}
	ZSTD_CCtx *c = ZSTD_createCCtx();
	ZSTD_CCtx_setParameter(c, ZSTD_c_format, ZSTD_f_zstd1_magicless);
	ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 0);
	size_t r = ZSTD_compress2(c, dst, cap, src, n);
	ZSTD_freeCCtx(c);
	ck_assert(!ZSTD_isError(r));
	return r;
}

START_TEST(test_decompress_wrong_length)
{
	enum compress_algo algo = _i ? COMPRESS_ZSTD : COMPRESS_LZ4;
	struct compress_cfg cfg = { algo, 1 };
	uint8_t src[2 * PAGE], enc[3 * PAGE];
	corpus_synth(CORPUS_TEXT, 9, src);
	corpus_synth(CORPUS_TEXT, 10, src + PAGE);
	size_t sizes[] = { PAGE - 1, PAGE + 1, PAGE / 2, 2 * PAGE, 1 };
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		size_t len = encode_len(algo, src, sizes[k], enc, sizeof(enc));
		ck_assert_int_eq(guarded_decompress(&cfg, enc, len), -EIO);
	}
	/* the same encoder on exactly one page is accepted: the format matches */
	size_t len = encode_len(algo, src, PAGE, enc, sizeof(enc));
	ck_assert_int_eq(guarded_decompress(&cfg, enc, len), 0);
	/* one page followed by trailing bytes is not a page's worth of data */
	enc[len] = 0;
	enc[len + 1] = 0x11;
	ck_assert_int_eq(guarded_decompress(&cfg, enc, len + 2), -EIO);
}
END_TEST

START_TEST(test_same_filled)
{
	uint8_t page[PAGE];
	uint64_t v = 77;
	corpus_synth(CORPUS_ZERO, 0, page);
	ck_assert(compress_same_filled(page, &v));
	ck_assert_uint_eq(v, 0);

	for (uint64_t seed = 1; seed < 8; seed++) {
		corpus_synth(CORPUS_SAME, seed, page);
		uint64_t want;
		memcpy(&want, page, 8);
		ck_assert(compress_same_filled(page, &v));
		ck_assert_uint_eq(v, want);
		uint8_t again[PAGE];
		compress_fill_page(again, v);
		ck_assert(memcmp(again, page, PAGE) == 0);
		/* one byte off anywhere, including the very last, is not same-filled */
		size_t spots[] = { 0, 1, 7, 8, 63, 64, 2047, 4088, PAGE - 2, PAGE - 1 };
		for (size_t k = 0; k < sizeof(spots) / sizeof(spots[0]); k++) {
			page[spots[k]] ^= 0x10;
			v = 1234;
			ck_assert_msg(!compress_same_filled(page, &v), "byte %zu", spots[k]);
			ck_assert_uint_eq(v, 1234);
			page[spots[k]] ^= 0x10;
		}
	}
	/* a repeated 4-byte pattern is an 8-byte word repeated too */
	for (size_t i = 0; i < PAGE; i += 4)
		memcpy(page + i, "\x01\x02\x03\x04", 4);
	ck_assert(compress_same_filled(page, &v));
	compress_fill_page(page, 0);
	ck_assert(compress_same_filled(page, &v) && v == 0);
	for (int k = CORPUS_TEXT; k < CORPUS_KINDS; k++) {
		corpus_synth(k, 3, page);
		ck_assert_int_eq(compress_same_filled(page, &v),
				 k == CORPUS_ZERO || k == CORPUS_SAME);
	}
}
END_TEST

/* The real corpora: node has many zero pages, the others hardly any. */
START_TEST(test_same_filled_real)
{
	size_t count[CORPUS_NR] = { 0 }, n = CORPUS_PAGES / SCAN_STRIDE;
	for (size_t c = 0; c < CORPUS_NR; c++) {
		for (size_t i = 0; i < corpus_npages[c]; i += SCAN_STRIDE) {
			uint64_t v;
			const uint8_t *p = corpus[c] + i * PAGE;
			if (compress_same_filled(p, &v)) {
				count[c]++;
				uint8_t again[PAGE];
				compress_fill_page(again, v);
				if (memcmp(again, p, PAGE))
					ck_abort_msg("%s page %zu is not same-filled",
						     corpus_names[c], i);
			}
		}
	}
	ck_assert_uint_lt(count[0], n / 50); /* python */
	ck_assert_uint_lt(count[1], n / 50); /* redis */
	ck_assert_uint_gt(count[2], n / 25); /* node */
	ck_assert_uint_lt(count[2], n / 8);
	ck_assert_uint_lt(count[3], n / 50); /* sqlite */
}
END_TEST

/* Run compress_parse with the log captured; returns its result. */
static int parse_capture(const char *spec, struct compress_cfg *cfg, char *msg,
			 size_t cap)
{
	struct logcap c;
	logcap_begin(&c);
	int err = compress_parse(spec, cfg);
	logcap_end(&c, msg, cap);
	return err;
}

START_TEST(test_parse)
{
	static const struct {
		const char *spec, *name;
	} good[] = {
		{ "lz4", "lz4:1" },	   { "lz4:1", "lz4:1" },     { "lz4:8", "lz4:8" },
		{ "lz4:65537", "lz4:65537" }, { "zstd", "zstd:1" },   { "zstd:1", "zstd:1" },
		{ "zstd:3", "zstd:3" },    { "zstd:-1", "zstd:-1" }, { "zstd:0", "zstd:3" },
		{ "zstd:9", "zstd:9" },
	};
	static const char *const bad[] = {
		"", "lz4:", "lz4:0", "lz4:-1", "lz4:65538", "lz4:x", "lz4:1x", "lz4 ",
		"LZ4", "lz", "lz4x", "zstd:", "zstd:99", "zstd:-9999999", "zstd:3.5",
		"zstd: 3", "zstd:+3", "zstd:3:4", "gzip", "lzo", ":3", "zstd:99999999999",
	};
	struct compress_cfg cfg;
	char msg[1024], name[32];
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		ck_assert_int_eq(parse_capture(good[i].spec, &cfg, msg, sizeof(msg)), 0);
		ck_assert_str_eq(msg, "");
		ck_assert_str_eq(compress_name(&cfg, name, sizeof(name)), good[i].name);
		/* the printed name parses back to the same setting */
		struct compress_cfg again;
		ck_assert_int_eq(compress_parse(name, &again), 0);
		ck_assert(again.algo == cfg.algo && again.level == cfg.level);
	}
	char spec[32];
	snprintf(spec, sizeof(spec), "zstd:%d", ZSTD_minCLevel());
	ck_assert_int_eq(compress_parse(spec, &cfg), 0);
	ck_assert_int_eq(cfg.level, ZSTD_minCLevel());

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cfg = (struct compress_cfg){ COMPRESS_ZSTD, 42 };
		ck_assert_int_eq(parse_capture(bad[i], &cfg, msg, sizeof(msg)), -EINVAL);
		ck_assert_msg(cfg.algo == COMPRESS_ZSTD && cfg.level == 42,
			      "'%s' changed the output", bad[i]);
		/* one line naming what is accepted */
		ck_assert_msg(strstr(msg, "lz4") && strstr(msg, "zstd:N"), "'%s': %s",
			      bad[i], msg);
		ck_assert_ptr_eq(strchr(msg, '\n'), msg + strlen(msg) - 1);
	}
	ck_assert_int_eq(parse_capture(NULL, &cfg, msg, sizeof(msg)), -EINVAL);
}
END_TEST

/* ---- per-thread contexts -------------------------------------------- */

#define MT_PAGES 96
#define MT_ROUNDS 3

static const struct compress_cfg mt_cfgs[] = {
	{ COMPRESS_LZ4, 1 }, { COMPRESS_ZSTD, 1 }, { COMPRESS_ZSTD, 3 },
	{ COMPRESS_ZSTD, 9 }, { COMPRESS_LZ4, 8 }, { COMPRESS_ZSTD, -2 },
};
#define MT_NCFG (sizeof(mt_cfgs) / sizeof(mt_cfgs[0]))

struct mt_ref {
	uint8_t data[2 * PAGE];
	size_t len;
};
static struct mt_ref (*mt_ref)[MT_PAGES];

static const uint8_t *mt_page(size_t i)
{
	return corpus[i % CORPUS_NR] + (i * 37 % CORPUS_PAGES) * PAGE;
}

struct mt_arg {
	int id;
	int bad;
};

/* Each thread walks the configurations in its own order, page by page. */
static void *mt_worker(void *p)
{
	struct mt_arg *a = p;
	uint8_t dst[2 * PAGE], out[PAGE];
	for (int r = 0; r < MT_ROUNDS; r++) {
		for (size_t i = 0; i < MT_PAGES; i++) {
			size_t k = (i + (size_t)a->id * 5 + (size_t)r) % MT_NCFG, len;
			if (compress_page(&mt_cfgs[k], mt_page(i), dst, sizeof(dst), &len) ||
			    len != mt_ref[k][i].len || memcmp(dst, mt_ref[k][i].data, len) ||
			    compress_decompress(&mt_cfgs[k], dst, len, out) ||
			    memcmp(out, mt_page(i), PAGE))
				a->bad++;
		}
	}
	return NULL;
}

START_TEST(test_threads)
{
	mt_ref = calloc(MT_NCFG, sizeof(*mt_ref));
	for (size_t k = 0; k < MT_NCFG; k++)
		for (size_t i = 0; i < MT_PAGES; i++)
			ck_assert_int_eq(compress_page(&mt_cfgs[k], mt_page(i),
						       mt_ref[k][i].data, 2 * PAGE,
						       &mt_ref[k][i].len), 0);
	struct pagesrc_stats before, after;
	pagesrc_get_stats(&before);
	pthread_t th[4];
	struct mt_arg args[4];
	for (int t = 0; t < 4; t++) {
		args[t] = (struct mt_arg){ .id = t };
		ck_assert_int_eq(pthread_create(&th[t], NULL, mt_worker, &args[t]), 0);
	}
	for (int t = 0; t < 4; t++) {
		pthread_join(th[t], NULL);
		ck_assert_int_eq(args[t].bad, 0);
	}
	/* every exited thread gave its contexts back */
	pagesrc_get_stats(&after);
	ck_assert_uint_eq(after.used_pages, before.used_pages);
	free(mt_ref);
}
END_TEST

/* ---- ratios against NUMBERS.md ----------------------------------------- */

/* original / compressed over non-same-filled pages, sizes capped at a page */
static double ratio(const struct compress_cfg *cfg, size_t c)
{
	uint8_t dst[2 * PAGE];
	double in = 0, out = 0;
	for (size_t i = 0; i < corpus_npages[c]; i += SCAN_STRIDE) {
		const uint8_t *p = corpus[c] + i * PAGE;
		uint64_t v;
		size_t len;
		if (compress_same_filled(p, &v))
			continue;
		if (compress_page(cfg, p, dst, sizeof(dst), &len))
			ck_abort_msg("compress failed on page %zu", i);
		in += PAGE;
		out += len < PAGE ? len : PAGE;
	}
	return in / out;
}

START_TEST(test_ratio)
{
	/* NUMBERS.md, whole-heap figures; the 4096-page samples land within 2 % */
	static const double want[CORPUS_NR][2] = {
		{ 2.61, 4.24 }, { 5.96, 10.00 }, { 2.57, 4.14 }, { 1.72, 2.22 },
	};
	static const struct compress_cfg cfgs[2] = { { COMPRESS_LZ4, 1 },
						     { COMPRESS_ZSTD, 1 } };
	for (size_t c = 0; c < CORPUS_NR; c++) {
		for (int k = 0; k < 2; k++) {
			double r = ratio(&cfgs[k], c);
			ck_assert_msg(r > want[c][k] * 0.95 && r < want[c][k] * 1.05,
				      "%s %s ratio %.3f, expected %.2f +- 5%%",
				      corpus_names[c], k ? "zstd:1" : "lz4", r, want[c][k]);
		}
	}
}
END_TEST

Suite *compress_suite(void)
{
	Suite *s = suite_create("compress");
	TCase *tc = tcase_create("codec");
	tcase_add_unchecked_fixture(tc, load_corpora, free_corpora);
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, test_round_trip_real, 0, NSPECS);
	tcase_add_loop_test(tc, test_round_trip_synthetic, 0, NSPECS);
	tcase_add_test(tc, test_all_zstd_levels);
	tcase_add_loop_test(tc, test_cap_e2big, 0, NSPECS);
	tcase_add_loop_test(tc, test_random_incompressible, 0, NSPECS);
	tcase_add_loop_test(tc, test_decompress_hostile, 0, NSPECS);
	tcase_add_loop_test(tc, test_decompress_wrong_length, 0, 2);
	tcase_add_test(tc, test_same_filled);
	tcase_add_test(tc, test_same_filled_real);
	tcase_add_test(tc, test_parse);
	tcase_add_test(tc, test_threads);
	tcase_add_test(tc, test_ratio);
	suite_add_tcase(s, tc);
	return s;
}

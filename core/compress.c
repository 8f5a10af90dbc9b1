/*
 * compress — see compress.h.
 *
 * Per-thread contexts.  Each thread's codec state lives in engine memory
 * (pagesrc) and is reached through an initial-exec TLS pointer: this
 * library is LD_PRELOADed, and the general-dynamic model may call malloc
 * from __tls_get_addr the first time a thread touches the variable — the
 * very thing an engine thread must never do (BRIEF trap 2).  The context
 * is made on the thread's first call and given back by a pthread key
 * destructor when the thread exits; the key is created once, and a key
 * below 32 (the usual case: we create it early) needs no malloc in
 * pthread_setspecific either.
 *
 * Layout: one run of 6 pages holds struct tctx, the lz4 state and a
 * scratch buffer for zstd output (see zstd_compress).  The zstd contexts
 * are separate runs made on first zstd use (19-26 pages to compress at
 * levels -131072..10, 24 to decompress).  They are "static"
 * (ZSTD_initStatic*): they live in a workspace we hand them and never
 * allocate.  The compression workspace is sized for a 4 KiB input at the
 * current level and grown when a later call asks for a level that needs
 * more; levels whose workspace exceeds PAGESRC_MAX_RUN pages (zstd 11 and
 * up with zstd 1.5) are rejected by compress_parse().
 *
 * zstd frames are written magicless, without content size, checksum or
 * dictionary id: the store keeps each page's length and algorithm, so those
 * fields would only repeat what the caller knows (5 bytes a page saved).
 *
 * Locking: none.  A context is only ever touched by its own thread.
 */
#define ZSTD_STATIC_LINKING_ONLY
#include "core/compress.h"

#include <errno.h>
#include <limits.h>
#include <lz4.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "core/log.h"
#include "pools/pagesrc.h"

#define LZ4_ACCEL_MAX 65537 /* LZ4_ACCELERATION_MAX in lz4.c */
#define ZSTD_LEVEL_DEFAULT 1
#define CTX_HDR 64 /* struct tctx, rounded up; the lz4 state follows */

struct tctx {
	ZSTD_CCtx *cctx;
	void *cctx_ws;
	size_t cctx_pages;
	int cctx_level; /* level the cctx is set to */
	ZSTD_DCtx *dctx;
	void *dctx_ws;
	size_t dctx_pages;
};

_Static_assert(sizeof(struct tctx) <= CTX_HDR, "tctx header overflows");

static __thread struct tctx *tls_ctx __attribute__((tls_model("initial-exec")));
static pthread_key_t ctx_key;
static pthread_once_t ctx_key_once = PTHREAD_ONCE_INIT;
static int ctx_key_err;

static size_t pages_for(size_t bytes)
{
	return (bytes + PAGESRC_PAGE_SIZE - 1) / PAGESRC_PAGE_SIZE;
}

#define ZSTD_SCRATCH ZSTD_COMPRESSBOUND(COMPRESS_PAGE_SIZE)

static size_t ctx_pages(void)
{
	return pages_for(CTX_HDR + (size_t)LZ4_sizeofState() + ZSTD_SCRATCH);
}

static void *lz4_state(struct tctx *t)
{
	return (char *)t + CTX_HDR;
}

static void *zstd_scratch(struct tctx *t)
{
	return (char *)lz4_state(t) + LZ4_sizeofState();
}

static void ctx_release(void *arg)
{
	struct tctx *t = arg;
	if (t->cctx_ws)
		pagesrc_free(t->cctx_ws, t->cctx_pages);
	if (t->dctx_ws)
		pagesrc_free(t->dctx_ws, t->dctx_pages);
	pagesrc_free(t, ctx_pages());
	tls_ctx = NULL;
}

static void ctx_key_create(void)
{
	ctx_key_err = -pthread_key_create(&ctx_key, ctx_release);
}

/* This thread's context; made on first use.  NULL when out of memory. */
static struct tctx *ctx_get(void)
{
	struct tctx *t = tls_ctx;
	if (t)
		return t;
	pthread_once(&ctx_key_once, ctx_key_create);
	if (ctx_key_err)
		return NULL;
	void *p;
	if (pagesrc_alloc(ctx_pages(), &p))
		return NULL;
	t = p;
	memset(t, 0, sizeof(*t));
	if (pthread_setspecific(ctx_key, t)) {
		pagesrc_free(p, ctx_pages());
		return NULL;
	}
	tls_ctx = t;
	return t;
}

/* ---- zstd contexts ---------------------------------------------------- */

static size_t zstd_cctx_bytes(int level)
{
	return ZSTD_estimateCCtxSize_usingCParams(
		ZSTD_getCParams(level, COMPRESS_PAGE_SIZE, 0));
}

static bool zstd_level_fits(int level)
{
	return pages_for(zstd_cctx_bytes(level)) <= PAGESRC_MAX_RUN;
}

static int zstd_cctx_setup(ZSTD_CCtx *c, int level)
{
	size_t r = ZSTD_CCtx_setParameter(c, ZSTD_c_format, ZSTD_f_zstd1_magicless);
	if (!ZSTD_isError(r))
		r = ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 0);
	if (!ZSTD_isError(r))
		r = ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 0);
	if (!ZSTD_isError(r))
		r = ZSTD_CCtx_setParameter(c, ZSTD_c_dictIDFlag, 0);
	if (!ZSTD_isError(r))
		r = ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level);
	return ZSTD_isError(r) ? -EIO : 0;
}

/* Make the cctx ready for @level: grow its workspace if that level needs it. */
static int zstd_cctx_for(struct tctx *t, int level)
{
	if (t->cctx && t->cctx_level == level)
		return 0;
	size_t need = pages_for(zstd_cctx_bytes(level));
	if (need > PAGESRC_MAX_RUN)
		return -ENOMEM;
	if (need > t->cctx_pages) {
		void *ws;
		if (pagesrc_alloc(need, &ws))
			return -ENOMEM;
		if (t->cctx_ws)
			pagesrc_free(t->cctx_ws, t->cctx_pages);
		t->cctx_ws = ws;
		t->cctx_pages = need;
		t->cctx = NULL;
	}
	if (!t->cctx) {
		t->cctx = ZSTD_initStaticCCtx(t->cctx_ws,
					      t->cctx_pages * PAGESRC_PAGE_SIZE);
		if (!t->cctx)
			return -ENOMEM;
		if (zstd_cctx_setup(t->cctx, level)) {
			t->cctx = NULL;
			return -EIO;
		}
	} else if (ZSTD_isError(ZSTD_CCtx_setParameter(
			   t->cctx, ZSTD_c_compressionLevel, level))) {
		return -EIO;
	}
	t->cctx_level = level;
	return 0;
}

static int zstd_dctx_get(struct tctx *t)
{
	if (t->dctx)
		return 0;
	size_t need = pages_for(ZSTD_estimateDCtxSize());
	if (!t->dctx_ws) {
		if (need > PAGESRC_MAX_RUN || pagesrc_alloc(need, &t->dctx_ws))
			return -ENOMEM;
		t->dctx_pages = need;
	}
	t->dctx = ZSTD_initStaticDCtx(t->dctx_ws, need * PAGESRC_PAGE_SIZE);
	if (!t->dctx)
		return -ENOMEM;
	if (ZSTD_isError(ZSTD_DCtx_setParameter(t->dctx, ZSTD_d_format,
						ZSTD_f_zstd1_magicless))) {
		t->dctx = NULL;
		return -EIO;
	}
	return 0;
}

/* ---- compress / decompress -------------------------------------------- */

static int lz4_compress(struct tctx *t, int accel, const void *src, void *dst,
			size_t dst_cap, size_t *out_len)
{
	int cap = dst_cap > INT_MAX ? INT_MAX : (int)dst_cap;
	int n = LZ4_compress_fast_extState(lz4_state(t), src, dst,
					   COMPRESS_PAGE_SIZE, cap, accel);
	/* With a valid state and a 4 KiB input, 0 only means "did not fit". */
	if (n <= 0)
		return -E2BIG;
	*out_len = (size_t)n;
	return 0;
}

static int zstd_compress(struct tctx *t, int level, const void *src, void *dst,
			 size_t dst_cap, size_t *out_len)
{
	int err = zstd_cctx_for(t, level);
	if (err)
		return err;
	/*
	 * zstd wants headroom beyond the final size and reports dstSize_tooSmall
	 * for a result that would fit exactly; below the bound it writes to
	 * scratch so the cap is exact (the copy is ~1 % of the compress).
	 */
	void *out = dst_cap >= ZSTD_SCRATCH ? dst : zstd_scratch(t);
	size_t n = ZSTD_compress2(t->cctx, out, ZSTD_SCRATCH, src, COMPRESS_PAGE_SIZE);
	if (ZSTD_isError(n)) {
		switch (ZSTD_getErrorCode(n)) {
		case ZSTD_error_dstSize_tooSmall:
			return -E2BIG;
		case ZSTD_error_memory_allocation:
			return -ENOMEM;
		default:
			return -EIO;
		}
	}
	if (n > dst_cap)
		return -E2BIG;
	if (out != dst)
		memcpy(dst, out, n);
	*out_len = n;
	return 0;
}

int compress_page(const struct compress_cfg *cfg, const void *src, void *dst,
		  size_t dst_cap, size_t *out_len)
{
	if (dst_cap == 0)
		return -E2BIG;
	struct tctx *t = ctx_get();
	if (!t)
		return -ENOMEM;
	switch (cfg->algo) {
	case COMPRESS_LZ4:
		return lz4_compress(t, cfg->level, src, dst, dst_cap, out_len);
	case COMPRESS_ZSTD:
		return zstd_compress(t, cfg->level, src, dst, dst_cap, out_len);
	}
	return -EIO;
}

int compress_decompress(const struct compress_cfg *cfg, const void *src,
			size_t len, void *dst)
{
	if (len == 0 || len > INT_MAX)
		return -EIO;
	if (cfg->algo == COMPRESS_LZ4) {
		int n = LZ4_decompress_safe(src, dst, (int)len, COMPRESS_PAGE_SIZE);
		return n == COMPRESS_PAGE_SIZE ? 0 : -EIO;
	}
	if (cfg->algo != COMPRESS_ZSTD)
		return -EIO;
	struct tctx *t = ctx_get();
	if (!t)
		return -ENOMEM;
	int err = zstd_dctx_get(t);
	if (err)
		return err;
	size_t n = ZSTD_decompressDCtx(t->dctx, dst, COMPRESS_PAGE_SIZE, src, len);
	return n == COMPRESS_PAGE_SIZE ? 0 : -EIO;
}

int compress_decompress_ready(const struct compress_cfg *cfg)
{
	if (cfg->algo != COMPRESS_ZSTD)
		return 0;
	struct tctx *t = ctx_get();
	return t ? zstd_dctx_get(t) : -ENOMEM;
}

/* ---- names ------------------------------------------------------------ */

/* Strict decimal int: the whole string, no blanks, in [lo, hi]. */
static int parse_int(const char *s, long lo, long hi, int *out)
{
	char *end;
	if (*s != '-' && (*s < '0' || *s > '9'))
		return -EINVAL; /* strtol would also take blanks and '+' */
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end != '\0' || v < lo || v > hi)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

/* Highest zstd level whose context fits in one pagesrc run. */
static int zstd_max_level(void)
{
	int l = ZSTD_maxCLevel();
	while (l > 1 && !zstd_level_fits(l))
		l--;
	return l;
}

/*
 * "zstd:0" is zstd's own spelling of its default level (3); it is accepted
 * and stored as 3 so the name printed back is the level that runs.
 */
static int parse_zstd(const char *lvl, struct compress_cfg *out)
{
	int level = ZSTD_LEVEL_DEFAULT;
	if (lvl && parse_int(lvl, ZSTD_minCLevel(), zstd_max_level(), &level))
		return -EINVAL;
	out->algo = COMPRESS_ZSTD;
	out->level = level == 0 ? ZSTD_CLEVEL_DEFAULT : level;
	return 0;
}

static int parse_lz4(const char *lvl, struct compress_cfg *out)
{
	int accel = 1;
	if (lvl && parse_int(lvl, 1, LZ4_ACCEL_MAX, &accel))
		return -EINVAL;
	out->algo = COMPRESS_LZ4;
	out->level = accel;
	return 0;
}

int compress_parse_quiet(const char *spec, struct compress_cfg *out)
{
	const char *colon = spec ? strchr(spec, ':') : NULL;
	size_t nlen = colon ? (size_t)(colon - spec) : (spec ? strlen(spec) : 0);
	const char *lvl = colon ? colon + 1 : NULL;
	struct compress_cfg cfg;
	int err = -EINVAL;

	if (nlen == 3 && !strncmp(spec, "lz4", 3))
		err = parse_lz4(lvl, &cfg);
	else if (nlen == 4 && !strncmp(spec, "zstd", 4))
		err = parse_zstd(lvl, &cfg);
	if (err)
		return err;
	*out = cfg;
	return 0;
}

const char *compress_accepted(char *buf, size_t len)
{
	snprintf(buf, len,
		 "lz4, lz4:N (acceleration 1..%d), zstd (= zstd:1), zstd:N (level %d..%d, 0 = 3)",
		 LZ4_ACCEL_MAX, ZSTD_minCLevel(), zstd_max_level());
	return buf;
}

int compress_parse(const char *spec, struct compress_cfg *out)
{
	int err = compress_parse_quiet(spec, out);
	if (err) {
		char acc[128];
		log_error("compressor '%s' not recognised: accepted are %s",
			  spec ? spec : "(null)", compress_accepted(acc, sizeof(acc)));
	}
	return err;
}

const char *compress_name(const struct compress_cfg *cfg, char *buf, size_t len)
{
	const char *algo = cfg->algo == COMPRESS_LZ4	? "lz4"
			   : cfg->algo == COMPRESS_ZSTD ? "zstd"
							: "?";
	snprintf(buf, len, "%s:%d", algo, cfg->level);
	return buf;
}

/* ---- same-filled pages ------------------------------------------------ */

#define PAGE_WORDS (COMPRESS_PAGE_SIZE / sizeof(uint64_t))

static inline uint64_t word_at(const void *page, size_t i)
{
	uint64_t w;
	memcpy(&w, (const char *)page + i * sizeof(w), sizeof(w));
	return w;
}

/*
 * Most pages differ from their first word within a few words, so the
 * common case is a quick no.  The last word is tried first (a page that
 * is same-filled except at its end is a classic near miss), then blocks of
 * 8 words folded with OR so the compiler can vectorise each block and the
 * loop exits at the first block that differs.
 */
bool compress_same_filled(const void *page, uint64_t *value)
{
	uint64_t v = word_at(page, 0);
	if (word_at(page, 1) != v || word_at(page, PAGE_WORDS - 1) != v)
		return false;
	for (size_t i = 0; i < PAGE_WORDS; i += 8) {
		uint64_t diff = 0;
		for (size_t j = 0; j < 8; j++)
			diff |= word_at(page, i + j) ^ v;
		if (diff)
			return false;
	}
	*value = v;
	return true;
}

void compress_fill_page(void *page, uint64_t value)
{
	if (value == 0) {
		memset(page, 0, COMPRESS_PAGE_SIZE);
		return;
	}
	for (size_t i = 0; i < PAGE_WORDS; i++)
		memcpy((char *)page + i * sizeof(value), &value, sizeof(value));
}

/*
 * compress — page compressors (lz4, zstd) and same-value detection.
 *
 * Each thread that compresses or decompresses gets its own codec contexts,
 * created on its first call in engine memory (pagesrc, never malloc) and
 * reused for every later page; they are given back when the thread exits.
 * No call here allocates from the C library or takes a lock another
 * thread holds while faulting.
 */
#ifndef ZSWAPU_COMPRESS_H
#define ZSWAPU_COMPRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define COMPRESS_PAGE_SIZE 4096

enum compress_algo {
	COMPRESS_LZ4,
	COMPRESS_ZSTD,
};

/*
 * A compressor and its setting.  lz4: level is the acceleration (1 = the
 * default, LZ4_compress_default; higher = faster, larger).  zstd: level is
 * the compression level (negative levels allowed, down to ZSTD_minCLevel;
 * up to ZSTD_maxCLevel).
 */
struct compress_cfg {
	enum compress_algo algo;
	int level;
};

/* The default: lz4 at acceleration 1. */
#define COMPRESS_CFG_DEFAULT ((struct compress_cfg){ COMPRESS_LZ4, 1 })

/*
 * compress_parse() : "lz4", "lz4:8", "zstd" (level 1), "zstd:3", "zstd:-1".
 * @return 0 and *@out; -EINVAL for an unknown name or a level out of range,
 * after logging one line that names the accepted values.
 */
int compress_parse(const char *spec, struct compress_cfg *out);

/*
 * compress_parse_quiet() : compress_parse() without the log line, for
 * callers that report a bad value in their own words (the ZSWAPU_*
 * options name the variable).  compress_accepted() : what both accept, as
 * one phrase, into @buf.
 */
int compress_parse_quiet(const char *spec, struct compress_cfg *out);
const char *compress_accepted(char *buf, size_t len);

/* compress_name() : "lz4:1", "zstd:3" ... into @buf (for stats and logs). */
const char *compress_name(const struct compress_cfg *cfg, char *buf, size_t len);

/*
 * compress_page() : compress one COMPRESS_PAGE_SIZE page from @src into
 * @dst, which has room for @dst_cap bytes.  Stopping at @dst_cap is how the
 * store rejects a poorly compressible page early: pass the threshold.
 * @return 0 and *@out_len (1..@dst_cap); -E2BIG when the result would not
 * fit in @dst_cap; -ENOMEM when this thread's context could not be made;
 * -EIO for any other codec failure.
 */
int compress_page(const struct compress_cfg *cfg, const void *src, void *dst,
		  size_t dst_cap, size_t *out_len);

/*
 * compress_decompress() : expand @len bytes at @src, made by compress_page()
 * with the same algorithm, into the page at @dst.  Never reads past
 * @src + @len nor writes past @dst + COMPRESS_PAGE_SIZE, whatever @src holds.
 * @return 0; -EIO when @src is not a valid page's worth of data (corrupt,
 * truncated or expanding to other than exactly one page); -ENOMEM.
 */
int compress_decompress(const struct compress_cfg *cfg, const void *src,
			size_t len, void *dst);

/*
 * compress_decompress_ready() : give the calling thread now what
 * compress_decompress() with @cfg would allocate on its first call (a
 * zstd context; lz4 needs none), so that it never fails for memory
 * later.  @return 0 or -ENOMEM.
 */
int compress_decompress_ready(const struct compress_cfg *cfg);

/*
 * compress_same_filled() : true when the page is one 8-byte word repeated
 * (zero-filled pages included); the word is stored in *@value.  Cheap
 * enough to run on every page before compressing it.
 */
bool compress_same_filled(const void *page, uint64_t *value);

/* compress_fill_page() : write @value repeated over the page (the inverse). */
void compress_fill_page(void *page, uint64_t value);

#endif

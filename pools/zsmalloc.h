/*
 * zsmalloc — the size-class pool driver (zpool type "zsmalloc"), after the
 * kernel's mm/zsmalloc.c.  Users go through zpool.h (zs_zpool_driver); this
 * header gives the geometry constants and the class lookup that tests and
 * benchmarks need to reason about where an object lands.
 */
#ifndef ZSWAPU_ZSMALLOC_H
#define ZSWAPU_ZSMALLOC_H

#include <stdbool.h>
#include <stddef.h>

#include "pools/pagesrc.h"

/* Classes are 16 bytes apart, from 32 bytes to one page. */
#define ZS_SIZE_CLASS_DELTA 16
#define ZS_MIN_CLASS_SIZE 32
#define ZS_MAX_ALLOC_SIZE PAGESRC_PAGE_SIZE
#define ZS_NR_CLASSES \
	((ZS_MAX_ALLOC_SIZE - ZS_MIN_CLASS_SIZE) / ZS_SIZE_CLASS_DELTA + 1)

/*
 * Longest zspage, in pages.  8 was measured best on the real compressed
 * size distributions (see the top of zsmalloc.c); overridable at build time
 * only to re-run that measurement.
 */
#ifndef ZS_MAX_PAGES_PER_ZSPAGE
#define ZS_MAX_PAGES_PER_ZSPAGE 8
#endif

/*
 * Bytes in front of every object of a non-huge class: the back-pointer to
 * its handle (compaction must find the handle of an object it moves).
 */
#define ZS_HANDLE_SIZE 8

struct zs_class_info {
	unsigned int index;            /* class index (after merging) */
	unsigned int size;             /* slot size, header included */
	unsigned int pages_per_zspage;
	unsigned int objs_per_zspage;
	bool huge;                     /* one object per page, no header */
};

/*
 * zs_size_class() : the class an object of @size bytes is stored in.
 * @return 0 and *@out, -EINVAL for 0, -ENOSPC above ZS_MAX_ALLOC_SIZE.
 */
int zs_size_class(size_t size, struct zs_class_info *out);

#endif

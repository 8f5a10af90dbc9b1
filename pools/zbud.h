/*
 * zbud — a zpool driver that stores at most two compressed objects
 * ("buddies") per page, after the kernel's mm/zbud.c (removed in 6.15).
 *
 * Page layout (4 KiB, 64-byte chunks):
 *
 *   | header (1 chunk) | first buddy ->      free      <- last buddy |
 *   0                  64                                       4096
 *
 * The first buddy starts right after the header, the last one ends at the
 * page end, so freeing either leaves one contiguous hole.  Density is
 * bounded: never better than 2 objects per page, never worse than 1.
 *
 * The driver table is zbud_zpool_driver (declared in pools/zpool.h); this
 * header holds the layout and the handle encoding, which tests rely on.
 */
#ifndef ZSWAPU_ZBUD_H
#define ZSWAPU_ZBUD_H

#include <stdbool.h>

#include "pools/pagesrc.h"

#define ZBUD_CHUNK_SHIFT 6
#define ZBUD_CHUNK_SIZE (1UL << ZBUD_CHUNK_SHIFT)
#define ZBUD_HEADER_SIZE ZBUD_CHUNK_SIZE
/* Chunks left for objects once the header is in: 63. */
#define ZBUD_NCHUNKS ((PAGESRC_PAGE_SIZE - ZBUD_HEADER_SIZE) >> ZBUD_CHUNK_SHIFT)
/* Largest object: a whole page minus the header (a 63-chunk first buddy). */
#define ZBUD_MAX_SIZE (PAGESRC_PAGE_SIZE - ZBUD_HEADER_SIZE)

/*
 * A handle is the address of the object's first byte, as in the seed, so
 * mapping it is free.  It is never 0 and names its page and buddy:
 *   - first buddy: page + ZBUD_HEADER_SIZE;
 *   - last buddy:  page + PAGE_SIZE - its chunks * 64.  A last buddy is only
 *     ever placed next to a live first buddy (at least 1 chunk), so it
 *     holds at most 62 chunks and its offset is >= 128: the two never clash.
 */
static inline bool zbud_handle_is_first(unsigned long handle)
{
	return (handle & (PAGESRC_PAGE_SIZE - 1)) == ZBUD_HEADER_SIZE;
}

static inline void *zbud_handle_page(unsigned long handle)
{
	return (void *)(handle & ~(PAGESRC_PAGE_SIZE - 1));
}

#endif

/*
 * z3fold — a zpool driver that stores up to three compressed objects per
 * page, after the kernel's mm/z3fold.c (removed in 6.15).
 *
 * Page layout (4 KiB, 64-byte chunks):
 *
 *   | header | first ->   <- middle ->   <- last |
 *   0        64                              4096
 *
 * The first buddy starts after the header, the last ends at the page end,
 * the middle one sits in between (right after the first when placed) and is
 * the one compaction moves, to merge the free space into one hole.
 *
 * Objects larger than Z3FOLD_MAX_BUDDY_SIZE get a "headless" page of their
 * own: the object starts at offset 0 and may fill the page, so an
 * incompressible page can be stored as-is (max_size is 4096).
 *
 * The driver table is z3fold_zpool_driver (declared in pools/zpool.h); this
 * header holds the layout and the handle encoding, which tests rely on.
 */
#ifndef ZSWAPU_Z3FOLD_H
#define ZSWAPU_Z3FOLD_H

#include <stdbool.h>

#include "pools/pagesrc.h"

#define Z3FOLD_CHUNK_SHIFT 6
#define Z3FOLD_CHUNK_SIZE (1UL << Z3FOLD_CHUNK_SHIFT)
#define Z3FOLD_HEADER_SIZE Z3FOLD_CHUNK_SIZE
/* Chunks in a page, and those left for objects once the header is in. */
#define Z3FOLD_TOTAL_CHUNKS (PAGESRC_PAGE_SIZE >> Z3FOLD_CHUNK_SHIFT)
#define Z3FOLD_NCHUNKS (Z3FOLD_TOTAL_CHUNKS - (Z3FOLD_HEADER_SIZE >> Z3FOLD_CHUNK_SHIFT))
/* Largest object that shares a page (the seed's bound); above: headless. */
#define Z3FOLD_MAX_BUDDY_SIZE (PAGESRC_PAGE_SIZE - Z3FOLD_HEADER_SIZE - Z3FOLD_CHUNK_SIZE)
#define Z3FOLD_MAX_SIZE PAGESRC_PAGE_SIZE
/* Most unbuddied-list shards a pool keeps (one per CPU up to this). */
#define Z3FOLD_MAX_SHARDS 32

/*
 * Handles, never 0:
 *   - headed page: page address | buddy number in bits 0-1.  The number is
 *     the buddy (1 first, 2 middle, 3 last) plus the page's first_num,
 *     mod 4, as in the seed: when compaction turns a lone middle buddy into
 *     the first one it bumps first_num, and the handle it gave out then
 *     reads as "first" without changing.  So the buddy and its offset are
 *     read from the page header (under the page lock) at map time.
 *   - headless page: address of the page's descriptor | Z3FOLD_HANDLE_HEADLESS
 *     (descriptors are 8-byte aligned; headed handles never set bit 2).
 */
#define Z3FOLD_HANDLE_HEADLESS 4UL

static inline bool z3fold_handle_is_headless(unsigned long handle)
{
	return handle & Z3FOLD_HANDLE_HEADLESS;
}

#endif

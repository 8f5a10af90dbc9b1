/*
 * store — zswap's store, load and invalidate paths as a library: pages go
 * in by address, compressed into a zpool, and come out again (no
 * userfaultfd here; the fault handler and the reclaimer call this).
 *
 * Storing a page: zero- and same-filled pages keep their word in the entry
 * and use no pool memory; other pages are compressed and kept if they fit
 * in max_compressed bytes, else rejected (left to the caller: zswap leaves
 * them resident) or, with store_incompressible, stored as-is.  A load is
 * exclusive, as zswap's: it frees the entry.
 *
 * Concurrency: every function may be called from several threads at once
 * for different pages.  For the same page, a load racing an invalidate
 * returns the data or -ENOENT (never freed memory), and a store racing a
 * load leaves the result of one order or the other.  store_destroy() must
 * not race anything.  The locks and their order are listed in store.c.
 *
 * Engine memory only: the store, its index, its entries, its pool and its
 * per-thread compression buffers come from pagesrc; nothing here calls
 * malloc or stdio (BRIEF trap 2).
 */
#ifndef ZSWAPU_STORE_H
#define ZSWAPU_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/compress.h"
#include "core/stats.h"

struct store;
struct zpool;
struct index;
struct index_entry;

struct store_options {
	struct compress_cfg compressor; /* default lz4:1 */
	const char *pool;               /* zpool driver name, default "zsmalloc" */
	unsigned int max_compressed;    /* keep a page only if it compresses to at most
					   this many bytes: 1..4095 (4096 is how an
					   as-is page is marked) and at most the pool's
					   largest object; default 3584 (save >= 1/8) */
	bool store_incompressible;      /* store such pages as-is (4096 bytes) instead
					   of rejecting them; only with a pool whose
					   largest object is a page (zsmalloc, z3fold;
					   zbud still rejects them) */
	unsigned int shards;            /* index trees per zone, power of two 1..256;
					   default 16 */
	/* The pool cap and the writeback tier (core/writeback.h). */
	size_t max_pool;                /* pool bytes at which the cap is hit; 0 none */
	unsigned int accept_pct;        /* after the cap: write back (or refuse
					   stores) until the pool is under this
					   percentage of it, 1..100; default 90 */
	const char *writeback_dir;      /* NULL: no file; hitting the cap then
					   rejects stores (reject_pool_limit) */
};

#define STORE_ACCEPT_DEFAULT 90
#define STORE_MAX_COMPRESSED_DEFAULT (COMPRESS_PAGE_SIZE - COMPRESS_PAGE_SIZE / 8)

void store_options_default(struct store_options *o);

/*
 * store_create() : an empty store counting into @st, which must outlive
 * it.  One struct stats may be shared by several stores: every gauge
 * (stored_pages, pool_total_size, ...) moves by deltas.
 * @return 0 and *@out; -EINVAL for a bad option (after logging one line
 * that names it and what it accepts); -ENOMEM.
 */
int store_create(const struct store_options *o, struct stats *st, struct store **out);

/* store_destroy() : free every entry, the pool and the store. */
void store_destroy(struct store *s);

/*
 * store_fork() : a store holding @src's entries as they are now, for a
 * forked child's address space.  It shares their data instead of copying
 * it: each of its entries references the entry that owns the pool object
 * (in the root store, the one that owns the pool), so a page loaded or
 * invalidated on one side stays for the other.  Counts into @st, which
 * should not be the root's (the pool bytes stay the root's).  Every
 * change to @src must be held off during the call; a fork store must be
 * destroyed before its root.  @return 0 and *@out, -ENOMEM.
 */
int store_fork(struct store *src, struct stats *st, struct store **out);

/*
 * store_page() : compress the page at @page and keep it as page address
 * @addr, replacing (and freeing) any entry already there.
 * @return 0 stored; -E2BIG compressed too poorly (reject_compress_poor);
 * -ENOMEM no pool or entry memory (reject_alloc_fail), or no codec context
 * (reject_compress_fail); -EIO compressor failure (reject_compress_fail);
 * -EINVAL @addr unaligned or at or above 2^47 (see index.h).
 */
int store_page(struct store *s, uintptr_t addr, const void *page);

/*
 * store_page_raw() : store the page whatever its compressibility: as
 * compressed when that fits the pool, else as-is.  For a page whose data
 * exists nowhere else.  @return as store_page(); -E2BIG only when neither
 * form fits the pool (an incompressible page in zbud).
 */
int store_page_raw(struct store *s, uintptr_t addr, const void *page);

/*
 * A store in two steps, so that the slow half (compression, pool
 * allocation) runs before the caller takes its own locks and the quick
 * half (index insertion) under them.  store_prepare() fills @prep (errors
 * and counters as store_page(); nothing to undo on error); then exactly
 * one of store_commit() or store_abort().
 */
struct store_prep {
	struct index_entry *entry; /* ready for the index: pool object written */
};

int store_prepare(struct store *s, const void *page, struct store_prep *prep);
/*
 * store_commit() : 0; -EINVAL for a bad @addr, -ENOMEM when the index has
 * no memory for its slots (either way the prepared page is dropped: the
 * caller still has the page and must keep it).
 */
int store_commit(struct store *s, uintptr_t addr, struct store_prep *prep);
void store_abort(struct store *s, struct store_prep *prep);

/*
 * store_load() : decompress the page stored at @addr into @dst (4096
 * bytes) and drop the entry.
 * Two loads of one page racing each other may both return its data.
 * @return 0; -ENOENT nothing stored (the page reads as zeros); -EIO the
 * data did not decompress (decompress_fail: the entry is kept, nothing is
 * thrown away); -ENOMEM no decompression context; -EBUSY 255 loads of
 * this page already in flight (retry); -EINVAL bad @addr.
 */
int store_load(struct store *s, uintptr_t addr, void *dst);

/*
 * A load in two steps, for the fault handler: store_load_begin() fills
 * @dst and keeps a reference, leaving the entry stored; the caller puts
 * the page into the program and then calls store_load_end() with
 * @consumed true (the page is in place: drop the entry, count the load) or
 * false (it could not be placed yet: the entry stays, nothing is lost).
 * Errors as store_load(); on error there is nothing to end.
 */
struct store_load {
	struct index_entry *entry;
	uint64_t t0;
};

int store_load_begin(struct store *s, uintptr_t addr, void *dst, struct store_load *ld);

/*
 * store_load_ready() : allocate now what loads by the calling thread
 * would on their first call (the decompression context, the buffer for
 * reading from the writeback file), so that they never fail for memory:
 * a fault thread's first load may come with the arena full, and the
 * engine stepping aside over it would need the same memory to bring the
 * pages back.  For the threads that resolve faults, when they start.
 * @return 0 or -ENOMEM.
 */
int store_load_ready(struct store *s);
void store_load_end(struct store *s, uintptr_t addr, struct store_load *ld, bool consumed);

/*
 * store_first() : the lowest page address in [@start, @end) that has an
 * entry.  @return 0 and *@addr; -ENOENT when there is none.
 */
int store_first(struct store *s, uintptr_t start, uintptr_t end, uintptr_t *addr);

/*
 * store_invalidate() : drop every entry in [@addr, @addr + @len) (munmap,
 * MADV_DONTNEED).  @len is rounded up to whole pages and the range clipped
 * at 2^47; an unaligned @addr drops nothing.  @return entries dropped.
 */
size_t store_invalidate(struct store *s, uintptr_t addr, size_t len);

/*
 * store_move() : the entries of [@old_addr, @old_addr + @len) now belong
 * at @new_addr + offset (mremap); what was stored at the destination is
 * dropped (counted as invalidates).  @return 0; -EINVAL for unaligned
 * arguments or ranges reaching past 2^47; -ENOMEM when the index found no
 * memory for some, reserve included: those are still at @old_addr, for
 * the caller to put in at their new address (resolve_unmoved()) before
 * anything else looks there.
 */
int store_move(struct store *s, uintptr_t old_addr, uintptr_t new_addr, size_t len);

/*
 * The pool cap and writeback.  A store created with max_pool has a cap:
 * once the pool reaches it, either store_writeback() moves the oldest
 * pages' compressed data to the file (writeback_dir given and no I/O
 * error so far), or store_prepare()/store_page() refuse pages that need
 * pool memory with -ENOSPC (reject_pool_limit) until the pool is back
 * under accept_pct percent of the cap (zswap's accept_threshold).
 * store_page_raw() is never refused: its page exists nowhere else.
 *
 * store_writeback() : if the pool is at its cap, write back pages, oldest
 * stored first, in batches of WRITEBACK_BATCH (one io_uring_submit each),
 * until it is under accept_pct of the cap.  One thread at a time (the
 * reclaimer).  @return pages written back.
 * store_pool_full() : the cap is hit and nothing can be written back:
 * storing is refused now.
 * store_writeback_file() : the writeback tier, or NULL (none, or a fork
 * view).
 */
size_t store_writeback(struct store *s);
bool store_pool_full(struct store *s);
/*
 * store_set_max_pool() : a new cap of @bytes (nonzero), for a store
 * created with one (a store without keeps none).
 */
void store_set_max_pool(struct store *s, size_t bytes);
struct writeback *store_writeback_file(struct store *s);

/* Accessors for the engine's limits, tests and benchmarks. */
struct zpool *store_zpool(struct store *s);
struct index *store_index(struct store *s);
/*
 * store_compact() : move pool objects to free pages the pool's holes tie
 * up (loads and invalidates leave them).  @return pages given back.
 * store_compressed_bytes() : the sum of the stored objects' sizes, as
 * counted in the store's stats (what a hole-free pool would hold).
 */
size_t store_compact(struct store *s);
size_t store_compressed_bytes(struct store *s);
size_t store_pool_bytes(struct store *s);   /* pool pages * 4096 */
size_t store_entry_count(struct store *s);

#endif

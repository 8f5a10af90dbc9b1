/*
 * slab — fixed-size object allocator for the engine's metadata (index
 * entries and other small records), in engine memory: pages come from
 * pagesrc, never from malloc (BRIEF trap 2).
 *
 * A cache hands out objects of one size.  Each slab is one page: a 64-byte
 * slab header at the start of the page, then the objects back to back.
 * One page per slab is what makes the owning slab computable from an
 * object's address by masking (pagesrc runs are page-aligned, not aligned
 * to their length), so objects carry no header at all: a 16-byte index
 * entry costs 16 bytes plus 1/252 of a header.  Objects larger than
 * SLAB_MAX_OBJ_SIZE are refused: one-page slabs would waste more than an
 * eighth of each page on them; bigger engine structures take whole pages
 * from pagesrc directly.
 *
 * Memory follows the live object count: a slab whose last object is freed
 * goes back to pagesrc, except one empty slab kept as a spare so that a
 * count oscillating around a page boundary does not allocate and free a
 * page on every call.
 *
 * Alignment: objects are spaced by the size rounded up to 8 bytes, from a
 * 64-byte offset in the page, so every object is 8-byte aligned, and
 * 16-byte aligned when that rounded size is a multiple of 16.
 *
 * Thread safety: every function may be called from any thread.  One mutex
 * per cache protects its lists, its counters and the free lists inside its
 * slabs.  It is a leaf lock: pages are obtained from and given back to
 * pagesrc with it dropped.  A mutex rather than per-thread caches: see
 * slab.c for the measurement.
 */
#ifndef ZSWAPU_SLAB_H
#define ZSWAPU_SLAB_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#define SLAB_MAX_OBJ_SIZE 512

struct slab_page;

/* A cache.  Embed it in engine memory; the fields are private. */
struct slab_cache {
	pthread_mutex_t lock;
	size_t obj_size;          /* rounded up to 8 */
	unsigned int per_slab;    /* objects in one page */
	struct slab_page *partial; /* slabs with free and used objects */
	struct slab_page *full;    /* slabs with no free object */
	struct slab_page *spare;   /* one empty slab kept back, or NULL */
	size_t live;              /* objects handed out */
	_Atomic size_t pages;     /* slabs held, spare included; written under the lock */
	unsigned int reserve;     /* pagesrc reserve kept per slab (slab_keep_reserve) */
};

struct slab_stats {
	size_t objects; /* live objects */
	size_t bytes;   /* memory held, spare slab included */
};

/*
 * slab_init() : set up @c for objects of @obj_size bytes.
 * @return 0; -EINVAL for a size of 0 or above SLAB_MAX_OBJ_SIZE.
 */
int slab_init(struct slab_cache *c, size_t obj_size);

/*
 * slab_keep_reserve() : for as long as @c exists, keep @per_slab pages in
 * pagesrc's reserve (pagesrc.h) for each slab it holds, and for one more:
 * for a cache whose objects a must-not-fail operation may need to
 * duplicate (the index's move).  Call it right after slab_init().
 */
void slab_keep_reserve(struct slab_cache *c, unsigned int per_slab);
/*
 * slab_destroy() : give every page back, live objects included (the owner
 * is expected to have dropped them; no object may be used afterwards).
 */
void slab_destroy(struct slab_cache *c);

/*
 * slab_alloc() : one object, contents unspecified.
 * @return 0 and *@out; -ENOMEM when pagesrc has no page to give.
 */
int slab_alloc(struct slab_cache *c, void **out);

/* slab_free() : give back @obj, which came from slab_alloc(@c). */
void slab_free(struct slab_cache *c, void *obj);

void slab_get_stats(struct slab_cache *c, struct slab_stats *st);

/*
 * slab_bytes() : slab_stats.bytes without taking the lock, for a gauge the
 * store republishes after every free (three caches, twice each, on the
 * fault path).  Exact between calls that add or drop a slab.
 */
size_t slab_bytes(struct slab_cache *c);

#endif

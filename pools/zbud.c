/*
 * zbud — see zbud.h for the page layout and the handle encoding.
 *
 * Pages with one buddy sit on unbuddied[n], n = the free chunks between the
 * buddies; an allocation of c chunks takes the head of the first non-empty
 * list from c upwards, i.e. the page whose hole fits it most tightly.  Pages
 * with two buddies (or one 63-chunk buddy) sit on `buddied`.  Every page is
 * also on the LRU, most recently allocated-into first; zbud_shrink() evicts
 * from its tail.
 *
 * Locking: one mutex per pool (as the seed's spinlock) protects the lists,
 * the counters and every header field of every page.  map/unmap take no
 * lock: the handle is the object's address.  pagesrc is called without the
 * pool lock held.  The evict callback runs with no lock held, since it is
 * expected to call back into zbud_free().
 *
 * Page lifecycle: allocated on demand in zbud_malloc (outside the lock),
 * published on the lists and the LRU under the lock; freed by the
 * zbud_free() that empties it, after it left every list under the lock.
 * A page under reclaim is off every list; zbud_free() only clears the
 * buddy there, and the reclaimer frees the page or puts it back.  While a
 * page is under reclaim its freed slots are not reused, so a handle the
 * reclaimer passes to evict names the same object, or none.
 */
#include "pools/zbud.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "pools/list.h"
#include "pools/pagesrc.h"
#include "pools/zpool.h"

/* Pages on the LRU tried per reclaimed page before giving up (the seed's). */
#define RECLAIM_RETRIES 8

/* In the page's first chunk.  All fields under pool->lock. */
struct zbud_header {
	struct zlist buddy; /* unbuddied[free chunks] or buddied */
	struct zlist lru;
	uint16_t first_chunks, last_chunks; /* 0 = that buddy is free */
	uint16_t first_size, last_size;     /* bytes asked for, for stats */
	bool under_reclaim;
};

_Static_assert(sizeof(struct zbud_header) <= ZBUD_HEADER_SIZE,
	       "zbud header must fit its chunk");

struct zbud_pool {
	pthread_mutex_t lock;
	struct zlist unbuddied[ZBUD_NCHUNKS]; /* [0] unused: 0 free = buddied */
	struct zlist buddied;
	struct zlist lru;
	uint64_t pages, buddied_pages, objects, object_bytes, reclaimed_pages;
	const struct zpool_ops *ops;
	struct zpool *zpool;
};

_Static_assert(sizeof(struct zbud_pool) <= PAGESRC_PAGE_SIZE,
	       "zbud pool must fit one page");

enum buddy { FIRST, LAST };

static unsigned size_to_chunks(size_t size)
{
	return (unsigned)((size + ZBUD_CHUNK_SIZE - 1) >> ZBUD_CHUNK_SHIFT);
}

static unsigned free_chunks(const struct zbud_header *z)
{
	return ZBUD_NCHUNKS - z->first_chunks - z->last_chunks;
}

static bool page_full(const struct zbud_header *z)
{
	return (z->first_chunks && z->last_chunks) || free_chunks(z) == 0;
}

static bool page_empty(const struct zbud_header *z)
{
	return !z->first_chunks && !z->last_chunks;
}

static struct zbud_header *handle_header(unsigned long handle)
{
	return zbud_handle_page(handle);
}

static unsigned long encode_handle(const struct zbud_header *z, enum buddy bud)
{
	uintptr_t page = (uintptr_t)z;
	if (bud == FIRST)
		return page + ZBUD_HEADER_SIZE;
	return page + PAGESRC_PAGE_SIZE - ((uintptr_t)z->last_chunks << ZBUD_CHUNK_SHIFT);
}

/* File a page on the list its state calls for; caller holds the lock. */
static void file_page(struct zbud_pool *pool, struct zbud_header *z)
{
	if (page_full(z)) {
		zlist_add(&z->buddy, &pool->buddied);
		pool->buddied_pages++;
	} else {
		zlist_add(&z->buddy, &pool->unbuddied[free_chunks(z)]);
	}
}

/* Undo file_page(); call before changing the page's buddies. */
static void unfile_page(struct zbud_pool *pool, struct zbud_header *z)
{
	if (page_full(z))
		pool->buddied_pages--;
	zlist_del(&z->buddy);
}

/* The tightest-fitting page with room for @chunks, off its list; or NULL. */
static struct zbud_header *take_unbuddied(struct zbud_pool *pool, unsigned chunks)
{
	for (unsigned i = chunks; i < ZBUD_NCHUNKS; i++) {
		if (zlist_empty(&pool->unbuddied[i]))
			continue;
		struct zbud_header *z =
			zlist_entry(pool->unbuddied[i].next, struct zbud_header, buddy);
		zlist_del(&z->buddy);
		return z;
	}
	return NULL;
}

static int new_page(struct zbud_header **out)
{
	void *page;
	int err = pagesrc_alloc(1, &page);
	if (err)
		return err;
	struct zbud_header *z = page;
	memset(z, 0, sizeof(*z));
	zlist_init(&z->buddy);
	zlist_init(&z->lru);
	*out = z;
	return 0;
}

static int zbud_create(const struct zpool_ops *ops, struct zpool *zpool, void **out)
{
	struct zbud_pool *pool;
	int err = pagesrc_alloc(1, (void **)&pool);
	if (err)
		return err;
	memset(pool, 0, sizeof(*pool));
	pthread_mutex_init(&pool->lock, NULL);
	for (unsigned i = 0; i < ZBUD_NCHUNKS; i++)
		zlist_init(&pool->unbuddied[i]);
	zlist_init(&pool->buddied);
	zlist_init(&pool->lru);
	pool->ops = ops;
	pool->zpool = zpool;
	*out = pool;
	return 0;
}

/* Every page is on the LRU unless under reclaim, which destroy must not race. */
static void zbud_destroy(void *p)
{
	struct zbud_pool *pool = p;
	while (!zlist_empty(&pool->lru)) {
		struct zlist *n = pool->lru.next;
		zlist_del(n);
		pagesrc_free(zlist_entry(n, struct zbud_header, lru), 1);
	}
	pthread_mutex_destroy(&pool->lock);
	pagesrc_free(pool, 1);
}

static int zbud_malloc(void *p, size_t size, unsigned long *handle)
{
	struct zbud_pool *pool = p;
	if (size == 0)
		return -EINVAL;
	if (size > ZBUD_MAX_SIZE)
		return -ENOSPC;
	unsigned chunks = size_to_chunks(size);

	pthread_mutex_lock(&pool->lock);
	struct zbud_header *z = take_unbuddied(pool, chunks);
	if (!z) {
		/* pagesrc may madvise: never call it with the pool locked */
		pthread_mutex_unlock(&pool->lock);
		int err = new_page(&z);
		if (err)
			return err;
		pthread_mutex_lock(&pool->lock);
		pool->pages++;
	}
	enum buddy bud = z->first_chunks ? LAST : FIRST;
	if (bud == FIRST) {
		z->first_chunks = (uint16_t)chunks;
		z->first_size = (uint16_t)size;
	} else {
		z->last_chunks = (uint16_t)chunks;
		z->last_size = (uint16_t)size;
	}
	file_page(pool, z);
	zlist_move(&z->lru, &pool->lru);
	pool->objects++;
	pool->object_bytes += size;
	*handle = encode_handle(z, bud);
	pthread_mutex_unlock(&pool->lock);
	return 0;
}

static void zbud_free(void *p, unsigned long handle)
{
	struct zbud_pool *pool = p;
	struct zbud_header *z = handle_header(handle);

	pthread_mutex_lock(&pool->lock);
	if (!z->under_reclaim)
		unfile_page(pool, z);
	if (zbud_handle_is_first(handle)) {
		pool->object_bytes -= z->first_size;
		z->first_chunks = z->first_size = 0;
	} else {
		pool->object_bytes -= z->last_size;
		z->last_chunks = z->last_size = 0;
	}
	pool->objects--;
	if (z->under_reclaim) {
		/* the reclaimer frees or re-files the page when it is done */
		pthread_mutex_unlock(&pool->lock);
		return;
	}
	if (!page_empty(z)) {
		file_page(pool, z);
		pthread_mutex_unlock(&pool->lock);
		return;
	}
	zlist_del(&z->lru);
	pool->pages--;
	pthread_mutex_unlock(&pool->lock);
	pagesrc_free(z, 1);
}

static void *zbud_map(void *p, unsigned long handle, enum zpool_mapmode mm)
{
	(void)p;
	(void)mm;
	return (void *)handle;
}

static void zbud_unmap(void *p, unsigned long handle)
{
	(void)p;
	(void)handle;
}

static uint64_t zbud_total_pages(void *p)
{
	struct zbud_pool *pool = p;
	pthread_mutex_lock(&pool->lock);
	uint64_t n = pool->pages;
	pthread_mutex_unlock(&pool->lock);
	return n;
}

/*
 * Evict one buddy of a page under reclaim, unless its owner freed it since
 * the page was taken.  @return the callback's result, 0 for a freed buddy.
 */
static int evict_buddy(struct zbud_pool *pool, struct zbud_header *z, enum buddy bud)
{
	pthread_mutex_lock(&pool->lock);
	bool live = bud == FIRST ? z->first_chunks : z->last_chunks;
	unsigned long handle = live ? encode_handle(z, bud) : 0;
	pthread_mutex_unlock(&pool->lock);
	if (!handle)
		return 0;
	return pool->ops->evict(pool->zpool, handle, pool->ops->arg);
}

/*
 * zbud_reclaim_page() as in the seed: take the LRU tail page off every
 * list, have the user evict its buddies (first, then last) with no lock
 * held, then free the page if that emptied it, or file it again at the
 * LRU head and try the next tail, up to @retries pages.
 * @return 0 when a page was freed, -EINVAL when there is nothing to evict
 * or no evict callback, -EAGAIN when @retries pages could not be emptied.
 */
static int reclaim_page(struct zbud_pool *pool, unsigned retries)
{
	if (!pool->ops || !pool->ops->evict)
		return -EINVAL;
	pthread_mutex_lock(&pool->lock);
	if (zlist_empty(&pool->lru)) {
		pthread_mutex_unlock(&pool->lock);
		return -EINVAL;
	}
	for (unsigned i = 0; i < retries && !zlist_empty(&pool->lru); i++) {
		struct zbud_header *z =
			zlist_entry(pool->lru.prev, struct zbud_header, lru);
		zlist_del(&z->lru);
		unfile_page(pool, z);
		z->under_reclaim = true;
		pthread_mutex_unlock(&pool->lock);

		int ret = evict_buddy(pool, z, FIRST);
		if (!ret)
			evict_buddy(pool, z, LAST);

		pthread_mutex_lock(&pool->lock);
		z->under_reclaim = false;
		if (page_empty(z)) {
			pool->pages--;
			pool->reclaimed_pages++;
			pthread_mutex_unlock(&pool->lock);
			pagesrc_free(z, 1);
			return 0;
		}
		file_page(pool, z);
		zlist_add(&z->lru, &pool->lru);
	}
	pthread_mutex_unlock(&pool->lock);
	return -EAGAIN;
}

static int zbud_reclaim_page(void *p)
{
	return reclaim_page(p, RECLAIM_RETRIES);
}

static size_t zbud_driver_stats(void *p, struct zpool_stat *rows, size_t max)
{
	struct zbud_pool *pool = p;
	pthread_mutex_lock(&pool->lock);
	const struct zpool_stat all[] = {
		{ "pages", pool->pages },
		{ "buddied_pages", pool->buddied_pages },
		{ "unbuddied_pages", pool->pages - pool->buddied_pages },
		{ "objects", pool->objects },
		{ "object_bytes", pool->object_bytes },
		{ "reclaimed_pages", pool->reclaimed_pages },
	};
	pthread_mutex_unlock(&pool->lock);
	size_t n = sizeof(all) / sizeof(all[0]);
	for (size_t i = 0; i < n && i < max; i++)
		rows[i] = all[i];
	return n;
}

const struct zpool_driver zbud_zpool_driver = {
	.type = "zbud",
	.max_size = ZBUD_MAX_SIZE,
	.create = zbud_create,
	.destroy = zbud_destroy,
	.malloc = zbud_malloc,
	.free = zbud_free,
	.map = zbud_map,
	.unmap = zbud_unmap,
	.total_pages = zbud_total_pages,
	.reclaim_page = zbud_reclaim_page,
	.compact = NULL, /* zbud never moves an object */
	.class_stats = NULL,
	.driver_stats = zbud_driver_stats,
};

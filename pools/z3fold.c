/*
 * z3fold — see z3fold.h for the page layout and the handle encoding.
 *
 * Where pages are:
 *   - shard lists: a page with a free buddy slot and free chunks sits on
 *     shard[s].unbuddied[n], n = the largest hole a free slot can use.  There
 *     is one shard per CPU (sched_getcpu() % nshards), standing in for the
 *     seed's per-CPU lists: an allocation takes the tightest fit in its own
 *     shard first, then in the others, then a new page, and files the page
 *     back on its own shard.  Full pages are on no shard list.
 *   - the LRU: every page, most recently allocated-into first; shrink evicts
 *     from the tail.  Headless pages have no header, so they are linked
 *     through a descriptor taken from small pagesrc-backed slabs (desc_*).
 *     The descriptor also holds the page address, so the headless handle is
 *     the descriptor's address; the slabs count in total_pages.
 *
 * Compaction: z3fold_free() files a page whose middle buddy could slide next
 * to a neighbour (or become the first buddy) with NEEDS_COMPACTING;
 * z3fold_compact() moves those middle buddies (the seed's
 * z3fold_compact_page, which the kernel ran from a workqueue: here the
 * engine's background thread calls zpool_compact).  A mapped middle buddy is
 * never moved.  Moving within a page keeps handles valid, so no page is
 * freed by compaction; what it buys is one larger hole per page.
 *
 * Locks, in the order they may be taken:
 *   page lock (in the header; a spinlock that yields) -> shard lock
 *   page lock -> lru_lock
 *   desc_lock is a leaf; shard locks and lru_lock are never nested.
 * Walkers that reach a page through a list (allocation and compaction
 * through shard lists, reclaim through the LRU) hold that list's lock and
 * only *try* the page lock, which keeps the reverse order deadlock-free.
 *   - page lock: the header's buddy fields, first_num, start_middle,
 *     middle_mapped, shard, flags (written), lru.claimed of a headed page.
 *   - shard lock: its lists, the `buddy` links on them, its page count.
 *   - lru_lock: the LRU links; for headless pages also claimed and freed.
 *   - desc_lock: the descriptor slabs.
 *   Counters are relaxed atomics (exact, but a snapshot is not an instant).
 *
 * Page lifecycle: a headed page is born locked in z3fold_malloc and
 * published on its shard list and the LRU before the lock drops.  The
 * free that empties it, holding its page lock, unlinks it from its shard
 * list and the LRU, unlocks it and gives it back to pagesrc.  That is
 * safe without the seed's deferred "stale" list: a page is found only
 * through those lists, under their locks, and a walker that found it
 * before the unlink still held the list lock (so the unlink waited for
 * it) and could not take the page lock; mappers and compaction hold an
 * object of the page or its lock.  The seed deferred the free because a
 * compaction work item could still be queued on another CPU; there is no
 * such work here.  Reclaim marks a page claimed: frees then only clear
 * buddies, and the reclaimer frees the page or files it back.
 */
#include "pools/z3fold.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "pools/list.h"
#include "pools/pagesrc.h"
#include "pools/zpool.h"

#define CHUNK_SHIFT Z3FOLD_CHUNK_SHIFT
#define ZHDR_CHUNKS (Z3FOLD_HEADER_SIZE >> CHUNK_SHIFT)
#define TOTAL_CHUNKS Z3FOLD_TOTAL_CHUNKS
#define NCHUNKS Z3FOLD_NCHUNKS
/* Move a middle buddy only when that grows the hole by this many chunks. */
#define BIG_CHUNK_GAP 3
/* Pages on the LRU tried per reclaimed page before giving up (the seed's). */
#define RECLAIM_RETRIES 8
/* Spins on a busy page lock before yielding the CPU to its holder. */
#define SPINS_BEFORE_YIELD 128

enum buddy { FIRST = 1, MIDDLE = 2, LAST = 3 };

/* What the LRU links: a headed page's header or a headless page's descriptor. */
struct lru_node {
	struct zlist link;
	bool headless;
	bool claimed; /* taken by reclaim: frees must not release the page */
};

enum { NEEDS_COMPACTING = 1 };

/* In the page's first chunk. */
struct z3fold_header {
	struct lru_node lru;
	struct zlist buddy; /* on a shard's unbuddied list */
	atomic_int lock;
	uint8_t first_chunks, middle_chunks, last_chunks; /* 0 = free */
	uint8_t start_middle;                             /* in chunks */
	uint16_t first_size, middle_size, last_size;      /* bytes asked for */
	uint8_t first_num;     /* rotates handle buddy numbers, see z3fold.h */
	uint8_t middle_mapped; /* mappers of the middle buddy: it must stay put */
	_Atomic uint8_t flags; /* read without the page lock by compaction's scan */
	int8_t shard;          /* whose list holds the page; -1: none */
};

_Static_assert(sizeof(struct z3fold_header) <= Z3FOLD_HEADER_SIZE,
	       "z3fold header must fit its chunk");

/* A headless page's out-of-band state. */
struct hl_desc {
	struct lru_node lru;
	void *page; /* the object; next free descriptor while free */
	uint16_t size;
	bool freed; /* freed while claimed: the reclaimer releases it */
};

/* A pagesrc page of descriptors; the header sits at its start. */
struct desc_slab {
	struct zlist link; /* on desc_partial while it has a free descriptor */
	struct hl_desc *free;
	uint32_t nfree;
};

#define DESCS_PER_SLAB \
	((PAGESRC_PAGE_SIZE - sizeof(struct desc_slab)) / sizeof(struct hl_desc))

_Static_assert(sizeof(struct desc_slab) % 8 == 0 && sizeof(struct hl_desc) % 8 == 0,
	       "descriptors must be 8-byte aligned to carry the headless tag");

struct shard {
	pthread_mutex_t lock;
	struct zlist unbuddied[NCHUNKS]; /* [n]: largest usable hole n chunks */
	uint64_t pages;                  /* on these lists */
} __attribute__((aligned(64)));

struct z3fold_pool {
	const struct zpool_ops *ops;
	struct zpool *zpool;
	size_t self_pages; /* pagesrc pages holding this struct */
	unsigned nshards;

	pthread_mutex_t lru_lock;
	struct zlist lru;

	pthread_mutex_t desc_lock;
	struct zlist desc_partial;

	_Atomic uint64_t pages;          /* headed + headless */
	_Atomic uint64_t headless_pages;
	_Atomic uint64_t desc_pages;
	_Atomic uint64_t objects;
	_Atomic uint64_t object_bytes;
	_Atomic uint64_t compactions;    /* middle buddies moved */
	_Atomic uint64_t reclaimed_pages;

	struct shard shards[];
};

static void count(_Atomic uint64_t *c, int64_t delta)
{
	atomic_fetch_add_explicit(c, (uint64_t)delta, memory_order_relaxed);
}

static uint64_t read_count(_Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

/* ---- page lock ---------------------------------------------------------- */

static bool page_trylock(struct z3fold_header *z)
{
	return !atomic_load_explicit(&z->lock, memory_order_relaxed) &&
	       !atomic_exchange_explicit(&z->lock, 1, memory_order_acquire);
}

/*
 * Held for a few header updates or one memmove of at most a page; a
 * preempted holder is let run rather than spun against.
 */
static void page_lock(struct z3fold_header *z)
{
	unsigned spins = 0;
	while (!page_trylock(z))
		if (++spins % SPINS_BEFORE_YIELD == 0)
			sched_yield();
}

static void page_unlock(struct z3fold_header *z)
{
	atomic_store_explicit(&z->lock, 0, memory_order_release);
}

/* ---- header helpers (page lock held) ------------------------------------ */

static unsigned size_to_chunks(size_t size)
{
	return (unsigned)((size + Z3FOLD_CHUNK_SIZE - 1) >> CHUNK_SHIFT);
}

static struct z3fold_header *handle_header(unsigned long handle)
{
	return (struct z3fold_header *)(handle & ~(PAGESRC_PAGE_SIZE - 1));
}

static unsigned long encode_handle(const struct z3fold_header *z, enum buddy bud)
{
	return (uintptr_t)z | ((bud + z->first_num) & 3u);
}

static enum buddy handle_buddy(const struct z3fold_header *z, unsigned long handle)
{
	return (enum buddy)((handle - z->first_num) & 3u);
}

static unsigned buddy_chunks(const struct z3fold_header *z, enum buddy bud)
{
	return bud == FIRST ? z->first_chunks : bud == MIDDLE ? z->middle_chunks : z->last_chunks;
}

static bool page_empty(const struct z3fold_header *z)
{
	return !z->first_chunks && !z->middle_chunks && !z->last_chunks;
}

static unsigned hole_before_middle(const struct z3fold_header *z)
{
	return z->first_chunks ? 0 : z->start_middle - ZHDR_CHUNKS;
}

static unsigned hole_after_middle(const struct z3fold_header *z)
{
	return z->last_chunks ? 0 : TOTAL_CHUNKS - (z->start_middle + z->middle_chunks);
}

/* The largest object a free slot of the page can take, in chunks. */
static unsigned num_free_chunks(const struct z3fold_header *z)
{
	if (!z->middle_chunks)
		return NCHUNKS - z->first_chunks - z->last_chunks;
	unsigned before = hole_before_middle(z), after = hole_after_middle(z);
	return before > after ? before : after;
}

static bool listable(const struct z3fold_header *z)
{
	bool free_slot = !z->first_chunks || !z->middle_chunks || !z->last_chunks;
	return free_slot && num_free_chunks(z) > 0;
}

/* Where a new object of @chunks goes; the page has room for it. */
static enum buddy choose_buddy(const struct z3fold_header *z, unsigned chunks)
{
	if (!z->middle_chunks) {
		if (!z->first_chunks)
			return FIRST;
		return z->last_chunks ? MIDDLE : LAST;
	}
	if (!z->first_chunks && chunks <= hole_before_middle(z))
		return FIRST;
	return LAST;
}

static void place_buddy(struct z3fold_header *z, enum buddy bud, unsigned chunks,
			size_t size)
{
	switch (bud) {
	case FIRST:
		z->first_chunks = (uint8_t)chunks;
		z->first_size = (uint16_t)size;
		break;
	case MIDDLE:
		z->middle_chunks = (uint8_t)chunks;
		z->middle_size = (uint16_t)size;
		z->start_middle = (uint8_t)(z->first_chunks + ZHDR_CHUNKS);
		break;
	case LAST:
		z->last_chunks = (uint8_t)chunks;
		z->last_size = (uint16_t)size;
		break;
	}
}

/* @return the bytes the buddy held. */
static size_t clear_buddy(struct z3fold_header *z, enum buddy bud)
{
	size_t size;
	switch (bud) {
	case FIRST:
		size = z->first_size;
		z->first_chunks = 0;
		z->first_size = 0;
		break;
	case MIDDLE:
		size = z->middle_size;
		z->middle_chunks = 0;
		z->middle_size = 0;
		z->start_middle = 0;
		break;
	default:
		size = z->last_size;
		z->last_chunks = 0;
		z->last_size = 0;
		break;
	}
	return size;
}

static void *buddy_addr(struct z3fold_header *z, enum buddy bud)
{
	char *page = (char *)z;
	if (bud == FIRST)
		return page + Z3FOLD_HEADER_SIZE;
	if (bud == MIDDLE)
		return page + ((size_t)z->start_middle << CHUNK_SHIFT);
	return page + PAGESRC_PAGE_SIZE - ((size_t)z->last_chunks << CHUNK_SHIFT);
}

/*
 * The seed's z3fold_compact_page rules: where the middle buddy should go,
 * or 0 to leave it.  A lone middle buddy goes to the front (and becomes
 * the first); next to one neighbour, it slides against it if that grows
 * the hole by BIG_CHUNK_GAP chunks or more.  With both neighbours there is
 * a hole on neither side of it to merge.
 */
static unsigned plan_compaction(const struct z3fold_header *z)
{
	if (!z->middle_chunks)
		return 0;
	if (!z->first_chunks && !z->last_chunks)
		return ZHDR_CHUNKS;
	if (z->first_chunks && !z->last_chunks) {
		unsigned to = ZHDR_CHUNKS + z->first_chunks;
		return z->start_middle - to >= BIG_CHUNK_GAP ? to : 0;
	}
	if (z->last_chunks && !z->first_chunks) {
		unsigned to = TOTAL_CHUNKS - z->last_chunks - z->middle_chunks;
		return to - z->start_middle >= BIG_CHUNK_GAP ? to : 0;
	}
	return 0;
}

static void move_middle(struct z3fold_header *z, unsigned to)
{
	char *page = (char *)z;
	memmove(page + ((size_t)to << CHUNK_SHIFT),
		page + ((size_t)z->start_middle << CHUNK_SHIFT), z->middle_size);
	if (z->first_chunks || z->last_chunks) {
		z->start_middle = (uint8_t)to;
		return;
	}
	/* The lone middle is now where a first buddy lives: make it one, and
	 * rotate first_num so that its handle decodes as FIRST. */
	z->first_chunks = z->middle_chunks;
	z->first_size = z->middle_size;
	z->middle_chunks = 0;
	z->middle_size = 0;
	z->start_middle = 0;
	z->first_num = (z->first_num + 1) & 3u;
}

/* ---- pool lists ---------------------------------------------------------- */

static unsigned this_shard(const struct z3fold_pool *pool)
{
	int cpu = sched_getcpu();
	return cpu < 0 ? 0 : (unsigned)cpu % pool->nshards;
}

/* Put an unlisted page on shard @si by its free chunks, if it has room. */
static void file_page(struct z3fold_pool *pool, struct z3fold_header *z, unsigned si)
{
	uint8_t flag = plan_compaction(z) ? NEEDS_COMPACTING : 0;
	atomic_store_explicit(&z->flags, flag, memory_order_relaxed);
	if (!listable(z))
		return;
	struct shard *s = &pool->shards[si];
	pthread_mutex_lock(&s->lock);
	zlist_add(&z->buddy, &s->unbuddied[num_free_chunks(z)]);
	z->shard = (int8_t)si;
	s->pages++;
	pthread_mutex_unlock(&s->lock);
}

/* Take a page off its shard list; caller holds the shard lock and the page lock. */
static void unlist_locked(struct shard *s, struct z3fold_header *z)
{
	zlist_del(&z->buddy);
	z->shard = -1;
	s->pages--;
}

static void unfile_page(struct z3fold_pool *pool, struct z3fold_header *z)
{
	if (z->shard < 0)
		return;
	struct shard *s = &pool->shards[z->shard];
	pthread_mutex_lock(&s->lock);
	unlist_locked(s, z);
	pthread_mutex_unlock(&s->lock);
}

static void lru_touch(struct z3fold_pool *pool, struct lru_node *n)
{
	pthread_mutex_lock(&pool->lru_lock);
	zlist_move(&n->link, &pool->lru);
	pthread_mutex_unlock(&pool->lru_lock);
}

/* The tightest fit for @chunks in shard @s, locked and off its list; or NULL. */
static struct z3fold_header *take_from_shard(struct shard *s, unsigned chunks)
{
	pthread_mutex_lock(&s->lock);
	for (unsigned i = chunks; i < NCHUNKS; i++) {
		struct zlist *head = &s->unbuddied[i];
		for (struct zlist *n = head->next; n != head; n = n->next) {
			struct z3fold_header *z = zlist_entry(n, struct z3fold_header, buddy);
			if (!page_trylock(z))
				continue;
			unlist_locked(s, z);
			pthread_mutex_unlock(&s->lock);
			return z;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

static struct z3fold_header *take_unbuddied(struct z3fold_pool *pool, unsigned me,
					    unsigned chunks)
{
	for (unsigned k = 0; k < pool->nshards; k++) {
		struct z3fold_header *z =
			take_from_shard(&pool->shards[(me + k) % pool->nshards], chunks);
		if (z)
			return z;
	}
	return NULL;
}

/* A fresh headed page, born locked (nobody can see it yet anyway). */
static int new_page(struct z3fold_pool *pool, struct z3fold_header **out)
{
	void *page;
	int err = pagesrc_alloc(1, &page);
	if (err)
		return err;
	struct z3fold_header *z = page;
	memset(z, 0, sizeof(*z));
	zlist_init(&z->lru.link);
	zlist_init(&z->buddy);
	z->shard = -1;
	atomic_store_explicit(&z->lock, 1, memory_order_relaxed);
	count(&pool->pages, 1);
	*out = z;
	return 0;
}

/* Give back an empty, unclaimed page; called with its lock held, drops it. */
static void release_page(struct z3fold_pool *pool, struct z3fold_header *z)
{
	unfile_page(pool, z);
	pthread_mutex_lock(&pool->lru_lock);
	zlist_del(&z->lru.link);
	pthread_mutex_unlock(&pool->lru_lock);
	page_unlock(z);
	count(&pool->pages, -1);
	pagesrc_free(z, 1);
}

/* ---- headless descriptors ------------------------------------------------ */

static struct hl_desc *slab_descs(struct desc_slab *slab)
{
	return (struct hl_desc *)(void *)((char *)slab + sizeof(*slab));
}

static int new_slab(struct desc_slab **out)
{
	struct desc_slab *slab;
	int err = pagesrc_alloc(1, (void **)&slab);
	if (err)
		return err;
	struct hl_desc *d = slab_descs(slab);
	slab->free = NULL;
	for (size_t i = DESCS_PER_SLAB; i-- > 0;) {
		d[i].page = slab->free;
		slab->free = &d[i];
	}
	slab->nfree = DESCS_PER_SLAB;
	zlist_init(&slab->link);
	*out = slab;
	return 0;
}

static int desc_alloc(struct z3fold_pool *pool, struct hl_desc **out)
{
	pthread_mutex_lock(&pool->desc_lock);
	if (zlist_empty(&pool->desc_partial)) {
		pthread_mutex_unlock(&pool->desc_lock);
		struct desc_slab *slab;
		int err = new_slab(&slab);
		if (err)
			return err;
		count(&pool->desc_pages, 1);
		pthread_mutex_lock(&pool->desc_lock);
		zlist_add(&slab->link, &pool->desc_partial);
	}
	struct desc_slab *slab =
		zlist_entry(pool->desc_partial.next, struct desc_slab, link);
	struct hl_desc *d = slab->free;
	slab->free = d->page;
	if (--slab->nfree == 0)
		zlist_del(&slab->link);
	pthread_mutex_unlock(&pool->desc_lock);
	*out = d;
	return 0;
}

/* Empty slabs go straight back: they count in the pool's pages. */
static void desc_free(struct z3fold_pool *pool, struct hl_desc *d)
{
	struct desc_slab *slab =
		(struct desc_slab *)((uintptr_t)d & ~(PAGESRC_PAGE_SIZE - 1));
	pthread_mutex_lock(&pool->desc_lock);
	d->page = slab->free;
	slab->free = d;
	if (slab->nfree++ == 0)
		zlist_add(&slab->link, &pool->desc_partial);
	bool empty = slab->nfree == DESCS_PER_SLAB;
	if (empty)
		zlist_del(&slab->link);
	pthread_mutex_unlock(&pool->desc_lock);
	if (empty) {
		count(&pool->desc_pages, -1);
		pagesrc_free(slab, 1);
	}
}

static struct hl_desc *handle_desc(unsigned long handle)
{
	return (struct hl_desc *)(handle & ~Z3FOLD_HANDLE_HEADLESS);
}

static int headless_malloc(struct z3fold_pool *pool, size_t size, unsigned long *handle)
{
	struct hl_desc *d;
	int err = desc_alloc(pool, &d);
	if (err)
		return err;
	err = pagesrc_alloc(1, &d->page);
	if (err) {
		desc_free(pool, d);
		return err;
	}
	d->size = (uint16_t)size;
	d->freed = false;
	d->lru.headless = true;
	d->lru.claimed = false;
	zlist_init(&d->lru.link);
	count(&pool->pages, 1);
	count(&pool->headless_pages, 1);
	count(&pool->objects, 1);
	count(&pool->object_bytes, (int64_t)size);
	lru_touch(pool, &d->lru);
	*handle = (uintptr_t)d | Z3FOLD_HANDLE_HEADLESS;
	return 0;
}

static void release_headless(struct z3fold_pool *pool, struct hl_desc *d)
{
	pagesrc_free(d->page, 1);
	desc_free(pool, d);
	count(&pool->pages, -1);
	count(&pool->headless_pages, -1);
}

static void headless_free(struct z3fold_pool *pool, unsigned long handle)
{
	struct hl_desc *d = handle_desc(handle);
	count(&pool->objects, -1);
	count(&pool->object_bytes, -(int64_t)d->size);
	pthread_mutex_lock(&pool->lru_lock);
	if (d->lru.claimed) {
		d->freed = true;
		pthread_mutex_unlock(&pool->lru_lock);
		return;
	}
	zlist_del(&d->lru.link);
	pthread_mutex_unlock(&pool->lru_lock);
	release_headless(pool, d);
}

/* ---- zpool driver -------------------------------------------------------- */

/* One shard per CPU this thread may run on, by highest CPU number. */
static unsigned count_shards(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set))
		return 1;
	unsigned n = 1;
	for (unsigned c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &set))
			n = c + 1;
	return n > Z3FOLD_MAX_SHARDS ? Z3FOLD_MAX_SHARDS : n;
}

static int z3fold_create(const struct zpool_ops *ops, struct zpool *zpool, void **out)
{
	unsigned nshards = count_shards();
	size_t bytes = sizeof(struct z3fold_pool) + nshards * sizeof(struct shard);
	size_t npages = (bytes + PAGESRC_PAGE_SIZE - 1) / PAGESRC_PAGE_SIZE;
	struct z3fold_pool *pool;
	int err = pagesrc_alloc(npages, (void **)&pool);
	if (err)
		return err;
	memset(pool, 0, bytes);
	pool->ops = ops;
	pool->zpool = zpool;
	pool->self_pages = npages;
	pool->nshards = nshards;
	pthread_mutex_init(&pool->lru_lock, NULL);
	zlist_init(&pool->lru);
	pthread_mutex_init(&pool->desc_lock, NULL);
	zlist_init(&pool->desc_partial);
	for (unsigned s = 0; s < nshards; s++) {
		pthread_mutex_init(&pool->shards[s].lock, NULL);
		for (unsigned i = 0; i < NCHUNKS; i++)
			zlist_init(&pool->shards[s].unbuddied[i]);
	}
	*out = pool;
	return 0;
}

/* Every page is on the LRU unless under reclaim, which destroy must not race. */
static void z3fold_destroy(void *p)
{
	struct z3fold_pool *pool = p;
	while (!zlist_empty(&pool->lru)) {
		struct lru_node *n = zlist_entry(pool->lru.next, struct lru_node, link);
		zlist_del(&n->link);
		if (n->headless) {
			struct hl_desc *d = zlist_entry(n, struct hl_desc, lru);
			pagesrc_free(d->page, 1);
			desc_free(pool, d);
		} else {
			pagesrc_free(zlist_entry(n, struct z3fold_header, lru), 1);
		}
	}
	for (unsigned s = 0; s < pool->nshards; s++)
		pthread_mutex_destroy(&pool->shards[s].lock);
	pthread_mutex_destroy(&pool->lru_lock);
	pthread_mutex_destroy(&pool->desc_lock);
	pagesrc_free(pool, pool->self_pages);
}

static int z3fold_malloc(void *p, size_t size, unsigned long *handle)
{
	struct z3fold_pool *pool = p;
	if (size == 0)
		return -EINVAL;
	if (size > Z3FOLD_MAX_SIZE)
		return -ENOSPC;
	if (size > Z3FOLD_MAX_BUDDY_SIZE)
		return headless_malloc(pool, size, handle);

	unsigned chunks = size_to_chunks(size);
	unsigned me = this_shard(pool);
	struct z3fold_header *z = take_unbuddied(pool, me, chunks);
	if (!z) {
		int err = new_page(pool, &z);
		if (err)
			return err;
	}
	enum buddy bud = choose_buddy(z, chunks);
	place_buddy(z, bud, chunks, size);
	file_page(pool, z, me);
	lru_touch(pool, &z->lru);
	*handle = encode_handle(z, bud);
	page_unlock(z);
	count(&pool->objects, 1);
	count(&pool->object_bytes, (int64_t)size);
	return 0;
}

static void z3fold_free(void *p, unsigned long handle)
{
	struct z3fold_pool *pool = p;
	if (z3fold_handle_is_headless(handle)) {
		headless_free(pool, handle);
		return;
	}
	struct z3fold_header *z = handle_header(handle);
	page_lock(z);
	size_t size = clear_buddy(z, handle_buddy(z, handle));
	count(&pool->objects, -1);
	count(&pool->object_bytes, -(int64_t)size);
	if (z->lru.claimed) {
		/* the reclaimer frees or re-files the page when it is done */
		page_unlock(z);
		return;
	}
	if (page_empty(z)) {
		release_page(pool, z);
		return;
	}
	/* A page that was full joins the freeing thread's shard. */
	unsigned si = z->shard >= 0 ? (unsigned)z->shard : this_shard(pool);
	unfile_page(pool, z);
	file_page(pool, z, si);
	page_unlock(z);
}

static void *z3fold_map(void *p, unsigned long handle, enum zpool_mapmode mm)
{
	(void)p;
	(void)mm;
	if (z3fold_handle_is_headless(handle))
		return handle_desc(handle)->page;
	struct z3fold_header *z = handle_header(handle);
	page_lock(z);
	enum buddy bud = handle_buddy(z, handle);
	if (bud == MIDDLE)
		z->middle_mapped++;
	void *addr = buddy_addr(z, bud);
	page_unlock(z);
	return addr;
}

static void z3fold_unmap(void *p, unsigned long handle)
{
	(void)p;
	if (z3fold_handle_is_headless(handle))
		return;
	struct z3fold_header *z = handle_header(handle);
	page_lock(z);
	/* first_num cannot have moved: a mapped middle is never converted */
	if (handle_buddy(z, handle) == MIDDLE)
		z->middle_mapped--;
	page_unlock(z);
}

static uint64_t z3fold_total_pages(void *p)
{
	struct z3fold_pool *pool = p;
	return read_count(&pool->pages) + read_count(&pool->desc_pages);
}

/*
 * Compact one flagged page of shard @si's list @i.  The page comes off the
 * list so the memmove runs without the shard lock, then is filed again by
 * its new hole.  @return false when the list has no page left to move.
 */
static bool compact_next(struct z3fold_pool *pool, unsigned si, unsigned i)
{
	struct shard *s = &pool->shards[si];
	struct zlist *head = &s->unbuddied[i];
	pthread_mutex_lock(&s->lock);
	for (struct zlist *n = head->next; n != head; n = n->next) {
		struct z3fold_header *z = zlist_entry(n, struct z3fold_header, buddy);
		if (!(atomic_load_explicit(&z->flags, memory_order_relaxed) & NEEDS_COMPACTING))
			continue;
		if (!page_trylock(z))
			continue;
		/* a mapped middle keeps its flag: a later pass moves it */
		unsigned to = z->middle_mapped ? 0 : plan_compaction(z);
		if (!to) {
			page_unlock(z);
			continue;
		}
		unlist_locked(s, z);
		pthread_mutex_unlock(&s->lock);
		move_middle(z, to);
		count(&pool->compactions, 1);
		file_page(pool, z, si);
		page_unlock(z);
		return true;
	}
	pthread_mutex_unlock(&s->lock);
	return false;
}

/*
 * Moves every middle buddy that gains room, as the seed's compaction work
 * did after each free.  Frees no page (handles pin objects to their page),
 * so *@pages_freed is 0.  Work is bounded by the pool's size at the start,
 * so that concurrent frees re-flagging pages cannot keep it going.
 */
static int z3fold_compact(void *p, unsigned long *pages_freed)
{
	struct z3fold_pool *pool = p;
	uint64_t budget = read_count(&pool->pages);
	for (unsigned si = 0; si < pool->nshards; si++)
		for (unsigned i = 1; i < NCHUNKS && budget; i++)
			while (budget && compact_next(pool, si, i))
				budget--;
	*pages_freed = 0;
	return 0;
}

/*
 * Take the least recently allocated-into page that nobody holds off the
 * LRU and claim it; a headed page comes back locked.  @return 0, -EINVAL
 * when the LRU is empty, -EAGAIN when every page on it is busy.
 */
static int claim_lru_tail(struct z3fold_pool *pool, struct lru_node **out)
{
	pthread_mutex_lock(&pool->lru_lock);
	int err = zlist_empty(&pool->lru) ? -EINVAL : -EAGAIN;
	for (struct zlist *l = pool->lru.prev; l != &pool->lru; l = l->prev) {
		struct lru_node *n = zlist_entry(l, struct lru_node, link);
		if (!n->headless &&
		    !page_trylock(zlist_entry(n, struct z3fold_header, lru)))
			continue;
		n->claimed = true;
		zlist_del(&n->link);
		*out = n;
		err = 0;
		break;
	}
	pthread_mutex_unlock(&pool->lru_lock);
	return err;
}

static int evict(struct z3fold_pool *pool, unsigned long handle)
{
	return pool->ops->evict(pool->zpool, handle, pool->ops->arg);
}

/* @return true when the page was freed. */
static bool reclaim_headless(struct z3fold_pool *pool, struct hl_desc *d)
{
	evict(pool, (uintptr_t)d | Z3FOLD_HANDLE_HEADLESS);
	pthread_mutex_lock(&pool->lru_lock);
	d->lru.claimed = false;
	bool freed = d->freed;
	if (!freed)
		zlist_add(&d->lru.link, &pool->lru);
	pthread_mutex_unlock(&pool->lru_lock);
	if (freed) {
		release_headless(pool, d);
		count(&pool->reclaimed_pages, 1);
	}
	return freed;
}

/*
 * Evict one buddy of a claimed page unless its owner freed it meanwhile
 * (a claimed page's free slots are not reused, so a live slot is still the
 * same object).  @return the callback's result, 0 for a freed buddy.
 */
static int evict_buddy(struct z3fold_pool *pool, struct z3fold_header *z, enum buddy bud)
{
	page_lock(z);
	unsigned long handle = buddy_chunks(z, bud) ? encode_handle(z, bud) : 0;
	page_unlock(z);
	return handle ? evict(pool, handle) : 0;
}

/* Called with the page claimed and locked.  @return true when it was freed. */
static bool reclaim_headed(struct z3fold_pool *pool, struct z3fold_header *z)
{
	static const enum buddy order[] = { MIDDLE, FIRST, LAST }; /* the seed's */
	unfile_page(pool, z); /* off limits to allocation and compaction */
	page_unlock(z);
	for (size_t k = 0; k < sizeof(order) / sizeof(order[0]); k++)
		if (evict_buddy(pool, z, order[k]))
			break;
	page_lock(z);
	z->lru.claimed = false;
	if (page_empty(z)) {
		page_unlock(z);
		count(&pool->pages, -1);
		count(&pool->reclaimed_pages, 1);
		pagesrc_free(z, 1);
		return true;
	}
	file_page(pool, z, this_shard(pool));
	lru_touch(pool, &z->lru);
	page_unlock(z);
	return false;
}

/*
 * z3fold_reclaim_page() as in the seed.  @return 0 when a page was freed,
 * -EINVAL with nothing to evict or no evict callback, -EAGAIN when
 * @retries pages could not be emptied.
 */
static int reclaim_page(struct z3fold_pool *pool, unsigned retries)
{
	if (!pool->ops || !pool->ops->evict)
		return -EINVAL;
	for (unsigned i = 0; i < retries; i++) {
		struct lru_node *n;
		int err = claim_lru_tail(pool, &n);
		if (err)
			return err;
		bool freed = n->headless
			? reclaim_headless(pool, zlist_entry(n, struct hl_desc, lru))
			: reclaim_headed(pool, zlist_entry(n, struct z3fold_header, lru));
		if (freed)
			return 0;
	}
	return -EAGAIN;
}

static int z3fold_reclaim_page(void *p)
{
	return reclaim_page(p, RECLAIM_RETRIES);
}

#define SHARD_ROW(n) "shard" #n "_unbuddied"
static const char *const shard_rows[Z3FOLD_MAX_SHARDS] = {
	SHARD_ROW(0), SHARD_ROW(1), SHARD_ROW(2), SHARD_ROW(3), SHARD_ROW(4),
	SHARD_ROW(5), SHARD_ROW(6), SHARD_ROW(7), SHARD_ROW(8), SHARD_ROW(9),
	SHARD_ROW(10), SHARD_ROW(11), SHARD_ROW(12), SHARD_ROW(13), SHARD_ROW(14),
	SHARD_ROW(15), SHARD_ROW(16), SHARD_ROW(17), SHARD_ROW(18), SHARD_ROW(19),
	SHARD_ROW(20), SHARD_ROW(21), SHARD_ROW(22), SHARD_ROW(23), SHARD_ROW(24),
	SHARD_ROW(25), SHARD_ROW(26), SHARD_ROW(27), SHARD_ROW(28), SHARD_ROW(29),
	SHARD_ROW(30), SHARD_ROW(31),
};

/* Pool-wide rows, then "shards" and one unbuddied-page count per shard. */
static size_t z3fold_driver_stats(void *p, struct zpool_stat *rows, size_t max)
{
	struct z3fold_pool *pool = p;
	enum { NFIXED = 9 };
	struct zpool_stat all[NFIXED + Z3FOLD_MAX_SHARDS];
	uint64_t unbuddied = 0;
	for (unsigned s = 0; s < pool->nshards; s++) {
		pthread_mutex_lock(&pool->shards[s].lock);
		all[NFIXED + s] = (struct zpool_stat){ shard_rows[s], pool->shards[s].pages };
		pthread_mutex_unlock(&pool->shards[s].lock);
		unbuddied += all[NFIXED + s].value;
	}
	uint64_t pages = read_count(&pool->pages);
	uint64_t headless = read_count(&pool->headless_pages);
	all[0] = (struct zpool_stat){ "pages", pages };
	all[1] = (struct zpool_stat){ "headless_pages", headless };
	all[2] = (struct zpool_stat){ "unbuddied_pages", unbuddied };
	all[3] = (struct zpool_stat){ "objects", read_count(&pool->objects) };
	all[4] = (struct zpool_stat){ "object_bytes", read_count(&pool->object_bytes) };
	all[5] = (struct zpool_stat){ "compactions", read_count(&pool->compactions) };
	all[6] = (struct zpool_stat){ "desc_pages", read_count(&pool->desc_pages) };
	all[7] = (struct zpool_stat){ "reclaimed_pages", read_count(&pool->reclaimed_pages) };
	all[8] = (struct zpool_stat){ "shards", pool->nshards };
	size_t n = NFIXED + pool->nshards;
	for (size_t i = 0; i < n && i < max; i++)
		rows[i] = all[i];
	return n;
}

const struct zpool_driver z3fold_zpool_driver = {
	.type = "z3fold",
	.max_size = Z3FOLD_MAX_SIZE,
	.create = z3fold_create,
	.destroy = z3fold_destroy,
	.malloc = z3fold_malloc,
	.free = z3fold_free,
	.map = z3fold_map,
	.unmap = z3fold_unmap,
	.total_pages = z3fold_total_pages,
	.reclaim_page = z3fold_reclaim_page,
	.compact = z3fold_compact,
	.class_stats = NULL,
	.driver_stats = z3fold_driver_stats,
};

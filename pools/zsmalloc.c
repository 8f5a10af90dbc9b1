/*
 * zsmalloc — size-class allocator for compressed pages, after the kernel's
 * mm/zsmalloc.c (5.x fullness groups and class merging, 5.x handle pinning,
 * 6.x per-class locks).
 *
 * Layout.  Objects are grouped in 255 size classes 16 bytes apart (32 ..
 * 4096).  A class carves its objects out of zspages: runs of 1..8 pages
 * from pagesrc, the run length chosen per class to waste the least tail
 * space (class 1008: one page holds 4 objects and wastes 64 bytes, 8 pages
 * hold 32 and waste 512, 2 pages hold 8 and waste 128, ... the best ratio
 * wins, fewer pages on a tie).  Classes whose (pages, objects) per zspage
 * come out equal are merged: the larger size serves both, as in the kernel.
 *
 * Improvement over the kernel: pagesrc hands out *virtually contiguous*
 * runs, so an object straddling a page boundary is still contiguous in our
 * address space and map() returns a direct pointer.  The kernel must copy
 * such objects through a per-cpu buffer because its zspage pages are
 * unrelated physical pages; here there is no copy and no per-thread buffer.
 *
 * Pages per zspage (N).  Measured with this allocator (the suite's density
 * test built with -DZS_MAX_PAGES_PER_ZSPAGE=N): density = object bytes /
 * pool bytes (zspages + handle and descriptor slabs) after replaying each
 * shared/data/sizes distribution in order; mean over all eight, and the
 * best and worst distributions; "churned" = after freeing a random half
 * and compacting.
 *     N               4      6      8     10     16
 *   mean           .9390  .9490  .9509  .9501  .9388
 *   python.lz4     .9455  .9594  .9650  .9656  .9613
 *   redis.zstd1    .9232  .9270  .9242  .9204  .9063  (worst at every N)
 *   mean churned   .9256  .9333  .9325  .9284  .9075
 * (a page-count model gives .702 at N=1, .871 at N=2, .943 at N=32 on
 * python.lz4).  Density climbs to 6..8 and falls beyond: longer zspages
 * leave more classes unmerged (192 at N=16 against 119 at 8) and each
 * class's partly filled last zspage grows, and a churned pool has a harder
 * time emptying long zspages.  6 and 8 tie; 8 wins on the fuller pools.
 *
 * Handles are indirect: a handle is the address of an 8-byte slot, taken
 * from a slab of pagesrc pages, holding the object's location
 * (zspage descriptor, object index) plus a 4-bit pin count.  Compaction
 * rewrites the slot, so handles survive moves.  Each object of a non-huge
 * class starts with an 8-byte header: its handle's address, its length
 * (bits 48..63) and tag bit 0 (1 = allocated; a free slot holds its
 * free-list link with bit 0 clear).  The header costs 8 bytes per object,
 * which the class choice accounts for: 0.4% of density on python lz4,
 * 1.8% on redis zstd (small objects); a side array in the descriptor would
 * cost the same bytes per slot.  The huge class (one object per page: every
 * size whose best zspage is one page, one object) has no header: a page
 * stored as-is fits, and one-object zspages never need compaction.
 *
 * Fullness groups (5.x, by quarters of objects in use): empty (freed at
 * once), almost_empty (<= 3/4), almost_full (> 3/4), full.  malloc fills
 * almost_full zspages first, then almost_empty; compaction moves objects
 * from the sparsest zspage (almost_empty tail) into the fullest
 * (almost_full head) and frees the zspages it empties.
 *
 * Locks and what they protect:
 *   - class->lock (mutex): the class's fullness lists and counters, and for
 *     every zspage of the class its inuse count, free list and fullness,
 *     and the header word of each of its objects.
 *   - pin count, in each handle slot (atomic): while shared (1..14) the
 *     object neither moves nor is freed — map() takes it, unmap() drops
 *     it; exclusive (15) is held by free() while it takes the object out
 *     and by compaction while it copies one object.
 *   - mslab->lock (mutex; handle slab, descriptor slab): that slab's pages.
 *   - pool->pages (atomic): pool memory, for total_pages.
 * Lock order: pin (exclusive, free only) -> class->lock -> mslab->lock ->
 * pagesrc's lock.  Compaction holds a class lock and only *tries* pins,
 * skipping pinned objects, so it never waits for a mapper and a thread
 * that holds a pin while waiting for a class lock cannot deadlock it.
 * map()/unmap() take no lock at all: one CAS on the handle's own cache
 * line (the kernel 6.x replaced its pin bit with a global migrate rwlock
 * for PREEMPT_RT; in user space the pin keeps fault handlers from
 * bouncing a shared lock line, and compaction yields to them instead).
 *
 * Lifecycle.  Object: malloc takes a handle slot, then under the class
 * lock a free object slot, writes the header and publishes the location;
 * it is mapped and unmapped any number of times, possibly moved by
 * compaction while unpinned; free pins it exclusively, unlinks it under
 * the class lock and returns the handle slot.  Zspage: created outside any
 * lock when a class has no free slot, lives on the fullness list matching
 * its inuse count, and is freed (pages and descriptor) outside the class
 * lock as soon as its last object goes, by free or by compaction.
 */
#include "pools/zsmalloc.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "pools/zpool.h"

#define PAGE PAGESRC_PAGE_SIZE

/* ---- handle slot word: location and pin count ------------------------- */

/*
 * slot = (descriptor >> 5) << 16 | object index << 4 | pin.  Descriptors
 * are 32-byte aligned; an index needs 12 bits (at most 8 pages of 32-byte
 * objects = 1024).
 */
#define PIN_MASK 0xfULL
#define PIN_EXCL 0xfULL
#define PIN_SHARED_MAX (PIN_EXCL - 1)
#define IDX_SHIFT 4
#define IDX_MASK 0xfffU
#define DESC_SHIFT 16
#define DESC_ALIGN_SHIFT 5
#define SPINS_BEFORE_YIELD 64

_Static_assert(ZS_MAX_PAGES_PER_ZSPAGE * PAGE / ZS_MIN_CLASS_SIZE <= IDX_MASK,
	       "object index does not fit a handle slot");
_Static_assert(ZS_MAX_PAGES_PER_ZSPAGE <= PAGESRC_MAX_RUN,
	       "zspage longer than a pagesrc run");

/* ---- object header word ------------------------------------------------ */

#define HDR_ALLOCATED 1ULL
#define HDR_LEN_SHIFT 48
#define HDR_HANDLE_MASK ((1ULL << HDR_LEN_SHIFT) - 8)
#define FREE_END 0xffffU

/* ---- structures --------------------------------------------------------- */

/* Circular lists with a sentinel head: O(1) head, tail and removal. */
struct dlink {
	struct dlink *prev, *next;
};

/*
 * Zspage descriptor, 32 bytes, from the descriptor slab.  base, size,
 * class_idx are set at creation and never change (map reads them without
 * a lock); the rest belongs to the class lock.
 */
struct zspage {
	struct dlink link;     /* fullness list */
	char *base;            /* first byte of the page run */
	uint16_t size;         /* class slot size */
	uint8_t class_idx;
	uint8_t fullness;      /* enum fullness; ZS_EMPTY while off-list */
	uint16_t inuse;
	uint16_t free_or_len;  /* free-list head; huge class: object length */
};
_Static_assert(sizeof(struct zspage) == 1 << DESC_ALIGN_SHIFT, "descriptor size");

enum fullness { ZS_EMPTY, ZS_ALMOST_EMPTY, ZS_ALMOST_FULL, ZS_FULL, ZS_NR_FULLNESS };

struct size_class {
	pthread_mutex_t lock;
	struct dlink head[ZS_NR_FULLNESS]; /* [ZS_EMPTY] unused */
	unsigned long nr[ZS_NR_FULLNESS];
	unsigned long zspages, obj_used, obj_bytes;
	uint16_t size, objs, ppz;
	uint8_t index;
	bool huge;
} __attribute__((aligned(64)));

/* A slab page starts with this header; slots follow it. */
struct mslab_page {
	struct dlink link;
	uint32_t inuse, free_head, fresh, pad;
};
#define MSLAB_HDR sizeof(struct mslab_page)
_Static_assert(MSLAB_HDR == 32, "slab header keeps descriptors 32-byte aligned");

struct mslab {
	pthread_mutex_t lock;
	struct dlink partial, full;
	uint32_t obj_size, cap;
	unsigned long pages;
};

struct zs_pool {
	struct size_class classes[ZS_NR_CLASSES]; /* only representatives used */
	struct mslab handles, descs;
	_Atomic uint64_t pages; /* zspage + slab pages */
	_Atomic uint64_t compactions, pages_compacted, objects_moved;
	size_t own_pages;       /* pages of this struct (not pool memory) */
};

/* ---- class geometry, shared by every pool ------------------------------- */

struct class_geom {
	uint16_t size, objs;
	uint8_t ppz, rep; /* rep: index of the class that serves this one */
};

static struct class_geom geom[ZS_NR_CLASSES];
static pthread_once_t geom_once = PTHREAD_ONCE_INIT;

/* Pages per zspage with the least waste ratio; fewer pages on a tie. */
static unsigned best_pages(unsigned size)
{
	unsigned best = 1, best_waste = PAGE % size;
	for (unsigned p = 2; p <= ZS_MAX_PAGES_PER_ZSPAGE; p++) {
		unsigned waste = (p * PAGE) % size;
		if ((uint64_t)waste * best < (uint64_t)best_waste * p) {
			best = p;
			best_waste = waste;
		}
	}
	return best;
}

static void build_geom(void)
{
	unsigned rep = ZS_NR_CLASSES - 1;
	for (int k = ZS_NR_CLASSES - 1; k >= 0; k--) {
		struct class_geom *g = &geom[k];
		g->size = ZS_MIN_CLASS_SIZE + k * ZS_SIZE_CLASS_DELTA;
		g->ppz = best_pages(g->size);
		g->objs = g->ppz * PAGE / g->size;
		if (g->ppz != geom[rep].ppz || g->objs != geom[rep].objs)
			rep = k;
		g->rep = rep;
	}
}

/* Class for @size bytes of payload (1..ZS_MAX_ALLOC_SIZE). */
static unsigned class_index(size_t size)
{
	pthread_once(&geom_once, build_geom);
	size_t need = size + ZS_HANDLE_SIZE;
	unsigned k = need <= ZS_MIN_CLASS_SIZE ? 0 :
		(need - ZS_MIN_CLASS_SIZE + ZS_SIZE_CLASS_DELTA - 1) / ZS_SIZE_CLASS_DELTA;
	if (k >= ZS_NR_CLASSES)
		k = ZS_NR_CLASSES - 1; /* 4089..4096: the huge class, headerless */
	return geom[k].rep;
}

int zs_size_class(size_t size, struct zs_class_info *out)
{
	if (size == 0)
		return -EINVAL;
	if (size > ZS_MAX_ALLOC_SIZE)
		return -ENOSPC;
	unsigned k = class_index(size);
	const struct class_geom *g = &geom[k];
	*out = (struct zs_class_info){
		.index = k,
		.size = g->size,
		.pages_per_zspage = g->ppz,
		.objs_per_zspage = g->objs,
		.huge = g->objs == 1,
	};
	return 0;
}

/* ---- doubly linked lists ------------------------------------------------ */

static void list_init(struct dlink *head)
{
	head->prev = head->next = head;
}

static bool list_empty(const struct dlink *head)
{
	return head->next == head;
}

static void list_add_after(struct dlink *pos, struct dlink *n)
{
	n->prev = pos;
	n->next = pos->next;
	pos->next->prev = n;
	pos->next = n;
}

static void list_del(struct dlink *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
}

/*
 * ---- metadata slabs: handle slots and zspage descriptors -----------------
 * Not core/slab: that one keeps a spare empty page, and pool memory must
 * fall to zero with the last object and compaction must count exactly the
 * pages it releases.
 */

static void mslab_init(struct mslab *s, uint32_t obj_size)
{
	pthread_mutex_init(&s->lock, NULL);
	list_init(&s->partial);
	list_init(&s->full);
	s->obj_size = obj_size;
	s->cap = (PAGE - MSLAB_HDR) / obj_size;
}

static void *mslab_slot(const struct mslab *s, struct mslab_page *pg, uint32_t i)
{
	return (char *)pg + MSLAB_HDR + (size_t)i * s->obj_size;
}

/* Free slots link through their first 4 bytes; never-used ones are fresh. */
static void *mslab_take_locked(struct mslab *s, struct mslab_page *pg)
{
	uint32_t i;
	if (pg->free_head != UINT32_MAX) {
		i = pg->free_head;
		memcpy(&pg->free_head, mslab_slot(s, pg, i), sizeof(uint32_t));
	} else {
		i = pg->fresh++;
	}
	if (++pg->inuse == s->cap) {
		list_del(&pg->link);
		list_add_after(&s->full, &pg->link);
	}
	return mslab_slot(s, pg, i);
}

static int mslab_alloc(struct zs_pool *pool, struct mslab *s, void **out)
{
	pthread_mutex_lock(&s->lock);
	if (list_empty(&s->partial)) {
		pthread_mutex_unlock(&s->lock);
		struct mslab_page *pg;
		int err = pagesrc_alloc(1, (void **)&pg);
		if (err)
			return err;
		*pg = (struct mslab_page){ .free_head = UINT32_MAX };
		atomic_fetch_add_explicit(&pool->pages, 1, memory_order_relaxed);
		pthread_mutex_lock(&s->lock);
		list_add_after(&s->partial, &pg->link);
		s->pages++;
	}
	*out = mslab_take_locked(s, (struct mslab_page *)s->partial.next);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/*
 * An empty slab page goes straight back to pagesrc, which caches it.
 * Returns the pages released (0 or 1).
 */
static unsigned mslab_free(struct zs_pool *pool, struct mslab *s, void *obj)
{
	struct mslab_page *pg = (struct mslab_page *)((uintptr_t)obj & ~(PAGE - 1));
	uint32_t i = (uint32_t)(((char *)obj - (char *)pg - MSLAB_HDR) / s->obj_size);

	pthread_mutex_lock(&s->lock);
	memcpy(obj, &pg->free_head, sizeof(uint32_t));
	pg->free_head = i;
	if (pg->inuse-- == s->cap) {
		list_del(&pg->link);
		list_add_after(&s->partial, &pg->link);
	}
	bool release = pg->inuse == 0;
	if (release) {
		list_del(&pg->link);
		s->pages--;
	}
	pthread_mutex_unlock(&s->lock);
	if (!release)
		return 0;
	pagesrc_free(pg, 1);
	atomic_fetch_sub_explicit(&pool->pages, 1, memory_order_relaxed);
	return 1;
}

static unsigned long mslab_pages(struct mslab *s)
{
	pthread_mutex_lock(&s->lock);
	unsigned long n = s->pages;
	pthread_mutex_unlock(&s->lock);
	return n;
}

static void mslab_free_all(struct mslab *s)
{
	struct dlink *lists[] = { &s->partial, &s->full };
	for (size_t l = 0; l < 2; l++)
		for (struct dlink *n = lists[l]->next, *next; n != lists[l]; n = next) {
			next = n->next;
			pagesrc_free(n, 1);
		}
	pthread_mutex_destroy(&s->lock);
}

/* ---- handle pins ---------------------------------------------------------- */

static void backoff(unsigned *spins)
{
	if (++*spins < SPINS_BEFORE_YIELD) {
#if defined(__x86_64__) || defined(__i386__)
		__builtin_ia32_pause();
#endif
		return;
	}
	sched_yield(); /* the holder may be preempted: let it run */
}

/* Shared pin for map(); returns the slot value (the location). */
static uint64_t pin_shared(_Atomic uint64_t *slot)
{
	unsigned spins = 0;
	uint64_t v = atomic_load_explicit(slot, memory_order_relaxed);
	for (;;) {
		if ((v & PIN_MASK) < PIN_SHARED_MAX) {
			if (atomic_compare_exchange_weak_explicit(slot, &v, v + 1,
					memory_order_acquire, memory_order_relaxed))
				return v;
			continue;
		}
		backoff(&spins);
		v = atomic_load_explicit(slot, memory_order_relaxed);
	}
}

/* Exclusive pin for free(): waits out mappers and a compactor's copy. */
static uint64_t pin_exclusive(_Atomic uint64_t *slot)
{
	unsigned spins = 0;
	uint64_t v = atomic_load_explicit(slot, memory_order_relaxed);
	for (;;) {
		if ((v & PIN_MASK) == 0) {
			if (atomic_compare_exchange_weak_explicit(slot, &v, v | PIN_EXCL,
					memory_order_acquire, memory_order_relaxed))
				return v;
			continue;
		}
		backoff(&spins);
		v = atomic_load_explicit(slot, memory_order_relaxed);
	}
}

static uint64_t loc_encode(const struct zspage *zs, unsigned idx)
{
	return ((uint64_t)(uintptr_t)zs >> DESC_ALIGN_SHIFT) << DESC_SHIFT |
	       (uint64_t)idx << IDX_SHIFT;
}

static struct zspage *loc_zspage(uint64_t v)
{
	return (struct zspage *)(uintptr_t)((v >> DESC_SHIFT) << DESC_ALIGN_SHIFT);
}

static unsigned loc_idx(uint64_t v)
{
	return (v >> IDX_SHIFT) & IDX_MASK;
}

/* ---- objects inside a zspage ---------------------------------------------- */

static bool zspage_huge(const struct zspage *zs)
{
	return zs->size == ZS_MAX_ALLOC_SIZE;
}

static uint64_t *obj_word(const struct zspage *zs, unsigned idx)
{
	return (uint64_t *)(zs->base + (size_t)idx * zs->size);
}

static void *obj_data(const struct zspage *zs, unsigned idx)
{
	return (char *)obj_word(zs, idx) + (zspage_huge(zs) ? 0 : ZS_HANDLE_SIZE);
}

static uint64_t hdr_make(_Atomic uint64_t *slot, size_t len)
{
	return (uint64_t)(uintptr_t)slot | (uint64_t)len << HDR_LEN_SHIFT | HDR_ALLOCATED;
}

static _Atomic uint64_t *hdr_slot(uint64_t hdr)
{
	return (_Atomic uint64_t *)(uintptr_t)(hdr & HDR_HANDLE_MASK);
}

/* Payload length of a live object; class lock held. */
static size_t obj_len(const struct zspage *zs, unsigned idx)
{
	return zspage_huge(zs) ? zs->free_or_len : *obj_word(zs, idx) >> HDR_LEN_SHIFT;
}

/* Take a free object slot and write its header; class lock held. */
static unsigned obj_take(struct zspage *zs, uint64_t hdr)
{
	zs->inuse++;
	if (zspage_huge(zs)) {
		zs->free_or_len = (uint16_t)(hdr >> HDR_LEN_SHIFT);
		return 0;
	}
	unsigned idx = zs->free_or_len;
	uint64_t *w = obj_word(zs, idx);
	zs->free_or_len = (uint16_t)(*w >> 1);
	*w = hdr;
	return idx;
}

static void obj_put(struct zspage *zs, unsigned idx)
{
	zs->inuse--;
	if (!zspage_huge(zs)) {
		*obj_word(zs, idx) = (uint64_t)zs->free_or_len << 1;
		zs->free_or_len = (uint16_t)idx;
	}
}

/* ---- zspages and fullness groups ------------------------------------------ */

static int zspage_create(struct zs_pool *pool, struct size_class *c,
			 struct zspage **out)
{
	struct zspage *zs;
	int err = mslab_alloc(pool, &pool->descs, (void **)&zs);
	if (err)
		return err;
	void *base;
	err = pagesrc_alloc_data(c->ppz, &base); /* no forked child reads it */
	if (err) {
		mslab_free(pool, &pool->descs, zs);
		return err;
	}
	*zs = (struct zspage){
		.base = base, .size = c->size, .class_idx = c->index,
		.fullness = ZS_EMPTY, .free_or_len = 0,
	};
	if (!c->huge) /* free list in index order: the first pages fill first */
		for (unsigned i = 0; i < c->objs; i++)
			*obj_word(zs, i) = (uint64_t)(i + 1 < c->objs ? i + 1 : FREE_END) << 1;
	atomic_fetch_add_explicit(&pool->pages, c->ppz, memory_order_relaxed);
	*out = zs;
	return 0;
}

/* Returns the pages released: the run, and the descriptor's slab page if
 * it was the last descriptor there. */
static unsigned zspage_destroy(struct zs_pool *pool, struct zspage *zs, unsigned ppz)
{
	pagesrc_free(zs->base, ppz);
	atomic_fetch_sub_explicit(&pool->pages, ppz, memory_order_relaxed);
	return ppz + mslab_free(pool, &pool->descs, zs);
}

static enum fullness fullness_of(const struct size_class *c, unsigned inuse)
{
	if (inuse == 0)
		return ZS_EMPTY;
	if (inuse == c->objs)
		return ZS_FULL;
	return inuse <= 3U * c->objs / 4 ? ZS_ALMOST_EMPTY : ZS_ALMOST_FULL;
}

/*
 * Lists keep fuller zspages towards the head (as the kernel's
 * insert_zspage): malloc and compaction targets come from the head,
 * compaction sources from the tail.
 */
static void zspage_insert(struct size_class *c, struct zspage *zs, enum fullness fg)
{
	struct dlink *head = &c->head[fg];
	if (!list_empty(head) && zs->inuse < ((struct zspage *)head->next)->inuse)
		list_add_after(head->next, &zs->link);
	else
		list_add_after(head, &zs->link);
	zs->fullness = fg;
	c->nr[fg]++;
}

/* Take a zspage off its list (malloc, compaction); fullness reads EMPTY. */
static void zspage_isolate(struct size_class *c, struct zspage *zs)
{
	list_del(&zs->link);
	c->nr[zs->fullness]--;
	zs->fullness = ZS_EMPTY;
}

/*
 * File a zspage (listed or isolated) under its current fullness; class
 * lock held.  Returns true when it is empty: it is then off the class and
 * the caller destroys it after unlocking.
 */
static bool zspage_regroup(struct size_class *c, struct zspage *zs)
{
	enum fullness fg = fullness_of(c, zs->inuse);
	if (zs->fullness != ZS_EMPTY) {
		if (fg == zs->fullness)
			return false;
		zspage_isolate(c, zs);
	}
	if (fg == ZS_EMPTY) {
		c->zspages--;
		return true;
	}
	zspage_insert(c, zs, fg);
	return false;
}

static struct zspage *first_of(struct size_class *c, enum fullness fg)
{
	return list_empty(&c->head[fg]) ? NULL : (struct zspage *)c->head[fg].next;
}

static struct zspage *last_of(struct size_class *c, enum fullness fg)
{
	return list_empty(&c->head[fg]) ? NULL : (struct zspage *)c->head[fg].prev;
}

/* ---- zpool driver: create / destroy --------------------------------------- */

static void class_init(struct size_class *c, unsigned k)
{
	pthread_mutex_init(&c->lock, NULL);
	for (int fg = 0; fg < ZS_NR_FULLNESS; fg++)
		list_init(&c->head[fg]);
	c->size = geom[k].size;
	c->objs = geom[k].objs;
	c->ppz = geom[k].ppz;
	c->index = (uint8_t)k;
	c->huge = c->objs == 1;
}

static bool is_rep(unsigned k)
{
	return geom[k].rep == k;
}

static int zs_create(const struct zpool_ops *ops, struct zpool *zpool, void **out)
{
	(void)ops; /* no shrink: zswap keeps its own LRU for zsmalloc */
	(void)zpool;
	pthread_once(&geom_once, build_geom);
	uintptr_t start, end;
	pagesrc_range(&start, &end);
	if (end > HDR_HANDLE_MASK) /* headers keep handle addresses in 48 bits */
		return -EOPNOTSUPP;

	size_t own = (sizeof(struct zs_pool) + PAGE - 1) / PAGE;
	struct zs_pool *pool;
	int err = pagesrc_alloc(own, (void **)&pool);
	if (err)
		return err;
	memset(pool, 0, sizeof(*pool));
	pool->own_pages = own;
	for (unsigned k = 0; k < ZS_NR_CLASSES; k++)
		if (is_rep(k))
			class_init(&pool->classes[k], k);
	mslab_init(&pool->handles, sizeof(uint64_t));
	mslab_init(&pool->descs, sizeof(struct zspage));
	*out = pool;
	return 0;
}

static void zs_destroy(void *p)
{
	struct zs_pool *pool = p;
	for (unsigned k = 0; k < ZS_NR_CLASSES; k++) {
		if (!is_rep(k))
			continue;
		struct size_class *c = &pool->classes[k];
		for (int fg = ZS_ALMOST_EMPTY; fg < ZS_NR_FULLNESS; fg++)
			for (struct dlink *n = c->head[fg].next; n != &c->head[fg]; n = n->next)
				pagesrc_free(((struct zspage *)n)->base, c->ppz);
		pthread_mutex_destroy(&c->lock);
	}
	mslab_free_all(&pool->descs); /* descriptors live in these pages */
	mslab_free_all(&pool->handles);
	pagesrc_free(pool, pool->own_pages);
}

/* ---- zpool driver: malloc / free / map ------------------------------------ */

static int zs_malloc(void *p, size_t size, unsigned long *handle)
{
	struct zs_pool *pool = p;
	if (size == 0)
		return -EINVAL;
	if (size > ZS_MAX_ALLOC_SIZE)
		return -ENOSPC;
	struct size_class *c = &pool->classes[class_index(size)];
	_Atomic uint64_t *slot;
	int err = mslab_alloc(pool, &pool->handles, (void **)&slot);
	if (err)
		return err;

	pthread_mutex_lock(&c->lock);
	struct zspage *zs = first_of(c, ZS_ALMOST_FULL);
	if (!zs)
		zs = first_of(c, ZS_ALMOST_EMPTY);
	if (zs) {
		zspage_isolate(c, zs);
	} else {
		pthread_mutex_unlock(&c->lock);
		err = zspage_create(pool, c, &zs);
		if (err) {
			mslab_free(pool, &pool->handles, slot);
			return err;
		}
		pthread_mutex_lock(&c->lock);
		c->zspages++;
	}
	unsigned idx = obj_take(zs, hdr_make(slot, size));
	zspage_regroup(c, zs);
	c->obj_used++;
	c->obj_bytes += size;
	atomic_store_explicit(slot, loc_encode(zs, idx), memory_order_release);
	pthread_mutex_unlock(&c->lock);
	*handle = (unsigned long)(uintptr_t)slot;
	return 0;
}

static void zs_free(void *p, unsigned long handle)
{
	struct zs_pool *pool = p;
	_Atomic uint64_t *slot = (_Atomic uint64_t *)(uintptr_t)handle;
	/* The exclusive pin keeps compaction off the object, so its
	 * zspage (and class) stay put until the class lock is ours. */
	uint64_t v = pin_exclusive(slot);
	struct zspage *zs = loc_zspage(v);
	unsigned idx = loc_idx(v);
	struct size_class *c = &pool->classes[zs->class_idx];

	pthread_mutex_lock(&c->lock);
	c->obj_used--;
	c->obj_bytes -= obj_len(zs, idx);
	obj_put(zs, idx);
	bool empty = zspage_regroup(c, zs);
	pthread_mutex_unlock(&c->lock);
	if (empty)
		zspage_destroy(pool, zs, c->ppz);
	mslab_free(pool, &pool->handles, slot);
}

/* Direct pointer, also for objects straddling pages: zspages are contiguous. */
static void *zs_map(void *p, unsigned long handle, enum zpool_mapmode mm)
{
	(void)p;
	(void)mm;
	uint64_t v = pin_shared((_Atomic uint64_t *)(uintptr_t)handle);
	return obj_data(loc_zspage(v), loc_idx(v));
}

static void zs_unmap(void *p, unsigned long handle)
{
	(void)p;
	atomic_fetch_sub_explicit((_Atomic uint64_t *)(uintptr_t)handle, 1,
				  memory_order_release);
}

static uint64_t zs_total_pages(void *p)
{
	struct zs_pool *pool = p;
	return atomic_load_explicit(&pool->pages, memory_order_relaxed);
}

/* ---- compaction ------------------------------------------------------------ */

/* At least one zspage's worth of free slots: something can be freed. */
static bool can_compact(const struct size_class *c)
{
	return !c->huge && c->zspages * c->objs - c->obj_used >= c->objs;
}

/* Sparsest first: almost_empty tail, then almost_full tail. */
static struct zspage *isolate_src(struct size_class *c)
{
	for (int fg = ZS_ALMOST_EMPTY; fg <= ZS_ALMOST_FULL; fg++) {
		struct zspage *zs = last_of(c, fg);
		if (zs) {
			zspage_isolate(c, zs);
			return zs;
		}
	}
	return NULL;
}

/* Fullest first: almost_full head, then almost_empty head. */
static struct zspage *isolate_dst(struct size_class *c)
{
	for (int fg = ZS_ALMOST_FULL; fg >= ZS_ALMOST_EMPTY; fg--) {
		struct zspage *zs = first_of(c, fg);
		if (zs) {
			zspage_isolate(c, zs);
			return zs;
		}
	}
	return NULL;
}

/*
 * Move object @idx of @src into @dst unless it is pinned (mapped, or being
 * freed: free() then waits for our class lock).  Class lock held.
 */
static bool move_obj(struct zspage *src, unsigned idx, struct zspage *dst)
{
	uint64_t hdr = *obj_word(src, idx);
	_Atomic uint64_t *slot = hdr_slot(hdr);
	uint64_t v = loc_encode(src, idx);
	if (!atomic_compare_exchange_strong_explicit(slot, &v, v | PIN_EXCL,
			memory_order_acquire, memory_order_relaxed))
		return false;
	unsigned didx = obj_take(dst, hdr);
	memcpy(obj_data(dst, didx), obj_data(src, idx), hdr >> HDR_LEN_SHIFT);
	obj_put(src, idx);
	atomic_store_explicit(slot, loc_encode(dst, didx), memory_order_release);
	return true;
}

/*
 * Move what can be moved from @src to @dst.  Returns true when @dst filled
 * up first (the caller brings another), false when @src has nothing
 * movable left.
 */
static bool migrate(struct zs_pool *pool, struct size_class *c,
		    struct zspage *src, struct zspage *dst)
{
	unsigned long moved = 0;
	bool dst_full = false;
	for (unsigned idx = 0; idx < c->objs && src->inuse; idx++) {
		if (!(*obj_word(src, idx) & HDR_ALLOCATED))
			continue;
		if (dst->inuse == c->objs) {
			dst_full = true;
			break;
		}
		moved += move_obj(src, idx, dst);
	}
	atomic_fetch_add_explicit(&pool->objects_moved, moved, memory_order_relaxed);
	return dst_full;
}

/*
 * Empty one source zspage into the fullest others.  Returns its pages when
 * it was emptied (and freed), 0 when it kept a pinned object or there was
 * nowhere to put its objects: the class is done for this pass.
 */
static unsigned compact_one(struct zs_pool *pool, struct size_class *c)
{
	struct zspage *src = isolate_src(c);
	if (!src)
		return 0;
	while (src->inuse) {
		struct zspage *dst = isolate_dst(c);
		if (!dst)
			break;
		bool more = migrate(pool, c, src, dst);
		zspage_regroup(c, dst);
		if (!more)
			break;
	}
	if (!zspage_regroup(c, src))
		return 0;
	/* Others get the class between zspages; src is off every list. */
	pthread_mutex_unlock(&c->lock);
	unsigned freed = zspage_destroy(pool, src, c->ppz);
	pthread_mutex_lock(&c->lock);
	return freed;
}

static unsigned long compact_class(struct zs_pool *pool, struct size_class *c)
{
	unsigned long freed = 0;
	pthread_mutex_lock(&c->lock);
	while (can_compact(c)) {
		unsigned n = compact_one(pool, c);
		if (!n)
			break;
		freed += n;
	}
	pthread_mutex_unlock(&c->lock);
	return freed;
}

static int zs_compact(void *p, unsigned long *pages_freed)
{
	struct zs_pool *pool = p;
	unsigned long freed = 0;
	for (int k = ZS_NR_CLASSES - 1; k >= 0; k--)
		if (is_rep(k))
			freed += compact_class(pool, &pool->classes[k]);
	atomic_fetch_add_explicit(&pool->compactions, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&pool->pages_compacted, freed, memory_order_relaxed);
	*pages_freed = freed;
	return 0;
}

/* ---- statistics -------------------------------------------------------------- */

/* One row per class that holds at least one zspage (classes in use only). */
static size_t zs_class_stats(void *p, struct zpool_class_stat *rows, size_t max)
{
	struct zs_pool *pool = p;
	size_t n = 0;
	for (unsigned k = 0; k < ZS_NR_CLASSES; k++) {
		if (!is_rep(k))
			continue;
		struct size_class *c = &pool->classes[k];
		pthread_mutex_lock(&c->lock);
		struct zpool_class_stat row = {
			.class_idx = k,
			.size = c->size,
			.almost_full = c->nr[ZS_ALMOST_FULL],
			.almost_empty = c->nr[ZS_ALMOST_EMPTY],
			.obj_allocated = c->zspages * c->objs,
			.obj_used = c->obj_used,
			.pages_used = c->zspages * c->ppz,
			.pages_per_zspage = c->ppz,
		};
		pthread_mutex_unlock(&c->lock);
		if (row.pages_used == 0)
			continue;
		if (n < max)
			rows[n] = row;
		n++;
	}
	return n;
}

static size_t zs_driver_stats(void *p, struct zpool_stat *rows, size_t max)
{
	struct zs_pool *pool = p;
	uint64_t zspages = 0, zspage_pages = 0, objects = 0, bytes = 0;
	for (unsigned k = 0; k < ZS_NR_CLASSES; k++) {
		if (!is_rep(k))
			continue;
		struct size_class *c = &pool->classes[k];
		pthread_mutex_lock(&c->lock);
		zspages += c->zspages;
		zspage_pages += c->zspages * c->ppz;
		objects += c->obj_used;
		bytes += c->obj_bytes;
		pthread_mutex_unlock(&c->lock);
	}
	const struct zpool_stat all[] = {
		{ "pages", zs_total_pages(pool) },
		{ "zspage_pages", zspage_pages },
		{ "handle_pages", mslab_pages(&pool->handles) },
		{ "desc_pages", mslab_pages(&pool->descs) },
		{ "zspages", zspages },
		{ "objects", objects },
		{ "object_bytes", bytes },
		{ "compactions", atomic_load(&pool->compactions) },
		{ "pages_compacted", atomic_load(&pool->pages_compacted) },
		{ "objects_moved", atomic_load(&pool->objects_moved) },
	};
	size_t n = sizeof(all) / sizeof(all[0]);
	for (size_t i = 0; i < n && i < max; i++)
		rows[i] = all[i];
	return n;
}

const struct zpool_driver zs_zpool_driver = {
	.type = "zsmalloc",
	.max_size = ZS_MAX_ALLOC_SIZE,
	.create = zs_create,
	.destroy = zs_destroy,
	.malloc = zs_malloc,
	.free = zs_free,
	.map = zs_map,
	.unmap = zs_unmap,
	.total_pages = zs_total_pages,
	.reclaim_page = NULL,
	.compact = zs_compact,
	.class_stats = zs_class_stats,
	.driver_stats = zs_driver_stats,
};

/*
 * index — see index.h for the sharding, the locks and the entry lifecycle.
 *
 * Layout.  A tree is a red-black tree of chunks, one per 2 MiB of address
 * space holding at least one entry.  A chunk has eight leaves of 64 slots
 * (one per page), each allocated while it holds an entry.  So a lookup is
 * a walk over chunks (few, and hot in the cache: 1.5 K of them for 3 GiB
 * stored) and then two loads, and a removal clears a slot: no tree is
 * walked per page and none is rebalanced, which is what made the fault
 * path's lookup and removal cost 2 µs of cache misses when each entry was
 * a tree node.  Memory: 16-byte entries, 8 bytes of slot per page in a
 * dense leaf, 128 bytes per chunk; 512 + 128 bytes for a lone page.
 *
 * Memory: struct index sits in one pagesrc page (with the slab caches
 * embedded in it), the trees in one run of INDEX_ZONES * shards cache-line
 * sized slots, entries, chunks and leaves in three slab caches.  Nothing
 * here calls malloc.
 *
 * Locks:
 *   tree->lock  protects tree->root, tree->hint and every chunk and leaf
 *               of the tree; tree->count is atomic only so index_count()
 *               can read it without the lock (it is written under the
 *               lock).
 *   Chunks and leaves are allocated before a tree lock is taken (struct
 *   provision) and freed after it is dropped (struct garbage): the slabs
 *   take pages from pagesrc and give them back, which may mean a syscall
 *   (populating ahead, giving memory back) that a fault waiting on the
 *   tree lock must not sit through.
 * Lock order: one tree lock at a time, except index_move_range(), which
 * holds a source and a destination tree together, locked in ascending
 * tree (address) order; the slab locks come after any tree lock.
 *
 * Range operations work on segments: (tree, [lo, hi) page numbers within
 * one zone).  A range spanning no more 2 MiB chunks than there are shards
 * is one segment per chunk (each chunk lives in exactly one tree); a wider
 * range is one segment per tree of the zone, covering the whole range, so
 * an erase over a terabyte of mostly empty address space costs a lookup
 * per tree, not per chunk.  Entries taken out under a lock are handed to
 * callbacks from an on-stack batch after the lock is dropped.
 */
#include "core/index.h"

#include <bsd/sys/tree.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "core/slab.h"
#include "pools/pagesrc.h"

#define PAGE_SHIFT 12
#define PGOFF_MASK 0xffffffffUL
#define ZONE_PAGES (PGOFF_MASK + 1)
#define BATCH 64 /* entries erased or moved per lock hold */
/*
 * Pagesrc pages kept in reserve per chunk or leaf slab (and one more per
 * cache), which index_move_range() may use when ordinary allocations
 * fail.  A source range's entries land in at most twice as many chunks
 * and leaves at the destination, however the shift falls: n structures
 * need at most 2n + 2 new ones, at most 2 slabs per source slab plus one,
 * and the source's drained ones are freed along the way.
 */
#define MOVE_RESERVE 2

#define LEAF_BITS 6
#define LEAF_SLOTS (1U << LEAF_BITS)
#define CHUNK_BITS (INDEX_CHUNK_SHIFT - PAGE_SHIFT)
#define CHUNK_PAGES (1U << CHUNK_BITS)
#define CHUNK_LEAVES (1U << (CHUNK_BITS - LEAF_BITS))

struct leaf {
	struct index_entry *slot[LEAF_SLOTS];
};

struct chunk {
	RB_ENTRY(chunk) link;
	uint32_t key;                   /* pgoff >> CHUNK_BITS */
	uint16_t count;                 /* entries in the chunk */
	uint8_t filled[CHUNK_LEAVES];   /* entries per leaf */
	struct leaf *leaf[CHUNK_LEAVES]; /* NULL while empty */
} __attribute__((aligned(64)));

_Static_assert(sizeof(struct chunk) == 128, "a chunk is two cache lines");
_Static_assert(sizeof(struct leaf) <= SLAB_MAX_OBJ_SIZE, "a leaf must fit the slab");

RB_HEAD(chunk_root, chunk);

struct tree {
	pthread_mutex_t lock;
	struct chunk_root root;
	struct chunk *hint; /* the chunk last found: neighbouring pages skip the walk */
	_Atomic size_t count;
} __attribute__((aligned(64)));

struct index {
	unsigned int shards;
	unsigned int shard_bits;
	struct tree *trees;  /* INDEX_ZONES * shards, zone-major */
	size_t tree_pages;
	struct slab_cache entries;
	struct slab_cache chunks;
	struct slab_cache leaves;
};

_Static_assert(sizeof(struct index) <= PAGESRC_PAGE_SIZE, "index header overflows");

static int chunk_cmp(const struct chunk *a, const struct chunk *b)
{
	return a->key < b->key ? -1 : a->key > b->key;
}

/*
 * Not RB_GENERATE_STATIC: it marks the functions `__unused`, which libbsd
 * leaves undefined (the name clashes with a Linux header's struct member).
 */
RB_GENERATE_INTERNAL(chunk_root, chunk, link, chunk_cmp, static __attribute__((unused)))

/* ---- addresses and trees ------------------------------------------------ */

static bool addr_ok(uintptr_t addr)
{
	return addr < INDEX_ADDR_LIMIT && (addr & (INDEX_PAGE_SIZE - 1)) == 0;
}

static unsigned int zone_of(uintptr_t addr)
{
	return (unsigned int)(addr >> INDEX_ZONE_SHIFT);
}

static uint32_t pgoff_of(uintptr_t addr)
{
	return (uint32_t)((addr >> PAGE_SHIFT) & PGOFF_MASK);
}

static uintptr_t addr_of(unsigned int zone, uint64_t pgoff)
{
	return ((uintptr_t)zone << INDEX_ZONE_SHIFT) | (uintptr_t)(pgoff << PAGE_SHIFT);
}

/* Fibonacci hashing of the chunk number: neighbouring chunks spread out. */
static unsigned int shard_of_chunk(const struct index *idx, uintptr_t chunk)
{
	if (idx->shard_bits == 0)
		return 0;
	return (unsigned int)((chunk * 0x9e3779b97f4a7c15ULL) >> (64 - idx->shard_bits));
}

static unsigned int tree_no(const struct index *idx, uintptr_t addr)
{
	return zone_of(addr) * idx->shards +
	       shard_of_chunk(idx, addr >> INDEX_CHUNK_SHIFT);
}

static struct tree *tree_for(struct index *idx, uintptr_t addr)
{
	return &idx->trees[tree_no(idx, addr)];
}

/* ---- slots, under the tree lock ----------------------------------------- */

/* Where an entry sits: its chunk, leaf and slot. */
struct slot_ref {
	struct chunk *c;
	unsigned int leaf, slot;
};

static uint64_t ref_pgoff(const struct slot_ref *r)
{
	return ((uint64_t)r->c->key << CHUNK_BITS) | (r->leaf << LEAF_BITS) | r->slot;
}

static struct index_entry **ref_slot(const struct slot_ref *r)
{
	return &r->c->leaf[r->leaf]->slot[r->slot];
}

/* Chunk @key or the first one after it: the hint when it is @key, else a search. */
static struct chunk *chunk_from(struct tree *t, uint32_t key)
{
	struct chunk *c = t->hint;
	if (c && c->key == key)
		return c;
	struct chunk probe = { .key = key };
	return RB_NFIND(chunk_root, &t->root, &probe);
}

/* Chunk @key, or NULL; it becomes the hint. */
static struct chunk *chunk_find(struct tree *t, uint32_t key)
{
	struct chunk *c = chunk_from(t, key);
	if (!c || c->key != key)
		return NULL;
	t->hint = c;
	return c;
}

/* The entry at @pgoff and where it sits, or NULL. */
static struct index_entry *lookup_locked(struct tree *t, uint32_t pgoff, struct slot_ref *r)
{
	struct chunk *c = chunk_find(t, pgoff >> CHUNK_BITS);
	if (!c)
		return NULL;
	unsigned int l = (pgoff >> LEAF_BITS) & (CHUNK_LEAVES - 1);
	if (!c->leaf[l])
		return NULL;
	*r = (struct slot_ref){ c, l, pgoff & (LEAF_SLOTS - 1) };
	return *ref_slot(r);
}

/*
 * Leaves and chunks emptied under a tree lock, freed once it is dropped:
 * a free can give pages back to the kernel (pagesrc), a syscall and a TLB
 * shootdown that a fault waiting on the lock must not sit through.  They
 * are chained through their own memory: an empty leaf's first slot, a
 * chunk's left link.
 */
struct garbage {
	struct leaf *leaves;
	struct chunk *chunks;
};

static void garbage_leaf(struct garbage *g, struct leaf *l)
{
	l->slot[0] = (struct index_entry *)g->leaves;
	g->leaves = l;
}

static void garbage_chunk(struct garbage *g, struct chunk *c)
{
	c->link.rbe_left = g->chunks;
	g->chunks = c;
}

static void garbage_free(struct index *idx, struct garbage *g)
{
	while (g->leaves) {
		struct leaf *l = g->leaves;
		g->leaves = (struct leaf *)l->slot[0];
		slab_free(&idx->leaves, l);
	}
	while (g->chunks) {
		struct chunk *c = g->chunks;
		g->chunks = c->link.rbe_left;
		slab_free(&idx->chunks, c);
	}
}

/*
 * A chunk and a leaf for an insert that needs them, allocated with no tree
 * lock held: an insert that finds it needs one returns -EAGAIN and says
 * which (need_*); the caller drops the lock, fills the provision and
 * tries again.  One insert in 64 needs a leaf.  What is left over (another
 * thread made the chunk or leaf meanwhile) is freed afterwards.
 */
struct provision {
	struct chunk *chunk;
	struct leaf *leaf;
	bool need_chunk, need_leaf;
};

static int provision_fill(struct index *idx, struct provision *p)
{
	if (p->need_chunk && !p->chunk) {
		if (slab_alloc(&idx->chunks, (void **)&p->chunk))
			return -ENOMEM;
		memset(p->chunk, 0, sizeof(*p->chunk));
	}
	if (p->need_leaf && !p->leaf) {
		if (slab_alloc(&idx->leaves, (void **)&p->leaf))
			return -ENOMEM;
		memset(p->leaf, 0, sizeof(*p->leaf));
	}
	p->need_chunk = p->need_leaf = false;
	return 0;
}

static void provision_free(struct index *idx, struct provision *p)
{
	if (p->chunk)
		slab_free(&idx->chunks, p->chunk);
	if (p->leaf)
		slab_free(&idx->leaves, p->leaf);
	p->chunk = NULL;
	p->leaf = NULL;
}

/* Clear the slot @r (which holds an entry); what it leaves empty goes on @g. */
static void remove_locked(struct tree *t, const struct slot_ref *r, struct garbage *g)
{
	struct chunk *c = r->c;
	*ref_slot(r) = NULL;
	atomic_fetch_sub_explicit(&t->count, 1, memory_order_relaxed);
	if (--c->filled[r->leaf] == 0) {
		garbage_leaf(g, c->leaf[r->leaf]);
		c->leaf[r->leaf] = NULL;
	}
	if (--c->count == 0) {
		RB_REMOVE(chunk_root, &t->root, c);
		if (t->hint == c)
			t->hint = NULL;
		garbage_chunk(g, c);
	}
}

/*
 * Put @e at @pgoff; the entry that was there is returned in *@old.
 * -EAGAIN when a chunk or leaf is needed that @p does not hold (nothing
 * changed then; @p says what to provide).
 */
static int insert_locked(struct tree *t, uint32_t pgoff, struct index_entry *e,
			 struct index_entry **old, struct provision *p)
{
	struct chunk *c = chunk_find(t, pgoff >> CHUNK_BITS);
	unsigned int l = (pgoff >> LEAF_BITS) & (CHUNK_LEAVES - 1);
	bool need_chunk = !c, need_leaf = !c || !c->leaf[l];
	if ((need_chunk && !p->chunk) || (need_leaf && !p->leaf)) {
		p->need_chunk = need_chunk;
		p->need_leaf = need_leaf;
		return -EAGAIN;
	}
	if (need_chunk) {
		c = p->chunk;
		p->chunk = NULL;
		c->key = pgoff >> CHUNK_BITS;
		RB_INSERT(chunk_root, &t->root, c);
		t->hint = c;
	}
	if (need_leaf) {
		c->leaf[l] = p->leaf;
		p->leaf = NULL;
	}
	struct index_entry **s = &c->leaf[l]->slot[pgoff & (LEAF_SLOTS - 1)];
	*old = *s;
	*s = e;
	e->pgoff = pgoff;
	if (!*old) {
		c->filled[l]++;
		c->count++;
		atomic_fetch_add_explicit(&t->count, 1, memory_order_relaxed);
	}
	return 0;
}

/* The first entry at a page number in [@lo, @hi), and where it sits, or NULL. */
static struct index_entry *next_locked(struct tree *t, uint64_t lo, uint64_t hi,
				       struct slot_ref *r)
{
	if (lo >= hi || lo > PGOFF_MASK)
		return NULL;
	for (struct chunk *c = chunk_from(t, (uint32_t)(lo >> CHUNK_BITS)); c;
	     c = RB_NEXT(chunk_root, &t->root, c)) {
		uint64_t base = (uint64_t)c->key << CHUNK_BITS;
		if (base >= hi)
			return NULL;
		uint64_t o = lo > base ? lo - base : 0;
		uint64_t end = hi - base < CHUNK_PAGES ? hi - base : CHUNK_PAGES;
		while (o < end) {
			unsigned int l = (unsigned int)(o >> LEAF_BITS);
			struct leaf *lf = c->leaf[l];
			if (!lf) {
				o = (o | (LEAF_SLOTS - 1)) + 1;
				continue;
			}
			unsigned int s = (unsigned int)(o & (LEAF_SLOTS - 1));
			if (lf->slot[s]) {
				*r = (struct slot_ref){ c, l, s };
				t->hint = c;
				return lf->slot[s];
			}
			o++;
		}
	}
	return NULL;
}

/* ---- create / destroy ----------------------------------------------------- */

static int init_trees(struct index *idx)
{
	size_t n = (size_t)INDEX_ZONES * idx->shards;
	size_t bytes = n * sizeof(struct tree);
	idx->tree_pages = (bytes + PAGESRC_PAGE_SIZE - 1) / PAGESRC_PAGE_SIZE;
	int err = pagesrc_alloc(idx->tree_pages, (void **)&idx->trees);
	if (err)
		return err;
	memset(idx->trees, 0, bytes);
	pthread_mutexattr_t attr;
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
	for (size_t i = 0; i < n; i++) {
		pthread_mutex_init(&idx->trees[i].lock, &attr);
		RB_INIT(&idx->trees[i].root);
	}
	pthread_mutexattr_destroy(&attr);
	return 0;
}

static int init_slabs(struct index *idx)
{
	int err = slab_init(&idx->entries, sizeof(struct index_entry));
	if (err)
		return err;
	err = slab_init(&idx->chunks, sizeof(struct chunk));
	if (!err) {
		err = slab_init(&idx->leaves, sizeof(struct leaf));
		if (!err) {
			slab_keep_reserve(&idx->chunks, MOVE_RESERVE);
			slab_keep_reserve(&idx->leaves, MOVE_RESERVE);
			return 0;
		}
		slab_destroy(&idx->chunks);
	}
	slab_destroy(&idx->entries);
	return err;
}

static void destroy_slabs(struct index *idx)
{
	slab_destroy(&idx->leaves);
	slab_destroy(&idx->chunks);
	slab_destroy(&idx->entries);
}

int index_create(unsigned int shards, struct index **out)
{
	if (shards == 0 || shards > INDEX_MAX_SHARDS || (shards & (shards - 1)))
		return -EINVAL;
	struct index *idx;
	int err = pagesrc_alloc(1, (void **)&idx);
	if (err)
		return err;
	memset(idx, 0, sizeof(*idx));
	idx->shards = shards;
	idx->shard_bits = (unsigned int)__builtin_ctz(shards);
	err = init_slabs(idx);
	if (!err) {
		err = init_trees(idx);
		if (err)
			destroy_slabs(idx);
	}
	if (err) {
		pagesrc_free(idx, 1);
		return err;
	}
	*out = idx;
	return 0;
}

void index_destroy(struct index *idx)
{
	if (!idx)
		return;
	for (size_t i = 0; i < (size_t)INDEX_ZONES * idx->shards; i++)
		pthread_mutex_destroy(&idx->trees[i].lock);
	pagesrc_free(idx->trees, idx->tree_pages);
	destroy_slabs(idx);
	pagesrc_free(idx, 1);
}

/* ---- entries ------------------------------------------------------------ */

int index_entry_alloc(struct index *idx, struct index_entry **out)
{
	struct index_entry *e;
	int err = slab_alloc(&idx->entries, (void **)&e);
	if (err)
		return err;
	memset(e, 0, sizeof(*e));
	atomic_init(&e->refcount, 1);
	*out = e;
	return 0;
}

void index_entry_free(struct index *idx, struct index_entry *e)
{
	slab_free(&idx->entries, e);
}

static bool get_below(struct index_entry *e, uint8_t max)
{
	uint8_t v = atomic_load_explicit(&e->refcount, memory_order_relaxed);
	do {
		if (v >= max)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(&e->refcount, &v, v + 1,
							memory_order_relaxed,
							memory_order_relaxed));
	return true;
}

bool index_entry_get(struct index_entry *e)
{
	return get_below(e, UINT8_MAX);
}

bool index_entry_share(struct index_entry *e)
{
	return get_below(e, INDEX_SHARE_MAX);
}

bool index_entry_put(struct index_entry *e)
{
	/* acq_rel: the last holder must see every other holder's accesses done */
	return atomic_fetch_sub_explicit(&e->refcount, 1, memory_order_acq_rel) == 1;
}

/* ---- single-address operations ----------------------------------------- */

int index_insert(struct index *idx, uintptr_t addr, struct index_entry *e,
		 struct index_entry **old)
{
	if (!addr_ok(addr))
		return -EINVAL;
	struct tree *t = tree_for(idx, addr);
	struct provision p = { 0 };
	int err;
	for (;;) {
		pthread_mutex_lock(&t->lock);
		err = insert_locked(t, pgoff_of(addr), e, old, &p);
		pthread_mutex_unlock(&t->lock);
		if (err != -EAGAIN || (err = provision_fill(idx, &p)))
			break;
	}
	provision_free(idx, &p);
	return err;
}

int index_take(struct index *idx, uintptr_t addr, struct index_entry **out)
{
	if (!addr_ok(addr))
		return -EINVAL;
	struct tree *t = tree_for(idx, addr);
	struct slot_ref r;
	struct garbage g = { 0 };
	pthread_mutex_lock(&t->lock);
	struct index_entry *e = lookup_locked(t, pgoff_of(addr), &r);
	if (e)
		remove_locked(t, &r, &g);
	pthread_mutex_unlock(&t->lock);
	garbage_free(idx, &g);
	if (!e)
		return -ENOENT;
	*out = e;
	return 0;
}

int index_take_if(struct index *idx, uintptr_t addr, struct index_entry *e)
{
	if (!addr_ok(addr))
		return -EINVAL;
	struct tree *t = tree_for(idx, addr);
	struct slot_ref r;
	struct garbage g = { 0 };
	pthread_mutex_lock(&t->lock);
	bool found = lookup_locked(t, pgoff_of(addr), &r) == e;
	if (found)
		remove_locked(t, &r, &g);
	pthread_mutex_unlock(&t->lock);
	garbage_free(idx, &g);
	return found ? 0 : -ENOENT;
}

int index_get(struct index *idx, uintptr_t addr, struct index_entry **out)
{
	if (!addr_ok(addr))
		return -EINVAL;
	struct tree *t = tree_for(idx, addr);
	struct slot_ref r;
	int err = 0;
	pthread_mutex_lock(&t->lock);
	struct index_entry *e = lookup_locked(t, pgoff_of(addr), &r);
	if (!e)
		err = -ENOENT;
	else if (!index_entry_get(e))
		err = -EOVERFLOW;
	pthread_mutex_unlock(&t->lock);
	if (!err)
		*out = e;
	return err;
}

/* ---- segments ------------------------------------------------------------ */

/* Visits one segment: pages [lo, hi) of zone @zone, all in tree @t. */
typedef ssize_t (*seg_fn)(struct index *idx, struct tree *t, unsigned int zone,
			  uint64_t lo, uint64_t hi, void *ctx);

static bool range_ok(uintptr_t start, uintptr_t end)
{
	return start <= end && end <= INDEX_ADDR_LIMIT &&
	       ((start | end) & (INDEX_PAGE_SIZE - 1)) == 0;
}

static uint64_t pages_between(uintptr_t a, uintptr_t b)
{
	return (b - a) >> PAGE_SHIFT;
}

/* Segments of [start, end) within one zone; sums @fn's returns. */
static ssize_t zone_segments(struct index *idx, unsigned int zone, uintptr_t start,
			     uintptr_t end, seg_fn fn, void *ctx)
{
	uintptr_t first = start >> INDEX_CHUNK_SHIFT, last = (end - 1) >> INDEX_CHUNK_SHIFT;
	ssize_t sum = 0;
	if (last - first + 1 <= idx->shards) {
		for (uintptr_t c = first; c <= last; c++) {
			uintptr_t lo = c << INDEX_CHUNK_SHIFT, hi = (c + 1) << INDEX_CHUNK_SHIFT;
			lo = lo < start ? start : lo;
			hi = hi > end ? end : hi;
			struct tree *t = &idx->trees[zone * idx->shards + shard_of_chunk(idx, c)];
			uint64_t p = pgoff_of(lo);
			sum += fn(idx, t, zone, p, p + pages_between(lo, hi), ctx);
		}
		return sum;
	}
	uint64_t p = pgoff_of(start), n = pages_between(start, end);
	for (unsigned int s = 0; s < idx->shards; s++)
		sum += fn(idx, &idx->trees[zone * idx->shards + s], zone, p, p + n, ctx);
	return sum;
}

/* Every segment of [start, end) (a valid range), zone by zone. */
static ssize_t for_each_segment(struct index *idx, uintptr_t start, uintptr_t end,
				seg_fn fn, void *ctx)
{
	ssize_t sum = 0;
	while (start < end) {
		unsigned int zone = zone_of(start);
		uintptr_t zend = addr_of(zone + 1, 0);
		uintptr_t stop = end < zend ? end : zend;
		sum += zone_segments(idx, zone, start, stop, fn, ctx);
		start = stop;
	}
	return sum;
}

/* ---- erase_range ------------------------------------------------------------ */

struct release_ctx {
	index_release_fn release;
	void *arg;
};

/* Entries taken out under a lock, released once it is dropped. */
struct batch {
	unsigned int n;
	struct index_entry *e[BATCH];
	uintptr_t addr[BATCH];
};

static void batch_release(const struct batch *b, const struct release_ctx *rc)
{
	for (unsigned int i = 0; i < b->n; i++)
		rc->release(b->e[i], b->addr[i], rc->arg);
}

static ssize_t erase_segment(struct index *idx, struct tree *t, unsigned int zone,
			     uint64_t lo, uint64_t hi, void *ctx)
{
	ssize_t total = 0;
	for (;;) {
		struct batch b = { .n = 0 };
		struct garbage g = { 0 };
		struct slot_ref r;
		struct index_entry *e;
		pthread_mutex_lock(&t->lock);
		while (b.n < BATCH && (e = next_locked(t, lo, hi, &r))) {
			lo = ref_pgoff(&r);
			remove_locked(t, &r, &g);
			b.e[b.n] = e;
			b.addr[b.n++] = addr_of(zone, lo++);
		}
		pthread_mutex_unlock(&t->lock);
		garbage_free(idx, &g);
		batch_release(&b, ctx);
		total += b.n;
		if (b.n < BATCH)
			return total;
	}
}

ssize_t index_erase_range(struct index *idx, uintptr_t start, uintptr_t end,
			  index_release_fn release, void *arg)
{
	if (!range_ok(start, end))
		return -EINVAL;
	struct release_ctx rc = { release, arg };
	return for_each_segment(idx, start, end, erase_segment, &rc);
}

/* ---- move_range ------------------------------------------------------------- */

struct move_ctx {
	uintptr_t old, new;
	struct release_ctx rc;
	int err;
};

static uintptr_t move_dest(const struct move_ctx *m, unsigned int zone, uint64_t pgoff)
{
	return m->new + (addr_of(zone, pgoff) - m->old);
}

/* Two tree locks, in ascending tree order (the one nesting the index does). */
static void lock_pair(struct tree *a, struct tree *b)
{
	struct tree *first = a < b ? a : b, *second = a < b ? b : a;
	pthread_mutex_lock(&first->lock);
	if (second != first)
		pthread_mutex_lock(&second->lock);
}

static void unlock_pair(struct tree *a, struct tree *b)
{
	pthread_mutex_unlock(&a->lock);
	if (b != a)
		pthread_mutex_unlock(&b->lock);
}

/*
 * Move the entries of @src from *@pos (below @hi) whose destination lies in
 * @dst, up to a batch; both locks held.  An entry found at the destination
 * goes on @replaced.  The destination slot is filled before the source's
 * is cleared, so a chunk holding both is never empty in between.  Source
 * and destination never overlap, so a moved entry is not met again.
 * -EAGAIN when the destination needs a chunk or leaf that @p does not
 * hold: that entry stays, at *@pos.
 */
static int move_batch_locked(struct index *idx, struct tree *src, struct tree *dst,
			     unsigned int zone, uint64_t *pos, uint64_t hi,
			     const struct move_ctx *m, struct batch *replaced, ssize_t *moved,
			     struct garbage *g, struct provision *p)
{
	struct slot_ref r;
	struct index_entry *e;
	for (unsigned int n = 0; n < BATCH && (e = next_locked(src, *pos, hi, &r)); n++) {
		*pos = ref_pgoff(&r);
		uintptr_t to = move_dest(m, zone, *pos);
		if (tree_for(idx, to) != dst)
			return 0;
		struct index_entry *prev;
		if (insert_locked(dst, pgoff_of(to), e, &prev, p))
			return -EAGAIN;
		remove_locked(src, &r, g);
		if (prev) {
			replaced->e[replaced->n] = prev;
			replaced->addr[replaced->n++] = to;
		}
		(*moved)++;
		(*pos)++;
	}
	return 0;
}

/* Move one source segment, a batch at a time, never more than two locks held. */
static ssize_t move_segment(struct index *idx, struct tree *src, unsigned int zone,
			    uint64_t lo, uint64_t hi, void *ctx)
{
	struct move_ctx *m = ctx;
	ssize_t moved = 0;
	uint64_t pos = lo;
	struct provision p = { 0 };
	for (;;) {
		/* peek at the next entry to learn which tree it goes to */
		struct slot_ref r;
		pthread_mutex_lock(&src->lock);
		bool more = next_locked(src, pos, hi, &r) != NULL;
		if (more)
			pos = ref_pgoff(&r);
		pthread_mutex_unlock(&src->lock);
		if (!more || m->err)
			break;
		struct tree *dst = tree_for(idx, move_dest(m, zone, pos));
		struct batch replaced = { .n = 0 };
		struct garbage g = { 0 };
		lock_pair(src, dst);
		int err = move_batch_locked(idx, src, dst, zone, &pos, hi, m, &replaced, &moved,
					    &g, &p);
		unlock_pair(src, dst);
		garbage_free(idx, &g);
		batch_release(&replaced, &m->rc);
		if (err == -EAGAIN)
			err = provision_fill(idx, &p);
		if (err)
			m->err = err;
	}
	provision_free(idx, &p);
	return moved;
}

ssize_t index_move_range(struct index *idx, uintptr_t old, uintptr_t new,
			 size_t len, index_release_fn release, void *arg)
{
	if (len > INDEX_ADDR_LIMIT || !range_ok(old, old + len) ||
	    !range_ok(new, new + len) || (len & (INDEX_PAGE_SIZE - 1)))
		return -EINVAL;
	if (len == 0)
		return 0;
	if (old < new + len && new < old + len)
		return -EINVAL;
	struct move_ctx m = { old, new, { release, arg }, 0 };
	/* What the destination held goes first; moved entries replace any
	 * entry inserted there meanwhile. */
	for_each_segment(idx, new, new + len, erase_segment, &m.rc);
	/* The kernel has moved the pages: no refusing now (MOVE_RESERVE). */
	bool was = pagesrc_use_reserve(true);
	ssize_t moved = for_each_segment(idx, old, old + len, move_segment, &m);
	pagesrc_use_reserve(was);
	/* what did not move stays at the old address, for the caller to
	 * put in place another way (index.h) */
	return m.err ? m.err : moved;
}

/* ---- walk ------------------------------------------------------------------------ */

struct walk_ctx {
	index_walk_fn fn;
	void *arg;
};

/* Call fn for the entries of @t in [from, to); the caller holds the lock. */
static int walk_locked(struct tree *t, unsigned int zone, uint64_t from, uint64_t to,
		       const struct walk_ctx *w)
{
	struct slot_ref r;
	for (uint64_t p = from; next_locked(t, p, to, &r); p++) {
		p = ref_pgoff(&r);
		int ret = w->fn(*ref_slot(&r), addr_of(zone, p), w->arg);
		if (ret)
			return ret;
	}
	return 0;
}

/* The first page number at or after @from holding an entry, or ZONE_PAGES. */
static uint64_t first_locked(struct tree *t, uint64_t from)
{
	struct slot_ref r;
	return next_locked(t, from, ZONE_PAGES, &r) ? ref_pgoff(&r) : ZONE_PAGES;
}

/* A range of few chunks: one chunk at a time, in order, each in one tree. */
static int walk_chunks(struct index *idx, unsigned int zone, uintptr_t start,
		       uintptr_t end, const struct walk_ctx *w)
{
	for (uintptr_t c = start >> INDEX_CHUNK_SHIFT; c <= (end - 1) >> INDEX_CHUNK_SHIFT; c++) {
		uintptr_t lo = c << INDEX_CHUNK_SHIFT, hi = (c + 1) << INDEX_CHUNK_SHIFT;
		lo = lo < start ? start : lo;
		hi = hi > end ? end : hi;
		struct tree *t = &idx->trees[zone * idx->shards + shard_of_chunk(idx, c)];
		uint64_t from = pgoff_of(lo);
		pthread_mutex_lock(&t->lock);
		int r = walk_locked(t, zone, from, from + pages_between(lo, hi), w);
		pthread_mutex_unlock(&t->lock);
		if (r)
			return r;
	}
	return 0;
}

/*
 * A wide range: merge the zone's trees.  next[s] caches the first key of
 * tree s not yet visited; the tree with the smallest is walked up to the
 * second smallest (no other tree has a key in between), one lock at a
 * time.  The cache makes each step one lookup instead of one per tree.
 */
static int walk_merge(struct index *idx, unsigned int zone, uintptr_t start,
		      uintptr_t end, const struct walk_ctx *w)
{
	uint64_t next[INDEX_MAX_SHARDS];
	uint64_t lo = pgoff_of(start), hi = lo + pages_between(start, end);
	struct tree *trees = &idx->trees[zone * idx->shards];
	for (unsigned int s = 0; s < idx->shards; s++) {
		pthread_mutex_lock(&trees[s].lock);
		next[s] = first_locked(&trees[s], lo);
		pthread_mutex_unlock(&trees[s].lock);
	}
	for (;;) {
		unsigned int best = 0;
		uint64_t second = ZONE_PAGES;
		for (unsigned int s = 1; s < idx->shards; s++) {
			if (next[s] < next[best]) {
				second = next[best];
				best = s;
			} else if (next[s] < second) {
				second = next[s];
			}
		}
		if (next[best] >= hi)
			return 0;
		uint64_t to = second < hi ? second : hi;
		pthread_mutex_lock(&trees[best].lock);
		int r = walk_locked(&trees[best], zone, next[best], to, w);
		next[best] = first_locked(&trees[best], to);
		pthread_mutex_unlock(&trees[best].lock);
		if (r)
			return r;
	}
}

int index_walk(struct index *idx, uintptr_t start, uintptr_t end,
	       index_walk_fn fn, void *arg)
{
	if (!range_ok(start, end))
		return -EINVAL;
	struct walk_ctx w = { fn, arg };
	while (start < end) {
		unsigned int zone = zone_of(start);
		uintptr_t zend = addr_of(zone + 1, 0);
		uintptr_t stop = end < zend ? end : zend;
		uintptr_t nchunks = ((stop - 1) >> INDEX_CHUNK_SHIFT) -
				    (start >> INDEX_CHUNK_SHIFT) + 1;
		int r = nchunks <= idx->shards ? walk_chunks(idx, zone, start, stop, &w)
					       : walk_merge(idx, zone, start, stop, &w);
		if (r)
			return r;
		start = stop;
	}
	return 0;
}

/* ---- counts ---------------------------------------------------------------------- */

unsigned int index_shards(const struct index *idx)
{
	return idx->shards;
}

size_t index_count(struct index *idx)
{
	size_t n = 0;
	for (size_t i = 0; i < (size_t)INDEX_ZONES * idx->shards; i++)
		n += atomic_load_explicit(&idx->trees[i].count, memory_order_relaxed);
	return n;
}

size_t index_entry_bytes(struct index *idx)
{
	return slab_bytes(&idx->entries) + slab_bytes(&idx->chunks) + slab_bytes(&idx->leaves);
}

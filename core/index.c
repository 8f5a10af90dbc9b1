/*
 * index — see index.h for the sharding, the locks and the entry lifecycle.
 *
 * Memory: struct index sits in one pagesrc page (with the entry slab cache
 * embedded in it), the trees in one run of INDEX_ZONES * shards cache-line
 * sized slots, the entries in the slab.  Nothing here calls malloc.
 *
 * Locks:
 *   tree->lock  protects tree->root and every link of the entries in it;
 *               tree->count is atomic only so index_count() can read it
 *               without the lock (it is written under the lock).
 *   The slab has its own leaf lock and is never called under a tree lock.
 * Lock order: one tree lock at a time, except index_move_range(), which
 * holds a source and a destination tree together, locked in ascending
 * tree (address) order.
 *
 * Range operations work on segments: (tree, [lo, hi) page numbers within
 * one zone).  A range spanning no more 2 MiB chunks than there are shards
 * is one segment per chunk (each chunk lives in exactly one tree); a wider
 * range is one segment per tree of the zone, covering the whole range, so
 * an erase over a terabyte of mostly empty address space costs a lookup
 * per tree, not per chunk.
 *
 * An entry out of every tree reuses its link fields: rbe_left chains
 * batches handed to callbacks, and for an entry a move displaced,
 * rbe_parent holds the address it was at.
 */
#include "core/index.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "core/slab.h"
#include "pools/pagesrc.h"

#define PAGE_SHIFT 12
#define PGOFF_MASK 0xffffffffUL
#define BATCH 64 /* entries erased or moved per lock hold */

RB_HEAD(index_root, index_entry);

struct tree {
	pthread_mutex_t lock;
	struct index_root root;
	_Atomic size_t count;
} __attribute__((aligned(64)));

struct index {
	unsigned int shards;
	unsigned int shard_bits;
	struct tree *trees;  /* INDEX_ZONES * shards, zone-major */
	size_t tree_pages;
	struct slab_cache entries;
};

_Static_assert(sizeof(struct index) <= PAGESRC_PAGE_SIZE, "index header overflows");

static int entry_cmp(const struct index_entry *a, const struct index_entry *b)
{
	return a->pgoff < b->pgoff ? -1 : a->pgoff > b->pgoff;
}

/*
 * Not RB_GENERATE_STATIC: it marks the functions `__unused`, which libbsd
 * leaves undefined (the name clashes with a Linux header's struct member).
 */
RB_GENERATE_INTERNAL(index_root, index_entry, link, entry_cmp, static __attribute__((unused)))

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

static struct index_entry *find_locked(struct tree *t, uint32_t pgoff)
{
	struct index_entry key = { .pgoff = pgoff };
	return RB_FIND(index_root, &t->root, &key);
}

/* First entry at or after @pgoff, or NULL. */
static struct index_entry *nfind_locked(struct tree *t, uint64_t pgoff)
{
	if (pgoff > PGOFF_MASK)
		return NULL;
	struct index_entry key = { .pgoff = (uint32_t)pgoff };
	return RB_NFIND(index_root, &t->root, &key);
}

static void remove_locked(struct tree *t, struct index_entry *e)
{
	RB_REMOVE(index_root, &t->root, e);
	atomic_fetch_sub_explicit(&t->count, 1, memory_order_relaxed);
}

/* Insert @e, taking out and returning the entry that had its key, if any. */
static struct index_entry *insert_locked(struct tree *t, struct index_entry *e)
{
	struct index_entry *prev = RB_INSERT(index_root, &t->root, e);
	if (prev) {
		RB_REMOVE(index_root, &t->root, prev);
		RB_INSERT(index_root, &t->root, e);
	} else {
		atomic_fetch_add_explicit(&t->count, 1, memory_order_relaxed);
	}
	return prev;
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
	err = slab_init(&idx->entries, sizeof(struct index_entry));
	if (!err) {
		err = init_trees(idx);
		if (err)
			slab_destroy(&idx->entries);
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
	slab_destroy(&idx->entries);
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
	e->pgoff = pgoff_of(addr);
	pthread_mutex_lock(&t->lock);
	*old = insert_locked(t, e);
	pthread_mutex_unlock(&t->lock);
	return 0;
}

int index_take(struct index *idx, uintptr_t addr, struct index_entry **out)
{
	if (!addr_ok(addr))
		return -EINVAL;
	struct tree *t = tree_for(idx, addr);
	pthread_mutex_lock(&t->lock);
	struct index_entry *e = find_locked(t, pgoff_of(addr));
	if (e)
		remove_locked(t, e);
	pthread_mutex_unlock(&t->lock);
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
	pthread_mutex_lock(&t->lock);
	bool found = find_locked(t, pgoff_of(addr)) == e;
	if (found)
		remove_locked(t, e);
	pthread_mutex_unlock(&t->lock);
	return found ? 0 : -ENOENT;
}

int index_get(struct index *idx, uintptr_t addr, struct index_entry **out)
{
	if (!addr_ok(addr))
		return -EINVAL;
	struct tree *t = tree_for(idx, addr);
	int err = 0;
	pthread_mutex_lock(&t->lock);
	struct index_entry *e = find_locked(t, pgoff_of(addr));
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

static void release_list(struct index_entry *e, unsigned int zone,
			 const struct release_ctx *rc)
{
	while (e) {
		struct index_entry *next = e->link.rbe_left;
		rc->release(e, addr_of(zone, e->pgoff), rc->arg);
		e = next;
	}
}

static ssize_t erase_segment(struct index *idx, struct tree *t, unsigned int zone,
			     uint64_t lo, uint64_t hi, void *ctx)
{
	(void)idx;
	ssize_t total = 0;
	for (;;) {
		struct index_entry *batch = NULL, **tail = &batch;
		int n = 0;
		pthread_mutex_lock(&t->lock);
		struct index_entry *e = nfind_locked(t, lo);
		while (e && e->pgoff < hi && n < BATCH) {
			struct index_entry *next = RB_NEXT(index_root, &t->root, e);
			remove_locked(t, e);
			e->link.rbe_left = NULL;
			*tail = e;
			tail = &e->link.rbe_left;
			n++;
			e = next;
		}
		bool more = e && e->pgoff < hi;
		if (more)
			lo = e->pgoff;
		pthread_mutex_unlock(&t->lock);
		release_list(batch, zone, ctx);
		total += n;
		if (!more)
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
 * is chained on *@replaced with its address in rbe_parent.  The source and
 * destination keys never interleave within one tree (the ranges do not
 * overlap, and different zones are different trees), so the successor
 * taken before moving an entry stays the next one to visit.
 */
static ssize_t move_batch_locked(struct index *idx, struct tree *src, struct tree *dst,
				 unsigned int zone, uint64_t *pos, uint64_t hi,
				 const struct move_ctx *m, struct index_entry **replaced)
{
	ssize_t n = 0;
	struct index_entry *e = nfind_locked(src, *pos);
	while (e && e->pgoff < hi && n < BATCH) {
		uintptr_t to = move_dest(m, zone, e->pgoff);
		if (tree_for(idx, to) != dst)
			break;
		struct index_entry *next = RB_NEXT(index_root, &src->root, e);
		remove_locked(src, e);
		e->pgoff = pgoff_of(to);
		struct index_entry *prev = insert_locked(dst, e);
		if (prev) {
			prev->link.rbe_parent = (struct index_entry *)to;
			prev->link.rbe_left = *replaced;
			*replaced = prev;
		}
		n++;
		e = next;
	}
	*pos = e ? e->pgoff : hi;
	return n;
}

static void release_replaced(struct index_entry *e, const struct release_ctx *rc)
{
	while (e) {
		struct index_entry *next = e->link.rbe_left;
		rc->release(e, (uintptr_t)e->link.rbe_parent, rc->arg);
		e = next;
	}
}

/* Move one source segment, a batch at a time, never more than two locks held. */
static ssize_t move_segment(struct index *idx, struct tree *src, unsigned int zone,
			    uint64_t lo, uint64_t hi, void *ctx)
{
	const struct move_ctx *m = ctx;
	ssize_t moved = 0;
	uint64_t pos = lo;
	for (;;) {
		/* peek at the next entry to learn which tree it goes to */
		pthread_mutex_lock(&src->lock);
		struct index_entry *e = nfind_locked(src, pos);
		bool more = e && e->pgoff < hi;
		if (more)
			pos = e->pgoff;
		pthread_mutex_unlock(&src->lock);
		if (!more)
			return moved;
		struct tree *dst = tree_for(idx, move_dest(m, zone, pos));
		struct index_entry *replaced = NULL;
		lock_pair(src, dst);
		moved += move_batch_locked(idx, src, dst, zone, &pos, hi, m, &replaced);
		unlock_pair(src, dst);
		release_replaced(replaced, &m->rc);
	}
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
	struct move_ctx m = { old, new, { release, arg } };
	/* What the destination held goes first; moved entries replace any
	 * entry inserted there meanwhile. */
	for_each_segment(idx, new, new + len, erase_segment, &m.rc);
	return for_each_segment(idx, old, old + len, move_segment, &m);
}

/* ---- walk ------------------------------------------------------------------------ */

struct walk_ctx {
	index_walk_fn fn;
	void *arg;
};

/* Call fn for the entries of @t in [from, to); the caller holds the lock. */
static int walk_locked(struct tree *t, unsigned int zone, uint64_t *from, uint64_t to,
		       const struct walk_ctx *w)
{
	struct index_entry *e = nfind_locked(t, *from);
	for (; e && e->pgoff < to; e = RB_NEXT(index_root, &t->root, e)) {
		int r = w->fn(e, addr_of(zone, e->pgoff), w->arg);
		if (r)
			return r;
	}
	*from = e ? e->pgoff : UINT64_MAX;
	return 0;
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
		int r = walk_locked(t, zone, &from, from + pages_between(lo, hi), w);
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
		struct index_entry *e = nfind_locked(&trees[s], lo);
		next[s] = e ? e->pgoff : UINT64_MAX;
		pthread_mutex_unlock(&trees[s].lock);
	}
	for (;;) {
		unsigned int best = 0;
		uint64_t second = UINT64_MAX;
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
		pthread_mutex_lock(&trees[best].lock);
		int r = walk_locked(&trees[best], zone, &next[best],
				    second < hi ? second : hi, w);
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
	struct slab_stats st;
	slab_get_stats(&idx->entries, &st);
	return st.bytes;
}

/*
 * index — the stored pages' entries, keyed by page address: per shard, a
 * red-black tree (libbsd's <bsd/sys/tree.h>) of 2 MiB chunks, each an
 * array of page slots in 64-slot leaves, like the kernel's xarray.  The
 * fault path finds an entry with a walk over chunks and takes it out by
 * clearing its slot (index.c says why it is not an rbtree of entries).
 *
 * Sharding.  The user address space below 2^47 (the x86-64 4-level user
 * half) is cut into 8 zones of 16 TiB (zone = addr >> 44), so a key fits
 * in 32 bits: the page number within the zone.  Within a zone, each 2 MiB
 * chunk (addr >> 21) is hashed to one of `shards` trees: neighbouring pages
 * share a tree, so readahead and a ranged invalidate walk one tree per
 * chunk, while the fault handler and the reclaimer, working on different
 * chunks, rarely meet on a lock.  Addresses at or above 2^47 are refused
 * with -EINVAL: a program only gets them by asking mmap for them with a
 * hint (5-level paging), and zswapu does not manage such mappings.
 *
 * Locks.  Each tree has its own mutex (adaptive: it spins briefly, then
 * sleeps).  Not a spinlock: on two vCPUs a preempted holder would leave
 * the other CPU spinning for a whole time slice, and erase/move over a
 * range hold a lock for up to 64 entries at a time.  Every callback
 * documented as "after the lock is dropped" runs with no index lock held.
 * The only nesting is move_range's, which holds a source and a
 * destination tree at once, taken in ascending tree order.  Under a tree
 * lock the index calls nothing else: chunks and leaves are allocated
 * before it is taken and freed after it is dropped, so a user may hold a
 * tree lock (from a walk callback) and call into the pools: the order is
 * index tree lock, then anything below.
 *
 * Entry lifecycle.  index_entry_alloc() gives an entry with refcount 1:
 * the reference the tree will hold once it is inserted.  Every way out of
 * a tree (replaced by insert, take, erase_range, move_range's replaced
 * entries) hands that reference to the caller or callback, who drops it
 * with index_entry_put() and, when that returns true, frees what the
 * entry owns and then the entry (index_entry_free).  index_get() takes an
 * extra reference for a reader that leaves the entry in the tree.
 * length, flags and handle are written before insertion and not changed
 * while the entry is in a tree or referenced by anyone else, with one
 * exception: the store's writeback moves an entry's data from the pool to
 * the file (handle := file offset, INDEX_WRITTEN_BACK set) under a lock
 * its readers take too (core/store.c); pgoff belongs to the index (a
 * move re-keys an entry in place) and is only meaningful under the tree
 * lock.
 */
#ifndef ZSWAPU_INDEX_H
#define ZSWAPU_INDEX_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define INDEX_ZONE_SHIFT 44
#define INDEX_ZONES 8
#define INDEX_ADDR_LIMIT (1UL << 47) /* first address the index refuses */
#define INDEX_CHUNK_SHIFT 21          /* 2 MiB: pages of one chunk share a tree and a chunk */
#define INDEX_MAX_SHARDS 256
#define INDEX_PAGE_SIZE 4096UL

/* entry flags */
#define INDEX_SAME_FILLED 0x01   /* handle holds the repeated 8-byte word */
#define INDEX_WRITTEN_BACK 0x02  /* handle holds a writeback file offset */
#define INDEX_LOADING 0x04       /* a fault is bringing the page back */
#define INDEX_SHARED 0x08        /* handle points to the entry that owns the data
				    (a forked child's view, see store_fork()) */

struct index_entry {
	uint32_t pgoff;             /* page number within the zone: (addr >> 12) & 0xffffffff */
	uint16_t length;            /* compressed bytes; 0 same-filled; 4096 stored as-is */
	uint8_t flags;              /* INDEX_* */
	_Atomic uint8_t refcount;   /* holders: the tree, readers, sharing address spaces */
	unsigned long handle;       /* pool handle, same-fill word or file offset */
};

_Static_assert(sizeof(struct index_entry) == 16, "an index entry must be 16 bytes");

struct index;

/* Called for each entry leaving the index by a range operation. */
typedef void (*index_release_fn)(struct index_entry *e, uintptr_t addr, void *arg);
/* Called by index_walk() under the entry's tree lock; non-zero stops the walk. */
typedef int (*index_walk_fn)(struct index_entry *e, uintptr_t addr, void *arg);

/*
 * index_create() : an empty index of @shards trees per zone (a power of
 * two, 1..INDEX_MAX_SHARDS).  @return 0 and *@out, -EINVAL, -ENOMEM.
 */
int index_create(unsigned int shards, struct index **out);

/*
 * index_destroy() : free the index.  Entries still in it are not
 * released: empty it first (erase_range over everything).
 */
void index_destroy(struct index *idx);

/* index_entry_alloc() : a zeroed entry with refcount 1.  -ENOMEM. */
int index_entry_alloc(struct index *idx, struct index_entry **out);
/* index_entry_free() : give back an entry whose last reference was put. */
void index_entry_free(struct index *idx, struct index_entry *e);

/*
 * index_entry_get() : take one more reference to an entry the caller
 * already holds a reference to.  false when the count is saturated (255
 * holders): the caller must make its own copy instead of sharing.
 */
bool index_entry_get(struct index_entry *e);
/*
 * index_entry_share() : index_entry_get() for a long-lived holder (a
 * forked view), refused from INDEX_SHARE_MAX holders on so that readers,
 * which hold references briefly, always find room.
 */
#define INDEX_SHARE_MAX 240
bool index_entry_share(struct index_entry *e);
/* index_entry_put() : drop a reference; true when it was the last one. */
bool index_entry_put(struct index_entry *e);

/*
 * index_insert() : insert @e at page address @addr.  An entry already there
 * is taken out and returned in *@old (its tree reference now the caller's),
 * else *@old is NULL.  @return 0; -EINVAL for an unaligned address or one
 * at or above INDEX_ADDR_LIMIT; -ENOMEM when the slots for @addr could not
 * be allocated (the index is unchanged, @e still the caller's).
 */
int index_insert(struct index *idx, uintptr_t addr, struct index_entry *e,
		 struct index_entry **old);

/*
 * index_take() : find the entry at @addr and take it out of the index; the
 * caller owns the tree's reference (an exclusive load).
 * @return 0 and *@out; -ENOENT; -EINVAL.
 */
int index_take(struct index *idx, uintptr_t addr, struct index_entry **out);

/*
 * index_take_if() : take @e out of the index if it is still the entry at
 * @addr; the caller then owns the tree's reference, as with index_take().
 * For a reader that got @e with index_get() and now wants it gone only if
 * nobody replaced or removed it meanwhile (a load).
 * @return 0; -ENOENT when @e is no longer there; -EINVAL.
 */
int index_take_if(struct index *idx, uintptr_t addr, struct index_entry *e);

/*
 * index_get() : find the entry at @addr and take a reference to it; it
 * stays in the index (readahead, writeback).  Drop it with
 * index_entry_put().  @return 0 and *@out; -ENOENT; -EOVERFLOW when the
 * entry already has 255 holders; -EINVAL.
 */
int index_get(struct index *idx, uintptr_t addr, struct index_entry **out);

/*
 * index_erase_range() : take every entry in [@start, @end) out of the
 * index; @release gets each one (with its tree reference) after the tree
 * lock is dropped, in batches.  Not atomic as a whole: an entry inserted
 * into the range concurrently may survive it.
 * @return the number of entries removed; -EINVAL for unaligned bounds,
 * @start > @end or @end above INDEX_ADDR_LIMIT.
 */
ssize_t index_erase_range(struct index *idx, uintptr_t start, uintptr_t end,
			  index_release_fn release, void *arg);

/*
 * index_move_range() : re-key every entry in [@old, @old + @len) to
 * @new + (addr - @old), as mremap moves pages.  Entries that were at the
 * destination are taken out and handed to @release after the locks are
 * dropped.  The ranges must not overlap (mremap never moves onto itself).
 * Not atomic as a whole, but each entry is moved under both its trees'
 * locks: a concurrent lookup finds it at its old address or at its new
 * one, never at both or neither.
 * @return the number of entries moved; -EINVAL for unaligned arguments,
 * overlapping ranges or a range reaching past INDEX_ADDR_LIMIT; -ENOMEM
 * when a destination slot could not be allocated: the entries not moved
 * are then still at their old addresses, and the caller must take them
 * out before anything else looks there (left, they would be handed to
 * whatever is mapped there next).  The move allocates from pagesrc's
 * reserve, where the index keeps twice its own pages: -ENOMEM needs the
 * reserve used up as well, by moves that follow one another with the
 * arena full.
 */
ssize_t index_move_range(struct index *idx, uintptr_t old, uintptr_t new,
			 size_t len, index_release_fn release, void *arg);

/*
 * index_walk() : call @fn for every entry in [@start, @end) in ascending
 * address order.  @fn runs with that entry's tree lock held: it may read
 * the entry and take a reference (index_entry_get), and may call into the
 * pools, but must not call any index function on @idx nor block for long.
 * Entries inserted or removed in the range during the walk may or may not
 * be seen.  @return 0, @fn's first non-zero return, or -EINVAL.
 */
int index_walk(struct index *idx, uintptr_t start, uintptr_t end,
	       index_walk_fn fn, void *arg);

/* index_shards() : trees per zone, as given to index_create(). */
unsigned int index_shards(const struct index *idx);

/* index_count() : entries in the index (exact when no call is running). */
size_t index_count(struct index *idx);

/* index_entry_bytes() : memory held for entries, chunks and leaves (slab pages). */
size_t index_entry_bytes(struct index *idx);

#endif

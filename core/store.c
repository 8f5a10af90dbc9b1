/*
 * store — see store.h for what it does.  After mm/zswap.c: store, load and
 * invalidate over a zpool and an entry index.
 *
 * Locks, in the order they may nest:
 *   1. index tree locks (core/index.c) — protect the trees;
 *   2. zpool internals (pools/) — protect the pool's pages and classes;
 *   3. the entry slab's lock and pagesrc's lock — leaves.
 * Never the reverse: nothing here runs with a pool lock held while calling
 * the index.  In fact the store never nests them at all: it calls the pool
 * only with no tree lock held (index callbacks run after the tree lock is
 * dropped), and the stats are lock-free atomics.
 *
 * Entry lifecycle: store_prepare() fills an entry (pool object written or
 * same-fill word) with refcount 1; store_commit() inserts it and counts it
 * as stored.  The entry leaves the index by a load, an invalidate, a move
 * onto it, a later store at its address, or store_destroy(); whoever takes
 * it out drops the tree's reference, and whoever drops the last reference
 * frees the pool object and the entry, and uncounts it (entry_put()).
 *
 * Loads use a reference, as zswap's rbtree version did, rather than taking
 * the entry out first: get (ref) -> map, decompress, unmap -> take the
 * entry out only if it is still the one at that address -> put.  So a failed decompression leaves the
 * entry where it was (nothing to put back, which could resurrect a page
 * invalidated meanwhile), and two loads of one page racing each other both
 * return its data instead of one seeing -ENOENT (for a fault handler, "no
 * entry" means "map zeros": that would lose the page).  A load racing an
 * invalidate or a store returns the data it held a reference to, which is
 * the "load first" order.
 *
 * Writeback (the section at the end): an entry's data moves from the pool
 * to the file while the entry stays in the index and may be read.  The one
 * exception to "handle and flags do not change while the entry is
 * referenced": the writeback thread switches them (handle := file offset,
 * INDEX_WRITTEN_BACK set) under wb_lock[stripe of the entry], and frees
 * the pool object after dropping it.  Whoever reads a pool object that may
 * be switched (a load, a fork's copy) holds the same stripe lock, so the
 * object is never freed under it; the file offset then stays valid for as
 * long as the reader's reference (the file slot is freed with the entry).
 * Lock order: index tree lock -> wb_lock -> pool locks and writeback's
 * reader lock.  Only a root store's entries move (a fork view shares them
 * by pointer, and reads them under the root's stripe).
 *
 * Gauges (pool_total_size, entry_bytes) are published by delta: each store
 * exchanges the value it last published for the current one and adds the
 * difference, then reads again and repeats if the value moved meanwhile,
 * so after any quiet moment the sum is exact, even with several stores
 * sharing one struct stats.
 */
#include "core/store.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "core/index.h"
#include "core/log.h"
#include "core/writeback.h"
#include "pools/pagesrc.h"
#include "pools/zpool.h"

#define PAGE COMPRESS_PAGE_SIZE
#define DEFAULT_POOL "zsmalloc"
#define DEFAULT_SHARDS 16
#define STORE_WB_STRIPES 64

struct store {
	struct compress_cfg cfg;
	unsigned int max_compressed;
	bool store_incompressible;
	bool pool_holds_page;          /* the pool takes a 4096-byte object */
	size_t raw_cap;                /* largest compressed size store_page_raw() keeps */
	struct zpool *pool;            /* the root's, in a fork store */
	struct store *root;            /* NULL, or the store owning pool and shared entries */
	struct index *index;
	struct stats *st;
	_Atomic size_t pool_published;  /* pool bytes this store added to st */
	_Atomic size_t entry_published; /* entry bytes this store added to st */
	/* the cap and the writeback tier: a root store's only */
	/* 0: no cap; store_set_max_pool() changes them while others read */
	_Atomic size_t max_pool, accept_pool;
	unsigned int accept_pct;
	_Atomic bool full;              /* cap hit, no writeback: refusing stores */
	struct writeback *wb;
	pthread_mutex_t wb_lock[STORE_WB_STRIPES]; /* see the top comment */
};

_Static_assert(sizeof(struct store) <= PAGESRC_PAGE_SIZE, "store overflows its page");

/* ---- per-thread compression buffer ---------------------------------------- */

/*
 * One page per thread that stores, from pagesrc, reached through an
 * initial-exec TLS pointer (no malloc in __tls_get_addr; see compress.c)
 * and given back by a key destructor when the thread exits.
 */
static __thread void *tls_buf __attribute__((tls_model("initial-exec")));
static pthread_key_t buf_key;
static pthread_once_t buf_key_once = PTHREAD_ONCE_INIT;
static int buf_key_err;

static void buf_release(void *buf)
{
	pagesrc_free(buf, 1);
	tls_buf = NULL;
}

static void buf_key_create(void)
{
	buf_key_err = pthread_key_create(&buf_key, buf_release);
}

static void *thread_buf(void)
{
	if (tls_buf)
		return tls_buf;
	pthread_once(&buf_key_once, buf_key_create);
	void *p;
	if (buf_key_err || pagesrc_alloc(1, &p))
		return NULL;
	if (pthread_setspecific(buf_key, p)) {
		pagesrc_free(p, 1);
		return NULL;
	}
	tls_buf = p;
	return p;
}

/*
 * An entry's flags.  Only INDEX_WRITTEN_BACK ever changes once an entry is
 * shared, under the entry's stripe lock; the other bits are read without
 * it, so the byte is read and written atomically (relaxed: the lock or a
 * reference orders what matters).
 */
static uint8_t flags_of(const struct index_entry *e)
{
	return __atomic_load_n(&e->flags, __ATOMIC_RELAXED);
}

/* ---- stats -------------------------------------------------------------------- */

static size_t pool_bytes(struct store *s)
{
	/* a fork store's pool is the root's, counted there */
	return s->root ? 0 : (size_t)zpool_get_total_pages(s->pool) * PAGESRC_PAGE_SIZE;
}

static size_t entry_bytes(struct store *s)
{
	return index_entry_bytes(s->index);
}

/* Bring gauge @id up to date with @read (see the top comment). */
static void publish(struct store *s, enum stats_counter id, _Atomic size_t *published,
		    size_t (*read)(struct store *))
{
	size_t v = read(s);
	for (;;) {
		size_t prev = atomic_exchange(published, v);
		if (v != prev)
			stats_add(s->st, id, (int64_t)(v - prev));
		size_t now = read(s);
		if (now == v)
			return;
		v = now;
	}
}

static void publish_memory(struct store *s)
{
	publish(s, STAT_POOL_TOTAL_SIZE, &s->pool_published, pool_bytes);
	publish(s, STAT_ENTRY_BYTES, &s->entry_published, entry_bytes);
}

/* Add (+1) or remove (-1) a stored entry from the gauges. */
static void count_stored(struct store *s, const struct index_entry *e, int dir)
{
	stats_add(s->st, STAT_STORED_PAGES, dir);
	if (flags_of(e) & INDEX_SAME_FILLED) {
		stats_add(s->st, e->handle ? STAT_SAME_FILLED_PAGES : STAT_ZERO_FILLED_PAGES, dir);
		return;
	}
	if (flags_of(e) & INDEX_WRITTEN_BACK) /* its bytes left the pool's count then */
		stats_add(s->st, STAT_WB_STORED_PAGES, dir);
	else
		stats_add(s->st, STAT_COMPRESSED_BYTES, dir * (int64_t)e->length);
	if (e->length == PAGE)
		stats_add(s->st, STAT_STORED_INCOMPRESSIBLE_PAGES, dir);
}

/* ---- entries -------------------------------------------------------------------- */

static bool has_pool_object(const struct index_entry *e)
{
	return !(flags_of(e) & (INDEX_SAME_FILLED | INDEX_SHARED | INDEX_WRITTEN_BACK));
}

/* The store that owns the pool, the file and the stripe locks. */
static struct store *root_of(struct store *s)
{
	return s->root ? s->root : s;
}

static pthread_mutex_t *wb_lock_of(struct store *s, const struct index_entry *e)
{
	uint64_t h = ((uintptr_t)e >> 4) * 0x9E3779B97F4A7C15ULL;
	return &root_of(s)->wb_lock[h >> 58]; /* 64 stripes */
}

/* The entry whose handle names the data: itself, or the shared one. */
static const struct index_entry *data_of(const struct index_entry *e)
{
	return flags_of(e) & INDEX_SHARED ? (const struct index_entry *)e->handle : e;
}

static void entry_put(struct store *s, struct index_entry *e);

/* Free what the entry owns and the entry itself. */
static void free_entry(struct store *s, struct index_entry *e)
{
	struct index_entry *shared = flags_of(e) & INDEX_SHARED ? (void *)e->handle : NULL;
	if (has_pool_object(e))
		zpool_free(s->pool, e->handle);
	else if (flags_of(e) & INDEX_WRITTEN_BACK)
		writeback_free(root_of(s)->wb, e->handle, e->length);
	index_entry_free(s->index, e);
	publish_memory(s);
	if (shared) /* our reference to the owner's entry */
		entry_put(s->root, shared);
}

/* Drop one reference; the last one uncounts and frees the entry. */
static void entry_put(struct store *s, struct index_entry *e)
{
	if (!index_entry_put(e))
		return;
	count_stored(s, e, -1);
	free_entry(s, e);
}

/* index callback: an entry invalidated (or displaced by a move). */
static void release_invalidated(struct index_entry *e, uintptr_t addr, void *arg)
{
	(void)addr;
	struct store *s = arg;
	stats_inc(s->st, STAT_INVALIDATES);
	entry_put(s, e);
}

/* index callback: an entry dropped because the store is going away. */
static void release_destroyed(struct index_entry *e, uintptr_t addr, void *arg)
{
	(void)addr;
	entry_put(arg, e);
}

/* ---- options --------------------------------------------------------------------- */

void store_options_default(struct store_options *o)
{
	memset(o, 0, sizeof(*o));
	o->compressor = COMPRESS_CFG_DEFAULT;
	o->pool = DEFAULT_POOL;
	o->max_compressed = STORE_MAX_COMPRESSED_DEFAULT;
	o->store_incompressible = false;
	o->shards = DEFAULT_SHARDS;
	o->accept_pct = STORE_ACCEPT_DEFAULT;
}

/* The compressor, checked by naming it and parsing the name back. */
static int check_compressor(const struct compress_cfg *in, struct compress_cfg *out)
{
	char name[32];
	return compress_parse(compress_name(in, name, sizeof(name)), out);
}

static int check_pool_name(const char *pool)
{
	if (zpool_has_pool(pool))
		return 0;
	const char *const *names = zpool_driver_names();
	log_error("pool '%s' not recognised: accepted are %s%s%s%s%s", pool ? pool : "(null)",
		  names[0], names[1] ? ", " : "", names[1] ? names[1] : "",
		  names[1] && names[2] ? ", " : "", names[1] && names[2] ? names[2] : "");
	return -EINVAL;
}

/* Options that depend on the pool, checked once it exists. */
static int check_sizes(const struct store_options *o, struct store *s)
{
	size_t max = zpool_max_size(s->pool);
	size_t cap = max < PAGE - 1 ? max : PAGE - 1;
	if (o->max_compressed == 0 || o->max_compressed > cap) {
		log_error("max_compressed %u out of range: accepted is 1..%zu with pool %s "
			  "(4096 marks a page stored as-is)",
			  o->max_compressed, cap, zpool_driver_name(s->pool));
		return -EINVAL;
	}
	s->max_compressed = o->max_compressed;
	s->raw_cap = cap;
	s->pool_holds_page = max >= PAGE;
	return 0;
}

/* ---- create / destroy ------------------------------------------------------------ */

static int store_init(const struct store_options *o, struct store *s)
{
	int err = check_compressor(&o->compressor, &s->cfg);
	if (!err)
		err = check_pool_name(o->pool);
	if (err)
		return err;
	err = zpool_create_pool(o->pool, NULL, &s->pool);
	if (err)
		return err;
	err = check_sizes(o, s);
	if (!err) {
		err = index_create(o->shards, &s->index);
		if (err == -EINVAL)
			log_error("index shards %u not accepted: a power of two 1..%d",
				  o->shards, INDEX_MAX_SHARDS);
	}
	if (err) {
		zpool_destroy_pool(s->pool);
		return err;
	}
	s->store_incompressible = o->store_incompressible;
	return 0;
}

/* The cap and the file.  A file that cannot be made is one line and no
 * writeback: the store works on, refusing pages at the cap. */
static int store_init_writeback(const struct store_options *o, struct store *s)
{
	for (int i = 0; i < STORE_WB_STRIPES; i++)
		pthread_mutex_init(&s->wb_lock[i], NULL);
	if (o->accept_pct < 1 || o->accept_pct > 100) {
		log_error("accept threshold %u%% out of range: accepted is 1..100", o->accept_pct);
		return -EINVAL;
	}
	s->accept_pct = o->accept_pct;
	atomic_init(&s->max_pool, o->max_pool);
	atomic_init(&s->accept_pool, o->max_pool / 100 * o->accept_pct);
	if (o->writeback_dir && writeback_create(o->writeback_dir, s->st, &s->wb))
		s->wb = NULL;
	return 0;
}

int store_create(const struct store_options *o, struct stats *st, struct store **out)
{
	struct store *s;
	int err = pagesrc_alloc(1, (void **)&s);
	if (err)
		return err;
	memset(s, 0, sizeof(*s));
	s->st = st;
	err = store_init(o, s);
	if (err) {
		pagesrc_free(s, 1);
		return err;
	}
	err = store_init_writeback(o, s);
	if (err) {
		store_destroy(s);
		return err;
	}
	publish_memory(s);
	*out = s;
	return 0;
}

void store_destroy(struct store *s)
{
	if (!s)
		return;
	index_erase_range(s->index, 0, INDEX_ADDR_LIMIT, release_destroyed, s);
	if (!s->root)
		zpool_destroy_pool(s->pool);
	index_destroy(s->index);
	writeback_destroy(s->wb); /* after the entries: they free file slots */
	/* the memory is gone: take back what this store published */
	stats_add(s->st, STAT_POOL_TOTAL_SIZE, -(int64_t)atomic_exchange(&s->pool_published, 0));
	stats_add(s->st, STAT_ENTRY_BYTES, -(int64_t)atomic_exchange(&s->entry_published, 0));
	pagesrc_free(s, 1);
}

struct fork_arg {
	struct store *dst;
	int err;
};

/*
 * A pool object of its own for @d holding @owner's data, from the pool or
 * from the file (under the stripe lock: writeback may be switching it).
 */
static int copy_object(struct store *d, const struct index_entry *owner, unsigned long *out)
{
	unsigned long h;
	if (zpool_malloc(d->pool, owner->length, &h))
		return -ENOMEM;
	void *dst = zpool_map_handle(d->pool, h, ZPOOL_MM_WO);
	pthread_mutex_t *l = wb_lock_of(d, owner);
	pthread_mutex_lock(l);
	int err = 0;
	if (flags_of(owner) & INDEX_WRITTEN_BACK) {
		err = writeback_read(d->root->wb, owner->handle, owner->length, dst);
	} else {
		memcpy(dst, zpool_map_handle(d->pool, owner->handle, ZPOOL_MM_RO), owner->length);
		zpool_unmap_handle(d->pool, owner->handle);
	}
	pthread_mutex_unlock(l);
	zpool_unmap_handle(d->pool, h);
	if (err) {
		zpool_free(d->pool, h);
		return err;
	}
	*out = h;
	return 0;
}

/* index_walk callback over the source: add a sharing entry to the fork. */
static int fork_fn(struct index_entry *e, uintptr_t addr, void *arg)
{
	struct fork_arg *a = arg;
	struct store *d = a->dst;
	struct index_entry *owner = (struct index_entry *)data_of(e), *ne, *old;
	if (index_entry_alloc(d->index, &ne)) {
		a->err = -ENOMEM;
		return 1;
	}
	ne->length = owner->length;
	if (flags_of(owner) & INDEX_SAME_FILLED) { /* no pool data: a plain copy */
		ne->flags = INDEX_SAME_FILLED;
		ne->handle = owner->handle;
	} else if (index_entry_share(owner)) {
		ne->flags = INDEX_SHARED;
		ne->handle = (unsigned long)owner;
	} else if (copy_object(d, owner, &ne->handle)) {
		/* shared by too many already, and no copy of its own either */
		index_entry_free(d->index, ne);
		a->err = -ENOMEM;
		return 1;
	}
	count_stored(d, ne, +1);
	if (index_insert(d->index, addr, ne, &old)) { /* a fresh index: no old entry */
		entry_put(d, ne);
		a->err = -ENOMEM;
		return 1;
	}
	return 0;
}

int store_fork(struct store *src, struct stats *st, struct store **out)
{
	struct store *s;
	int err = pagesrc_alloc(1, (void **)&s);
	if (err)
		return err;
	memset(s, 0, sizeof(*s));
	s->cfg = src->cfg;
	s->max_compressed = src->max_compressed;
	s->store_incompressible = src->store_incompressible;
	s->pool_holds_page = src->pool_holds_page;
	s->raw_cap = src->raw_cap;
	s->root = src->root ? src->root : src;
	s->pool = src->pool;
	s->st = st;
	err = index_create(index_shards(src->index), &s->index);
	if (err) {
		pagesrc_free(s, 1);
		return err;
	}
	struct fork_arg a = { .dst = s };
	index_walk(src->index, 0, INDEX_ADDR_LIMIT, fork_fn, &a);
	publish_memory(s);
	if (a.err) {
		store_destroy(s);
		return a.err;
	}
	*out = s;
	return 0;
}

static bool addr_ok(uintptr_t addr)
{
	return addr < INDEX_ADDR_LIMIT && (addr & (PAGE - 1)) == 0;
}

/* ---- store ------------------------------------------------------------------------ */

/*
 * Compress @page into this thread's buffer, at most @cap bytes; with
 * @as_is, a page that does not fit is kept uncompressed if the pool can
 * hold it.  Then copy the result into a new pool object.  Counts the
 * reject when it fails.
 */
static int fill_pool_object(struct store *s, struct index_entry *e, const void *page,
			    size_t cap, bool as_is)
{
	void *buf = thread_buf();
	if (!buf) {
		stats_inc(s->st, STAT_REJECT_ALLOC_FAIL);
		return -ENOMEM;
	}
	size_t len;
	const void *src = buf;
	int err = compress_page(&s->cfg, page, buf, cap, &len);
	if (err == -E2BIG && as_is && s->pool_holds_page) {
		src = page;
		len = PAGE;
		err = 0;
	}
	if (err) {
		stats_inc(s->st, err == -E2BIG ? STAT_REJECT_COMPRESS_POOR
					       : STAT_REJECT_COMPRESS_FAIL);
		return err;
	}
	unsigned long handle;
	/* -ENOSPC cannot happen: cap is within the pool's largest object */
	if (zpool_malloc(s->pool, len, &handle)) {
		stats_inc(s->st, STAT_REJECT_ALLOC_FAIL);
		return -ENOMEM;
	}
	void *dst = zpool_map_handle(s->pool, handle, ZPOOL_MM_WO);
	memcpy(dst, src, len);
	zpool_unmap_handle(s->pool, handle);
	e->handle = handle;
	e->length = (uint16_t)len;
	return 0;
}

static bool pool_capped(struct store *s);

static int prepare(struct store *s, const void *page, size_t cap, bool as_is, bool capped,
		   struct store_prep *prep)
{
	struct index_entry *e;
	if (index_entry_alloc(s->index, &e)) {
		stats_inc(s->st, STAT_REJECT_ALLOC_FAIL);
		return -ENOMEM;
	}
	uint64_t word;
	if (compress_same_filled(page, &word)) {
		e->flags = INDEX_SAME_FILLED;
		e->handle = word;
	} else {
		int err = 0;
		if (capped && pool_capped(s)) {
			stats_inc(s->st, STAT_REJECT_POOL_LIMIT);
			err = -ENOSPC;
		}
		if (!err)
			err = fill_pool_object(s, e, page, cap, as_is);
		if (err) {
			index_entry_free(s->index, e);
			publish_memory(s);
			return err;
		}
	}
	publish_memory(s);
	prep->entry = e;
	return 0;
}

int store_prepare(struct store *s, const void *page, struct store_prep *prep)
{
	return prepare(s, page, s->max_compressed, s->store_incompressible, true, prep);
}

void store_abort(struct store *s, struct store_prep *prep)
{
	free_entry(s, prep->entry);
	prep->entry = NULL;
}

int store_commit(struct store *s, uintptr_t addr, struct store_prep *prep)
{
	struct index_entry *e = prep->entry, *old;
	prep->entry = NULL;
	if (!addr_ok(addr)) {
		free_entry(s, e);
		return -EINVAL;
	}
	/*
	 * Counted before it is visible, so a racing load never uncounts it
	 * first; once inserted, e may be loaded and freed at any moment, so
	 * nothing of it is read after index_insert().
	 */
	count_stored(s, e, +1);
	bool pooled = has_pool_object(e), lru = pooled && s->wb;
	uint16_t length = e->length;
	int err = index_insert(s->index, addr, e, &old);
	if (err) { /* no memory for the index's slots: the caller keeps the page */
		stats_inc(s->st, STAT_REJECT_ALLOC_FAIL);
		entry_put(s, e); /* still only ours: uncounted and freed */
		return err;
	}
	if (pooled)
		stats_count_csize(s->st, length);
	if (lru) /* the age writeback goes by */
		writeback_lru_push(s->wb, addr);
	stats_inc(s->st, STAT_STORES);
	if (old) {
		stats_inc(s->st, STAT_DUPLICATE_ENTRY);
		entry_put(s, old);
	}
	return 0;
}

static int store_with(struct store *s, uintptr_t addr, const void *page, size_t cap,
		      bool as_is, bool capped)
{
	if (!addr_ok(addr))
		return -EINVAL;
	struct store_prep prep;
	int err = prepare(s, page, cap, as_is, capped, &prep);
	return err ? err : store_commit(s, addr, &prep);
}

int store_page(struct store *s, uintptr_t addr, const void *page)
{
	return store_with(s, addr, page, s->max_compressed, s->store_incompressible, true);
}

int store_page_raw(struct store *s, uintptr_t addr, const void *page)
{
	return store_with(s, addr, page, s->raw_cap, true, false);
}

/* ---- load ------------------------------------------------------------------------- */

/* Decompress (or copy, for an as-is page) @len bytes at @src into @dst. */
static int unpack(struct store *s, const void *src, size_t len, void *dst)
{
	if (len == PAGE) {
		memcpy(dst, src, PAGE);
		return 0;
	}
	int err = compress_decompress(&s->cfg, src, len, dst);
	if (err == -EIO)
		stats_inc(s->st, STAT_DECOMPRESS_FAIL);
	return err;
}

static int read_pool(struct store *s, const struct index_entry *e, void *dst)
{
	const void *src = zpool_map_handle(s->pool, e->handle, ZPOOL_MM_RO);
	/* The object is cold: ask for all its lines at once, so that their
	 * misses overlap instead of meeting the decompressor one by one. */
	for (size_t off = 0; off < e->length; off += 64)
		__builtin_prefetch((const char *)src + off);
	int err = unpack(s, src, e->length, dst);
	zpool_unmap_handle(s->pool, e->handle);
	return err;
}

static int read_entry(struct store *s, const struct index_entry *e, void *dst)
{
	e = data_of(e);
	if (flags_of(e) & INDEX_SAME_FILLED) {
		compress_fill_page(dst, e->handle);
		return 0;
	}
	struct store *root = root_of(s);
	if (!root->wb) /* nothing ever moves */
		return read_pool(s, e, dst);
	pthread_mutex_t *l = wb_lock_of(s, e);
	pthread_mutex_lock(l);
	if (!(flags_of(e) & INDEX_WRITTEN_BACK)) {
		int err = read_pool(s, e, dst);
		pthread_mutex_unlock(l);
		return err;
	}
	uint64_t off = e->handle;
	pthread_mutex_unlock(l);
	/* the slot lives as long as our reference to the entry */
	void *buf = thread_buf();
	if (!buf)
		return -ENOMEM;
	int err = writeback_read(root->wb, off, e->length, buf);
	return err ? err : unpack(s, buf, e->length, dst);
}

int store_load_ready(struct store *s)
{
	int err = compress_decompress_ready(&s->cfg);
	if (!err && root_of(s)->wb && !thread_buf())
		err = -ENOMEM;
	return err;
}

int store_load_begin(struct store *s, uintptr_t addr, void *dst, struct store_load *ld)
{
	ld->t0 = stats_now_ns();
	int err = index_get(s->index, addr, &ld->entry);
	if (err)
		return err == -EOVERFLOW ? -EBUSY : err;
	err = read_entry(s, ld->entry, dst);
	if (err) {
		entry_put(s, ld->entry); /* ours; the entry stays stored */
		ld->entry = NULL;
	}
	return err;
}

void store_load_end(struct store *s, uintptr_t addr, struct store_load *ld, bool consumed)
{
	struct index_entry *e = ld->entry;
	ld->entry = NULL;
	/* exclusive load: the page now lives in the program again */
	if (consumed && index_take_if(s->index, addr, e) == 0)
		entry_put(s, e); /* the tree's reference */
	entry_put(s, e);
	if (consumed) {
		stats_inc(s->st, STAT_LOADS);
		stats_count_load_ns(s->st, stats_now_ns() - ld->t0);
	}
}

int store_load(struct store *s, uintptr_t addr, void *dst)
{
	struct store_load ld;
	int err = store_load_begin(s, addr, dst, &ld);
	if (!err)
		store_load_end(s, addr, &ld, true);
	return err;
}

struct first_arg {
	uintptr_t addr;
};

static int first_fn(struct index_entry *e, uintptr_t addr, void *arg)
{
	(void)e;
	((struct first_arg *)arg)->addr = addr;
	return 1;
}

int store_first(struct store *s, uintptr_t start, uintptr_t end, uintptr_t *addr)
{
	if (end > INDEX_ADDR_LIMIT)
		end = INDEX_ADDR_LIMIT;
	if (start >= end)
		return -ENOENT;
	struct first_arg a;
	int r = index_walk(s->index, start, end, first_fn, &a);
	if (r < 0)
		return r;
	if (r == 0)
		return -ENOENT;
	*addr = a.addr;
	return 0;
}

/* ---- invalidate / move --------------------------------------------------------------- */

size_t store_invalidate(struct store *s, uintptr_t addr, size_t len)
{
	if (!addr_ok(addr) || len == 0)
		return 0;
	/* both are page multiples, so a len below the room left rounds within it */
	uintptr_t end = len >= INDEX_ADDR_LIMIT - addr
				? INDEX_ADDR_LIMIT
				: addr + ((len + PAGE - 1) & ~(size_t)(PAGE - 1));
	ssize_t n = index_erase_range(s->index, addr, end, release_invalidated, s);
	return n > 0 ? (size_t)n : 0;
}

int store_move(struct store *s, uintptr_t old_addr, uintptr_t new_addr, size_t len)
{
	ssize_t n = index_move_range(s->index, old_addr, new_addr, len,
				     release_invalidated, s);
	return n < 0 ? (int)n : 0;
}

/* ---- accessors ---------------------------------------------------------------------- */

struct zpool *store_zpool(struct store *s)
{
	return s->pool;
}

struct index *store_index(struct store *s)
{
	return s->index;
}

size_t store_compact(struct store *s)
{
	unsigned long freed = 0;
	if (s->root || zpool_compact(s->pool, &freed))
		return 0; /* a fork view owns no pool; some drivers cannot */
	publish_memory(s);
	return freed;
}

size_t store_compressed_bytes(struct store *s)
{
	return (size_t)atomic_load_explicit(&s->st->c[STAT_COMPRESSED_BYTES], memory_order_relaxed);
}

size_t store_pool_bytes(struct store *s)
{
	return pool_bytes(s);
}

size_t store_entry_count(struct store *s)
{
	return index_count(s->index);
}

/* ---- the pool cap and writeback ------------------------------------------------------ */

/*
 * Is the pool at its cap with nothing to relieve it?  Hysteresis as
 * zswap's: once refused, stores stay refused until the pool is under
 * accept_pool.  With a working file the cap refuses nothing: the caller
 * writes back after its batch (store_writeback()).
 */
static bool pool_capped(struct store *s)
{
	size_t max = atomic_load_explicit(&s->max_pool, memory_order_relaxed);
	if (!max || s->root)
		return false;
	size_t pool = pool_bytes(s);
	if (atomic_load_explicit(&s->full, memory_order_relaxed)) {
		if (pool >= atomic_load_explicit(&s->accept_pool, memory_order_relaxed))
			return true;
		atomic_store(&s->full, false);
		return false;
	}
	if (pool < max || (s->wb && writeback_usable(s->wb)))
		return false;
	if (!atomic_exchange(&s->full, true))
		stats_inc(s->st, STAT_POOL_LIMIT_HIT);
	return true;
}

void store_set_max_pool(struct store *s, size_t bytes)
{
	/* a cap from nothing would need the tier store_create() decided on */
	if (s->root || !bytes || !atomic_load(&s->max_pool))
		return;
	atomic_store(&s->accept_pool, bytes / 100 * s->accept_pct);
	atomic_store(&s->max_pool, bytes);
}

bool store_pool_full(struct store *s)
{
	return pool_capped(s);
}

struct writeback *store_writeback_file(struct store *s)
{
	return s->root ? NULL : s->wb;
}

/* index_walk callback: every page with data in the pool goes on the LRU. */
static int lru_refill_fn(struct index_entry *e, uintptr_t addr, void *arg)
{
	if (has_pool_object(e))
		writeback_lru_push(arg, addr);
	return 0;
}

/*
 * One batch: pop pages off the LRU, copy their pool objects into the
 * writer's buffer, write them with one submit, then switch each written
 * entry to its file offset and free its pool object.  A page whose write
 * failed keeps its pool object: nothing is lost.  Stops at @goal bytes.
 * @return pages written back; *@bytes their compressed bytes.
 */
static unsigned int writeback_batch(struct store *s, size_t goal, bool *refilled, size_t *bytes)
{
	struct writeback_io io[WRITEBACK_BATCH];
	struct index_entry *ent[WRITEBACK_BATCH];
	uint8_t *buf = writeback_wbuf(s->wb);
	size_t pos = 0, got = 0;
	unsigned int n = 0;
	while (n < WRITEBACK_BATCH && got < goal && pos + PAGE <= WRITEBACK_WBUF) {
		uintptr_t addr;
		struct index_entry *e;
		if (!writeback_lru_pop(s->wb, &addr)) {
			/* dry: the records of moved pages were lost; once per call */
			if (*refilled || n)
				break;
			*refilled = true;
			index_walk(s->index, 0, INDEX_ADDR_LIMIT, lru_refill_fn, s->wb);
			continue;
		}
		if (index_get(s->index, addr, &e))
			continue; /* a stale record: loaded or invalidated since */
		/*
		 * Only this thread sets INDEX_WRITTEN_BACK: no lock to test it.
		 * A page stored, loaded and stored again has two records; both
		 * can pop in one batch, and the entry must be taken once (its
		 * pool handle is freed when the batch ends).
		 */
		bool taken = false;
		for (unsigned int i = 0; i < n && !taken; i++)
			taken = ent[i] == e;
		uint64_t off;
		if (taken || !has_pool_object(e) || writeback_alloc(s->wb, e->length, &off)) {
			entry_put(s, e);
			continue;
		}
		memcpy(buf + pos, zpool_map_handle(s->pool, e->handle, ZPOOL_MM_RO), e->length);
		zpool_unmap_handle(s->pool, e->handle);
		io[n] = (struct writeback_io){ .off = off, .buf = buf + pos, .len = e->length };
		ent[n++] = e;
		pos += e->length;
		got += e->length;
	}
	if (n)
		writeback_write(s->wb, io, n);
	unsigned int done = 0;
	*bytes = 0;
	for (unsigned int i = 0; i < n; i++) {
		struct index_entry *e = ent[i];
		if (io[i].res) {
			writeback_free(s->wb, io[i].off, io[i].len);
		} else {
			unsigned long h = e->handle;
			pthread_mutex_t *l = wb_lock_of(s, e);
			pthread_mutex_lock(l);
			e->handle = io[i].off;
			__atomic_store_n(&e->flags, flags_of(e) | INDEX_WRITTEN_BACK, __ATOMIC_RELAXED);
			pthread_mutex_unlock(l);
			zpool_free(s->pool, h);
			stats_add(s->st, STAT_COMPRESSED_BYTES, -(int64_t)io[i].len);
			stats_inc(s->st, STAT_WB_STORED_PAGES);
			stats_inc(s->st, STAT_WRITTEN_BACK_PAGES);
			*bytes += io[i].len;
			done++;
		}
		entry_put(s, e); /* may be the last: a page loaded meanwhile */
	}
	return done;
}

size_t store_writeback(struct store *s)
{
	size_t max = atomic_load_explicit(&s->max_pool, memory_order_relaxed);
	if (!s->wb || s->root || !max || !writeback_usable(s->wb) || pool_bytes(s) < max)
		return 0;
	size_t accept = atomic_load_explicit(&s->accept_pool, memory_order_relaxed);
	stats_inc(s->st, STAT_POOL_LIMIT_HIT);
	size_t total = 0;
	bool refilled = false;
	/*
	 * Objects leave the pool one by one but its pages only when empty
	 * (zbud, z3fold) or compacted (zsmalloc): aim at the data bytes that
	 * would bring the pool, at its present density, under accept_pool,
	 * compact, and look again; a few rounds at most.
	 */
	for (int round = 0; round < 4 && writeback_usable(s->wb); round++) {
		size_t pool = pool_bytes(s), data = store_compressed_bytes(s);
		if (pool <= accept || !data)
			break;
		size_t goal = (size_t)((double)(pool - accept) * data / pool) + 1, got = 0;
		unsigned int n = 0;
		do {
			size_t b;
			n = writeback_batch(s, goal - got, &refilled, &b);
			got += b;
			total += n;
		} while (n && got < goal && writeback_usable(s->wb));
		publish_memory(s);
		if (!got)
			break;
		store_compact(s);
	}
	return total;
}

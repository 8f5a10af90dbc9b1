/*
 * test_index — the entry index against a shadow: insert/replace/take/get,
 * erase_range, move_range and walk over ranges with holes, across 2 MiB
 * chunk (shard) and 16 TiB zone boundaries, for several shard counts, with
 * counts checked after every operation; refcounts and their saturation;
 * bad arguments; four threads sharing trees plus a reader and movers.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/index.h"
#include "pools/pagesrc.h"

#define PAGE 4096UL
#define CHUNK (2UL << 20)
#define ZONE (1UL << 44)

static const unsigned int shard_counts[] = { 16, 1, 4, 256 };
#define NSHARDS (sizeof(shard_counts) / sizeof(shard_counts[0]))

static uint64_t rnd(uint64_t *s)
{
	*s += 0x9e3779b97f4a7c15ULL;
	uint64_t x = *s;
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static struct index_entry *new_entry(struct index *idx, unsigned long handle)
{
	struct index_entry *e;
	ck_assert_int_eq(index_entry_alloc(idx, &e), 0);
	ck_assert_uint_eq(atomic_load(&e->refcount), 1);
	ck_assert_uint_eq(e->flags, 0);
	e->handle = handle;
	return e;
}

static void drop(struct index *idx, struct index_entry *e)
{
	if (index_entry_put(e))
		index_entry_free(idx, e);
}

/* ---- single-threaded, against a shadow --------------------------------- */

struct pair {
	uintptr_t addr;
	struct index_entry *e;
	unsigned long handle; /* read when added: a released entry may be freed */
};

struct shadow {
	struct pair *p;
	size_t n, cap;
};

static int cmp_pair(const void *a, const void *b)
{
	uintptr_t x = ((const struct pair *)a)->addr, y = ((const struct pair *)b)->addr;
	return x < y ? -1 : x > y;
}

static long shadow_find(const struct shadow *sh, uintptr_t addr)
{
	for (size_t i = 0; i < sh->n; i++)
		if (sh->p[i].addr == addr)
			return (long)i;
	return -1;
}

static void shadow_add(struct shadow *sh, uintptr_t addr, struct index_entry *e)
{
	if (sh->n == sh->cap) {
		sh->cap = sh->cap ? 2 * sh->cap : 1024;
		sh->p = realloc(sh->p, sh->cap * sizeof(*sh->p));
	}
	sh->p[sh->n++] = (struct pair){ addr, e, e->handle };
}

static void shadow_del(struct shadow *sh, size_t i)
{
	sh->p[i] = sh->p[--sh->n];
}

/* Pairs with addr in [lo, hi), removed from the shadow into *out (sorted). */
static struct shadow shadow_cut(struct shadow *sh, uintptr_t lo, uintptr_t hi)
{
	struct shadow out = { 0 };
	for (size_t i = 0; i < sh->n;) {
		if (sh->p[i].addr >= lo && sh->p[i].addr < hi) {
			shadow_add(&out, sh->p[i].addr, sh->p[i].e);
			shadow_del(sh, i);
		} else {
			i++;
		}
	}
	if (out.n)
		qsort(out.p, out.n, sizeof(*out.p), cmp_pair);
	return out;
}

/* Collects what a callback is given. */
struct collect {
	struct shadow got;
	struct index *idx;
	int free_them;
};

static void collect_release(struct index_entry *e, uintptr_t addr, void *arg)
{
	struct collect *c = arg;
	shadow_add(&c->got, addr, e);
	if (c->free_them)
		drop(c->idx, e);
}

static int collect_walk(struct index_entry *e, uintptr_t addr, void *arg)
{
	struct collect *c = arg;
	shadow_add(&c->got, addr, e);
	return 0;
}

static void same_pairs(struct shadow *a, struct shadow *b, const char *what)
{
	ck_assert_msg(a->n == b->n, "%s: %zu entries, expected %zu", what, a->n, b->n);
	if (a->n) {
		qsort(a->p, a->n, sizeof(*a->p), cmp_pair);
		qsort(b->p, b->n, sizeof(*b->p), cmp_pair);
	}
	for (size_t i = 0; i < a->n; i++)
		if (a->p[i].addr != b->p[i].addr || a->p[i].e != b->p[i].e)
			ck_abort_msg("%s: pair %zu is %#lx/%p, expected %#lx/%p", what, i,
				     a->p[i].addr, (void *)a->p[i].e, b->p[i].addr,
				     (void *)b->p[i].e);
}

/* Walk [lo, hi) and compare with the shadow's pairs there; checks order. */
static void check_walk(struct index *idx, struct shadow *sh, uintptr_t lo, uintptr_t hi)
{
	struct collect c = { .idx = idx };
	ck_assert_int_eq(index_walk(idx, lo, hi, collect_walk, &c), 0);
	for (size_t i = 1; i < c.got.n; i++)
		if (c.got.p[i - 1].addr >= c.got.p[i].addr)
			ck_abort_msg("walk out of order at %zu", i);
	struct shadow want = { 0 };
	for (size_t i = 0; i < sh->n; i++)
		if (sh->p[i].addr >= lo && sh->p[i].addr < hi)
			shadow_add(&want, sh->p[i].addr, sh->p[i].e);
	same_pairs(&c.got, &want, "walk");
	free(c.got.p);
	free(want.p);
}

/*
 * Interesting places: the bottom of memory, a chunk boundary, both sides
 * of the zone 0/1 and 6/7 boundaries, the usual mmap area, the last page
 * below 2^47.  Addresses land within +-1024 pages of one of them.
 */
static const uintptr_t spots[] = {
	0x10000, 0x40000000, ZONE, 7 * ZONE, 0x7f1234500000, (1UL << 47) - 0x400000,
};
#define NSPOTS (sizeof(spots) / sizeof(spots[0]))

static uintptr_t pick_addr(uint64_t *s)
{
	uintptr_t base = spots[rnd(s) % NSPOTS];
	long off = (long)(rnd(s) % 2048) - 1024;
	uintptr_t a = base + off * (long)PAGE;
	if (a >= (1UL << 47))
		a = (1UL << 47) - PAGE * (1 + rnd(s) % 16);
	return a;
}

static size_t pick_len(uint64_t *s)
{
	unsigned int r = (unsigned int)(rnd(s) % 20);
	if (r < 6)
		return PAGE;
	if (r < 11)
		return PAGE * (1 + rnd(s) % 64);
	if (r < 16)
		return PAGE * (1 + rnd(s) % 1024); /* up to 2 chunks */
	if (r < 19)
		return PAGE * (1 + rnd(s) % 32768); /* up to 64 chunks */
	return ZONE / 2 + PAGE * (rnd(s) % 4096); /* many chunks, maybe two zones */
}

static uintptr_t clip_end(uintptr_t start, size_t len)
{
	uintptr_t end = start + len;
	return end > (1UL << 47) ? (1UL << 47) : end;
}

static void op_insert(struct index *idx, struct shadow *sh, uint64_t *s, unsigned long *id)
{
	uintptr_t a = pick_addr(s);
	struct index_entry *e = new_entry(idx, ++*id), *old;
	ck_assert_int_eq(index_insert(idx, a, e, &old), 0);
	ck_assert_uint_eq(e->pgoff, (a >> 12) & 0xffffffff);
	long i = shadow_find(sh, a);
	if (i >= 0) {
		ck_assert_ptr_eq(old, sh->p[i].e);
		sh->p[i].e = e;
		drop(idx, old);
	} else {
		ck_assert_ptr_null(old);
		shadow_add(sh, a, e);
	}
}

static void op_take_get(struct index *idx, struct shadow *sh, uint64_t *s)
{
	uintptr_t a = sh->n && rnd(s) % 4 ? sh->p[rnd(s) % sh->n].addr : pick_addr(s);
	long i = shadow_find(sh, a);
	struct index_entry *e = NULL;
	if (rnd(s) % 2) {
		int err = index_get(idx, a, &e);
		ck_assert_int_eq(err, i >= 0 ? 0 : -ENOENT);
		if (i < 0)
			return;
		ck_assert_ptr_eq(e, sh->p[i].e);
		ck_assert_uint_eq(atomic_load(&e->refcount), 2);
		ck_assert(!index_entry_put(e)); /* the tree still holds it */
		return;
	}
	int err = index_take(idx, a, &e);
	ck_assert_int_eq(err, i >= 0 ? 0 : -ENOENT);
	if (i < 0)
		return;
	ck_assert_ptr_eq(e, sh->p[i].e);
	shadow_del(sh, (size_t)i);
	ck_assert_int_eq(index_take(idx, a, &e), -ENOENT);
	ck_assert(index_entry_put(e));
	index_entry_free(idx, e);
}

static void op_erase(struct index *idx, struct shadow *sh, uint64_t *s)
{
	uintptr_t lo = pick_addr(s), hi = clip_end(lo, pick_len(s));
	struct shadow want = shadow_cut(sh, lo, hi);
	struct collect c = { .idx = idx, .free_them = 1 };
	ssize_t n = index_erase_range(idx, lo, hi, collect_release, &c);
	ck_assert_int_eq(n, (ssize_t)want.n);
	same_pairs(&c.got, &want, "erase_range");
	free(c.got.p);
	free(want.p);
}

static void op_move(struct index *idx, struct shadow *sh, uint64_t *s)
{
	uintptr_t old = pick_addr(s), new = pick_addr(s);
	size_t len = pick_len(s) % (64 * CHUNK);
	len = len ? len : PAGE;
	if (old + len > (1UL << 47) || new + len > (1UL << 47))
		return;
	struct collect c = { .idx = idx, .free_them = 1 };
	if (old < new + len && new < old + len) { /* mremap never overlaps */
		ck_assert_int_eq(index_move_range(idx, old, new, len, collect_release, &c),
				 -EINVAL);
		ck_assert_uint_eq(c.got.n, 0);
		return;
	}
	struct shadow src = shadow_cut(sh, old, old + len);
	struct shadow dst = shadow_cut(sh, new, new + len);
	ssize_t n = index_move_range(idx, old, new, len, collect_release, &c);
	ck_assert_int_eq(n, (ssize_t)src.n);
	same_pairs(&c.got, &dst, "move_range replaced");
	for (size_t i = 0; i < src.n; i++)
		shadow_add(sh, new + (src.p[i].addr - old), src.p[i].e);
	free(src.p);
	free(dst.p);
	free(c.got.p);
}

START_TEST(shadow_ops)
{
	struct index *idx;
	ck_assert_int_eq(index_create(shard_counts[_i], &idx), 0);
	struct shadow sh = { 0 };
	uint64_t s = 1234 + _i;
	unsigned long id = 0;
	for (int i = 0; i < 3000; i++)
		op_insert(idx, &sh, &s, &id);
	ck_assert_uint_eq(index_count(idx), sh.n);
	for (int op = 0; op < 6000; op++) {
		unsigned int r = (unsigned int)(rnd(&s) % 100);
		if (r < 60)
			op_insert(idx, &sh, &s, &id);
		else if (r < 85)
			op_take_get(idx, &sh, &s);
		else if (r < 94)
			op_erase(idx, &sh, &s);
		else
			op_move(idx, &sh, &s);
		ck_assert_uint_eq(index_count(idx), sh.n);
		if (op % 500 == 0) {
			check_walk(idx, &sh, 0, 1UL << 47);
			uintptr_t lo = pick_addr(&s);
			check_walk(idx, &sh, lo, clip_end(lo, pick_len(&s)));
		}
	}
	check_walk(idx, &sh, 0, 1UL << 47);
	ck_assert_uint_gt(sh.n, 100); /* the mix leaves a populated index */
	struct collect c = { .idx = idx, .free_them = 1 };
	ck_assert_int_eq(index_erase_range(idx, 0, 1UL << 47, collect_release, &c),
			 (ssize_t)sh.n);
	same_pairs(&c.got, &sh, "final erase");
	ck_assert_uint_eq(index_count(idx), 0);
	/* one spare slab at most per cache: entries, chunks, leaves */
	ck_assert_uint_le(index_entry_bytes(idx), 3 * PAGE);
	free(c.got.p);
	free(sh.p);
	index_destroy(idx);
}
END_TEST

/* Ranges with holes, by hand: every other page across a chunk and a zone edge. */
START_TEST(ranges_with_holes)
{
	struct index *idx;
	ck_assert_int_eq(index_create(shard_counts[_i], &idx), 0);
	uintptr_t base = ZONE - 3 * CHUNK; /* three chunks below the zone edge */
	enum { NPAGES = 6 * 512 };      /* six chunks, three in each zone */
	for (unsigned long p = 0; p < NPAGES; p += 2) {
		struct index_entry *old;
		if (index_insert(idx, base + p * PAGE, new_entry(idx, p), &old) || old)
			ck_abort_msg("insert of page %lu", p);
	}
	ck_assert_uint_eq(index_count(idx), NPAGES / 2);

	/* [chunk 2 page 101, chunk 4 page 7): odd start, crosses the zone edge */
	uintptr_t lo = base + (2 * 512 + 101) * PAGE, hi = base + (4 * 512 + 7) * PAGE;
	struct collect c = { .idx = idx, .free_them = 1 };
	ssize_t n = index_erase_range(idx, lo, hi, collect_release, &c);
	size_t expect = 0;
	for (unsigned long p = 2 * 512 + 101; p < 4 * 512 + 7; p++)
		expect += p % 2 == 0;
	ck_assert_int_eq(n, (ssize_t)expect);
	for (size_t i = 0; i < c.got.n; i++)
		if (c.got.p[i].addr != base + c.got.p[i].handle * PAGE)
			ck_abort_msg("erased entry %zu handed over with a wrong address", i);
	ck_assert_uint_eq(index_count(idx), NPAGES / 2 - expect);
	free(c.got.p);

	/* Move the first chunk onto the second half of the last and beyond. */
	memset(&c, 0, sizeof(c));
	c.idx = idx;
	c.free_them = 1;
	n = index_move_range(idx, base, base + 5 * CHUNK + 256 * PAGE, 512 * PAGE,
			     collect_release, &c);
	ck_assert_int_eq(n, 256);
	ck_assert_uint_eq(c.got.n, 128); /* the even pages of the last chunk's second half */
	for (size_t i = 0; i < c.got.n; i++)
		if (c.got.p[i].addr < base + 5 * CHUNK + 256 * PAGE ||
		    c.got.p[i].addr >= base + 6 * CHUNK ||
		    c.got.p[i].addr != base + c.got.p[i].handle * PAGE)
			ck_abort_msg("replaced entry %zu: %#lx", i, c.got.p[i].addr);
	free(c.got.p);
	struct index_entry *e;
	ck_assert_int_eq(index_get(idx, base + 5 * CHUNK + 256 * PAGE, &e), 0);
	ck_assert_uint_eq(e->handle, 0); /* page 0 of the first chunk */
	ck_assert(!index_entry_put(e));
	ck_assert_int_eq(index_get(idx, base, &e), -ENOENT);
	ck_assert_uint_eq(index_count(idx), NPAGES / 2 - expect - 128);

	memset(&c, 0, sizeof(c));
	c.idx = idx;
	c.free_them = 1;
	index_erase_range(idx, 0, 1UL << 47, collect_release, &c);
	ck_assert_uint_eq(c.got.n, NPAGES / 2 - expect - 128);
	ck_assert_uint_eq(index_count(idx), 0);
	free(c.got.p);
	index_destroy(idx);
}
END_TEST

START_TEST(refcounts)
{
	ck_assert_uint_eq(sizeof(struct index_entry), 16);
	struct index *idx;
	ck_assert_int_eq(index_create(16, &idx), 0);
	uintptr_t a = 0x7f0000001000;
	struct index_entry *e = new_entry(idx, 1), *old, *g;
	ck_assert_int_eq(index_insert(idx, a, e, &old), 0);
	for (int i = 0; i < 254; i++) {
		ck_assert_int_eq(index_get(idx, a, &g), 0);
		ck_assert_ptr_eq(g, e);
	}
	ck_assert_uint_eq(atomic_load(&e->refcount), 255);
	ck_assert_int_eq(index_get(idx, a, &g), -EOVERFLOW);
	ck_assert(!index_entry_get(e));
	for (int i = 0; i < 254; i++)
		ck_assert(!index_entry_put(e));
	ck_assert(index_entry_get(e)); /* a second sharer */
	ck_assert_int_eq(index_take(idx, a, &g), 0);
	ck_assert(!index_entry_put(g));
	ck_assert(index_entry_put(g)); /* the last holder frees */
	index_entry_free(idx, g);

	/* take_if takes only the entry the reader saw, not a replacement */
	struct index_entry *e1 = new_entry(idx, 1), *e2 = new_entry(idx, 2);
	ck_assert_int_eq(index_insert(idx, a, e1, &old), 0);
	ck_assert_int_eq(index_get(idx, a, &g), 0);
	ck_assert_ptr_eq(g, e1);
	ck_assert_int_eq(index_insert(idx, a, e2, &old), 0);
	ck_assert_ptr_eq(old, e1);
	ck_assert(!index_entry_put(old)); /* the reader still holds e1 */
	ck_assert_int_eq(index_take_if(idx, a, e1), -ENOENT);
	ck_assert(index_entry_put(g));
	index_entry_free(idx, g);
	ck_assert_uint_eq(index_count(idx), 1);
	ck_assert_int_eq(index_get(idx, a, &g), 0);
	ck_assert_int_eq(index_take_if(idx, a, e2), 0);
	ck_assert_int_eq(index_take_if(idx, a, e2), -ENOENT);
	ck_assert_uint_eq(index_count(idx), 0);
	ck_assert(!index_entry_put(g));
	ck_assert(index_entry_put(g));
	index_entry_free(idx, g);
	index_destroy(idx);
}
END_TEST

static int stop_at_third(struct index_entry *e, uintptr_t addr, void *arg)
{
	(void)e, (void)addr;
	return ++*(int *)arg == 3 ? 42 : 0;
}

START_TEST(bad_arguments)
{
	struct index *idx;
	ck_assert_int_eq(index_create(0, &idx), -EINVAL);
	ck_assert_int_eq(index_create(12, &idx), -EINVAL);
	ck_assert_int_eq(index_create(512, &idx), -EINVAL);
	ck_assert_int_eq(index_create(8, &idx), 0);
	struct index_entry *e = new_entry(idx, 1), *old;
	uintptr_t top = 1UL << 47;
	ck_assert_int_eq(index_insert(idx, top, e, &old), -EINVAL);
	ck_assert_int_eq(index_insert(idx, 0x1001, e, &old), -EINVAL);
	ck_assert_int_eq(index_take_if(idx, top + PAGE, e), -EINVAL);
	ck_assert_int_eq(index_take(idx, 0x1800, &old), -EINVAL);
	ck_assert_int_eq(index_get(idx, ~0UL & ~(PAGE - 1), &old), -EINVAL);
	ck_assert_int_eq(index_erase_range(idx, 0x3000, 0x2000, NULL, NULL), -EINVAL);
	ck_assert_int_eq(index_erase_range(idx, 0, top + PAGE, NULL, NULL), -EINVAL);
	ck_assert_int_eq(index_erase_range(idx, 0x1000, 0x1800, NULL, NULL), -EINVAL);
	ck_assert_int_eq(index_move_range(idx, 0x1000, top - PAGE, 2 * PAGE, NULL, NULL), -EINVAL);
	ck_assert_int_eq(index_move_range(idx, 0x1000, 0x9000, 100, NULL, NULL), -EINVAL);
	ck_assert_int_eq(index_move_range(idx, 0x1000, 0x3000, 4 * PAGE, NULL, NULL), -EINVAL);
	ck_assert_int_eq(index_move_range(idx, 0x3000, 0x1000, 4 * PAGE, NULL, NULL), -EINVAL);
	ck_assert_int_eq(index_move_range(idx, 0x1000, 0x9000, ~0UL & ~(PAGE - 1), NULL, NULL),
			 -EINVAL);
	ck_assert_int_eq(index_walk(idx, 0, top + PAGE, stop_at_third, NULL), -EINVAL);
	ck_assert_uint_eq(index_count(idx), 0);

	/* the last valid page works; a walk stops on the callback's request */
	for (int i = 1; i <= 5; i++) {
		ck_assert_int_eq(index_insert(idx, top - i * PAGE, new_entry(idx, i), &old), 0);
		ck_assert_ptr_null(old);
	}
	int seen = 0;
	ck_assert_int_eq(index_walk(idx, 0, top, stop_at_third, &seen), 42);
	ck_assert_int_eq(seen, 3);
	struct collect c = { .idx = idx, .free_them = 1 };
	ck_assert_int_eq(index_erase_range(idx, top - 5 * PAGE, top, collect_release, &c), 5);
	free(c.got.p);
	drop(idx, e);
	index_destroy(idx);
}
END_TEST

/* ---- threads ------------------------------------------------------------- */

/*
 * 64 chunks straddling the zone 0/1 edge; worker t owns the chunks j with
 * j % 4 == t (pages 0..63 of each), so all workers share every tree while
 * each keeps an exact shadow of its own pages.  A handle is owner << 32 |
 * serial, never changed once inserted (moves re-key entries, so a handle
 * cannot name the address).  A reader gets random pages and walks the
 * whole area meanwhile, checking each entry's owner against its chunk.
 */
#define T_BASE (ZONE - 32 * CHUNK)
#define T_CHUNKS 64
#define T_PAGES 64
#define T_OPS 40000

static uintptr_t t_addr(unsigned int chunk, unsigned int page)
{
	return T_BASE + chunk * CHUNK + page * PAGE;
}

struct worker {
	struct index *idx;
	unsigned int id;
	struct index_entry *own[T_CHUNKS / 4][T_PAGES];
	long errors;
	pthread_t thread;
};

static void t_release(struct index_entry *e, uintptr_t addr, void *arg)
{
	struct worker *w = arg;
	unsigned int chunk = (unsigned int)((addr - T_BASE) / CHUNK);
	unsigned int page = (unsigned int)((addr - T_BASE) % CHUNK / PAGE);
	if (chunk % 4 != w->id || w->own[chunk / 4][page] != e)
		w->errors++;
	else
		w->own[chunk / 4][page] = NULL;
	drop(w->idx, e);
}

static void t_move(struct worker *w, uint64_t *s)
{
	unsigned int c1 = (unsigned int)(rnd(s) % 16), c2 = (unsigned int)(rnd(s) % 16);
	unsigned int p = (unsigned int)(rnd(s) % T_PAGES);
	unsigned int len = 1 + (unsigned int)(rnd(s) % (T_PAGES - p));
	if (c1 == c2)
		return;
	/* the destination's entries come back through t_release */
	ssize_t n = index_move_range(w->idx, t_addr(c1 * 4 + w->id, p), t_addr(c2 * 4 + w->id, p),
				     len * PAGE, t_release, w);
	ssize_t expect = 0;
	for (unsigned int i = p; i < p + len; i++) {
		struct index_entry *e = w->own[c1][i];
		expect += e != NULL;
		w->own[c1][i] = NULL;
		if (w->own[c2][i])
			w->errors++; /* t_release should have cleared it */
		w->own[c2][i] = e;
	}
	if (n != expect)
		w->errors++;
}

static void t_step(struct worker *w, uint64_t *s, unsigned long tag)
{
	unsigned int c = (unsigned int)(rnd(s) % 16), p = (unsigned int)(rnd(s) % T_PAGES);
	uintptr_t a = t_addr(c * 4 + w->id, p);
	struct index_entry *e, *old;
	unsigned int r = (unsigned int)(rnd(s) % 100);
	if (r < 50) {
		if (index_entry_alloc(w->idx, &e)) {
			w->errors++;
			return;
		}
		e->handle = ((unsigned long)w->id << 32) | tag;
		index_insert(w->idx, a, e, &old);
		if (old != w->own[c][p])
			w->errors++;
		if (old)
			drop(w->idx, old);
		w->own[c][p] = e;
	} else if (r < 75) {
		int err = index_take(w->idx, a, &e);
		if (err != (w->own[c][p] ? 0 : -ENOENT) || (!err && e != w->own[c][p]))
			w->errors++;
		if (!err) {
			w->own[c][p] = NULL;
			drop(w->idx, e);
		}
	} else if (r < 97) {
		unsigned int len = 1 + (unsigned int)(rnd(s) % (T_PAGES - p));
		index_erase_range(w->idx, a, a + len * PAGE, t_release, w);
		for (unsigned int i = p; i < p + len; i++)
			if (w->own[c][i])
				w->errors++;
	} else {
		/* a move holds two trees at once, against other movers and everyone */
		t_move(w, s);
	}
}

static void *t_worker(void *arg)
{
	struct worker *w = arg;
	uint64_t s = 99 + w->id;
	for (unsigned long op = 0; op < T_OPS; op++)
		t_step(w, &s, op);
	return NULL;
}

struct reader {
	struct index *idx;
	_Atomic int stop;
	long errors, hits, walks;
};

static unsigned long owner_of(uintptr_t addr)
{
	return (addr - T_BASE) / CHUNK % 4;
}

/* Under the tree lock: the key is the address, in order, owned right. */
static int r_walk(struct index_entry *e, uintptr_t addr, void *arg)
{
	uintptr_t *last = arg;
	if (e->pgoff != ((addr >> 12) & 0xffffffff) || addr <= *last ||
	    e->handle >> 32 != owner_of(addr))
		return 1;
	*last = addr;
	return 0;
}

static void *t_reader(void *arg)
{
	struct reader *r = arg;
	uint64_t s = 5;
	while (!atomic_load(&r->stop)) {
		for (int i = 0; i < 200; i++) {
			uintptr_t a = t_addr((unsigned int)(rnd(&s) % T_CHUNKS),
					     (unsigned int)(rnd(&s) % T_PAGES));
			struct index_entry *e;
			if (index_get(r->idx, a, &e))
				continue;
			r->hits++;
			/*
			 * Held by reference: not freed whatever the owner does
			 * meanwhile, and its handle does not change (its key may:
			 * only the index reads that).
			 */
			if (e->handle >> 32 != owner_of(a))
				r->errors++;
			drop(r->idx, e);
		}
		uintptr_t last = 0;
		if (index_walk(r->idx, T_BASE, T_BASE + T_CHUNKS * CHUNK, r_walk, &last))
			r->errors++;
		r->walks++;
	}
	return NULL;
}

START_TEST(four_threads)
{
	struct index *idx;
	ck_assert_int_eq(index_create(shard_counts[_i], &idx), 0);
	static struct worker w[4];
	memset(w, 0, sizeof(w));
	struct reader r = { .idx = idx };
	pthread_t rt;
	pthread_create(&rt, NULL, t_reader, &r);
	for (unsigned int i = 0; i < 4; i++) {
		w[i].idx = idx;
		w[i].id = i;
		pthread_create(&w[i].thread, NULL, t_worker, &w[i]);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(w[i].thread, NULL);
	atomic_store(&r.stop, 1);
	pthread_join(rt, NULL);
	ck_assert_int_eq(r.errors, 0);
	ck_assert_int_gt(r.walks, 0);
	size_t live = 0, wrong = 0;
	for (unsigned int i = 0; i < 4; i++) {
		ck_assert_int_eq(w[i].errors, 0);
		for (unsigned int c = 0; c < T_CHUNKS / 4; c++)
			for (unsigned int p = 0; p < T_PAGES; p++) {
				struct index_entry *e = w[i].own[c][p], *g = NULL;
				if (!e)
					continue;
				live++;
				if (index_take(idx, t_addr(c * 4 + i, p), &g) || g != e ||
				    g->handle >> 32 != i || !index_entry_put(g))
					wrong++;
				else
					index_entry_free(idx, g);
			}
	}
	ck_assert_uint_eq(wrong, 0);
	ck_assert_uint_gt(live, 0);
	ck_assert_uint_eq(index_count(idx), 0);
	ck_assert_uint_le(index_entry_bytes(idx), 3 * PAGE);
	index_destroy(idx);
}
END_TEST

/*
 * Memory follows the layout: a dense range costs its entries plus 8 bytes
 * of slot a page; a lone page its chunk and leaf, which go when it does.
 * With pagesrc exhausted, an insert fails cleanly and a move still finds
 * its slots, in the reserve the index keeps; with the reserve gone as well
 * it drops what it could not move rather than leave it at the old address.
 */
static size_t pages_in_use(void)
{
	struct pagesrc_stats st;
	pagesrc_get_stats(&st);
	return st.used_pages;
}

START_TEST(memory_and_exhaustion)
{
	struct pagesrc_stats st;
	pagesrc_get_stats(&st);
	size_t reserve0 = st.reserve_pages;
	struct index *idx;
	ck_assert_int_eq(index_create(16, &idx), 0);
	uintptr_t base = 0x7f0000000000;
	enum { DENSE = 8192, LONE = 64 };
	struct index_entry *e, *old;
	for (unsigned long i = 0; i < DENSE; i++) {
		e = new_entry(idx, i);
		ck_assert_int_eq(index_insert(idx, base + i * PAGE, e, &old), 0);
	}
	/* 16 + 8 bytes a page, + slab headers and page tails, + a chunk per 2 MiB */
	ck_assert_uint_le(index_entry_bytes(idx), DENSE * 27 + 3 * PAGE);
	struct collect c = { .idx = idx, .free_them = 1 };
	ck_assert_int_eq(index_erase_range(idx, base, base + DENSE * PAGE, collect_release, &c),
			 DENSE);
	ck_assert_uint_le(index_entry_bytes(idx), 3 * PAGE);
	for (unsigned long i = 0; i < LONE; i++) {
		e = new_entry(idx, i);
		ck_assert_int_eq(index_insert(idx, base + i * CHUNK, e, &old), 0);
	}
	ck_assert_uint_ge(index_entry_bytes(idx), LONE * (512 + 128));
	ck_assert_uint_le(index_entry_bytes(idx), LONE * (512 + 128 + 16) * 8 / 7 + 3 * PAGE);
	for (unsigned long i = 0; i < LONE; i++) {
		ck_assert_int_eq(index_take(idx, base + i * CHUNK, &e), 0);
		drop(idx, e);
	}
	ck_assert_uint_le(index_entry_bytes(idx), 3 * PAGE);

	/*
	 * Exhaustion: pairs of pages at both ends of the first leaf of every
	 * other chunk, until a leaf or chunk cannot be had.  Shifted by a page,
	 * each source leaf lands in two at the destination, so a move needs a
	 * new leaf for each pair, even with the leaves it drains reused.
	 */
	enum { SPARE = 4096 };
	static struct index_entry *spare[SPARE];
	for (int i = 0; i < SPARE; i++)
		spare[i] = new_entry(idx, (unsigned long)i);
#define PAIR_ADDR(b, k) ((b) + (uintptr_t)((k) / 2) * 2 * CHUNK + ((k) % 2) * 63 * PAGE)
	pagesrc_set_limit(pages_in_use() + 256);
	int n = 0, err = 0;
	while (n < SPARE && !(err = index_insert(idx, PAIR_ADDR(base, n), spare[n], &old)))
		n++;
	ck_assert_int_eq(err, -ENOMEM);
	ck_assert_int_gt(n, 256);
	ck_assert_uint_eq(index_count(idx), (size_t)n);
	struct index_entry *g;
	ck_assert_int_eq(index_get(idx, PAIR_ADDR(base, n), &g), -ENOENT);
	ck_assert_uint_eq(atomic_load(&spare[n]->refcount), 1); /* still the caller's */
	pagesrc_get_stats(&st);
	ck_assert_uint_ge(st.reserve_pages, reserve0 + 2 * 4); /* two caches, each 2 x (slabs + 1) */

	/* ordinary allocations fail, yet a move finds its slots in the reserve */
	size_t span = (size_t)((n + 1) / 2) * 2 * CHUNK;
	uintptr_t dst = base - 0x10000000000UL + PAGE;
	c.got.n = 0;
	ck_assert_int_eq(index_move_range(idx, base, dst, span, collect_release, &c), n);
	ck_assert_uint_eq(c.got.n, 0);
	struct collect w = { .idx = idx };
	ck_assert_int_eq(index_walk(idx, base, base + span, collect_walk, &w), 0);
	ck_assert_uint_eq(w.got.n, 0);
	ck_assert_int_eq(index_walk(idx, dst, dst + span, collect_walk, &w), 0);
	ck_assert_uint_eq(w.got.n, (size_t)n);
	for (size_t i = 0; i < w.got.n; i++)
		ck_assert_uint_eq(w.got.p[i].addr, PAIR_ADDR(dst, w.got.p[i].e->handle));

	/* back where they were: two leaves into one, nothing needed */
	c.got.n = 0;
	ck_assert_int_eq(index_move_range(idx, dst, base, span, collect_release, &c), n);
	ck_assert_uint_eq(c.got.n, 0);

	/* the first move again with the reserve gone too: what moved is at the
	 * destination, the rest still at the old addresses, nothing released */
	pagesrc_set_limit(pages_in_use());
	ssize_t moved = index_move_range(idx, base, dst, span, collect_release, &c);
	pagesrc_set_limit(0);
	ck_assert_int_eq(moved, -ENOMEM);
	ck_assert_uint_eq(c.got.n, 0);
	w.got.n = 0;
	ck_assert_int_eq(index_walk(idx, dst, dst + span, collect_walk, &w), 0);
	size_t at_dst = w.got.n;
	ck_assert_uint_gt(at_dst, 0);
	for (size_t i = 0; i < w.got.n; i++)
		ck_assert_uint_eq(w.got.p[i].addr, PAIR_ADDR(dst, w.got.p[i].e->handle));
	w.got.n = 0;
	ck_assert_int_eq(index_walk(idx, base, base + span, collect_walk, &w), 0);
	size_t at_old = w.got.n;
	ck_assert_uint_gt(at_old, 0);
	ck_assert_uint_eq(at_dst + at_old, (size_t)n);
	for (size_t i = 0; i < w.got.n; i++)
		ck_assert_uint_eq(w.got.p[i].addr, PAIR_ADDR(base, w.got.p[i].e->handle));
#undef PAIR_ADDR
	ck_assert_int_eq(index_erase_range(idx, dst, dst + span, collect_release, &c),
			 (ssize_t)at_dst);
	ck_assert_int_eq(index_erase_range(idx, base, base + span, collect_release, &c),
			 (ssize_t)at_old);
	for (int i = n; i < SPARE; i++)
		drop(idx, spare[i]);
	ck_assert_uint_eq(index_count(idx), 0);
	free(c.got.p);
	free(w.got.p);
	index_destroy(idx);
	pagesrc_get_stats(&st);
	ck_assert_uint_eq(st.reserve_pages, reserve0); /* given back whole */
}
END_TEST

Suite *index_suite(void)
{
	Suite *s = suite_create("index");
	TCase *tc = tcase_create("index");
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, shadow_ops, 0, NSHARDS);
	tcase_add_loop_test(tc, ranges_with_holes, 0, NSHARDS);
	tcase_add_test(tc, refcounts);
	tcase_add_test(tc, bad_arguments);
	tcase_add_test(tc, memory_and_exhaustion);
	tcase_add_loop_test(tc, four_threads, 0, NSHARDS);
	suite_add_tcase(s, tc);
	return s;
}

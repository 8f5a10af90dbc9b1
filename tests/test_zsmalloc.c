/*
 * test_zsmalloc — what is particular to the zsmalloc driver (the generic
 * contract is test_zpool's): class geometry and merging, the class table
 * adding up, objects straddling pages, compaction (moves, keeps handles,
 * respects mapped objects, frees what it can), readers racing a compactor,
 * objects a forked child does not inherit, and density on the real compressed-size distributions
 * ($ZSWAPU_SIZES_DIR or ../shared/data/sizes, relative to the repo root).
 * CK_VERBOSITY=verbose prints the density figures.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pools/pagesrc.h"
#include "pools/zpool.h"
#include "tests/pooltest.h"
#include "pools/zsmalloc.h"

#define PAGE 4096
#define SIZES_DIR "../shared/data/sizes"
#define HANDLES_PER_PAGE ((PAGE - 32) / 8)
#define DESCS_PER_PAGE ((PAGE - 32) / 32)

/*
 * Check's ck_assert_* report every passing check to the runner (a write(2)
 * each); loops over many objects use CHECK, which reports failures only.
 */
#define CHECK(cond, ...)                          \
	do {                                      \
		if (!(cond))                      \
			ck_abort_msg(__VA_ARGS__); \
	} while (0)

/* An object's bytes are a function of its tag: word i is mix64(tag + i). */
static void fill(uint8_t *p, size_t n, uint64_t tag)
{
	for (size_t i = 0; i < n; i += 8) {
		uint64_t w = mix64(tag + i / 8);
		memcpy(p + i, &w, n - i < 8 ? n - i : 8);
	}
}

static int same(const uint8_t *p, size_t n, uint64_t tag)
{
	for (size_t i = 0; i < n; i += 8) {
		uint64_t w = mix64(tag + i / 8);
		if (memcmp(p + i, &w, n - i < 8 ? n - i : 8))
			return 0;
	}
	return 1;
}

static bool verbose(void)
{
	const char *v = getenv("CK_VERBOSITY");
	return v && !strcmp(v, "verbose");
}

static struct zpool *new_pool(void)
{
	struct zpool *zp;
	ck_assert_int_eq(zpool_create_pool("zsmalloc", NULL, &zp), 0);
	return zp;
}

static unsigned long put(struct zpool *zp, size_t size, uint64_t tag)
{
	unsigned long h;
	int err = zpool_malloc(zp, size, &h);
	CHECK(err == 0, "malloc(%zu): %d", size, err);
	uint8_t *p = zpool_map_handle(zp, h, ZPOOL_MM_WO);
	fill(p, size, tag);
	zpool_unmap_handle(zp, h);
	return h;
}

static int intact(struct zpool *zp, unsigned long h, size_t size, uint64_t tag)
{
	uint8_t *p = zpool_map_handle(zp, h, ZPOOL_MM_RO);
	int ok = same(p, size, tag);
	zpool_unmap_handle(zp, h);
	return ok;
}

static size_t class_rows(struct zpool *zp, struct zpool_class_stat *rows, size_t max)
{
	size_t n = zpool_class_stats(zp, rows, max);
	ck_assert_uint_le(n, max);
	return n;
}

/* Every size maps to the least-waste class that holds it. */
START_TEST(class_geometry)
{
	struct zs_class_info ci, prev = { 0 };
	unsigned distinct = 0;
	ck_assert_int_eq(zs_size_class(0, &ci), -EINVAL);
	ck_assert_int_eq(zs_size_class(ZS_MAX_ALLOC_SIZE + 1, &ci), -ENOSPC);
	for (size_t s = 1; s <= ZS_MAX_ALLOC_SIZE; s++) {
		CHECK(zs_size_class(s, &ci) == 0, "size %zu", s);
		CHECK(ci.size == ZS_MIN_CLASS_SIZE + ci.index * ZS_SIZE_CLASS_DELTA, "size %zu", s);
		CHECK(ci.pages_per_zspage <= ZS_MAX_PAGES_PER_ZSPAGE, "size %zu", s);
		CHECK(ci.objs_per_zspage == ci.pages_per_zspage * PAGE / ci.size, "size %zu", s);
		CHECK(ci.size >= (ci.huge ? s : s + ZS_HANDLE_SIZE), "size %zu: class too small", s);
		CHECK(ci.huge == (ci.objs_per_zspage == 1), "size %zu", s);
		CHECK(!ci.huge || ci.size == ZS_MAX_ALLOC_SIZE, "size %zu", s);
		for (unsigned p = 1; p <= ZS_MAX_PAGES_PER_ZSPAGE; p++) /* least waste */
			CHECK((uint64_t)(ci.pages_per_zspage * PAGE % ci.size) * p <=
			      (uint64_t)(p * PAGE % ci.size) * ci.pages_per_zspage,
			      "class %u: %u pages waste less", ci.size, p);
		CHECK(ci.index >= prev.index, "size %zu", s);
		distinct += ci.index != prev.index || s == 1;
		prev = ci;
	}
	/* merging happened, and not everything merged */
	ck_assert_uint_lt(distinct, ZS_NR_CLASSES / 2);
	ck_assert_uint_gt(distinct, 50);
	ck_assert(prev.huge);
}
END_TEST

/* Two sizes 16-byte steps apart whose classes merged share one class. */
START_TEST(merged_classes)
{
	struct zs_class_info a, b;
	size_t s1 = 0, s2 = 0;
	for (size_t s = 100; s + ZS_SIZE_CLASS_DELTA <= 2048 && !s1; s++) {
		zs_size_class(s, &a);
		zs_size_class(s + ZS_SIZE_CLASS_DELTA, &b);
		if (a.index == b.index && a.size - s >= ZS_SIZE_CLASS_DELTA + ZS_HANDLE_SIZE) {
			s1 = s;
			s2 = s + ZS_SIZE_CLASS_DELTA;
		}
	}
	ck_assert_msg(s1, "no merged class below 2 KiB");
	zs_size_class(s1, &a);

	struct zpool *zp = new_pool();
	unsigned long h1 = put(zp, s1, 1), h2 = put(zp, s2, 2);
	struct zpool_class_stat rows[ZS_NR_CLASSES];
	size_t n = class_rows(zp, rows, ZS_NR_CLASSES);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(rows[0].class_idx, a.index);
	ck_assert_uint_eq(rows[0].size, a.size);
	ck_assert_uint_eq(rows[0].obj_used, 2);
	ck_assert_uint_eq(rows[0].pages_per_zspage, a.pages_per_zspage);

	/* a size in another class gets its own row */
	unsigned long h3 = put(zp, a.size + 64, 3);
	ck_assert_uint_eq(class_rows(zp, rows, ZS_NR_CLASSES), 2);
	ck_assert(intact(zp, h1, s1, 1) && intact(zp, h2, s2, 2) && intact(zp, h3, a.size + 64, 3));
	zpool_free(zp, h1);
	zpool_free(zp, h2);
	zpool_free(zp, h3);
	ck_assert_uint_eq(class_rows(zp, rows, ZS_NR_CLASSES), 0);
	zpool_destroy_pool(zp);
}
END_TEST

/* The class table and the driver counters add up to what was allocated. */
START_TEST(class_table_sums)
{
	enum { N = 5000 };
	static unsigned long h[N];
	static size_t sz[N];
	struct zpool *zp = new_pool();
	uint64_t seed = 3, live = 0, bytes = 0;
	for (int i = 0; i < N; i++) {
		uint64_t r = mix64(seed++);
		sz[i] = r % 5 == 0 ? 3500 + r % 597 : 1 + r % 3000;
		h[i] = put(zp, sz[i], i);
		live++;
		bytes += sz[i];
	}
	for (int i = 0; i < N; i++)
		if (mix64(seed++) % 5 < 2) {
			zpool_free(zp, h[i]);
			h[i] = 0;
			live--;
			bytes -= sz[i];
		}

	struct zpool_class_stat rows[ZS_NR_CLASSES];
	size_t n = class_rows(zp, rows, ZS_NR_CLASSES);
	uint64_t used = 0, pages = 0;
	for (size_t i = 0; i < n; i++) {
		const struct zpool_class_stat *r = &rows[i];
		ck_assert_uint_gt(r->pages_used, 0); /* classes in use only */
		ck_assert_uint_eq(r->pages_used % r->pages_per_zspage, 0);
		unsigned long zspages = r->pages_used / r->pages_per_zspage;
		ck_assert_uint_eq(r->obj_allocated, zspages * (r->pages_per_zspage * PAGE / r->size));
		ck_assert_uint_le(r->obj_used, r->obj_allocated);
		ck_assert_uint_gt(r->obj_used, 0);
		ck_assert_uint_le(r->almost_full + r->almost_empty, zspages);
		used += r->obj_used;
		pages += r->pages_used;
	}
	ck_assert_uint_eq(used, live);
	ck_assert_uint_eq(stat_of(zp, "objects"), live);
	ck_assert_uint_eq(stat_of(zp, "object_bytes"), bytes);
	ck_assert_uint_eq(stat_of(zp, "zspage_pages"), pages);
	uint64_t meta = stat_of(zp, "handle_pages") + stat_of(zp, "desc_pages");
	ck_assert_uint_ge(stat_of(zp, "handle_pages"), (live + HANDLES_PER_PAGE - 1) / HANDLES_PER_PAGE);
	ck_assert_uint_eq(pages + meta, zpool_get_total_pages(zp));
	ck_assert_uint_eq(stat_of(zp, "pages"), zpool_get_total_pages(zp));

	for (int i = 0; i < N; i++)
		if (h[i]) {
			CHECK(intact(zp, h[i], sz[i], i), "object %d corrupted", i);
			zpool_free(zp, h[i]);
		}
	ck_assert_uint_eq(class_rows(zp, rows, ZS_NR_CLASSES), 0);
	ck_assert_uint_eq(stat_of(zp, "object_bytes"), 0);
	ck_assert_uint_eq(zpool_get_total_pages(zp), 0);
	zpool_destroy_pool(zp);
}
END_TEST

/* Objects crossing a page boundary come back whole, through a direct pointer. */
START_TEST(straddling_object)
{
	/* the first size from 1000 up whose zspages are longer than a page */
	size_t size = 1000;
	struct zs_class_info ci;
	for (; size < 2048; size += ZS_SIZE_CLASS_DELTA) {
		ck_assert_int_eq(zs_size_class(size, &ci), 0);
		if (ci.pages_per_zspage > 1)
			break;
	}
	ck_assert_uint_gt(ci.pages_per_zspage, 1);
	ck_assert_uint_ne(PAGE % ci.size, 0);

	struct zpool *zp = new_pool();
	unsigned k = ci.objs_per_zspage;
	unsigned long *h = calloc(k, sizeof(*h));
	uintptr_t *at = calloc(k, sizeof(*at));
	unsigned straddlers = 0;
	for (unsigned i = 0; i < k; i++) {
		h[i] = put(zp, size, 100 + i);
		at[i] = (uintptr_t)zpool_map_handle(zp, h[i], ZPOOL_MM_RO);
		zpool_unmap_handle(zp, h[i]);
		straddlers += at[i] / PAGE != (at[i] + size - 1) / PAGE;
	}
	ck_assert_uint_eq(zpool_get_total_pages(zp), ci.pages_per_zspage + 2);
	ck_assert_uint_gt(straddlers, 0);
	/* one zspage, one contiguous run: the objects sit class-size apart */
	for (unsigned i = 1; i < k; i++)
		CHECK(at[i] - at[i - 1] == ci.size, "object %u not contiguous", i);
	for (unsigned i = 0; i < k; i++) {
		CHECK(intact(zp, h[i], size, 100 + i), "object %u corrupted", i);
		zpool_free(zp, h[i]);
	}
	ck_assert_uint_eq(zpool_get_total_pages(zp), 0);
	free(h);
	free(at);
	zpool_destroy_pool(zp);
}
END_TEST

/*
 * Compressed objects live in pagesrc's data zone, which a forked child
 * does not inherit (MADV_WIPEONFORK): the parent's engine serves the
 * child, which kept a copy of the whole pool as it was at the fork (a
 * python child held 8.4 MiB of it after its parent's 10 s of rewrites).
 * The pool's own tables stay inherited: a forked child's inert engine
 * reads them.
 */
START_TEST(objects_not_inherited)
{
	struct zpool *zp = new_pool();
	enum { SIZE = 700 };
	unsigned long h = put(zp, SIZE, 7);
	const unsigned char *obj = zpool_map_handle(zp, h, ZPOOL_MM_RO);
	zpool_unmap_handle(zp, h);
	unsigned char *table;
	ck_assert_int_eq(pagesrc_alloc(1, (void **)&table), 0);
	memset(table, 0x5a, PAGE);
	pid_t pid = fork();
	if (pid == 0) {
		bool zeros = true;
		for (int i = 0; i < SIZE; i++)
			zeros &= obj[i] == 0;
		_exit(!zeros ? 1 : table[PAGE - 1] != 0x5a ? 2 : 0);
	}
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
	CHECK(intact(zp, h, SIZE, 7), "the parent's object changed");
	zpool_free(zp, h);
	pagesrc_free(table, 1);
	zpool_destroy_pool(zp);
}
END_TEST

/*
 * Compaction: objects move (pointers change, handles do not), data stays,
 * each class ends with the fewest zspages its objects need, and pages
 * freed are exactly what total_pages lost.
 */
START_TEST(compaction_moves_objects)
{
	enum { N = 8000 };
	static unsigned long h[N];
	static size_t sz[N];
	static uintptr_t at[N];
	struct zpool *zp = new_pool();
	uint64_t seed = 11;
	for (int i = 0; i < N; i++) {
		sz[i] = 20 + mix64(seed++) % 2000;
		h[i] = put(zp, sz[i], i);
	}
	for (int i = 0; i < N; i++) {
		if (mix64(seed++) % 4) {
			zpool_free(zp, h[i]);
			h[i] = 0;
			continue;
		}
		at[i] = (uintptr_t)zpool_map_handle(zp, h[i], ZPOOL_MM_RO);
		zpool_unmap_handle(zp, h[i]);
	}
	uint64_t before = zpool_get_total_pages(zp);
	unsigned long freed = 0;
	ck_assert_int_eq(zpool_compact(zp, &freed), 0);
	ck_assert_uint_gt(freed, before / 2);
	ck_assert_uint_eq(zpool_get_total_pages(zp), before - freed);
	ck_assert_uint_eq(stat_of(zp, "compactions"), 1);
	ck_assert_uint_eq(stat_of(zp, "pages_compacted"), freed);

	unsigned moved = 0;
	for (int i = 0; i < N; i++)
		if (h[i]) {
			moved += (uintptr_t)zpool_map_handle(zp, h[i], ZPOOL_MM_RO) != at[i];
			zpool_unmap_handle(zp, h[i]);
			CHECK(intact(zp, h[i], sz[i], i), "object %d corrupted", i);
		}
	ck_assert_uint_gt(moved, 0);
	ck_assert_uint_ge(stat_of(zp, "objects_moved"), moved);

	struct zpool_class_stat rows[ZS_NR_CLASSES];
	size_t n = class_rows(zp, rows, ZS_NR_CLASSES);
	for (size_t i = 0; i < n; i++) {
		unsigned objs = rows[i].pages_per_zspage * PAGE / rows[i].size;
		unsigned long need = (rows[i].obj_used + objs - 1) / objs;
		ck_assert_uint_eq(rows[i].pages_used, need * rows[i].pages_per_zspage);
	}
	/* nothing left to do */
	ck_assert_int_eq(zpool_compact(zp, &freed), 0);
	ck_assert_uint_eq(freed, 0);

	for (int i = 0; i < N; i++)
		if (h[i])
			zpool_free(zp, h[i]);
	ck_assert_uint_eq(zpool_get_total_pages(zp), 0);
	zpool_destroy_pool(zp);
}
END_TEST

/* A mapped object is not moved; once unmapped it is. */
START_TEST(compaction_skips_mapped)
{
	size_t size = 500;
	struct zs_class_info ci;
	zs_size_class(size, &ci);
	unsigned k = ci.objs_per_zspage;
	ck_assert_uint_ge(k, 8);
	struct zpool *zp = new_pool();
	unsigned long *h = calloc(2 * k, sizeof(*h));
	for (unsigned i = 0; i < 2 * k; i++)
		h[i] = put(zp, size, i);
	/* zspage A keeps object 0 only, B loses one: A's object fits in B */
	for (unsigned i = 1; i <= k; i++)
		zpool_free(zp, h[i]);
	uint8_t *p = zpool_map_handle(zp, h[0], ZPOOL_MM_RO);
	unsigned long freed = 1;
	ck_assert_int_eq(zpool_compact(zp, &freed), 0);
	ck_assert_uint_eq(freed, 0);
	ck_assert_ptr_eq(zpool_map_handle(zp, h[0], ZPOOL_MM_RO), p);
	ck_assert(same(p, size, 0));
	zpool_unmap_handle(zp, h[0]);
	zpool_unmap_handle(zp, h[0]);

	ck_assert_int_eq(zpool_compact(zp, &freed), 0);
	ck_assert_uint_eq(freed, ci.pages_per_zspage);
	uint8_t *q = zpool_map_handle(zp, h[0], ZPOOL_MM_RO);
	ck_assert_ptr_ne(q, p);
	ck_assert(same(q, size, 0));
	zpool_unmap_handle(zp, h[0]);
	zpool_free(zp, h[0]);
	for (unsigned i = k + 1; i < 2 * k; i++) {
		CHECK(intact(zp, h[i], size, i), "object %u corrupted", i);
		zpool_free(zp, h[i]);
	}
	ck_assert_uint_eq(zpool_get_total_pages(zp), 0);
	free(h);
	zpool_destroy_pool(zp);
}
END_TEST

/*
 * Readers map a fixed set of objects (often the same one at once) while a
 * churner allocates and frees around them and a compactor moves them.
 */
enum { STABLE = 1500, CHURN = 1500, READS = 40000, CHURN_OPS = 40000 };

struct race {
	struct zpool *zp;
	unsigned long stable[STABLE];
	size_t size[STABLE];
	_Atomic int stop;
};

struct race_arg {
	struct race *r;
	int id;
	long errors;
};

static void *reader(void *p)
{
	struct race_arg *a = p;
	uint64_t seed = a->id;
	for (int i = 0; i < READS; i++) {
		unsigned j = mix64(seed++) % STABLE;
		uint8_t *q = zpool_map_handle(a->r->zp, a->r->stable[j], ZPOOL_MM_RO);
		a->errors += !same(q, a->r->size[j], j);
		zpool_unmap_handle(a->r->zp, a->r->stable[j]);
	}
	return NULL;
}

static void *churner(void *p)
{
	struct race_arg *a = p;
	unsigned long *h = calloc(CHURN, sizeof(*h));
	uint64_t seed = 77;
	for (int i = 0; i < CHURN_OPS; i++) {
		unsigned j = mix64(seed++) % CHURN;
		if (h[j]) {
			a->errors += !intact(a->r->zp, h[j], 300, 1000000 + j);
			zpool_free(a->r->zp, h[j]);
			h[j] = 0;
		} else if (zpool_malloc(a->r->zp, 300, &h[j]) == 0) {
			uint8_t *q = zpool_map_handle(a->r->zp, h[j], ZPOOL_MM_WO);
			fill(q, 300, 1000000 + j);
			zpool_unmap_handle(a->r->zp, h[j]);
		} else {
			a->errors++;
		}
	}
	for (unsigned j = 0; j < CHURN; j++)
		if (h[j])
			zpool_free(a->r->zp, h[j]);
	free(h);
	return NULL;
}

static void *compactor(void *p)
{
	struct race_arg *a = p;
	while (!a->r->stop) {
		unsigned long freed;
		a->errors += zpool_compact(a->r->zp, &freed) != 0;
	}
	return NULL;
}

START_TEST(readers_race_compactor)
{
	static struct race r;
	memset(&r, 0, sizeof(r));
	r.zp = new_pool();
	/* scatter the stable objects among garbage, then free the garbage */
	unsigned long *junk = calloc(3 * STABLE, sizeof(*junk));
	for (unsigned j = 0; j < STABLE; j++) {
		r.size[j] = 200 + mix64(j) % 400;
		for (int g = 0; g < 3; g++)
			junk[3 * j + g] = put(r.zp, r.size[j], 0);
		r.stable[j] = put(r.zp, r.size[j], j);
	}
	for (unsigned j = 0; j < 3 * STABLE; j++)
		zpool_free(r.zp, junk[j]);
	free(junk);

	pthread_t t[4];
	struct race_arg a[4];
	void *(*fn[4])(void *) = { reader, reader, churner, compactor };
	for (int i = 0; i < 4; i++) {
		a[i] = (struct race_arg){ .r = &r, .id = i };
		pthread_create(&t[i], NULL, fn[i], &a[i]);
	}
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	r.stop = 1;
	pthread_join(t[3], NULL);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(a[i].errors, 0);
	ck_assert_uint_gt(stat_of(r.zp, "objects_moved"), 0);
	for (unsigned j = 0; j < STABLE; j++) {
		CHECK(intact(r.zp, r.stable[j], r.size[j], j), "object %u corrupted", j);
		zpool_free(r.zp, r.stable[j]);
	}
	ck_assert_uint_eq(zpool_get_total_pages(r.zp), 0);
	zpool_destroy_pool(r.zp);
}
END_TEST

/* ---- density on the real compressed-size distributions -------------------- */

static const char *const dists[] = {
	"python.lz4", "python.zstd1", "redis.lz4", "redis.zstd1",
	"node.lz4", "node.zstd1", "sqlite.lz4", "sqlite.zstd1",
};
#define NDISTS (sizeof(dists) / sizeof(dists[0]))

static size_t *load_sizes(const char *name, size_t *n)
{
	const char *dir = getenv("ZSWAPU_SIZES_DIR");
	char path[512];
	snprintf(path, sizeof(path), "%s/%s.sizes", dir ? dir : SIZES_DIR, name);
	FILE *f = fopen(path, "r");
	ck_assert_msg(f, "cannot open %s (run from the repo root with ../shared "
		      "present, or set ZSWAPU_SIZES_DIR)", path);
	size_t cap = 1 << 17, len = 0, v;
	size_t *s = malloc(cap * sizeof(*s));
	while (fscanf(f, "%zu", &v) == 1) {
		if (len == cap)
			s = realloc(s, (cap *= 2) * sizeof(*s));
		s[len++] = v;
	}
	fclose(f);
	ck_assert_uint_gt(len, 1000);
	*n = len;
	return s;
}

static double density(struct zpool *zp, uint64_t bytes)
{
	return (double)bytes / ((double)zpool_get_total_pages(zp) * PAGE);
}

/*
 * Replay one distribution in file order: density (object bytes / pool
 * bytes, handle and descriptor pages included) must reach 0.90.  Then a
 * random half is freed and the pool compacted (reported, not a target).
 */
START_TEST(density_replay)
{
	size_t n;
	size_t *sizes = load_sizes(dists[_i], &n);
	unsigned long *h = malloc(n * sizeof(*h));
	struct zpool *zp = new_pool();
	uint64_t bytes = 0;
	for (size_t i = 0; i < n; i++) {
		int err = zpool_malloc(zp, sizes[i], &h[i]);
		CHECK(err == 0, "%s: malloc(%zu): %d", dists[_i], sizes[i], err);
		uint8_t *p = zpool_map_handle(zp, h[i], ZPOOL_MM_WO);
		p[0] = (uint8_t)i;
		p[sizes[i] - 1] = (uint8_t)(i >> 8);
		zpool_unmap_handle(zp, h[i]);
		bytes += sizes[i];
	}
	double full = density(zp, bytes);
	ck_assert_uint_eq(stat_of(zp, "object_bytes"), bytes);
	/* a pure replay packs the slabs: no page beyond the last partial one */
	ck_assert_uint_eq(stat_of(zp, "handle_pages"), (n + HANDLES_PER_PAGE - 1) / HANDLES_PER_PAGE);
	ck_assert_uint_eq(stat_of(zp, "desc_pages"),
			  (stat_of(zp, "zspages") + DESCS_PER_PAGE - 1) / DESCS_PER_PAGE);

	uint64_t seed = 5;
	for (size_t i = 0; i < n; i++)
		if (mix64(seed++) & 1) {
			zpool_free(zp, h[i]);
			h[i] = 0;
			bytes -= sizes[i];
		}
	double half = density(zp, bytes);
	unsigned long freed;
	ck_assert_int_eq(zpool_compact(zp, &freed), 0);
	double compacted = density(zp, bytes);
	if (verbose())
		fprintf(stderr, "zsmalloc density %-13s %zu objects: %.4f; half freed %.4f, "
			"compacted %.4f (%lu pages freed)\n",
			dists[_i], n, full, half, compacted, freed);
	ck_assert_msg(full >= 0.90, "%s: density %.4f < 0.90", dists[_i], full);
	ck_assert(compacted >= half);

	for (size_t i = 0; i < n; i++)
		if (h[i]) {
			uint8_t *p = zpool_map_handle(zp, h[i], ZPOOL_MM_RO);
			int ok = p[sizes[i] - 1] == (uint8_t)(i >> 8) &&
				 (sizes[i] == 1 || p[0] == (uint8_t)i);
			zpool_unmap_handle(zp, h[i]);
			CHECK(ok, "%s: object %zu corrupted", dists[_i], i);
			zpool_free(zp, h[i]);
		}
	ck_assert_uint_eq(zpool_get_total_pages(zp), 0);
	zpool_destroy_pool(zp);
	free(h);
	free(sizes);
}
END_TEST

static TCase *tcase(Suite *s, const char *name)
{
	TCase *tc = tcase_create(name);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);
	return tc;
}

Suite *zsmalloc_suite(void)
{
	Suite *s = suite_create("zsmalloc");
	TCase *tc = tcase(s, "layout");
	tcase_add_test(tc, class_geometry);
	tcase_add_test(tc, merged_classes);
	tcase_add_test(tc, class_table_sums);
	tcase_add_test(tc, straddling_object);
	tcase_add_test(tc, objects_not_inherited);
	tc = tcase(s, "compaction");
	tcase_add_test(tc, compaction_moves_objects);
	tcase_add_test(tc, compaction_skips_mapped);
	tcase_add_test(tc, readers_race_compactor);
	tc = tcase(s, "density");
	tcase_add_loop_test(tc, density_replay, 0, NDISTS);
	return s;
}

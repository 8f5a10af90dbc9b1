/*
 * test_slab — the entry allocator: objects distinct, aligned, inside engine
 * memory and not overlapping; memory follows the live count (empty slabs go
 * back to pagesrc, one spare kept); sizes refused; -ENOMEM from pagesrc;
 * four threads allocating and freeing each other's objects.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/slab.h"
#include "pools/pagesrc.h"

#define PAGE 4096

static int cmp_ptr(const void *a, const void *b)
{
	uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
	return x < y ? -1 : x > y;
}

static size_t used_pages(void)
{
	struct pagesrc_stats st;
	pagesrc_get_stats(&st);
	return st.used_pages;
}

static void fill(void *p, size_t n, uint32_t tag)
{
	for (size_t i = 0; i + 4 <= n; i += 4)
		memcpy((char *)p + i, &tag, 4);
}

static int holds(const void *p, size_t n, uint32_t tag)
{
	for (size_t i = 0; i + 4 <= n; i += 4)
		if (memcmp((const char *)p + i, &tag, 4))
			return 0;
	return 1;
}

static const size_t sizes[] = { 48, 1, 8, 24, 100, 200, 512 };
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

/*
 * Check's assertions write a checkpoint each time they pass, so the loops
 * below count problems and assert once.
 */
START_TEST(unique_aligned)
{
	size_t size = sizes[_i];
	size_t stride = (size + 7) & ~(size_t)7;
	struct slab_cache c;
	ck_assert_int_eq(slab_init(&c, size), 0);
	enum { N = 20000 };
	void **objs = malloc(N * sizeof(*objs));
	int outside = 0, misaligned = 0, straddling = 0, overwritten = 0, overlapping = 0;
	for (int i = 0; i < N; i++) {
		if (slab_alloc(&c, &objs[i]))
			ck_abort_msg("slab_alloc failed at object %d", i);
		uintptr_t a = (uintptr_t)objs[i];
		outside += !pagesrc_contains(objs[i]);
		misaligned += a % 8 != 0 || (stride % 16 == 0 && a % 16 != 0);
		/* one page per slab: an object never crosses a page */
		straddling += a / PAGE != (a + size - 1) / PAGE;
		fill(objs[i], size, (uint32_t)i);
	}
	for (int i = 0; i < N; i++)
		overwritten += !holds(objs[i], size, (uint32_t)i);
	qsort(objs, N, sizeof(*objs), cmp_ptr);
	for (int i = 1; i < N; i++)
		overlapping += (uintptr_t)objs[i] - (uintptr_t)objs[i - 1] < stride;
	ck_assert_int_eq(outside, 0);
	ck_assert_int_eq(misaligned, 0);
	ck_assert_int_eq(straddling, 0);
	ck_assert_int_eq(overwritten, 0);
	ck_assert_int_eq(overlapping, 0);
	struct slab_stats st;
	slab_get_stats(&c, &st);
	ck_assert_uint_eq(st.objects, N);
	/* no per-object overhead: the pages hold N objects plus one header each */
	size_t per_page = (PAGE - 64) / stride;
	ck_assert_uint_eq(st.bytes, (N + per_page - 1) / per_page * PAGE);
	for (int i = 0; i < N; i++)
		slab_free(&c, objs[i]);
	slab_get_stats(&c, &st);
	ck_assert_uint_eq(st.objects, 0);
	ck_assert_uint_eq(st.bytes, PAGE);
	slab_destroy(&c);
	free(objs);
}
END_TEST

START_TEST(bad_sizes)
{
	struct slab_cache c;
	ck_assert_int_eq(slab_init(&c, 0), -EINVAL);
	ck_assert_int_eq(slab_init(&c, SLAB_MAX_OBJ_SIZE + 1), -EINVAL);
	ck_assert_int_eq(slab_init(&c, SLAB_MAX_OBJ_SIZE), 0);
	slab_destroy(&c);
}
END_TEST

START_TEST(memory_follows_objects)
{
	size_t base = used_pages();
	struct slab_cache c;
	ck_assert_int_eq(slab_init(&c, 48), 0);
	enum { N = 84 * 100 }; /* exactly 100 full slabs */
	static void *objs[N];
	int failed = 0;
	for (int i = 0; i < N; i++)
		failed += slab_alloc(&c, &objs[i]) != 0;
	ck_assert_int_eq(failed, 0);
	struct slab_stats st;
	slab_get_stats(&c, &st);
	ck_assert_uint_eq(st.bytes, 100 * PAGE);
	ck_assert_uint_eq(used_pages(), base + 100);

	/* Freeing every other object empties no slab: nothing goes back. */
	for (int i = 0; i < N; i += 2)
		slab_free(&c, objs[i]);
	slab_get_stats(&c, &st);
	ck_assert_uint_eq(st.objects, N / 2);
	ck_assert_uint_eq(st.bytes, 100 * PAGE);

	/* Freed room is reused before any new page is taken. */
	for (int i = 0; i < N; i += 2)
		failed += slab_alloc(&c, &objs[i]) != 0;
	ck_assert_int_eq(failed, 0);
	slab_get_stats(&c, &st);
	ck_assert_uint_eq(st.bytes, 100 * PAGE);

	/*
	 * Every slab is full again; in address order, the first half of the
	 * objects fill exactly 50 slabs.  Emptying them gives 49 pages back
	 * and keeps one as the spare.
	 */
	qsort(objs, N, sizeof(objs[0]), cmp_ptr);
	for (int i = 0; i < N / 2; i++)
		slab_free(&c, objs[i]);
	slab_get_stats(&c, &st);
	ck_assert_uint_eq(st.objects, N / 2);
	ck_assert_uint_eq(st.bytes, 51 * PAGE);
	ck_assert_uint_eq(used_pages(), base + 51);

	/* Everything freed: only the spare remains. */
	for (int i = N / 2; i < N; i++)
		slab_free(&c, objs[i]);
	slab_get_stats(&c, &st);
	ck_assert_uint_eq(st.objects, 0);
	ck_assert_uint_eq(st.bytes, PAGE);
	ck_assert_uint_eq(used_pages(), base + 1);

	/* The spare serves the next allocation without a new page. */
	void *o;
	ck_assert_int_eq(slab_alloc(&c, &o), 0);
	ck_assert_uint_eq(used_pages(), base + 1);
	slab_free(&c, o);
	slab_destroy(&c);
	ck_assert_uint_eq(used_pages(), base);
}
END_TEST

START_TEST(destroy_with_live_objects)
{
	size_t base = used_pages();
	struct slab_cache c;
	ck_assert_int_eq(slab_init(&c, 64), 0);
	void *o = NULL;
	int failed = 0;
	for (int i = 0; i < 1000; i++)
		failed += slab_alloc(&c, &o) != 0;
	ck_assert_int_eq(failed, 0);
	ck_assert_uint_gt(used_pages(), base);
	slab_destroy(&c);
	ck_assert_uint_eq(used_pages(), base);
}
END_TEST

START_TEST(out_of_pages)
{
	struct slab_cache c;
	ck_assert_int_eq(slab_init(&c, 48), 0);
	pagesrc_set_limit(used_pages() + 3);
	void *objs[84 * 4];
	int n = 0, err = 0;
	while (n < 84 * 4 && !(err = slab_alloc(&c, &objs[n])))
		n++;
	pagesrc_set_limit(0);
	ck_assert_int_eq(err, -ENOMEM);
	ck_assert_int_eq(n, 84 * 3);
	struct slab_stats st;
	slab_get_stats(&c, &st);
	ck_assert_uint_eq(st.objects, 84 * 3);
	ck_assert_int_eq(slab_alloc(&c, &objs[n]), 0);
	for (int i = 0; i <= n; i++)
		slab_free(&c, objs[i]);
	slab_destroy(&c);
}
END_TEST

/*
 * A cache that keeps a reserve: two pages for each slab it holds and one
 * more, given back whole; ordinary allocations leave the reserve alone,
 * a thread allowed to use it gets it.
 */
static size_t reserve_pages(void)
{
	struct pagesrc_stats st;
	pagesrc_get_stats(&st);
	return st.reserve_pages;
}

START_TEST(keeps_a_reserve)
{
	size_t r0 = reserve_pages();
	struct slab_cache c;
	ck_assert_int_eq(slab_init(&c, 256), 0);
	slab_keep_reserve(&c, 2);
	ck_assert_uint_eq(reserve_pages(), r0 + 2);
	void *objs[15 * 3];
	for (int i = 0; i < 15 * 3; i++) /* 15 to a slab */
		ck_assert_int_eq(slab_alloc(&c, &objs[i]), 0);
	ck_assert_uint_eq(reserve_pages(), r0 + 2 * (3 + 1));
	/* room past the reserve for one slab and the two pages it adds to it */
	pagesrc_set_limit(used_pages() + reserve_pages() + 1 + 2);
	void *more[15 * 3];
	int n = 0;
	while (n < 15 * 3 && slab_alloc(&c, &more[n]) == 0)
		n++;
	ck_assert_int_eq(n, 15);
	bool was = pagesrc_use_reserve(true);
	ck_assert_int_eq(slab_alloc(&c, &more[n++]), 0);
	ck_assert(pagesrc_use_reserve(was));
	while (n < 15 * 3 && slab_alloc(&c, &more[n]) == 0)
		n++;
	ck_assert_int_eq(n, 15 * 2); /* the slab taken from the reserve, no more */
	pagesrc_set_limit(0);
	for (int i = 0; i < n; i++)
		slab_free(&c, more[i]);
	for (int i = 0; i < 15 * 3; i++)
		slab_free(&c, objs[i]);
	ck_assert_uint_eq(reserve_pages(), r0 + 2 * (1 + 1)); /* the spare */
	slab_destroy(&c);
	ck_assert_uint_eq(reserve_pages(), r0);
}
END_TEST

/*
 * Four threads allocate, tag, check and free; a quarter of the objects are
 * handed through a shared mailbox and freed by another thread.
 */
enum { MAILBOX = 256, THREAD_OPS = 100000, THREAD_SLOTS = 2000 };

struct thread_arg {
	struct slab_cache *c;
	_Atomic(uintptr_t) *mailbox;
	int id;
	long errors;
};

static uint64_t mix(uint64_t x)
{
	x ^= x >> 31;
	x *= 0x7fb5d329728ea185ULL;
	return x ^ (x >> 27);
}

/* A mailbox object carries its tag in its first word. */
static void free_checked(struct slab_cache *c, void *o, long *errors)
{
	uint32_t tag;
	memcpy(&tag, o, 4);
	if (!holds(o, 48, tag))
		(*errors)++;
	slab_free(c, o);
}

static void *worker(void *p)
{
	struct thread_arg *a = p;
	void **slots = calloc(THREAD_SLOTS, sizeof(*slots));
	uint32_t *tags = calloc(THREAD_SLOTS, sizeof(*tags));
	uint64_t s = (uint64_t)a->id * 7919 + 1;
	for (uint32_t op = 0; op < THREAD_OPS; op++) {
		uint64_t r = mix(s++);
		size_t k = r % THREAD_SLOTS;
		if (slots[k]) {
			if (!holds(slots[k], 48, tags[k]))
				a->errors++;
			if ((r >> 40) % 4 == 0) { /* hand it to whoever comes next */
				uintptr_t prev = atomic_exchange(&a->mailbox[(r >> 20) % MAILBOX],
								 (uintptr_t)slots[k]);
				if (prev)
					free_checked(a->c, (void *)prev, &a->errors);
			} else {
				slab_free(a->c, slots[k]);
			}
			slots[k] = NULL;
		} else {
			if (slab_alloc(a->c, &slots[k])) {
				a->errors++;
				continue;
			}
			tags[k] = ((uint32_t)a->id << 28) | op;
			fill(slots[k], 48, tags[k]);
		}
	}
	for (size_t k = 0; k < THREAD_SLOTS; k++)
		if (slots[k]) {
			if (!holds(slots[k], 48, tags[k]))
				a->errors++;
			slab_free(a->c, slots[k]);
		}
	free(slots);
	free(tags);
	return NULL;
}

START_TEST(four_threads)
{
	size_t base = used_pages();
	struct slab_cache c;
	ck_assert_int_eq(slab_init(&c, 48), 0);
	static _Atomic(uintptr_t) mailbox[MAILBOX];
	pthread_t t[4];
	struct thread_arg a[4];
	for (int i = 0; i < 4; i++) {
		a[i] = (struct thread_arg){ .c = &c, .mailbox = mailbox, .id = i };
		pthread_create(&t[i], NULL, worker, &a[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		ck_assert_int_eq(a[i].errors, 0);
	}
	long errors = 0;
	for (int i = 0; i < MAILBOX; i++)
		if (mailbox[i])
			free_checked(&c, (void *)mailbox[i], &errors);
	ck_assert_int_eq(errors, 0);
	struct slab_stats st;
	slab_get_stats(&c, &st);
	ck_assert_uint_eq(st.objects, 0);
	ck_assert_uint_eq(st.bytes, PAGE);
	slab_destroy(&c);
	ck_assert_uint_eq(used_pages(), base);
}
END_TEST

Suite *slab_suite(void)
{
	Suite *s = suite_create("slab");
	TCase *tc = tcase_create("slab");
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, unique_aligned, 0, NSIZES);
	tcase_add_test(tc, bad_sizes);
	tcase_add_test(tc, memory_follows_objects);
	tcase_add_test(tc, destroy_with_live_objects);
	tcase_add_test(tc, out_of_pages);
	tcase_add_test(tc, keeps_a_reserve);
	tcase_add_test(tc, four_threads);
	suite_add_tcase(s, tc);
	return s;
}

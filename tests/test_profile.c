/*
 * test_profile — the profiler without a program under it: sampled ranges
 * and the pages attributed to them, frees, unmaps, remaps, the weighted
 * estimate, a fault sample taken by signal, and the files at the end.
 */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/flame.h"
#include "core/profile.h"

#define PG 4096UL

/* Stand-ins for the shim's wrappers, each a site of its own. */
__attribute__((noinline, noclone)) void test_site_a(uintptr_t p, size_t n)
{
	if (profile_sampling(n))
		profile_alloc((void *)p, n, true);
	__asm__ volatile("" ::: "memory"); /* not a tail call */
}

__attribute__((noinline, noclone)) void test_site_b(uintptr_t p, size_t n, bool heap)
{
	if (profile_sampling(n))
		profile_alloc((void *)p, n, heap);
	__asm__ volatile("" ::: "memory");
}

/* Address space that is never touched: the map only records ranges. */
static uintptr_t reserve(size_t pages)
{
	void *p = mmap(NULL, pages * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	ck_assert_ptr_ne(p, MAP_FAILED);
	return (uintptr_t)p;
}

static char prefix[64];

static void start(size_t rate)
{
	snprintf(prefix, sizeof(prefix), "/tmp/test_profile.%d", (int)getpid());
	ck_assert_int_eq(profile_start(prefix, rate), 0);
	ck_assert_int_eq(profile_start(prefix, rate), -EALREADY);
}

static char *slurp(const char *suffix)
{
	char path[128];
	snprintf(path, sizeof(path), "%s.%s", prefix, suffix);
	FILE *f = fopen(path, "r");
	ck_assert_msg(f != NULL, "%s missing", path);
	static char buf[1 << 16];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	unlink(path);
	return buf;
}

static void finish_and_clean(void)
{
	char written[128];
	ck_assert_int_eq(profile_finish(written, sizeof(written)), 0);
	ck_assert_str_eq(written, prefix);
	ck_assert_int_eq(profile_finish(NULL, 0), -ENODEV);
	const char *v[] = { "alloc-stored", "alloc-refaulted", "fault-sites", "alloc" };
	for (int i = 0; i < 4; i++) {
		char s[64];
		snprintf(s, sizeof(s), "%s.svg", v[i]);
		slurp(s);
		snprintf(s, sizeof(s), "%s.folded", v[i]);
		slurp(s);
	}
}

START_TEST(pages_go_to_their_site)
{
	uintptr_t base = reserve(64);
	start(0); /* every allocation, weight 1 */
	test_site_a(base, 2 * PG);          /* A: pages 0, 1 */
	test_site_b(base + 2 * PG, 100, true); /* B: 100 bytes of page 2 */
	struct profile_counts a, b;
	ck_assert_int_eq(profile_site_of(base + PG, &a), 0);
	ck_assert(a.alloc == 2 * PG && a.stored == 0 && a.depth > 0);
	profile_stored(base);
	profile_stored(base + PG);
	profile_stored(base + 2 * PG);
	profile_stored(base + 10 * PG); /* nobody's */
	profile_refault(base, PG, true);
	profile_refault(base + PG, PG, false); /* from staging: still counted stored */
	ck_assert_int_eq(profile_site_of(base, &a), 0);
	ck_assert_int_eq(profile_site_of(base + 2 * PG + 50, &b), 0);
	ck_assert_msg(a.stored == PG && a.refaulted == 2 * PG, "A %f %f", a.stored, a.refaulted);
	ck_assert_msg(b.stored == 100 && b.refaulted == 0 && b.alloc == 100, "B %f", b.stored);
	ck_assert_int_eq(profile_site_of(base + 2 * PG + 100, &b), -ENOENT);
	uint64_t st, rf;
	profile_totals(&st, &rf);
	ck_assert_uint_eq(st, 4 * PG);
	ck_assert_uint_eq(rf, 2 * PG);

	/* free() takes a heap sample out; the same address sampled again (from
	 * another call site: another stack) is new */
	profile_free((void *)base);
	ck_assert_int_eq(profile_site_of(base, &a), -ENOENT);
	test_site_b(base, PG, true);
	ck_assert_int_eq(profile_site_of(base, &b), 0);
	ck_assert(b.alloc == PG && b.stored == 0);
	/* a sample over a stale one replaces it */
	test_site_a(base + 2 * PG, PG);
	ck_assert_int_eq(profile_site_of(base + 2 * PG, &a), 0);
	ck_assert(a.alloc == PG);
	ck_assert_int_eq(profile_site_of(base + 2 * PG + 100, &a), 0);

	finish_and_clean();
	ck_assert_int_eq(profile_site_of(base, &a), -ENODEV);
	munmap((void *)base, 64 * PG);
}
END_TEST

START_TEST(unmap_and_remap)
{
	uintptr_t base = reserve(128);
	start(0);
	struct profile_counts c;
	test_site_b(base + 20 * PG, 10 * PG, false); /* an mmap'd range */
	profile_unmap((void *)(base + 22 * PG), 2 * PG); /* a hole in it */
	ck_assert_int_eq(profile_site_of(base + 21 * PG, &c), 0);
	ck_assert_int_eq(profile_site_of(base + 22 * PG, &c), -ENOENT);
	ck_assert_int_eq(profile_site_of(base + 23 * PG + 5, &c), -ENOENT);
	ck_assert_int_eq(profile_site_of(base + 24 * PG, &c), 0);
	ck_assert_int_eq(profile_site_of(base + 29 * PG, &c), 0);
	ck_assert_int_eq(profile_site_of(base + 30 * PG, &c), -ENOENT);
	/* mremap moves the sample that starts the mapping, at its new size */
	test_site_a(base + 40 * PG, 2 * PG);
	profile_remap((void *)(base + 40 * PG), 2 * PG, (void *)(base + 60 * PG), 8 * PG);
	ck_assert_int_eq(profile_site_of(base + 40 * PG, &c), -ENOENT);
	ck_assert_int_eq(profile_site_of(base + 67 * PG, &c), 0);
	ck_assert(c.alloc == 2 * PG);
	profile_stored(base + 67 * PG);
	ck_assert_int_eq(profile_site_of(base + 60 * PG, &c), 0);
	ck_assert(c.stored == PG);
	/* an unmap across several samples */
	profile_unmap((void *)base, 128 * PG);
	ck_assert_int_eq(profile_site_of(base + 21 * PG, &c), -ENOENT);
	ck_assert_int_eq(profile_site_of(base + 60 * PG, &c), -ENOENT);
	finish_and_clean();
	munmap((void *)base, 128 * PG);
}
END_TEST

/* 1 KiB allocations at a 4 KiB rate: about 1 in 4.5 sampled, the sum right. */
START_TEST(weighted_estimate)
{
	size_t n = 8000, sz = 1024;
	uintptr_t base = reserve(n * sz / PG);
	start(4096);
	for (size_t i = 0; i < n; i++)
		test_site_a(base + i * sz, sz);
	struct profile_counts c;
	size_t sampled = 0;
	double alloc = 0;
	uintptr_t one = 0;
	for (size_t i = 0; i < n; i++)
		if (profile_site_of(base + i * sz, &c) == 0) {
			sampled++;
			alloc = c.alloc;
			one = base + i * sz;
		}
	/* expected n * (1 - e^-1/4) = 1770 samples, sd ~37 */
	ck_assert_msg(sampled > 1500 && sampled < 2050, "%zu sampled", sampled);
	ck_assert_msg(alloc > 0.8 * n * sz && alloc < 1.2 * n * sz, "estimate %f", alloc);
	/* every page stored: the estimate of the stored bytes is the same sum */
	for (size_t p = 0; p < n * sz / PG; p++)
		profile_stored(base + p * PG);
	ck_assert_int_eq(profile_site_of(one, &c), 0);
	ck_assert_msg(c.stored > 0.8 * n * sz && c.stored < 1.2 * n * sz, "stored %f", c.stored);
	finish_and_clean();
	munmap((void *)base, n * sz);
}
END_TEST

/*
 * A sampled fault of this very thread: tgkill to self is delivered as the
 * system call returns, so it is counted as a kernel-mode fault, under this
 * function's stack.  The files name the sites.
 */
__attribute__((noinline, noclone)) void test_fault_site(uintptr_t addr)
{
	for (int i = 0; i < 2000; i++) { /* one in 64 sampled: some surely */
		profile_fault(addr, (unsigned int)syscall(SYS_gettid));
		profile_refault(addr, PG, true);
	}
	__asm__ volatile("" ::: "memory");
}

START_TEST(fault_sample_and_files)
{
	uintptr_t base = reserve(8);
	start(0);
	test_site_a(base, 4 * PG);
	profile_stored(base);
	test_fault_site(base + 6 * PG); /* not in the sample: A keeps its page */
	ck_assert_int_eq(profile_finish(NULL, 0), 0);
	char *f = slurp("fault-sites.folded");
	ck_assert_msg(strstr(f, "refault;") && strstr(f, "test_fault_site;") &&
		      strstr(f, ";[in a system call] "), "%s", f);
	struct flame *fl;
	ck_assert_int_eq(flame_create(&fl), 0);
	ck_assert_int_gt(flame_parse(fl, f, strlen(f), NULL), 0);
	ck_assert_uint_eq(flame_total(fl) % PROFILE_FAULT_PERIOD, 0);
	flame_destroy(fl);
	f = slurp("alloc-stored.folded");
	/* the wrapper's frame is dropped: the site is the wrapper's caller */
	ck_assert_msg(strstr(f, ";fault_sample_and_files_fn 4096\n") != NULL, "%s", f);
	f = slurp("alloc.folded");
	ck_assert_msg(strstr(f, ";fault_sample_and_files_fn 16384\n") != NULL, "%s", f);
	f = slurp("alloc-stored.svg");
	ck_assert_ptr_nonnull(strstr(f, "<title>fault_sample_and_files_fn (4096 bytes, 100.00%)</title>"));
	slurp("alloc-refaulted.folded");
	slurp("alloc-refaulted.svg");
	slurp("fault-sites.svg");
	slurp("alloc.svg");
	munmap((void *)base, 8 * PG);
}
END_TEST

Suite *profile_suite(void)
{
	Suite *s = suite_create("profile");
	TCase *tc = tcase_create("profile");
	tcase_add_test(tc, pages_go_to_their_site);
	tcase_add_test(tc, unmap_and_remap);
	tcase_add_test(tc, weighted_estimate);
	tcase_add_test(tc, fault_sample_and_files);
	suite_add_tcase(s, tc);
	return s;
}

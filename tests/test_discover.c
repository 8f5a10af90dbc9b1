/* test_discover — region discovery on made-up maps/smaps files, with a recording callback. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/discover.h"

#define P 4096UL
#define A(n) (0x7f0000000000UL + (uintptr_t)(n) * P)

struct vma {
	uintptr_t start, end;
	const char *perms, *path, *flags;
};

struct rec {
	uintptr_t start[64];
	size_t len[64];
	int n;
	int fail_at, fail_err; /* registration number fail_at returns fail_err */
	uintptr_t busy;         /* registering a range that starts here: -EBUSY */
	int nbusy;              /* ... so many times */
	uintptr_t unreg[16][2]; /* unregistrations */
	int nunreg;
	uintptr_t fork[16][3]; /* DONTFORK / DOFORK reports: start, end, dontfork */
	int nfork;
	uintptr_t dropped; /* the engine no longer has the VMA starting here */
	int nasked;        /* DISCOVER_MANAGED questions */
};

static int record_cb(enum discover_op op, uintptr_t start, size_t len, void *arg)
{
	struct rec *r = arg;
	if (op == DISCOVER_MANAGED) {
		r->nasked++;
		return !(r->dropped && start == r->dropped);
	}
	if (op == DISCOVER_UNREGISTER) {
		ck_assert_int_lt(r->nunreg, 16);
		r->unreg[r->nunreg][0] = start;
		r->unreg[r->nunreg++][1] = start + len;
		return 0;
	}
	if (op == DISCOVER_DONTFORK || op == DISCOVER_DOFORK) {
		ck_assert_int_lt(r->nfork, 16);
		r->fork[r->nfork][0] = start;
		r->fork[r->nfork][1] = start + len;
		r->fork[r->nfork++][2] = op == DISCOVER_DONTFORK;
		return 0;
	}
	if (r->n == r->fail_at) {
		r->fail_at = -1;
		return r->fail_err;
	}
	if (r->busy && start == r->busy) {
		r->nbusy++;
		return -EBUSY;
	}
	ck_assert_int_lt(r->n, 64);
	r->start[r->n] = start;
	r->len[r->n++] = len;
	return 0;
}

static char maps_path[64], smaps_path[64];

/* Writes the VMAs as /proc/self/maps and as smaps (VmFlags from .flags). */
static void write_files(const struct vma *v, size_t n)
{
	FILE *m = fopen(maps_path, "w"), *s = fopen(smaps_path, "w");
	ck_assert(m && s);
	for (size_t i = 0; i < n; i++) {
		const char *path = v[i].path ? v[i].path : "";
		int file = path[0] == '/';
		fprintf(m, "%lx-%lx %s 00000000 %s %d    %s\n", v[i].start, v[i].end, v[i].perms,
			file ? "fd:01" : "00:00", file ? 42 : 0, path);
		fprintf(s, "%lx-%lx %s 00000000 %s %d    %s\nSize: 4 kB\nRss: 4 kB\n"
			   "VmFlags: rd wr mr mw me ac %s\n",
			v[i].start, v[i].end, v[i].perms, file ? "fd:01" : "00:00", file ? 42 : 0,
			path, v[i].flags ? v[i].flags : "");
	}
	fclose(m);
	fclose(s);
}

static struct discover *d;
static struct rec rec;

static void setup(void)
{
	strcpy(maps_path, "/tmp/test_discover.maps.XXXXXX");
	strcpy(smaps_path, "/tmp/test_discover.smaps.XXXXXX");
	close(mkstemp(maps_path));
	close(mkstemp(smaps_path));
	memset(&rec, 0, sizeof(rec));
	rec.fail_at = -1;
	ck_assert_int_eq(discover_create(maps_path, smaps_path, record_cb, &rec, &d), 0);
}

static void teardown(void)
{
	discover_destroy(d);
	unlink(maps_path);
	unlink(smaps_path);
}

static void expect_calls(const uintptr_t (*want)[2], int n)
{
	ck_assert_int_eq(rec.n, n);
	for (int i = 0; i < n; i++) {
		ck_assert_uint_eq(rec.start[i], want[i][0]);
		ck_assert_uint_eq(rec.start[i] + rec.len[i], want[i][1]);
	}
	rec.n = 0;
}

START_TEST(first_scan)
{
	const struct vma v[] = {
		{ A(0), A(10), "rw-p", "[heap]", NULL },
		{ A(10), A(20), "rw-p", NULL, NULL },           /* adjacent VMA: its own call */
		{ A(30), A(40), "r--p", NULL, NULL },           /* read-only */
		{ A(40), A(50), "rw-s", NULL, NULL },           /* shared */
		{ A(50), A(60), "rw-p", "/usr/lib/libx.so", NULL },
		{ A(60), A(70), "rw-p", NULL, "lo" },           /* mlocked */
		{ A(70), A(80), "rw-p", NULL, "dd" },           /* MADV_DONTDUMP */
		{ A(80), A(90), "rwxp", "[anon:jit]", NULL },
		{ A(90), A(100), "rw-p", NULL, "dc" },          /* MADV_DONTFORK */
		{ A(100), A(120), "rw-p", NULL, NULL },         /* cut by an exclusion */
		{ A(200), A(210), "rw-p", "[stack]", NULL },
	};
	write_files(v, sizeof(v) / sizeof(v[0]));
	discover_exclude(d, A(105), A(108));
	ck_assert_int_eq(discover_scan(d, true), 5);
	expect_calls((const uintptr_t[][2]){ { A(0), A(10) },
					     { A(10), A(20) },
					     { A(80), A(90) },
					     { A(100), A(105) },
					     { A(108), A(120) } },
		     5);
	struct discover_stats st;
	discover_get_stats(d, &st);
	ck_assert_uint_eq(st.registered, 5);
	ck_assert_uint_eq(st.kept_out, 3);
	ck_assert_uint_eq(st.smaps_reads, 1);
	ck_assert_uint_eq(st.managed_bytes, 47 * P);
	ck_assert_int_eq(rec.nunreg, 0);
}
END_TEST

/*
 * After discover_manage_dontfork() (MOVE detach): DONTFORK memory is
 * registered, and each full scan says of every managed range whether it
 * is DONTFORK (raw system calls); quick scans cannot see it.  WIPEONFORK
 * stays resident.
 */
START_TEST(dontfork_managed)
{
	discover_manage_dontfork(d);
	struct vma v[] = {
		{ A(0), A(10), "rw-p", NULL, NULL },
		{ A(10), A(20), "rw-p", NULL, "dc" },
		{ A(20), A(30), "rw-p", NULL, "wf" },
	};
	write_files(v, 3);
	ck_assert_int_eq(discover_scan(d, true), 2);
	expect_calls((const uintptr_t[][2]){ { A(0), A(10) }, { A(10), A(20) } }, 2);
	const uintptr_t want[2][3] = { { A(0), A(10), 0 }, { A(10), A(20), 1 } };
	ck_assert_int_eq(rec.nfork, 2);
	ck_assert_mem_eq(rec.fork, want, sizeof(want));
	struct discover_stats st;
	discover_get_stats(d, &st);
	ck_assert_uint_eq(st.kept_out, 1);
	rec.nfork = 0;
	ck_assert_int_eq(discover_scan(d, false), 0);
	ck_assert_int_eq(rec.nfork, 0);
	/* registered now; the mark moved by raw system calls */
	v[0].flags = "um dc";
	v[1].flags = "um";
	write_files(v, 3);
	ck_assert_int_eq(discover_scan(d, true), 0);
	ck_assert_int_eq(rec.n, 0); /* no registration again */
	const uintptr_t moved[2][3] = { { A(0), A(10), 1 }, { A(10), A(20), 0 } };
	ck_assert_int_eq(rec.nfork, 2);
	ck_assert_mem_eq(rec.fork, moved, sizeof(moved));
}
END_TEST

/* Quick scans read maps only: what they can and cannot see. */
START_TEST(quick_scans)
{
	struct vma v[] = {
		{ A(0), A(10), "rw-p", NULL, NULL },
		{ A(20), A(30), "rw-p", NULL, "lo" },
		{ A(40), A(50), "rw-p", NULL, NULL },
	};
	write_files(v, 3);
	ck_assert_int_eq(discover_scan(d, true), 2);
	rec.n = 0;
	/* the kernel now says both are registered */
	v[0].flags = "um";
	v[2].flags = "um";
	write_files(v, 3);
	struct discover_stats st;
	ck_assert_int_eq(discover_scan(d, false), 0);
	ck_assert_int_eq(discover_scan(d, true), 0);
	discover_get_stats(d, &st);
	ck_assert_uint_eq(st.smaps_reads, 2);
	ck_assert_int_eq(rec.n, 0);
	/* the heap grew: a new VMA next to the old one is registered at once */
	struct vma grown[] = {
		{ A(0), A(10), "rw-p", NULL, "um" },
		{ A(10), A(15), "rw-p", NULL, NULL },
		{ A(20), A(30), "rw-p", NULL, "lo" },
		{ A(40), A(50), "rw-p", NULL, "um" },
	};
	write_files(grown, 4);
	ck_assert_int_eq(discover_scan(d, false), 1);
	expect_calls((const uintptr_t[][2]){ { A(10), A(15) } }, 1);
	/* the kernel merged the registered VMAs: nothing new */
	struct vma merged[] = {
		{ A(0), A(15), "rw-p", NULL, "um" },
		{ A(20), A(30), "rw-p", NULL, "lo" },
		{ A(40), A(50), "rw-p", NULL, "um" },
	};
	write_files(merged, 3);
	ck_assert_int_eq(discover_scan(d, false), 0);
	ck_assert_int_eq(discover_scan(d, true), 0);
	ck_assert_int_eq(rec.n, 0);
	/* unmapped, and a smaller mapping made inside: other bounds, new */
	struct vma inside[] = {
		{ A(0), A(15), "rw-p", NULL, "um" },
		{ A(20), A(30), "rw-p", NULL, "lo" },
		{ A(42), A(48), "rw-p", NULL, NULL },
	};
	write_files(inside, 3);
	ck_assert_int_eq(discover_scan(d, false), 1);
	expect_calls((const uintptr_t[][2]){ { A(42), A(48) } }, 1);
	write_files(merged, 3);
	ck_assert_int_eq(discover_scan(d, false), 1); /* and back: new again */
	expect_calls((const uintptr_t[][2]){ { A(40), A(50) } }, 1);
	/* unmapped and mapped again with the same bounds, unregistered: the
	 * maps line is the same, but the engine dropped the range on its
	 * unmap event, and a quick scan asks it (V8's heap pages) */
	merged[2].flags = NULL;
	write_files(merged, 3);
	rec.nasked = 0;
	rec.dropped = A(40);
	ck_assert_int_eq(discover_scan(d, false), 1);
	expect_calls((const uintptr_t[][2]){ { A(40), A(50) } }, 1);
	ck_assert_int_eq(rec.nasked, 2); /* the two managed VMAs */
	discover_get_stats(d, &st);
	ck_assert_uint_eq(st.dropped, 1);
	rec.dropped = 0;
	ck_assert_int_eq(discover_scan(d, false), 0); /* registered again */
	/* with an engine that has not read the unmap event yet, a full
	 * scan catches it (no um) */
	ck_assert_int_eq(discover_scan(d, true), 1);
	expect_calls((const uintptr_t[][2]){ { A(40), A(50) } }, 1);
	/* munlock: the full scan sees the flag gone; a quick one does not */
	merged[1].flags = NULL;
	merged[2].flags = "um";
	write_files(merged, 3);
	ck_assert_int_eq(discover_scan(d, false), 0);
	ck_assert_int_eq(discover_scan(d, true), 1);
	expect_calls((const uintptr_t[][2]){ { A(20), A(30) } }, 1);
	/* locked behind the wrappers' back while managed: taken out again */
	merged[0].flags = "um lo";
	merged[1].flags = "um";
	write_files(merged, 3);
	ck_assert_int_eq(discover_scan(d, true), 0);
	ck_assert_int_eq(rec.nunreg, 1);
	ck_assert_uint_eq(rec.unreg[0][0], A(0));
	ck_assert_uint_eq(rec.unreg[0][1], A(15));
	discover_get_stats(d, &st);
	ck_assert_uint_eq(st.unregistered, 1);
	ck_assert_uint_eq(st.kept_out, 1);
	ck_assert_uint_eq(st.managed_bytes, 20 * P);
	/* unmapped: gone from the table */
	write_files(merged + 1, 2);
	ck_assert_int_eq(discover_scan(d, false), 0);
	discover_get_stats(d, &st);
	ck_assert_uint_eq(st.known, 2); /* A(20)..A(30) and A(40)..A(50) */
}
END_TEST

/* What the mlock/madvise wrappers ask to keep out stays out. */
START_TEST(keep_out)
{
	struct vma v[] = {
		{ A(0), A(10), "rw-p", NULL, NULL },
	};
	write_files(v, 1);
	ck_assert_int_eq(discover_scan(d, true), 1);
	rec.n = 0;
	/* the program maps a range and mlocks it before the next scan */
	discover_keep_out(d, A(20), A(30));
	struct vma more[] = {
		{ A(0), A(10), "rw-p", NULL, NULL },
		{ A(20), A(30), "rw-p", NULL, NULL },
		{ A(40), A(50), "rw-p", NULL, NULL },
	};
	write_files(more, 3);
	/* a scan aborted by a racing mlock must not forget the request */
	rec.fail_at = 0;
	rec.fail_err = -EAGAIN;
	ck_assert_int_eq(discover_scan(d, false), -EAGAIN);
	ck_assert_int_eq(discover_scan(d, false), 1);
	expect_calls((const uintptr_t[][2]){ { A(40), A(50) } }, 1);
	/* later quick scans remember it */
	ck_assert_int_eq(discover_scan(d, false), 0);
	ck_assert_int_eq(rec.n, 0);
	/* a full scan believes the flags: still locked, then unlocked */
	more[0].flags = "um";
	more[1].flags = "lo";
	more[2].flags = "um";
	write_files(more, 3);
	ck_assert_int_eq(discover_scan(d, true), 0);
	more[1].flags = NULL;
	write_files(more, 3);
	ck_assert_int_eq(discover_scan(d, true), 1);
	expect_calls((const uintptr_t[][2]){ { A(20), A(30) } }, 1);
	/* more requests than the queue holds: the next scan is a full one */
	struct discover_stats st;
	discover_get_stats(d, &st);
	uint64_t full = st.smaps_reads;
	for (int i = 0; i <= DISCOVER_KEEP_MAX; i++)
		discover_keep_out(d, A(100 + i), A(101 + i));
	discover_scan(d, false);
	discover_get_stats(d, &st);
	ck_assert_uint_eq(st.smaps_reads, full + 1);
}
END_TEST

START_TEST(callback_errors)
{
	const struct vma v[] = {
		{ A(0), A(10), "rw-p", NULL, NULL },
		{ A(20), A(30), "rw-p", NULL, NULL },
		{ A(40), A(50), "rw-p", NULL, NULL },
	};
	write_files(v, 3);
	/* -EAGAIN: abort, remember nothing; the next scan does it all */
	rec.fail_at = 1;
	rec.fail_err = -EAGAIN;
	ck_assert_int_eq(discover_scan(d, false), -EAGAIN);
	rec.n = 0;
	ck_assert_int_eq(discover_scan(d, false), 3);
	rec.n = 0;
	teardown();
	setup();
	write_files(v, 3);
	/* -ENOSPC: the rest of the scan is left out, tried again by a full scan */
	rec.fail_at = 1;
	rec.fail_err = -ENOSPC;
	ck_assert_int_eq(discover_scan(d, false), -ENOSPC);
	expect_calls((const uintptr_t[][2]){ { A(0), A(10) } }, 1);
	ck_assert_int_eq(discover_scan(d, false), 0); /* a quick scan trusts the table */
	struct vma um[3];
	memcpy(um, v, sizeof(um));
	um[0].flags = "um";
	write_files(um, 3);
	ck_assert_int_eq(discover_scan(d, true), 2);
	expect_calls((const uintptr_t[][2]){ { A(20), A(30) }, { A(40), A(50) } }, 2);
	/* -EINVAL (the VMA changed under the scan): that one is left out */
	teardown();
	setup();
	write_files(v, 3);
	rec.fail_at = 0;
	rec.fail_err = -EINVAL;
	ck_assert_int_eq(discover_scan(d, false), 2);
	struct discover_stats st;
	discover_get_stats(d, &st);
	ck_assert_uint_eq(st.failed, 1);
	/* the engine is gone: stop */
	teardown();
	setup();
	write_files(v, 3);
	rec.fail_at = 0;
	rec.fail_err = -ECANCELED;
	ck_assert_int_eq(discover_scan(d, false), -ECANCELED);
	/* a file that cannot be read */
	unlink(smaps_path);
	ck_assert_int_eq(discover_scan(d, true), -ENOENT);
}
END_TEST

/*
 * A range another userfaultfd of the process has (a forked worker's
 * inherited memory, served by its parent's engine) refuses registration
 * with -EBUSY: kept out, left alone by quick scans, tried again by full
 * ones, and taken once the other lets go (the parent handed it over).
 */
START_TEST(busy_retried_by_full_scans)
{
	struct vma v[] = {
		{ A(0), A(10), "rw-p", NULL, "um" },
		{ A(20), A(30), "rw-p", NULL, NULL },
	};
	write_files(v, 2);
	rec.busy = A(0);
	ck_assert_int_eq(discover_scan(d, true), 1);
	expect_calls((const uintptr_t[][2]){ { A(20), A(30) } }, 1);
	ck_assert_int_eq(rec.nbusy, 1);
	ck_assert_int_eq(discover_scan(d, false), 0); /* a quick scan trusts the table */
	ck_assert_int_eq(rec.nbusy, 1);
	v[1].flags = "um"; /* ours now */
	write_files(v, 2);
	ck_assert_int_eq(discover_scan(d, true), 0); /* still the other's */
	ck_assert_int_eq(rec.nbusy, 2);
	ck_assert_int_eq(rec.n, 0);
	rec.busy = 0;
	v[0].flags = NULL; /* handed over: no longer registered */
	write_files(v, 2);
	ck_assert_int_eq(discover_scan(d, false), 0);
	ck_assert_int_eq(discover_scan(d, true), 1);
	expect_calls((const uintptr_t[][2]){ { A(0), A(10) } }, 1);
	struct discover_stats st;
	discover_get_stats(d, &st);
	ck_assert_uint_eq(st.failed, 2);
	ck_assert_uint_eq(st.managed_bytes, 20 * P);
}
END_TEST

START_TEST(exclusions)
{
	discover_exclude(d, A(10), A(20));
	discover_exclude(d, A(30), A(40));
	discover_exclude(d, A(20), A(30)); /* bridges both */
	ck_assert(discover_excluded(d, A(15), A(35)));
	ck_assert(discover_excluded(d, A(39), A(41)));
	ck_assert(!discover_excluded(d, A(40), A(41)));
	ck_assert(!discover_excluded(d, A(0), A(10)));
	discover_exclude(d, A(50) + 1, A(50) + 2); /* rounds out to the page */
	ck_assert(discover_excluded(d, A(50), A(51)));
	ck_assert(!discover_excluded(d, A(51), A(52)));
	/* more than the table holds: never fewer pages excluded */
	for (int i = 0; i < DISCOVER_EXCL_MAX + 20; i++)
		discover_exclude(d, A(1000 + 4 * i), A(1001 + 4 * i));
	for (int i = 0; i < DISCOVER_EXCL_MAX + 20; i++)
		ck_assert(discover_excluded(d, A(1000 + 4 * i), A(1001 + 4 * i)));
	ck_assert(discover_excluded(d, A(10), A(11)));
	ck_assert(!discover_excluded(d, A(0), A(10)));
	const struct vma v[] = { { A(0), A(60), "rw-p", NULL, NULL } };
	write_files(v, 1);
	ck_assert_int_eq(discover_scan(d, true), 3);
	expect_calls((const uintptr_t[][2]){ { A(0), A(10) }, { A(40), A(50) }, { A(51), A(60) } },
		     3);
}
END_TEST

START_TEST(exclude_present)
{
	const struct vma v[] = {
		{ A(0), A(10), "rw-p", "[heap]", NULL }, /* the heap stays manageable */
		{ A(10), A(20), "rw-p", NULL, NULL },    /* ld.so's malloc, say */
		{ A(20), A(40), "rw-p", NULL, NULL },    /* the executable's .bss inside */
		{ A(50), A(60), "rw-p", "/lib/libc.so.6", NULL },
	};
	write_files(v, 4);
	const uintptr_t keep[][2] = { { A(25), A(30) }, { A(35), A(45) } };
	ck_assert_int_eq(discover_exclude_present(d, keep, 2), 0);
	ck_assert(!discover_excluded(d, A(0), A(10)));
	ck_assert(discover_excluded(d, A(10), A(11)));
	ck_assert(discover_excluded(d, A(24), A(25)));
	ck_assert(!discover_excluded(d, A(25), A(30)));
	ck_assert(discover_excluded(d, A(30), A(31)));
	ck_assert(discover_excluded(d, A(34), A(35)));
	ck_assert(!discover_excluded(d, A(35), A(40)));
	ck_assert(!discover_excluded(d, A(50), A(60)));
	ck_assert_int_eq(discover_scan(d, false), 3);
	expect_calls((const uintptr_t[][2]){ { A(0), A(10) }, { A(25), A(30) }, { A(35), A(40) } },
		     3);
}
END_TEST

Suite *discover_suite(void)
{
	Suite *s = suite_create("discover");
	TCase *tc = tcase_create("scan");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, first_scan);
	tcase_add_test(tc, quick_scans);
	tcase_add_test(tc, dontfork_managed);
	tcase_add_test(tc, keep_out);
	tcase_add_test(tc, callback_errors);
	tcase_add_test(tc, busy_retried_by_full_scans);
	tcase_add_test(tc, exclusions);
	tcase_add_test(tc, exclude_present);
	suite_add_tcase(s, tc);
	return s;
}

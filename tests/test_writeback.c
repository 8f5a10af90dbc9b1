/*
 * test_writeback — the tier below the pool: the file's slot layout and
 * space, the pool cap with its hysteresis, pages moving to the file oldest
 * first and coming back right (checked against the pages they were made
 * from), fork views of written-back pages, and failures that lose nothing:
 * a full file system (a 1 MiB tmpfs), injected EIO, a short read, and the
 * file gone however the process ends.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/index.h"
#include "core/stats.h"
#include "core/store.h"
#include "core/writeback.h"
#include "tests/corpus.h"
#include "tests/logcap.h"

#define PAGE 4096UL

static struct stats st;
static char dir[64];    /* a fresh directory per test */
static bool mounted;    /* dir is a tmpfs of ours */

static void setup(void)
{
	stats_init(&st);
	snprintf(dir, sizeof(dir), "/tmp/zswapu-wb-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	mounted = false;
}

static void teardown(void)
{
	writeback_inject_fail(WRITEBACK_OP_WRITE, 0, 0);
	writeback_inject_fail(WRITEBACK_OP_READ, 0, 0);
	if (mounted)
		umount2(dir, MNT_DETACH);
	rmdir(dir);
}

/* A tmpfs of @size at dir (root only): false when it cannot be mounted. */
static bool mount_small(const char *size)
{
	char opt[32];
	snprintf(opt, sizeof(opt), "size=%s,mode=0700", size);
	mounted = mount("tmpfs", dir, "tmpfs", 0, opt) == 0;
	return mounted;
}

static size_t dir_entries(const char *d)
{
	DIR *dp = opendir(d);
	ck_assert_ptr_nonnull(dp);
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(dp)))
		n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
	closedir(dp);
	return n;
}

static uint64_t counter(enum stats_counter id)
{
	return atomic_load(&st.c[id]);
}

static struct store *make_store(size_t max_pool, const char *wbdir)
{
	struct store_options o;
	store_options_default(&o);
	o.max_pool = max_pool;
	o.writeback_dir = wbdir;
	struct store *s;
	ck_assert_int_eq(store_create(&o, &st, &s), 0);
	return s;
}

static const uintptr_t base = 0x100000000UL;

/* Store pages 0..n-1 (text-like, seeded by index + @gen), writing back
 * after every 64 as the reclaimer does after a batch. */
static void fill(struct store *s, size_t n, uint64_t gen)
{
	uint8_t p[PAGE];
	for (size_t i = 0; i < n; i++) {
		corpus_text_page(p, i * 7919 + gen);
		int err = store_page(s, base + i * PAGE, p);
		ck_assert_msg(err == 0 || err == -ENOSPC, "store %zu: %d", i, err);
		if (i % 64 == 63)
			store_writeback(s);
	}
	store_writeback(s);
}

/* Load page @i and compare it with what was stored. */
static bool page_back_ok(struct store *s, size_t i, uint64_t gen)
{
	uint8_t want[PAGE], got[PAGE];
	corpus_text_page(want, i * 7919 + gen);
	return store_load(s, base + i * PAGE, got) == 0 && memcmp(want, got, PAGE) == 0;
}

static bool written_back(struct store *s, size_t i)
{
	struct index_entry *e;
	if (index_get(store_index(s), base + i * PAGE, &e))
		return false;
	bool wb = e->flags & INDEX_WRITTEN_BACK;
	index_entry_put(e); /* the tree still holds it: never the last */
	return wb;
}

/* ---- the file ---- */

START_TEST(slots_pack_and_space_comes_back)
{
	struct writeback *wb;
	ck_assert_int_eq(writeback_create(dir, &st, &wb), 0);
	ck_assert_uint_eq(dir_entries(dir), 0); /* O_TMPFILE: no name */
	enum { N = 600 };
	uint64_t off[N];
	size_t len[N];
	for (int i = 0; i < N; i++) {
		len[i] = 1 + (size_t)(corpus_mix64(i) % 4096);
		ck_assert_int_eq(writeback_alloc(wb, len[i], &off[i]), 0);
		/* in a block of its class, at a slot boundary, inside the block */
		size_t slot = (len[i] + 63) / 64 * 64;
		ck_assert_uint_eq(off[i] % WRITEBACK_BLOCK % slot, 0);
		ck_assert_uint_le(off[i] % WRITEBACK_BLOCK + slot, WRITEBACK_BLOCK);
	}
	for (int i = 0; i < N; i++) /* no two overlap */
		for (int j = i + 1; j < N; j++)
			ck_assert(off[i] + len[i] <= off[j] || off[j] + len[j] <= off[i]);
	ck_assert_uint_gt(counter(STAT_WB_FILE_BYTES), 0);
	/* write them all in batches, read each back */
	uint8_t *buf = writeback_wbuf(wb);
	for (int i = 0; i < N; i += WRITEBACK_BATCH) {
		struct writeback_io io[WRITEBACK_BATCH];
		unsigned int n = 0;
		size_t pos = 0;
		for (int k = i; k < N && n < WRITEBACK_BATCH && pos + 4096 <= WRITEBACK_WBUF; k++) {
			memset(buf + pos, 'a' + k % 26, len[k]);
			io[n++] = (struct writeback_io){ off[k], buf + pos, (uint32_t)len[k], 0 };
			pos += len[k];
		}
		ck_assert_uint_eq(writeback_write(wb, io, n), n);
		i -= WRITEBACK_BATCH - (int)n;
	}
	for (int i = 0; i < N; i++) {
		uint8_t got[4096];
		ck_assert_int_eq(writeback_read(wb, off[i], len[i], got), 0);
		for (size_t k = 0; k < len[i]; k++)
			ck_assert_int_eq(got[k], 'a' + i % 26);
	}
	ck_assert_uint_eq(counter(STAT_WB_READS), N);
	struct stat sb;
	fstat(writeback_fd(wb), &sb);
	ck_assert_uint_gt(sb.st_blocks, 0);
	for (int i = 0; i < N; i++)
		writeback_free(wb, off[i], len[i]);
	/* every block emptied: its space went back to the file system */
	ck_assert_uint_eq(counter(STAT_WB_FILE_BYTES), 0);
	ck_assert_uint_eq(counter(STAT_WB_LIVE_BYTES), 0);
	fstat(writeback_fd(wb), &sb);
	ck_assert_uint_eq(sb.st_blocks, 0);
	writeback_destroy(wb);
}
END_TEST

START_TEST(bad_directory_is_one_line)
{
	struct writeback *wb;
	char buf[1024];
	struct logcap c;
	logcap_begin(&c);
	int err = writeback_create("/nonexistent/zswapu", &st, &wb);
	logcap_end(&c, buf, sizeof(buf));
	ck_assert_int_eq(err, -ENOENT);
	ck_assert_ptr_nonnull(strstr(buf, "/nonexistent/zswapu"));
	ck_assert_ptr_eq(strchr(buf, '\n'), buf + strlen(buf) - 1);
	/* a store with it works on without writeback */
	logcap_begin(&c);
	struct store *s = make_store(64 * 1024, "/nonexistent/zswapu");
	logcap_end(&c, buf, sizeof(buf));
	ck_assert_ptr_null(store_writeback_file(s));
	store_destroy(s);
}
END_TEST

/* ---- the cap ---- */

START_TEST(cap_writes_back_oldest_first_and_data_returns)
{
	enum { N = 4096 };
	size_t cap = 512 * 1024;
	struct store *s = make_store(cap, dir);
	ck_assert_ptr_nonnull(store_writeback_file(s));
	fill(s, N, 1);
	/* the pool holds at most its cap and a batch; most pages are in the file */
	ck_assert_uint_le(store_pool_bytes(s), cap + 64 * PAGE);
	ck_assert_uint_gt(counter(STAT_WB_STORED_PAGES), N / 2);
	ck_assert_uint_eq(counter(STAT_WRITTEN_BACK_PAGES), counter(STAT_WB_STORED_PAGES));
	ck_assert_uint_eq(counter(STAT_REJECT_POOL_LIMIT), 0);
	ck_assert_uint_gt(counter(STAT_POOL_LIMIT_HIT), 0);
	/* compressed: what was written is what the pages compressed to */
	ck_assert_uint_lt(counter(STAT_WRITEBACK_BYTES), counter(STAT_WRITTEN_BACK_PAGES) * PAGE / 2);
	ck_assert_uint_eq(counter(STAT_WB_LIVE_BYTES), counter(STAT_WRITEBACK_BYTES));
	/* LRU: the first stored went first, the last are still in the pool */
	ck_assert(written_back(s, 0));
	ck_assert(written_back(s, 100));
	ck_assert(!written_back(s, N - 1));
	for (size_t i = 0; i < N; i++)
		ck_assert_msg(page_back_ok(s, i, 1), "page %zu", i);
	ck_assert_uint_eq(counter(STAT_WB_READS), counter(STAT_WRITTEN_BACK_PAGES));
	ck_assert_uint_eq(counter(STAT_WB_STORED_PAGES), 0);
	ck_assert_uint_eq(counter(STAT_WB_LIVE_BYTES), 0);
	ck_assert_uint_eq(counter(STAT_WB_FILE_BYTES), 0);
	ck_assert_uint_eq(counter(STAT_STORED_PAGES), 0);
	store_destroy(s);
}
END_TEST

/*
 * A page stored, loaded and stored again has two LRU records, which can pop
 * in one batch: the entry must be written once (taking it twice freed its
 * pool handle twice, the second time as a file offset: sqlite3 crashed).
 */
START_TEST(page_stored_twice_is_written_back_once)
{
	/*
	 * LRU: records of pages 0..63 (loaded since: stale), page 0's second
	 * record, pages 64..71.  The stale records add nothing to the batch,
	 * so both records of page 0 land in the first one.
	 */
	enum { N = 64, M = 8 };
	struct store *s = make_store(4096, dir);
	uint8_t p[PAGE];
	for (size_t i = 0; i < N; i++) {
		corpus_text_page(p, i * 7919 + 5);
		ck_assert_int_eq(store_page(s, base + i * PAGE, p), 0);
	}
	for (size_t i = 0; i < N; i++)
		ck_assert(page_back_ok(s, i, 5)); /* the load drops the entry */
	for (size_t i = 0; i <= M; i++) {
		size_t pg = i ? N + i - 1 : 0;
		corpus_text_page(p, pg * 7919 + 5);
		ck_assert_int_eq(store_page(s, base + pg * PAGE, p), 0);
	}
	store_writeback(s);
	ck_assert_uint_gt(counter(STAT_WB_STORED_PAGES), 0);
	ck_assert_uint_le(counter(STAT_WB_STORED_PAGES), M + 1);
	ck_assert_uint_eq(counter(STAT_WB_STORED_PAGES), counter(STAT_WRITTEN_BACK_PAGES));
	ck_assert(page_back_ok(s, 0, 5));
	for (size_t i = N; i < N + M; i++)
		ck_assert_msg(page_back_ok(s, i, 5), "page %zu", i);
	ck_assert_uint_eq(counter(STAT_WB_LIVE_BYTES), 0);
	store_destroy(s);
}
END_TEST

START_TEST(invalidate_and_replace_free_file_space)
{
	enum { N = 2048 };
	struct store *s = make_store(256 * 1024, dir);
	fill(s, N, 2);
	ck_assert_uint_gt(counter(STAT_WB_LIVE_BYTES), 0);
	/* a new store over half of them replaces their entries */
	fill(s, N / 2, 3);
	for (size_t i = 0; i < N / 2; i++)
		ck_assert(page_back_ok(s, i, 3));
	for (size_t i = N / 2; i < N; i++)
		ck_assert(page_back_ok(s, i, 2));
	fill(s, N, 4);
	ck_assert_uint_eq(store_invalidate(s, base, N * PAGE), N);
	ck_assert_uint_eq(counter(STAT_WB_LIVE_BYTES), 0);
	ck_assert_uint_eq(counter(STAT_WB_FILE_BYTES), 0);
	ck_assert_uint_eq(counter(STAT_WB_STORED_PAGES), 0);
	struct stat sb;
	fstat(writeback_fd(store_writeback_file(s)), &sb);
	ck_assert_uint_eq(sb.st_blocks, 0);
	store_destroy(s);
}
END_TEST

START_TEST(cap_without_file_rejects_with_hysteresis)
{
	size_t cap = 1024 * 1024; /* 256 pages: an invalidate frees about one */
	struct store *s = make_store(cap, NULL);
	uint8_t p[PAGE];
	size_t i = 0;
	int err = 0;
	for (; i < 16384 && !err; i++) {
		corpus_text_page(p, i);
		err = store_page(s, base + i * PAGE, p);
	}
	ck_assert_int_eq(err, -ENOSPC);
	ck_assert_uint_eq(counter(STAT_REJECT_POOL_LIMIT), 1);
	ck_assert_uint_eq(counter(STAT_POOL_LIMIT_HIT), 1);
	ck_assert(store_pool_full(s));
	ck_assert_uint_ge(store_pool_bytes(s), cap);
	/* same-filled pages need no pool: still taken */
	memset(p, 0, PAGE);
	ck_assert_int_eq(store_page(s, base + 20001 * PAGE, p), 0);
	/* a page whose data exists nowhere else is never refused */
	corpus_text_page(p, 99999);
	ck_assert_int_eq(store_page_raw(s, base + 20002 * PAGE, p), 0);
	/* under the cap but above accept (90 %): still refused */
	size_t k = 0;
	while (store_pool_bytes(s) >= cap) {
		store_invalidate(s, base + k++ * PAGE, PAGE);
		store_compact(s);
	}
	ck_assert_uint_ge(store_pool_bytes(s), cap / 100 * 90);
	corpus_text_page(p, 5);
	ck_assert_int_eq(store_page(s, base + 20000 * PAGE, p), -ENOSPC);
	/* under accept: taken again */
	while (store_pool_bytes(s) >= cap / 100 * 90) {
		store_invalidate(s, base + k++ * PAGE, PAGE);
		store_compact(s);
	}
	ck_assert_int_eq(store_page(s, base + 20000 * PAGE, p), 0);
	ck_assert(!store_pool_full(s));
	ck_assert_uint_eq(counter(STAT_REJECT_POOL_LIMIT), 2);
	store_destroy(s);
}
END_TEST

/* ---- fork views ---- */

START_TEST(fork_view_reads_written_back_pages)
{
	enum { N = 2048 };
	struct store *s = make_store(256 * 1024, dir);
	fill(s, N / 2, 5);
	struct stats cst;
	stats_init(&cst);
	struct store *child;
	ck_assert_int_eq(store_fork(s, &cst, &child), 0);
	/* the parent goes on: its older pages, shared with the child, move */
	for (size_t i = N / 2; i < N; i++) {
		uint8_t p[PAGE];
		corpus_text_page(p, i * 7919 + 5);
		ck_assert_int_eq(store_page(s, base + i * PAGE, p), 0);
		if (i % 64 == 0)
			store_writeback(s);
	}
	store_writeback(s);
	ck_assert(written_back(s, 0));
	for (size_t i = 0; i < N / 2; i++)
		ck_assert_msg(page_back_ok(child, i, 5), "child page %zu", i);
	for (size_t i = 0; i < N; i++)
		ck_assert_msg(page_back_ok(s, i, 5), "parent page %zu", i);
	store_destroy(child);
	ck_assert_uint_eq(counter(STAT_WB_LIVE_BYTES), 0);
	store_destroy(s);
}
END_TEST

/* ---- failures lose nothing ---- */

/* Every page 0..n-1 that was stored comes back as generation @gen (a page
 * refused at the cap, -ENOENT, stayed with the program). */
static void all_back(struct store *s, size_t n, uint64_t gen)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t got[PAGE], want[PAGE];
		int err = store_load(s, base + i * PAGE, got);
		if (err == -ENOENT)
			continue;
		ck_assert_msg(err == 0, "page %zu: %d", i, err);
		corpus_text_page(want, i * 7919 + gen);
		ck_assert_msg(memcmp(got, want, PAGE) == 0, "page %zu lost", i);
	}
}

START_TEST(full_file_system_stops_writeback)
{
	if (geteuid() != 0 || !mount_small("1M")) {
		fprintf(stderr, "SKIP %s: cannot mount a tmpfs here\n", __func__);
		return;
	}
	enum { N = 4096 }; /* ~8 MiB of data, 3 MiB compressed: 1 MiB fills */
	struct store *s = make_store(128 * 1024, dir);
	char buf[4096];
	struct logcap c;
	logcap_begin(&c);
	fill(s, N, 6);
	logcap_end(&c, buf, sizeof(buf));
	ck_assert(!writeback_usable(store_writeback_file(s)));
	ck_assert_uint_ge(counter(STAT_WB_ERRORS), 1);
	ck_assert_uint_gt(counter(STAT_WB_STORED_PAGES), 100);
	ck_assert_uint_gt(counter(STAT_REJECT_POOL_LIMIT), 0); /* then the cap refused */
	ck_assert_msg(strstr(buf, "No space left on device"), "message: %s", buf);
	ck_assert_ptr_eq(strchr(buf, '\n'), buf + strlen(buf) - 1); /* one line */
	/* stored pages all come back (from the file and the pool) */
	all_back(s, N, 6);
	store_destroy(s);
}
END_TEST

START_TEST(injected_write_error_loses_nothing)
{
	enum { N = 2048 };
	struct store *s = make_store(256 * 1024, dir);
	writeback_inject_fail(WRITEBACK_OP_WRITE, EIO, 300);
	char buf[4096];
	struct logcap c;
	logcap_begin(&c);
	fill(s, N, 7);
	logcap_end(&c, buf, sizeof(buf));
	ck_assert(!writeback_usable(store_writeback_file(s)));
	ck_assert_uint_eq(counter(STAT_WB_ERRORS), 1);
	ck_assert_uint_ge(counter(STAT_WRITTEN_BACK_PAGES), 256);
	ck_assert_ptr_nonnull(strstr(buf, "Input/output error"));
	ck_assert_ptr_eq(strchr(buf, '\n'), buf + strlen(buf) - 1);
	all_back(s, N, 7);
	store_destroy(s);
}
END_TEST

START_TEST(read_errors_retried_short_read_is_an_error)
{
	enum { N = 1024 };
	struct store *s = make_store(128 * 1024, dir);
	fill(s, N, 8);
	ck_assert(written_back(s, 0));
	ck_assert(written_back(s, 1));
	/* one failed read: retried, the data comes back */
	writeback_inject_fail(WRITEBACK_OP_READ, EIO, 1);
	ck_assert(page_back_ok(s, 0, 8));
	ck_assert(writeback_usable(store_writeback_file(s)));
	/* the file cut short under it: reads come back short, an error */
	ck_assert_int_eq(ftruncate(writeback_fd(store_writeback_file(s)), 0), 0);
	uint8_t got[PAGE];
	char buf[1024];
	struct logcap c;
	logcap_begin(&c);
	ck_assert_int_eq(store_load(s, base + 1 * PAGE, got), -EIO);
	logcap_end(&c, buf, sizeof(buf));
	ck_assert_ptr_nonnull(strstr(buf, "reading from the file"));
	ck_assert_uint_eq(counter(STAT_DECOMPRESS_FAIL), 0); /* never fed to lz4 */
	ck_assert(written_back(s, 1)); /* the entry stays */
	store_destroy(s);
}
END_TEST

/* ---- the file never outlives the process ---- */

/*
 * A child that writes back and then ends as @how says (0 exit, 1 _exit,
 * 2 waits to be killed).  While it runs, its file is an open descriptor
 * "<dir>/#N (deleted)" and the directory is empty; after, the tmpfs has
 * all its space back.
 */
static void child_ends(int how)
{
	struct statvfs before, after;
	ck_assert_int_eq(statvfs(dir, &before), 0);
	int pfd[2];
	ck_assert_int_eq(pipe(pfd), 0);
	pid_t pid = fork();
	if (pid == 0) {
		struct store *s = make_store(64 * 1024, dir);
		fill(s, 1024, 9);
		char ok = writeback_usable(store_writeback_file(s)) &&
			  atomic_load(&st.c[STAT_WB_STORED_PAGES]) > 0;
		ssize_t w = write(pfd[1], &ok, 1);
		(void)w;
		if (how == 0)
			exit(0);
		if (how == 1)
			_exit(0);
		pause();
		_exit(1);
	}
	close(pfd[1]);
	char ok = 0;
	ck_assert_int_eq(read(pfd[0], &ok, 1), 1);
	ck_assert_int_eq(ok, 1);
	close(pfd[0]);
	if (how == 2) { /* look while it runs */
		char fddir[64], link[512], target[512];
		snprintf(fddir, sizeof(fddir), "/proc/%d/fd", pid);
		DIR *dp = opendir(fddir);
		ck_assert_ptr_nonnull(dp);
		bool seen = false;
		struct dirent *de;
		while ((de = readdir(dp))) {
			snprintf(link, sizeof(link), "%s/%s", fddir, de->d_name);
			ssize_t n = readlink(link, target, sizeof(target) - 1);
			if (n <= 0)
				continue;
			target[n] = '\0';
			if (!strncmp(target, dir, strlen(dir)))
				seen |= strstr(target, "(deleted)") != NULL;
		}
		closedir(dp);
		ck_assert(seen);
		ck_assert_uint_eq(dir_entries(dir), 0);
		struct statvfs during;
		statvfs(dir, &during);
		ck_assert_uint_lt(during.f_bfree, before.f_bfree); /* it holds space */
		kill(pid, SIGKILL);
	}
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(how == 2 ? WIFSIGNALED(status) : WIFEXITED(status) && !WEXITSTATUS(status));
	ck_assert_uint_eq(dir_entries(dir), 0);
	ck_assert_int_eq(statvfs(dir, &after), 0);
	ck_assert_uint_eq(after.f_bfree, before.f_bfree);
}

START_TEST(file_gone_after_exit_exit_and_kill)
{
	if (geteuid() != 0 || !mount_small("64M")) {
		fprintf(stderr, "SKIP %s: cannot mount a tmpfs here\n", __func__);
		return;
	}
	child_ends(0);
	child_ends(1);
	child_ends(2);
}
END_TEST

Suite *writeback_suite(void)
{
	Suite *s = suite_create("writeback");
	TCase *tc = tcase_create("basic");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, slots_pack_and_space_comes_back);
	tcase_add_test(tc, bad_directory_is_one_line);
	tcase_add_test(tc, cap_writes_back_oldest_first_and_data_returns);
	tcase_add_test(tc, page_stored_twice_is_written_back_once);
	tcase_add_test(tc, invalidate_and_replace_free_file_space);
	tcase_add_test(tc, cap_without_file_rejects_with_hysteresis);
	tcase_add_test(tc, fork_view_reads_written_back_pages);
	tcase_add_test(tc, full_file_system_stops_writeback);
	tcase_add_test(tc, injected_write_error_loses_nothing);
	tcase_add_test(tc, read_errors_retried_short_read_is_an_error);
	tcase_add_test(tc, file_gone_after_exit_exit_and_kill);
	suite_add_tcase(s, tc);
	return s;
}

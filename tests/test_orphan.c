/*
 * orphan suite: a forked child whose parent is SIGKILLed takes over its
 * own pages (core/orphan.h).  A process P (so that the test process lives
 * on) stores N pages, forks C and, once C has read some of them, discarded
 * some and moved some while P served it, kills itself.  C then checks
 * every page against what it must be: the ones it read, right; the ones
 * it discarded, zeros; the ones still stored, moved or not, SIGBUS; the
 * registered memory P never stored, zeros.  Never a page of wrong data.
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/engine.h"
#include "core/orphan.h"

#define PAGE 4096UL

enum {
	N = 2048,        /* stored pages */
	READ_END = 128,  /* [0, READ_END): read by C while P lives */
	DROP_END = 1024, /* [READ_END, DROP_END): discarded by C while P lives */
	MOVE_END = 1536, /* [DROP_END, MOVE_END): moved by C while P lives */
	FRESH = 256,     /* registered by P, never touched */
};

struct verdict {
	long right, zeros, bus, wrong, moved_bus, fresh_zeros;
	uint64_t rescued, poisoned;
	int setup; /* 0, or the step that failed in P or C */
};

static unsigned char pat(size_t page, size_t i)
{
	return (unsigned char)(page * 13 + i / 8 + 7) | 1; /* never 0 */
}

static sigjmp_buf bus_jump;

static void on_bus(int sig)
{
	(void)sig;
	siglongjmp(bus_jump, 1);
}

/* 0 right, 1 zeros, 2 SIGBUS, 3 anything else; @want_page: the pattern's page number */
static int page_state(const unsigned char *p, size_t want_page)
{
	if (sigsetjmp(bus_jump, 1))
		return 2;
	bool right = true, zero = true;
	for (size_t i = 0; i < PAGE; i += 16) {
		right &= p[i] == pat(want_page, i);
		zero &= p[i] == 0;
	}
	return right ? 0 : zero ? 1 : 3;
}

static void child(unsigned char *m, unsigned char *fresh, unsigned char *dest, pid_t parent,
		  int go, int out, bool single_drops)
{
	struct verdict v = { 0 };
	/* while P lives: read some, discard some, move some */
	for (size_t p = 0; p < READ_END; p++)
		if (page_state(m + p * PAGE, p) != 0)
			v.setup = 10;
	if (single_drops) { /* one event each: the log outgrows its snapshot */
		for (size_t p = READ_END; p < DROP_END; p++)
			if (madvise(m + p * PAGE, PAGE, MADV_DONTNEED))
				v.setup = 11;
	} else if (madvise(m + READ_END * PAGE, (DROP_END - READ_END) * PAGE, MADV_DONTNEED)) {
		v.setup = 11;
	}
	if (mremap(m + DROP_END * PAGE, (MOVE_END - DROP_END) * PAGE, (MOVE_END - DROP_END) * PAGE,
		   MREMAP_MAYMOVE | MREMAP_FIXED, dest) != dest)
		v.setup = 12;
	if (write(go, "", 1) != 1)
		v.setup = 13;
	for (int i = 0; i < 1000 && getppid() == parent; i++)
		usleep(10000);
	if (getppid() == parent)
		v.setup = 14;
	struct sigaction sa = { .sa_handler = on_bus };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	for (volatile size_t p = 0; p < N; p++) {
		if (p >= DROP_END && p < MOVE_END)
			continue; /* moved away: below */
		int s = page_state(m + p * PAGE, p);
		v.right += s == 0;
		v.zeros += s == 1;
		v.bus += s == 2;
		v.wrong += s == 3;
	}
	for (volatile size_t p = DROP_END; p < MOVE_END; p++) {
		int s = page_state(dest + (p - DROP_END) * PAGE, p);
		v.moved_bus += s == 2;
		v.wrong += s != 2;
	}
	for (volatile size_t p = 0; p < FRESH; p++)
		v.fresh_zeros += page_state(fresh + p * PAGE, 0) == 1;
	v.rescued = atomic_load(&orphan_counters()->rescued);
	v.poisoned = atomic_load(&orphan_counters()->poisoned);
	_exit(write(out, &v, sizeof(v)) == (ssize_t)sizeof(v) ? 0 : 1);
}

/* P: store, fork C, let it work, die. */
static void parent(int out, bool single_drops)
{
	struct verdict bad = { 0 };
	unsigned char *m = mmap(NULL, N * PAGE, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned char *fresh = mmap(NULL, FRESH * PAGE, PROT_READ | PROT_WRITE,
				    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned char *dest = mmap(NULL, (MOVE_END - DROP_END) * PAGE, PROT_NONE,
				   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED || fresh == MAP_FAILED || dest == MAP_FAILED)
		bad.setup = 1;
	for (size_t p = 0; !bad.setup && p < N; p++)
		for (size_t i = 0; i < PAGE; i++)
			m[p * PAGE + i] = pat(p, i);
	struct engine_options o;
	engine_options_default(&o);
	struct engine *e;
	int err = bad.setup ? -1 : engine_create(&o, &e);
	if (err == -EOPNOTSUPP || err == -ENOSYS || err == -EPERM)
		bad.setup = 99; /* no userfaultfd here: skipped */
	else if (err)
		bad.setup = 2;
	if (!bad.setup && (engine_register(e, (uintptr_t)m, N * PAGE) ||
			   engine_register(e, (uintptr_t)fresh, FRESH * PAGE)))
		bad.setup = 3;
	if (!bad.setup && engine_reclaim(e, (uintptr_t)m, N * PAGE) != N)
		bad.setup = 4;
	if (bad.setup) {
		_exit(write(out, &bad, sizeof(bad)) == (ssize_t)sizeof(bad) ? 0 : 1);
	}
	struct engine_snapshot snap;
	engine_snapshot(e, &snap);
	int go[2];
	if (pipe(go))
		_exit(1);
	pid_t self = getpid();
	pid_t c = fork();
	if (c == 0) {
		close(go[0]);
		child(m, fresh, dest, self, go[1], out, single_drops);
	}
	close(go[1]);
	char b;
	if (c < 0 || read(go[0], &b, 1) != 1) {
		bad.setup = 5;
		_exit(write(out, &bad, sizeof(bad)) == (ssize_t)sizeof(bad) ? 0 : 1);
	}
	kill(self, SIGKILL);
	_exit(1);
}

START_TEST(sigkilled_parent)
{
	int out[2];
	ck_assert_int_eq(pipe(out), 0);
	pid_t p = fork();
	ck_assert_int_ge(p, 0);
	if (p == 0) {
		close(out[0]);
		parent(out[1], _i == 1);
	}
	close(out[1]);
	int status;
	ck_assert_int_eq(waitpid(p, &status, 0), p);
	struct verdict v;
	ssize_t got = read(out[0], &v, sizeof(v)); /* C's, or P's when it could not start */
	close(out[0]);
	ck_assert_int_eq(got, (ssize_t)sizeof(v));
	if (v.setup == 99) {
		fprintf(stderr, "SKIP %s: userfaultfd unusable here\n", __func__);
		return;
	}
	ck_assert_msg(v.setup == 0, "setup step %d failed", v.setup);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	fprintf(stderr, "orphan%s: %ld right, %ld zeros, %ld SIGBUS (+%ld moved), %ld wrong; "
			"%" PRIu64 " poisoned\n",
		_i ? " (single drops)" : "", v.right, v.zeros, v.bus, v.moved_bus, v.wrong,
		v.poisoned);
	ck_assert_int_eq(v.wrong, 0);
	ck_assert_int_eq(v.right, READ_END);
	ck_assert_int_eq(v.zeros, DROP_END - READ_END);
	ck_assert_int_eq(v.bus, N - MOVE_END);
	ck_assert_int_eq(v.moved_bus, MOVE_END - DROP_END);
	ck_assert_int_eq(v.fresh_zeros, FRESH);
	ck_assert_uint_eq(v.rescued, 1);
	ck_assert_uint_eq(v.poisoned, N - DROP_END);
}
END_TEST

/*
 * The parent lets go while it lives on (its engine shuts down: every page
 * handed over first): the child's watcher must let go too, at once, or the
 * child's next fault on registered memory waits for a reader that never
 * comes.  C reads half its pages while P serves them, P destroys its
 * engine and stays; C then reads everything (right), touches registered
 * memory that was never stored (zeros, no hang), and nothing is poisoned.
 */
START_TEST(parent_lets_go)
{
	int out[2], go[2], done[2];
	ck_assert_int_eq(pipe(out), 0);
	ck_assert_int_eq(pipe(go), 0);
	ck_assert_int_eq(pipe(done), 0);
	pid_t p = fork();
	ck_assert_int_ge(p, 0);
	if (p == 0) {
		struct verdict v = { 0 };
		unsigned char *m = mmap(NULL, N * PAGE, PROT_READ | PROT_WRITE,
					MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		unsigned char *fresh = mmap(NULL, FRESH * PAGE, PROT_READ | PROT_WRITE,
					    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		for (size_t q = 0; q < N; q++)
			for (size_t i = 0; i < PAGE; i++)
				m[q * PAGE + i] = pat(q, i);
		struct engine_options o;
		engine_options_default(&o);
		struct engine *e;
		int err = engine_create(&o, &e);
		if (err)
			v.setup = err == -EOPNOTSUPP || err == -ENOSYS || err == -EPERM ? 99 : 2;
		else if (engine_register(e, (uintptr_t)m, N * PAGE) ||
			 engine_register(e, (uintptr_t)fresh, FRESH * PAGE) ||
			 engine_reclaim(e, (uintptr_t)m, N * PAGE) != N)
			v.setup = 3;
		pid_t c = v.setup ? -1 : fork();
		if (c == 0) {
			char b;
			for (size_t q = 0; q < N / 2; q++)
				v.right += page_state(m + q * PAGE, q) == 0;
			if (write(go[1], "", 1) != 1 || read(done[0], &b, 1) != 1)
				v.setup = 20;
			/* the watcher lets go once the parent's end closes */
			for (int i = 0; i < 500 && orphan_watching(); i++)
				usleep(2000);
			if (orphan_watching())
				v.setup = 21;
			for (size_t q = N / 2; q < N; q++)
				v.right += page_state(m + q * PAGE, q) == 0;
			for (size_t q = 0; q < FRESH; q++)
				v.fresh_zeros += page_state(fresh + q * PAGE, 0) == 1;
			v.rescued = atomic_load(&orphan_counters()->rescued);
			v.poisoned = atomic_load(&orphan_counters()->poisoned);
			_exit(write(out[1], &v, sizeof(v)) == (ssize_t)sizeof(v) ? 0 : 1);
		}
		char b;
		if (c > 0 && read(go[0], &b, 1) == 1) {
			engine_destroy(e); /* hands the child every page, lets go */
			if (write(done[1], "", 1) != 1)
				_exit(1);
			int st;
			waitpid(c, &st, 0);
			_exit(0);
		}
		if (!v.setup)
			v.setup = 4;
		_exit(write(out[1], &v, sizeof(v)) == (ssize_t)sizeof(v) ? 0 : 1);
	}
	close(out[1]);
	struct verdict v;
	ssize_t got = read(out[0], &v, sizeof(v));
	close(out[0]);
	int status;
	ck_assert_int_eq(waitpid(p, &status, 0), p);
	ck_assert_int_eq(got, (ssize_t)sizeof(v));
	if (v.setup == 99) {
		fprintf(stderr, "SKIP %s: userfaultfd unusable here\n", __func__);
		return;
	}
	ck_assert_msg(v.setup == 0, "setup step %d failed", v.setup);
	ck_assert_int_eq(v.right, N);
	ck_assert_int_eq(v.fresh_zeros, FRESH);
	ck_assert_uint_eq(v.rescued, 1);
	ck_assert_uint_eq(v.poisoned, 0);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
END_TEST

Suite *orphan_suite(void)
{
	Suite *s = suite_create("orphan");
	TCase *tc = tcase_create("basic");
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, sigkilled_parent, 0, 2);
	tcase_add_test(tc, parent_lets_go);
	suite_add_tcase(s, tc);
	return s;
}

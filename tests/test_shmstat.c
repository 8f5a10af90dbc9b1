/*
 * test_shmstat — the live-stats segment: a round trip of every field, the
 * seqlock under a writer that never stops (no torn sample), readers of a
 * writer that exits mid-read, stale segments (dead PID, another start
 * time, exec'd, a half-made file) removed, damaged files refused, the
 * engine's own segment moving as pages are stored, and a reader's request
 * (zswapu release) reaching the engine.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/shmstat.h"
#include "core/uffd.h"
#include "libzswapu/zswapu.h"

#define PAGE 4096

static char dir[64];

static void make_dir(void)
{
	snprintf(dir, sizeof(dir), "/tmp/zswapu-shm.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void remove_dir(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}

static bool exists(const char *fmt, long pid)
{
	char name[64], path[160];
	snprintf(name, sizeof(name), fmt, pid);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return access(path, F_OK) == 0;
}

static void info_init(struct shmstat_info *in, unsigned n)
{
	memset(in, 0, sizeof(*in));
	snprintf(in->comm, sizeof(in->comm), "tester");
	snprintf(in->compressor, sizeof(in->compressor), "zstd:3");
	snprintf(in->pool, sizeof(in->pool), "zsmalloc");
	in->limit_bytes = 64 << 20;
	in->limit_pool = 1;
	in->cold_age_ms = 250;
	in->ncounters = n;
	for (unsigned i = 0; i < n; i++)
		snprintf(in->names[i], SHMSTAT_NAME_LEN, "counter_%u", i);
}

/* Every word of sample @k derives from k: a torn read mixes two k's. */
static void fill_sample(struct shmstat_sample *s, uint64_t k)
{
	memset(s, 0, sizeof(*s));
	for (unsigned i = 0; i < SHMSTAT_MAX_COUNTERS; i++)
		s->values[i] = k * 1000 + i;
	for (unsigned i = 0; i < STATS_LAT_BINS; i++) {
		s->load_ns[i] = k + i;
		s->fault_ns[i] = k * 3 + i;
	}
	s->nclasses = k % SHMSTAT_MAX_CLASSES;
	for (unsigned i = 0; i < SHMSTAT_MAX_CLASSES; i++)
		s->classes[i] = (struct shmstat_class){ i, 32 + 16 * i, k, k, k, k, k, i % 4 + 1 };
	s->npool = k % SHMSTAT_MAX_POOL_ROWS;
	for (unsigned i = 0; i < SHMSTAT_MAX_POOL_ROWS; i++) {
		snprintf(s->pool_names[i], SHMSTAT_NAME_LEN, "row%u_%llu", i, (unsigned long long)k);
		s->pool_values[i] = k ^ i;
	}
}

/* 0 when @s is exactly sample @k (as published: t_ns and number aside). */
static int sample_differs(const struct shmstat_sample *s, uint64_t k)
{
	static __thread struct shmstat_sample want;
	fill_sample(&want, k);
	want.t_ns = s->t_ns;
	want.number = s->number;
	return memcmp(&want, s, sizeof(want));
}

/* A fresh directory with this process's segment (4 counters) in it. */
static void start_writer(struct shmstat_writer *w)
{
	make_dir();
	struct shmstat_info in;
	info_init(&in, 4);
	ck_assert_int_eq(shmstat_create(dir, &in, w), 0);
}

START_TEST(round_trip)
{
	make_dir();
	struct shmstat_info in, got;
	info_init(&in, 40);
	struct shmstat_writer w;
	ck_assert_int_eq(shmstat_create(dir, &in, &w), 0);
	ck_assert(exists("zswapu.%ld", getpid()));
	ck_assert(!exists(".zswapu.%ld.tmp", getpid()));
	struct stat st;
	ck_assert_int_eq(stat(w.path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);

	struct shmstat_reader r;
	ck_assert_int_eq(shmstat_open(dir, getpid(), &r), 0);
	shmstat_info(&r, &got);
	ck_assert_str_eq(got.comm, "tester");
	ck_assert_str_eq(got.compressor, "zstd:3");
	ck_assert_str_eq(got.pool, "zsmalloc");
	ck_assert_uint_eq(got.limit_bytes, 64 << 20);
	ck_assert_uint_eq(got.cold_age_ms, 250);
	ck_assert_uint_eq(got.ncounters, 40);
	ck_assert_int_eq(shmstat_find(&got, "counter_17"), 17);
	ck_assert_int_eq(shmstat_find(&got, "counter_40"), -1);
	ck_assert(shmstat_alive(&r));

	static struct shmstat_sample s, out;
	ck_assert_int_eq(shmstat_read(&r, &out), 0); /* nothing published: zeros */
	ck_assert_uint_eq(out.number, 0);
	ck_assert_uint_eq(out.values[0], 0);
	for (uint64_t k = 1; k <= 3; k++) {
		fill_sample(&s, k * 7);
		shmstat_publish(&w, &s);
		ck_assert_int_eq(shmstat_read(&r, &out), 0);
		ck_assert_int_eq(sample_differs(&out, k * 7), 0);
		ck_assert_uint_eq(out.number, k - 1);
		ck_assert_uint_gt(out.t_ns, 0);
	}
	pid_t pids[4];
	ck_assert_int_eq(shmstat_list(dir, pids, 4), 1);
	ck_assert_int_eq(pids[0], getpid());

	shmstat_destroy(&w);
	ck_assert(!exists("zswapu.%ld", getpid()));
	/* the reader's mapping outlives the file */
	ck_assert_int_eq(shmstat_read(&r, &out), 0);
	ck_assert_int_eq(sample_differs(&out, 21), 0);
	shmstat_close(&r);
	ck_assert_int_eq(shmstat_open(dir, getpid(), &r), -ENOENT);
	ck_assert_int_eq(shmstat_list(dir, pids, 4), 0);
	remove_dir();
}
END_TEST

START_TEST(requests_reach_the_writer)
{
	struct shmstat_writer w;
	uint64_t lim = 7;
	start_writer(&w);
	ck_assert_uint_eq(shmstat_take_requests(&w, &lim), 0);
	ck_assert_int_eq(shmstat_request(dir, getpid(), SHMSTAT_REQ_RELEASE), 0);
	ck_assert_int_eq(shmstat_request(dir, getpid(), SHMSTAT_REQ_RELEASE), 0);
	ck_assert_uint_eq(shmstat_take_requests(&w, &lim), SHMSTAT_REQ_RELEASE);
	ck_assert_uint_eq(shmstat_take_requests(&w, &lim), 0); /* taken once */
	ck_assert_uint_eq(lim, 7); /* no limit asked: left alone */
	/* the last limit asked wins; a plain request cannot ask one */
	ck_assert_int_eq(shmstat_request_limit(dir, getpid(), 64 << 20), 0);
	ck_assert_int_eq(shmstat_request(dir, getpid(), SHMSTAT_REQ_LIMIT), 0);
	ck_assert_int_eq(shmstat_request_limit(dir, getpid(), 48 << 20), 0);
	ck_assert_int_eq(shmstat_request(dir, getpid(), SHMSTAT_REQ_RELEASE), 0);
	ck_assert_uint_eq(shmstat_take_requests(&w, &lim), SHMSTAT_REQ_RELEASE | SHMSTAT_REQ_LIMIT);
	ck_assert_uint_eq(lim, 48 << 20);
	ck_assert_int_eq(shmstat_request(dir, getpid(), SHMSTAT_REQ_LIMIT), 0);
	ck_assert_uint_eq(shmstat_take_requests(&w, &lim), 0);
	ck_assert_int_eq(shmstat_request(dir, 0x7ffffff0, SHMSTAT_REQ_RELEASE), -ENOENT);
	shmstat_destroy(&w);
	ck_assert_int_eq(shmstat_request(dir, getpid(), SHMSTAT_REQ_RELEASE), -ENOENT);
	remove_dir();
}
END_TEST

START_TEST(too_many_counters)
{
	make_dir();
	struct shmstat_info in;
	info_init(&in, 1);
	in.ncounters = SHMSTAT_MAX_COUNTERS + 1;
	struct shmstat_writer w;
	ck_assert_int_eq(shmstat_create(dir, &in, &w), -EINVAL);
	ck_assert_int_eq(shmstat_create("/nonexistent/dir", &in, &w), -EINVAL);
	in.ncounters = 1;
	ck_assert_int_eq(shmstat_create("/nonexistent/dir", &in, &w), -ENOENT);
	remove_dir();
}
END_TEST

/* ---- the seqlock: a writer that never pauses, readers that check every word ---- */

enum { TORN_SAMPLES = 20000 };

struct torn {
	struct shmstat_writer w;
	_Atomic bool done;
	_Atomic long reads; /* successful reads, both readers */
};

/*
 * Every so many samples the writer lets the readers finish a read: back to
 * back it can overtake a slow reader (under ThreadSanitizer) 4000 times in
 * a row, and shmstat_read() then gives up with -EAGAIN as for a writer
 * stuck mid-sample.  The engine writes every 100 ms; the bursts between
 * the pauses are what tests the seqlock.
 */
#define TORN_BURST 64

static void let_readers_read(struct torn *t)
{
	long want = atomic_load(&t->reads) + 2;
	for (int i = 0; i < 50000 && atomic_load(&t->reads) < want; i++)
		usleep(20); /* at most ~1 s: a stuck reader fails on its own */
}

static void *writer_main(void *arg)
{
	struct torn *t = arg;
	static struct shmstat_sample s;
	for (uint64_t k = 1; k <= TORN_SAMPLES; k++) {
		fill_sample(&s, k);
		shmstat_publish(&t->w, &s);
		/* the engine publishes every 100 ms; without any pause a
		 * reader could be overtaken forever */
		if (k % 4 == 0)
			usleep(10);
		if (k % TORN_BURST == 0)
			let_readers_read(t);
	}
	atomic_store(&t->done, true);
	return NULL;
}

static void *reader_main(void *arg)
{
	struct torn *t = arg;
	struct shmstat_reader r;
	ck_assert_int_eq(shmstat_open(dir, getpid(), &r), 0);
	struct shmstat_sample *s = malloc(sizeof(*s));
	uint64_t last = 0;
	long reads = 0;
	while (!atomic_load(&t->done) || reads < 10) {
		ck_assert_int_eq(shmstat_read(&r, s), 0);
		uint64_t k = s->values[0] / 1000;
		if (k) {
			ck_assert_msg(sample_differs(s, k) == 0, "sample %llu torn",
				      (unsigned long long)k);
			ck_assert_uint_ge(k, last); /* never back in time */
			last = k;
		}
		reads++;
		atomic_fetch_add(&t->reads, 1);
	}
	free(s);
	shmstat_close(&r);
	return NULL;
}

START_TEST(never_torn)
{
	make_dir();
	struct torn *t = calloc(1, sizeof(*t));
	struct shmstat_info in;
	info_init(&in, SHMSTAT_MAX_COUNTERS);
	ck_assert_int_eq(shmstat_create(dir, &in, &t->w), 0);
	pthread_t wr, rd[2];
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&rd[i], NULL, reader_main, t), 0);
	ck_assert_int_eq(pthread_create(&wr, NULL, writer_main, t), 0);
	pthread_join(wr, NULL);
	for (int i = 0; i < 2; i++)
		pthread_join(rd[i], NULL);
	shmstat_destroy(&t->w);
	free(t);
	remove_dir();
}
END_TEST

/* ---- a writer process that exits while it is read ---- */

START_TEST(writer_exits_mid_read)
{
	make_dir();
	int go[2];
	ck_assert_int_eq(pipe(go), 0);
	pid_t child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) {
		struct shmstat_info in;
		info_init(&in, 8);
		struct shmstat_writer w;
		if (shmstat_create(dir, &in, &w))
			_exit(3);
		static struct shmstat_sample s;
		char c = 1;
		for (uint64_t k = 1; k <= 3000; k++) {
			fill_sample(&s, k);
			shmstat_publish(&w, &s);
			if (k == 1 && write(go[1], &c, 1) != 1)
				_exit(4);
		}
		shmstat_destroy(&w);
		_exit(0); /* while the parent reads */
	}
	char c;
	ck_assert_int_eq(read(go[0], &c, 1), 1);
	struct shmstat_reader r;
	ck_assert_int_eq(shmstat_open(dir, child, &r), 0);
	struct shmstat_sample *s = malloc(sizeof(*s));
	int status;
	long reads = 0;
	while (waitpid(child, &status, WNOHANG) == 0 || reads < 100) {
		int err = shmstat_read(&r, s);
		/* a writer that rewrote the sample through all our tries (a
		 * slow reader: TSan) is alive, and we try again */
		if (err == -EAGAIN && shmstat_alive(&r))
			continue;
		ck_assert_int_eq(err, 0);
		uint64_t k = s->values[0] / 1000;
		ck_assert_int_eq(sample_differs(s, k), 0);
		reads++;
	}
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* its last sample is still readable, and the writer is known gone */
	ck_assert_int_eq(shmstat_read(&r, s), 0);
	ck_assert_uint_eq(s->values[0] / 1000, 3000);
	ck_assert(!shmstat_alive(&r));
	shmstat_close(&r);
	free(s);
	ck_assert(!exists("zswapu.%ld", child));
	remove_dir();
}
END_TEST

/* ---- stale segments ---- */

/* A child that creates a segment and dies without removing it. */
static pid_t leave_stale(bool half_made)
{
	pid_t child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) {
		struct shmstat_info in;
		info_init(&in, 4);
		struct shmstat_writer w;
		if (half_made) {
			char p[160];
			snprintf(p, sizeof(p), "%s/.zswapu.%ld.tmp", dir, (long)getpid());
			_exit(open(p, O_CREAT | O_WRONLY, 0600) < 0);
		}
		_exit(shmstat_create(dir, &in, &w) ? 1 : 0);
	}
	int status;
	ck_assert_int_eq(waitpid(child, &status, 0), child);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	return child;
}

START_TEST(stale_dead_pid)
{
	make_dir();
	pid_t a = leave_stale(false), b = leave_stale(false), c = leave_stale(true);
	ck_assert(exists("zswapu.%ld", a));
	ck_assert(exists("zswapu.%ld", b));
	ck_assert(exists(".zswapu.%ld.tmp", c));
	struct shmstat_reader r;
	ck_assert_int_eq(shmstat_open(dir, a, &r), -ENOENT);
	ck_assert(!exists("zswapu.%ld", a)); /* removed by the reader */
	pid_t pids[4];
	ck_assert_int_eq(shmstat_list(dir, pids, 4), 0);
	ck_assert(!exists("zswapu.%ld", b));
	ck_assert(!exists(".zswapu.%ld.tmp", c));
	remove_dir();
}
END_TEST

START_TEST(stale_other_start_time)
{
	struct shmstat_writer w;
	start_writer(&w);
	/* as if an earlier process had had this PID */
	w.seg->start_ticks -= 1;
	struct shmstat_reader r;
	ck_assert_int_eq(shmstat_open(dir, getpid(), &r), -ENOENT);
	ck_assert(!exists("zswapu.%ld", getpid()));
	shmstat_destroy(&w);
	remove_dir();
}
END_TEST

/* shmstat_open() of this process's segment from another process (a
 * reader here would find its own mapping of the file). */
static int open_from_child(void)
{
	pid_t self = getpid(), child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) {
		struct shmstat_reader r;
		int err = shmstat_open(dir, self, &r);
		if (!err && !shmstat_alive(&r))
			err = -ESRCH;
		_exit(-err);
	}
	int status;
	ck_assert_int_eq(waitpid(child, &status, 0), child);
	ck_assert(WIFEXITED(status));
	return -WEXITSTATUS(status);
}

START_TEST(stale_after_exec)
{
	struct shmstat_writer w;
	start_writer(&w);
	/* quiet for long, but still mapped (a stopped process): alive */
	atomic_store(&w.seg->heartbeat_ns, 0);
	ck_assert_int_eq(open_from_child(), 0);
	ck_assert(exists("zswapu.%ld", getpid()));
	/* exec drops the writer's mapping but keeps the PID and start time */
	munmap(w.seg, sizeof(*w.seg));
	ck_assert_int_eq(open_from_child(), -ENOENT);
	ck_assert(!exists("zswapu.%ld", getpid()));
	remove_dir();
}
END_TEST

START_TEST(damaged_files)
{
	make_dir();
	char p[160];
	struct shmstat_reader r;
	/* too short */
	snprintf(p, sizeof(p), "%s/zswapu.%ld", dir, (long)getpid());
	int fd = open(p, O_CREAT | O_RDWR, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 100), 0);
	ck_assert_int_eq(shmstat_open(dir, getpid(), &r), -EPROTO);
	/* the right size, the wrong magic */
	ck_assert_int_eq(ftruncate(fd, sizeof(struct shmstat_seg)), 0);
	ck_assert_int_eq(shmstat_open(dir, getpid(), &r), -EPROTO);
	close(fd);
	unlink(p);
	/* a real one with wild counts */
	struct shmstat_info in;
	info_init(&in, 4);
	struct shmstat_writer w;
	ck_assert_int_eq(shmstat_create(dir, &in, &w), 0);
	w.seg->info.ncounters = 1u << 30;
	memset(w.seg->info.comm, 'x', sizeof(w.seg->info.comm));
	static struct shmstat_sample s, out;
	memset(&s, 0, sizeof(s));
	s.nclasses = 99999;
	s.npool = 99999;
	memset(s.pool_names, 'y', sizeof(s.pool_names));
	shmstat_publish(&w, &s);
	ck_assert_int_eq(shmstat_open(dir, getpid(), &r), 0);
	shmstat_info(&r, &in);
	ck_assert_uint_eq(in.ncounters, SHMSTAT_MAX_COUNTERS);
	ck_assert_uint_eq(strlen(in.comm), sizeof(in.comm) - 1);
	ck_assert_int_eq(shmstat_read(&r, &out), 0);
	ck_assert_uint_eq(out.nclasses, SHMSTAT_MAX_CLASSES);
	ck_assert_uint_eq(out.npool, SHMSTAT_MAX_POOL_ROWS);
	ck_assert_uint_eq(strlen(out.pool_names[0]), SHMSTAT_NAME_LEN - 1);
	shmstat_close(&r);
	/* another PID's file under this PID's name */
	w.seg->pid = getpid() + 1;
	ck_assert_int_eq(shmstat_open(dir, getpid(), &r), -EPROTO);
	shmstat_destroy(&w);
	remove_dir();
}
END_TEST

START_TEST(start_ticks)
{
	ck_assert_uint_gt(shmstat_start_ticks(getpid()), 0);
	ck_assert_uint_le(shmstat_start_ticks(1), shmstat_start_ticks(getpid()));
	pid_t child = fork();
	if (child == 0)
		_exit(0);
	waitpid(child, NULL, 0);
	ck_assert_uint_eq(shmstat_start_ticks(child), 0);
}
END_TEST

/* ---- the engine's own segment ---- */

static bool uffd_usable(void)
{
	struct uffd u;
	if (uffd_open(UFFD_WANT_FEATURES, &u))
		return false;
	bool move = uffd_has(&u, UFFD_FEATURE_MOVE);
	uffd_close(&u);
	return move;
}

/* A sample published after this call (the publisher's next one or later). */
static void next_sample(struct shmstat_reader *r, struct shmstat_sample *s)
{
	ck_assert_int_eq(shmstat_read(r, s), 0);
	uint64_t n = s->number;
	/* bounded wait for a condition, not a timing assertion */
	for (int i = 0; i < 2000 && s->number < n + 2; i++) {
		usleep(5000);
		ck_assert_int_eq(shmstat_read(r, s), 0);
	}
	ck_assert_uint_ge(s->number, n + 2);
}

static uint64_t value(const struct shmstat_info *in, const struct shmstat_sample *s,
		      const char *name)
{
	int i = shmstat_find(in, name);
	ck_assert_msg(i >= 0, "no counter %s", name);
	return s->values[i];
}

/* @n pages, page i half filled with i % 251 + 1, registered and all stored. */
static uint8_t *stored_pages(size_t n)
{
	uint8_t *m = mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(m, MAP_FAILED);
	for (size_t i = 0; i < n; i++)
		memset(m + i * PAGE, (int)(i % 251 + 1), PAGE / 2);
	ck_assert_int_eq(zswapu_register(m, n * PAGE), 0);
	ck_assert_int_eq(zswapu_reclaim(m, n * PAGE), (long)n);
	return m;
}

START_TEST(engine_publishes)
{
	if (!uffd_usable()) {
		fprintf(stderr, "SKIP %s: userfaultfd unusable here\n", __func__);
		return;
	}
	struct zswapu_options o;
	zswapu_options_init(&o);
	o.compressor = "lz4";
	ck_assert_int_eq(zswapu_init(&o), 0);
	struct shmstat_reader r;
	ck_assert_int_eq(shmstat_open(NULL, getpid(), &r), 0);
	struct shmstat_info in;
	shmstat_info(&r, &in);
	ck_assert_str_eq(in.pool, "zsmalloc");
	ck_assert_str_eq(in.compressor, "lz4");
	/* the writeback fields exist before anything counts them */
	static struct shmstat_sample s;
	next_sample(&r, &s);
	ck_assert_uint_eq(value(&in, &s, "written_back_pages"), 0);
	ck_assert_uint_eq(value(&in, &s, "writeback_bytes"), 0);
	ck_assert_uint_eq(value(&in, &s, "wb_reads"), 0);
	ck_assert_uint_eq(value(&in, &s, "stored_pages"), 0);
	ck_assert_uint_eq(value(&in, &s, "managed_bytes"), 0);
	ck_assert_uint_eq(value(&in, &s, "stall_ns"), 0);
	ck_assert_uint_eq(value(&in, &s, "stall_pct"), 0);

	enum { N = 1024 };
	uint8_t *m = stored_pages(N);
	next_sample(&r, &s);
	ck_assert_uint_eq(value(&in, &s, "stored_pages"), N);
	ck_assert_uint_eq(value(&in, &s, "stores"), N);
	ck_assert_uint_eq(value(&in, &s, "managed_bytes"), N * PAGE);
	ck_assert_uint_gt(value(&in, &s, "pool_total_size"), 0);
	ck_assert_uint_gt(s.nclasses, 0); /* zsmalloc's table */
	uint64_t used = 0;
	for (uint64_t i = 0; i < s.nclasses; i++)
		used += s.classes[i].obj_used;
	ck_assert_uint_eq(used, N);
	/* read half back: faults, loads and the fault histogram move */
	for (int i = 0; i < N / 2; i++)
		ck_assert_uint_eq(m[i * PAGE], i % 251 + 1);
	struct zswapu_stats st;
	ck_assert_int_eq(zswapu_stats(&st), 0); /* the faults are counted */
	next_sample(&r, &s);
	ck_assert_uint_eq(value(&in, &s, "stored_pages"), st.stored_pages);
	ck_assert_uint_lt(value(&in, &s, "stored_pages"), N);
	ck_assert_uint_gt(value(&in, &s, "faults"), 0);
	ck_assert_uint_eq(value(&in, &s, "faults"), st.faults);
	/* the faults' wait, and its share of the last second (one thread) */
	ck_assert_uint_gt(value(&in, &s, "stall_ns"), 0);
	ck_assert_uint_eq(value(&in, &s, "stall_ns"), st.stall_ns);
	ck_assert_uint_le(value(&in, &s, "stall_pct"), 100);
	uint64_t hist = 0;
	for (int i = 0; i < STATS_LAT_BINS; i++)
		hist += s.fault_ns[i];
	/* one per fault message; a retried fault counts in faults once */
	ck_assert_uint_gt(hist, 0);
	ck_assert_uint_le(hist, st.faults);
	ck_assert_uint_gt(stats_hist_quantile_ns(s.fault_ns, 0.5), 0);
	zswapu_shutdown();
	/* gone with the engine; the reader's copy stays readable */
	char p[64];
	snprintf(p, sizeof(p), "%s/zswapu.%ld", SHMSTAT_DIR, (long)getpid());
	ck_assert_int_eq(access(p, F_OK), -1);
	ck_assert_int_eq(shmstat_read(&r, &s), 0);
	shmstat_close(&r);
	munmap(m, N * PAGE);
}
END_TEST

/* pread of /proc/self/mem at @p: 0 read, or the errno (the kernel's
 * access to another's memory cannot wait for a userfaultfd handler) */
static int mem_read(const void *p, void *out)
{
	int fd = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	ssize_t n = pread(fd, out, PAGE, (off_t)(uintptr_t)p);
	int err = n == PAGE ? 0 : n < 0 ? errno : EIO;
	close(fd);
	return err;
}

START_TEST(engine_released_on_request)
{
	if (!uffd_usable()) {
		fprintf(stderr, "SKIP %s: userfaultfd unusable here\n", __func__);
		return;
	}
	ck_assert_int_eq(zswapu_init(NULL), 0);
	struct shmstat_reader r;
	ck_assert_int_eq(shmstat_open(NULL, getpid(), &r), 0);
	struct shmstat_info in;
	shmstat_info(&r, &in);
	enum { N = 512 };
	uint8_t *m = stored_pages(N);
	static uint8_t page[PAGE];
	/* what gdb meets: a stored page cannot be read from outside */
	ck_assert_int_eq(mem_read(m + 7 * PAGE, page), EIO);

	ck_assert_int_eq(shmstat_request(NULL, getpid(), SHMSTAT_REQ_RELEASE), 0);
	static struct shmstat_sample s;
	ck_assert_int_eq(shmstat_read(&r, &s), 0);
	for (int i = 0; i < 2000 && !value(&in, &s, "stepped_aside"); i++) {
		usleep(5000);
		ck_assert_int_eq(shmstat_read(&r, &s), 0);
	}
	next_sample(&r, &s); /* one taken after stepping aside */
	ck_assert_uint_eq(value(&in, &s, "stepped_aside"), 1);
	ck_assert_uint_eq(value(&in, &s, "released"), 1);
	ck_assert_uint_eq(value(&in, &s, "stored_pages"), 0);
	ck_assert_uint_eq(value(&in, &s, "managed_bytes"), 0);
	ck_assert_uint_eq(value(&in, &s, "pages_lost"), 0);
	/* every page was put back before the range left userfaultfd */
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(mem_read(m + i * PAGE, page), 0);
		ck_assert_uint_eq(page[0], i % 251 + 1);
		ck_assert_uint_eq(page[PAGE / 2], 0);
	}
	for (int i = 0; i < N; i++)
		ck_assert_uint_eq(m[i * PAGE + PAGE / 2 - 1], i % 251 + 1);
	struct zswapu_stats st;
	ck_assert_int_eq(zswapu_stats(&st), 0);
	ck_assert_uint_eq(st.failed, 1); /* stepped aside, as the header says */
	ck_assert_int_eq(zswapu_register(m, N * PAGE), -ECANCELED);
	zswapu_shutdown();
	shmstat_close(&r);
	munmap(m, N * PAGE);
}
END_TEST

/*
 * `zswapu limit`: the request reaches the engine, and the samples show the
 * limit it holds from then on.  An engine started without a limit refuses
 * one (it runs no reclaimer) and keeps publishing none.
 */
START_TEST(engine_limit_on_request)
{
	if (!uffd_usable()) {
		fprintf(stderr, "SKIP %s: userfaultfd unusable here\n", __func__);
		return;
	}
	struct zswapu_options o;
	for (int with_limit = 1; with_limit >= 0; with_limit--) {
		zswapu_options_init(&o);
		o.limit_bytes = with_limit ? (size_t)1 << 40 : 0;
		ck_assert_int_eq(zswapu_init(&o), 0);
		struct shmstat_reader r;
		ck_assert_int_eq(shmstat_open(NULL, getpid(), &r), 0);
		struct shmstat_info in;
		shmstat_info(&r, &in);
		static struct shmstat_sample s;
		ck_assert_int_eq(shmstat_read(&r, &s), 0);
		ck_assert_uint_eq(value(&in, &s, "limit_bytes"), o.limit_bytes);
		ck_assert_int_eq(shmstat_request_limit(NULL, getpid(), 1ull << 39), 0);
		for (int i = 0; i < 2000 && value(&in, &s, "limit_bytes") == o.limit_bytes; i++) {
			usleep(5000);
			ck_assert_int_eq(shmstat_read(&r, &s), 0);
		}
		if (!with_limit) {
			next_sample(&r, &s); /* taken and refused by now */
			ck_assert_int_eq(zswapu_set_limit(1ull << 39), -EINVAL);
		}
		ck_assert_uint_eq(value(&in, &s, "limit_bytes"), with_limit ? 1ull << 39 : 0);
		zswapu_shutdown();
		shmstat_close(&r);
	}
	ck_assert_int_eq(zswapu_set_limit(1ull << 39), -ENODEV);
}
END_TEST

Suite *shmstat_suite(void)
{
	Suite *s = suite_create("shmstat");
	TCase *t = tcase_create("segment");
	tcase_add_test(t, round_trip);
	tcase_add_test(t, too_many_counters);
	tcase_add_test(t, requests_reach_the_writer);
	tcase_add_test(t, damaged_files);
	tcase_add_test(t, start_ticks);
	suite_add_tcase(s, t);
	t = tcase_create("seqlock");
	tcase_set_timeout(t, 60);
	tcase_add_test(t, never_torn);
	tcase_add_test(t, writer_exits_mid_read);
	suite_add_tcase(s, t);
	t = tcase_create("stale");
	tcase_add_test(t, stale_dead_pid);
	tcase_add_test(t, stale_other_start_time);
	tcase_add_test(t, stale_after_exec);
	suite_add_tcase(s, t);
	t = tcase_create("engine");
	tcase_set_timeout(t, 60);
	tcase_add_test(t, engine_publishes);
	tcase_add_test(t, engine_released_on_request);
	tcase_add_test(t, engine_limit_on_request);
	suite_add_tcase(s, t);
	return s;
}

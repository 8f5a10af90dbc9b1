/*
 * shmstat — see shmstat.h for the format and the life of a segment.
 *
 * The sequence counter (a seqlock with one writer):
 *   writer  seq = s + 1 (relaxed); release fence; words (relaxed);
 *           seq = s + 2 (release)
 *   reader  s1 = seq (acquire), odd: retry; words (relaxed);
 *           acquire fence; s2 = seq (relaxed); s1 != s2: retry
 * A reader that read a word of the next sample then sees s2 != s1.
 */
#include "core/shmstat.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/maps.h"

/* a sample is rewritten every 100 ms in a few microseconds: a reader that
 * keeps colliding backs off, and gives up after ~0.2 s (a writer stopped
 * or killed in the middle) */
#define READ_TRIES 4000
#define READ_SPIN 64
/* not published for this long: look whether the process still maps it */
#define QUIET_NS (2000ull * 1000 * 1000)

static const char *dir_or_default(const char *dir)
{
	return dir ? dir : SHMSTAT_DIR;
}

static int seg_path(char *out, size_t len, const char *dir, const char *fmt, pid_t pid)
{
	char name[64];
	snprintf(name, sizeof(name), fmt, (long)pid);
	int n = snprintf(out, len, "%s/%s", dir_or_default(dir), name);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* Field 22 (starttime) of a /proc/PID/stat line: after the last ')'. */
uint64_t shmstat_start_ticks(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if (!maps_read_small(path, buf, sizeof(buf)))
		return 0;
	char *p = strrchr(buf, ')');
	if (!p)
		return 0;
	/* p[1] = ' ', then field 3 (state) ... field 22 */
	p++;
	for (int field = 2; field < 21 && p; field++)
		p = strchr(p + 1, ' ');
	return p ? strtoull(p + 1, NULL, 10) : 0;
}

/* ---- writer ---- */

int shmstat_create(const char *dir, const struct shmstat_info *info, struct shmstat_writer *w)
{
	memset(w, 0, sizeof(*w));
	if (info->ncounters > SHMSTAT_MAX_COUNTERS)
		return -EINVAL;
	pid_t pid = getpid();
	char tmp[sizeof(w->path)];
	int err = seg_path(w->path, sizeof(w->path), dir, "zswapu.%ld", pid);
	if (!err)
		err = seg_path(tmp, sizeof(tmp), dir, ".zswapu.%ld.tmp", pid);
	if (err)
		return err;
	/* a leftover of an earlier process with this PID */
	unlink(tmp);
	int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	struct shmstat_seg *seg = MAP_FAILED;
	if (fchmod(fd, 0600) || ftruncate(fd, sizeof(*seg)))
		err = -errno;
	if (!err) {
		seg = mmap(NULL, sizeof(*seg), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (seg == MAP_FAILED)
			err = -errno;
	}
	close(fd);
	if (!err) {
		/* a fresh file reads as zeros: the sample starts empty, seq 0 */
		seg->magic = SHMSTAT_MAGIC;
		seg->version = SHMSTAT_VERSION;
		seg->size = sizeof(*seg);
		seg->pid = pid;
		seg->start_ticks = shmstat_start_ticks(pid);
		seg->start_ns = stats_now_ns();
		seg->info = *info;
		atomic_store_explicit(&seg->heartbeat_ns, seg->start_ns, memory_order_relaxed);
		/* the name appears with the header complete */
		if (rename(tmp, w->path))
			err = -errno;
	}
	if (err) {
		if (seg != MAP_FAILED)
			munmap(seg, sizeof(*seg));
		unlink(tmp);
		return err;
	}
	w->seg = seg;
	return 0;
}

uint64_t shmstat_take_requests(struct shmstat_writer *w, uint64_t *limit)
{
	if (!w->seg || !atomic_load_explicit(&w->seg->requests, memory_order_relaxed))
		return 0;
	uint64_t bits = atomic_exchange_explicit(&w->seg->requests, 0, memory_order_acquire);
	/* the reader stored it before it set the bit (release) */
	if (bits & SHMSTAT_REQ_LIMIT)
		*limit = atomic_load_explicit(&w->seg->limit_asked, memory_order_relaxed);
	return bits;
}

void shmstat_publish(struct shmstat_writer *w, struct shmstat_sample *s)
{
	struct shmstat_seg *seg = w->seg;
	s->t_ns = stats_now_ns();
	s->number = w->published++;
	uint64_t q = atomic_load_explicit(&seg->seq, memory_order_relaxed);
	atomic_store_explicit(&seg->seq, q + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	const unsigned char *src = (const unsigned char *)s;
	for (size_t i = 0; i < SHMSTAT_SAMPLE_WORDS; i++) {
		uint64_t v;
		memcpy(&v, src + i * sizeof(v), sizeof(v));
		atomic_store_explicit(&seg->words[i], v, memory_order_relaxed);
	}
	atomic_store_explicit(&seg->seq, q + 2, memory_order_release);
	atomic_store_explicit(&seg->heartbeat_ns, s->t_ns, memory_order_relaxed);
}

void shmstat_destroy(struct shmstat_writer *w)
{
	if (!w->seg)
		return;
	unlink(w->path);
	munmap(w->seg, sizeof(*w->seg));
	w->seg = NULL;
}

/* ---- reader ---- */

/* Does process @pid map @path (exec replaces the program, not the PID)? */
static bool maps_file(pid_t pid, const char *path)
{
	char mp[64], buf[4096];
	snprintf(mp, sizeof(mp), "/proc/%ld/maps", (long)pid);
	int fd = open(mp, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return true; /* cannot tell: assume so */
	size_t plen = strlen(path), keep = 0;
	bool found = false;
	ssize_t n;
	/* lines end with the path; look for it across read boundaries */
	while (!found && (n = read(fd, buf + keep, sizeof(buf) - 1 - keep)) > 0) {
		size_t len = keep + (size_t)n;
		buf[len] = '\0';
		found = strstr(buf, path) != NULL;
		keep = len > plen ? plen : len;
		memmove(buf, buf + len - keep, keep);
	}
	close(fd);
	return found;
}

static bool seg_alive(const struct shmstat_seg *seg, pid_t pid, const char *path)
{
	uint64_t ticks = shmstat_start_ticks(pid);
	if (ticks == 0 || ticks != seg->start_ticks)
		return false;
	uint64_t hb = atomic_load_explicit(&seg->heartbeat_ns, memory_order_relaxed);
	if (stats_now_ns() - hb < QUIET_NS)
		return true;
	return maps_file(pid, path);
}

bool shmstat_alive(const struct shmstat_reader *r)
{
	return seg_alive(r->seg, r->pid, r->path);
}

/* Remove @path if it is still the file @r mapped (not a newer one). */
static void remove_if_same(const char *path, dev_t dev, ino_t ino)
{
	struct stat st;
	if (stat(path, &st) == 0 && st.st_dev == dev && st.st_ino == ino)
		unlink(path);
}

int shmstat_open(const char *dir, pid_t pid, struct shmstat_reader *r)
{
	memset(r, 0, sizeof(*r));
	int err = seg_path(r->path, sizeof(r->path), dir, "zswapu.%ld", pid);
	if (err)
		return err;
	int fd = open(r->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) ||
	    st.st_size != (off_t)sizeof(struct shmstat_seg)) {
		close(fd);
		return -EPROTO;
	}
	const struct shmstat_seg *seg =
		mmap(NULL, sizeof(*seg), PROT_READ, MAP_SHARED, fd, 0);
	err = seg == MAP_FAILED ? -errno : 0;
	close(fd);
	if (err)
		return err;
	if (seg->magic != SHMSTAT_MAGIC || seg->version != SHMSTAT_VERSION ||
	    seg->size != sizeof(*seg) || seg->pid != pid) {
		munmap((void *)seg, sizeof(*seg));
		return -EPROTO;
	}
	if (!seg_alive(seg, pid, r->path)) {
		munmap((void *)seg, sizeof(*seg));
		remove_if_same(r->path, st.st_dev, st.st_ino);
		return -ENOENT;
	}
	r->seg = seg;
	r->pid = pid;
	r->dev = st.st_dev;
	r->ino = st.st_ino;
	return 0;
}

static int request(const char *dir, pid_t pid, uint64_t what, uint64_t limit)
{
	struct shmstat_reader r;
	int err = shmstat_open(dir, pid, &r);
	if (err)
		return err;
	/* the reader checked the header and the writer's life; the write
	 * goes to that same file, not to one renamed into its place since */
	int fd = open(r.path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	struct stat st;
	if (fd < 0)
		err = -errno;
	else if (fstat(fd, &st) || st.st_dev != r.dev || st.st_ino != r.ino)
		err = -ESTALE;
	if (!err) {
		struct shmstat_seg *seg =
			mmap(NULL, sizeof(*seg), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (seg == MAP_FAILED) {
			err = -errno;
		} else {
			if (what & SHMSTAT_REQ_LIMIT)
				atomic_store_explicit(&seg->limit_asked, limit,
						      memory_order_relaxed);
			atomic_fetch_or_explicit(&seg->requests, what, memory_order_release);
			munmap(seg, sizeof(*seg));
		}
	}
	if (fd >= 0)
		close(fd);
	shmstat_close(&r);
	return err;
}

int shmstat_request(const char *dir, pid_t pid, uint64_t what)
{
	return request(dir, pid, what & ~SHMSTAT_REQ_LIMIT, 0);
}

int shmstat_request_limit(const char *dir, pid_t pid, uint64_t bytes)
{
	return request(dir, pid, SHMSTAT_REQ_LIMIT, bytes);
}

static void terminate(char *s, size_t len)
{
	s[len - 1] = '\0';
}

int shmstat_read(const struct shmstat_reader *r, struct shmstat_sample *out)
{
	const struct shmstat_seg *seg = r->seg;
	unsigned char *dst = (unsigned char *)out;
	for (int tries = 0; tries < READ_TRIES; tries++) {
		uint64_t s1 = atomic_load_explicit(&seg->seq, memory_order_acquire);
		if (tries >= READ_SPIN) {
			struct timespec ts = { 0, 50 * 1000 };
			nanosleep(&ts, NULL);
		}
		if (s1 & 1) {
			sched_yield();
			continue;
		}
		for (size_t i = 0; i < SHMSTAT_SAMPLE_WORDS; i++) {
			uint64_t v = atomic_load_explicit(&seg->words[i], memory_order_relaxed);
			memcpy(dst + i * sizeof(v), &v, sizeof(v));
		}
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&seg->seq, memory_order_relaxed) != s1)
			continue;
		if (out->nclasses > SHMSTAT_MAX_CLASSES)
			out->nclasses = SHMSTAT_MAX_CLASSES;
		if (out->npool > SHMSTAT_MAX_POOL_ROWS)
			out->npool = SHMSTAT_MAX_POOL_ROWS;
		for (size_t i = 0; i < SHMSTAT_MAX_POOL_ROWS; i++)
			terminate(out->pool_names[i], SHMSTAT_NAME_LEN);
		return 0;
	}
	return -EAGAIN;
}

void shmstat_info(const struct shmstat_reader *r, struct shmstat_info *out)
{
	*out = r->seg->info;
	terminate(out->comm, sizeof(out->comm));
	terminate(out->compressor, sizeof(out->compressor));
	terminate(out->pool, sizeof(out->pool));
	if (out->ncounters > SHMSTAT_MAX_COUNTERS)
		out->ncounters = SHMSTAT_MAX_COUNTERS;
	for (size_t i = 0; i < SHMSTAT_MAX_COUNTERS; i++)
		terminate(out->names[i], SHMSTAT_NAME_LEN);
}

void shmstat_close(struct shmstat_reader *r)
{
	if (r->seg)
		munmap((void *)r->seg, sizeof(*r->seg));
	r->seg = NULL;
}

int shmstat_find(const struct shmstat_info *info, const char *name)
{
	for (uint64_t i = 0; i < info->ncounters && i < SHMSTAT_MAX_COUNTERS; i++)
		if (!strncmp(info->names[i], name, SHMSTAT_NAME_LEN))
			return (int)i;
	return -1;
}

/* "zswapu.1234" -> 1234; ".zswapu.1234.tmp" -> -1234 (a writer's file in the making). */
static long name_pid(const char *name)
{
	bool tmp = name[0] == '.';
	const char *p = name + tmp;
	if (strncmp(p, "zswapu.", 7))
		return 0;
	p += 7;
	char *end;
	errno = 0;
	long pid = strtol(p, &end, 10);
	if (errno || end == p || pid <= 0 || pid > 0x7fffffff || *p < '0' || *p > '9')
		return 0;
	if (tmp ? strcmp(end, ".tmp") : *end)
		return 0;
	return tmp ? -pid : pid;
}

static int cmp_pid(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
	return (x > y) - (x < y);
}

int shmstat_list(const char *dir, pid_t *pids, size_t max)
{
	DIR *d = opendir(dir_or_default(dir));
	if (!d)
		return -errno;
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		long pid = name_pid(de->d_name);
		if (pid < 0) {
			/* a writer that died between create and rename */
			char p[256];
			if (shmstat_start_ticks((pid_t)-pid) == 0 &&
			    snprintf(p, sizeof(p), "%s/%s", dir_or_default(dir), de->d_name) <
				    (int)sizeof(p))
				unlink(p);
			continue;
		}
		if (pid == 0)
			continue;
		struct shmstat_reader r;
		int err = shmstat_open(dir, (pid_t)pid, &r);
		if (err == -EACCES) {
			/* another user's: it exists, we cannot read it */
		} else if (err) {
			continue;
		} else {
			shmstat_close(&r);
		}
		if (n < max)
			pids[n] = (pid_t)pid;
		n++;
	}
	closedir(d);
	qsort(pids, n < max ? n : max, sizeof(*pids), cmp_pid);
	return (int)(n > 0x7fffffff ? 0x7fffffff : n);
}

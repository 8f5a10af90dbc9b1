/*
 * bench — helpers shared by the benchmark programs in bench/: the common
 * command-line options, a monotonic clock, the median of repeated runs, a
 * deterministic random generator, one-line JSON records, readers for the
 * real data in ../shared/data, and running helper programs (cc, the
 * reference workloads in ../shared/bench).
 *
 * Header only, every function static inline: the Makefile builds each
 * bench/<name>.c into its own program, so there is no place for a shared
 * object file, and an unused inline helper costs nothing.  Benchmarks are
 * not engine code and use libc freely.
 *
 * Common options, accepted by every benchmark (scripts/bench.sh passes them
 * through to all of them):
 *   --json      one JSON object per result line on stdout, nothing else there
 *   --quick     a smaller run (for `make demo` and smoke tests)
 *   --runs N    timed repetitions, the median is reported (default 3;
 *               --quick alone defaults to 1)
 *   --data DIR  the real data (default ../shared/data, relative to the repo
 *               root where `make bench` runs)
 */
#ifndef ZSWAPU_BENCH_H
#define ZSWAPU_BENCH_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BENCH_DEFAULT_DATA "../shared/data"
#define BENCH_DEFAULT_RUNS 3

struct bench_opts {
	bool json;
	bool quick;
	int runs; /* 0 until set: bench_opts_finish() fills the default */
	const char *data;
};

static inline void bench_opts_init(struct bench_opts *o)
{
	*o = (struct bench_opts){ .data = BENCH_DEFAULT_DATA };
}

/*
 * bench_parse_common() : try argv[*i] as a common option, consuming its
 * argument too.  @return 1 when consumed, 0 when it is not a common option
 * (the caller tries its own), -EINVAL on a bad or missing value (a message
 * was printed).
 */
static inline int bench_parse_common(struct bench_opts *o, int argc, char **argv, int *i)
{
	const char *a = argv[*i];
	if (!strcmp(a, "--json")) {
		o->json = true;
		return 1;
	}
	if (!strcmp(a, "--quick")) {
		o->quick = true;
		return 1;
	}
	if (!strcmp(a, "--runs") || !strcmp(a, "--data")) {
		if (*i + 1 >= argc) {
			fprintf(stderr, "%s needs a value\n", a);
			return -EINVAL;
		}
		const char *v = argv[++*i];
		if (!strcmp(a, "--data")) {
			o->data = v;
			return 1;
		}
		char *end;
		long n = strtol(v, &end, 10);
		if (*end || n < 1 || n > 1000) {
			fprintf(stderr, "--runs takes a count from 1 to 1000, not '%s'\n", v);
			return -EINVAL;
		}
		o->runs = (int)n;
		return 1;
	}
	return 0;
}

/*
 * bench_parse_args() : the whole argument loop.  Fills @o from the common
 * options, prints @usage to stdout for -h/--help, and hands every other
 * argument to @own with the next one as its value (NULL at the end); @own
 * returns how many of the two it used (1 or 2), 0 for an argument it does
 * not know, -1 for a bad value (after printing why).  The caller then sets
 * its own defaults and calls bench_opts_finish().  @prog names the program.
 * @return -1 to go on and run, else the exit status: 0 after the help,
 * 2 on bad use.
 */
static inline int bench_parse_args(struct bench_opts *o, int argc, char **argv,
				   const char *prog, void (*usage)(FILE *),
				   int (*own)(void *ctx, const char *arg, const char *val),
				   void *ctx)
{
	bench_opts_init(o);
	for (int i = 1; i < argc; i++) {
		int r = bench_parse_common(o, argc, argv, &i);
		if (r < 0)
			return 2;
		if (r)
			continue;
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		}
		r = own(ctx, argv[i], i + 1 < argc ? argv[i + 1] : NULL);
		if (r < 0)
			return 2;
		if (r == 0) {
			fprintf(stderr, "%s: bad argument '%s'\n", prog, argv[i]);
			usage(stderr);
			return 2;
		}
		i += r - 1;
	}
	return -1;
}

static inline void bench_opts_finish(struct bench_opts *o)
{
	if (!o->runs)
		o->runs = o->quick ? 1 : BENCH_DEFAULT_RUNS;
}

static inline const char *bench_common_usage(void)
{
	return "  --json      one JSON object per line instead of the table\n"
	       "  --quick     smaller run\n"
	       "  --runs N    timed repetitions, median reported (default 3, --quick: 1)\n"
	       "  --data DIR  real data directory (default " BENCH_DEFAULT_DATA ")\n";
}

static inline uint64_t bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* bench_median() : median of @n values (sorts @v in place); NAN when n = 0. */
static inline double bench_median(double *v, size_t n)
{
	if (!n)
		return NAN;
	qsort(v, n, sizeof(*v), bench_cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/*
 * A benchmark has nothing useful to do without its buffers: running out of
 * memory ends it with one line naming the program (exit status 1).
 */
static inline void bench_die_oom(void)
{
	fprintf(stderr, "%s: out of memory\n", program_invocation_short_name);
	exit(1);
}

/* bench_xcalloc() : calloc() that never returns NULL (n = 0 gives one element). */
static inline void *bench_xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);
	if (!p)
		bench_die_oom();
	return p;
}

/* splitmix64: a fixed seed gives the same sequence on every run. */
static inline uint64_t bench_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* bench_shuffle() : Fisher-Yates over @n indices. */
static inline void bench_shuffle(uint32_t *v, size_t n, uint64_t *state)
{
	for (size_t i = n; i > 1; i--) {
		size_t j = bench_rand(state) % i;
		uint32_t t = v[i - 1];
		v[i - 1] = v[j];
		v[j] = t;
	}
}

/* bench_permutation() : 0..n-1 in an order fixed by @seed (free() it). */
static inline uint32_t *bench_permutation(size_t n, uint64_t seed)
{
	uint32_t *v = bench_xcalloc(n, sizeof(*v));
	for (size_t k = 0; k < n; k++)
		v[k] = (uint32_t)k;
	bench_shuffle(v, n, &seed);
	return v;
}

/*
 * bench_read_sizes() : a sizes file of ../shared/data/sizes (one byte count
 * per line) into a new array (free() it).  @return 0, -errno when the file
 * can't be read, -EINVAL on a line that is not a size in 1..65536.
 */
static inline int bench_read_sizes(const char *path, uint32_t **out, size_t *count)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -errno;
	size_t n = 0, cap = 65536;
	uint32_t *v = malloc(cap * sizeof(*v));
	int err = v ? 0 : -ENOMEM;
	char line[64];
	while (!err && fgets(line, sizeof(line), f)) {
		char *end;
		unsigned long s = strtoul(line, &end, 10);
		if (end == line || (*end && *end != '\n') || s == 0 || s > 65536) {
			err = -EINVAL;
			break;
		}
		if (n == cap) {
			uint32_t *nv = realloc(v, 2 * cap * sizeof(*v));
			if (!nv) {
				err = -ENOMEM;
				break;
			}
			v = nv;
			cap *= 2;
		}
		v[n++] = (uint32_t)s;
	}
	if (!err && ferror(f))
		err = -EIO;
	fclose(f);
	if (!err && !n)
		err = -EINVAL;
	if (err) {
		free(v);
		return err;
	}
	*out = v;
	*count = n;
	return 0;
}

/* ---- helper programs ------------------------------------------------- */

/*
 * bench_peer_path() : @name in the shared reference directory beside the
 * data one ("../shared/data" -> "../shared/bench/NAME"), so that --data
 * also says where the reference programs (kfault.c, hotcold.c, kzswap.sh)
 * are.  Into @buf.
 */
static inline const char *bench_peer_path(const struct bench_opts *o, const char *name,
					  char *buf, size_t len)
{
	size_t n = strlen(o->data);
	while (n > 1 && o->data[n - 1] == '/')
		n--;
	const char *slash = memrchr(o->data, '/', n);
	int dir = slash ? (int)(slash - o->data) : 0;
	snprintf(buf, len, "%.*s%sbench/%s", dir, o->data, slash ? "/" : "", name);
	return buf;
}

/*
 * bench_spawn() : start @argv (argv[0] searched in PATH) with the extra
 * environment assignments @env ("NAME=value", NULL-terminated; NULL for
 * none), its stdout on @out_fd and stderr on @err_fd (-1: inherited).
 * The child gets SIGINT and SIGTERM back at their default action even if
 * the caller ignores them while it waits.  @return the pid, or -errno.
 */
static inline pid_t bench_spawn(char *const argv[], char *const env[], int out_fd, int err_fd)
{
	extern char **environ;
	size_t ne = 0, nx = 0;
	while (environ[ne])
		ne++;
	while (env && env[nx])
		nx++;
	/* built before fork: the child of a threaded program may not malloc */
	char **envp = malloc((ne + nx + 1) * sizeof(*envp));
	if (!envp)
		return -ENOMEM;
	if (nx)
		memcpy(envp, env, nx * sizeof(*envp));
	memcpy(envp + nx, environ, ne * sizeof(*envp)); /* first match wins */
	envp[ne + nx] = NULL;
	pid_t pid = fork();
	if (pid == 0) {
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		if ((out_fd >= 0 && dup2(out_fd, 1) < 0) || (err_fd >= 0 && dup2(err_fd, 2) < 0))
			_exit(127);
		execvpe(argv[0], argv, envp);
		_exit(127);
	}
	int err = errno;
	free(envp);
	return pid < 0 ? -err : pid;
}

/*
 * bench_wait() : wait for @pid; *@status gets the wait status, *@ru (may
 * be NULL) the child's resource usage (ru_maxrss: its peak resident size,
 * KiB).  @return 0 or -errno.
 */
static inline int bench_wait(pid_t pid, int *status, struct rusage *ru)
{
	struct rusage scratch;
	while (wait4(pid, status, 0, ru ? ru : &scratch) < 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}

/*
 * bench_run() : bench_spawn() + bench_wait(), with stdout and stderr into
 * the files @out and @err (NULL: inherited; truncated first).  @return the
 * exit status (0..255), 128 + signal when killed, or -errno when it could
 * not be started (127: not found).
 */
static inline int bench_run(char *const argv[], char *const env[], const char *out,
			    const char *err, struct rusage *ru)
{
	int fds[2] = { -1, -1 }, ret = 0;
	const char *paths[2] = { out, err };
	for (int k = 0; k < 2 && !ret; k++)
		if (paths[k] && (fds[k] = open(paths[k], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
					      0600)) < 0)
			ret = -errno;
	pid_t pid = ret ? ret : bench_spawn(argv, env, fds[0], fds[1]);
	for (int k = 0; k < 2; k++)
		if (fds[k] >= 0)
			close(fds[k]);
	if (pid < 0)
		return pid;
	int status;
	if ((ret = bench_wait(pid, &status, ru)))
		return ret;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* bench_tmpdir() : a new private directory under $TMPDIR or /tmp, into @buf. */
static inline int bench_tmpdir(char *buf, size_t len)
{
	const char *t = getenv("TMPDIR");
	snprintf(buf, len, "%s/zswapu-bench.XXXXXX", t && *t ? t : "/tmp");
	return mkdtemp(buf) ? 0 : -errno;
}

static inline int bench_rm_entry(const char *path, const struct stat *sb, int type,
				 struct FTW *ftw)
{
	(void)sb, (void)type, (void)ftw;
	return remove(path);
}

/* bench_rmtree() : remove @path and everything under it. */
static inline void bench_rmtree(const char *path)
{
	nftw(path, bench_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/*
 * One JSON object on one line:
 *   struct bench_json j; bench_json_begin(&j, stdout);
 *   bench_json_str(&j, "pool", "zbud"); ... bench_json_end(&j);
 */
struct bench_json {
	FILE *f;
	int nfields;
};

static inline void bench_json_begin(struct bench_json *j, FILE *f)
{
	j->f = f;
	j->nfields = 0;
	fputc('{', f);
}

static inline void bench_json_key(struct bench_json *j, const char *key)
{
	fprintf(j->f, "%s\"%s\":", j->nfields++ ? "," : "", key);
}

static inline void bench_json_str(struct bench_json *j, const char *key, const char *val)
{
	bench_json_key(j, key);
	fputc('"', j->f);
	for (const unsigned char *p = (const unsigned char *)val; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(j->f, "\\%c", *p);
		else if (*p < 0x20)
			fprintf(j->f, "\\u%04x", *p);
		else
			fputc(*p, j->f);
	}
	fputc('"', j->f);
}

static inline void bench_json_u64(struct bench_json *j, const char *key, uint64_t v)
{
	bench_json_key(j, key);
	fprintf(j->f, "%llu", (unsigned long long)v);
}

/* A number with @prec decimals; null when it is not finite (JSON has no NaN). */
static inline void bench_json_num(struct bench_json *j, const char *key, double v, int prec)
{
	bench_json_key(j, key);
	if (isfinite(v))
		fprintf(j->f, "%.*f", prec, v);
	else
		fputs("null", j->f);
}

static inline void bench_json_bool(struct bench_json *j, const char *key, bool v)
{
	bench_json_key(j, key);
	fputs(v ? "true" : "false", j->f);
}

static inline void bench_json_null(struct bench_json *j, const char *key)
{
	bench_json_key(j, key);
	fputs("null", j->f);
}

static inline void bench_json_end(struct bench_json *j)
{
	fputs("}\n", j->f);
	fflush(j->f);
}

#endif

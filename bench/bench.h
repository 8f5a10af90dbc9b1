/*
 * bench — helpers shared by the benchmark programs in bench/: the common
 * command-line options, a monotonic clock, the median of repeated runs, a
 * deterministic random generator, one-line JSON records and readers for the
 * real data in ../shared/data.
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
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static inline void bench_json_end(struct bench_json *j)
{
	fputs("}\n", j->f);
	fflush(j->f);
}

#endif

/*
 * stat — `zswapu stat`, `zswapu ps`, `zswapu plot`: see stat.h.
 *
 * The numbers come from /dev/shm/zswapu.PID (core/shmstat.h), which the
 * managed process rewrites about every 100 ms; reading it never stops or
 * slows the program.  Counters are looked up by name, so a counter the
 * engine adds later shows up in the full listing without a change here.
 *
 * Derived figures:
 *   effective ratio   stored_pages * 4096 / pool_total_size: what the pool
 *                     holds against what it costs, same- and zero-filled
 *                     pages included (they cost no pool memory), as
 *                     zswap's stored_pages / pool_total_size;
 *   fault rate        faults per second over the last second (between two
 *                     screens with --watch);
 *   fault latency     the handler's time per fault, p50/p99 of its
 *                     histogram (4 bins per power of two: a bin's upper
 *                     bound is shown);
 *   refaults per reclaimed page   reclaim_refaults / reclaim_moved: near 0
 *                     the reclaimer picks cold pages, near 1 it takes pages
 *                     the program wants back.
 */
#include "tools/stat.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/options.h"
#include "core/shmstat.h"
#include "core/stats.h"

#define MAX_PIDS 1024

struct view {
	pid_t pid;
	struct shmstat_reader r;
	struct shmstat_info info;
	struct shmstat_sample s;
};

/* ---- reading ---- */

static uint64_t val(const struct view *v, const char *name)
{
	int i = shmstat_find(&v->info, name);
	return i < 0 ? 0 : v->s.values[i];
}

/* The limit now (`zswapu limit` changes it); the one it started with from a
 * file without the counter. */
static uint64_t limit_of(const struct view *v)
{
	return shmstat_find(&v->info, "limit_bytes") >= 0 ? val(v, "limit_bytes")
							   : v->info.limit_bytes;
}

static const char *open_error(int err)
{
	switch (err) {
	case -ENOENT:
		return "not a managed process (no live /dev/shm/zswapu.PID)";
	case -EACCES:
		return "permission denied (another user's process)";
	case -EPROTO:
		return "its stats segment is of another zswapu version";
	default:
		return strerror(-err);
	}
}

/* Open @pid's segment and read a first sample; 0 or an error printed. */
static int view_open(pid_t pid, struct view *v, const char *cmd)
{
	memset(v, 0, sizeof(*v));
	v->pid = pid;
	int err = shmstat_open(NULL, pid, &v->r);
	if (!err) {
		shmstat_info(&v->r, &v->info);
		err = shmstat_read(&v->r, &v->s);
		if (err)
			shmstat_close(&v->r);
	}
	if (err)
		fprintf(stderr, "zswapu %s: pid %ld: %s\n", cmd, (long)pid,
			err == -EAGAIN ? "its stats never settled (is it stopped?)"
				       : open_error(err));
	return err;
}

/* A fresh sample; false once the process is gone. */
static bool view_refresh(struct view *v)
{
	return shmstat_alive(&v->r) && shmstat_read(&v->r, &v->s) == 0;
}

/* The PID named in @arg, or the one managed process; -1 after a message. */
static pid_t pick_pid(const char *arg, const char *cmd)
{
	if (arg) {
		char *end;
		long pid = strtol(arg, &end, 10);
		if (*arg && !*end && pid > 0 && pid <= 0x7fffffff)
			return (pid_t)pid;
		fprintf(stderr, "zswapu %s: '%s' is not a process ID\n", cmd, arg);
		return -1;
	}
	pid_t pids[MAX_PIDS];
	int n = shmstat_list(NULL, pids, MAX_PIDS);
	if (n < 0) {
		fprintf(stderr, "zswapu %s: %s: %s\n", cmd, SHMSTAT_DIR, strerror(-n));
		return -1;
	}
	if (n == 1)
		return pids[0];
	if (n == 0) {
		fprintf(stderr, "zswapu %s: no managed process is running (none has a %s/zswapu.PID)\n",
			cmd, SHMSTAT_DIR);
		return -1;
	}
	fprintf(stderr, "zswapu %s: %d managed processes; name one:", cmd, n);
	for (int i = 0; i < n && i < MAX_PIDS; i++)
		fprintf(stderr, " %ld", (long)pids[i]);
	fprintf(stderr, " (zswapu ps lists them)\n");
	return -1;
}

/* ---- formatting ---- */

static const char *bytes(uint64_t b, char *buf, size_t len)
{
	if (b >= (1ULL << 30))
		snprintf(buf, len, "%.2f GiB", b / 1073741824.0);
	else if (b >= (1ULL << 20))
		snprintf(buf, len, "%.1f MiB", b / 1048576.0);
	else if (b >= 1024)
		snprintf(buf, len, "%.1f KiB", b / 1024.0);
	else
		snprintf(buf, len, "%llu B", (unsigned long long)b);
	return buf;
}

static const char *nanos(uint64_t ns, char *buf, size_t len)
{
	if (ns == 0)
		snprintf(buf, len, "-");
	else if (ns == UINT64_MAX)
		snprintf(buf, len, "> 0.8 s");
	else if (ns >= 1000000)
		snprintf(buf, len, "%.1f ms", ns / 1e6);
	else if (ns >= 1000)
		snprintf(buf, len, "%.1f us", ns / 1e3);
	else
		snprintf(buf, len, "%llu ns", (unsigned long long)ns);
	return buf;
}

static double ratio(const struct view *v)
{
	uint64_t pool = val(v, "pool_total_size");
	return pool ? val(v, "stored_pages") * 4096.0 / (double)pool : 0;
}

static double refaults_per_reclaimed(const struct view *v)
{
	uint64_t moved = val(v, "reclaim_moved");
	return moved ? (double)val(v, "reclaim_refaults") / (double)moved : 0;
}

static double uptime(const struct view *v)
{
	return (v->s.t_ns - v->r.seg->start_ns) / 1e9;
}

/* Faults per second: between @prev and @v when given, else as published. */
static double fault_rate(const struct view *v, const struct shmstat_sample *prev)
{
	int i = shmstat_find(&v->info, "faults");
	if (prev && i >= 0 && v->s.t_ns > prev->t_ns)
		return (v->s.values[i] - prev->values[i]) * 1e9 / (double)(v->s.t_ns - prev->t_ns);
	return (double)val(v, "faults_per_sec");
}

static void print_screen(FILE *f, const struct view *v, const struct shmstat_sample *prev)
{
	char a[32], b[32], c[32], d[32];
	const struct shmstat_info *in = &v->info;
	uint64_t limit = limit_of(v), rss = val(v, "anon_rss_bytes");
	uint64_t stored = val(v, "stored_pages"), set = val(v, "limit_set_bytes");
	/* ZSWAPU_STALL_MAX let the limit give: say from what */
	char given[96] = "";
	if (limit && set && set != limit)
		snprintf(given, sizeof(given), " (set %s; raised %llu times, lowered %llu by the "
			 "stall control)", bytes(set, b, sizeof(b)),
			 (unsigned long long)val(v, "reclaim_limit_raised"),
			 (unsigned long long)val(v, "reclaim_limit_lowered"));
	fprintf(f, "zswapu stat: pid %ld (%s), up %.1f s; %s, %s, limit %s%s%s, cold age %llu ms%s\n",
		(long)v->pid, in->comm, uptime(v), in->compressor, in->pool,
		limit ? bytes(limit, a, sizeof(a)) : "none", given,
		limit ? (in->limit_pool ? " (pool counted)" : " (pool not counted)") : "",
		(unsigned long long)in->cold_age_ms,
		val(v, "released") ? "; released: unmanaged"
		: val(v, "failed") ? "; FAILED: unmanaged" : "");
	uint64_t unreach = val(v, "reclaim_limit_unreachable");
	if (limit)
		fprintf(f, "  %-12s %s of %s limit (%.0f %%); managed %s in %llu ranges%s\n",
			"resident", bytes(rss, a, sizeof(a)), bytes(limit, b, sizeof(b)),
			100.0 * rss / limit, bytes(val(v, "managed_bytes"), c, sizeof(c)),
			(unsigned long long)val(v, "regions"),
			/* why a process runs over its limit without being slowed */
			unreach && rss > limit
				? (in->limit_pool ? "; limit out of reach (unmanaged memory and the pool "
						    "over it)"
						  : "; limit out of reach (unmanaged memory over it)")
				: "");
	else
		fprintf(f, "  %-12s %s (no limit); managed %s in %llu ranges\n", "resident",
			bytes(rss, a, sizeof(a)), bytes(val(v, "managed_bytes"), c, sizeof(c)),
			(unsigned long long)val(v, "regions"));
	fprintf(f, "  %-12s %s holding %s: effective ratio %.2f (compressed data %s)\n", "pool",
		bytes(val(v, "pool_total_size"), a, sizeof(a)), bytes(stored * 4096, b, sizeof(b)),
		ratio(v), bytes(val(v, "compressed_bytes"), d, sizeof(d)));
	fprintf(f, "  %-12s %llu stored: %llu same-filled, %llu zero-filled, %llu incompressible\n",
		"pages", (unsigned long long)stored, (unsigned long long)val(v, "same_filled_pages"),
		(unsigned long long)val(v, "zero_filled_pages"),
		(unsigned long long)val(v, "stored_incompressible_pages"));
	fprintf(f, "  %-12s %llu compress_poor, %llu compress_fail, %llu alloc_fail, %llu "
		   "decompress_fail\n",
		"rejects", (unsigned long long)val(v, "reject_compress_poor"),
		(unsigned long long)val(v, "reject_compress_fail"),
		(unsigned long long)val(v, "reject_alloc_fail"),
		(unsigned long long)val(v, "decompress_fail"));
	fprintf(f, "  %-12s %.0f/s, %llu in all; handler time p50 %s, p99 %s; load p50 %s, p99 %s\n",
		"faults", fault_rate(v, prev), (unsigned long long)val(v, "faults"),
		nanos(stats_hist_quantile_ns(v->s.fault_ns, 0.5), a, sizeof(a)),
		nanos(stats_hist_quantile_ns(v->s.fault_ns, 0.99), b, sizeof(b)),
		nanos(stats_hist_quantile_ns(v->s.load_ns, 0.5), c, sizeof(c)),
		nanos(stats_hist_quantile_ns(v->s.load_ns, 0.99), d, sizeof(d)));
	/* the program's threads waiting on zswapu: the one figure that says
	 * the limit costs too much (the kernel's PSI, for one process) */
	double up = uptime(v);
	uint64_t stall_pct = val(v, "stall_pct");
	fprintf(f, "  %-12s at least %llu %% of the last second waiting on faults, %.0f %% since "
		   "the start%s\n",
		"stall", (unsigned long long)stall_pct,
		up > 0 ? val(v, "stall_ns") / 1e7 / up : 0.0,
		!limit || stall_pct < 50 ? ""
		: val(v, "reclaim_limit_raised") ? ": the stall control is raising the limit"
		: ": the limit is too tight for this program (zswapu limit PID SIZE raises "
		  "it; ZSWAPU_STALL_MAX lets it give)");
	fprintf(f, "  %-12s %llu pages reclaimed (%llu/s), %llu refaulted: %.3f refaults per "
		   "reclaimed page\n",
		"reclaim", (unsigned long long)val(v, "reclaim_moved"),
		(unsigned long long)val(v, "reclaimed_per_sec"),
		(unsigned long long)val(v, "reclaim_refaults"), refaults_per_reclaimed(v));
	fprintf(f, "  %-12s %llu pages written back (%s), %llu read back\n", "writeback",
		(unsigned long long)val(v, "written_back_pages"),
		bytes(val(v, "writeback_bytes"), a, sizeof(a)), (unsigned long long)val(v, "wb_reads"));
}

/* Every counter, two columns, as grep on zswap's debugfs directory would. */
static void print_counters(FILE *f, const struct view *v)
{
	unsigned n = (unsigned)v->info.ncounters, half = (n + 1) / 2;
	fprintf(f, "\ncounters:\n");
	for (unsigned i = 0; i < half; i++) {
		fprintf(f, "  %-28s %14llu", v->info.names[i], (unsigned long long)v->s.values[i]);
		if (i + half < n)
			fprintf(f, "    %-28s %14llu", v->info.names[i + half],
				(unsigned long long)v->s.values[i + half]);
		fputc('\n', f);
	}
}

/* name value, one per line: every counter, then the derived figures. */
static void print_raw(FILE *f, const struct view *v)
{
	fprintf(f, "pid %ld\ncomm %s\ncompressor %s\npool %s\n", (long)v->pid, v->info.comm,
		v->info.compressor, v->info.pool);
	if (shmstat_find(&v->info, "limit_bytes") < 0)
		fprintf(f, "limit_bytes %llu\n", (unsigned long long)limit_of(v));
	for (unsigned i = 0; i < v->info.ncounters; i++)
		fprintf(f, "%s %llu\n", v->info.names[i], (unsigned long long)v->s.values[i]);
	fprintf(f, "effective_ratio %.3f\nrefaults_per_reclaimed %.4f\n", ratio(v),
		refaults_per_reclaimed(v));
	fprintf(f, "fault_p50_ns %llu\nfault_p99_ns %llu\nload_p50_ns %llu\nload_p99_ns %llu\n",
		(unsigned long long)stats_hist_quantile_ns(v->s.fault_ns, 0.5),
		(unsigned long long)stats_hist_quantile_ns(v->s.fault_ns, 0.99),
		(unsigned long long)stats_hist_quantile_ns(v->s.load_ns, 0.5),
		(unsigned long long)stats_hist_quantile_ns(v->s.load_ns, 0.99));
	fprintf(f, "uptime_s %.3f\nsample %llu\n", uptime(v), (unsigned long long)v->s.number);
}

static void print_classes(FILE *f, const struct view *v)
{
	const struct shmstat_sample *s = &v->s;
	fprintf(f, "zswapu stat: pid %ld (%s), pool %s\n", (long)v->pid, v->info.comm, v->info.pool);
	if (s->nclasses) {
		fprintf(f, " class  size almost_full almost_empty obj_allocated   obj_used pages_used "
			   "pages_per_zspage\n");
		uint64_t tot[4] = { 0 };
		for (uint64_t i = 0; i < s->nclasses; i++) {
			const struct shmstat_class *c = &s->classes[i];
			fprintf(f, "%6llu %5llu %11llu %12llu %13llu %10llu %10llu %16llu\n",
				(unsigned long long)c->class_idx, (unsigned long long)c->size,
				(unsigned long long)c->almost_full, (unsigned long long)c->almost_empty,
				(unsigned long long)c->obj_allocated, (unsigned long long)c->obj_used,
				(unsigned long long)c->pages_used,
				(unsigned long long)c->pages_per_zspage);
			tot[0] += c->obj_allocated;
			tot[1] += c->obj_used;
			tot[2] += c->pages_used;
		}
		fprintf(f, "Total %32s %13llu %10llu %10llu\n", "", (unsigned long long)tot[0],
			(unsigned long long)tot[1], (unsigned long long)tot[2]);
	} else {
		fprintf(f, "  (%s has no size classes; its own table:)\n", v->info.pool);
	}
	if (s->npool) {
		fprintf(f, "\n%s:\n", v->info.pool);
		for (uint64_t i = 0; i < s->npool; i++)
			fprintf(f, "  %-28s %14llu\n", s->pool_names[i],
				(unsigned long long)s->pool_values[i]);
	}
}

/* ---- record ---- */

/* A counter that is one of the fixed columns already. */
static bool fixed_column(const struct view *v, unsigned i)
{
	return strcmp(v->info.names[i], "limit_bytes") == 0;
}

/* Fixed columns first (gnuplot's script names them), then every other counter. */
static void record_header(FILE *f, const struct view *v)
{
	fprintf(f, "# zswapu stat --record: pid %ld (%s), compressor %s, pool %s, limit %llu\n",
		(long)v->pid, v->info.comm, v->info.compressor, v->info.pool,
		(unsigned long long)limit_of(v));
	fprintf(f, "time_s\tlimit_bytes\teffective_ratio\tfault_p50_ns\tfault_p99_ns\t"
		   "refaults_per_reclaimed");
	for (unsigned i = 0; i < v->info.ncounters; i++)
		if (!fixed_column(v, i))
			fprintf(f, "\t%s", v->info.names[i]);
	fputc('\n', f);
}

static void record_line(FILE *f, const struct view *v)
{
	fprintf(f, "%.3f\t%llu\t%.3f\t%llu\t%llu\t%.4f", uptime(v),
		(unsigned long long)limit_of(v), ratio(v),
		(unsigned long long)stats_hist_quantile_ns(v->s.fault_ns, 0.5),
		(unsigned long long)stats_hist_quantile_ns(v->s.fault_ns, 0.99),
		refaults_per_reclaimed(v));
	for (unsigned i = 0; i < v->info.ncounters; i++)
		if (!fixed_column(v, i))
			fprintf(f, "\t%llu", (unsigned long long)v->s.values[i]);
	fputc('\n', f);
	fflush(f);
}

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static void sleep_s(double secs)
{
	struct timespec ts = { .tv_sec = (time_t)secs,
			       .tv_nsec = (long)((secs - (double)(time_t)secs) * 1e9) };
	nanosleep(&ts, NULL);
}

/* ---- stat ---- */

static void stat_usage(FILE *f)
{
	fprintf(f,
		"usage: zswapu stat [PID]                  the stats of a managed process\n"
		"       zswapu stat --classes [PID]        its pool's size classes (zsmalloc) or table\n"
		"       zswapu stat --watch [-n N] [-i S] [PID]   refresh every S seconds (1), N times\n"
		"       zswapu stat --raw [PID]            name value lines, for scripts\n"
		"       zswapu stat --record FILE [-n N] [-i S] PID   samples to FILE (TSV) until it\n"
		"                                          exits; zswapu plot FILE draws them\n"
		"\n"
		"Without PID: the one managed process (zswapu ps lists them).\n");
}

enum stat_mode { MODE_SCREEN, MODE_CLASSES, MODE_RAW };

int stat_cmd_stat(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "classes", no_argument, NULL, 'c' },
		{ "watch", no_argument, NULL, 'w' },
		{ "raw", no_argument, NULL, 'r' },
		{ "record", required_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	enum stat_mode mode = MODE_SCREEN;
	bool watch = false;
	const char *record = NULL;
	long count = -1;
	double interval = 1.0;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "cwrn:i:h", longopts, NULL)) != -1) {
		char *end;
		switch (c) {
		case 'c': mode = MODE_CLASSES; break;
		case 'w': watch = true; break;
		case 'r': mode = MODE_RAW; break;
		case 'R': record = optarg; break;
		case 'n':
			count = strtol(optarg, &end, 10);
			if (*end || count <= 0) {
				fprintf(stderr, "zswapu stat: -n takes a count above 0\n");
				return 2;
			}
			break;
		case 'i':
			interval = strtod(optarg, &end);
			if (*end || !(interval >= 0.01 && interval <= 3600)) {
				fprintf(stderr, "zswapu stat: -i takes seconds, 0.01 to 3600\n");
				return 2;
			}
			break;
		case 'h': stat_usage(stdout); return 0;
		default: stat_usage(stderr); return 2;
		}
	}
	if (argc - optind > 1 || (record && argc - optind != 1)) {
		stat_usage(stderr);
		return 2;
	}
	pid_t pid = pick_pid(optind < argc ? argv[optind] : NULL, "stat");
	if (pid < 0)
		return 1;
	struct view *v = malloc(sizeof(*v));
	struct shmstat_sample *prev = malloc(sizeof(*prev));
	if (!v || !prev) {
		fprintf(stderr, "zswapu stat: out of memory\n");
		return 1;
	}
	int rc = 0;
	if (view_open(pid, v, "stat")) {
		rc = 1;
		goto out;
	}
	FILE *rec = NULL;
	if (record) {
		rec = fopen(record, "w");
		if (!rec) {
			fprintf(stderr, "zswapu stat: %s: %s\n", record, strerror(errno));
			rc = 1;
			goto close;
		}
		record_header(rec, v);
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	bool repeat = watch || rec, tty = isatty(STDOUT_FILENO), have_prev = false;
	for (long i = 0;; i++) {
		if (rec) {
			record_line(rec, v);
		} else {
			if (watch && tty)
				fputs("\033[H\033[2J", stdout);
			else if (i > 0)
				fputc('\n', stdout);
			if (mode == MODE_CLASSES)
				print_classes(stdout, v);
			else if (mode == MODE_RAW)
				print_raw(stdout, v);
			else {
				print_screen(stdout, v, have_prev ? prev : NULL);
				if (!watch)
					print_counters(stdout, v);
			}
			fflush(stdout);
		}
		if (!repeat || (count > 0 && i + 1 >= count) || interrupted)
			break;
		*prev = v->s;
		have_prev = true;
		sleep_s(interval);
		if (interrupted)
			break;
		if (!view_refresh(v)) {
			fprintf(stderr, "zswapu stat: pid %ld has exited\n", (long)pid);
			break;
		}
	}
	if (rec && fclose(rec)) {
		fprintf(stderr, "zswapu stat: %s: %s\n", record, strerror(errno));
		rc = 1;
	}
close:
	shmstat_close(&v->r);
out:
	free(v);
	free(prev);
	return rc;
}

/* ---- release, limit: asked of the process ---- */

/* ask_open()'s work: 0, -1 (--help shown) or an exit status. */
static int ask_parse(int argc, char **argv, int nargs, void (*usage)(FILE *), struct view *v,
		     double *timeout)
{
	static const struct option opts[] = {
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	char *end;
	optind = 1;
	while ((c = getopt_long(argc, argv, "t:h", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			*timeout = strtod(optarg, &end);
			if (*end || !(*timeout > 0 && *timeout <= 86400)) {
				fprintf(stderr, "zswapu %s: --timeout takes seconds, above 0\n", argv[0]);
				return 2;
			}
			break;
		case 'h': usage(stdout); return -1;
		default: usage(stderr); return 2;
		}
	}
	if (argc - optind < 1 || argc - optind > 1 + nargs) {
		usage(stderr);
		return 2;
	}
	pid_t pid = pick_pid(argv[optind], argv[0]);
	if (pid < 0 || view_open(pid, v, argv[0]))
		return 1;
	if (val(v, "failed") && !val(v, "released")) {
		fprintf(stderr, "zswapu %s: pid %ld (%s): its engine failed and stepped aside "
				"already: nothing is managed\n", argv[0], (long)pid, v->info.comm);
		shmstat_close(&v->r);
		return 1;
	}
	return 0;
}

/*
 * The options and PID of a command that asks something of one process
 * (no default PID: that is asked of a process by name), and its first
 * sample.  @nargs: the arguments after the PID the command takes (at
 * most).  @return the view (free it, its reader closed), or NULL with the
 * exit status in *@rc.
 */
static struct view *ask_open(int argc, char **argv, int nargs, void (*usage)(FILE *),
			     double *timeout, int *rc)
{
	struct view *v = malloc(sizeof(*v));
	*rc = v ? ask_parse(argc, argv, nargs, usage, v, timeout) : 1;
	if (*rc) {
		free(v);
		v = NULL;
		*rc = *rc < 0 ? 0 : *rc;
	}
	return v;
}

/* Ask @what (SHMSTAT_REQ_*, @limit for a limit) of @v's process. */
static int ask(struct view *v, const char *cmd, uint64_t what, uint64_t limit)
{
	int err = what == SHMSTAT_REQ_LIMIT ? shmstat_request_limit(NULL, v->pid, limit)
					    : shmstat_request(NULL, v->pid, what);
	if (err)
		fprintf(stderr, "zswapu %s: pid %ld: %s\n", cmd, (long)v->pid,
			err == -EACCES ? "permission denied (another user's process)" : open_error(err));
	return err;
}

/* Wait until counter @name reads @want; 0, -ETIMEDOUT, or -ESRCH (gone: said). */
static int await_value(struct view *v, const char *cmd, const char *name, uint64_t want,
		       double timeout)
{
	for (double waited = 0; val(v, name) != want; waited += 0.05) {
		if (waited >= timeout)
			return -ETIMEDOUT;
		sleep_s(0.05);
		if (!view_refresh(v)) {
			fprintf(stderr, "zswapu %s: pid %ld has exited\n", cmd, (long)v->pid);
			return -ESRCH;
		}
	}
	return 0;
}

static void release_usage(FILE *f)
{
	fprintf(f, "usage: zswapu release [--timeout SECONDS] PID\n\n"
		   "Puts every page a managed process has stored back into its memory and stops\n"
		   "managing it; the program runs on unmanaged until it exits.  For gdb and\n"
		   "anything else that reads its memory through /proc/PID/mem or ptrace:\n"
		   "those cannot bring a stored page back and read it as an error\n"
		   "(gdb: \"Cannot access memory\").  Waits until it is done (at most\n"
		   "--timeout, 60 s by default), then says how much came back.\n");
}

int stat_cmd_release(int argc, char **argv)
{
	double timeout = 60;
	int rc;
	struct view *v = ask_open(argc, argv, 0, release_usage, &timeout, &rc);
	if (!v)
		return rc;
	rc = 1;
	char a[32], b[32];
	uint64_t stored = val(v, "stored_pages");
	pid_t pid = v->pid;
	if (val(v, "released")) {
		printf("zswapu release: pid %ld (%s): released already; it runs on unmanaged\n",
		       (long)pid, v->info.comm);
		rc = 0;
		goto close;
	}
	if (ask(v, "release", SHMSTAT_REQ_RELEASE, 0))
		goto close;
	int err = await_value(v, "release", "stepped_aside", 1, timeout);
	if (err == -ETIMEDOUT)
		fprintf(stderr, "zswapu release: pid %ld (%s): not done after %g s (%s stored "
				"pages left; is it stopped?)\n", (long)pid, v->info.comm, timeout,
			bytes(val(v, "stored_pages") * 4096, a, sizeof(a)));
	if (err)
		goto close;
	uint64_t lost = val(v, "pages_lost");
	printf("zswapu release: pid %ld (%s): %s of stored pages brought back, resident %s; it "
	       "runs on unmanaged%s\n", (long)pid, v->info.comm, bytes(stored * 4096, a, sizeof(a)),
	       bytes(val(v, "anon_rss_bytes"), b, sizeof(b)),
	       lost ? " (some pages could not be read back: see its stderr)" : "");
	rc = lost ? 1 : 0;
close:
	shmstat_close(&v->r);
	free(v);
	return rc;
}

static void limit_usage(FILE *f)
{
	fprintf(f, "usage: zswapu limit [--timeout SECONDS] PID [SIZE]\n\n"
		   "Shows the limit a managed process is held under, or changes it to SIZE\n"
		   "(512M, 2G, 25%% of RAM: as ZSWAPU_LIMIT) while it runs, as writing a\n"
		   "cgroup's memory.max does.  Under a lower limit the process's pages are\n"
		   "compressed at the reclaimer's pace; `zswapu stat PID` shows the resident\n"
		   "size come down.  Only a process started with a limit has one to change.\n"
		   "Waits until the process holds the new limit (at most --timeout, 10 s by\n"
		   "default).\n");
}

int stat_cmd_limit(int argc, char **argv)
{
	double timeout = 10;
	int rc;
	struct view *v = ask_open(argc, argv, 1, limit_usage, &timeout, &rc);
	if (!v)
		return rc;
	rc = 1;
	char a[32], b[32], c[32];
	pid_t pid = v->pid;
	uint64_t was = limit_of(v);
	const char *size = argv[optind + 1];
	if (!size) {
		uint64_t set = val(v, "limit_set_bytes");
		if (was && set && set != was)
			printf("zswapu limit: pid %ld (%s): limit %s (set %s, raised by the stall "
			       "control), resident %s\n", (long)pid, v->info.comm,
			       bytes(was, a, sizeof(a)), bytes(set, c, sizeof(c)),
			       bytes(val(v, "anon_rss_bytes"), b, sizeof(b)));
		else if (was)
			printf("zswapu limit: pid %ld (%s): limit %s, resident %s\n", (long)pid,
			       v->info.comm, bytes(was, a, sizeof(a)),
			       bytes(val(v, "anon_rss_bytes"), b, sizeof(b)));
		else
			printf("zswapu limit: pid %ld (%s): no limit\n", (long)pid, v->info.comm);
		rc = 0;
		goto close;
	}
	/* parsed as the variable is, with its messages */
	struct options o;
	char var[300], err[400];
	snprintf(var, sizeof(var), OPTIONS_PREFIX "LIMIT=%s", size);
	const char *env[] = { var, NULL };
	if (options_load(&o, env, err, sizeof(err))) {
		fprintf(stderr, "zswapu limit: %s\n", err);
		rc = 2;
		goto close;
	}
	uint64_t want = o.z.limit_bytes;
	if (!want) {
		fprintf(stderr, "zswapu limit: a running process keeps a limit: to stop managing "
				"it, zswapu release %ld\n", (long)pid);
		rc = 2;
		goto close;
	}
	if (val(v, "released")) {
		fprintf(stderr, "zswapu limit: pid %ld (%s): released: it runs unmanaged\n",
			(long)pid, v->info.comm);
		goto close;
	}
	if (!was) {
		fprintf(stderr, "zswapu limit: pid %ld (%s) was started without a limit, and has "
				"no reclaimer to hold one: start it with --limit (ZSWAPU_LIMIT)\n",
			(long)pid, v->info.comm);
		goto close;
	}
	if (ask(v, "limit", SHMSTAT_REQ_LIMIT, want))
		goto close;
	int e = await_value(v, "limit", "limit_bytes", want, timeout);
	if (e == -ETIMEDOUT)
		fprintf(stderr, "zswapu limit: pid %ld (%s): the limit is still %s after %g s "
				"(is it stopped?)\n", (long)pid, v->info.comm,
			bytes(limit_of(v), a, sizeof(a)), timeout);
	if (e)
		goto close;
	printf("zswapu limit: pid %ld (%s): limit %s, was %s; resident %s\n", (long)pid,
	       v->info.comm, bytes(want, a, sizeof(a)), bytes(was, b, sizeof(b)),
	       bytes(val(v, "anon_rss_bytes"), c, sizeof(c)));
	rc = 0;
close:
	shmstat_close(&v->r);
	free(v);
	return rc;
}

/* ---- ps ---- */

int stat_cmd_ps(int argc, char **argv)
{
	if (argc > 1) {
		bool help = !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help");
		fprintf(help ? stdout : stderr,
			"usage: zswapu ps\n\nLists the managed processes (those with a live "
			"%s/zswapu.PID) and removes the files of those that are gone.\n",
			SHMSTAT_DIR);
		return help ? 0 : 2;
	}
	pid_t pids[MAX_PIDS];
	int n = shmstat_list(NULL, pids, MAX_PIDS);
	if (n < 0) {
		fprintf(stderr, "zswapu ps: %s: %s\n", SHMSTAT_DIR, strerror(-n));
		return 1;
	}
	struct view *v = malloc(sizeof(*v));
	if (!v)
		return 1;
	printf("%7s  %-16s %11s %11s %11s %11s %6s %9s %6s\n", "PID", "PROGRAM", "RESIDENT", "LIMIT",
	       "POOL", "STORED", "RATIO", "FAULTS/S", "STALL%");
	for (int i = 0; i < n && i < MAX_PIDS; i++) {
		char a[32], b[32], c[32], d[32];
		memset(v, 0, sizeof(*v));
		v->pid = pids[i];
		int err = shmstat_open(NULL, pids[i], &v->r);
		if (!err) {
			shmstat_info(&v->r, &v->info);
			err = shmstat_read(&v->r, &v->s);
			shmstat_close(&v->r);
		}
		if (err) {
			printf("%7ld  (%s)\n", (long)pids[i], open_error(err));
			continue;
		}
		printf("%7ld  %-16.16s %11s %11s %11s %11s %6.2f %9llu %6llu\n", (long)v->pid, v->info.comm,
		       bytes(val(v, "anon_rss_bytes"), a, sizeof(a)),
		       limit_of(v) ? bytes(limit_of(v), b, sizeof(b)) : "-",
		       bytes(val(v, "pool_total_size"), c, sizeof(c)),
		       bytes(val(v, "stored_pages") * 4096, d, sizeof(d)), ratio(v),
		       (unsigned long long)val(v, "faults_per_sec"),
		       (unsigned long long)val(v, "stall_pct"));
	}
	free(v);
	return 0;
}

/* ---- plot ---- */

/* The four panels, for whichever terminal is set; @stall: the file has
 * stall_pct (records before it do not), drawn on the fault panel. */
static void plot_panels(FILE *g, const char *data, const char *title, bool stall)
{
	fprintf(g,
		"set multiplot layout 2,2 title \"%s\"\n"
		"set xlabel \"seconds\"\n"
		"set title \"resident vs limit\"\nset ylabel \"MiB\"\n"
		"plot \"%s\" using \"time_s\":(column(\"anon_rss_bytes\")/1048576.0) with lines "
		"lw 2 title \"resident\", "
		"\"\" using \"time_s\":(column(\"limit_bytes\") > 0 ? column(\"limit_bytes\")/1048576.0 "
		": NaN) with lines dt 2 lw 2 title \"limit\"\n"
		"set title \"compressed pool\"\n"
		"plot \"%s\" using \"time_s\":(column(\"pool_total_size\")/1048576.0) with lines "
		"lw 2 title \"pool\", "
		"\"\" using \"time_s\":(column(\"stored_pages\")*4096/1048576.0) with lines "
		"title \"stored (uncompressed)\"\n"
		"set title \"effective compression ratio\"\nset ylabel \"stored / pool\"\n"
		"plot \"%s\" using \"time_s\":\"effective_ratio\" with lines lw 2 title \"ratio\"\n"
		"set title \"faults per second%s\"\nset ylabel \"faults/s\"\n%s"
		"plot \"%s\" using \"time_s\":\"faults_per_sec\" with lines lw 2 title \"faults/s\"%s\n"
		"unset multiplot\nunset y2tics\nunset y2label\n",
		title, data, data, data, stall ? " and the stall" : "",
		stall ? "set y2label \"% of the time waiting on faults\"\nset y2tics\n" : "", data,
		stall ? ", \"\" using \"time_s\":\"stall_pct\" axes x1y2 with lines title \"stall %\""
		      : "");
}

static bool has_quote(const char *s)
{
	return strpbrk(s, "\"\\\n") != NULL;
}

int stat_cmd_plot(int argc, char **argv)
{
	const char *out = NULL;
	int c;
	optind = 1;
	while ((c = getopt(argc, argv, "o:h")) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case 'h':
		default:
			fprintf(c == 'h' ? stdout : stderr,
				"usage: zswapu plot [-o PREFIX] FILE\n\n"
				"Draws what `zswapu stat --record FILE PID` wrote: resident vs limit,\n"
				"pool size, compression ratio, fault rate and stall over time, into\n"
				"PREFIX.png and PREFIX.svg (PREFIX: FILE without its extension).\n"
				"Needs gnuplot (Debian: gnuplot-nox).\n");
			return c == 'h' ? 0 : 2;
		}
	}
	if (argc - optind != 1) {
		fprintf(stderr, "usage: zswapu plot [-o PREFIX] FILE\n");
		return 2;
	}
	const char *data = argv[optind];
	char prefix[4096], title[256] = "zswapu";
	if (!out) {
		snprintf(prefix, sizeof(prefix), "%s", data);
		char *dot = strrchr(prefix, '.'), *slash = strrchr(prefix, '/');
		if (dot && (!slash || dot > slash) && dot != prefix)
			*dot = '\0';
		out = prefix;
	}
	if (has_quote(data) || has_quote(out)) {
		fprintf(stderr, "zswapu plot: file names with quotes or backslashes are not "
				"supported\n");
		return 2;
	}
	FILE *f = fopen(data, "r");
	if (!f) {
		fprintf(stderr, "zswapu plot: %s: %s\n", data, strerror(errno));
		return 1;
	}
	char *line = NULL;
	size_t cap = 0;
	int rows = -1; /* the column header is not a row */
	bool stall = false;
	while (getline(&line, &cap, f) > 0) {
		if (line[0] == '#') {
			/* "# zswapu stat --record: pid N (prog), ..." */
			char *p = strstr(line, "pid ");
			if (p) {
				p[strcspn(p, ",\n")] = '\0';
				snprintf(title, sizeof(title), "zswapu: %s", p);
			}
			continue;
		}
		if (rows < 0 && strncmp(line, "time_s\t", 7)) {
			fprintf(stderr, "zswapu plot: %s: not written by zswapu stat --record\n", data);
			free(line);
			fclose(f);
			return 1;
		}
		if (rows < 0) { /* the header: is stall_pct one of its names? */
			line[strcspn(line, "\n")] = '\0';
			for (const char *h = line; (h = strstr(h, "\tstall_pct")); h++)
				stall |= h[10] == '\t' || h[10] == '\0';
		}
		rows++;
	}
	free(line);
	fclose(f);
	if (rows < 1) {
		fprintf(stderr, "zswapu plot: %s: no samples\n", data);
		return 1;
	}
	for (char *p = title; *p; p++)
		if (*p == '"' || *p == '\\')
			*p = ' ';
	FILE *g = popen("gnuplot", "w");
	if (!g) {
		fprintf(stderr, "zswapu plot: cannot run gnuplot: %s\n", strerror(errno));
		return 1;
	}
	fprintf(g, "set datafile separator \"\\t\"\nset datafile commentschars \"#\"\n"
		   "set key top left\nset grid\n");
	fprintf(g, "set terminal pngcairo size 1200,900\nset output \"%s.png\"\n", out);
	plot_panels(g, data, title, stall);
	fprintf(g, "set terminal svg size 1200,900 dynamic\nset output \"%s.svg\"\n", out);
	plot_panels(g, data, title, stall);
	fprintf(g, "set output\n");
	int st = pclose(g);
	if (st != 0) {
		fprintf(stderr, "zswapu plot: gnuplot failed%s\n",
			st == 127 << 8 ? " (not installed? Debian: apt-get install gnuplot-nox)" : "");
		return 1;
	}
	printf("%s.png\n%s.svg\n", out, out);
	return 0;
}

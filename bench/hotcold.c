/*
 * hotcold — the reference workload ../shared/bench/hotcold.c (3 GiB of
 * text-like pages, 10 % of them zero; 10 passes of accesses, 90 % of them to
 * a hot 10 % of the pages; every byte verified at the end) run natively and
 * under zswapu with a 1 GiB limit, compared with the kernel's zswap on the
 * same workload (NUMBERS.md: 4.9x native with a 1 GiB cgroup limit).
 *
 * How the workload gets the library, without LD_PRELOAD and without
 * changing hotcold.c: this driver compiles hotcold.c at run time with cc,
 * twice, into a temporary directory:
 *   - alone, as its header says (cc -O2 hotcold.c -llz4): the native run;
 *   - with a small shim (shim_src below, compiled with -Werror) and a copy
 *     of build/<mode>/libzswapu.so (a rebuild during the run cannot touch
 *     it), linked with -Wl,--wrap=mmap and -Wl,--wrap=getrusage.  The
 *     linker sends hotcold.c's own calls of those two functions to the
 *     shim; glibc's internal mmaps are untouched.  The shim's constructor
 *     calls zswapu_init() with the limit the driver puts in the
 *     environment; its mmap registers every private anonymous writable
 *     mapping of 1 MiB or more with zswapu_register() as soon as it is made
 *     (what the LD_PRELOAD shim's interposed mmap does: the workload's 3 GiB
 *     heap); its getrusage takes a zswapu_stats() snapshot each time
 *     hotcold.c reads its own counters, which it does at the phase
 *     boundaries (below); its destructor writes the snapshots and VmHWM to
 *     a file the driver reads.
 * The alternative, a -Dmain=... shared object dlopen()ed here, would need
 * this program to export a replacement mmap (the Makefile links without
 * -rdynamic), so the exec route is the simpler one.  Both binaries hold the
 * same hotcold.c code.  Each run is a child process: one engine, one
 * address space, one peak resident size per run.
 *
 * Phases: hotcold.c calls getrusage(RUSAGE_SELF) in snapshot("start"),
 * snapshot("fill"), right before and right after the access loop, then in
 * snapshot("access") and snapshot("verify"): six calls, so snapshots 1-2
 * bound the fill, 3-4 the accesses, 5-6 the verify pass.  If hotcold.c
 * changes and the count differs, the per-phase figures fall back to the
 * whole run (with a note).
 *
 * Reported per run (the median run by wall time with --runs N):
 *   runtime_vs_native     wall time (spawn to exit, as kzswap.sh times the
 *                         kernel) / the native run's; cpu_vs_native is the
 *                         same for user + system time (all threads), which
 *                         other work on the machine disturbs less;
 *   faults_per_access     zswapu faults during the access phase / accesses
 *                         (the kernel counts a fault resolved through
 *                         userfaultfd as a minor one: hotcold.c's majflt
 *                         stays 0, so zswapu's own count is used);
 *   refaults_per_reclaim  faults on pages zswapu had taken out (faults -
 *                         faults_zero) / pages the reclaimer detached, both
 *                         counted up to the end of the access phase (the
 *                         verify pass reads every page back by design, so
 *                         it is left out); the access phase alone is
 *                         refaults_per_reclaim_access.  Pages the engine
 *                         brings back ahead of a sequential scan without a
 *                         fault are counted apart (readahead_pages);
 *   peak_rss_bytes        the child's peak resident size (wait4's
 *                         ru_maxrss, the kernel's high-water mark: VmHWM);
 *   limit_bytes           and whether the pool counts against it;
 *   limit_held            whether what the limit counts (resident anonymous
 *                         memory by zswapu's own reading, less the pool when
 *                         the pool is outside the limit) was within 5 % of it
 *                         when the access phase ended.  The goal (faster than
 *                         the kernel's 4.9x) is met only with the limit held:
 *                         a run over its limit is not comparable.
 * Two managed runs: the pool inside the limit (the library's default: the
 * whole process stays under the limit) and outside it (the kernel peer's
 * terms: on cgroup v1 the zswap pool is not charged to the cgroup).
 * A third, outside too, with the stall control (ZSWAPU_STALL_MAX=30): what
 * it trades, the run time against the limit it gave way to (no goal:
 * stall_max_percent, limit_raised, limit_end_bytes; target_met null).
 * --quick: 256 MiB with the limit scaled alike (1/3 of the data).
 *
 * The kernel's figures are quoted from NUMBERS.md, labelled as such, not
 * measured here.  Exit status: 0 when every run finished and verified (a
 * missed target is printed, not an error); 1 when a run failed, hung or
 * read back wrong data.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/bench.h"

#define GIB (1024.0 * 1024 * 1024)
#define FULL_GIB 3.0
#define QUICK_GIB 0.25
#define PASSES 10
#define LIMIT_SHARE (1.0 / 3) /* 1 GiB of 3 GiB, as the kernel was measured */
#define LIMIT_SLACK 0.05      /* "held": within 5 % of the limit */
#define MAX_SNAPS 64
#define PHASE_SNAPS 6
/* NUMBERS.md, "Kernel zswap on this machine": reference figures, not measured here */
#define REF_KERNEL_VS_NATIVE 4.9
#define REF_KERNEL_WALL_S 90.3
#define REF_NATIVE_WALL_S 18.6
#define REF_KERNEL_MAJFLT 677000.0
#define REF_ACCESSES (10.0 * 786432)

/* ---- the shim linked into the managed binary ------------------------- */

static const char shim_src[] =
	"/* Generated by bench/hotcold: links ../shared/bench/hotcold.c with libzswapu. */\n"
	"#include <errno.h>\n"
	"#include <stdint.h>\n"
	"#include <stdio.h>\n"
	"#include <stdlib.h>\n"
	"#include <string.h>\n"
	"#include <sys/mman.h>\n"
	"#include <sys/resource.h>\n"
	"#include \"libzswapu/zswapu.h\"\n"
	"\n"
	"#define MAX_SNAPS 64\n"
	"#define MIN_REGION (1UL << 20)\n"
	"\n"
	"static struct zswapu_stats snaps[MAX_SNAPS];\n"
	"static int nsnaps, init_err = -ENODEV, reg_err, nregions;\n"
	"static size_t reg_bytes;\n"
	"\n"
	"void *__real_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);\n"
	"int __real_getrusage(int who, struct rusage *ru);\n"
	"void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);\n"
	"int __wrap_getrusage(int who, struct rusage *ru);\n"
	"\n"
	"__attribute__((constructor)) static void shim_init(void)\n"
	"{\n"
	"	const char *limit = getenv(\"HOTCOLD_ZSWAPU_LIMIT\");\n"
	"	const char *in = getenv(\"HOTCOLD_ZSWAPU_POOL_IN_LIMIT\");\n"
	"	const char *stall = getenv(\"HOTCOLD_ZSWAPU_STALL_MAX\");\n"
	"	struct zswapu_options o;\n"
	"	zswapu_options_init(&o);\n"
	"	o.limit_bytes = limit ? strtoull(limit, NULL, 10) : 0;\n"
	"	o.limit_includes_pool = in ? atoi(in) : 1;\n"
	"	o.stall_max_percent = stall ? (unsigned)atoi(stall) : 0;\n"
	"	init_err = zswapu_init(&o);\n"
	"	if (init_err)\n"
	"		fprintf(stderr, \"hotcold shim: zswapu_init: %s\\n\", strerror(-init_err));\n"
	"}\n"
	"\n"
	"/* the workload's heap: registered as soon as it exists */\n"
	"void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)\n"
	"{\n"
	"	void *p = __real_mmap(addr, len, prot, flags, fd, off);\n"
	"	if (p == MAP_FAILED || init_err || len < MIN_REGION || !(prot & PROT_WRITE) ||\n"
	"	    (flags & (MAP_ANONYMOUS | MAP_PRIVATE)) != (MAP_ANONYMOUS | MAP_PRIVATE))\n"
	"		return p;\n"
	"	size_t rounded = (len + 4095) & ~(size_t)4095;\n"
	"	int err = zswapu_register(p, rounded);\n"
	"	if (err) {\n"
	"		reg_err = err;\n"
	"		fprintf(stderr, \"hotcold shim: zswapu_register: %s\\n\", strerror(-err));\n"
	"	} else {\n"
	"		nregions++;\n"
	"		reg_bytes += rounded;\n"
	"	}\n"
	"	return p;\n"
	"}\n"
	"\n"
	"/* hotcold.c reads its counters at each phase boundary: so do we */\n"
	"int __wrap_getrusage(int who, struct rusage *ru)\n"
	"{\n"
	"	int ret = __real_getrusage(who, ru);\n"
	"	if (who == RUSAGE_SELF && !ret && !init_err && nsnaps < MAX_SNAPS)\n"
	"		zswapu_stats(&snaps[nsnaps++]);\n"
	"	return ret;\n"
	"}\n"
	"\n"
	"static unsigned long vmhwm_kib(void)\n"
	"{\n"
	"	FILE *f = fopen(\"/proc/self/status\", \"r\");\n"
	"	char line[256];\n"
	"	unsigned long kib = 0;\n"
	"	while (f && fgets(line, sizeof(line), f))\n"
	"		if (sscanf(line, \"VmHWM: %lu kB\", &kib) == 1)\n"
	"			break;\n"
	"	if (f)\n"
	"		fclose(f);\n"
	"	return kib;\n"
	"}\n"
	"\n"
	"static void put_snap(FILE *f, const char *name, const struct zswapu_stats *z)\n"
	"{\n"
	"	fprintf(f, \"%s faults=%llu faults_zero=%llu \"\n"
	"		   \"readahead_pages=%llu reclaimed_pages=%llu stored_pages=%llu \"\n"
	"		   \"pool_total_size=%llu compressed_bytes=%llu \"\n"
	"		   \"same_filled_pages=%llu zero_filled_pages=%llu anon_rss_bytes=%llu \"\n"
	"		   \"limit_unreachable=%llu failed=%llu limit_bytes=%llu limit_raised=%llu\\n\",\n"
	"		name,\n"
	"		(unsigned long long)z->faults,\n"
	"		(unsigned long long)z->faults_zero, (unsigned long long)z->readahead_pages,\n"
	"		(unsigned long long)z->reclaimed_pages, (unsigned long long)z->stored_pages,\n"
	"		(unsigned long long)z->pool_total_size, (unsigned long long)z->compressed_bytes,\n"
	"		(unsigned long long)z->same_filled_pages, (unsigned long long)z->zero_filled_pages,\n"
	"		(unsigned long long)z->anon_rss_bytes,\n"
	"		(unsigned long long)z->limit_unreachable, (unsigned long long)z->failed,\n"
	"		(unsigned long long)z->limit_bytes, (unsigned long long)z->limit_raised);\n"
	"}\n"
	"\n"
	"__attribute__((destructor)) static void shim_fini(void)\n"
	"{\n"
	"	const char *path = getenv(\"HOTCOLD_ZSWAPU_STATS\");\n"
	"	FILE *f = path ? fopen(path, \"w\") : NULL;\n"
	"	if (!f)\n"
	"		return;\n"
	"	struct zswapu_stats end = { 0 };\n"
	"	if (!init_err)\n"
	"		zswapu_stats(&end);\n"
	"	fprintf(f, \"init_err=%d register_err=%d regions=%d region_bytes=%zu vmhwm_kib=%lu\\n\",\n"
	"		init_err, reg_err, nregions, reg_bytes, vmhwm_kib());\n"
	"	for (int i = 0; i < nsnaps; i++)\n"
	"		put_snap(f, \"snap\", &snaps[i]);\n"
	"	put_snap(f, \"exit\", &end);\n"
	"	fclose(f);\n"
	"}\n";

/* ---- building the two binaries ---------------------------------------- */

struct paths {
	char tmp[4096];
	char hotcold_c[4096];
	char build[4096]; /* the directory holding libzswapu.so */
	char repo[4200];  /* where libzswapu/zswapu.h is */
	char native[4200], managed[4200], shim[4200], shim_o[4200], cc_err[4200];
	char out[4200], stats[4200];
};

/* build/<mode>/bench/hotcold -> build/<mode> and the repository root. */
static int find_library(struct paths *p)
{
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return -errno;
	exe[n] = 0;
	for (int up = 0; up < 2; up++) {
		char *slash = strrchr(exe, '/');
		if (!slash)
			return -ENOENT;
		*slash = 0;
	}
	snprintf(p->build, sizeof(p->build), "%s", exe);
	snprintf(p->repo, sizeof(p->repo), "%s/../..", exe);
	char so[4300], hdr[4300];
	snprintf(so, sizeof(so), "%s/libzswapu.so", p->build);
	snprintf(hdr, sizeof(hdr), "%s/libzswapu/zswapu.h", p->repo);
	if (access(so, R_OK)) {
		fprintf(stderr, "hotcold: %s missing: build it first (make all)\n", so);
		return -ENOENT;
	}
	if (access(hdr, R_OK)) {
		fprintf(stderr, "hotcold: %s missing\n", hdr);
		return -ENOENT;
	}
	return 0;
}

static int compile(struct paths *p, char *const argv[], const char *what)
{
	int rc = bench_run(argv, NULL, NULL, p->cc_err, NULL);
	if (rc == 0)
		return 0;
	fprintf(stderr, "hotcold: compiling %s failed (exit %d):\n", what, rc);
	FILE *f = fopen(p->cc_err, "r");
	char line[512];
	while (f && fgets(line, sizeof(line), f))
		fputs(line, stderr);
	if (f)
		fclose(f);
	return -EIO;
}

static int build_binaries(struct paths *p)
{
	snprintf(p->native, sizeof(p->native), "%s/hotcold_native", p->tmp);
	snprintf(p->managed, sizeof(p->managed), "%s/hotcold_zswapu", p->tmp);
	snprintf(p->shim, sizeof(p->shim), "%s/shim.c", p->tmp);
	snprintf(p->shim_o, sizeof(p->shim_o), "%s/shim.o", p->tmp);
	snprintf(p->cc_err, sizeof(p->cc_err), "%s/cc.err", p->tmp);
	snprintf(p->out, sizeof(p->out), "%s/run.out", p->tmp);
	snprintf(p->stats, sizeof(p->stats), "%s/run.stats", p->tmp);
	FILE *f = fopen(p->shim, "w");
	if (!f || fputs(shim_src, f) < 0 || fclose(f)) {
		fprintf(stderr, "hotcold: cannot write %s\n", p->shim);
		return -EIO;
	}
	/*
	 * The library is copied next to the binary: a `make` elsewhere that
	 * rewrites build/.../libzswapu.so during a long run would otherwise
	 * pull the mapped file from under it.
	 */
	char so[4300], inc[4300], libdir[4300], rpath[4400];
	snprintf(so, sizeof(so), "%s/libzswapu.so", p->build);
	char *cp[] = { "cp", so, p->tmp, NULL };
	if (bench_run(cp, NULL, NULL, NULL, NULL)) {
		fprintf(stderr, "hotcold: cannot copy %s to %s\n", so, p->tmp);
		return -EIO;
	}
	snprintf(inc, sizeof(inc), "-I%s", p->repo);
	snprintf(libdir, sizeof(libdir), "-L%s", p->tmp);
	snprintf(rpath, sizeof(rpath), "-Wl,-rpath,%s", p->tmp);
	char *native[] = { "cc", "-O2", "-o", p->native, p->hotcold_c, "-llz4", NULL };
	char *shim[] = { "cc", "-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE",
			 inc, "-c", "-o", p->shim_o, p->shim, NULL };
	char *managed[] = { "cc", "-O2", "-o", p->managed, p->hotcold_c, p->shim_o,
			    "-Wl,--wrap=mmap", "-Wl,--wrap=getrusage", libdir, rpath, "-lzswapu",
			    "-llz4", "-lpthread", NULL };
	int err = compile(p, native, p->hotcold_c);
	if (!err)
		err = compile(p, shim, "the shim");
	if (!err)
		err = compile(p, managed, "hotcold.c with the shim");
	return err;
}

/* ---- one run --------------------------------------------------------- */

/* One snapshot line of the shim's file. */
struct snap {
	double faults, faults_zero, readahead, reclaimed, stored, pool, compressed, same, zero, anon_rss,
		unreachable, failed, limit, raised;
};

struct mode {
	const char *name;
	bool managed;
	int pool_in_limit;
	unsigned int stall_max; /* ZSWAPU_STALL_MAX; 0: off */
};

static const struct mode modes[] = {
	{ "native", false, 0, 0 },
	{ "zswapu, pool in limit", true, 1, 0 },  /* the library's default */
	{ "zswapu, pool outside", true, 0, 0 },   /* the kernel peer's terms */
	/* the stall control: the tenth of accesses that go to the cold data
	 * refault, and at 1 GiB the program waits on them most of its access
	 * phase: the limit gives way, and the run shows what that buys */
	{ "zswapu, out, stall 30%", true, 0, 30 }, /* pool outside */
};
#define NMODES (sizeof(modes) / sizeof(modes[0]))

struct result {
	bool ok, verified;
	double wall_s, fill_s, access_s, verify_s, accesses;
	uint64_t peak_rss;
	double cpu_s; /* user + system time of the whole process */
	/* managed only */
	int init_err, register_err;
	double vmhwm;
	struct snap snaps[MAX_SNAPS], end;
	int nsnaps;
	bool phases; /* nsnaps == PHASE_SNAPS */
};

/* "key=value" out of @line into *@v. */
static bool field(const char *line, const char *key, double *v)
{
	size_t kl = strlen(key);
	for (const char *p = line; (p = strstr(p, key)); p += kl)
		if ((p == line || p[-1] == ' ') && p[kl] == '=') {
			*v = strtod(p + kl + 1, NULL);
			return true;
		}
	return false;
}

/* The shim's keys and where each goes. */
static const struct {
	const char *key;
	size_t off;
} snap_keys[] = {
#define SNAP_KEY(k, f) { k, offsetof(struct snap, f) }
	SNAP_KEY("faults", faults),
	SNAP_KEY("faults_zero", faults_zero),
	SNAP_KEY("readahead_pages", readahead),
	SNAP_KEY("reclaimed_pages", reclaimed),
	SNAP_KEY("stored_pages", stored),
	SNAP_KEY("pool_total_size", pool),
	SNAP_KEY("compressed_bytes", compressed),
	SNAP_KEY("same_filled_pages", same),
	SNAP_KEY("zero_filled_pages", zero),
	SNAP_KEY("anon_rss_bytes", anon_rss),
	SNAP_KEY("limit_unreachable", unreachable),
	SNAP_KEY("failed", failed),
	SNAP_KEY("limit_bytes", limit),
	SNAP_KEY("limit_raised", raised),
#undef SNAP_KEY
};

static void parse_snap(const char *line, struct snap *s)
{
	for (size_t k = 0; k < sizeof(snap_keys) / sizeof(snap_keys[0]); k++)
		field(line, snap_keys[k].key, (double *)((char *)s + snap_keys[k].off));
}

/* hotcold.c's RESULT and ACCESS lines. */
static int parse_output(const char *path, struct result *r)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -errno;
	char line[1024];
	bool have_result = false;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "ACCESS ", 7)) {
			field(line, "accesses", &r->accesses);
		} else if (!strncmp(line, "RESULT ", 7)) {
			have_result = field(line, "fill_s", &r->fill_s) &&
				      field(line, "access_s", &r->access_s) &&
				      field(line, "verify_s", &r->verify_s);
			r->verified = strstr(line, "verify=OK") != NULL;
		}
	}
	fclose(f);
	return have_result ? 0 : -EINVAL;
}

static int parse_stats(const char *path, struct result *r)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -errno;
	char line[1024];
	double v;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "init_err=", 9)) {
			r->init_err = field(line, "init_err", &v) ? (int)v : 0;
			r->register_err = field(line, "register_err", &v) ? (int)v : 0;
			if (field(line, "vmhwm_kib", &v))
				r->vmhwm = v * 1024;
		} else if (!strncmp(line, "snap ", 5) && r->nsnaps < MAX_SNAPS) {
			parse_snap(line, &r->snaps[r->nsnaps++]);
		} else if (!strncmp(line, "exit ", 5)) {
			parse_snap(line, &r->end);
		}
	}
	fclose(f);
	r->phases = r->nsnaps == PHASE_SNAPS;
	return 0;
}

/*
 * Waits for @pid at most @limit_s seconds; a child still running then is
 * reported (it is the library hanging: the workload itself never waits)
 * and killed.  @return the exit status as bench_run()'s, -ETIMEDOUT.
 */
static int wait_deadline(pid_t pid, double limit_s, struct rusage *ru)
{
	uint64_t deadline = bench_now_ns() + (uint64_t)(limit_s * 1e9);
	int status;
	for (;;) {
		pid_t w = wait4(pid, &status, WNOHANG, ru);
		if (w == pid)
			break;
		if (w < 0 && errno != EINTR)
			return -errno;
		if (bench_now_ns() > deadline) {
			fprintf(stderr, "hotcold: LIBRARY HANG? pid %d still running after %.0f s; "
					"its threads' kernel stacks:\n", (int)pid, limit_s);
			char cmd[128];
			snprintf(cmd, sizeof(cmd), "for t in /proc/%d/task/*; do echo \"$t:\"; "
				 "cat $t/stack; done >&2", (int)pid);
			if (system(cmd))
				fprintf(stderr, "hotcold: (could not read them)\n");
			kill(pid, SIGKILL);
			bench_wait(pid, &status, ru);
			return -ETIMEDOUT;
		}
		usleep(20000);
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

struct config {
	struct bench_opts o;
	double gib;
	int passes;
	size_t limit;
	bool verbose;
	double timeout_s;
};

static void echo_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[1024];
	while (f && fgets(line, sizeof(line), f))
		fputs(line, stderr);
	if (f)
		fclose(f);
}

static int run_once(const struct config *c, struct paths *p, const struct mode *m,
		    struct result *r)
{
	*r = (struct result){ 0 };
	char gib[32], passes[16], limit[64], pool_in[48], stall[48], stats[4300];
	snprintf(gib, sizeof(gib), "%.4f", c->gib);
	snprintf(passes, sizeof(passes), "%d", c->passes);
	snprintf(limit, sizeof(limit), "HOTCOLD_ZSWAPU_LIMIT=%zu", c->limit);
	snprintf(pool_in, sizeof(pool_in), "HOTCOLD_ZSWAPU_POOL_IN_LIMIT=%d", m->pool_in_limit);
	snprintf(stall, sizeof(stall), "HOTCOLD_ZSWAPU_STALL_MAX=%u", m->stall_max);
	snprintf(stats, sizeof(stats), "HOTCOLD_ZSWAPU_STATS=%s", p->stats);
	char *argv[] = { m->managed ? p->managed : p->native, "-g", gib, "-m", passes, NULL };
	char *env[] = { limit, pool_in, stall, stats, NULL };
	unlink(p->stats);
	int out = open(p->out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (out < 0)
		return -errno;
	struct rusage ru;
	uint64_t t0 = bench_now_ns();
	pid_t pid = bench_spawn(argv, m->managed ? env : NULL, out, -1);
	close(out);
	if (pid < 0)
		return pid;
	int rc = wait_deadline(pid, c->timeout_s, &ru);
	r->wall_s = (double)(bench_now_ns() - t0) / 1e9;
	r->peak_rss = (uint64_t)ru.ru_maxrss * 1024;
	r->cpu_s = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
		   (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
	if (c->verbose || rc)
		echo_file(p->out);
	if (rc == -ETIMEDOUT)
		return rc;
	int perr = parse_output(p->out, r);
	if (rc || perr) {
		fprintf(stderr, "hotcold: %s run %s (exit %d)%s\n", m->name,
			rc == 2 ? "READ BACK WRONG DATA" : "failed", rc,
			perr ? ", no RESULT line" : "");
		return -EIO;
	}
	if (m->managed) {
		if (parse_stats(p->stats, r)) {
			fprintf(stderr, "hotcold: the shim wrote no statistics (%s)\n", p->stats);
			return -EIO;
		}
		if (r->init_err || r->register_err || r->end.failed) {
			fprintf(stderr, "hotcold: %s: zswapu did not manage the run (init %d, "
					"register %d, engine failed %g)\n", m->name, r->init_err,
				r->register_err, r->end.failed);
			return -EIO;
		}
		if (!r->phases)
			fprintf(stderr, "hotcold: note: %d getrusage snapshots, not %d: hotcold.c "
					"changed? phase figures are for the whole run\n",
				r->nsnaps, PHASE_SNAPS);
	}
	r->ok = true;
	return 0;
}

/* ---- figures --------------------------------------------------------- */

struct figures {
	double runtime_vs_native, cpu_vs_native, access_vs_native, faults_per_access, fill_faults,
		refaults_per_reclaim, refaults_per_reclaim_access, refaults, reclaimed,
		refaults_access, reclaimed_access, readahead, ratio;
	double usage;    /* what the limit is held against, at the end of the accesses */
	bool limit_held; /* usage <= limit + LIMIT_SLACK */
};

static double refaults_of(const struct snap *s)
{
	return s->faults - s->faults_zero;
}

static struct figures figures_of(const struct config *c, const struct mode *m,
				 const struct result *r, const struct result *native)
{
	struct figures f = { .runtime_vs_native = r->wall_s / native->wall_s,
			     .cpu_vs_native = r->cpu_s / native->cpu_s,
			     .access_vs_native = r->access_s / native->access_s };
	f.faults_per_access = f.usage = NAN;
	f.fill_faults = f.refaults_per_reclaim = f.refaults_per_reclaim_access = NAN;
	f.refaults = f.reclaimed = f.refaults_access = f.reclaimed_access = f.ratio = NAN;
	f.readahead = NAN;
	if (!m->managed)
		return f;
	/* before the verify pass, or the whole run when the phases are unknown */
	const struct snap *pre = r->phases ? &r->snaps[3] : &r->end;
	f.usage = pre->anon_rss - (m->pool_in_limit ? 0 : pre->pool);
	f.limit_held = f.usage <= (double)c->limit * (1 + LIMIT_SLACK);
	f.refaults = refaults_of(pre);
	f.reclaimed = pre->reclaimed;
	f.readahead = pre->readahead;
	f.refaults_per_reclaim = f.reclaimed > 0 ? f.refaults / f.reclaimed : NAN;
	if (r->phases) {
		const struct snap *a = &r->snaps[2], *b = &r->snaps[3];
		f.fill_faults = r->snaps[1].faults - r->snaps[0].faults;
		f.faults_per_access = (b->faults - a->faults) / r->accesses;
		f.refaults_access = refaults_of(b) - refaults_of(a);
		f.reclaimed_access = b->reclaimed - a->reclaimed;
		f.refaults_per_reclaim_access =
			f.reclaimed_access > 0 ? f.refaults_access / f.reclaimed_access : NAN;
		/* as the kernel's: zero- and same-filled pages use no pool */
		f.ratio = b->pool > 0 ? (b->stored - b->same - b->zero) * 4096 / b->pool : NAN;
	} else {
		f.faults_per_access = pre->faults / r->accesses; /* an upper bound */
	}
	return f;
}

/* Faster than the kernel's figure, under the same limit. */
static bool goal_met(const struct figures *f)
{
	return f->limit_held && f->runtime_vs_native < REF_KERNEL_VS_NATIVE;
}

/* ---- report ---------------------------------------------------------- */

static void print_header(const struct config *c)
{
	printf("hotcold: %.2f GiB, %d passes, 90 %% of accesses to the hot 10 %%; limit %.0f MiB "
	       "(%.0f %% of the data); %d run%s each%s\n\n", c->gib, c->passes,
	       (double)c->limit / (1 << 20), 100.0 * (double)c->limit / (c->gib * GIB), c->o.runs,
	       c->o.runs > 1 ? "s (the median by wall time shown)" : "",
	       c->o.quick ? " [--quick]" : "");
	printf("%-22s %7s %7s %8s %8s %7s %7s %7s %8s %9s %9s %9s %8s\n", "mode", "wall s",
	       "fill s", "access s", "verify s", "wall vs", "cpu vs", "acc vs", "flt/acc", "refault/",
	       "peak RSS", "pool MiB", "verify");
	printf("%-22s %7s %7s %8s %8s %7s %7s %7s %8s %9s %9s %9s %8s\n", "", "", "", "", "",
	       "native", "native", "native", "", "reclaim", "MiB", "at acc.", "");
}

/* A figure, or "-" where it does not apply (native) or is unknown. */
static void cell(double v, int width, int prec)
{
	if (isfinite(v))
		printf(" %*.*f", width, prec, v);
	else
		printf(" %*s", width, "-");
}

static void print_row(const struct mode *m, const struct result *r, const struct figures *f)
{
	const struct snap *b = r->phases ? &r->snaps[3] : &r->end;
	printf("%-22s", m->name);
	cell(r->wall_s, 7, 1);
	cell(r->fill_s, 7, 1);
	cell(r->access_s, 8, 2);
	cell(r->verify_s, 8, 1);
	cell(f->runtime_vs_native, 7, 2);
	cell(f->cpu_vs_native, 7, 2);
	cell(f->access_vs_native, 7, 1);
	cell(f->faults_per_access, 8, 4);
	cell(f->refaults_per_reclaim, 9, 3);
	cell((double)r->peak_rss / (1 << 20), 9, 0);
	cell(m->managed ? b->pool / (1 << 20) : NAN, 9, 1);
	printf(" %8s\n", r->verified ? "OK" : "FAIL");
}

static void print_details(const struct mode *m, const struct result *r, const struct figures *f)
{
	if (!m->managed)
		return;
	const struct snap *b = r->phases ? &r->snaps[3] : &r->end;
	printf("  %s: fill: %.0f faults (first touches: the heap is registered when mapped);\n"
	       "    access: %.0f faults, %.0f refaults / %.0f pages reclaimed (%.3f); anon RSS at "
	       "its end %.0f MiB, pool %.1f MiB holding %.1f MiB (ratio %.2f);\n"
	       "    before verify: %.0f refaults / %.0f reclaimed, %.0f pages read ahead; VmHWM "
	       "%.0f MiB\n",
	       m->name, f->fill_faults, f->faults_per_access * r->accesses, f->refaults_access,
	       f->reclaimed_access, f->refaults_per_reclaim_access, b->anon_rss / (1 << 20),
	       b->pool / (1 << 20), b->compressed / (1 << 20), f->ratio, f->refaults, f->reclaimed,
	       f->readahead, r->vmhwm / (1 << 20));
}

static void print_reference(FILE *out)
{
	fprintf(out, "reference (NUMBERS.md, measured earlier, not in this run): kernel zswap, "
		     "lzo-rle, 1 GiB cgroup limit with the pool outside it:\n  %.1fx native wall "
		     "(%.1f s vs %.1f s median of 5), %.0fk major faults in the access phase (%.3f "
		     "per access)\n", REF_KERNEL_VS_NATIVE, REF_KERNEL_WALL_S, REF_NATIVE_WALL_S,
		REF_KERNEL_MAJFLT / 1000, REF_KERNEL_MAJFLT / REF_ACCESSES);
}

static void print_json(const struct config *c, const struct mode *m, const struct result *r,
		       const struct figures *f)
{
	struct bench_json j;
	bench_json_begin(&j, stdout);
	bench_json_str(&j, "bench", "hotcold");
	bench_json_str(&j, "mode", m->managed ? "zswapu" : "native");
	bench_json_u64(&j, "limit_bytes", m->managed ? c->limit : 0);
	if (m->managed)
		bench_json_bool(&j, "limit_includes_pool", m->pool_in_limit);
	else
		bench_json_null(&j, "limit_includes_pool");
	const struct snap *b = r->phases ? &r->snaps[3] : &r->end;
	const struct {
		const char *key;
		double v;
		int prec;
	} nums[] = {
		{ "gib", c->gib, 3 },
		{ "passes", c->passes, 0 },
		{ "accesses", r->accesses, 0 },
		{ "runs", c->o.runs, 0 },
		{ "wall_s", r->wall_s, 3 },
		{ "fill_s", r->fill_s, 3 },
		{ "access_s", r->access_s, 3 },
		{ "verify_s", r->verify_s, 3 },
		{ "runtime_vs_native", f->runtime_vs_native, 3 },
		{ "cpu_s", r->cpu_s, 3 },
		{ "cpu_vs_native", f->cpu_vs_native, 3 },
		{ "access_vs_native", f->access_vs_native, 2 },
		{ "faults_per_access", m->managed ? f->faults_per_access : 0, 5 },
		{ "fill_faults", f->fill_faults, 0 },
		{ "refaults_per_reclaim", f->refaults_per_reclaim, 4 },
		{ "refaults_per_reclaim_access", f->refaults_per_reclaim_access, 4 },
		{ "refaults", f->refaults, 0 },
		{ "reclaimed_pages", f->reclaimed, 0 },
		{ "readahead_pages", f->readahead, 0 },
		{ "pool_ratio", f->ratio, 3 },
		{ "peak_rss_bytes", (double)r->peak_rss, 0 },
		{ "access_end_anon_rss_bytes", m->managed ? b->anon_rss : NAN, 0 },
		{ "access_end_pool_bytes", m->managed ? b->pool : NAN, 0 },
		{ "limit_usage_bytes", f->usage, 0 },
		/* 0 when the limit could always be reached (core/reclaim.c) */
		{ "limit_unreachable", m->managed ? r->end.unreachable : NAN, 0 },
		/* the stall control: the limit at the end and how often raised */
		{ "stall_max_percent", m->managed ? m->stall_max : NAN, 0 },
		{ "limit_end_bytes", m->managed ? r->end.limit : NAN, 0 },
		{ "limit_raised", m->managed ? r->end.raised : NAN, 0 },
	};
	for (size_t k = 0; k < sizeof(nums) / sizeof(nums[0]); k++)
		bench_json_num(&j, nums[k].key, nums[k].v, nums[k].prec);
	bench_json_bool(&j, "quick", c->o.quick);
	bench_json_bool(&j, "verified", r->verified);
	bench_json_num(&j, "kernel_runtime_vs_native_ref", REF_KERNEL_VS_NATIVE, 1);
	if (m->managed) {
		bench_json_bool(&j, "limit_held", f->limit_held);
		if (m->stall_max)
			bench_json_null(&j, "target_met");
		else
			bench_json_bool(&j, "target_met", goal_met(f));
	} else {
		bench_json_null(&j, "limit_held");
		bench_json_null(&j, "target_met");
	}
	bench_json_end(&j);
}

static void print_verdict(const struct config *c, const struct result *res,
			  const struct figures *fig, FILE *out)
{
	fprintf(out, "\ngoal: faster than the kernel's zswap, %.1fx native (NUMBERS.md), with the "
		     "limit held%s:\n", REF_KERNEL_VS_NATIVE,
		c->o.quick ? "; --quick: indicative only" : "");
	for (size_t k = 1; k < NMODES; k++) {
		const struct figures *f = &fig[k];
		if (!res[k].ok)
			continue;
		if (modes[k].stall_max) {
			fprintf(out, "  %-22s %.2fx native (no goal): the stall control raised the "
				     "limit %.0f times, to %.0f MiB at the end (set %.0f MiB; peak RSS "
				     "%.0f MiB)\n", modes[k].name, f->runtime_vs_native,
				res[k].end.raised, res[k].end.limit / (1 << 20),
				(double)c->limit / (1 << 20), (double)res[k].peak_rss / (1 << 20));
			continue;
		}
		fprintf(out, "  %-22s %.2fx native; limit %s (%.0f MiB in use at the end of the "
			     "accesses, limit %.0f MiB; peak RSS %.0f MiB)  %s\n", modes[k].name,
			f->runtime_vs_native, f->limit_held ? "held" : "NOT held",
			f->usage / (1 << 20), (double)c->limit / (1 << 20),
			(double)res[k].peak_rss / (1 << 20),
			goal_met(f) ? "met" : f->limit_held ? "MISSED" : "MISSED (over its limit: "
								  "not comparable)");
		if (res[k].end.unreachable > 0)
			fprintf(out, "  %-22s limit out of reach %.0f times (memory outside the "
				     "managed ranges over it)\n", "", res[k].end.unreachable);
	}
}

/* ---- options --------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f, "usage: hotcold [options]\n"
		   "Runs ../shared/bench/hotcold.c natively and under zswapu with a limit.\n"
		   "%s"
		   "  --gib X      data size (default %.0f, --quick %.2f)\n"
		   "  --passes N   access passes (default %d)\n"
		   "  --limit N    bytes, K/M/G suffix (default: a third of the data, 1 GiB at 3)\n"
		   "  --verbose    copy the workload's own output to stderr\n"
		   "--runs defaults to 1 here: a full run takes minutes.\n",
		bench_common_usage(), FULL_GIB, QUICK_GIB, PASSES);
}

static int parse_size(const char *s, size_t *out)
{
	char *end;
	double v = strtod(s, &end);
	double mul = 1;
	if (*end == 'K' || *end == 'k')
		mul = 1024.0, end++;
	else if (*end == 'M' || *end == 'm')
		mul = 1024.0 * 1024, end++;
	else if (*end == 'G' || *end == 'g')
		mul = GIB, end++;
	if (*end || !(v > 0))
		return -EINVAL;
	*out = (size_t)(v * mul) & ~(size_t)4095;
	return *out ? 0 : -EINVAL;
}

/* bench_parse_args()'s callback for this program's own options. */
static int own_arg(void *ctx, const char *a, const char *v)
{
	struct config *c = ctx;
	char *end = NULL;
	if (!strcmp(a, "--verbose")) {
		c->verbose = true;
		return 1;
	}
	if (!v)
		return 0;
	if (!strcmp(a, "--gib")) {
		c->gib = strtod(v, &end);
		if (*end || !(c->gib >= 0.01 && c->gib <= 64)) {
			fprintf(stderr, "hotcold: --gib takes 0.01..64, not '%s'\n", v);
			return -1;
		}
		return 2;
	}
	if (!strcmp(a, "--passes")) {
		long n = strtol(v, &end, 10);
		if (*end || n < 1 || n > 1000) {
			fprintf(stderr, "hotcold: --passes takes 1..1000, not '%s'\n", v);
			return -1;
		}
		c->passes = (int)n;
		return 2;
	}
	if (!strcmp(a, "--limit")) {
		if (parse_size(v, &c->limit)) {
			fprintf(stderr, "hotcold: --limit takes bytes (e.g. 1G, 512M), not '%s'\n", v);
			return -1;
		}
		return 2;
	}
	return 0;
}

static int parse_args(int argc, char **argv, struct config *c)
{
	*c = (struct config){ .passes = PASSES };
	int ret = bench_parse_args(&c->o, argc, argv, "hotcold", usage, own_arg, c);
	if (ret >= 0)
		return ret;
	if (!c->o.runs)
		c->o.runs = 1; /* a full run takes minutes */
	bench_opts_finish(&c->o);
	if (!c->gib)
		c->gib = c->o.quick ? QUICK_GIB : FULL_GIB;
	if (!c->limit)
		c->limit = (size_t)(c->gib * GIB * LIMIT_SHARE) & ~(size_t)4095;
	/*
	 * A hang detector, not a target: native takes 6-15 s a GiB here, the
	 * managed runs up to ~65; eight minutes a GiB is broken, not slow.
	 */
	c->timeout_s = 120 + c->gib * 480 * c->passes / PASSES;
	return -1;
}

/* ---- main ------------------------------------------------------------ */

static int cmp_wall(const void *a, const void *b)
{
	double x = ((const struct result *)a)->wall_s, y = ((const struct result *)b)->wall_s;
	return (x > y) - (x < y);
}

/* Runs mode @m --runs times; *@out gets the median run by wall time. */
static int run_mode(const struct config *c, struct paths *p, const struct mode *m,
		    struct result *out)
{
	struct result *v = bench_xcalloc((size_t)c->o.runs, sizeof(*v));
	int err = 0;
	for (int i = 0; i < c->o.runs && !err; i++) {
		if (!c->o.json)
			fprintf(stderr, "hotcold: %s, run %d of %d...\n", m->name, i + 1, c->o.runs);
		err = run_once(c, p, m, &v[i]);
	}
	if (!err) {
		qsort(v, (size_t)c->o.runs, sizeof(*v), cmp_wall);
		*out = v[c->o.runs / 2];
	}
	free(v);
	return err;
}

int main(int argc, char **argv)
{
	struct config c;
	int ret = parse_args(argc, argv, &c);
	if (ret >= 0)
		return ret;
	static struct paths p;
	bench_peer_path(&c.o, "hotcold.c", p.hotcold_c, sizeof(p.hotcold_c));
	if (access(p.hotcold_c, R_OK)) {
		fprintf(stderr, "hotcold: %s: %s (see --data)\n", p.hotcold_c, strerror(errno));
		return 1;
	}
	if (find_library(&p) || bench_tmpdir(p.tmp, sizeof(p.tmp)))
		return 1;
	static struct result res[NMODES];
	struct figures fig[NMODES];
	int err = build_binaries(&p);
	if (!c.o.json && !err)
		print_header(&c);
	for (size_t k = 0; k < NMODES && !err; k++) {
		err = run_mode(&c, &p, &modes[k], &res[k]);
		if (err)
			break;
		fig[k] = figures_of(&c, &modes[k], &res[k], &res[0]);
		if (c.o.json) {
			print_json(&c, &modes[k], &res[k], &fig[k]);
		} else {
			print_row(&modes[k], &res[k], &fig[k]);
			fflush(stdout);
		}
	}
	if (!err && !c.o.json) {
		printf("\n");
		for (size_t k = 0; k < NMODES; k++)
			print_details(&modes[k], &res[k], &fig[k]);
		printf("wall/cpu vs native = wall time / user+system time against the native run's; "
		       "acc vs native = access phase / native's;\nflt/acc = zswapu faults per access "
		       "in the access phase; refault/reclaim = faults on taken-out pages / pages\n"
		       "reclaimed, up to the verify pass; peak RSS = the kernel's high-water mark.\n");
	}
	if (!err) {
		FILE *out = c.o.json ? stderr : stdout;
		print_verdict(&c, res, fig, out);
		print_reference(out);
	}
	bench_rmtree(p.tmp);
	return err ? 1 : 0;
}

/*
 * writeback — what the writeback tier costs and saves on a hot/cold
 * workload under a limit: the same run with a small pool cap and a file,
 * without a cap (the pool takes what the limit allows), and with the cap
 * but no file (pages that would need pool memory stay resident).
 *
 * Workload (in this process, through the public API, one engine per run):
 * a region of --pages text-like pages (tests/corpus.h; 65,536 = 256 MiB,
 * --quick 16,384), registered, filled; then 4 x pages accesses, 90 % to a
 * hot 10 % (random pages, one 8-byte write each, shadowed); then --sample
 * cold pages touched once each in random order, each touch timed alone
 * (the fault-in latency as the program sees it: from the file in the
 * writeback run, from the pool without); then every page verified against
 * its generator and shadow (a mismatch is exit 1).  Limit: what the
 * process holds besides the region plus 30 % of the region, pool counted.
 * Cap: 5 % of the region.  The file lives in a fresh directory under
 * $TMPDIR (/tmp here: ext4 on the machine's disk).
 *
 * Reported per mode (median run by access-phase time with --runs N):
 *   access_s, total_s   access phase and whole run, wall time;
 *   vs_nocap            access time / the run without a cap's;
 *   bytes_per_wb_page   writeback_bytes / written_back_pages: what a page
 *                       costs in the file; the kernel's zswap writes 4096
 *                       (a whole page to the swap device) for each;
 *   vs_kernel_bytes     that / 4096 (target <= 0.5);
 *   cold_p50/p99_us     the timed cold touches;
 *   wb_read_p50/p99_us  the io_uring read alone (zswapu's histogram);
 *   peak_pool, limit_held, written_back, wb_reads, reject_pool_limit.
 * The kernel's zswap writes a whole page (4096 bytes) to its swap device
 * for each page written back.  Its run time with a swapfile and the same
 * pool cap is measured by bench/vs-kernel.sh's hc_wb row (hotcold, both
 * pools capped at 1 % of RAM, max_pool_percent's smallest step), which
 * needs kzswap.sh and root; this program stays in one process.
 */
#include <stdatomic.h>
#include <sys/mman.h>

#include "bench/bench.h"
#include "core/reclaim.h"
#include "libzswapu/zswapu.h"
#include "tests/corpus.h"

#define PAGE 4096UL

enum mode { M_NOCAP, M_WB, M_CAP_NOWB, M_NR };
static const char *const mode_name[M_NR] = { "nocap", "writeback", "cap_no_file" };

struct result {
	double access_s, total_s, cold_p50_us, cold_p99_us;
	struct zswapu_stats st;
	size_t limit, cap;
	bool limit_held, ok;
};

struct args {
	size_t pages, sample;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void run(enum mode m, const struct args *a, const char *dir, struct result *r)
{
	size_t n = a->pages, len = n * PAGE;
	memset(r, 0, sizeof(*r));
	uint8_t *reg = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t *shadow = bench_xcalloc(n, sizeof(*shadow));
	if (reg == MAP_FAILED)
		bench_die_oom();
	madvise(reg, len, MADV_NOHUGEPAGE);
	uint64_t t0 = bench_now_ns();
	struct zswapu_options o;
	zswapu_options_init(&o);
	size_t base = reclaim_anon_rss();
	r->limit = o.limit_bytes = base + len / 10 * 3;
	r->cap = m == M_NOCAP ? 0 : len / 20;
	o.max_pool_bytes = r->cap;
	o.writeback_dir = m == M_WB ? dir : NULL;
	if (zswapu_init(&o) || zswapu_register(reg, len)) {
		fprintf(stderr, "writeback: zswapu unusable here\n");
		exit(1);
	}
	for (size_t i = 0; i < n; i++)
		corpus_text_page(reg + i * PAGE, i);
	/* access: 90 % to the hot 10 %, one write each */
	uint64_t rs = 42, t1 = bench_now_ns();
	size_t hot = n / 10;
	for (size_t k = 0; k < 4 * n; k++) {
		uint64_t x = bench_rand(&rs);
		size_t i = x % 10 ? (x >> 8) % hot : hot + (x >> 8) % (n - hot);
		uint64_t *w = (uint64_t *)(reg + i * PAGE) + 16;
		*w = ++shadow[i];
	}
	r->access_s = (bench_now_ns() - t1) / 1e9;
	zswapu_stats(&r->st);
	r->limit_held = r->st.anon_rss_bytes <= r->limit + r->limit / 20;
	/* cold touches, timed one by one */
	size_t ns = a->sample < n - hot ? a->sample : n - hot;
	uint32_t *perm = bench_permutation(n - hot, 7);
	uint64_t *lat = bench_xcalloc(ns, sizeof(*lat));
	for (size_t k = 0; k < ns; k++) {
		volatile uint8_t *p = reg + (hot + perm[k]) * PAGE;
		uint64_t s = bench_now_ns();
		(void)*p;
		lat[k] = bench_now_ns() - s;
	}
	qsort(lat, ns, sizeof(*lat), cmp_u64);
	r->cold_p50_us = lat[ns / 2] / 1e3;
	r->cold_p99_us = lat[ns * 99 / 100] / 1e3;
	struct zswapu_stats after;
	zswapu_stats(&after);
	r->st.wb_reads = after.wb_reads;
	r->st.wb_read_p50_ns = after.wb_read_p50_ns;
	r->st.wb_read_p99_ns = after.wb_read_p99_ns;
	/* verify every page */
	r->ok = true;
	uint8_t want[PAGE];
	for (size_t i = 0; i < n && r->ok; i++) {
		corpus_text_page(want, i);
		if (shadow[i])
			((uint64_t *)want)[16] = shadow[i];
		r->ok = !memcmp(want, reg + i * PAGE, PAGE);
	}
	zswapu_shutdown();
	r->total_s = (bench_now_ns() - t0) / 1e9;
	munmap(reg, len);
	free(shadow);
	free(perm);
	free(lat);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: writeback [--pages N] [--sample N] [common options]\n%s",
		bench_common_usage());
}

static int own(void *ctx, const char *arg, const char *val)
{
	struct args *a = ctx;
	size_t *dst = !strcmp(arg, "--pages") ? &a->pages : !strcmp(arg, "--sample") ? &a->sample
										     : NULL;
	if (!dst)
		return 0;
	if (!val || !(*dst = strtoull(val, NULL, 0)))
		return -1;
	return 2;
}

static int cmp_result(const void *x, const void *y)
{
	double a = ((const struct result *)x)->access_s, b = ((const struct result *)y)->access_s;
	return a < b ? -1 : a > b;
}

int main(int argc, char **argv)
{
	struct bench_opts bo;
	struct args a = { 0, 4096 };
	int rc = bench_parse_args(&bo, argc, argv, "writeback", usage, own, &a);
	if (rc >= 0)
		return rc;
	bench_opts_finish(&bo);
	if (!a.pages)
		a.pages = bo.quick ? 16384 : 65536;
	const char *tmp = getenv("TMPDIR");
	char dir[256];
	snprintf(dir, sizeof(dir), "%s/zswapu-wb-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir)) {
		perror("writeback: mkdtemp");
		return 1;
	}
	struct result med[M_NR];
	int bad = 0;
	for (int m = 0; m < M_NR; m++) {
		struct result *rr = bench_xcalloc(bo.runs, sizeof(*rr));
		for (int k = 0; k < bo.runs; k++) {
			run(m, &a, dir, &rr[k]);
			bad |= !rr[k].ok;
		}
		qsort(rr, bo.runs, sizeof(*rr), cmp_result);
		med[m] = rr[bo.runs / 2];
		free(rr);
	}
	rmdir(dir);
	if (!bo.json)
		printf("%-12s %9s %8s %8s %10s %9s %9s %9s %9s %9s %10s %8s %6s\n", "mode",
		       "access_s", "total_s", "vs_nocap", "bytes/wbpg", "vs_kern", "cold_p50",
		       "cold_p99", "wbrd_p50", "wbrd_p99", "written", "rejects", "held");
	for (int m = 0; m < M_NR; m++) {
		struct result *r = &med[m];
		double bpp = r->st.written_back_pages
				     ? (double)r->st.writeback_bytes / r->st.written_back_pages
				     : NAN;
		double vs = r->access_s / med[M_NOCAP].access_s;
		if (bo.json) {
			struct bench_json j;
			bench_json_begin(&j, stdout);
			bench_json_str(&j, "bench", "writeback");
			bench_json_str(&j, "mode", mode_name[m]);
			bench_json_u64(&j, "pages", a.pages);
			bench_json_u64(&j, "limit_bytes", r->limit);
			bench_json_u64(&j, "max_pool_bytes", r->cap);
			bench_json_num(&j, "access_s", r->access_s, 3);
			bench_json_num(&j, "total_s", r->total_s, 3);
			bench_json_num(&j, "vs_nocap", vs, 3);
			bench_json_num(&j, "bytes_per_wb_page", bpp, 1);
			bench_json_num(&j, "vs_kernel_bytes", bpp / 4096, 3);
			bench_json_num(&j, "cold_p50_us", r->cold_p50_us, 1);
			bench_json_num(&j, "cold_p99_us", r->cold_p99_us, 1);
			bench_json_num(&j, "wb_read_p50_us", r->st.wb_read_p50_ns / 1e3, 1);
			bench_json_num(&j, "wb_read_p99_us", r->st.wb_read_p99_ns / 1e3, 1);
			bench_json_u64(&j, "written_back_pages", r->st.written_back_pages);
			bench_json_u64(&j, "wb_reads", r->st.wb_reads);
			bench_json_u64(&j, "reject_pool_limit", r->st.reject_pool_limit);
			bench_json_u64(&j, "pool_total_size", r->st.pool_total_size);
			bench_json_bool(&j, "limit_held", r->limit_held);
			bench_json_bool(&j, "verified", r->ok);
			bench_json_end(&j);
		} else {
			printf("%-12s %9.3f %8.3f %8.2f %10.0f %9.3f %9.1f %9.1f %9.1f %9.1f %10llu "
			       "%8llu %6s\n",
			       mode_name[m], r->access_s, r->total_s, vs, bpp, bpp / 4096,
			       r->cold_p50_us, r->cold_p99_us, r->st.wb_read_p50_ns / 1e3,
			       r->st.wb_read_p99_ns / 1e3,
			       (unsigned long long)r->st.written_back_pages,
			       (unsigned long long)r->st.reject_pool_limit, r->limit_held ? "yes" : "no");
		}
	}
	if (!bo.json)
		printf("(kernel zswap writes 4096 bytes per page written back: vs_kern is "
		       "bytes/wbpg / 4096, target <= 0.5; the kernel's run time: vs-kernel.sh, row hc_wb)\n");
	if (bad)
		fprintf(stderr, "writeback: data read back wrong\n");
	return bad;
}

/* test_options — the ZSWAPU_* table: defaults, every parser, every bad-value path. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/options.h"
#include "tests/logcap.h"

#define MiB (1024UL * 1024)

/* options_load() on one "NAME=value" (NULL: an empty environment). */
static int load1(struct options *o, const char *var, char *err, size_t len)
{
	const char *env[] = { var, NULL };
	if (err)
		err[0] = '\0';
	return options_load(o, env, err, len);
}

/* options_warn() with the log captured into @buf; returns its result. */
static int warned(const struct options *o, const char *const *env, char *buf, size_t cap)
{
	struct logcap c;
	logcap_begin(&c);
	int r = options_warn(o, env);
	logcap_end(&c, buf, cap);
	return r;
}

static size_t ram(void)
{
	return (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
}

START_TEST(defaults_match_the_api)
{
	/* every default string parses (a refused one would be silently 0) */
	struct options o;
	for (int i = 0; i < OPTIONS_NR; i++) {
		const struct options_row *r = options_row(i);
		if (r->status == OPTIONS_RESERVED)
			continue;
		char var[128];
		snprintf(var, sizeof(var), "ZSWAPU_%s=%s", r->name, r->def);
		ck_assert_msg(load1(&o, var, NULL, 0) == 0, "default of %s refused", r->name);
	}
	/* and they are the public API's defaults */
	struct zswapu_options api;
	zswapu_options_init(&api);
	ck_assert_int_eq(load1(&o, NULL, NULL, 0), 0);
	ck_assert_uint_eq(o.z.size, api.size);
	ck_assert_uint_eq(o.z.limit_bytes, api.limit_bytes);
	ck_assert_int_eq(o.z.limit_includes_pool, api.limit_includes_pool);
	ck_assert_uint_eq(o.z.cold_age_ms, api.cold_age_ms);
	ck_assert_int_eq(o.z.store_incompressible, api.store_incompressible);
	ck_assert_uint_eq(o.z.spin_us, api.spin_us);
	ck_assert_int_eq(o.z.log_level, api.log_level);
	ck_assert_int_eq(o.z.detach, api.detach);
	ck_assert_uint_eq(o.z.max_compressed, 3584); /* what api's 0 stands for */
	ck_assert_str_eq(o.z.compressor, "lz4");
	ck_assert_str_eq(o.z.pool, "zsmalloc");
	ck_assert_int_eq(o.enabled, 1);
	ck_assert_int_eq(o.stats, 0);
	ck_assert_uint_eq(o.z.fault_threads, api.fault_threads);
	ck_assert_uint_eq(o.z.max_pool_bytes, 0);
	ck_assert_uint_eq(o.z.max_pool_percent, 0);
	ck_assert_uint_eq(o.z.accept_percent, 90);
	ck_assert_ptr_null(o.z.writeback_dir);
	ck_assert_int_eq(o.writeback, 0);
	ck_assert_uint_eq(o.scan_ms, 100);
	ck_assert_str_eq(o.exclude, "");
	for (int i = 0; i < OPTIONS_NR; i++)
		ck_assert(!o.set[i]);
}
END_TEST

START_TEST(sizes)
{
	static const struct {
		const char *s;
		size_t v;
	} good[] = {
		{ "0", 0 },
		{ "4096", 4096 },
		{ "64k", 64 * 1024 },
		{ "64K", 64 * 1024 },
		{ "512M", 512 * MiB },
		{ "512MB", 512 * MiB },
		{ "512MiB", 512 * MiB },
		{ "2G", 2048 * MiB },
		{ "2Gi", 2048 * MiB },
		{ "1.5G", 1536 * MiB },
		{ "1T", 1024 * 1024 * MiB },
		{ ".5M", MiB / 2 },
		{ "100b", 100 },
	};
	struct options o;
	char var[64];
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(var, sizeof(var), "ZSWAPU_LIMIT=%s", good[i].s);
		ck_assert_int_eq(load1(&o, var, NULL, 0), 0);
		ck_assert_uint_eq(o.z.limit_bytes, good[i].v);
		ck_assert(o.set[OPTIONS_LIMIT]);
		snprintf(var, sizeof(var), "ZSWAPU_MAX_POOL=%s", good[i].s);
		ck_assert_int_eq(load1(&o, var, NULL, 0), 0);
		ck_assert_uint_eq(o.z.max_pool_bytes, good[i].v);
	}
	/* percentages are of RAM, for the limit only */
	ck_assert_int_eq(load1(&o, "ZSWAPU_LIMIT=25%", NULL, 0), 0);
	ck_assert_uint_eq(o.z.limit_bytes, ram() / 4);
	ck_assert_int_eq(load1(&o, "ZSWAPU_LIMIT=100%", NULL, 0), 0);
	ck_assert_uint_eq(o.z.limit_bytes, ram());
	ck_assert_int_eq(load1(&o, "ZSWAPU_LIMIT=0.5%", NULL, 0), 0);
	ck_assert_uint_eq(o.z.limit_bytes, (size_t)(ram() * 0.005));
	ck_assert_int_eq(load1(&o, "ZSWAPU_MAX_POOL=25%", NULL, 0), -EINVAL); /* no limit */

	static const char *const bad[] = {
		"", "M", "-1", "12X", "1..5G", "5 G", " 5G", "5G ", "5GG", "5iG", "5GiBB",
		"0%", "101%", "-5%", "%", "25%%", "0x100", "1e9", "99999999999999999999T",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(var, sizeof(var), "ZSWAPU_LIMIT=%s", bad[i]);
		ck_assert_msg(load1(&o, var, NULL, 0) == -EINVAL, "%s accepted", var);
	}
}
END_TEST

START_TEST(seconds)
{
	static const struct {
		const char *s;
		unsigned int ms;
	} good[] = {
		{ "0", 0 },     { "30", 30000 },  { "0.5", 500 }, { "1.25", 1250 },
		{ "250ms", 250 }, { "2s", 2000 }, { "1m", 60000 }, { "1.5m", 90000 },
		{ "0.0001", 1 }, /* a positive age never rounds down to off */
	};
	struct options o;
	char var[64];
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(var, sizeof(var), "ZSWAPU_COLD_AGE=%s", good[i].s);
		ck_assert_int_eq(load1(&o, var, NULL, 0), 0);
		ck_assert_uint_eq(o.z.cold_age_ms, good[i].ms);
		snprintf(var, sizeof(var), "ZSWAPU_SCAN_INTERVAL=%s", good[i].s);
		ck_assert_int_eq(load1(&o, var, NULL, 0), 0);
		ck_assert_uint_eq(o.scan_ms, good[i].ms);
	}
	static const char *const bad[] = { "", "s", "-1", "1h", "5 s", "1,5", "1e3",
					   "99999999999" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(var, sizeof(var), "ZSWAPU_COLD_AGE=%s", bad[i]);
		ck_assert_msg(load1(&o, var, NULL, 0) == -EINVAL, "%s accepted", var);
	}
}
END_TEST

START_TEST(bools_levels_counts)
{
	struct options o;
	static const char *const yes[] = { "1", "yes", "on", "true", "YES", "True" };
	static const char *const no[] = { "0", "no", "off", "false", "OFF" };
	char var[64];
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		snprintf(var, sizeof(var), "ZSWAPU_STATS=%s", yes[i]);
		ck_assert_int_eq(load1(&o, var, NULL, 0), 0);
		ck_assert_int_eq(o.stats, 1);
	}
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		snprintf(var, sizeof(var), "ZSWAPU_ENABLED=%s", no[i]);
		ck_assert_int_eq(load1(&o, var, NULL, 0), 0);
		ck_assert_int_eq(o.enabled, 0);
	}
	ck_assert_int_eq(load1(&o, "ZSWAPU_LIMIT_POOL=0", NULL, 0), 0);
	ck_assert_int_eq(o.z.limit_includes_pool, 0);
	ck_assert_int_eq(load1(&o, "ZSWAPU_STORE_INCOMPRESSIBLE=on", NULL, 0), 0);
	ck_assert_int_eq(o.z.store_incompressible, 1);
	ck_assert_int_eq(load1(&o, "ZSWAPU_STATS=2", NULL, 0), -EINVAL);
	ck_assert_int_eq(load1(&o, "ZSWAPU_STATS=", NULL, 0), -EINVAL);
	ck_assert_int_eq(load1(&o, "ZSWAPU_ENABLED=y", NULL, 0), -EINVAL);

	static const char *const levels[] = { "silent", "error", "warn", "info", "debug" };
	for (int i = 0; i < 5; i++) {
		snprintf(var, sizeof(var), "ZSWAPU_LOG=%d", i);
		ck_assert_int_eq(load1(&o, var, NULL, 0), 0);
		ck_assert_int_eq(o.z.log_level, i);
		snprintf(var, sizeof(var), "ZSWAPU_LOG=%s", levels[i]);
		ck_assert_int_eq(load1(&o, var, NULL, 0), 0);
		ck_assert_int_eq(o.z.log_level, i);
	}
	ck_assert_int_eq(load1(&o, "ZSWAPU_LOG=5", NULL, 0), -EINVAL);
	ck_assert_int_eq(load1(&o, "ZSWAPU_LOG=-1", NULL, 0), -EINVAL);
	ck_assert_int_eq(load1(&o, "ZSWAPU_LOG=verbose", NULL, 0), -EINVAL);

	ck_assert_int_eq(load1(&o, "ZSWAPU_SPIN_US=0", NULL, 0), 0);
	ck_assert_uint_eq(o.z.spin_us, 0);
	ck_assert_int_eq(load1(&o, "ZSWAPU_SPIN_US=1000000", NULL, 0), 0);
	ck_assert_int_eq(load1(&o, "ZSWAPU_SPIN_US=1000001", NULL, 0), -EINVAL);
	ck_assert_int_eq(load1(&o, "ZSWAPU_SPIN_US=99999999999999999999", NULL, 0), -EINVAL);
	ck_assert_int_eq(load1(&o, "ZSWAPU_SPIN_US=-1", NULL, 0), -EINVAL);
	ck_assert_int_eq(load1(&o, "ZSWAPU_SPIN_US=1.5", NULL, 0), -EINVAL);
	ck_assert_int_eq(o.z.detach, ZSWAPU_DETACH_AUTO);
	ck_assert_int_eq(load1(&o, "ZSWAPU_DETACH=wp", NULL, 0), 0);
	ck_assert_int_eq(o.z.detach, ZSWAPU_DETACH_WP);
	ck_assert_int_eq(load1(&o, "ZSWAPU_DETACH=MOVE", NULL, 0), 0);
	ck_assert_int_eq(o.z.detach, ZSWAPU_DETACH_MOVE);
	ck_assert_int_eq(load1(&o, "ZSWAPU_DETACH=", NULL, 0), -EINVAL);
	ck_assert_int_eq(load1(&o, "ZSWAPU_THREADS=4", NULL, 0), 0);
	ck_assert_uint_eq(o.z.fault_threads, 4);
	ck_assert_int_eq(load1(&o, "ZSWAPU_THREADS=0", NULL, 0), 0);
	ck_assert_uint_eq(o.z.fault_threads, 0);
	ck_assert_int_eq(load1(&o, "ZSWAPU_THREADS=65", NULL, 0), -EINVAL);
}
END_TEST

START_TEST(compressors_pools_reject)
{
	struct options o;
	static const char *const comp[] = { "lz4", "lz4:8", "zstd", "zstd:3", "zstd:-1" };
	char var[64];
	for (size_t i = 0; i < sizeof(comp) / sizeof(comp[0]); i++) {
		snprintf(var, sizeof(var), "ZSWAPU_COMPRESSOR=%s", comp[i]);
		ck_assert_int_eq(load1(&o, var, NULL, 0), 0);
		ck_assert_str_eq(o.z.compressor, comp[i]);
		ck_assert_ptr_eq(o.z.compressor, o.compressor);
	}
	static const char *const badcomp[] = { "gzip", "lz4:0", "zstd:99", "LZ4", "",
					       "zstd:1111111111111111111111111111" };
	for (size_t i = 0; i < sizeof(badcomp) / sizeof(badcomp[0]); i++) {
		snprintf(var, sizeof(var), "ZSWAPU_COMPRESSOR=%s", badcomp[i]);
		ck_assert_msg(load1(&o, var, NULL, 0) == -EINVAL, "%s accepted", var);
	}
	static const char *const pools[] = { "zsmalloc", "z3fold", "zbud" };
	for (size_t i = 0; i < 3; i++) {
		snprintf(var, sizeof(var), "ZSWAPU_POOL=%s", pools[i]);
		ck_assert_int_eq(load1(&o, var, NULL, 0), 0);
		ck_assert_str_eq(o.z.pool, pools[i]);
	}
	ck_assert_int_eq(load1(&o, "ZSWAPU_POOL=zswap", NULL, 0), -EINVAL);
	ck_assert_int_eq(load1(&o, "ZSWAPU_POOL=ZBUD", NULL, 0), -EINVAL);

	static const struct {
		const char *s;
		unsigned int v;
	} rej[] = { { "3584", 3584 }, { "3.5K", 3584 }, { "0.875", 3584 },
		    { "87.5%", 3584 }, { "1", 1 },       { "4095", 4095 },
		    { "0.5", 2048 },   { "50%", 2048 } };
	for (size_t i = 0; i < sizeof(rej) / sizeof(rej[0]); i++) {
		snprintf(var, sizeof(var), "ZSWAPU_REJECT=%s", rej[i].s);
		ck_assert_int_eq(load1(&o, var, NULL, 0), 0);
		ck_assert_uint_eq(o.z.max_compressed, rej[i].v);
	}
	static const char *const badrej[] = { "0", "4096", "4K", "100%", "0%", "0.0", "1.5.",
					      "x", "" };
	for (size_t i = 0; i < sizeof(badrej) / sizeof(badrej[0]); i++) {
		snprintf(var, sizeof(var), "ZSWAPU_REJECT=%s", badrej[i]);
		ck_assert_msg(load1(&o, var, NULL, 0) == -EINVAL, "%s accepted", var);
	}
	/* fine alone, not together: zbud's largest object is under 4095 */
	const char *env[] = { "ZSWAPU_POOL=zbud", "ZSWAPU_REJECT=4095", NULL };
	char err[256];
	ck_assert_int_eq(options_load(&o, env, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "ZSWAPU_REJECT='4095'"));
	ck_assert_ptr_nonnull(strstr(err, "ZSWAPU_POOL=zbud"));
	ck_assert_ptr_null(strchr(err, '\n'));
	env[1] = "ZSWAPU_REJECT=4000";
	ck_assert_int_eq(options_load(&o, env, err, sizeof(err)), 0);
}
END_TEST

START_TEST(exclude)
{
	struct options o;
	ck_assert_int_eq(load1(&o, "ZSWAPU_EXCLUDE=make,cc1,sh", NULL, 0), 0);
	ck_assert(options_excluded(&o, "make"));
	ck_assert(options_excluded(&o, "cc1"));
	ck_assert(options_excluded(&o, "sh"));
	ck_assert(!options_excluded(&o, "s"));
	ck_assert(!options_excluded(&o, "bash"));
	ck_assert(!options_excluded(&o, "cc1plus"));
	ck_assert(!options_excluded(&o, ""));
	ck_assert_int_eq(load1(&o, NULL, NULL, 0), 0);
	ck_assert(!options_excluded(&o, "make"));
	static const char *const bad[] = { ",a", "a,", "a,,b", "a b", "/usr/bin/sh", "," };
	char var[64];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(var, sizeof(var), "ZSWAPU_EXCLUDE=%s", bad[i]);
		ck_assert_msg(load1(&o, var, NULL, 0) == -EINVAL, "%s accepted", var);
	}
	char longvar[400] = "ZSWAPU_EXCLUDE=";
	memset(longvar + strlen(longvar), 'x', 300);
	ck_assert_int_eq(load1(&o, longvar, NULL, 0), -EINVAL);
}
END_TEST

/* Every bad value: one line, naming the variable, the value and what it accepts. */
START_TEST(bad_value_message)
{
	static const struct {
		const char *var, *accepts;
	} cases[] = {
		{ "ZSWAPU_ENABLED=maybe", "yes, no" },
		{ "ZSWAPU_LIMIT=12X", "percentage of RAM" },
		{ "ZSWAPU_LIMIT_POOL=2", "on, off" },
		{ "ZSWAPU_STALL_MAX=1001%", "0..1000, with or without a % sign" },
		{ "ZSWAPU_COLD_AGE=soon", "250ms" },
		{ "ZSWAPU_COMPRESSOR=gzip", "zstd:N" },
		{ "ZSWAPU_POOL=slab", "zsmalloc, z3fold, zbud" },
		{ "ZSWAPU_MAX_POOL=lots", "suffix" },
		{ "ZSWAPU_REJECT=5000", "4095" },
		{ "ZSWAPU_STORE_INCOMPRESSIBLE=x", "true, false" },
		{ "ZSWAPU_STATS=2", "yes, no" },
		{ "ZSWAPU_LOG=loud", "silent, error" },
		{ "ZSWAPU_THREADS=65", "0..64" },
		{ "ZSWAPU_SPIN_US=x", "0..1000000" },
		{ "ZSWAPU_DETACH=remap", "auto, move, wp" },
		{ "ZSWAPU_SCAN_INTERVAL=-1", "seconds" },
		{ "ZSWAPU_EXCLUDE=a,,b", "name,name" },
		{ "ZSWAPU_SIGNALS=sometimes", "yes, no" },
	};
	ck_assert_uint_eq(sizeof(cases) / sizeof(cases[0]), OPTIONS_NR - 5); /* all but reserved */
	struct options o;
	char err[512];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ck_assert_int_eq(load1(&o, cases[i].var, err, sizeof(err)), -EINVAL);
		const char *eq = strchr(cases[i].var, '=');
		char want[96];
		snprintf(want, sizeof(want), "%.*s='%s' is not valid: accepted are ",
			 (int)(eq - cases[i].var), cases[i].var, eq + 1);
		ck_assert_msg(!strncmp(err, want, strlen(want)), "%s: got '%s'", cases[i].var, err);
		ck_assert_msg(strstr(err, cases[i].accepts), "%s: '%s' lacks '%s'", cases[i].var,
			      err, cases[i].accepts);
		ck_assert_ptr_null(strchr(err, '\n'));
	}
	/* the first bad one is named; later good ones still apply (ZSWAPU_LOG=0) */
	const char *env[] = { "ZSWAPU_LIMIT=bad", "ZSWAPU_POOL=worse", "ZSWAPU_LOG=0",
			      "ZSWAPU_STATS=1", NULL };
	ck_assert_int_eq(options_load(&o, env, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "ZSWAPU_LIMIT='bad'"));
	ck_assert_ptr_null(strstr(err, "POOL"));
	ck_assert_int_eq(o.z.log_level, 0);
	ck_assert_int_eq(o.stats, 1);
	ck_assert_uint_eq(o.z.limit_bytes, 0);
	/* names that only start like a row's are not that row */
	ck_assert_int_eq(load1(&o, "ZSWAPU_LIMITS=bad", err, sizeof(err)), 0);
	ck_assert(!o.set[OPTIONS_LIMIT]);
	ck_assert_int_eq(load1(&o, "ZSWAPU_LIMIT_POOL=0", err, sizeof(err)), 0);
	ck_assert(!o.set[OPTIONS_LIMIT]);
}
END_TEST

START_TEST(pool_cap_and_writeback)
{
	struct options o;
	char err[256];
	/* a percentage of the limit, or bytes */
	const char *pct[] = { "ZSWAPU_LIMIT=1G", "ZSWAPU_MAX_POOL=25%", NULL };
	ck_assert_int_eq(options_load(&o, pct, err, sizeof(err)), 0);
	ck_assert_uint_eq(o.z.max_pool_percent, 25);
	ck_assert_uint_eq(o.z.max_pool_bytes, 0);
	ck_assert_int_eq(load1(&o, "ZSWAPU_MAX_POOL=64M", NULL, 0), 0);
	ck_assert_uint_eq(o.z.max_pool_bytes, 64 * MiB);
	ck_assert_uint_eq(o.z.max_pool_percent, 0);
	const char *badpct[] = { "ZSWAPU_LIMIT=1G", "ZSWAPU_MAX_POOL=0.5%", NULL };
	ck_assert_int_eq(options_load(&o, badpct, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "ZSWAPU_MAX_POOL='0.5%'"));
	ck_assert_int_eq(load1(&o, "ZSWAPU_MAX_POOL=25%", err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "without ZSWAPU_LIMIT"));
	/* the stall control: 0..1000, % optional; only with a limit */
	const char *stall[] = { "ZSWAPU_LIMIT=1G", "ZSWAPU_STALL_MAX=30%", NULL };
	ck_assert_int_eq(options_load(&o, stall, err, sizeof(err)), 0);
	ck_assert_uint_eq(o.z.stall_max_percent, 30);
	const char *stall0[] = { "ZSWAPU_STALL_MAX=0", NULL };
	ck_assert_int_eq(options_load(&o, stall0, err, sizeof(err)), 0);
	ck_assert_int_eq(load1(&o, "ZSWAPU_STALL_MAX=150", err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "ZSWAPU_STALL_MAX='150' is not valid without ZSWAPU_LIMIT"));
	/* accept: 1..100, % optional */
	ck_assert_int_eq(load1(&o, "ZSWAPU_ACCEPT=75%", NULL, 0), 0);
	ck_assert_uint_eq(o.z.accept_percent, 75);
	ck_assert_int_eq(load1(&o, "ZSWAPU_ACCEPT=100", NULL, 0), 0);
	ck_assert_uint_eq(o.z.accept_percent, 100);
	ck_assert_int_eq(load1(&o, "ZSWAPU_ACCEPT=0", NULL, 0), -EINVAL);
	ck_assert_int_eq(load1(&o, "ZSWAPU_ACCEPT=101%", NULL, 0), -EINVAL);
	/* the directory turns it on; WRITEBACK=0 turns it off; =1 alone: $TMPDIR */
	ck_assert_int_eq(load1(&o, "ZSWAPU_WRITEBACK_DIR=/var/tmp", NULL, 0), 0);
	ck_assert_str_eq(o.z.writeback_dir, "/var/tmp");
	const char *off[] = { "ZSWAPU_WRITEBACK_DIR=/var/tmp", "ZSWAPU_WRITEBACK=0", NULL };
	ck_assert_int_eq(options_load(&o, off, NULL, 0), 0);
	ck_assert_ptr_null(o.z.writeback_dir);
	const char *tmp[] = { "TMPDIR=/scratch", "ZSWAPU_WRITEBACK=1", NULL };
	ck_assert_int_eq(options_load(&o, tmp, NULL, 0), 0);
	ck_assert_str_eq(o.z.writeback_dir, "/scratch");
	const char *notmp[] = { "ZSWAPU_WRITEBACK=yes", NULL };
	ck_assert_int_eq(options_load(&o, notmp, NULL, 0), 0);
	ck_assert_str_eq(o.z.writeback_dir, "/tmp");
	ck_assert_int_eq(warned(&o, notmp, err, sizeof(err)), 0);
}
END_TEST

START_TEST(unknown_is_warned)
{
	struct options o;
	char buf[2048];
	/* set and known: silence */
	const char *set[] = { "ZSWAPU_THREADS=4", "ZSWAPU_MAX_POOL=1G", NULL };
	ck_assert_int_eq(options_load(&o, set, NULL, 0), 0);
	ck_assert_int_eq(warned(&o, set, buf, sizeof(buf)), 0);

	/* unknown names (typos) are pointed out; other variables are none of ours */
	const char *unk[] = { "ZSWAPU_LIMT=512M", "PATH=/bin", "ZSWAPU_LIMIT=1G", "ZSWAPU_=1", "ZSWAPU=1",
			      NULL };
	ck_assert_int_eq(options_load(&o, unk, NULL, 0), 0);
	ck_assert_int_eq(warned(&o, unk, buf, sizeof(buf)), 2);
	ck_assert_ptr_nonnull(strstr(buf, "ZSWAPU_LIMT: unknown variable"));
	ck_assert_ptr_nonnull(strstr(buf, "zswapu: ZSWAPU_: unknown variable"));

	/* honoured and at default: silence; ZSWAPU_LOG=0: silence */
	const char *quiet[] = { "ZSWAPU_LIMIT=1G", "ZSWAPU_LOG=0", "ZSWAPU_PROFILE=x", NULL };
	ck_assert_int_eq(options_load(&o, quiet, NULL, 0), 0);
	log_set_level(o.z.log_level);
	warned(&o, quiet, buf, sizeof(buf));
	log_set_level(LOG_ERROR);
	ck_assert_str_eq(buf, "");
}
END_TEST

/* ZSWAPU_PROFILE (a path prefix) and ZSWAPU_PROFILE_RATE (a size). */
START_TEST(profile_rows)
{
	struct options o;
	char err[400];
	ck_assert_int_eq(load1(&o, NULL, NULL, 0), 0);
	ck_assert_str_eq(o.profile, "");
	ck_assert_uint_eq(o.profile_rate, 512 * 1024);
	ck_assert_int_eq(load1(&o, "ZSWAPU_PROFILE=/tmp/run.%p", err, sizeof(err)), 0);
	ck_assert_str_eq(o.profile, "/tmp/run.%p");
	ck_assert_int_eq(load1(&o, "ZSWAPU_PROFILE_RATE=64k", err, sizeof(err)), 0);
	ck_assert_uint_eq(o.profile_rate, 64 * 1024);
	ck_assert_int_eq(load1(&o, "ZSWAPU_PROFILE_RATE=0", err, sizeof(err)), 0);
	ck_assert_uint_eq(o.profile_rate, 0);
	ck_assert_int_eq(load1(&o, "ZSWAPU_PROFILE_RATE=fast", err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "ZSWAPU_PROFILE_RATE='fast' is not valid"));
	ck_assert_int_eq(load1(&o, "ZSWAPU_PROFILE=a\nb", err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "ZSWAPU_PROFILE="));
	char longp[300];
	memset(longp, 'x', sizeof(longp));
	memcpy(longp, "ZSWAPU_PROFILE=", 15);
	longp[sizeof(longp) - 1] = '\0';
	ck_assert_int_eq(load1(&o, longp, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(options_row(OPTIONS_PROFILE)->status, OPTIONS_HONOURED);
}
END_TEST

/* The printed table has every row, in both formats. */
START_TEST(printed_table)
{
	for (int fmt = OPTIONS_TEXT; fmt <= OPTIONS_MARKDOWN; fmt++) {
		char path[] = "/tmp/test_options.XXXXXX";
		int fd = mkstemp(path);
		ck_assert_int_ge(fd, 0);
		unlink(path);
		ck_assert_int_eq(options_print(fd, fmt), 0);
		off_t len = lseek(fd, 0, SEEK_END);
		char *buf = calloc(1, len + 1);
		ck_assert_int_eq(pread(fd, buf, len, 0), len);
		close(fd);
		for (int i = 0; i < OPTIONS_NR; i++) {
			char name[64];
			snprintf(name, sizeof(name), "ZSWAPU_%s%s", options_row(i)->name,
				 fmt == OPTIONS_MARKDOWN ? "`" : "");
			ck_assert_msg(strstr(buf, name), "%s missing", name);
		}
		ck_assert_ptr_nonnull(strstr(buf, "zstd:N"));
		free(buf);
	}
	ck_assert_int_eq(options_print(-1, OPTIONS_TEXT), -EBADF);
}
END_TEST

Suite *options_suite(void)
{
	Suite *s = suite_create("options");
	TCase *tc = tcase_create("parse");
	tcase_add_test(tc, defaults_match_the_api);
	tcase_add_test(tc, sizes);
	tcase_add_test(tc, seconds);
	tcase_add_test(tc, bools_levels_counts);
	tcase_add_test(tc, compressors_pools_reject);
	tcase_add_test(tc, exclude);
	tcase_add_test(tc, bad_value_message);
	tcase_add_test(tc, unknown_is_warned);
	tcase_add_test(tc, pool_cap_and_writeback);
	tcase_add_test(tc, profile_rows);
	tcase_add_test(tc, printed_table);
	suite_add_tcase(s, tc);
	return s;
}

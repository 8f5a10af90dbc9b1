/*
 * options — see options.h.  The table below is the only place a ZSWAPU_*
 * name, default or description is written.
 *
 * Each row has a type; the type's parser turns a string into the field
 * at the row's offset in struct options, and the type's phrase says what
 * it accepts.  Defaults go through the same parsers, so a default that a
 * parser would refuse fails the unit tests, not a user.
 *
 * Numbers are parsed by hand, not with strtod: strtod follows the locale's
 * decimal point, and a program may have changed the locale before a child
 * of it starts.
 */
#include "core/options.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/compress.h"
#include "core/log.h"
#include "core/reclaim.h"
#include "pools/zpool.h"

#define PAGE_BYTES 4096u

enum type {
	T_BOOL,       /* int */
	T_SIZE,       /* size_t */
	T_LIMIT,      /* size_t: a size or a percentage of RAM */
	T_SECONDS,    /* unsigned int, milliseconds */
	T_COMPRESSOR, /* char[], checked by compress_parse_quiet() */
	T_POOL,       /* char[], a zpool driver name */
	T_REJECT,     /* unsigned int, bytes */
	T_LEVEL,      /* int, 0..4 or a name */
	T_COUNT,      /* unsigned int in [lo, hi] */
	T_NAMES,      /* char[], comma-separated names */
	T_POOLCAP,    /* z.max_pool_bytes or z.max_pool_percent */
	T_PERCENT,    /* unsigned int in [lo, hi], a % sign optional */
	T_PATH,       /* char[], a directory */
	T_DETACH,     /* int, ZSWAPU_DETACH_* by name */
	T_PREFIX,     /* char[], a file name or prefix */
	T_RESERVED,   /* no field */
};

struct row {
	struct options_row pub;
	enum type type;
	size_t off, size; /* the field in struct options */
	unsigned int lo, hi; /* T_COUNT's and T_PERCENT's range */
};

#define FIELD(f) offsetof(struct options, f), sizeof(((struct options *)0)->f)
#define RESERVED(n, later)                                                              \
	[OPTIONS_##n] = { { #n, "reserved", "", "reserved: not yet implemented (" later ")", \
			    OPTIONS_RESERVED },                                              \
			  T_RESERVED, 0, 0, 0, 0 }

static const struct row table[OPTIONS_NR] = {
	[OPTIONS_ENABLED] = { { "ENABLED", "bool", "1",
		"0 turns zswapu off: the shim stays loaded but starts nothing and "
		"manages nothing.", OPTIONS_HONOURED },
		T_BOOL, FIELD(enabled), 0, 0 },
	[OPTIONS_LIMIT] = { { "LIMIT", "size", "0",
		"Keep the process's resident anonymous memory under this (the "
		"compressed pool included, see ZSWAPU_LIMIT_POOL): above it the "
		"reclaimer compresses pages, coldest first.  zswapu starts managing "
		"memory when the resident size first reaches 3/4 of the limit; a "
		"program that stays below pays nothing.  A percentage is of "
		"physical RAM.  0 = no limit: only ZSWAPU_COLD_AGE reclaims, and "
		"with neither set zswapu manages nothing.",
		OPTIONS_HONOURED },
		T_LIMIT, FIELD(z.limit_bytes), 0, 0 },
	[OPTIONS_LIMIT_POOL] = { { "LIMIT_POOL", "bool", "1",
		"1: the compressed pool counts against ZSWAPU_LIMIT (the whole "
		"process's footprint).  0: the limit is for the program's resident "
		"pages only and the pool comes on top, as the kernel's zswap under "
		"a cgroup v1 limit.", OPTIONS_HONOURED },
		T_BOOL, FIELD(z.limit_includes_pool), 0, 0 },
	[OPTIONS_STALL_MAX] = { { "STALL_MAX", "percent", "0",
		"With ZSWAPU_LIMIT: let the limit give when the program does not "
		"fit in it.  While the program is at its limit and its threads, "
		"summed, spend more than this percent of the time waiting on faults "
		"that bring back pages that had been compressed (held at the limit "
		"or not), the limit is raised by a quarter every 0.25 s; after 10 s "
		"in a row under half of it, a raised limit comes down by a fifth, "
		"never below ZSWAPU_LIMIT (a lowering the program undoes at once "
		"doubles that wait, up to 5 min).  First touches of new memory do "
		"not count, even held: a program that only grows stays held.  "
		"`zswapu stat` shows the limit now and the one set.  0 = the limit "
		"holds whatever it costs (a program whose working set does not fit "
		"runs many times slower).", OPTIONS_HONOURED },
		T_PERCENT, FIELD(z.stall_max_percent), 0, RECLAIM_STALL_MAX_PCT },
	[OPTIONS_COLD_AGE] = { { "COLD_AGE", "seconds", "0",
		"Proactive reclaim: every this many seconds the reclaimer sweeps "
		"the managed memory and compresses the pages not faulted back in "
		"since its previous sweep (a clock with a second chance, not an "
		"exact age).  0 = off: only ZSWAPU_LIMIT reclaims.", OPTIONS_HONOURED },
		T_SECONDS, FIELD(z.cold_age_ms), 0, 0 },
	[OPTIONS_COMPRESSOR] = { { "COMPRESSOR", "compressor", "lz4",
		"The page compressor: lz4 with an acceleration (higher is faster "
		"and compresses less) or zstd with a level.", OPTIONS_HONOURED },
		T_COMPRESSOR, FIELD(compressor), 0, 0 },
	[OPTIONS_POOL] = { { "POOL", "pool", "zsmalloc",
		"The allocator that holds the compressed pages.", OPTIONS_HONOURED },
		T_POOL, FIELD(pool), 0, 0 },
	[OPTIONS_MAX_POOL] = { { "MAX_POOL", "size or %", "0",
		"Cap on the compressed pool (a percentage is of ZSWAPU_LIMIT).  When "
		"the pool reaches it, its oldest pages are written back to the "
		"writeback file (ZSWAPU_WRITEBACK_DIR) until it is under "
		"ZSWAPU_ACCEPT percent of the cap; without a file, pages that would "
		"need pool memory stay resident until then (reject_pool_limit).  0 = "
		"no cap, except 20% of the limit when writeback is on.",
		OPTIONS_HONOURED },
		T_POOLCAP, FIELD(z.max_pool_bytes), 0, 0 },
	[OPTIONS_REJECT] = { { "REJECT", "bytes", "3584",
		"A page stays compressed only if it compresses to at most this "
		"many bytes (or this fraction of the 4096-byte page); one that "
		"does not stays resident (zswap's reject_compress_poor).",
		OPTIONS_HONOURED },
		T_REJECT, FIELD(z.max_compressed), 0, 0 },
	[OPTIONS_STORE_INCOMPRESSIBLE] = { { "STORE_INCOMPRESSIBLE", "bool", "0",
		"1: pages over ZSWAPU_REJECT go into the pool as they are (a whole "
		"page each, as the kernel's zswap does since 6.18) instead of "
		"staying resident; zbud cannot hold a whole page and still "
		"rejects them.  Saves nothing without writeback.", OPTIONS_HONOURED },
		T_BOOL, FIELD(z.store_incompressible), 0, 0 },
	[OPTIONS_STATS] = { { "STATS", "bool", "0",
		"1: print the stats table to stderr when the program exits.",
		OPTIONS_HONOURED },
		T_BOOL, FIELD(stats), 0, 0 },
	[OPTIONS_LOG] = { { "LOG", "level", "1",
		"What zswapu says on stderr: 0 nothing; 1 errors, and one line for "
		"each ignored variable; 2 warnings; 3 info (every option's value at "
		"start); 4 debug.", OPTIONS_HONOURED },
		T_LEVEL, FIELD(z.log_level), 0, 0 },
	[OPTIONS_THREADS] = { { "THREADS", "count", "0",
		"Fault threads: one per CPU the program may run on, each kept on "
		"its CPU, so that a fault is resolved on the CPU it came from.  On "
		"a virtual machine that is 2x faster than a handler on another "
		"CPU, which has to wake the faulting CPU from idle.  0: one per "
		"CPU, 4 at most.  1: one handler thread, not kept on a CPU.  N: "
		"one per CPU, N at most.", OPTIONS_HONOURED },
		T_COUNT, FIELD(z.fault_threads), 0, 64 },
	[OPTIONS_SPIN_US] = { { "SPIN_US", "microseconds", "50",
		"While faults come in a burst, the fault handler polls this long "
		"for the next one before it sleeps: waking a sleeping handler "
		"costs more than a fault on a virtual machine.  A spin that finds "
		"nothing ends the burst, so sparse faults cost no CPU.  0 = sleep "
		"at once.", OPTIONS_HONOURED },
		T_COUNT, FIELD(z.spin_us), 0, 1000000 },
	[OPTIONS_DETACH] = { { "DETACH", "mode", "auto",
		"How the reclaimer takes pages out of the program.  move: "
		"UFFDIO_MOVE, a batch of up to 512 pages in one call (Linux 6.8+).  "
		"wp: write-protect the batch, copy it, then zap it (Linux 5.7+): "
		"the fallback for older kernels, slower per page.  auto: move where "
		"the kernel has it, else wp.  A mode the kernel lacks leaves the "
		"program unmanaged, with one line saying so.", OPTIONS_HONOURED },
		T_DETACH, FIELD(z.detach), 0, 0 },
	[OPTIONS_SCAN_INTERVAL] = { { "SCAN_INTERVAL", "seconds", "0.1",
		"How often the shim rereads /proc/self/maps for memory to manage "
		"(malloc's own mmaps and the brk heap are found only this way; "
		"mmap() calls of 1 MiB and more are managed at once).  With a limit, "
		"up to ten times as often while a scan is cheap (every 10 ms at the "
		"most), and at once after a large allocation.  0 = once, "
		"when zswapu starts managing memory.", OPTIONS_HONOURED },
		T_SECONDS, FIELD(scan_ms), 0, 0 },
	[OPTIONS_EXCLUDE] = { { "EXCLUDE", "names", "",
		"Comma-separated program names (the executable's file name or "
		"the name it was invoked by) that the shim leaves unmanaged, for "
		"children that inherit the environment.", OPTIONS_HONOURED },
		T_NAMES, FIELD(exclude), 0, 0 },
	[OPTIONS_SIGNALS] = { { "SIGNALS", "bool", "1",
		"1: where the program leaves a signal that ends it (SIGTERM, SIGINT, "
		"SIGPIPE ...) or dumps core (SIGSEGV, SIGABRT ...) at SIG_DFL, a "
		"handler of the shim's first hands forked children their compressed "
		"pages and, when a core dump will be written, brings every page "
		"back into it, then takes the default action (the program still "
		"sees SIG_DFL).  Other threads run on meanwhile, about a second per "
		"GiB brought back.  0: no handler; such a signal then leaves forked "
		"children zeros for their stored pages and the core without them.",
		OPTIONS_HONOURED },
		T_BOOL, FIELD(signals), 0, 0 },
	[OPTIONS_WRITEBACK_DIR] = { { "WRITEBACK_DIR", "directory", "",
		"Turns the writeback tier on: pages beyond ZSWAPU_MAX_POOL go, "
		"compressed, to a file created here with O_TMPFILE (mode 0600, no "
		"name: gone when the process ends, even by SIGKILL), written and "
		"read with io_uring.  The file system must support O_TMPFILE (ext4, "
		"xfs, btrfs, tmpfs).  Empty = no writeback.  An I/O error or a full "
		"disk stops writeback with one line; nothing is lost.",
		OPTIONS_HONOURED },
		T_PATH, FIELD(writeback_dir), 0, 0 },
	[OPTIONS_WRITEBACK] = { { "WRITEBACK", "bool", "0",
		"1: writeback on, in ZSWAPU_WRITEBACK_DIR or else $TMPDIR (/tmp); "
		"0: off even when a directory is given.  Unset: on exactly when "
		"ZSWAPU_WRITEBACK_DIR is set.", OPTIONS_HONOURED },
		T_BOOL, FIELD(writeback), 0, 0 },
	[OPTIONS_ACCEPT] = { { "ACCEPT", "percent", "90",
		"Once the pool has hit ZSWAPU_MAX_POOL, write back (or, without a "
		"file, refuse new pages) until it is under this percentage of the "
		"cap: zswap's accept_threshold_percent.", OPTIONS_HONOURED },
		T_PERCENT, FIELD(z.accept_percent), 1, 100 },
		[OPTIONS_PROFILE] = { { "PROFILE", "path", "",
		"Profile the program and write, at exit, PREFIX.alloc-stored, "
		"PREFIX.alloc-refaulted, PREFIX.fault-sites and PREFIX.alloc as "
		"folded stacks (.folded) and flame graphs (.svg): which allocation "
		"sites own the pages that were compressed and faulted back, and "
		"which code faults (docs/profiling.md).  %p in the prefix becomes "
		"the process id.  Empty = no profiling.", OPTIONS_HONOURED },
		T_PREFIX, FIELD(profile), 0, 0 },
	[OPTIONS_PROFILE_RATE] = { { "PROFILE_RATE", "size", "512K",
		"With ZSWAPU_PROFILE: one allocation is sampled per this many bytes "
		"allocated, on average (a byte-weighted random sample, as tcmalloc's "
		"heap profiler takes); smaller is more precise and slower.  0 "
		"samples every allocation.", OPTIONS_HONOURED },
		T_SIZE, FIELD(profile_rate), 0, 0 },
};

const struct options_row *options_row(enum options_id id)
{
	return &table[id].pub;
}

/* ---- parsers: 0 and the value, or -EINVAL ---------------------------------------- */

/*
 * A non-negative decimal ("12", "1.5", ".5") at *s; *s is left after it.
 * Locale-free (see the top of the file).
 */
static int parse_decimal(const char **s, double *out)
{
	const char *p = *s;
	double v = 0, scale = 1;
	int digits = 0;
	for (; *p >= '0' && *p <= '9'; p++, digits++)
		v = v * 10 + (*p - '0');
	if (*p == '.') {
		for (p++; *p >= '0' && *p <= '9'; p++, digits++) {
			scale /= 10;
			v += (*p - '0') * scale;
		}
	}
	if (!digits)
		return -EINVAL;
	*s = p;
	*out = v;
	return 0;
}

static size_t ram_bytes(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
	return pages > 0 && psz > 0 ? (size_t)pages * (size_t)psz : 0;
}

/* A byte count: 4096, 64k, 512M, 1.5G, 2GiB, 1T (binary multiples). */
static int parse_size(const char *s, size_t *out)
{
	double v;
	if (parse_decimal(&s, &v))
		return -EINVAL;
	double mult = 1;
	const char *units = "kmgt";
	const char *u = *s ? strchr(units, *s | 0x20) : NULL;
	if (u) {
		for (const char *k = units; k <= u; k++)
			mult *= 1024;
		s++;
		if (*s == 'i')
			s++;
	}
	if (*s == 'B' || *s == 'b')
		s++;
	if (*s)
		return -EINVAL;
	v *= mult;
	if (v >= (double)SIZE_MAX / 2)
		return -EINVAL;
	*out = (size_t)v;
	return 0;
}

static int parse_limit(const char *s, size_t *out)
{
	size_t len = strlen(s);
	if (len && s[len - 1] == '%') {
		const char *p = s;
		double pct;
		if (parse_decimal(&p, &pct) || p != s + len - 1 || pct <= 0 || pct > 100)
			return -EINVAL;
		*out = (size_t)(ram_bytes() * (pct / 100));
		return 0;
	}
	return parse_size(s, out);
}

/* Seconds, fractions allowed, or with a unit: 30, 0.5, 250ms, 2s, 1.5m. */
static int parse_seconds(const char *s, unsigned int *ms)
{
	double v;
	if (parse_decimal(&s, &v))
		return -EINVAL;
	double mult = 1000;
	if (!strcmp(s, "ms"))
		mult = 1;
	else if (!strcmp(s, "m"))
		mult = 60000;
	else if (*s && strcmp(s, "s"))
		return -EINVAL;
	v *= mult;
	if (v > UINT_MAX)
		return -EINVAL;
	/* a positive age never rounds down to "off" */
	*ms = v > 0 && v < 1 ? 1 : (unsigned int)(v + 0.5);
	return 0;
}

static int parse_bool(const char *s, int *out)
{
	static const char *const yes[] = { "1", "yes", "on", "true" };
	static const char *const no[] = { "0", "no", "off", "false" };
	for (int i = 0; i < 4; i++) {
		if (!strcasecmp(s, yes[i]))
			return *out = 1, 0;
		if (!strcasecmp(s, no[i]))
			return *out = 0, 0;
	}
	return -EINVAL;
}

static const char *const level_names[] = { "silent", "error", "warn", "info", "debug" };
/* in ZSWAPU_DETACH_* order */
static const char *const detach_names[] = { "auto", "move", "wp" };

static int parse_detach(const char *s, int *out)
{
	for (int i = 0; i < 3; i++)
		if (!strcasecmp(s, detach_names[i]))
			return *out = i, 0;
	return -EINVAL;
}

static int parse_level(const char *s, int *out)
{
	for (int i = 0; i < 5; i++)
		if ((s[0] == '0' + i && !s[1]) || !strcasecmp(s, level_names[i]))
			return *out = i, 0;
	return -EINVAL;
}

static int parse_count(const char *s, unsigned int lo, unsigned int hi, unsigned int *out)
{
	unsigned long v = 0;
	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > hi)
			return -EINVAL;
		v = v * 10 + (*s - '0');
	}
	if (v < lo || v > hi)
		return -EINVAL;
	*out = (unsigned int)v;
	return 0;
}

/* Bytes (3584, 3.5K), a fraction of the page (0.875) or a percentage (87.5%). */
static int parse_reject(const char *s, unsigned int *out)
{
	size_t len = strlen(s), bytes;
	const char *p = s;
	double v;
	if (len && s[len - 1] == '%') {
		if (parse_decimal(&p, &v) || p != s + len - 1)
			return -EINVAL;
		bytes = (size_t)(v / 100 * PAGE_BYTES);
	} else if (s[0] == '0' && s[1] == '.') {
		if (parse_decimal(&p, &v) || *p)
			return -EINVAL;
		bytes = (size_t)(v * PAGE_BYTES);
	} else if (parse_size(s, &bytes)) {
		return -EINVAL;
	}
	if (bytes < 1 || bytes >= PAGE_BYTES)
		return -EINVAL;
	*out = (unsigned int)bytes;
	return 0;
}

/* name,name,...: no empty names, no blanks or slashes (a name is a file name). */
static int parse_names(const char *s)
{
	const char *p = s;
	for (; *p; p++)
		if (*p == ' ' || *p == '\t' || *p == '/' ||
		    (*p == ',' && (p == s || p[1] == ',' || p[1] == '\0')))
			return -EINVAL;
	return 0;
}

static int copy_str(const char *s, char *dst, size_t cap)
{
	size_t n = strlen(s);
	if (n >= cap)
		return -EINVAL;
	memcpy(dst, s, n + 1);
	return 0;
}

/* ZSWAPU_MAX_POOL: bytes, or a percentage of the limit. */
static int parse_pool_cap(const char *s, struct options *o)
{
	size_t len = strlen(s);
	if (len && s[len - 1] == '%') {
		const char *p = s;
		double pct;
		if (parse_decimal(&p, &pct) || p != s + len - 1 || pct < 1 || pct > 100 ||
		    pct != (unsigned int)pct)
			return -EINVAL;
		o->z.max_pool_percent = (unsigned int)pct;
		o->z.max_pool_bytes = 0;
		return 0;
	}
	o->z.max_pool_percent = 0;
	return parse_size(s, &o->z.max_pool_bytes);
}

/* A whole number in [lo, hi], with or without a % sign. */
static int parse_percent(const char *s, unsigned int lo, unsigned int hi, unsigned int *out)
{
	char buf[8];
	size_t len = strlen(s);
	if (len == 0 || len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, len + 1);
	if (buf[len - 1] == '%')
		buf[len - 1] = '\0';
	return parse_count(buf, lo, hi, out);
}

/* Parse @value for row @r into @o. */
static int parse_row(const struct row *r, const char *value, struct options *o)
{
	void *f = (char *)o + r->off;
	struct compress_cfg cfg;
	switch (r->type) {
	case T_BOOL:
		return parse_bool(value, f);
	case T_SIZE:
		return parse_size(value, f);
	case T_LIMIT:
		return parse_limit(value, f);
	case T_SECONDS:
		return parse_seconds(value, f);
	case T_COMPRESSOR:
		if (compress_parse_quiet(value, &cfg))
			return -EINVAL;
		return copy_str(value, f, r->size);
	case T_POOL:
		if (!zpool_has_pool(value))
			return -EINVAL;
		return copy_str(value, f, r->size);
	case T_REJECT:
		return parse_reject(value, f);
	case T_LEVEL:
		return parse_level(value, f);
	case T_COUNT:
		return parse_count(value, r->lo, r->hi, f);
	case T_DETACH:
		return parse_detach(value, f);
	case T_NAMES:
		if (parse_names(value))
			return -EINVAL;
		return copy_str(value, f, r->size);
	case T_POOLCAP:
		return parse_pool_cap(value, o);
	case T_PERCENT:
		return parse_percent(value, r->lo, r->hi, f);
	case T_PREFIX:
		/* the files are named PREFIX.view.ext: no line breaks in it */
		if (strpbrk(value, "\n\r"))
			return -EINVAL;
		return copy_str(value, f, r->size);
	case T_PATH:
		return copy_str(value, f, r->size);
	case T_RESERVED:
		return 0;
	}
	return -EINVAL;
}

const char *options_accepts(enum options_id id, char *buf, size_t len)
{
	const struct row *r = &table[id];
	const char *const *pools;
	switch (r->type) {
	case T_BOOL:
		return "1, 0, yes, no, on, off, true, false";
	case T_SIZE:
		return "bytes with an optional K, M, G or T suffix (binary: 512M, 1.5G)";
	case T_LIMIT:
		return "bytes with an optional K, M, G or T suffix (512M, 2G), or a "
		       "percentage of RAM (25%); 0 for no limit";
	case T_SECONDS:
		return "seconds, fractions allowed (30, 0.5), or with a unit (250ms, 2s, 1m)";
	case T_COMPRESSOR:
		return compress_accepted(buf, len);
	case T_POOL:
		pools = zpool_driver_names();
		snprintf(buf, len, "%s", pools[0]);
		for (int i = 1; pools[i]; i++)
			snprintf(buf + strlen(buf), len - strlen(buf), ", %s", pools[i]);
		return buf;
	case T_REJECT:
		return "1..4095 bytes (3584, 3.5K), a fraction of the page (0.875) or a "
		       "percentage of it (87.5%); 4032 at most with zbud";
	case T_LEVEL:
		return "0..4, or silent, error, warn, info, debug";
	case T_COUNT:
		snprintf(buf, len, "%u..%u", r->lo, r->hi);
		return buf;
	case T_NAMES:
		snprintf(buf, len, "name,name,... (no blanks or slashes, %zu characters at most)",
			 r->size - 1);
		return buf;
	case T_POOLCAP:
		return "bytes with an optional K, M, G or T suffix (256M), or a whole "
		       "percentage of ZSWAPU_LIMIT (20%); 0 for no cap";
	case T_PERCENT:
		snprintf(buf, len, "%u..%u, with or without a %% sign", r->lo, r->hi);
		return buf;
	case T_PATH:
		snprintf(buf, len, "a directory (%zu characters at most); empty for none",
			 r->size - 1);
		return buf;
	case T_DETACH:
		return "auto, move, wp";
	case T_PREFIX:
		snprintf(buf, len, "a file name prefix (%zu characters at most), empty for none",
			 r->size - 1);
		return buf;
	case T_RESERVED:
		return "anything (ignored)";
	}
	return "";
}

/* ---- loading ---------------------------------------------------------------------- */

/* The value of ZSWAPU_<name> in @envp, or NULL. */
static const char *lookup(const char *const *envp, const char *name)
{
	size_t plen = strlen(OPTIONS_PREFIX), nlen = strlen(name);
	for (; *envp; envp++) {
		const char *e = *envp;
		if (!strncmp(e, OPTIONS_PREFIX, plen) && !strncmp(e + plen, name, nlen) &&
		    e[plen + nlen] == '=')
			return e + plen + nlen + 1;
	}
	return NULL;
}

/* Point the strings of z at their storage (after defaults or a copy). */
static void link_strings(struct options *o)
{
	o->z.compressor = o->compressor;
	o->z.pool = o->pool;
	o->z.writeback_dir = o->writeback_dir[0] ? o->writeback_dir : NULL;
}

/* The value of the plain variable @name in @envp (TMPDIR), or NULL. */
static const char *lookup_plain(const char *const *envp, const char *name)
{
	size_t n = strlen(name);
	for (; *envp; envp++)
		if (!strncmp(*envp, name, n) && (*envp)[n] == '=')
			return *envp + n + 1;
	return NULL;
}

/* ZSWAPU_WRITEBACK and ZSWAPU_WRITEBACK_DIR together: where, if at all. */
static void resolve_writeback(struct options *o, const char *const *envp)
{
	bool on = o->set[OPTIONS_WRITEBACK] ? o->writeback : o->writeback_dir[0] != '\0';
	if (on && !o->writeback_dir[0]) {
		const char *tmp = lookup_plain(envp, "TMPDIR");
		if (!tmp || !*tmp || copy_str(tmp, o->writeback_dir, sizeof(o->writeback_dir)))
			copy_str("/tmp", o->writeback_dir, sizeof(o->writeback_dir));
	}
	o->writeback = on;
	o->z.writeback_dir = on ? o->writeback_dir : NULL;
}

void options_defaults(struct options *o)
{
	memset(o, 0, sizeof(*o));
	zswapu_options_init(&o->z);
	for (int i = 0; i < OPTIONS_NR; i++) {
		int err = parse_row(&table[i], table[i].pub.def, o);
		(void)err; /* the defaults parse: test_options checks every one */
	}
	link_strings(o);
}

/* One line into @err naming the variable, the value and what it accepts. */
static void bad_value(enum options_id id, const char *value, char *err, size_t errlen)
{
	char acc[160];
	if (err)
		snprintf(err, errlen, "%s%s='%s' is not valid: accepted are %s", OPTIONS_PREFIX,
			 table[id].pub.name, value, options_accepts(id, acc, sizeof(acc)));
}

/* Settings that are fine one by one but not together. */
static int check_combination(struct options *o, char *err, size_t errlen)
{
	size_t max = zpool_type_max_size(o->pool);
	size_t cap = max < PAGE_BYTES - 1 ? max : PAGE_BYTES - 1;
	if (o->z.max_compressed > cap) {
		char value[16];
		snprintf(value, sizeof(value), "%u", o->z.max_compressed);
		if (err)
			snprintf(err, errlen,
				 "%sREJECT='%s' is not valid with %sPOOL=%s: accepted are 1..%zu",
				 OPTIONS_PREFIX, value, OPTIONS_PREFIX, o->pool, cap);
		return -EINVAL;
	}
	if (o->z.max_pool_percent && !o->z.limit_bytes) {
		if (err)
			snprintf(err, errlen, "%sMAX_POOL='%u%%' is not valid without %sLIMIT: a "
				 "percentage is of the limit; accepted are bytes (256M)",
				 OPTIONS_PREFIX, o->z.max_pool_percent, OPTIONS_PREFIX);
		return -EINVAL;
	}
	if (o->z.stall_max_percent && !o->z.limit_bytes) {
		if (err)
			snprintf(err, errlen, "%sSTALL_MAX='%u' is not valid without %sLIMIT: it "
				 "lets a limit give way; accepted is 0",
				 OPTIONS_PREFIX, o->z.stall_max_percent, OPTIONS_PREFIX);
		return -EINVAL;
	}
	return 0;
}

int options_load(struct options *o, const char *const *envp, char *err, size_t errlen)
{
	if (!envp)
		envp = (const char *const *)environ;
	options_defaults(o);
	int first = -1;
	const char *first_value = NULL;
	/* every row, even after a bad one: ZSWAPU_LOG=0 must still silence */
	for (int i = 0; i < OPTIONS_NR; i++) {
		const char *v = lookup(envp, table[i].pub.name);
		if (!v)
			continue;
		o->set[i] = true;
		if (parse_row(&table[i], v, o) && first < 0) {
			first = i;
			first_value = v;
		}
	}
	link_strings(o);
	resolve_writeback(o, envp);
	if (first >= 0) {
		bad_value(first, first_value, err, errlen);
		return -EINVAL;
	}
	return check_combination(o, err, errlen);
}

/* ---- reporting -------------------------------------------------------------------- */

/* Is ZSWAPU_<name>=... (up to '=') a row of the table? */
static bool known(const char *var)
{
	const char *name = var + strlen(OPTIONS_PREFIX);
	size_t n = strcspn(name, "=");
	for (int i = 0; i < OPTIONS_NR; i++)
		if (strlen(table[i].pub.name) == n && !strncmp(table[i].pub.name, name, n))
			return true;
	return false;
}

int options_warn(const struct options *o, const char *const *envp)
{
	if (!envp)
		envp = (const char *const *)environ;
	int lines = 0;
	for (int i = 0; i < OPTIONS_NR; i++) {
		if (!o->set[i] || table[i].pub.status == OPTIONS_HONOURED)
			continue;
		const struct row *r = &table[i];
		if (r->pub.status == OPTIONS_RESERVED) {
			log_error("%s%s is reserved for a later version: ignored", OPTIONS_PREFIX,
				  r->pub.name);
			lines++;
		}
	}
	size_t plen = strlen(OPTIONS_PREFIX);
	for (const char *const *e = envp; *e; e++)
		if (!strncmp(*e, OPTIONS_PREFIX, plen) && !known(*e)) {
			log_error("%.*s: unknown variable, ignored (see zswapu help options)",
				  (int)strcspn(*e, "="), *e);
			lines++;
		}
	return lines;
}

bool options_excluded(const struct options *o, const char *prog)
{
	size_t n = strlen(prog);
	for (const char *p = o->exclude; *p;) {
		size_t k = strcspn(p, ",");
		if (k == n && n && !strncmp(p, prog, n))
			return true;
		p += k + (p[k] == ',');
	}
	return false;
}

/* Row @id's current value in @o, printed back in the parser's terms. */
static const char *value_str(const struct options *o, enum options_id id, char *buf, size_t len)
{
	const struct row *r = &table[id];
	const void *f = (const char *)o + r->off;
	switch (r->type) {
	case T_BOOL:
	case T_LEVEL:
		snprintf(buf, len, "%d", *(const int *)f);
		break;
	case T_SIZE:
	case T_LIMIT:
		snprintf(buf, len, "%zu", *(const size_t *)f);
		break;
	case T_SECONDS:
		snprintf(buf, len, "%ums", *(const unsigned int *)f);
		break;
	case T_REJECT:
	case T_COUNT:
		snprintf(buf, len, "%u", *(const unsigned int *)f);
		break;
	case T_COMPRESSOR:
	case T_POOL:
	case T_NAMES:
	case T_PATH:
	case T_PREFIX:
		snprintf(buf, len, "%s", (const char *)f);
		break;
	case T_POOLCAP:
		if (o->z.max_pool_percent)
			snprintf(buf, len, "%u%%", o->z.max_pool_percent);
		else
			snprintf(buf, len, "%zu", o->z.max_pool_bytes);
		break;
	case T_PERCENT:
		snprintf(buf, len, "%u", *(const unsigned int *)f);
		break;
	case T_DETACH:
		snprintf(buf, len, "%s", detach_names[*(const int *)f % 3]);
		break;
	case T_RESERVED:
		snprintf(buf, len, "(reserved)");
		break;
	}
	return buf;
}

void options_log_values(const struct options *o)
{
	for (int i = 0; i < OPTIONS_NR; i++) {
		char v[300];
		log_info("%s%-22s %s%s", OPTIONS_PREFIX, table[i].pub.name,
			 value_str(o, i, v, sizeof(v)), o->set[i] ? "" : " (default)");
	}
}

/*
 * printf to @fd, keeping the first error.  Formatted on the stack and
 * written with write(2): glibc's vdprintf leaks its buffer when the
 * write fails.
 */
static void out(int fd, int *err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void out(int fd, int *err, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0 || *err)
		return;
	size_t len = (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1;
	for (size_t off = 0; off < len;) {
		ssize_t w = write(fd, buf + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			*err = w < 0 ? -errno : -EIO;
			return;
		}
		off += (size_t)w;
	}
}

/* @text wrapped at @width columns, every line indented by @indent. */
static void out_wrapped(int fd, int *err, const char *text, int indent, int width)
{
	const char *p = text;
	while (*p) {
		int n = (int)strlen(p);
		if (n > width - indent) {
			n = width - indent;
			while (n > 0 && p[n] != ' ')
				n--;
			if (n == 0)
				n = (int)strcspn(p, " ");
		}
		out(fd, err, "%*s%.*s\n", indent, "", n, p);
		p += n;
		while (*p == ' ')
			p++;
	}
}

static void print_text(int fd, int *err)
{
	out(fd, err, "Environment variables (zswapu run sets them; LD_PRELOAD users set them "
		     "by hand):\n\n");
	for (int i = 0; i < OPTIONS_NR; i++) {
		const struct options_row *r = &table[i].pub;
		char acc[160];
		if (r->status == OPTIONS_RESERVED) {
			out(fd, err, "%s%s\n", OPTIONS_PREFIX, r->name);
			out_wrapped(fd, err, r->desc, 4, 78);
			continue;
		}
		out(fd, err, "%s%s=<%s>  (default: %s)\n", OPTIONS_PREFIX, r->name,
		    r->type, *r->def ? r->def : "empty");
		out_wrapped(fd, err, r->desc, 4, 78);
		char line[256];
		snprintf(line, sizeof(line), "Accepted: %s.",
			 options_accepts(i, acc, sizeof(acc)));
		out_wrapped(fd, err, line, 4, 78);
	}
}

static void print_markdown(int fd, int *err)
{
	out(fd, err, "# zswapu options\n\n"
		     "<!-- Generated by `zswapu help options --markdown` from the table in "
		     "core/options.c; `make docs` rewrites it and `make check` compares. -->\n\n"
		     "zswapu reads these environment variables once, when the LD_PRELOAD shim "
		     "starts. `zswapu run` sets them from its flags; with `LD_PRELOAD` set them "
		     "yourself. A bad value prints one line naming the variable and what it "
		     "accepts, and the program runs unmanaged. A reserved variable or an "
		     "unknown `ZSWAPU_` name prints one line and is ignored.\n\n"
		     "| variable | type | default | accepted | description |\n"
		     "|---|---|---|---|---|\n");
	for (int i = 0; i < OPTIONS_NR; i++) {
		const struct options_row *r = &table[i].pub;
		char acc[160];
		bool res = r->status == OPTIONS_RESERVED;
		const char *def = res ? "-" : *r->def ? r->def : "(empty)";
		out(fd, err, "| `%s%s` | %s | %s | %s | %s |\n", OPTIONS_PREFIX, r->name,
		    r->type, def, res ? "-" : options_accepts(i, acc, sizeof(acc)), r->desc);
	}
}

/* @text as roff running text: backslashes escaped, no line taken for a request. */
static void out_roff(int fd, int *err, const char *text)
{
	if (*text == '.' || *text == '\'')
		out(fd, err, "\\&");
	for (const char *p = text; *p;) {
		size_t n = strcspn(p, "\\");
		out(fd, err, "%.*s", (int)n, p);
		p += n;
		if (*p) {
			out(fd, err, "\\e");
			p++;
		}
	}
}

/* The ENVIRONMENT section of zswapu(7): one tagged paragraph per row. */
static void print_man(int fd, int *err)
{
	out(fd, err, ".\\\" Generated by `zswapu help options --man` from core/options.c.\n");
	for (int i = 0; i < OPTIONS_NR; i++) {
		const struct options_row *r = &table[i].pub;
		char acc[160];
		out(fd, err, ".TP\n.B %s%s\n", OPTIONS_PREFIX, r->name);
		if (r->status == OPTIONS_RESERVED) {
			out_roff(fd, err, r->desc);
			out(fd, err, "\n");
			continue;
		}
		out(fd, err, "(%s; default: ", r->type);
		out_roff(fd, err, *r->def ? r->def : "empty");
		out(fd, err, ")\n");
		out_roff(fd, err, r->desc);
		out(fd, err, "\n.br\nAccepted: ");
		out_roff(fd, err, options_accepts(i, acc, sizeof(acc)));
		out(fd, err, ".\n");
	}
}

int options_print(int fd, enum options_format fmt)
{
	int err = 0;
	if (fmt == OPTIONS_MARKDOWN)
		print_markdown(fd, &err);
	else if (fmt == OPTIONS_MAN)
		print_man(fd, &err);
	else
		print_text(fd, &err);
	return err;
}

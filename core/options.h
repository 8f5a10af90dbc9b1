/*
 * options — the ZSWAPU_* environment variables: one table, parsed once.
 *
 * Every variable is a row of the table in options.c (name, type, default,
 * accepted values, description), as mimalloc keeps its options: the
 * defaults are the table's default strings run through the same parsers,
 * `zswapu help options` and docs/options.md print the same rows, and
 * nothing else reads the environment.  The values land in a struct
 * zswapu_options (what zswapu_init() takes) plus the settings only the
 * LD_PRELOAD shim and the `zswapu` tool use.
 *
 * A bad value is an error: options_load() returns -EINVAL with one line
 * naming the variable, the value and what it accepts, and the shim then
 * leaves the program unmanaged (BRIEF trap 8).  A variable that is
 * reserved for a later version, or a setting the engine cannot honour yet,
 * or an unknown ZSWAPU_ name is not an error: options_warn() prints one
 * line for each and it is ignored.
 *
 * No locks, no allocation: options_load() only reads the strings it is
 * given, so the shim's constructor can run it before anything else.
 */
#ifndef ZSWAPU_OPTIONS_H
#define ZSWAPU_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>

#include "libzswapu/zswapu.h"

#define OPTIONS_PREFIX "ZSWAPU_"

/* The rows, in table order (the order docs and --help print). */
enum options_id {
	OPTIONS_ENABLED,
	OPTIONS_LIMIT,
	OPTIONS_LIMIT_POOL,
	OPTIONS_STALL_MAX,
	OPTIONS_COLD_AGE,
	OPTIONS_COMPRESSOR,
	OPTIONS_POOL,
	OPTIONS_MAX_POOL,
	OPTIONS_REJECT,
	OPTIONS_STORE_INCOMPRESSIBLE,
	OPTIONS_STATS,
	OPTIONS_LOG,
	OPTIONS_THREADS,
	OPTIONS_SPIN_US,
	OPTIONS_DETACH,
	OPTIONS_SCAN_INTERVAL,
	OPTIONS_EXCLUDE,
	OPTIONS_SIGNALS,
	OPTIONS_WRITEBACK_DIR,
	OPTIONS_WRITEBACK,
	OPTIONS_ACCEPT,
	OPTIONS_PROFILE,
	OPTIONS_PROFILE_RATE,
	OPTIONS_NR
};

/* How far zswapu acts on a row. */
enum options_status {
	OPTIONS_HONOURED,     /* parsed and acted on */
	OPTIONS_RESERVED,     /* a later version's; not even parsed */
};

struct options {
	/* What zswapu_init() takes; .compressor and .pool point into this struct. */
	struct zswapu_options z;
	/* Settings of the shim and the tool. */
	int enabled;           /* 0: the shim does nothing at all */
	int stats;             /* print the stats table at exit */
	int signals;           /* the shim's handler for fatal signals left at SIG_DFL */
	int writeback;         /* ZSWAPU_WRITEBACK: 1 = on ($TMPDIR unless a directory is given) */
	unsigned int scan_ms;  /* /proc/self/maps rescan period; 0 = at start only */
	char exclude[256];     /* comma-separated program names */
	char profile[256];     /* file prefix of the profile; "" = no profiling */
	size_t profile_rate;   /* mean bytes between two sampled allocations */
	/* Storage for the strings z points to. */
	char compressor[32];
	char pool[16];
	char writeback_dir[256];
	/* Which variables were present in the environment. */
	bool set[OPTIONS_NR];
};

/* One row of the table, as printed. */
struct options_row {
	const char *name;    /* without the ZSWAPU_ prefix */
	const char *type;    /* bool, size, seconds, ... */
	const char *def;     /* default value, as a string the parser takes */
	const char *desc;
	enum options_status status;
};

/* options_row() : row @id (0 <= id < OPTIONS_NR). */
const struct options_row *options_row(enum options_id id);

/*
 * options_accepts() : the values row @id accepts, as one phrase, into @buf
 * (some depend on the build: zstd's levels, the pool drivers).
 */
const char *options_accepts(enum options_id id, char *buf, size_t len);

/* options_defaults() : every row at its default. */
void options_defaults(struct options *o);

/*
 * options_load() : the defaults, then every ZSWAPU_* variable of @envp
 * ("NAME=value" strings, NULL-terminated; NULL = this process's environ).
 * @return 0; -EINVAL when a value is bad: *@o then holds the defaults
 * overridden by the good values, and @err (if not NULL) the first bad
 * one's line, without a trailing newline:
 *   ZSWAPU_LIMIT='12X' is not valid: accepted are ...
 */
int options_load(struct options *o, const char *const *envp, char *err, size_t errlen);

/*
 * options_warn() : one log line (at the error level, so it shows by
 * default; ZSWAPU_LOG=0 silences it) for every variable of @envp that is
 * reserved, or not a ZSWAPU_ name the table knows.  @return how many lines.
 */
int options_warn(const struct options *o, const char *const *envp);

/* options_excluded() : true when @prog is one of ZSWAPU_EXCLUDE's names. */
bool options_excluded(const struct options *o, const char *prog);

/* options_log_values() : every row's value, at the info log level. */
void options_log_values(const struct options *o);

enum options_format {
	OPTIONS_TEXT,     /* for a terminal: `zswapu help options` */
	OPTIONS_MARKDOWN, /* docs/options.md */
	OPTIONS_MAN,      /* the ENVIRONMENT section of docs/zswapu.7 (roff) */
};

/* options_print() : the whole table to @fd. @return 0 or -errno. */
int options_print(int fd, enum options_format fmt);

#endif

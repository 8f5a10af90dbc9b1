/*
 * shmstat — the live-stats segment: one small shared-memory file per
 * managed process, /dev/shm/zswapu.PID (mode 0600), that the engine
 * rewrites about every 100 ms and `zswapu stat` reads without stopping the
 * program.
 *
 * Format: a header written once (magic, version, size, pid, the process's
 * start time in clock ticks, the settings and the names of the counters),
 * then one sample (counter values, the two latency histograms, the pool's
 * class table and driver rows) under a sequence counter: the writer makes
 * it odd, stores the words, makes it even again; a reader copies the words
 * and keeps the copy only if the counter was even and unchanged around it,
 * so it never sees half of one sample and half of the next.  Every word is
 * accessed as a relaxed atomic (the fences order them).  There is one
 * writer per segment.
 *
 * Life: the writer builds the file under a hidden name (.zswapu.PID.tmp)
 * and renames it into place once the header is complete, so a reader
 * never maps a file still being sized; it unlinks it when the engine stops
 * or the program exits.  The file is never truncated, so a reader's
 * mapping stays valid after the writer is gone (no SIGBUS).  A file left
 * by a killed process is stale: its PID no longer exists, or belongs to a
 * process with another start time, or (exec: same process, new program)
 * the process no longer maps it.  Readers remove stale files as they find
 * them (shmstat_list, shmstat_open).
 *
 * Requests: the one word a reader writes.  `zswapu release` sets a bit
 * (shmstat_request(), which needs write access to the file: the owner or
 * root); the writer takes the bits at its next publish and acts on them.
 *
 * Nothing here allocates with malloc: the writer runs on engine threads.
 */
#ifndef ZSWAPU_SHMSTAT_H
#define ZSWAPU_SHMSTAT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/stats.h"

#define SHMSTAT_DIR "/dev/shm"
#define SHMSTAT_MAGIC 0x315453555057535aULL /* "ZSWPUST1" */
#define SHMSTAT_VERSION 3
#define SHMSTAT_NAME_LEN 32
#define SHMSTAT_MAX_COUNTERS 128
#define SHMSTAT_MAX_CLASSES 256
#define SHMSTAT_MAX_POOL_ROWS 48

/* One row of the pool's class table (zsmalloc's debugfs `classes`). */
struct shmstat_class {
	uint64_t class_idx, size, almost_full, almost_empty, obj_allocated, obj_used,
		pages_used, pages_per_zspage;
};

/* What does not change while the process runs: written once. */
struct shmstat_info {
	char comm[64];        /* the program's name */
	char compressor[32];
	char pool[16];
	uint64_t limit_bytes; /* 0: none */
	uint64_t limit_pool;  /* 1: the pool counts against the limit */
	uint64_t cold_age_ms;
	uint64_t ncounters;
	char names[SHMSTAT_MAX_COUNTERS][SHMSTAT_NAME_LEN];
};

/* One sample, as the writer fills it and a reader gets it back. */
struct shmstat_sample {
	uint64_t t_ns;   /* CLOCK_MONOTONIC when taken (shmstat_publish sets it) */
	uint64_t number; /* samples published before this one */
	uint64_t values[SHMSTAT_MAX_COUNTERS]; /* in the order of info.names */
	uint64_t load_ns[STATS_LAT_BINS];
	uint64_t fault_ns[STATS_LAT_BINS];
	uint64_t nclasses; /* rows of classes[] in use (zsmalloc; 0 for the others) */
	struct shmstat_class classes[SHMSTAT_MAX_CLASSES];
	uint64_t npool;    /* the driver's own rows (zbud, z3fold, zsmalloc) */
	char pool_names[SHMSTAT_MAX_POOL_ROWS][SHMSTAT_NAME_LEN];
	uint64_t pool_values[SHMSTAT_MAX_POOL_ROWS];
};

#define SHMSTAT_SAMPLE_WORDS (sizeof(struct shmstat_sample) / sizeof(uint64_t))

/* The file's layout. */
struct shmstat_seg {
	uint64_t magic;
	uint32_t version, size; /* SHMSTAT_VERSION, sizeof(struct shmstat_seg) */
	int64_t pid;
	uint64_t start_ticks; /* field 22 of /proc/PID/stat */
	uint64_t start_ns;    /* CLOCK_MONOTONIC when the engine started */
	struct shmstat_info info;
	_Atomic uint64_t seq;          /* odd while the writer is in the sample */
	_Atomic uint64_t heartbeat_ns; /* CLOCK_MONOTONIC of the last publish */
	_Atomic uint64_t requests;     /* SHMSTAT_REQ_* bits a reader set */
	_Atomic uint64_t limit_asked;  /* SHMSTAT_REQ_LIMIT's new limit */
	_Atomic uint64_t words[SHMSTAT_SAMPLE_WORDS];
};

/* ---- writer ---- */

struct shmstat_writer {
	struct shmstat_seg *seg;
	char path[128];
	uint64_t published;
};

/*
 * shmstat_create() : create @dir/zswapu.<this pid> (SHMSTAT_DIR when @dir
 * is NULL) with header @info, replacing a stale file of the same name.
 * @return 0; -ENAMETOOLONG; -EINVAL (more than SHMSTAT_MAX_COUNTERS
 * counters); file and mmap errors (-EACCES, -ENOSPC, -ENOENT ...).
 */
int shmstat_create(const char *dir, const struct shmstat_info *info, struct shmstat_writer *w);

/* shmstat_publish() : make @s (t_ns and number are set here) the current sample. */
void shmstat_publish(struct shmstat_writer *w, struct shmstat_sample *s);

/* What a reader may ask of the writer's process. */
#define SHMSTAT_REQ_RELEASE 1ULL /* put every stored page back and stop managing */
#define SHMSTAT_REQ_LIMIT 2ULL   /* hold the process under a new limit */

/*
 * shmstat_take_requests() : the SHMSTAT_REQ_* bits set since the last
 * call; with SHMSTAT_REQ_LIMIT, *@limit is the limit asked for last.
 */
uint64_t shmstat_take_requests(struct shmstat_writer *w, uint64_t *limit);

/* shmstat_destroy() : unlink the file and unmap it. */
void shmstat_destroy(struct shmstat_writer *w);

/* ---- reader ---- */

struct shmstat_reader {
	const struct shmstat_seg *seg;
	pid_t pid;
	char path[128];
	dev_t dev;
	ino_t ino;
};

/*
 * shmstat_open() : map process @pid's segment read-only.  A stale one is
 * removed and reported as absent.
 * @return 0; -ENOENT no segment (or a stale one, now removed); -EACCES
 * another user's; -EPROTO not a segment of this version.
 */
int shmstat_open(const char *dir, pid_t pid, struct shmstat_reader *r);

/*
 * shmstat_read() : copy the current sample into @out (never torn).  Names
 * and row counts are checked, so a damaged file yields bounded data.
 * @return 0; -EAGAIN no whole sample within the tries: the writer stayed
 * in the middle of one (it died there, or is stopped) or rewrote it each
 * time (a reader slower than its writer): the caller may check
 * shmstat_alive().
 */
int shmstat_read(const struct shmstat_reader *r, struct shmstat_sample *out);

/* shmstat_info() : the header's fixed part (names NUL-terminated). */
void shmstat_info(const struct shmstat_reader *r, struct shmstat_info *out);

/*
 * shmstat_alive() : is the writer still there (same PID, same start time,
 * and, when it has not published for a while, still mapping the file)?
 */
bool shmstat_alive(const struct shmstat_reader *r);

void shmstat_close(struct shmstat_reader *r);

/*
 * shmstat_request() : set request bits @what in process @pid's live
 * segment; its writer acts on them within a publish interval.
 * @return 0; the errors of shmstat_open(); -EACCES no write access (not
 * the owner); -ESTALE the file was replaced meanwhile.
 */
int shmstat_request(const char *dir, pid_t pid, uint64_t what);
/* shmstat_request_limit() : SHMSTAT_REQ_LIMIT for @bytes; as shmstat_request(). */
int shmstat_request_limit(const char *dir, pid_t pid, uint64_t bytes);

/* shmstat_find() : index of counter @name in @info, or -1. */
int shmstat_find(const struct shmstat_info *info, const char *name);

/*
 * shmstat_list() : the PIDs of the live segments in @dir, ascending, up
 * to @max into @pids; stale ones are removed on the way.
 * @return how many there are (may exceed @max), or -errno for @dir.
 */
int shmstat_list(const char *dir, pid_t *pids, size_t max);

/* shmstat_start_ticks() : field 22 of /proc/@pid/stat; 0 if gone. */
uint64_t shmstat_start_ticks(pid_t pid);

#endif

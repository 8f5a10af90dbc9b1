/*
 * writeback — the tier below the pool: compressed pages written to a file
 * with io_uring when the pool reaches its cap (ZSWAPU_MAX_POOL), oldest
 * first, as the kernel's zswap writes its LRU tail to the swap device.
 * Unlike zswap, the data goes out compressed: a page costs its compressed
 * size in the file, not 4096 bytes.
 *
 * The file.  One per store, created O_TMPFILE (mode 0600) in the directory
 * given: it has no name from the start, so nothing is left behind however
 * the process ends (exit, _exit, SIGKILL): the kernel frees it with the
 * last descriptor.  A file system without O_TMPFILE is refused (never a
 * named file that a crash could leave behind).
 *
 * Layout (size classes, after zbud/z3fold's 64-byte chunks):
 *   the file is a sequence of 64 KiB blocks; block b starts at b * 64 KiB.
 *   A used block belongs to one size class c (1..64) and holds
 *   floor(1024 / c) slots of c * 64 bytes; slot s of block b starts at
 *   b * 65536 + s * c * 64.  An object of n bytes (1..4096) goes in class
 *   ceil(n / 64) and occupies its first n bytes (only n bytes are written).
 *   A block whose last object is freed gets its space given back to the
 *   file system (fallocate PUNCH_HOLE) and can then serve any class.
 * Each block's slot bitmap, live count and class live in memory (144 bytes
 * per 64 KiB, a two-level table); per class, a list of blocks with free
 * slots; a list of empty blocks.  Nothing about the layout is stored in
 * the file itself: it dies with the process.
 *
 * Entries.  A stored page whose data is in the file has INDEX_WRITTEN_BACK
 * set and its entry's handle holds the object's file offset (its length
 * is the entry's length, as for a pool object): 16 bytes still, nothing
 * added.  See core/store.c for the switch from pool to file.
 *
 * I/O.  Two rings: the writer's (one io_uring_submit for a whole batch of
 * objects, from one registered buffer) and the reader's (a fault reads one
 * object into a registered buffer), so a fault never waits behind a batch
 * of writes.  A write error, a short write or a full file system stops
 * writeback for good (one line on stderr): the objects of the failed batch
 * stay in the pool, and the pool cap then rejects stores as without a
 * file.  A short read is an error, never data; a read is retried twice
 * before the error goes up.
 *
 * LRU.  A ring of page addresses in the order they were stored (pushed
 * when a page enters the pool, popped by writeback); a record whose page
 * was loaded, replaced or moved since is stale and skipped when popped (a
 * record is 8 bytes, the entry stays 48).  Pages moved by mremap lose
 * their record: when the ring runs dry while the pool is over its cap,
 * the store refills it from the index (address order).
 *
 * Locks: `lock` guards the block table and lists (a leaf but for pagesrc);
 * `lru_lock` the ring (leaf: never held while calling the index);
 * `rd_lock` the reader's ring and buffer; the writer's ring belongs to the
 * one thread that writes back (store_writeback() callers serialise).
 */
#ifndef ZSWAPU_WRITEBACK_H
#define ZSWAPU_WRITEBACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/stats.h"

#define WRITEBACK_BLOCK (64u * 1024)   /* file block: one size class each */
#define WRITEBACK_CHUNK 64u            /* slot granularity */
#define WRITEBACK_BATCH 256u           /* objects per io_uring_submit */
#define WRITEBACK_WBUF (WRITEBACK_BATCH * 4096u) /* the writer's buffer */

struct writeback;

/*
 * writeback_create() : a backing file in @dir (O_TMPFILE, 0600) and its
 * rings, counting into @st.  On failure one line on stderr names the
 * directory and the reason.  @return 0 and *@out; -errno of open (e.g.
 * -ENOENT, -EACCES, -EOPNOTSUPP: no O_TMPFILE there) or io_uring setup;
 * -ENOMEM.
 */
int writeback_create(const char *dir, struct stats *st, struct writeback **out);

/* writeback_destroy() : close the file (it vanishes) and free everything. */
void writeback_destroy(struct writeback *wb);

/*
 * writeback_forked_child() : in a forked child, close its copies of the
 * file's and the rings' descriptors (and unmap its copies of the rings).
 * The child never reads the file (the parent's engine serves it), and its
 * references kept the file's blocks and the rings alive as long as it
 * lived: a daemon's, for good.  Nothing of the parent's changes.
 */
void writeback_forked_child(struct writeback *wb);

/* writeback_usable() : false once an I/O error or a full disk stopped it. */
bool writeback_usable(struct writeback *wb);

/* writeback_fd() : the file's descriptor (tests look at /proc/self/fd). */
int writeback_fd(struct writeback *wb);

/*
 * writeback_alloc() : room for an object of @len bytes (1..4096).
 * @return 0 and *@off; -ENOSPC when the table of blocks is full (64 GiB).
 * writeback_free() : give it back (the same @len).
 */
int writeback_alloc(struct writeback *wb, size_t len, uint64_t *off);
void writeback_free(struct writeback *wb, uint64_t off, size_t len);

/* writeback_wbuf() : the writer's registered buffer, WRITEBACK_WBUF bytes. */
uint8_t *writeback_wbuf(struct writeback *wb);

struct writeback_io {
	uint64_t off;     /* from writeback_alloc() */
	const void *buf;  /* inside writeback_wbuf() */
	uint32_t len;
	int res;          /* out: 0, or -errno (-EIO for a short write) */
};

/*
 * writeback_write() : write @n (<= WRITEBACK_BATCH) objects with one
 * io_uring_submit and wait for all.  Counts writeback_bytes.  The first
 * failure stops writeback (one line on stderr).  @return how many went
 * out whole.
 */
unsigned int writeback_write(struct writeback *wb, struct writeback_io *io, unsigned int n);

/*
 * writeback_read() : read the @len-byte object at @off into @dst through
 * the reader's registered buffer.  Counts wb_reads and the latency.
 * @return 0; -EIO (or the read's -errno) after three failed tries: a
 * short read is a failure.  Thread-safe.
 */
int writeback_read(struct writeback *wb, uint64_t off, size_t len, void *dst);

/* The LRU ring of stored page addresses (see the top comment). */
void writeback_lru_push(struct writeback *wb, uintptr_t addr);
bool writeback_lru_pop(struct writeback *wb, uintptr_t *addr);

/* For tests: make the @nth next write or read complete with -@err. */
enum writeback_op { WRITEBACK_OP_WRITE, WRITEBACK_OP_READ, WRITEBACK_OP_NR };
void writeback_inject_fail(enum writeback_op op, int err, unsigned int nth);
/* writeback_inject_fail_from() : every call from the @nth on fails (0: off). */
void writeback_inject_fail_from(enum writeback_op op, int err, unsigned int nth);

#endif

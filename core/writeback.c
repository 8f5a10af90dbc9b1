/*
 * writeback — see writeback.h for the file, its layout, the LRU and the
 * locks.  Engine memory only (pagesrc), no malloc, no stdio (BRIEF trap 2):
 * the fault handler reads through here.
 */
#include "core/writeback.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/fdguard.h"
#include "core/inject.h"
#include "core/log.h"
#include "pools/pagesrc.h"

#define PAGE 4096u
#define CLASSES 64 /* class c holds objects of (c-1)*64+1 .. c*64 bytes */
#define SLOTS_MAX (WRITEBACK_BLOCK / WRITEBACK_CHUNK) /* 1024, class 1 */
#define METAS_PER_CHUNK 1024u
#define META_CHUNKS 1024u /* 1M blocks: a 64 GiB file at most */
#define NONE (-1)
#define RD_TRIES 3

/* LRU ring: segments of LRU_SEG_RECS addresses, allocated as it grows. */
#define LRU_SEG_PAGES 64u
#define LRU_SEG_RECS (LRU_SEG_PAGES * PAGE / sizeof(uintptr_t))
#define LRU_SEGS 2048u /* 64M records at most; beyond, the oldest are dropped */

enum { B_FREE, B_USED, B_PUNCHING };

struct block {
	int32_t prev, next;  /* class list (used) or free list */
	uint16_t live, nslots;
	uint8_t cls, state;
	uint64_t bits[SLOTS_MAX / 64];
};

struct writeback {
	int fd;
	char dir[256];
	struct stats *st;
	_Atomic bool stopped;

	pthread_mutex_t lock;              /* blocks and lists */
	struct block *meta[META_CHUNKS];   /* two-level block table */
	uint32_t nblocks;                  /* high-water mark */
	int32_t partial[CLASSES + 1];      /* per class: blocks with a free slot */
	int32_t free_head;                 /* empty (punched) blocks */
	uint64_t used_blocks;

	struct io_uring wr;                /* writer (one thread) */
	uint8_t *wbuf;
	struct io_uring rd;                /* readers, under rd_lock */
	pthread_mutex_t rd_lock;
	uint8_t *rbuf;
	bool wr_up, rd_up;

	pthread_mutex_t lru_lock;
	uint64_t lru_head, lru_tail;       /* record counters */
	uintptr_t *lru[LRU_SEGS];
};

#define WB_PAGES ((sizeof(struct writeback) + PAGE - 1) / PAGE)
#define META_PAGES ((METAS_PER_CHUNK * sizeof(struct block) + PAGE - 1) / PAGE)

/* ---- fault injection (tests) ---- */

static struct inject_point inject[WRITEBACK_OP_NR];

void writeback_inject_fail(enum writeback_op op, int err, unsigned int nth)
{
	inject_arm(&inject[op], err, nth);
}

void writeback_inject_fail_from(enum writeback_op op, int err, unsigned int nth)
{
	inject_arm_sticky(&inject[op], err, nth); /* err 0: disarmed */
}

/* The injected error for this call of @op, or 0. */
static int injected(enum writeback_op op)
{
	return inject_take(&inject[op]);
}

/* ---- errors ---- */

static const char *errstr(int err)
{
	const char *s = strerrordesc_np(-err);
	return s ? s : "unknown error";
}

/* The first failure stops writeback; one line says so. */
static void stop(struct writeback *wb, const char *what, int err)
{
	stats_inc(wb->st, STAT_WB_ERRORS);
	if (atomic_exchange(&wb->stopped, true))
		return;
	log_error("writeback to %s stopped: %s failed: %s; pages stay in memory", wb->dir, what,
		  errstr(err));
}

bool writeback_usable(struct writeback *wb)
{
	return !atomic_load_explicit(&wb->stopped, memory_order_relaxed);
}

int writeback_fd(struct writeback *wb)
{
	return wb->fd;
}

uint8_t *writeback_wbuf(struct writeback *wb)
{
	return wb->wbuf;
}

/* ---- blocks and slots ---- */

static struct block *blk(struct writeback *wb, int32_t b)
{
	return &wb->meta[b / METAS_PER_CHUNK][b % METAS_PER_CHUNK];
}

static void list_add(struct writeback *wb, int32_t *head, int32_t b)
{
	struct block *m = blk(wb, b);
	m->prev = NONE;
	m->next = *head;
	if (*head != NONE)
		blk(wb, *head)->prev = b;
	*head = b;
}

static void list_del(struct writeback *wb, int32_t *head, int32_t b)
{
	struct block *m = blk(wb, b);
	if (m->prev != NONE)
		blk(wb, m->prev)->next = m->next;
	else
		*head = m->next;
	if (m->next != NONE)
		blk(wb, m->next)->prev = m->prev;
}

static void publish_file(struct writeback *wb, int64_t blocks)
{
	wb->used_blocks += blocks;
	stats_add(wb->st, STAT_WB_FILE_BYTES, blocks * (int64_t)WRITEBACK_BLOCK);
}

/* An empty block for class @cls, under lock.  -ENOSPC when none is left. */
static int new_block(struct writeback *wb, unsigned int cls, int32_t *out)
{
	int32_t b = wb->free_head;
	if (b != NONE) {
		list_del(wb, &wb->free_head, b);
	} else {
		if (wb->nblocks == META_CHUNKS * METAS_PER_CHUNK)
			return -ENOSPC;
		b = (int32_t)wb->nblocks;
		if (!wb->meta[b / METAS_PER_CHUNK]) {
			void *p;
			if (pagesrc_alloc(META_PAGES, &p))
				return -ENOMEM;
			wb->meta[b / METAS_PER_CHUNK] = p;
		}
		wb->nblocks++;
	}
	struct block *m = blk(wb, b);
	memset(m->bits, 0, sizeof(m->bits));
	m->cls = (uint8_t)cls;
	m->live = 0;
	m->nslots = (uint16_t)(SLOTS_MAX / cls);
	m->state = B_USED;
	list_add(wb, &wb->partial[cls], b);
	publish_file(wb, 1);
	*out = b;
	return 0;
}

int writeback_alloc(struct writeback *wb, size_t len, uint64_t *off)
{
	if (len == 0 || len > PAGE)
		return -EINVAL;
	unsigned int cls = (unsigned int)((len + WRITEBACK_CHUNK - 1) / WRITEBACK_CHUNK);
	pthread_mutex_lock(&wb->lock);
	int32_t b = wb->partial[cls];
	int err = 0;
	if (b == NONE)
		err = new_block(wb, cls, &b);
	if (err) {
		pthread_mutex_unlock(&wb->lock);
		return err;
	}
	struct block *m = blk(wb, b);
	unsigned int slot = 0;
	for (unsigned int w = 0; w < SLOTS_MAX / 64; w++)
		if (~m->bits[w]) {
			slot = w * 64 + (unsigned int)__builtin_ctzll(~m->bits[w]);
			break;
		}
	m->bits[slot / 64] |= 1ULL << (slot % 64);
	if (++m->live == m->nslots)
		list_del(wb, &wb->partial[cls], b);
	pthread_mutex_unlock(&wb->lock);
	*off = (uint64_t)b * WRITEBACK_BLOCK + (uint64_t)slot * cls * WRITEBACK_CHUNK;
	stats_add(wb->st, STAT_WB_LIVE_BYTES, (int64_t)len);
	return 0;
}

void writeback_free(struct writeback *wb, uint64_t off, size_t len)
{
	int32_t b = (int32_t)(off / WRITEBACK_BLOCK);
	stats_add(wb->st, STAT_WB_LIVE_BYTES, -(int64_t)len);
	pthread_mutex_lock(&wb->lock);
	struct block *m = blk(wb, b);
	unsigned int slot = (unsigned int)(off % WRITEBACK_BLOCK / (m->cls * WRITEBACK_CHUNK));
	m->bits[slot / 64] &= ~(1ULL << (slot % 64));
	if (m->live-- == m->nslots)
		list_add(wb, &wb->partial[m->cls], b);
	if (m->live) {
		pthread_mutex_unlock(&wb->lock);
		return;
	}
	/* empty: give its space back to the file system, then reuse it; no
	 * one allocates from it meanwhile (off the lists, PUNCHING) */
	list_del(wb, &wb->partial[m->cls], b);
	m->state = B_PUNCHING;
	pthread_mutex_unlock(&wb->lock);
	fallocate(wb->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)b * WRITEBACK_BLOCK,
		  WRITEBACK_BLOCK);
	pthread_mutex_lock(&wb->lock);
	m->state = B_FREE;
	list_add(wb, &wb->free_head, b);
	publish_file(wb, -1);
	pthread_mutex_unlock(&wb->lock);
}

/* ---- I/O ---- */

/*
 * A write that came back short (a file system nearly full): write the rest
 * directly, which either completes it or tells why it cannot (ENOSPC).
 * @return the object's length, or -errno.
 */
static int finish_short_write(struct writeback *wb, const struct writeback_io *io, size_t done)
{
	while (done < io->len) {
		ssize_t w = pwrite(wb->fd, (const uint8_t *)io->buf + done, io->len - done,
				   (off_t)(io->off + done));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		done += (size_t)w;
	}
	return (int)io->len;
}

unsigned int writeback_write(struct writeback *wb, struct writeback_io *io, unsigned int n)
{
	if (n > WRITEBACK_BATCH)
		n = WRITEBACK_BATCH;
	for (unsigned int i = 0; i < n; i++)
		io[i].res = -EIO;
	for (unsigned int i = 0; i < n; i++) {
		/* the ring has WRITEBACK_BATCH entries and is empty here */
		struct io_uring_sqe *sqe = io_uring_get_sqe(&wb->wr);
		if (!sqe) {
			n = i;
			break;
		}
		io_uring_prep_write_fixed(sqe, wb->fd, io[i].buf, io[i].len, (off_t)io[i].off, 0);
		io_uring_sqe_set_data64(sqe, i);
	}
	int r;
	do
		r = io_uring_submit_and_wait(&wb->wr, n);
	while (r == -EINTR);
	unsigned int ok = 0, seen = 0;
	int first_err = r < 0 ? r : 0;
	/* whatever was submitted completes, whatever the error */
	unsigned int submitted = r < 0 ? 0 : (unsigned int)r;
	while (seen < submitted) {
		struct io_uring_cqe *cqe;
		int w = io_uring_wait_cqe(&wb->wr, &cqe);
		if (w == -EINTR)
			continue;
		if (w < 0) {
			first_err = first_err ? first_err : w;
			break;
		}
		unsigned int i = (unsigned int)io_uring_cqe_get_data64(cqe);
		int res = cqe->res, inj = injected(WRITEBACK_OP_WRITE);
		io_uring_cqe_seen(&wb->wr, cqe);
		seen++;
		if (inj)
			res = inj;
		if (i >= n)
			continue;
		if (res >= 0 && res < (int)io[i].len)
			res = finish_short_write(wb, &io[i], (size_t)res);
		io[i].res = res == (int)io[i].len ? 0 : res < 0 ? res : -EIO;
		if (io[i].res == 0) {
			ok++;
			stats_add(wb->st, STAT_WRITEBACK_BYTES, io[i].len);
		} else if (!first_err) {
			first_err = io[i].res;
		}
	}
	if (first_err || ok < n)
		stop(wb, "writing to the file", first_err ? first_err : -EIO);
	return ok;
}

/* One read of @len bytes at @off into rbuf: 0 or -errno (short: -EIO). */
static int read_once(struct writeback *wb, uint64_t off, size_t len)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&wb->rd);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_read_fixed(sqe, wb->fd, wb->rbuf, (unsigned int)len, (off_t)off, 0);
	int r;
	do
		r = io_uring_submit_and_wait(&wb->rd, 1);
	while (r == -EINTR);
	if (r < 0)
		return r;
	struct io_uring_cqe *cqe;
	do
		r = io_uring_wait_cqe(&wb->rd, &cqe);
	while (r == -EINTR);
	if (r < 0)
		return r;
	int res = cqe->res, inj = injected(WRITEBACK_OP_READ);
	io_uring_cqe_seen(&wb->rd, cqe);
	if (inj)
		res = inj;
	return res == (int)len ? 0 : res < 0 ? res : -EIO;
}

int writeback_read(struct writeback *wb, uint64_t off, size_t len, void *dst)
{
	if (len == 0 || len > PAGE)
		return -EINVAL;
	uint64_t t0 = stats_now_ns();
	pthread_mutex_lock(&wb->rd_lock);
	int err = 0;
	for (int t = 0; t < RD_TRIES; t++)
		if ((err = read_once(wb, off, len)) == 0)
			break;
	if (!err)
		memcpy(dst, wb->rbuf, len);
	pthread_mutex_unlock(&wb->rd_lock);
	if (err) {
		stop(wb, "reading from the file", err);
		return err;
	}
	stats_inc(wb->st, STAT_WB_READS);
	stats_count_wb_read_ns(wb->st, stats_now_ns() - t0);
	return 0;
}

/* ---- LRU ring ---- */

static uintptr_t *lru_slot(struct writeback *wb, uint64_t i)
{
	return &wb->lru[i / LRU_SEG_RECS % LRU_SEGS][i % LRU_SEG_RECS];
}

/* Drop the segment the tail is in (under lru_lock). */
static void lru_drop_tail_seg(struct writeback *wb)
{
	uint64_t seg = wb->lru_tail / LRU_SEG_RECS;
	pagesrc_free(wb->lru[seg % LRU_SEGS], LRU_SEG_PAGES);
	wb->lru[seg % LRU_SEGS] = NULL;
	wb->lru_tail = (seg + 1) * LRU_SEG_RECS;
}

void writeback_lru_push(struct writeback *wb, uintptr_t addr)
{
	pthread_mutex_lock(&wb->lru_lock);
	if (wb->lru_head % LRU_SEG_RECS == 0) {
		/* a new segment; when all are taken, the oldest records go
		 * (their pages are found again by a refill from the index) */
		if (wb->lru_head - wb->lru_tail >= (LRU_SEGS - 1) * LRU_SEG_RECS)
			lru_drop_tail_seg(wb);
		uint64_t seg = wb->lru_head / LRU_SEG_RECS % LRU_SEGS;
		if (!wb->lru[seg] && pagesrc_alloc(LRU_SEG_PAGES, (void **)&wb->lru[seg])) {
			wb->lru[seg] = NULL;
			pthread_mutex_unlock(&wb->lru_lock);
			return; /* no memory: the page waits for a refill */
		}
	}
	*lru_slot(wb, wb->lru_head++) = addr;
	pthread_mutex_unlock(&wb->lru_lock);
}

bool writeback_lru_pop(struct writeback *wb, uintptr_t *addr)
{
	pthread_mutex_lock(&wb->lru_lock);
	bool got = wb->lru_tail < wb->lru_head;
	if (got) {
		*addr = *lru_slot(wb, wb->lru_tail);
		/* leaving a segment the head has left too: free it */
		if ((wb->lru_tail + 1) % LRU_SEG_RECS == 0)
			lru_drop_tail_seg(wb);
		else
			wb->lru_tail++;
	}
	pthread_mutex_unlock(&wb->lru_lock);
	return got;
}

/* ---- create / destroy ---- */

static void ring_exit(struct io_uring *ring)
{
	fdguard_forget(ring->ring_fd); /* liburing's close must not be refused */
	io_uring_queue_exit(ring);
}

/* A ring with one registered buffer of @len bytes from pagesrc. */
static int ring_init(struct io_uring *ring, unsigned int entries, uint8_t **buf, size_t len)
{
	int err = io_uring_queue_init(entries, ring, 0);
	if (err)
		return err;
	/* liburing enters through enter_ring_fd and closes ring_fd at exit */
	ring->ring_fd = ring->enter_ring_fd = fdguard_adopt(ring->ring_fd);
	err = pagesrc_alloc(len / PAGE, (void **)buf);
	if (!err) {
		struct iovec iov = { .iov_base = *buf, .iov_len = len };
		err = io_uring_register_buffers(ring, &iov, 1);
		if (err) {
			pagesrc_free(*buf, len / PAGE);
			*buf = NULL;
		}
	}
	if (err)
		ring_exit(ring);
	return err;
}

int writeback_create(const char *dir, struct stats *st, struct writeback **out)
{
	if (!dir || !*dir || strlen(dir) >= sizeof(((struct writeback *)0)->dir)) {
		log_error("writeback directory '%s' not usable: an existing directory's path, "
			  "255 characters at most; writeback off", dir ? dir : "(null)");
		return -EINVAL;
	}
	struct writeback *wb;
	int err = pagesrc_alloc(WB_PAGES, (void **)&wb);
	if (err)
		return err;
	memset(wb, 0, sizeof(*wb));
	strcpy(wb->dir, dir);
	wb->st = st;
	wb->free_head = NONE;
	for (int c = 0; c <= CLASSES; c++)
		wb->partial[c] = NONE;
	pthread_mutex_init(&wb->lock, NULL);
	pthread_mutex_init(&wb->rd_lock, NULL);
	pthread_mutex_init(&wb->lru_lock, NULL);
	/* no name, ever: nothing to clean up after a crash (BRIEF trap 7) */
	wb->fd = fdguard_adopt(open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
	const char *what = "creating an O_TMPFILE file";
	if (wb->fd < 0) {
		err = -errno;
	} else {
		what = "setting up io_uring";
		err = ring_init(&wb->wr, WRITEBACK_BATCH, &wb->wbuf, WRITEBACK_WBUF);
		wb->wr_up = !err;
		if (!err) {
			err = ring_init(&wb->rd, 4, &wb->rbuf, PAGE);
			wb->rd_up = !err;
		}
	}
	if (err) {
		log_error("writeback directory %s: %s failed: %s; writeback off", dir, what,
			  errstr(err));
		writeback_destroy(wb);
		return err;
	}
	*out = wb;
	return 0;
}

void writeback_forked_child(struct writeback *wb)
{
	if (!wb)
		return;
	if (wb->wr_up)
		ring_exit(&wb->wr); /* this process's mappings and descriptor only */
	if (wb->rd_up)
		ring_exit(&wb->rd);
	wb->wr_up = wb->rd_up = false;
	fdguard_close(wb->fd);
	wb->fd = -1;
}

void writeback_destroy(struct writeback *wb)
{
	if (!wb)
		return;
	if (wb->wr_up) {
		ring_exit(&wb->wr);
		pagesrc_free(wb->wbuf, WRITEBACK_WBUF / PAGE);
	}
	if (wb->rd_up) {
		ring_exit(&wb->rd);
		pagesrc_free(wb->rbuf, 1);
	}
	fdguard_close(wb->fd); /* the last reference (children drop theirs): the file is gone */
	stats_add(wb->st, STAT_WB_FILE_BYTES, -(int64_t)(wb->used_blocks * WRITEBACK_BLOCK));
	for (unsigned int i = 0; i < META_CHUNKS; i++)
		if (wb->meta[i])
			pagesrc_free(wb->meta[i], META_PAGES);
	for (unsigned int i = 0; i < LRU_SEGS; i++)
		if (wb->lru[i])
			pagesrc_free(wb->lru[i], LRU_SEG_PAGES);
	pagesrc_free(wb, WB_PAGES);
}

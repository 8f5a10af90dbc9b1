/*
 * orphan — see orphan.h.
 *
 * The log is a memfd: a header (magic, start, end: the committed records
 * are [start, end)) and records after it.  The parent appends and then
 * moves `end`; a snapshot rewritten later is appended behind a RESET and
 * made the start once whole (end first, then start: a reader between the
 * two replays the old records, the RESET, then the new ones, the same
 * set), and the space before it is punched out.  Each header word is
 * one 8-byte pwrite, which a death does not split.  Only the child reads
 * it, and only after the parent's end of the socket closed, when no one
 * writes any more.
 */
#include "core/orphan.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/fdguard.h"
#include "core/index.h"
#include "core/log.h"
#include "core/region.h"
#include "core/uffd.h"
#include "pools/pagesrc.h"

#define PAGE 4096UL
#define MAGIC 0x7a73777075306f72ULL /* "zswpu0or" */
#define HDR_START 8
#define HDR_END 16
#define FIRST_REC PAGE
#define REPLAY_SPARE 8192 /* ranges beyond the log's own bound, for the events read at the end */

enum { REC_RANGE = 1, REC_RESET, REC_DROP, REC_MOVE };

/* ---- pairs: the socket's parent end and the log, packed for a message ---- */

static uint64_t pack(int sock, int memfd)
{
	return (uint64_t)(uint32_t)(memfd + 1) << 32 | (uint32_t)(sock + 1);
}

static int pair_sock(uint64_t p)
{
	return (int)(uint32_t)p - 1;
}

static int pair_memfd(uint64_t p)
{
	return (int)(uint32_t)(p >> 32) - 1;
}

static void pair_close(uint64_t p)
{
	if (!p)
		return;
	fdguard_close(pair_sock(p));
	fdguard_close(pair_memfd(p));
}

void orphan_slot_init(struct orphan_slot *s)
{
	memset(s, 0, sizeof(*s));
	atomic_store(&s->sock, -1);
	s->child_sock = s->memfd = -1;
}

void orphan_prepare(struct orphan_slot *s)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		return;
	int m = memfd_create("zswapu-orphan-log", MFD_CLOEXEC);
	if (m < 0) {
		close(sv[0]);
		close(sv[1]);
		return;
	}
	/* out of the program's way, in the parent and in the child */
	s->child_sock = fdguard_adopt(sv[1]);
	s->memfd = fdguard_adopt(m);
	atomic_store(&s->sock, fdguard_adopt(sv[0]));
}

static int send_fd(int sock, int fd)
{
	char byte = 'u';
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int))];
	} c;
	memset(&c, 0, sizeof(c));
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = c.b, .msg_controllen = sizeof(c.b) };
	struct cmsghdr *h = CMSG_FIRSTHDR(&mh);
	h->cmsg_level = SOL_SOCKET;
	h->cmsg_type = SCM_RIGHTS;
	h->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(h), &fd, sizeof(int));
	return sendmsg(sock, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) == 1 ? 0 : -errno;
}

uint64_t orphan_take(struct orphan_slot *s, int ufd)
{
	int sock = atomic_load(&s->sock);
	if (sock < 0 || !atomic_compare_exchange_strong(&s->sock, &sock, -1))
		return 0;
	uint64_t p = pack(sock, s->memfd);
	/* nowhere to list it, or not sent: the child reads the end of the
	 * socket at once and goes on uncovered */
	unsigned int k = 0;
	while (k < ORPHAN_INFLIGHT && atomic_load(&s->inflight[k]))
		k++;
	if (k == ORPHAN_INFLIGHT || send_fd(sock, ufd)) {
		pair_close(p);
		return 0;
	}
	atomic_store(&s->inflight[k], p);
	return p;
}

void orphan_settle(struct orphan_slot *s, uint64_t pair)
{
	for (unsigned int k = 0; pair && k < ORPHAN_INFLIGHT; k++) {
		uint64_t v = pair;
		if (atomic_compare_exchange_strong(&s->inflight[k], &v, 0))
			return;
	}
}

void orphan_parent(struct orphan_slot *s)
{
	if (s->child_sock < 0)
		return;
	fdguard_close(s->child_sock);
	s->child_sock = -1;
	/*
	 * A fork that succeeded returned only after the handler read its
	 * event, inside a read (fdguard_arrival_begin() to _end()) that
	 * takes the pair before it ends: so the pair is gone, or a read is
	 * under way.  With neither, the fork failed (or the engine stopped
	 * reading): no one will take the pair, and the next fork must not
	 * meet it.
	 */
	for (;;) {
		if (atomic_load(&s->sock) < 0)
			return;
		if (!fdguard_reading())
			break;
		sched_yield();
	}
	int sock = atomic_exchange(&s->sock, -1);
	if (sock >= 0)
		pair_close(pack(sock, s->memfd));
}

/* ---- the child's side ---------------------------------------------------------------- */

#define WATCH_MAX 8

struct watch {
	int sock, memfd, uffd;
	uint64_t features;
};

static struct watch watches[WATCH_MAX];
static unsigned int nwatch;
static pthread_mutex_t fork_lock = PTHREAD_MUTEX_INITIALIZER;
static struct orphan_counters counters;

const struct orphan_counters *orphan_counters(void)
{
	return &counters;
}

unsigned int orphan_watching(void)
{
	pthread_mutex_lock(&fork_lock);
	unsigned int n = nwatch;
	pthread_mutex_unlock(&fork_lock);
	return n;
}

void orphan_fork_lock(void)
{
	pthread_mutex_lock(&fork_lock);
}

void orphan_fork_unlock(void)
{
	pthread_mutex_unlock(&fork_lock);
}

void orphan_forked(void)
{
	/* the watcher thread stayed behind; what it held is its process's */
	for (unsigned int i = 0; i < nwatch; i++) {
		fdguard_close(watches[i].sock);
		fdguard_close(watches[i].memfd);
		fdguard_close(watches[i].uffd);
	}
	nwatch = 0;
	pthread_mutex_init(&fork_lock, NULL);
}

static int recv_fd(int sock)
{
	char byte;
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int))];
	} c;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = c.b, .msg_controllen = sizeof(c.b) };
	ssize_t n;
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	struct cmsghdr *h = n > 0 ? CMSG_FIRSTHDR(&mh) : NULL;
	if (!h || h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS ||
	    h->cmsg_len != CMSG_LEN(sizeof(int)))
		return -1;
	int fd;
	memcpy(&fd, CMSG_DATA(h), sizeof(int));
	return fd;
}

void orphan_child(struct orphan_slot *s, uint64_t features)
{
	/* other children's pairs, taken but not yet in their logs */
	for (unsigned int k = 0; k < ORPHAN_INFLIGHT; k++)
		pair_close(atomic_exchange(&s->inflight[k], 0));
	int sock = atomic_exchange(&s->sock, -1);
	int child = s->child_sock, memfd = s->memfd;
	s->child_sock = s->memfd = -1;
	if (sock < 0) /* no pair made for this fork */
		return;
	fdguard_close(sock);
	/* The parent's handler read this fork's event before the child ran,
	 * and sends the descriptor right after: a wait of microseconds, or
	 * the end of the socket when it could not. */
	int ufd = recv_fd(child);
	if (ufd < 0 || nwatch == WATCH_MAX) {
		if (ufd >= 0)
			close(ufd);
		fdguard_close(child);
		fdguard_close(memfd);
		return;
	}
	watches[nwatch++] = (struct watch){ child, memfd, fdguard_adopt(ufd), features };
	atomic_fetch_add(&counters.watched, 1);
}

/* ---- what the child is owed: sorted, disjoint ranges ---- */

struct owed {
	struct region_interval *r;
	size_t n, cap;
};

static size_t lower(const struct owed *o, uint64_t a)
{
	return region_lower(o->r, o->n, a);
}

static void push(struct owed *o, uint64_t s, uint64_t e)
{
	if (o && o->n < o->cap)
		o->r[o->n++] = (struct region_interval){ s, e };
}

/* Take [s, e) out of @o; a split with no room leaves it all owed: a
 * poison too many, never one too few. */
static void cut(struct owed *o, uint64_t s, uint64_t e)
{
	region_cut(o->r, &o->n, o->cap, s, e, true);
}

/* mremap: what was owed at [from, from + len) is owed at @to now. */
static void move(struct owed *o, struct owed *scratch, uint64_t from, uint64_t to, uint64_t len)
{
	scratch->n = 0;
	for (size_t i = lower(o, from); i < o->n && o->r[i].start < from + len; i++)
		push(scratch, (o->r[i].start > from ? o->r[i].start : from) - from + to,
		     (o->r[i].end < from + len ? o->r[i].end : from + len) - from + to);
	cut(o, from, from + len);
	cut(o, to, to + len);
	if (!scratch->n)
		return;
	/* the parts are sorted, and [to, to + len) is free now: in as one block */
	size_t k = scratch->n;
	if (o->n + k > o->cap)
		k = o->cap - o->n;
	size_t i = lower(o, scratch->r[0].start);
	memmove(&o->r[i + k], &o->r[i], (o->n - i) * sizeof(o->r[0]));
	memcpy(&o->r[i], scratch->r, k * sizeof(o->r[0]));
	o->n += k;
}

static void apply(struct owed *o, struct owed *scratch, const struct orphan_rec *r)
{
	switch (r->kind) {
	case REC_RESET:
		o->n = 0;
		break;
	case REC_RANGE: /* a snapshot's, ascending after its RESET */
		if (!o->n || o->r[o->n - 1].end <= r->a)
			push(o, r->a, r->b);
		break;
	case REC_DROP:
		cut(o, r->a, r->b);
		break;
	case REC_MOVE:
		move(o, scratch, r->a, r->b, r->c);
		break;
	default:
		break;
	}
}

static void *map_ranges(size_t n)
{
	void *p = mmap(NULL, n * sizeof(struct region_interval), PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

/* Replay the log into @o (and its @scratch); -ENODATA when there is none. */
static int replay(int memfd, struct owed *o, struct owed *scratch)
{
	uint64_t h[3];
	if (pread(memfd, h, sizeof(h), 0) != (ssize_t)sizeof(h) || h[0] != MAGIC ||
	    h[1] < FIRST_REC || h[2] < h[1] || (h[2] - h[1]) % sizeof(struct orphan_rec))
		return -ENODATA;
	size_t nrec = (h[2] - h[1]) / sizeof(struct orphan_rec);
	/* each record adds two ranges at most (a move splits both its ends) */
	o->cap = scratch->cap = 2 * nrec + REPLAY_SPARE;
	o->r = map_ranges(o->cap);
	scratch->r = map_ranges(scratch->cap);
	if (!o->r || !scratch->r)
		return -ENOMEM;
	struct orphan_rec buf[128];
	for (uint64_t off = h[1]; off < h[2];) {
		size_t want = h[2] - off < sizeof(buf) ? h[2] - off : sizeof(buf);
		ssize_t got = pread(memfd, buf, want, (off_t)off);
		if (got <= 0 || got % (ssize_t)sizeof(buf[0]))
			return -EIO;
		for (size_t i = 0; i < (size_t)got / sizeof(buf[0]); i++)
			apply(o, scratch, &buf[i]);
		off += (uint64_t)got;
	}
	return 0;
}

/* What the child's mm sent since the parent stopped reading. */
static void drain(struct uffd *u, struct owed *o, struct owed *scratch)
{
	struct uffd_msg m[16];
	for (;;) {
		ssize_t n = read(u->fd, m, sizeof(m));
		if (n <= 0)
			return;
		for (size_t i = 0; i < (size_t)n / sizeof(m[0]); i++) {
			struct orphan_rec r = { 0 };
			switch (m[i].event) {
			case UFFD_EVENT_REMOVE:
			case UFFD_EVENT_UNMAP:
				r = (struct orphan_rec){ REC_DROP, m[i].arg.remove.start,
							 m[i].arg.remove.end, 0 };
				break;
			case UFFD_EVENT_REMAP:
				r = (struct orphan_rec){ REC_MOVE, m[i].arg.remap.from,
							 m[i].arg.remap.to, m[i].arg.remap.len };
				break;
			case UFFD_EVENT_FORK:
				/* a child of this child: no one serves it now; its
				 * copy of these pages reads as its parent's does not */
				close((int)m[i].arg.fork.ufd);
				break;
			default: /* a fault: woken by the poison or the close */
				break;
			}
			if (o && r.kind)
				apply(o, scratch, &r);
		}
	}
}

/* Poison what is owed and missing; @return the pages poisoned. */
static size_t poison(struct uffd *u, struct owed *o, struct owed *scratch)
{
	size_t done = 0;
	for (size_t i = 0; i < o->n; i++) {
		uint64_t a = o->r[i].start;
		unsigned int again = 0;
		while (a < o->r[i].end) {
			size_t put = 0;
			int err = uffd_poison_partial(u, a, o->r[i].end - a, &put);
			done += put / PAGE;
			a += put;
			if (!err)
				break;
			if (err == -EAGAIN && ++again < 1000) {
				/* an event waits: it may change what is owed */
				uint64_t at = a;
				drain(u, o, scratch);
				i = lower(o, at);
				if (i == o->n)
					return done;
				a = o->r[i].start > at ? o->r[i].start : at;
				continue;
			}
			a += PAGE; /* present (-EEXIST), or gone: the next one */
		}
	}
	return done;
}

static void rescue(struct watch *w)
{
	struct uffd u;
	uffd_from_fd(w->uffd, w->features, &u);
	struct owed o = { 0 }, scratch = { 0 };
	int err = replay(w->memfd, &o, &scratch);
	drain(&u, err ? NULL : &o, &scratch);
	size_t owed = 0;
	for (size_t i = 0; !err && i < o.n; i++)
		owed += (o.r[i].end - o.r[i].start) / PAGE;
	if (err == -ENODATA) {
		log_error("the parent process ended before it recorded the pages it kept for this "
			  "one: pages it had stored may read as zeros");
	} else if (err) {
		log_error("the parent process ended, and its record of the pages it kept for this "
			  "one cannot be read: pages it had stored may read as zeros");
	} else if (owed && !uffd_has(&u, UFFD_FEATURE_POISON)) {
		log_error("the parent process ended without handing over up to %zu stored pages "
			  "(killed?): they read as zeros (this kernel has no UFFDIO_POISON)",
			  owed);
	} else if (owed) {
		size_t lost = poison(&u, &o, &scratch);
		atomic_fetch_add(&counters.poisoned, lost);
		if (lost)
			log_error("the parent process ended without handing over %zu stored pages "
				  "(killed?): touching one raises SIGBUS", lost);
	}
	atomic_fetch_add(&counters.rescued, 1);
	if (o.r)
		munmap(o.r, o.cap * sizeof(struct region_interval));
	if (scratch.r)
		munmap(scratch.r, scratch.cap * sizeof(struct region_interval));
}

static void *watcher(void *arg)
{
	(void)arg;
	for (;;) {
		struct pollfd p[WATCH_MAX];
		pthread_mutex_lock(&fork_lock);
		unsigned int n = nwatch;
		for (unsigned int i = 0; i < n; i++)
			p[i] = (struct pollfd){ .fd = watches[i].sock, .events = POLLIN };
		pthread_mutex_unlock(&fork_lock);
		if (!n)
			return NULL;
		if (poll(p, n, -1) < 0)
			continue;
		for (unsigned int i = n; i-- > 0;) {
			if (!p[i].revents)
				continue;
			char b;
			ssize_t r = recv(p[i].fd, &b, 1, MSG_DONTWAIT);
			if (r > 0)
				continue; /* nothing else is sent; read and ignored */
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			/* the end: the parent let go of this process, or died */
			rescue(&watches[i]);
			pthread_mutex_lock(&fork_lock);
			struct watch w = watches[i];
			watches[i] = watches[--nwatch];
			/* closed under the lock: a fork copies them open and
			 * listed, or closed and not listed */
			fdguard_close(w.uffd);
			fdguard_close(w.sock);
			fdguard_close(w.memfd);
			pthread_mutex_unlock(&fork_lock);
		}
	}
}

void orphan_child_done(void)
{
	if (!nwatch)
		return;
	pthread_t t;
	void *stack;
	if (pagesrc_thread_create(&t, watcher, NULL, &stack)) {
		/* with no one to take over, the descriptors would keep the
		 * child's faults waiting after the parent's death: let go */
		log_warn("no thread to watch the parent: a forked child's stored pages read as "
			 "zeros if the parent is killed");
		orphan_forked();
		return;
	}
	pthread_detach(t);
}

/* ---- the parent's log ---------------------------------------------------------------- */

/* A header word: one write, which a death does not split.  A failed one
 * leaves the header as it was, which the child replays. */
static void put_word(struct orphan_log *l, off_t at, uint64_t v)
{
	(void)!pwrite(l->memfd, &v, sizeof(v), at);
}

static void write_out(struct orphan_log *l)
{
	if (!l->n)
		return;
	size_t len = l->n * sizeof(l->buf[0]);
	ssize_t w = pwrite(l->memfd, l->buf, len, (off_t)l->end);
	l->since += l->n;
	l->n = 0;
	if (w != (ssize_t)len)
		return; /* not committed: the child replays what was */
	l->end += len;
	put_word(l, HDR_END, l->end);
}

static void append(struct orphan_log *l, uint64_t kind, uint64_t a, uint64_t b, uint64_t c)
{
	if (l->sock < 0)
		return;
	l->buf[l->n++] = (struct orphan_rec){ kind, a, b, c };
	if (l->n == ORPHAN_LOG_BUF)
		write_out(l);
}

struct snap_walk {
	struct orphan_log *l;
	uint64_t s, e;
};

static int snap_fn(struct index_entry *e, uintptr_t addr, void *arg)
{
	(void)e;
	struct snap_walk *w = arg;
	if (w->e == addr) {
		w->e += PAGE;
		return 0;
	}
	if (w->e > w->s) {
		append(w->l, REC_RANGE, w->s, w->e, 0);
		w->l->snap++;
	}
	w->s = addr;
	w->e = addr + PAGE;
	return 0;
}

/* A RESET and what @view owes, made the start once written. */
static void snapshot(struct orphan_log *l, struct index *view)
{
	write_out(l);
	uint64_t at = l->end;
	l->snap = 0;
	append(l, REC_RESET, 0, 0, 0);
	struct snap_walk w = { l, 0, 0 };
	if (view)
		index_walk(view, 0, INDEX_ADDR_LIMIT, snap_fn, &w);
	if (w.e > w.s) {
		append(l, REC_RANGE, w.s, w.e, 0);
		l->snap++;
	}
	write_out(l);
	l->since = 0;
	if (l->end == at) /* nothing went in */
		return;
	put_word(l, HDR_START, at);
	l->start = at;
	uint64_t hole = at & ~(PAGE - 1); /* what is before the new start */
	if (hole > FIRST_REC)
		fallocate(l->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, FIRST_REC,
			  (off_t)(hole - FIRST_REC));
}

void orphan_log_open(struct orphan_log *l, uint64_t pair, struct index *view)
{
	memset(l, 0, sizeof(*l));
	l->sock = pair_sock(pair);
	l->memfd = pair_memfd(pair);
	if (!pair) {
		l->sock = l->memfd = -1;
		return;
	}
	uint64_t h[3] = { MAGIC, FIRST_REC, FIRST_REC };
	l->start = l->end = FIRST_REC;
	if (pwrite(l->memfd, h, sizeof(h), 0) != (ssize_t)sizeof(h))
		return; /* no header: the child says it cannot tell */
	snapshot(l, view);
}

void orphan_log_drop(struct orphan_log *l, uintptr_t start, uintptr_t end)
{
	append(l, REC_DROP, start, end, 0);
}

void orphan_log_move(struct orphan_log *l, uintptr_t from, uintptr_t to, size_t len)
{
	append(l, REC_MOVE, from, to, len);
}

void orphan_log_flush(struct orphan_log *l, struct index *view)
{
	if (l->sock < 0)
		return;
	write_out(l);
	if (l->since > l->snap + 4 * ORPHAN_LOG_BUF)
		snapshot(l, view);
}

void orphan_log_close(struct orphan_log *l, struct index *view)
{
	if (l->sock < 0)
		return;
	if (view)
		snapshot(l, view);
	else
		write_out(l);
	pair_close(pack(l->sock, l->memfd));
	l->sock = l->memfd = -1;
}

void orphan_log_forget(struct orphan_log *l)
{
	if (l->sock < 0)
		return;
	pair_close(pack(l->sock, l->memfd));
	l->sock = l->memfd = -1;
}

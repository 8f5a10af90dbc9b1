/*
 * maps — see maps.h.  The format is proc(5)'s:
 *
 *   start-end perms offset dev inode   [path]
 *   Size:   1024 kB                    (smaps only: key lines ...)
 *   VmFlags: rd wr mr mw me ac sd      (... the last one of each VMA)
 *
 * A VMA from smaps is returned once its VmFlags line is read, or when the
 * next header line (or the end) shows there is none.
 */
#include "core/maps.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "core/fdguard.h"

/* ---- the /proc/self files kept open (see maps_preopen()) ---- */

static struct {
	const char *path;
	_Atomic int fd;
} kept[] = {
	{ "/proc/self/statm", -1 },
	{ "/proc/self/status", -1 },
	{ "/proc/self/maps", -1 },
	{ "/proc/self/smaps", -1 },
};
#define NKEPT (sizeof(kept) / sizeof(kept[0]))

static int kept_fd(const char *path)
{
	for (size_t i = 0; i < NKEPT; i++)
		if (!strcmp(path, kept[i].path))
			return atomic_load_explicit(&kept[i].fd, memory_order_acquire);
	return -1;
}

static int open_kept(void)
{
	int err = 0;
	for (size_t i = 0; i < NKEPT; i++) {
		if (atomic_load(&kept[i].fd) >= 0)
			continue;
		int fd = fdguard_adopt(open(kept[i].path, O_RDONLY | O_CLOEXEC));
		if (fd < 0 && !err)
			err = -errno;
		atomic_store_explicit(&kept[i].fd, fd, memory_order_release);
	}
	return err;
}

/* In a forked child, alone: the kept files are the parent's /proc/PID. */
static void reopen_in_child(void)
{
	for (size_t i = 0; i < NKEPT; i++)
		fdguard_close(atomic_exchange(&kept[i].fd, -1));
	open_kept();
}

static void watch_forks(void)
{
	pthread_atfork(NULL, NULL, reopen_in_child);
}

int maps_preopen(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, watch_forks);
	return open_kept();
}

int maps_open(struct maps_reader *r, const char *path, char *buf, size_t cap)
{
	if (cap < 256)
		return -EINVAL;
	memset(r, 0, sizeof(*r));
	r->fd = kept_fd(path);
	r->kept = r->fd >= 0;
	if (!r->kept)
		r->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (r->fd < 0)
		return -errno;
	r->buf = buf;
	r->cap = cap;
	return 0;
}

void maps_close(struct maps_reader *r)
{
	if (r->fd >= 0 && !r->kept)
		close(r->fd);
	r->fd = -1;
}

/* Refill after the consumed part; 0, or -errno. */
static int fill(struct maps_reader *r)
{
	memmove(r->buf, r->buf + r->pos, r->len - r->pos);
	r->len -= r->pos;
	r->pos = 0;
	while (r->len < r->cap) {
		ssize_t n = pread(r->fd, r->buf + r->len, r->cap - r->len, r->off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n > 0)
			r->off += n;
		if (n < 0)
			return -errno;
		if (n == 0) {
			r->eof = true;
			break;
		}
		r->len += n;
		/* procfs hands out whole lines per read: one is enough */
		break;
	}
	return 0;
}

/*
 * The next line, without its newline, NUL-terminated in place in the
 * buffer (valid until the next call).  @return 0 and the line; 1 at the
 * end; -errno on a read error.
 */
static int next_line(struct maps_reader *r, char **line, size_t *len)
{
	for (;;) {
		char *s = r->buf + r->pos;
		size_t avail = r->len - r->pos;
		char *nl = memchr(s, '\n', avail);
		if (nl) {
			*nl = '\0';
			r->pos = nl + 1 - r->buf;
			if (r->skipping) { /* the end of an over-long line */
				r->skipping = false;
				continue;
			}
			*line = s;
			*len = nl - s;
			return 0;
		}
		if (r->skipping) {
			r->pos = r->len; /* more of the over-long line: drop it */
		} else if (r->eof) {
			if (!avail)
				return 1;
			/* a last line without a newline: make room for the NUL */
			memmove(r->buf, s, avail);
			r->pos = 0;
			r->len = avail < r->cap ? avail : r->cap - 1;
			r->buf[r->len] = '\0';
			*line = r->buf;
			*len = r->len;
			r->pos = r->len;
			return 0;
		} else if (r->pos == 0 && r->len == r->cap) {
			/* longer than the buffer: hand out its head, skip the rest */
			r->buf[r->cap - 1] = '\0';
			*line = r->buf;
			*len = r->cap - 1;
			r->pos = r->len;
			r->skipping = true;
			return 0;
		}
		if (r->eof)
			return 1;
		int err = fill(r);
		if (err)
			return err;
	}
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Hex digits at *p into *v; false when there are none. */
static bool parse_hex(const char **p, uintptr_t *v)
{
	uintptr_t x = 0;
	const char *s = *p;
	int d;
	while ((d = hexval(*s)) >= 0)
		x = x << 4 | (uintptr_t)d, s++;
	if (s == *p)
		return false;
	*p = s;
	*v = x;
	return true;
}

/* Skip one blank-separated field and the blanks after it. */
static const char *skip_field(const char *p)
{
	while (*p && *p != ' ')
		p++;
	while (*p == ' ')
		p++;
	return p;
}

static enum maps_kind kind_of(const char *path, bool has_inode)
{
	if (!*path)
		return has_inode ? MAPS_FILE : MAPS_ANON;
	if (path[0] != '[')
		return MAPS_FILE;
	if (!strcmp(path, "[heap]"))
		return MAPS_HEAP;
	if (!strncmp(path, "[stack", 6))
		return MAPS_STACK;
	if (!strncmp(path, "[anon:", 6))
		return MAPS_ANON;
	return MAPS_SPECIAL;
}

/* A header line into *v; false when the line is not one. */
static bool parse_header(const char *line, struct maps_vma *v)
{
	const char *p = line;
	uintptr_t start, end, inode = 0;
	if (!parse_hex(&p, &start) || *p++ != '-' || !parse_hex(&p, &end) || *p++ != ' ')
		return false;
	if (strlen(p) < 4 || p[4] != ' ')
		return false;
	memset(v, 0, sizeof(*v));
	v->start = start;
	v->end = end;
	v->read = p[0] == 'r';
	v->write = p[1] == 'w';
	v->exec = p[2] == 'x';
	v->shared = p[3] == 's';
	p = skip_field(p);     /* perms */
	p = skip_field(p);     /* offset */
	p = skip_field(p);     /* dev */
	while (*p >= '0' && *p <= '9')
		inode = inode * 10 + (uintptr_t)(*p++ - '0');
	while (*p == ' ')
		p++;
	v->kind = kind_of(p, inode != 0);
	return true;
}

static unsigned int parse_vmflags(const char *p)
{
	static const struct {
		char code[3];
		unsigned int flag;
	} codes[] = {
		{ "lo", MAPS_VM_LOCKED },     { "dd", MAPS_VM_DONTDUMP },
		{ "um", MAPS_VM_UFFD },       { "uw", MAPS_VM_UFFD },
		{ "ht", MAPS_VM_HUGETLB },    { "io", MAPS_VM_IO },
		{ "pf", MAPS_VM_IO },         { "dc", MAPS_VM_DONTCOPY },
		{ "wf", MAPS_VM_WIPEONFORK }, { "sl", MAPS_VM_SEALED },
		{ "ss", MAPS_VM_SHADOW_STACK }, { "gd", MAPS_VM_GROWSDOWN },
	};
	unsigned int flags = 0;
	for (;;) {
		while (*p == ' ')
			p++;
		if (!p[0] || !p[1])
			break;
		for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
			if (p[0] == codes[i].code[0] && p[1] == codes[i].code[1] &&
			    (p[2] == ' ' || p[2] == '\0'))
				flags |= codes[i].flag;
		p = skip_field(p);
	}
	return flags;
}

int maps_next(struct maps_reader *r, struct maps_vma *v)
{
	for (;;) {
		char *line;
		size_t len;
		int got = next_line(r, &line, &len);
		if (got < 0)
			return got;
		if (got > 0) { /* the end */
			if (!r->have_pending)
				return 0;
			*v = r->pending;
			r->have_pending = false;
			return 1;
		}
		struct maps_vma h;
		if (parse_header(line, &h)) {
			bool had = r->have_pending;
			struct maps_vma prev = r->pending;
			r->pending = h;
			r->have_pending = true;
			if (had) { /* the previous one had no VmFlags line */
				*v = prev;
				return 1;
			}
			continue;
		}
		if (r->have_pending && !strncmp(line, "VmFlags:", 8)) {
			r->pending.flags = parse_vmflags(line + 8);
			r->pending.has_flags = true;
			*v = r->pending;
			r->have_pending = false;
			return 1;
		}
	}
}

bool maps_candidate(const struct maps_vma *v)
{
	return (v->kind == MAPS_ANON || v->kind == MAPS_HEAP) && v->read && v->write &&
	       !v->shared && v->end > v->start;
}

size_t maps_read_small(const char *path, char *buf, size_t len)
{
	int fd = kept_fd(path);
	bool own = fd < 0;
	if (own && (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	ssize_t n = pread(fd, buf, len - 1, 0);
	if (own)
		close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	return (size_t)n;
}

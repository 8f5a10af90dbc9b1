/*
 * uffd — see uffd.h.  Thin wrappers: every ioctl returns 0 or -errno and
 * never leaves errno to the caller.  The injection table is the only
 * shared state (atomics).
 */
#include "core/uffd.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <dirent.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/fdguard.h"
#include "core/inject.h"
#include "core/log.h"

static struct inject_point inject[UFFD_OP_NR];

void uffd_inject_fail(enum uffd_op op, int err, unsigned int nth)
{
	inject_arm(&inject[op], err, nth);
}

/* The injected error for this call of @op, or 0. */
static int injected(enum uffd_op op)
{
	return inject_take(&inject[op]);
}

static int open_fd(void)
{
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		int fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		int err = errno;
		close(dev);
		if (fd >= 0)
			return fd;
		errno = err;
	}
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	return fd >= 0 ? fd : -errno;
}

/* A fresh descriptor with @features enabled (@api filled), or -errno. */
static int enable(uint64_t features, struct uffdio_api *api)
{
	int fd = open_fd();
	if (fd < 0)
		return fd;
	*api = (struct uffdio_api){ .api = UFFD_API, .features = features };
	if (ioctl(fd, UFFDIO_API, api) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

int uffd_open(uint64_t want, struct uffd *out)
{
	int err = injected(UFFD_OP_OPEN);
	if (err)
		return err;
	int fd = open_fd();
	if (fd < 0)
		return fd;
	/*
	 * UFFDIO_API may only succeed once per descriptor and fails as a whole
	 * when a requested feature is missing: ask with features 0 on a
	 * scratch descriptor first to learn what the kernel has.
	 */
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	close(fd);
	uint64_t grant = api.features & want;
	if ((grant & UFFD_NEED_FEATURES) != UFFD_NEED_FEATURES)
		return -EOPNOTSUPP;
	fd = enable(grant, &api);
	/*
	 * Fork events need CAP_SYS_PTRACE, which a user given access to
	 * /dev/userfaultfd lacks: without them a fork brings every stored
	 * page back first (engine.h), better than no engine at all.
	 */
	if (fd == -EPERM && (grant & UFFD_FEATURE_EVENT_FORK)) {
		grant &= ~(uint64_t)UFFD_FEATURE_EVENT_FORK;
		fd = enable(grant, &api);
		if (fd >= 0)
			log_info("no fork events without CAP_SYS_PTRACE: a fork brings every "
				 "stored page back first");
	}
	if (fd < 0)
		return fd;
	out->fd = fdguard_adopt(fd);
	/* the kernel reports every feature it has, not the ones enabled */
	out->features = grant;
	out->ioctls = api.ioctls;
	return 0;
}

void uffd_from_fd(int fd, uint64_t features, struct uffd *out)
{
	out->fd = fdguard_adopt(fd);
	out->features = features;
	out->ioctls = 0;
}

void uffd_close(struct uffd *u)
{
	fdguard_close(u->fd);
	u->fd = -1;
}

/* "/proc/self/<dir>/<fd>" into @b */
static void proc_fd_path(char *b, const char *dir, int fd)
{
	char d[16];
	int n = 0;
	do
		d[n++] = (char)('0' + fd % 10);
	while ((fd /= 10) && n < (int)sizeof(d));
	size_t l = strlen(dir);
	memcpy(b, "/proc/self/", 11);
	memcpy(b + 11, dir, l);
	b[11 + l] = '/';
	char *p = b + 12 + l;
	while (n)
		*p++ = d[--n];
	*p = 0;
}

/* @fd's "API:" line from fdinfo into @line (NUL-ended); false if none */
static bool api_line(int fd, char *line, size_t cap)
{
	char path[64], buf[512];
	proc_fd_path(path, "fdinfo", fd);
	int f = open(path, O_RDONLY | O_CLOEXEC);
	if (f < 0)
		return false;
	ssize_t n = read(f, buf, sizeof(buf) - 1);
	close(f);
	if (n <= 0)
		return false;
	buf[n] = 0;
	char *a = strstr(buf, "\nAPI:");
	if (!a)
		return false;
	a++;
	size_t l = strcspn(a, "\n");
	if (l >= cap)
		return false;
	memcpy(line, a, l);
	line[l] = 0;
	return true;
}

int uffd_close_strays(const struct uffd *own)
{
	char ref[128], line[128];
	if (own->fd < 0 || !api_line(own->fd, ref, sizeof(ref)))
		return 0;
	int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0)
		return 0;
	static const char uffd_link[] = "anon_inode:[userfaultfd]";
	int closed = 0;
	char ents[2048];
	long n;
	/* closing while listing: the directory is the table, read as it is
	 * now, and only entries not yet read could shift */
	while ((n = syscall(SYS_getdents64, dir, ents, sizeof(ents))) > 0) {
		for (long off = 0; off < n;) {
			struct dirent64 *d = (struct dirent64 *)(ents + off);
			off += d->d_reclen;
			if (d->d_name[0] < '0' || d->d_name[0] > '9')
				continue;
			int fd = 0;
			for (const char *c = d->d_name; *c; c++)
				fd = fd * 10 + (*c - '0');
			if (fd == dir || fd == own->fd)
				continue;
			char link[sizeof(uffd_link)];
			ssize_t l = readlinkat(dir, d->d_name, link, sizeof(link));
			if (l != (ssize_t)sizeof(uffd_link) - 1 ||
			    memcmp(link, uffd_link, sizeof(uffd_link) - 1))
				continue;
			if (api_line(fd, line, sizeof(line)) && !strcmp(line, ref)) {
				fdguard_close(fd); /* a stray adopted: unmarked too */
				closed++;
			}
		}
	}
	close(dir);
	return closed;
}

static int do_ioctl(int fd, unsigned long req, void *arg)
{
	return ioctl(fd, req, arg) < 0 ? -errno : 0;
}

int uffd_poison_partial(struct uffd *u, uintptr_t dst, size_t len, size_t *done)
{
	*done = 0;
	if (!uffd_has(u, UFFD_FEATURE_POISON))
		return -EOPNOTSUPP;
	struct uffdio_poison p = { .range = { .start = dst, .len = len } };
	int err = do_ioctl(u->fd, UFFDIO_POISON, &p);
	if (p.updated > 0)
		*done = (size_t)p.updated;
	return err;
}

int uffd_poison(struct uffd *u, uintptr_t dst, size_t len)
{
	size_t done;
	return uffd_poison_partial(u, dst, len, &done);
}

int uffd_register(struct uffd *u, uintptr_t start, size_t len, bool wp)
{
	int err = injected(UFFD_OP_REGISTER);
	if (err)
		return err;
	struct uffdio_register r = {
		.range = { .start = start, .len = len },
		.mode = UFFDIO_REGISTER_MODE_MISSING | (wp ? UFFDIO_REGISTER_MODE_WP : 0),
	};
	return do_ioctl(u->fd, UFFDIO_REGISTER, &r);
}

int uffd_unregister(struct uffd *u, uintptr_t start, size_t len)
{
	struct uffdio_range r = { .start = start, .len = len };
	return do_ioctl(u->fd, UFFDIO_UNREGISTER, &r);
}

int uffd_copy_partial(struct uffd *u, uintptr_t dst, const void *src, size_t len,
		      bool dontwake, size_t *copied)
{
	*copied = 0;
	int err = injected(UFFD_OP_COPY);
	if (err)
		return err;
	struct uffdio_copy c = {
		.dst = dst, .src = (uintptr_t)src, .len = len,
		.mode = dontwake ? UFFDIO_COPY_MODE_DONTWAKE : 0,
	};
	err = do_ioctl(u->fd, UFFDIO_COPY, &c);
	if (c.copy > 0)
		*copied = (size_t)c.copy;
	return err;
}

int uffd_copy(struct uffd *u, uintptr_t dst, const void *src, size_t len,
	      bool dontwake)
{
	size_t copied;
	return uffd_copy_partial(u, dst, src, len, dontwake, &copied);
}

int uffd_zeropage(struct uffd *u, uintptr_t dst, size_t len, bool dontwake)
{
	int err = injected(UFFD_OP_ZEROPAGE);
	if (err)
		return err;
	struct uffdio_zeropage z = {
		.range = { .start = dst, .len = len },
		.mode = dontwake ? UFFDIO_ZEROPAGE_MODE_DONTWAKE : 0,
	};
	return do_ioctl(u->fd, UFFDIO_ZEROPAGE, &z);
}

int uffd_wake(struct uffd *u, uintptr_t start, size_t len)
{
	struct uffdio_range r = { .start = start, .len = len };
	return do_ioctl(u->fd, UFFDIO_WAKE, &r);
}

bool uffd_pending(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, 0) > 0;
}

int uffd_move(struct uffd *u, uintptr_t dst, uintptr_t src, size_t len,
	      bool allow_holes, size_t *moved)
{
	*moved = 0;
	int err = injected(UFFD_OP_MOVE);
	if (err)
		return err;
	struct uffdio_move m = {
		.dst = dst, .src = src, .len = len,
		.mode = UFFDIO_MOVE_MODE_DONTWAKE |
			(allow_holes ? UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES : 0),
	};
	err = do_ioctl(u->fd, UFFDIO_MOVE, &m);
	if (m.move > 0)
		*moved = (size_t)m.move;
	return err;
}

int uffd_writeprotect(struct uffd *u, uintptr_t start, size_t len,
		      bool protect, bool dontwake)
{
	int err = injected(UFFD_OP_WRITEPROTECT);
	if (err)
		return err;
	struct uffdio_writeprotect w = {
		.range = { .start = start, .len = len },
		.mode = (protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0) |
			(dontwake ? UFFDIO_WRITEPROTECT_MODE_DONTWAKE : 0),
	};
	return do_ioctl(u->fd, UFFDIO_WRITEPROTECT, &w);
}

/*
 * uffd — the userfaultfd kernel interface: open, feature probing,
 * registration, and the resolving ioctls, each returning 0 or -errno.
 *
 * Nothing here decides policy; core/engine.c runs the fault handler thread
 * on top of it.  Opening prefers /dev/userfaultfd + USERFAULTFD_IOC_NEW
 * (6.1+, works for any user with access to the device) and falls back to
 * the userfaultfd(2) syscall.  A descriptor that would only see user-mode
 * faults (unprivileged, no device access) is refused: with it a read(2)
 * into a dropped page fails with EFAULT instead of waiting (BRIEF §2).
 *
 * For tests, uffd_inject_fail() makes the next matching call fail.
 */
#ifndef ZSWAPU_UFFD_H
#define ZSWAPU_UFFD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/uffd_compat.h"

struct uffd {
	int fd;
	uint64_t features; /* what UFFDIO_API granted */
	uint64_t ioctls;   /* ioctls UFFDIO_API reports */
};

/* What the engine asks for; uffd_open() keeps what the kernel has. */
#define UFFD_WANT_FEATURES                                                    \
	(UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP |                 \
	 UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP |               \
	 UFFD_FEATURE_THREAD_ID | UFFD_FEATURE_PAGEFAULT_FLAG_WP |            \
	 UFFD_FEATURE_MOVE | UFFD_FEATURE_POISON)

/* Features without which the engine cannot keep data correct. */
#define UFFD_NEED_FEATURES                                                    \
	(UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_REMOVE |               \
	 UFFD_FEATURE_EVENT_UNMAP)

enum uffd_op {
	UFFD_OP_OPEN,
	UFFD_OP_REGISTER,
	UFFD_OP_COPY,
	UFFD_OP_ZEROPAGE,
	UFFD_OP_MOVE,
	UFFD_OP_WRITEPROTECT,
	UFFD_OP_NR
};

/*
 * uffd_open() : a non-blocking, close-on-exec userfaultfd with as many of
 * @want features as the kernel grants (UFFD_FEATURE_EVENT_FORK only with
 * CAP_SYS_PTRACE: without, it is left out).  @return 0; -ENOSYS/-EPERM/
 * -EACCES when userfaultfd is unavailable; -EOPNOTSUPP when a feature in
 * UFFD_NEED_FEATURES is missing.
 */
int uffd_open(uint64_t want, struct uffd *out);

/* uffd_from_fd() : wrap a descriptor received in an EVENT_FORK message. */
void uffd_from_fd(int fd, uint64_t features, struct uffd *out);

void uffd_close(struct uffd *u);

/*
 * uffd_close_strays() : in a forked child, after its copy of the children
 * list was closed and before @own (the engine's, open still) is, when
 * fdguard_fork_missed(): close every other userfaultfd whose API line in
 * /proc/self/fdinfo is @own's (its features: a fork event's descriptor has
 * its parent's), the descriptors a read had installed and the handler not
 * yet listed when the table was copied.  A program's own userfaultfd,
 * asked for other features, stays.  Async-signal-safe: raw syscalls, no
 * allocation.  @return the number closed.
 */
int uffd_close_strays(const struct uffd *own);

static inline bool uffd_has(const struct uffd *u, uint64_t feature)
{
	return (u->features & feature) == feature;
}

/* uffd_register() : MISSING faults on [start, start+len), plus WP if @wp. */
int uffd_register(struct uffd *u, uintptr_t start, size_t len, bool wp);
int uffd_unregister(struct uffd *u, uintptr_t start, size_t len);

/*
 * uffd_copy() : atomically fill absent pages at @dst from @src and wake the
 * faulting threads (unless @dontwake).  -EEXIST: a page is already there
 * (someone else resolved it: normal); -EAGAIN: the mm is changing under an
 * event not yet read (retry after reading events); -ENOENT/-ESRCH: the
 * range or process is gone.
 */
int uffd_copy(struct uffd *u, uintptr_t dst, const void *src, size_t len,
	      bool dontwake);
/*
 * uffd_copy_partial() : uffd_copy() that also says how many bytes went in
 * before an error (the kernel stops at the first page already present).
 */
int uffd_copy_partial(struct uffd *u, uintptr_t dst, const void *src, size_t len,
		      bool dontwake, size_t *copied);
int uffd_zeropage(struct uffd *u, uintptr_t dst, size_t len, bool dontwake);
int uffd_wake(struct uffd *u, uintptr_t start, size_t len);
/*
 * uffd_pending() : whether the (O_NONBLOCK) uffd @fd has a message waiting,
 * without sleeping: one poll(), which the spinning handlers call in a loop.
 */
bool uffd_pending(int fd);
/*
 * uffd_poison() : make the missing pages of [dst, dst+len) raise SIGBUS
 * when touched, registered or not, as a swap read error does (6.6+):
 * for a page whose data is lost.  -EOPNOTSUPP without the feature.
 */
int uffd_poison(struct uffd *u, uintptr_t dst, size_t len);
/* uffd_poison_partial() : uffd_poison() that also says how many bytes were
 * poisoned before an error (-EEXIST: at the first page present). */
int uffd_poison_partial(struct uffd *u, uintptr_t dst, size_t len, size_t *done);

/*
 * uffd_move() : move pages from @src to @dst (both registered with @u),
 * leaving @src absent.  Holes in @src are skipped when @allow_holes.
 * *@moved gets the bytes handled even on failure (the kernel stops at the
 * first page it cannot move: -EBUSY for a page shared copy-on-write).
 */
int uffd_move(struct uffd *u, uintptr_t dst, uintptr_t src, size_t len,
	      bool allow_holes, size_t *moved);

int uffd_writeprotect(struct uffd *u, uintptr_t start, size_t len,
		      bool protect, bool dontwake);

/*
 * uffd_inject_fail() : make the @nth next call of @op (1 = the next one)
 * fail with @err, for fail-safe tests.  @err 0 clears.
 */
void uffd_inject_fail(enum uffd_op op, int err, unsigned int nth);

#endif

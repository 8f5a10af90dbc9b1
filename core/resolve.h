/*
 * resolve — putting one missing page into an address space through its
 * userfaultfd: the stored copy (an exclusive load) or zeros.  The handler
 * does this for the program and for the forked children it serves.
 */
#ifndef ZSWAPU_RESOLVE_H
#define ZSWAPU_RESOLVE_H

#include <stdbool.h>
#include <stdint.h>

struct uffd;
struct store;

/*
 * resolve_stored() : load the page stored at @addr into @buf (a page) and
 * copy it in.  @return 0 done (also when the page or the mapping turned
 * out to be there already or gone: the stored copy is dead either way);
 * -ENOENT nothing stored; -EAGAIN an event is pending, retry after
 * reading it (the entry stays); other -errno: the load failed (the entry
 * stays).
 */
int resolve_stored(struct uffd *u, struct store *s, void *buf, uintptr_t addr);

/*
 * resolve_stored_ahead() : resolve_stored() for @addr and, in the same
 * UFFDIO_COPY, up to @ahead following pages that are stored too (stopping
 * at the first that is not), decompressed into @buf, which holds
 * 1 + @ahead pages.  @return as resolve_stored() for @addr; *@extra gets
 * how many pages after it went in.
 */
#define RESOLVE_AHEAD_MAX 15
int resolve_stored_ahead(struct uffd *u, struct store *s, void *buf, uintptr_t addr,
			 unsigned int ahead, unsigned int *extra);

/*
 * resolve_zero() : a page never stored: the zero page for a read, a
 * zeroed writable page for a write (so the write does not fault again).
 * @return 0 (also when already there or gone), -EAGAIN, other -errno.
 */
int resolve_zero(struct uffd *u, const void *zero, uintptr_t addr, bool write);

#endif

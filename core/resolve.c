/*
 * resolve — see resolve.h.
 */
#include "core/resolve.h"

#include <errno.h>

#include "core/store.h"
#include "core/uffd.h"

#define PAGE 4096UL

int resolve_stored(struct uffd *u, struct store *s, void *buf, uintptr_t addr)
{
	struct store_load ld;
	int err = store_load_begin(s, addr, buf, &ld);
	if (err)
		return err;
	err = uffd_copy(u, addr, buf, PAGE, false);
	if (err == -EAGAIN) {
		store_load_end(s, addr, &ld, false);
		return err;
	}
	/*
	 * -EEXIST: a newer page is already there; -ENOENT/-ESRCH: the mapping or
	 * the process is gone.  Either way the stored copy is dead.
	 */
	bool ok = err == 0 || err == -EEXIST || err == -ENOENT || err == -ESRCH;
	store_load_end(s, addr, &ld, ok);
	if (err == -EEXIST)
		uffd_wake(u, addr, PAGE);
	return ok ? 0 : err;
}

int resolve_zero(struct uffd *u, const void *zero, uintptr_t addr, bool write)
{
	int err = write ? uffd_copy(u, addr, zero, PAGE, false) : uffd_zeropage(u, addr, PAGE, false);
	if (err == -EEXIST)
		uffd_wake(u, addr, PAGE);
	return err == -EEXIST || err == -ENOENT || err == -ESRCH ? 0 : err;
}

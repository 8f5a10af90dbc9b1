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

int resolve_stored_ahead(struct uffd *u, struct store *s, void *buf, uintptr_t addr,
			 unsigned int ahead, unsigned int *extra)
{
	*extra = 0;
	if (ahead == 0)
		return resolve_stored(u, s, buf, addr);
	if (ahead > RESOLVE_AHEAD_MAX)
		ahead = RESOLVE_AHEAD_MAX;
	struct store_load ld[1 + RESOLVE_AHEAD_MAX];
	int err = store_load_begin(s, addr, buf, &ld[0]);
	if (err)
		return err;
	unsigned int n = 1;
	while (n <= ahead &&
	       store_load_begin(s, addr + n * PAGE, (uint8_t *)buf + n * PAGE, &ld[n]) == 0)
		n++;
	size_t copied;
	err = uffd_copy_partial(u, addr, buf, n * PAGE, false, &copied);
	/*
	 * The kernel copies a range only within one mapping: one that runs past
	 * the mapping's end gets -ENOENT before anything is copied, and the
	 * window can reach into the next mapping (glibc's heap is several,
	 * registered one by one).  That says nothing of the faulting page: it
	 * goes in alone and the rest stay stored.  Taken for "the mapping is
	 * gone", the page was dropped and its thread never woken
	 * (tests/integration/mallocchurn hung on it).
	 */
	if (err == -ENOENT && copied == 0 && n > 1) {
		while (n > 1) {
			n--;
			store_load_end(s, addr + n * PAGE, &ld[n], false);
		}
		err = uffd_copy_partial(u, addr, buf, PAGE, false, &copied);
	}
	unsigned int in = (unsigned int)(copied / PAGE);
	if (err == -EAGAIN && in == 0) {
		for (unsigned int i = 0; i < n; i++)
			store_load_end(s, addr + i * PAGE, &ld[i], false);
		return err;
	}
	/* as in resolve_stored(): -EEXIST/-ENOENT/-ESRCH leave nothing to keep
	 * for the faulting page; the pages after the ones that went in stay */
	bool ok0 = in > 0 || err == -EEXIST || err == -ENOENT || err == -ESRCH;
	for (unsigned int i = 0; i < n; i++)
		store_load_end(s, addr + i * PAGE, &ld[i], i < in || (i == 0 && ok0));
	if (in == 0 && err == -EEXIST)
		uffd_wake(u, addr, PAGE);
	*extra = in > 1 ? in - 1 : 0;
	return ok0 ? 0 : err;
}

int resolve_zero(struct uffd *u, const void *zero, uintptr_t addr, bool write)
{
	int err = write ? uffd_copy(u, addr, zero, PAGE, false) : uffd_zeropage(u, addr, PAGE, false);
	if (err == -EEXIST)
		uffd_wake(u, addr, PAGE);
	return err == -EEXIST || err == -ENOENT || err == -ESRCH ? 0 : err;
}

/*
 * maps — reads /proc/self/maps and /proc/self/smaps one VMA at a time.
 *
 * Region discovery runs it on an engine thread, which must never take a
 * lock a program thread may hold while it faults, nor touch memory the
 * engine manages (BRIEF trap 2): so no stdio and no malloc here.  The
 * caller hands in the buffer (engine memory, or a stack), the file is read
 * with read(2), and each VMA is parsed in place.  A line longer than the
 * buffer (only a long file name makes one) is parsed from its head and
 * the rest skipped: the fields that matter come first.
 *
 * smaps adds, per VMA, the kernel's VmFlags: the two-letter codes say
 * whether the mapping is mlocked (lo), excluded from core dumps (dd),
 * already registered with userfaultfd (um) and so on.  Reading smaps walks
 * the page tables of every VMA, so discovery reads plain maps first and
 * smaps only when there is something new to look at.
 *
 * Not thread-safe: one reader per thread.
 */
#ifndef ZSWAPU_MAPS_H
#define ZSWAPU_MAPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum maps_kind {
	MAPS_ANON,    /* no file: mmap(MAP_ANONYMOUS), malloc's mmaps, [anon:name] */
	MAPS_HEAP,    /* [heap]: the brk heap */
	MAPS_STACK,   /* [stack]: the main thread's */
	MAPS_SPECIAL, /* [vvar], [vdso], [vsyscall], [anon_shmem:...] ... */
	MAPS_FILE,    /* backed by a file (including /dev/zero, memfd, SysV shm) */
};

/* VmFlags codes (smaps only). */
#define MAPS_VM_LOCKED (1u << 0)      /* lo: mlock()ed */
#define MAPS_VM_DONTDUMP (1u << 1)    /* dd: MADV_DONTDUMP (secrets, often) */
#define MAPS_VM_UFFD (1u << 2)        /* um/uw: registered with a userfaultfd */
#define MAPS_VM_HUGETLB (1u << 3)     /* ht: hugetlbfs */
#define MAPS_VM_IO (1u << 4)          /* io/pf: device or PFN mapping */
#define MAPS_VM_DONTCOPY (1u << 5)    /* dc: MADV_DONTFORK (device DMA buffers, RDMA) */
#define MAPS_VM_WIPEONFORK (1u << 6)  /* wf: MADV_WIPEONFORK (RNG state and such) */
#define MAPS_VM_SEALED (1u << 7)      /* sl: mseal()ed */
#define MAPS_VM_SHADOW_STACK (1u << 8) /* ss: a CET shadow stack */
#define MAPS_VM_GROWSDOWN (1u << 9)   /* gd: a stack that grows down */

/*
 * Flags that keep a mapping resident and out of zswapu (BRIEF trap 6).
 * DONTFORK marks device buffers (RDMA) but also whole heaps (V8's): with
 * the MOVE detach it is managed (discover_manage_dontfork()), as MOVE
 * refuses a page pinned for DMA; WP's zap would leave the device writing
 * to a page the program no longer sees.
 */
#define MAPS_VM_KEEP_RESIDENT                                                           \
	(MAPS_VM_LOCKED | MAPS_VM_DONTDUMP | MAPS_VM_HUGETLB | MAPS_VM_IO |             \
	 MAPS_VM_DONTCOPY | MAPS_VM_WIPEONFORK | MAPS_VM_SEALED | MAPS_VM_SHADOW_STACK | \
	 MAPS_VM_GROWSDOWN)

struct maps_vma {
	uintptr_t start, end;
	bool read, write, exec, shared;
	enum maps_kind kind;
	unsigned int flags;  /* MAPS_VM_*; 0 when read from plain maps */
	bool has_flags;      /* a VmFlags line was seen */
};

struct maps_reader {
	int fd;
	bool kept;  /* one of maps_preopen()'s: never closed */
	off_t off;  /* where the next pread() starts */
	char *buf;
	size_t cap, len, pos;
	bool eof, skipping; /* skipping: the tail of an over-long line */
	struct maps_vma pending;
	bool have_pending;
};

/*
 * maps_open() : read @path (a maps- or smaps-format file; the reader
 * tells them apart line by line) through @buf of @cap bytes (at least 256).
 * @return 0 or -errno.
 */
int maps_open(struct maps_reader *r, const char *path, char *buf, size_t cap);

/*
 * maps_next() : the next VMA into *@v.  @return 1, 0 at the end, -errno
 * on a read error.  Lines that are not a VMA's are skipped.
 */
int maps_next(struct maps_reader *r, struct maps_vma *v);

void maps_close(struct maps_reader *r);

/*
 * maps_candidate() : private, readable and writable anonymous memory or
 * the brk heap: what zswapu may manage, as far as the maps line tells
 * (the VmFlags in MAPS_VM_KEEP_RESIDENT rule out more).
 */
bool maps_candidate(const struct maps_vma *v);

/*
 * maps_read_small() : the start of a small /proc file (stat, statm,
 * status) in one read(2) into @buf, NUL-terminated.  No stdio, no malloc:
 * engine threads call it.  @return the bytes read, or 0 (absent, empty, or
 * a read error).
 */
size_t maps_read_small(const char *path, char *buf, size_t len);

/*
 * maps_preopen() : open /proc/self/{statm,status,maps,smaps} once, for
 * good, above the program's descriptor numbers (core/fdguard.h); from then
 * on maps_open() and maps_read_small() on those paths read them with
 * pread() (procfs makes the text afresh at offset 0) and open nothing.
 * Call it before the program runs on (the engine does, from zswapu_init()).
 *
 * Why: open() takes the lowest free number, and a program may count on a
 * number it just freed staying free.  dash redirects `cmd > file` with
 * close(1) then dup2(f, 1): the reclaimer's statm open took 1 in between,
 * dup2() closed it under us, and our close() then closed the shell's new
 * stdout, so the next child found stdout closed, opened its writeback file
 * as fd 1 and wrote its output into it (tests/tools: sh-redirects).  A
 * forked child reopens them (they name the parent's /proc entries).
 * @return 0 or -errno; on an error the paths are opened per call, as before.
 */
int maps_preopen(void);

#endif

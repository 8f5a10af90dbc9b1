/* test_maps — the /proc/self/maps and smaps reader: formats, long lines, real files. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include "core/maps.h"

/* @text into a temporary file; its path into @path (unlinked by the caller). */
static void write_tmp(const char *text, char *path)
{
	strcpy(path, "/tmp/test_maps.XXXXXX");
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

/* Every VMA of @text, read through a buffer of @cap bytes. */
static size_t read_all(const char *text, size_t cap, struct maps_vma *v, size_t max)
{
	char path[64];
	write_tmp(text, path);
	char *buf = malloc(cap);
	struct maps_reader r;
	ck_assert_int_eq(maps_open(&r, path, buf, cap), 0);
	size_t n = 0;
	int got;
	while (n < max && (got = maps_next(&r, &v[n])) > 0)
		n++;
	ck_assert_int_eq(maps_next(&r, &v[n < max ? n : 0]), 0);
	maps_close(&r);
	free(buf);
	unlink(path);
	return n;
}

static const char maps_text[] =
	"55d0c0a00000-55d0c0a21000 rw-p 00000000 00:00 0                          [heap]\n"
	"7f0000000000-7f0000100000 rw-p 00000000 00:00 0 \n"
	"7f0000100000-7f0000200000 r--p 00000000 00:00 0\n"
	"7f0000200000-7f0000300000 rw-s 00000000 00:01 1234                       /dev/zero (deleted)\n"
	"7f0000300000-7f0000301000 rw-p 0001c000 fd:01 393228                     /usr/lib/x86_64-linux-gnu/libc.so.6\n"
	"7f0000400000-7f0000500000 rwxp 00000000 00:00 0                          [anon:jit]\n"
	"7f0000500000-7f0000600000 rw-s 00000000 00:01 7                          [anon_shmem:x]\n"
	"7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0                          [stack]\n"
	"7ffc00100000-7ffc00104000 r--p 00000000 00:00 0                          [vvar]\n"
	"7ffc00104000-7ffc00106000 r-xp 00000000 00:00 0                          [vdso]\n"
	"ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]";

START_TEST(plain_maps)
{
	struct maps_vma v[16];
	size_t n = read_all(maps_text, 4096, v, 16);
	ck_assert_uint_eq(n, 11);
	ck_assert_uint_eq(v[0].start, 0x55d0c0a00000UL);
	ck_assert_uint_eq(v[0].end, 0x55d0c0a21000UL);
	ck_assert_int_eq(v[0].kind, MAPS_HEAP);
	ck_assert(v[0].read && v[0].write && !v[0].exec && !v[0].shared);
	ck_assert(!v[0].has_flags);
	ck_assert_int_eq(v[1].kind, MAPS_ANON);
	ck_assert(v[1].write);
	ck_assert_int_eq(v[2].kind, MAPS_ANON);
	ck_assert(!v[2].write);
	ck_assert_int_eq(v[3].kind, MAPS_FILE);
	ck_assert(v[3].shared);
	ck_assert_int_eq(v[4].kind, MAPS_FILE);
	ck_assert_int_eq(v[5].kind, MAPS_ANON);
	ck_assert(v[5].exec);
	ck_assert_int_eq(v[6].kind, MAPS_SPECIAL);
	ck_assert_int_eq(v[7].kind, MAPS_STACK);
	ck_assert_int_eq(v[8].kind, MAPS_SPECIAL);
	ck_assert_int_eq(v[9].kind, MAPS_SPECIAL);
	ck_assert_int_eq(v[10].kind, MAPS_SPECIAL);
	ck_assert_uint_eq(v[10].start, 0xffffffffff600000UL);
	/* candidates: heap, rw anon, named rwx anon; nothing else */
	bool want[11] = { true, true, false, false, false, true, false, false, false, false, false };
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(maps_candidate(&v[i]) == want[i], "vma %zu", i);
	/* the same through a buffer so small that lines straddle every refill */
	struct maps_vma w[16];
	ck_assert_uint_eq(read_all(maps_text, 256, w, 16), 11);
	for (size_t i = 0; i < n; i++) {
		ck_assert_uint_eq(w[i].start, v[i].start);
		ck_assert_uint_eq(w[i].end, v[i].end);
		ck_assert_int_eq(w[i].kind, v[i].kind);
	}
}
END_TEST

START_TEST(smaps_flags)
{
	static const char text[] =
		"7f0000000000-7f0000100000 rw-p 00000000 00:00 0 \n"
		"Size:               1024 kB\n"
		"Rss:                 512 kB\n"
		"Locked:                0 kB\n"
		"VmFlags: rd wr mr mw me ac sd \n"
		"7f0000100000-7f0000200000 rw-p 00000000 00:00 0 \n"
		"Size:               1024 kB\n"
		"VmFlags: rd wr mr mw me lo ac sd\n"
		"7f0000200000-7f0000300000 rw-p 00000000 00:00 0 \n"
		"VmFlags: rd wr mr mw me ac sd dd um\n"
		"7f0000300000-7f0000400000 rw-p 00000000 00:00 0 \n"
		"Size:               1024 kB\n" /* no VmFlags line (old kernel) */
		"7f0000400000-7f0000500000 rw-p 00000000 00:00 0 \n"
		"VmFlags: rd wr ht io pf dc wf sl ss gd uw lf mg\n"
		"7f0000500000-7f0000600000 rw-p 00000000 00:00 0 \n"
		"VmFlags: rd wr mr mw me ac sd";
	struct maps_vma v[8];
	ck_assert_uint_eq(read_all(text, 4096, v, 8), 6);
	ck_assert(v[0].has_flags);
	ck_assert_uint_eq(v[0].flags, 0);
	ck_assert_uint_eq(v[1].flags, MAPS_VM_LOCKED);
	ck_assert_uint_eq(v[2].flags, MAPS_VM_DONTDUMP | MAPS_VM_UFFD);
	ck_assert(!v[3].has_flags);
	ck_assert_uint_eq(v[3].start, 0x7f0000300000UL);
	ck_assert_uint_eq(v[4].flags, MAPS_VM_HUGETLB | MAPS_VM_IO | MAPS_VM_DONTCOPY |
					      MAPS_VM_WIPEONFORK | MAPS_VM_SEALED |
					      MAPS_VM_SHADOW_STACK | MAPS_VM_GROWSDOWN | MAPS_VM_UFFD);
	ck_assert_uint_eq(v[4].flags & ~MAPS_VM_UFFD, MAPS_VM_KEEP_RESIDENT & ~MAPS_VM_LOCKED &
							      ~MAPS_VM_DONTDUMP);
	ck_assert(v[5].has_flags);
	ck_assert_uint_eq(v[5].end, 0x7f0000600000UL);
}
END_TEST

START_TEST(long_lines)
{
	/* a file name longer than the buffer: the head is parsed, the tail skipped */
	char text[4096];
	char name[1200];
	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	snprintf(text, sizeof(text),
		 "7f0000000000-7f0000001000 rw-p 00000000 fd:01 42   /%s\n"
		 "7f0000001000-7f0000002000 rw-p 00000000 00:00 0 \n"
		 "garbage line\n"
		 "7f0000002000-7f0000003000 rw-p 00000000 fd:01 42   /%s",
		 name, name);
	struct maps_vma v[4];
	ck_assert_uint_eq(read_all(text, 256, v, 4), 3);
	ck_assert_int_eq(v[0].kind, MAPS_FILE);
	ck_assert_uint_eq(v[1].start, 0x7f0000001000UL);
	ck_assert_int_eq(v[1].kind, MAPS_ANON);
	ck_assert_int_eq(v[2].kind, MAPS_FILE);
	ck_assert_uint_eq(v[2].start, 0x7f0000002000UL);
	/* empty file, and the buffer floor */
	ck_assert_uint_eq(read_all("", 256, v, 4), 0);
	struct maps_reader r;
	char small[64];
	ck_assert_int_eq(maps_open(&r, "/proc/self/maps", small, sizeof(small)), -EINVAL);
	ck_assert_int_eq(maps_open(&r, "/nonexistent/maps", small, 4096), -ENOENT);
}
END_TEST

/* The real thing: an mlocked piece of a mapping shows as its own VMA with lo. */
START_TEST(real_smaps)
{
	size_t len = 64 * 4096;
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(p, MAP_FAILED);
	memset(p, 1, len);
	/* the system call itself: sanitizers turn mlock() into a no-op; it
	 * may be refused (RLIMIT_MEMLOCK) */
	int locked = syscall(SYS_mlock, p + 16 * 4096, 4096) == 0;
	ck_assert_int_eq(madvise(p + 32 * 4096, 4096, MADV_DONTDUMP), 0);
	char buf[4096];
	struct maps_reader r;
	ck_assert_int_eq(maps_open(&r, "/proc/self/smaps", buf, sizeof(buf)), 0);
	struct maps_vma v;
	int seen_lo = 0, seen_dd = 0, seen_plain = 0, vmas = 0;
	uintptr_t lo = (uintptr_t)p, hi = lo + len;
	while (maps_next(&r, &v) > 0) {
		vmas++;
		ck_assert(v.has_flags);
		if (v.start < lo || v.end > hi)
			continue;
		ck_assert(maps_candidate(&v));
		if (v.start == lo + 16 * 4096 && (v.flags & MAPS_VM_LOCKED))
			seen_lo++;
		else if (v.start == lo + 32 * 4096 && (v.flags & MAPS_VM_DONTDUMP))
			seen_dd++;
		else if (!(v.flags & MAPS_VM_KEEP_RESIDENT))
			seen_plain++;
	}
	maps_close(&r);
	ck_assert_int_gt(vmas, 5);
	ck_assert_int_eq(seen_lo, locked);
	ck_assert_int_eq(seen_dd, 1);
	ck_assert_int_ge(seen_plain, 2);
	munmap(p, len);
}
END_TEST

/*
 * After maps_preopen() the /proc/self files are read through descriptors
 * kept high, opened once: no open() while the program runs (maps.h says
 * why), the text fresh at every read, and a forked child reads its own.
 */
START_TEST(preopened_files_read_fresh_and_per_process)
{
	ck_assert_int_eq(maps_preopen(), 0);
	char buf[4096];
	struct maps_reader r;
	ck_assert_int_eq(maps_open(&r, "/proc/self/maps", buf, sizeof(buf)), 0);
	ck_assert(r.kept);
	ck_assert_int_ge(r.fd, 64); /* moved above the low numbers */
	struct maps_vma v;
	size_t n = 0;
	while (maps_next(&r, &v) > 0)
		n++;
	maps_close(&r);
	ck_assert_uint_gt(n, 5);
	/* statm: a new mapping, touched, shows in the next read */
	char a[128], b[128];
	ck_assert_uint_gt(maps_read_small("/proc/self/statm", a, sizeof(a)), 0);
	size_t len = 64 << 20;
	char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(m, MAP_FAILED);
	memset(m, 1, len);
	ck_assert_uint_gt(maps_read_small("/proc/self/statm", b, sizeof(b)), 0);
	ck_assert_uint_ge(strtoul(b, NULL, 10), strtoul(a, NULL, 10) + len / 4096);
	munmap(m, len);
	/* a forked child reads its own status, not its parent's */
	pid_t pid = fork();
	if (pid == 0) {
		char st[4096], want[64];
		snprintf(want, sizeof(want), "\nPid:\t%d\n", (int)getpid());
		_exit(maps_read_small("/proc/self/status", st, sizeof(st)) && strstr(st, want) ? 0 : 1);
	}
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
END_TEST

Suite *maps_suite(void)
{
	Suite *s = suite_create("maps");
	TCase *tc = tcase_create("read");
	tcase_add_test(tc, plain_maps);
	tcase_add_test(tc, smaps_flags);
	tcase_add_test(tc, long_lines);
	tcase_add_test(tc, real_smaps);
	tcase_add_test(tc, preopened_files_read_fresh_and_per_process);
	suite_add_tcase(s, tc);
	return s;
}

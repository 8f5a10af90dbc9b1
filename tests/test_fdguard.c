/* fdguard: descriptors move out of the low numbers and are known as ours. */
#include <check.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/fdguard.h"

/* Run with a soft limit of @lim (restored after). */
static struct rlimit saved;

static void limit(rlim_t lim)
{
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &saved), 0);
	struct rlimit rl = saved;
	rl.rlim_cur = lim;
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
}

static void unlimit(void)
{
	setrlimit(RLIMIT_NOFILE, &saved);
}

START_TEST(adopted_descriptors_move_up_and_are_known)
{
	limit(1024);
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_lt(fd, 64);
	int g = fdguard_adopt(fd);
	ck_assert_int_ge(g, 1024 - 128); /* clear of what open() hands out */
	ck_assert_int_lt(g, 1024);
	ck_assert_int_eq(fcntl(fd, F_GETFD), -1); /* the old number is free */
	ck_assert_int_eq(fcntl(g, F_GETFD), FD_CLOEXEC);
	ck_assert(fdguard_owned(g));
	ck_assert(!fdguard_owned(fd));
	ck_assert_int_eq(fdguard_next(0), g);
	ck_assert_int_eq(fdguard_next(g), g);
	ck_assert_int_eq(fdguard_next(g + 1), -1);
	fdguard_close(g);
	ck_assert(!fdguard_owned(g));
	ck_assert_int_eq(fcntl(g, F_GETFD), -1); /* closed */
	ck_assert_int_eq(fdguard_next(0), -1);
	unlimit();
}
END_TEST

START_TEST(forget_unmarks_without_closing)
{
	int g = fdguard_adopt(open("/dev/null", O_RDONLY | O_CLOEXEC));
	ck_assert(fdguard_owned(g));
	fdguard_forget(g);
	ck_assert(!fdguard_owned(g));
	ck_assert_int_ge(fcntl(g, F_GETFD), 0);
	close(g);
	ck_assert_int_eq(fdguard_adopt(-1), -1); /* a failed open passes through */
	fdguard_close(-1);
}
END_TEST

START_TEST(small_table_keeps_the_number)
{
	/* too small a table to keep a top apart: the descriptor stays, marked */
	limit(64);
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	ck_assert_int_eq(fdguard_adopt(fd), fd);
	ck_assert(fdguard_owned(fd));
	fdguard_close(fd);
	unlimit();
}
END_TEST

Suite *fdguard_suite(void)
{
	Suite *s = suite_create("fdguard");
	TCase *tc = tcase_create("basic");
	tcase_add_test(tc, adopted_descriptors_move_up_and_are_known);
	tcase_add_test(tc, forget_unmarks_without_closing);
	tcase_add_test(tc, small_table_keeps_the_number);
	suite_add_tcase(s, tc);
	return s;
}

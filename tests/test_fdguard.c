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

/*
 * Whether a child may hold a fork event's descriptor unlisted, in the
 * orders a read, its adoption, the listing and the fork can take (the
 * fork's two copies are what fdguard_fork_prepare() and
 * fdguard_fork_missed() see; engine/basic/fork_child_drops_a_sibling_descriptor
 * forks for real).
 */
START_TEST(fork_missed_while_a_fork_event_is_on_its_way)
{
	/* nothing near */
	fdguard_fork_prepare();
	ck_assert(!fdguard_fork_missed());
	/* a read under way when the memory is copied */
	fdguard_arrival_begin();
	ck_assert(fdguard_fork_missed());
	/* ...that brought nothing: nothing can be in the table */
	fdguard_arrival_end(0);
	ck_assert(!fdguard_fork_missed());
	/* a read that began and brought a fork event after the prepare: the
	 * table may have been copied while it was under way */
	fdguard_arrival_begin();
	fdguard_arrival_end(1);
	ck_assert(fdguard_fork_missed());
	fdguard_arrival_listed();
	ck_assert(fdguard_fork_missed());
	/* all before the prepare, listed: the child's copy of the list has it */
	fdguard_fork_prepare();
	ck_assert(!fdguard_fork_missed());
	/* read and moved up before the prepare, listed after the copy */
	fdguard_arrival_begin();
	fdguard_arrival_end(2);
	fdguard_fork_prepare();
	ck_assert(fdguard_fork_missed());
	fdguard_arrival_listed();
	ck_assert(fdguard_fork_missed());
	fdguard_arrival_listed();
	ck_assert(!fdguard_fork_missed());
}
END_TEST

Suite *fdguard_suite(void)
{
	Suite *s = suite_create("fdguard");
	TCase *tc = tcase_create("basic");
	tcase_add_test(tc, adopted_descriptors_move_up_and_are_known);
	tcase_add_test(tc, forget_unmarks_without_closing);
	tcase_add_test(tc, small_table_keeps_the_number);
	tcase_add_test(tc, fork_missed_while_a_fork_event_is_on_its_way);
	suite_add_tcase(s, tc);
	return s;
}

/* inject: the armed point fails exactly its nth call, once, or from then on. */
#include <check.h>
#include <errno.h>

#include "core/inject.h"

START_TEST(nth_call_fails_once)
{
	struct inject_point p = { 0 };
	ck_assert_int_eq(inject_take(&p), 0); /* unarmed */
	inject_arm(&p, EIO, 3);
	ck_assert_int_eq(inject_take(&p), 0);
	ck_assert_int_eq(inject_take(&p), 0);
	ck_assert_int_eq(inject_take(&p), -EIO);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(inject_take(&p), 0); /* once only */
	inject_arm(&p, ENOSPC, 1);
	ck_assert_int_eq(inject_take(&p), -ENOSPC);
	ck_assert_int_eq(inject_take(&p), 0);
}
END_TEST

START_TEST(sticky_fails_from_nth_until_disarmed)
{
	struct inject_point p = { 0 };
	inject_arm_sticky(&p, EIO, 2);
	ck_assert_int_eq(inject_take(&p), 0);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(inject_take(&p), -EIO);
	inject_arm(&p, 0, 0);
	ck_assert_int_eq(inject_take(&p), 0);
	inject_arm(&p, EIO, 1); /* one-shot again */
	ck_assert_int_eq(inject_take(&p), -EIO);
	ck_assert_int_eq(inject_take(&p), 0);
}
END_TEST

Suite *inject_suite(void)
{
	Suite *s = suite_create("inject");
	TCase *tc = tcase_create("basic");
	tcase_add_test(tc, nth_call_fails_once);
	tcase_add_test(tc, sticky_fails_from_nth_until_disarmed);
	suite_add_tcase(s, tc);
	return s;
}

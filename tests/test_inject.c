/* inject: the armed point fails exactly its nth call, once. */
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

Suite *inject_suite(void)
{
	Suite *s = suite_create("inject");
	TCase *tc = tcase_create("basic");
	tcase_add_test(tc, nth_call_fails_once);
	suite_add_tcase(s, tc);
	return s;
}

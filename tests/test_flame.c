/* test_flame — folding stacks into a tree, folded text out and in, the SVG. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/flame.h"

/* What @write wrote to a temporary file, NUL-terminated, in a malloc'd buffer. */
static char *capture(int (*write)(struct flame *, const void *, int), struct flame *f,
		     const void *arg)
{
	char path[] = "/tmp/test_flame.XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	unlink(path);
	ck_assert_int_eq(write(f, arg, fd), 0);
	off_t n = lseek(fd, 0, SEEK_END);
	char *buf = malloc((size_t)n + 1);
	ck_assert_int_eq(pread(fd, buf, (size_t)n, 0), n);
	buf[n] = '\0';
	close(fd);
	return buf;
}

static int w_folded(struct flame *f, const void *arg, int fd)
{
	(void)arg;
	return flame_write_folded(f, fd);
}

static int w_svg(struct flame *f, const void *arg, int fd)
{
	return flame_write_svg(f, arg, fd);
}

static size_t count(const char *hay, const char *needle)
{
	size_t n = 0;
	for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

START_TEST(fold_merges_and_sorts)
{
	struct flame *f;
	ck_assert_int_eq(flame_create(&f), 0);
	const char *a[] = { "main", "work", "leaf" };
	const char *b[] = { "main", "idle" };
	ck_assert_int_eq(flame_add(f, a, 3, 5), 0);
	ck_assert_int_eq(flame_add(f, b, 2, 7), 0);
	ck_assert_int_eq(flame_add(f, a, 3, 10), 0); /* merges with the first */
	ck_assert_int_eq(flame_add(f, a, 2, 1), 0);  /* main;work itself */
	ck_assert_int_eq(flame_add(f, a, 3, 0), 0);  /* nothing */
	const char *odd[] = { "a;b", "", "c\nd" };
	ck_assert_int_eq(flame_add(f, odd, 3, 2), 0);
	ck_assert_uint_eq(flame_total(f), 25);
	ck_assert_uint_eq(flame_stacks(f), 4);
	char *out = capture(w_folded, f, NULL);
	ck_assert_str_eq(out, "a:b;[unknown];c:d 2\n"
			      "main;idle 7\n"
			      "main;work 1\n"
			      "main;work;leaf 15\n");
	/* what was written parses back to the same */
	struct flame *g;
	ck_assert_int_eq(flame_create(&g), 0);
	ck_assert_int_eq(flame_parse(g, out, strlen(out), NULL), 4);
	ck_assert_uint_eq(flame_total(g), 25);
	char *again = capture(w_folded, g, NULL);
	ck_assert_str_eq(again, out);
	free(again);
	free(out);
	flame_destroy(g);
	flame_destroy(f);
}
END_TEST

START_TEST(parse_rejects_bad_lines)
{
	struct flame *f;
	ck_assert_int_eq(flame_create(&f), 0);
	size_t bad = 0;
	const char ok[] = "x;y 3\n\n  \nx;z\t4\r\nx;y 2";
	ck_assert_int_eq(flame_parse(f, ok, strlen(ok), &bad), 3);
	ck_assert_uint_eq(flame_total(f), 9);
	ck_assert_uint_eq(flame_stacks(f), 2);
	const char *wrong[] = { "x;y\n", "x;y 12a\n", "ok 1\n 5\n", "x;y -3\n",
				"x 99999999999999999999999\n" };
	const size_t line[] = { 1, 1, 2, 1, 1 };
	for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
		bad = 0;
		ck_assert_int_eq(flame_parse(f, wrong[i], strlen(wrong[i]), &bad), -EINVAL);
		ck_assert_uint_eq(bad, line[i]);
	}
	flame_destroy(f);
}
END_TEST

START_TEST(svg_widths_titles_escaping)
{
	struct flame *f;
	ck_assert_int_eq(flame_create(&f), 0);
	const char *a[] = { "main", "big<T>&\"q\"" };
	const char *b[] = { "main", "small" };
	const char *c[] = { "other\xff" }; /* not UTF-8 */
	ck_assert_int_eq(flame_add(f, a, 2, 750), 0);
	ck_assert_int_eq(flame_add(f, b, 2, 250), 0);
	ck_assert_int_eq(flame_add(f, c, 1, 1000), 0);
	struct flame_svg o = { .title = "T & <t>", .subtitle = "sub", .unit = "bytes",
			       .palette = FLAME_MEM, .width = 1020 };
	char *svg = capture(w_svg, f, &o);
	ck_assert_ptr_nonnull(strstr(svg, "<?xml version=\"1.0\""));
	ck_assert_ptr_nonnull(strstr(svg, ">T &amp; &lt;t&gt;</text>"));
	ck_assert_ptr_nonnull(strstr(svg, "<title>big&lt;T&gt;&amp;&quot;q&quot; (750 bytes, 37.50%)</title>"));
	ck_assert_ptr_nonnull(strstr(svg, "<title>other? (1000 bytes, 50.00%)</title>"));
	ck_assert_ptr_nonnull(strstr(svg, "<title>all (2000 bytes, 100.00%)</title>"));
	ck_assert_ptr_null(strstr(svg, "\xff"));
	/* 1000 px for 2000: main is 500 px wide, small 125 px, after big (375 px) */
	ck_assert_ptr_nonnull(strstr(svg, "<title>main (1000 bytes, 50.00%)</title><rect x=\"10.0\""));
	ck_assert_ptr_nonnull(strstr(svg, "width=\"500.0\""));
	ck_assert_ptr_nonnull(strstr(svg, "<title>small (250 bytes, 12.50%)</title><rect x=\"385.0\""));
	ck_assert_uint_eq(count(svg, "<g>"), 5);
	ck_assert_uint_eq(count(svg, "<g>"), count(svg, "</g>"));
	ck_assert_ptr_nonnull(strstr(svg, "</svg>\n"));
	free(svg);
	flame_destroy(f);
}
END_TEST

START_TEST(svg_narrow_frames_and_empty)
{
	struct flame *f;
	ck_assert_int_eq(flame_create(&f), 0);
	const char *a[] = { "wide" }, *b[] = { "tiny" };
	ck_assert_int_eq(flame_add(f, a, 1, 1000000), 0);
	ck_assert_int_eq(flame_add(f, b, 1, 1), 0); /* far below 0.1 px */
	struct flame_svg o = { .title = "t", .unit = "faults" };
	char *svg = capture(w_svg, f, &o);
	ck_assert_ptr_nonnull(strstr(svg, "<title>wide"));
	ck_assert_ptr_null(strstr(svg, "<title>tiny"));
	free(svg);
	flame_destroy(f);

	ck_assert_int_eq(flame_create(&f), 0);
	svg = capture(w_svg, f, &o);
	ck_assert_ptr_nonnull(strstr(svg, ">no samples</text>"));
	ck_assert_ptr_nonnull(strstr(svg, "<title>all (0 faults)</title>"));
	free(svg);
	char *folded = capture(w_folded, f, NULL);
	ck_assert_str_eq(folded, "");
	free(folded);
	flame_destroy(f);
}
END_TEST

/* Many stacks: more than one arena chunk of nodes and names. */
START_TEST(many_stacks)
{
	struct flame *f;
	ck_assert_int_eq(flame_create(&f), 0);
	char n1[32], n2[600];
	memset(n2, 'x', sizeof(n2) - 1);
	n2[sizeof(n2) - 1] = '\0';
	for (int i = 0; i < 5000; i++) {
		snprintf(n1, sizeof(n1), "f%05d", i);
		n2[0] = (char)('a' + i % 26);
		const char *s[] = { "root", n1, n2 };
		ck_assert_int_eq(flame_add(f, s, 3, (uint64_t)i + 1), 0);
	}
	ck_assert_uint_eq(flame_stacks(f), 5000);
	ck_assert_uint_eq(flame_total(f), 5000ULL * 5001 / 2);
	char *out = capture(w_folded, f, NULL);
	ck_assert_uint_eq(count(out, "\n"), 5000);
	/* names are cut at FLAME_NAME_MAX */
	ck_assert_ptr_null(strstr(out, n2 + 1));
	ck_assert(strncmp(out, "root;f00000;a", 13) == 0);
	free(out);
	flame_destroy(f);
}
END_TEST

Suite *flame_suite(void)
{
	Suite *s = suite_create("flame");
	TCase *tc = tcase_create("flame");
	tcase_add_test(tc, fold_merges_and_sorts);
	tcase_add_test(tc, parse_rejects_bad_lines);
	tcase_add_test(tc, svg_widths_titles_escaping);
	tcase_add_test(tc, svg_narrow_frames_and_empty);
	tcase_add_test(tc, many_stacks);
	suite_add_tcase(s, tc);
	return s;
}

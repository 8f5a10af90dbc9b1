/*
 * logcap — what core/log writes while a test runs a call: logcap_begin()
 * points the log at a pipe, logcap_end() puts the log back on stderr and
 * reads what was written (up to the pipe's 64 KiB).  Header only (static
 * inline): each suite is its own object file.
 */
#ifndef ZSWAPU_TESTS_LOGCAP_H
#define ZSWAPU_TESTS_LOGCAP_H

#include <check.h>
#include <fcntl.h>
#include <unistd.h>

#include "core/log.h"

struct logcap {
	int fds[2];
};

static inline void logcap_begin(struct logcap *c)
{
	ck_assert_int_eq(pipe2(c->fds, O_NONBLOCK), 0);
	log_set_fd(c->fds[1]);
}

/* The captured text into @buf (NUL-terminated, @cap > 0). */
static inline void logcap_end(struct logcap *c, char *buf, size_t cap)
{
	log_set_fd(-1);
	ssize_t n = read(c->fds[0], buf, cap - 1);
	buf[n > 0 ? n : 0] = '\0';
	close(c->fds[0]);
	close(c->fds[1]);
}

#endif

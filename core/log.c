/* log — see log.h.  Level and fd are plain atomics: no lock to take. */
#include "core/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static _Atomic int level = LOG_ERROR;
static _Atomic int out_fd = -1;

void log_set_level(int l)
{
	atomic_store(&level, l);
}

int log_get_level(void)
{
	return atomic_load(&level);
}

void log_set_fd(int fd)
{
	atomic_store(&out_fd, fd);
}

void log_msg(enum log_level l, const char *fmt, ...)
{
	if ((int)l > atomic_load(&level))
		return;
	char buf[512];
	int n = snprintf(buf, sizeof(buf), "zswapu: ");
	va_list ap;
	va_start(ap, fmt);
	/* vsnprintf on a stack buffer takes no lock and allocates nothing */
	int m = vsnprintf(buf + n, sizeof(buf) - n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	n += m;
	if (n > (int)sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	int fd = atomic_load(&out_fd);
	ssize_t w = write(fd >= 0 ? fd : STDERR_FILENO, buf, n);
	(void)w;
}

/*
 * log — the engine's messages to stderr.
 *
 * Written with one write(2) per message from a stack buffer: engine threads
 * must not take stdio's locks (a program thread may hold them while it
 * faults on a page only the engine can bring back: BRIEF trap 2).
 * Levels: 0 silent, 1 errors (default), 2 warnings, 3 info, 4 debug.
 */
#ifndef ZSWAPU_LOG_H
#define ZSWAPU_LOG_H

enum log_level { LOG_ERROR = 1, LOG_WARN = 2, LOG_INFO = 3, LOG_DEBUG = 4 };

void log_set_level(int level);
int log_get_level(void);

/* Redirect messages to @fd (tests capture them); -1 restores stderr. */
void log_set_fd(int fd);

/* log_msg() : "zswapu: <message>\n" when @level is enabled. */
void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif

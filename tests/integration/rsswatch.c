/*
 * rsswatch — run a command and report the most resident anonymous memory
 * it had, sampled from /proc/PID/status (RssAnon) while it runs.
 *
 *   rsswatch [-i MS] [-o FILE] [-t TRACE] -- command args...
 *
 * Samples every MS milliseconds (default 20) the command's process and
 * every process descended from it, each on its own (zswapu's limit is per
 * process).  Writes to FILE (default stderr):
 *   peak_rss_anon_bytes N   the command's own process
 *   tree_peak_rss_anon_bytes N   the most any one process of the tree had
 *   samples N
 *   peak_at_ms N   when the command's own peak was sampled (since start)
 * With -t, every sample of the command's own process goes to TRACE as
 * "MS KIB" lines, to see how a peak came about.
 * and exits with the command's status (128 + signal if it was killed).
 * The integration tests use it to check that a program run under zswapu
 * kept within its limit; a sample can miss a short peak, which is why the
 * tests state a slack.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long rss_anon_kib(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	long kib = -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "RssAnon:", 8)) {
			kib = strtol(line + 8, NULL, 10);
			break;
		}
	fclose(f);
	return kib;
}

#include <dirent.h>

/* Parent of @pid from /proc/PID/stat, or -1. */
static pid_t parent_of(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	char *rp = strrchr(buf, ')'); /* the name may hold spaces and parens */
	int ppid;
	if (!rp || sscanf(rp + 1, " %*c %d", &ppid) != 1)
		return -1;
	return ppid;
}

/* The largest RssAnon (KiB) of any process descended from @root, @root included. */
static long tree_peak_kib(pid_t root)
{
	enum { MAXP = 4096 };
	static pid_t pids[MAXP], ppids[MAXP];
	size_t n = 0;
	DIR *d = opendir("/proc");
	if (!d)
		return -1;
	struct dirent *de;
	while ((de = readdir(d)) && n < MAXP) {
		pid_t p = (pid_t)strtol(de->d_name, NULL, 10);
		if (p > 0) {
			pids[n] = p;
			ppids[n++] = parent_of(p);
		}
	}
	closedir(d);
	long best = -1;
	for (size_t i = 0; i < n; i++) {
		pid_t p = pids[i];
		for (int depth = 0; depth < 64 && p > 1 && p != root; depth++) {
			size_t j = 0;
			while (j < n && pids[j] != p)
				j++;
			p = j < n ? ppids[j] : -1;
		}
		if (p == root) {
			long kib = rss_anon_kib(pids[i]);
			if (kib > best)
				best = kib;
		}
	}
	return best;
}

int main(int argc, char **argv)
{
	long interval_ms = 20;
	const char *out = NULL, *trace_path = NULL;
	int i = 1;
	for (; i < argc && strcmp(argv[i], "--"); i++) {
		if (!strcmp(argv[i], "-i") && i + 1 < argc)
			interval_ms = strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "-o") && i + 1 < argc)
			out = argv[++i];
		else if (!strcmp(argv[i], "-t") && i + 1 < argc)
			trace_path = argv[++i];
		else
			goto usage;
	}
	if (i + 1 >= argc || interval_ms <= 0)
		goto usage;
	FILE *trace = NULL;
	if (trace_path && !(trace = fopen(trace_path, "w"))) {
		perror("rsswatch: trace");
		return 125;
	}
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pid_t pid = fork();
	if (pid < 0) {
		perror("rsswatch: fork");
		return 125;
	}
	if (pid == 0) {
		execvp(argv[i + 1], argv + i + 1);
		fprintf(stderr, "rsswatch: cannot run %s: %s\n", argv[i + 1], strerror(errno));
		_exit(127);
	}
	long peak = 0, tree_peak = 0, samples = 0, peak_at_ms = 0;
	int status;
	struct timespec ts = { interval_ms / 1000, (interval_ms % 1000) * 1000000L };
	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			break;
		if (w < 0 && errno != EINTR) {
			perror("rsswatch: waitpid");
			return 125;
		}
		long kib = rss_anon_kib(pid);
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		long ms = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
		if (kib > peak) {
			peak = kib;
			peak_at_ms = ms;
		}
		if (trace && kib >= 0)
			fprintf(trace, "%ld %ld\n", ms, kib);
		kib = tree_peak_kib(pid);
		if (kib > tree_peak)
			tree_peak = kib;
		samples++;
		nanosleep(&ts, NULL);
	}
	FILE *f = out ? fopen(out, "w") : stderr;
	if (!f) {
		perror("rsswatch: output");
		return 125;
	}
	fprintf(f, "peak_rss_anon_bytes %ld\ntree_peak_rss_anon_bytes %ld\nsamples %ld\npeak_at_ms %ld\n",
		peak * 1024, (tree_peak > peak ? tree_peak : peak) * 1024, samples, peak_at_ms);
	if (trace)
		fclose(trace);
	if (out)
		fclose(f);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
usage:
	fprintf(stderr, "usage: rsswatch [-i MS] [-o FILE] [-t TRACE] -- command args...\n");
	return 2;
}

/*
 * zswapu — the command.  `zswapu run [options] [--] prog args...` runs a
 * program with libzswapu-preload.so loaded and the ZSWAPU_* variables set
 * from its flags; `zswapu help options` prints the variables (the table
 * in core/options.c).
 *
 * Commands are rows of `commands[]` (name, handler, usage, summary), so
 * later ones (stat, ps, profile, plot) are one row and one function each.
 *
 * Where the preload library is: next to this binary (the build tree:
 * build/release/zswapu and build/release/libzswapu-preload.so), then
 * ../lib next to it (an installed PREFIX/bin, PREFIX/lib), then the LIBDIR
 * compiled in (ZSWAPU_LIBDIR, from the Makefile's LIBDIR).
 *
 * `zswapu run` checks the options before it starts anything (a bad flag
 * or ZSWAPU_* value: the message and exit status 2) and looks at the
 * program: a statically linked one (no ELF interpreter), or one for
 * another ELF class or machine, cannot load the library; it is run
 * anyway, unmanaged, after one line saying so (LD_PRELOAD stays set for
 * the programs it starts).  Exit status: the program's, or 126/127 when
 * it cannot be run, as a shell does.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/options.h"
#include "tools/stat.h"

#ifndef ZSWAPU_LIBDIR
#define ZSWAPU_LIBDIR "/usr/local/lib"
#endif
#ifndef ZSWAPU_VERSION
#define ZSWAPU_VERSION "unknown"
#endif
#define PRELOAD_NAME "libzswapu-preload.so"

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *usage;
	const char *summary;
};

static const struct command *find_command(const char *name);
static void usage(FILE *f);

/* ---- run ------------------------------------------------------------------------------ */

/* The preload library's absolute path into @out; false when there is none. */
static bool find_preload(char *out, size_t len)
{
	char self[PATH_MAX], cand[PATH_MAX + 64];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		char *slash = strrchr(self, '/');
		if (slash)
			*slash = '\0';
		snprintf(cand, sizeof(cand), "%s/%s", self, PRELOAD_NAME);
		if (access(cand, R_OK) == 0 && realpath(cand, out))
			return true;
		snprintf(cand, sizeof(cand), "%s/../lib/%s", self, PRELOAD_NAME);
		if (access(cand, R_OK) == 0 && realpath(cand, out))
			return true;
	}
	snprintf(cand, sizeof(cand), "%s/%s", ZSWAPU_LIBDIR, PRELOAD_NAME);
	if (access(cand, R_OK) == 0 && strlen(cand) < len) {
		strcpy(out, cand);
		return true;
	}
	return false;
}

/* @prog as execvp would find it, into @out. */
static bool find_program(const char *prog, char *out, size_t len)
{
	if (strchr(prog, '/')) {
		snprintf(out, len, "%s", prog);
		return true;
	}
	const char *path = getenv("PATH");
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	for (const char *p = path; *p;) {
		size_t k = strcspn(p, ":");
		snprintf(out, len, "%.*s%s%s", (int)k, p, k ? "/" : "", prog);
		if (access(out, X_OK) == 0)
			return true;
		p += k + (p[k] == ':');
	}
	return false;
}

/* This tool's own ELF class and machine: what the library was built for. */
static bool own_elf(unsigned char *cls, unsigned int *machine)
{
	int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	Elf64_Ehdr eh;
	bool ok = fd >= 0 && read(fd, &eh, sizeof(eh)) == sizeof(eh);
	if (fd >= 0)
		close(fd);
	if (ok) {
		*cls = eh.e_ident[EI_CLASS];
		*machine = eh.e_machine;
	}
	return ok;
}

/*
 * Can the loader put the library into @path?  NULL if so (or if @path is
 * not an ELF file: exec will say what is wrong); else why not.  A script
 * is judged by its interpreter.
 */
static const char *why_not_preloadable(const char *path, int depth)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	unsigned char buf[256];
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	const char *why = NULL;
	if (n >= 2 && buf[0] == '#' && buf[1] == '!' && depth == 0) {
		buf[n] = '\0';
		char *interp = (char *)buf + 2;
		interp += strspn(interp, " \t");
		interp[strcspn(interp, " \t\n")] = '\0';
		close(fd);
		return *interp ? why_not_preloadable(interp, 1) : NULL;
	}
	unsigned char cls;
	unsigned int machine;
	Elf64_Ehdr eh;
	if (n < (ssize_t)sizeof(Elf32_Ehdr) || memcmp(buf, ELFMAG, SELFMAG) || !own_elf(&cls, &machine))
		goto out;
	memcpy(&eh, buf, n < (ssize_t)sizeof(eh) ? (size_t)n : sizeof(eh));
	if (buf[EI_CLASS] != cls) {
		why = cls == ELFCLASS64 ? "is a 32-bit program" : "is a 64-bit program";
		goto out;
	}
	if (eh.e_machine != machine) {
		why = "is built for another machine";
		goto out;
	}
	if (eh.e_type != ET_EXEC && eh.e_type != ET_DYN)
		goto out;
	why = "is statically linked";
	for (unsigned int i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		if (pread(fd, &ph, sizeof(ph), eh.e_phoff + (off_t)i * eh.e_phentsize) != sizeof(ph))
			break;
		if (ph.p_type == PT_INTERP) {
			why = NULL;
			break;
		}
	}
out:
	close(fd);
	return why;
}

/* LD_PRELOAD with @lib first (once). */
static int set_preload(const char *lib)
{
	const char *old = getenv("LD_PRELOAD");
	if (!old || !*old)
		return setenv("LD_PRELOAD", lib, 1);
	size_t n = strlen(lib);
	for (const char *p = old; *p;) {
		size_t k = strcspn(p, ": ");
		if (k == n && !strncmp(p, lib, n))
			return 0;
		p += k + (p[k] != '\0');
	}
	char *v = malloc(n + 1 + strlen(old) + 1);
	if (!v)
		return -1;
	sprintf(v, "%s:%s", lib, old);
	int r = setenv("LD_PRELOAD", v, 1);
	free(v);
	return r;
}

static void run_usage(FILE *f)
{
	fprintf(f,
		"usage: zswapu run [options] [--] program [arguments...]\n"
		"\n"
		"Runs the program with its cold memory compressed in RAM (LD_PRELOAD of\n"
		"%s).  The flags set the ZSWAPU_* variables below; variables\n"
		"already in the environment apply too.\n"
		"\n"
		"  --limit SIZE       ZSWAPU_LIMIT: keep resident memory under SIZE (512M, 2G, 25%%)\n"
		"  --stall-max P      ZSWAPU_STALL_MAX: raise the limit while the program waits on\n"
		"                     refaults more than P %% of the time (0: the limit holds)\n"
		"  --compressor C     ZSWAPU_COMPRESSOR: lz4, lz4:N, zstd, zstd:N\n"
		"  --pool P           ZSWAPU_POOL: zsmalloc, z3fold, zbud\n"
		"  --cold-age S       ZSWAPU_COLD_AGE: compress pages untouched for S seconds\n"
		"  --stats            ZSWAPU_STATS=1: print the stats table at exit\n"
		"  -h, --help         this text\n"
		"\n",
		PRELOAD_NAME);
}

static int cmd_run(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "limit", required_argument, NULL, 'l' },
		{ "stall-max", required_argument, NULL, 'S' },
		{ "compressor", required_argument, NULL, 'c' },
		{ "pool", required_argument, NULL, 'p' },
		{ "cold-age", required_argument, NULL, 'a' },
		{ "stats", no_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	optind = 1;
	/* '+': stop at the program's name, its own flags are its own */
	while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
		const char *var = NULL, *val = optarg;
		switch (c) {
		case 'l': var = OPTIONS_PREFIX "LIMIT"; break;
		case 'S': var = OPTIONS_PREFIX "STALL_MAX"; break;
		case 'c': var = OPTIONS_PREFIX "COMPRESSOR"; break;
		case 'p': var = OPTIONS_PREFIX "POOL"; break;
		case 'a': var = OPTIONS_PREFIX "COLD_AGE"; break;
		case 's': var = OPTIONS_PREFIX "STATS"; val = "1"; break;
		case 'h':
			run_usage(stdout);
			fflush(stdout); /* the table is written to the descriptor */
			return options_print(STDOUT_FILENO, OPTIONS_TEXT) ? 1 : 0;
		default:
			fprintf(stderr, "zswapu run: see zswapu run --help\n");
			return 2;
		}
		if (setenv(var, val, 1)) {
			perror("zswapu run: setenv");
			return 2;
		}
	}
	if (optind >= argc) {
		run_usage(stderr);
		return 2;
	}
	/* the library would refuse a bad value and run the program unmanaged;
	 * here it is cheaper to say so and stop */
	struct options o;
	char err[400];
	if (options_load(&o, NULL, err, sizeof(err))) {
		fprintf(stderr, "zswapu run: %s\n", err);
		return 2;
	}
	char **args = argv + optind;
	char path[PATH_MAX], lib[PATH_MAX];
	if (!find_program(args[0], path, sizeof(path))) {
		fprintf(stderr, "zswapu run: %s: command not found\n", args[0]);
		return 127;
	}
	if (!find_preload(lib, sizeof(lib)))
		fprintf(stderr, "zswapu: %s not found (next to zswapu, in ../lib, or in %s): "
				"running %s unmanaged\n", PRELOAD_NAME, ZSWAPU_LIBDIR, args[0]);
	else if (set_preload(lib))
		fprintf(stderr, "zswapu: cannot set LD_PRELOAD: running %s unmanaged\n", args[0]);
	const char *why = o.enabled ? why_not_preloadable(path, 0) : NULL;
	if (why)
		fprintf(stderr, "zswapu: %s %s: LD_PRELOAD cannot load zswapu into it, so it runs "
				"unmanaged (dynamically linked programs it starts are managed)\n",
			path, why);
	execv(path, args);
	int e = errno;
	fprintf(stderr, "zswapu run: %s: %s\n", path, strerror(e));
	return e == ENOENT ? 127 : 126;
}

/* ---- profile -------------------------------------------------------------------------- */

static void profile_usage(FILE *f)
{
	fprintf(f,
		"usage: zswapu profile [-o PREFIX] [--rate SIZE] [run options] [--] program [args...]\n"
		"\n"
		"Runs the program as zswapu run does, profiled (ZSWAPU_PROFILE; docs/profiling.md),\n"
		"and lists the files it wrote at exit: PREFIX.alloc-stored, .alloc-refaulted,\n"
		".fault-sites and .alloc, each .folded (folded stacks) and .svg (a flame graph).\n"
		"\n"
		"  -o PREFIX      file prefix; %%p is the process id (default zswapu-profile.%%p,\n"
		"                 so that programs it starts write files of their own)\n"
		"  --rate SIZE    ZSWAPU_PROFILE_RATE: one allocation sampled per SIZE bytes (512K)\n"
		"  -h, --help     this text\n"
		"\n"
		"The run options (--limit, --compressor, ...) are zswapu run's.\n");
}

static int cmd_profile(int argc, char **argv)
{
	const char *prefix = "zswapu-profile.%p", *rate = NULL;
	int i = 1;
	for (; i < argc; i++) {
		if (!strcmp(argv[i], "-o") && i + 1 < argc) {
			prefix = argv[++i];
		} else if (!strcmp(argv[i], "--rate") && i + 1 < argc) {
			rate = argv[++i];
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			profile_usage(stdout);
			return 0;
		} else {
			break;
		}
	}
	if (i >= argc || !*prefix) {
		profile_usage(stderr);
		return 2;
	}
	if (setenv(OPTIONS_PREFIX "PROFILE", prefix, 1) ||
	    (rate && setenv(OPTIONS_PREFIX "PROFILE_RATE", rate, 1))) {
		perror("zswapu profile: setenv");
		return 2;
	}
	fflush(NULL);
	/* a child runs it (zswapu run execs), so the files can be listed after */
	pid_t pid = fork();
	if (pid < 0) {
		perror("zswapu profile: fork");
		return 126;
	}
	if (pid == 0) {
		argv[i - 1] = "run";
		_exit(cmd_run(argc - i + 1, argv + i - 1));
	}
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return 126;
	int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	char exp[PATH_MAX], pidstr[16], file[PATH_MAX + 32];
	snprintf(pidstr, sizeof(pidstr), "%d", (int)pid);
	size_t o = 0;
	for (const char *p = prefix; *p && o + 16 < sizeof(exp); p++) {
		if (p[0] == '%' && p[1] == 'p') {
			o += (size_t)snprintf(exp + o, sizeof(exp) - o, "%s", pidstr);
			p++;
		} else {
			exp[o++] = *p;
		}
	}
	exp[o] = '\0';
	static const char *const views[] = { "alloc-stored", "alloc-refaulted", "fault-sites",
					     "alloc" };
	int found = 0;
	for (size_t v = 0; v < sizeof(views) / sizeof(views[0]); v++) {
		snprintf(file, sizeof(file), "%s.%s.svg", exp, views[v]);
		if (access(file, R_OK))
			continue;
		if (!found++)
			fprintf(stderr, "zswapu profile: flame graphs (and .folded stacks):\n");
		fprintf(stderr, "  %s\n", file);
	}
	if (!found && rc != 126 && rc != 127)
		fprintf(stderr, "zswapu profile: %s wrote no profile (%s.*): it did not exit "
				"normally, or zswapu could not start in it\n", argv[i], exp);
	return rc;
}

/* ---- help ----------------------------------------------------------------------------- */

static int cmd_help(int argc, char **argv)
{
	if (argc < 2) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "options")) {
		bool md = argc > 2 && !strcmp(argv[2], "--markdown");
		bool man = argc > 2 && !strcmp(argv[2], "--man");
		if (argc > 3 || (argc > 2 && !md && !man)) {
			fprintf(stderr, "usage: zswapu help options [--markdown | --man]\n");
			return 2;
		}
		return options_print(STDOUT_FILENO, md ? OPTIONS_MARKDOWN
						  : man ? OPTIONS_MAN : OPTIONS_TEXT) ? 1 : 0;
	}
	const struct command *c = find_command(argv[1]);
	if (!c) {
		fprintf(stderr, "zswapu help: no command '%s'\n", argv[1]);
		usage(stderr);
		return 2;
	}
	char *help[] = { (char *)c->name, "--help", NULL };
	return c->run(2, help);
}

/* ---- dispatch ------------------------------------------------------------------------- */

static const struct command commands[] = {
	{ "run", cmd_run, "run [options] [--] program [arguments...]",
	  "run a program with its cold memory compressed" },
	{ "stat", stat_cmd_stat, "stat [--classes | --watch | --raw] [PID]",
	  "live stats of a managed process (zswap's debugfs and more)" },
	{ "ps", stat_cmd_ps, "ps", "list the managed processes" },
	{ "release", stat_cmd_release, "release [--timeout SECONDS] PID",
	  "put a process's stored pages back and stop managing it (for gdb)" },
	{ "limit", stat_cmd_limit, "limit [--timeout SECONDS] PID [SIZE]",
	  "show a managed process's limit, or change it while it runs" },
	{ "plot", stat_cmd_plot, "plot [-o PREFIX] FILE",
	  "draw what stat --record wrote (PNG and SVG, gnuplot)" },
	{ "profile", cmd_profile, "profile [-o PREFIX] [--rate SIZE] [--] program...",
	  "run a program profiled: allocation and fault sites, flame graphs" },
	{ "help", cmd_help, "help [command | options [--markdown|--man]]",
	  "this text, a command's, or the ZSWAPU_* variables" },
};

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(commands[i].name, name))
			return &commands[i];
	return NULL;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: zswapu <command> [arguments]\n\n"
		   "zswapu %s: a process-level zswap: a program's cold memory, compressed in RAM.\n\n",
		ZSWAPU_VERSION);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  zswapu %-44s %s\n", commands[i].usage, commands[i].summary);
	fprintf(f, "\nzswapu help options lists the ZSWAPU_* environment variables.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("zswapu %s\n", ZSWAPU_VERSION);
		return 0;
	}
	const struct command *c = find_command(argv[1]);
	if (!c) {
		fprintf(stderr, "zswapu: unknown command '%s'\n", argv[1]);
		usage(stderr);
		return 2;
	}
	return c->run(argc - 1, argv + 1);
}

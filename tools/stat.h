/*
 * stat — the `zswapu` commands that read the live stats of managed
 * processes (core/shmstat): stat, ps, release (which asks the process to
 * stop managing itself), limit (which shows or changes its limit), and plot for what `stat --record`
 * wrote.  Each takes (argc, argv) with argv[0] the command's name, and
 * returns the exit status.
 */
#ifndef ZSWAPU_TOOLS_STAT_H
#define ZSWAPU_TOOLS_STAT_H

int stat_cmd_stat(int argc, char **argv);
int stat_cmd_ps(int argc, char **argv);
int stat_cmd_release(int argc, char **argv);
int stat_cmd_limit(int argc, char **argv);
int stat_cmd_plot(int argc, char **argv);

#endif

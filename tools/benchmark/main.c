/*
 * raftkv-benchmark: etcd's benchmark tool (tools/benchmark, v3.4) for
 * raftkv and etcd alike, in C on raftkv's client library.
 *
 *   raftkv-benchmark [global flags] COMMAND [flags] [args]
 *
 * main parses the global flags (accepted before or after the command, as
 * cobra's persistent flags are), looks the command up in the table, opens
 * the connections (conns.c) and hands over to the command, which runs its
 * workload on the one loop and prints etcd's summary.  See bench.h for the
 * map of the files and man/raftkv-benchmark.1 for the flags.
 */
#include "bench.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct bench_cmd *const bench_cmds[] = {
	&bench_cmd_put,   &bench_cmd_range,         &bench_cmd_txn_put,
	&bench_cmd_watch, &bench_cmd_watch_latency, &bench_cmd_lease_keepalive,
};
#define BENCH_NCMDS (sizeof(bench_cmds) / sizeof(bench_cmds[0]))

static struct bench bench = {
	.endpoints = "127.0.0.1:2379",
	.conns = 1,
	.clients = 1,
};

static const struct flag bench_global_flags[] = {
	{"endpoints", FLAG_STRING, &bench.endpoints, 0, 0,
	 "comma-separated endpoints (default 127.0.0.1:2379)"},
	{"conns", FLAG_INT, &bench.conns, 1, 100000, "HTTP/2 connections (default 1)"},
	{"clients", FLAG_INT, &bench.clients, 1, 1000000,
	 "requests in flight, spread over the connections (default 1)"},
	{"target-leader", FLAG_BOOL, &bench.target_leader, 0, 0,
	 "send everything to the leader (found by Status)"},
	{"dial-timeout", FLAG_DURATION, &bench.dial_timeout_ms, 0, 0,
	 "dial timeout of each connection (default 2s)"},
	{"precise", FLAG_BOOL, &bench.precise, 0, 0, "full floating point precision"},
	{"sample", FLAG_BOOL, &bench.sample, 0, 0, "per-second samples in the summary"},
	{"json", FLAG_STRING, &bench.json_path, 0, 0, "also write the summary as JSON to FILE"},
	{NULL, 0, NULL, 0, 0, NULL},
};

void bench_err(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "raftkv-benchmark: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void bench_usage(FILE *f, const struct bench_cmd *cmd)
{
	if (cmd) {
		fprintf(f, "usage: raftkv-benchmark [global flags] %s [flags]%s%s\n\n%s\n\nflags:\n",
			cmd->name, cmd->args ? " " : "", cmd->args ? cmd->args : "", cmd->summary);
		flags_usage(f, cmd->flags);
	} else {
		fprintf(f, "usage: raftkv-benchmark [global flags] COMMAND [flags] [args]\n\n"
			   "A benchmark tool for etcd's v3 API (raftkv and etcd), after etcd's own.\n\n"
			   "commands:\n");
		for (size_t i = 0; i < BENCH_NCMDS; i++)
			fprintf(f, "  %-18s %s\n", bench_cmds[i]->name, bench_cmds[i]->summary);
		fprintf(f, "\n'raftkv-benchmark COMMAND --help' lists the flags of a command.\n");
	}
	fprintf(f, "\nglobal flags:\n");
	flags_usage(f, bench_global_flags);
}

static const struct bench_cmd *bench_find(const char *name)
{
	for (size_t i = 0; i < BENCH_NCMDS; i++)
		if (strcmp(bench_cmds[i]->name, name) == 0)
			return bench_cmds[i];
	return NULL;
}

int main(int argc, char **argv)
{
	const struct bench_cmd *cmd = NULL;
	char **args = calloc((size_t)argc + 1, sizeof(*args));
	int n_args = 0, rv, i;
	bool flags_done = false;
	char err[256];
	uv_loop_t loop;

	if (!args)
		return BENCH_EXIT_FAIL;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!flags_done && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) {
			bench_usage(stdout, cmd);
			free(args);
			return BENCH_EXIT_OK;
		}
		if (!flags_done && strcmp(a, "--") == 0) {
			flags_done = true;
		} else if (!flags_done && strncmp(a, "--", 2) == 0) {
			const struct flag *tables[2] = {bench_global_flags, cmd ? cmd->flags : NULL};

			if (flags_parse_one(tables, 2, argc, argv, &i, err, sizeof(err))) {
				bench_err("%s", err);
				goto usage;
			}
		} else if (!flags_done && a[0] == '-' && a[1]) {
			bench_err("unknown shorthand flag: %s", a);
			goto usage;
		} else if (!cmd) {
			cmd = bench_find(a);
			if (!cmd) {
				bench_err("unknown command \"%s\"", a);
				goto usage;
			}
		} else {
			args[n_args++] = argv[i];
		}
	}
	if (!cmd) {
		bench_usage(stderr, NULL);
		free(args);
		return BENCH_EXIT_USAGE;
	}
	if (n_args < cmd->min_args || n_args > cmd->max_args) {
		bench_err("%s takes %s", cmd->name, cmd->args ? cmd->args : "no arguments");
		goto usage;
	}

	bench.tty = isatty(STDOUT_FILENO);
	uv_loop_init(&loop);
	bench.loop = &loop;
	if (bench_conns_open(&bench) == 0)
		rv = cmd->run(&bench, n_args, args);
	else
		rv = BENCH_EXIT_FAIL;
	bench_conns_close(&bench);
	uv_run(&loop, UV_RUN_DEFAULT); /* let every handle close */
	if (uv_loop_close(&loop))
		bench_err("internal: handles left open at exit");
	free(args);
	return rv;
usage:
	fprintf(stderr, "run 'raftkv-benchmark%s%s --help' for usage\n", cmd ? " " : "",
		cmd ? cmd->name : "");
	free(args);
	return BENCH_EXIT_USAGE;
}

/*
 * config: etcd's flags (same names, defaults and meanings) and their ETCD_*
 * environment variables, parsed and validated into one struct.  A flag we do
 * not support fails with a clear message instead of being ignored.
 *
 * Syntax is Go's flag package, as etcd 3.4 uses it: -flag or --flag,
 * "--flag=value" or "--flag value" (booleans only "--flag" or
 * "--flag=false"), parsing stops at "--" or the first non-flag argument.
 * ETCD_<FLAG> (upper case, '-' → '_') sets a flag not given on the command
 * line; giving both is an error, as in etcd.  URL lists are sorted, as
 * etcd's types.URLs are.
 *
 * config.c depends on nothing but libc, so unit tests link it alone.
 */
#ifndef RAFTKV_CONFIG_H
#define RAFTKV_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct config_url {
	char *scheme; /* "http" or "https" */
	char *host;   /* without the brackets of an IPv6 literal */
	uint16_t port;
};

struct config_member {
	char *name;
	char **peer_urls; /* sorted */
	int n_peer_urls;
};

/* Something to log once the log level is set (config_parse runs before). */
struct config_notice {
	bool warning; /* else info */
	char *text;
};

enum config_compaction_mode { COMPACTION_PERIODIC, COMPACTION_REVISION };

struct config {
	char *name;                      /* --name, default "default" */
	char *data_dir;                  /* --data-dir, default "<name>.raftkv" */
	char **listen_client_urls;       /* default http://localhost:2379 */
	int n_listen_client_urls;
	char **advertise_client_urls;    /* default http://localhost:2379 */
	int n_advertise_client_urls;
	char **listen_peer_urls;         /* default http://localhost:2380 */
	int n_listen_peer_urls;
	char **initial_advertise_peer_urls; /* default http://localhost:2380 */
	int n_initial_advertise_peer_urls;
	struct config_member *initial_cluster; /* default "<name>=<initial-advertise-peer-urls>"; sorted by name */
	int n_initial_cluster;
	bool initial_cluster_new;        /* --initial-cluster-state new|existing */
	char *initial_cluster_token;     /* default "etcd-cluster" */
	unsigned heartbeat_ms;           /* --heartbeat-interval, default 100 */
	unsigned election_ms;            /* --election-timeout, default 1000 */
	uint64_t snapshot_count;         /* default 100000 (0 also means 100000) */
	int64_t quota_backend_bytes;     /* 0 = default 2 GiB; < 0 = no quota (etcd) */
	unsigned max_txn_ops;            /* default 128 */
	unsigned max_request_bytes;      /* default 1572864 */
	enum config_compaction_mode auto_compaction_mode; /* default periodic */
	char *auto_compaction_retention; /* default "0" (off) */
	int64_t auto_compaction_retention_ms;  /* periodic: parsed duration (hours if unitless) */
	int64_t auto_compaction_retention_revs;/* revision mode */
	char *log_level;                 /* default "info"; "debug" with --debug */

	/* Parsed and stored for the modules that can honour them. */
	bool pre_vote;                   /* --pre-vote, default false */
	bool strict_reconfig_check;      /* default true */
	bool enable_grpc_gateway;        /* default true */
	uint32_t max_concurrent_streams; /* default UINT32_MAX */
	int64_t grpc_keepalive_min_time_ms; /* default 5 s */
	int64_t grpc_keepalive_interval_ms; /* default 2 h; 0 = off */
	int64_t grpc_keepalive_timeout_ms;  /* default 20 s; 0 = off */
	int64_t watch_progress_notify_ms;   /* --experimental-watch-progress-notify-interval, 10 min */
	int64_t warning_apply_ms;           /* --experimental-warning-apply-duration, 100 ms */

	struct config_notice *notices;   /* for main to log, in order */
	int n_notices;
};

/* config_parse() results; errors were printed to stderr already. */
#define CONFIG_RUN 0          /* start the server */
#define CONFIG_DONE 1         /* --help printed: exit 0 */
#define CONFIG_VERSION 2      /* --version given: print it, exit 0 */
#define CONFIG_EBAD (-1)      /* bad configuration: exit 1 (as etcd) */
#define CONFIG_EUSAGE (-2)    /* command-line syntax error: exit 2 (Go's flag package) */

/* Parses argv and the environment into cfg (zeroed first).  Returns one of
 * the CONFIG_* values above.  cfg must be config_close()d in every case. */
int config_parse(struct config *cfg, int argc, char **argv);
void config_close(struct config *cfg);
/* The --help text. */
void config_usage(FILE *out);

/* etcd's checks of --initial-cluster against this member, made only when a
 * new data dir is bootstrapped (etcd skips them once a WAL exists): our
 * name is listed, its URLs equal --initial-advertise-peer-urls (after
 * resolving host names, as etcd does) and no peer URL appears twice.
 * 0, or -1 with etcd's message in err. */
int config_verify_bootstrap(const struct config *cfg, char *err, size_t errlen);

/* Parses one URL as etcd does (scheme://host:port, no path).  Accepts http
 * and https; 0, or -1 with a message in err.  out is owned by the caller
 * (config_url_close). */
int config_url_parse(const char *url, struct config_url *out, char *err, size_t errlen);
void config_url_close(struct config_url *u);

#endif

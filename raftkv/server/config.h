/*
 * config: etcd's flags (same names, defaults and meanings) and their ETCD_*
 * environment variables, parsed and validated into one struct.  A flag we do
 * not support fails with a clear message instead of being ignored.
 */
#ifndef RAFTKV_CONFIG_H
#define RAFTKV_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct config_url {
	char *scheme; /* "http" or "https" */
	char *host;
	uint16_t port;
};

struct config_member {
	char *name;
	char **peer_urls; /* as given */
	int n_peer_urls;
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
	struct config_member *initial_cluster; /* default "<name>=<initial-advertise-peer-urls>" */
	int n_initial_cluster;
	bool initial_cluster_new;        /* --initial-cluster-state new|existing */
	char *initial_cluster_token;     /* default "etcd-cluster" */
	unsigned heartbeat_ms;           /* --heartbeat-interval, default 100 */
	unsigned election_ms;            /* --election-timeout, default 1000 */
	uint64_t snapshot_count;         /* default 100000 */
	int64_t quota_backend_bytes;     /* 0 = default 2 GiB */
	unsigned max_txn_ops;            /* default 128 */
	unsigned max_request_bytes;      /* default 1572864 */
	enum config_compaction_mode auto_compaction_mode; /* default periodic */
	char *auto_compaction_retention; /* default "0" (off) */
	int64_t auto_compaction_retention_ms;  /* periodic: parsed duration (hours if unitless) */
	int64_t auto_compaction_retention_revs;/* revision mode */
	char *log_level;                 /* default "info" */
};

/* Parses argv and the environment.  Returns 0 and fills cfg; 1 when --help
 * or --version was printed (exit 0); or -1 after printing an error to stderr
 * (exit 1... etcd exits 1 on a bad flag). */
int config_parse(struct config *cfg, int argc, char **argv);
void config_close(struct config *cfg);
void config_usage(FILE *out);

/* host:port parsing of a URL string; 0 or -1 with a message in err. */
int config_url_parse(const char *url, struct config_url *out, char *err, size_t errlen);
void config_url_close(struct config_url *u);

#endif

/*
 * Unit tests for config (etcd's flags and ETCD_* variables).  Expected
 * messages and exit classes are what /usr/bin/etcd 3.4.23 printed for the
 * same command lines.  config.c is linked alone: no loop, no server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "server/config.h"

/* ---- harness: parse a command line, capturing stdout and stderr --------- */

static char out_buf[65536], err_buf[65536];

static void read_back(FILE *f, char *buf, size_t size)
{
	size_t n;
	rewind(f);
	n = fread(buf, 1, size - 1, f);
	buf[n] = '\0';
	fclose(f);
}

/* Runs config_parse on NULL-terminated args (argv[0] added). */
static int parse(struct config *cfg, ...)
{
	char *argv[64];
	int argc = 0, rv, saved_out, saved_err;
	FILE *fo = tmpfile(), *fe = tmpfile();
	va_list ap;
	const char *a;

	assert_non_null(fo);
	assert_non_null(fe);
	argv[argc++] = (char *)"raftkv";
	va_start(ap, cfg);
	while ((a = va_arg(ap, const char *)) != NULL && argc < 63)
		argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;

	fflush(stdout);
	fflush(stderr);
	saved_out = dup(1);
	saved_err = dup(2);
	dup2(fileno(fo), 1);
	dup2(fileno(fe), 2);
	rv = config_parse(cfg, argc, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(saved_out, 1);
	dup2(saved_err, 2);
	close(saved_out);
	close(saved_err);
	read_back(fo, out_buf, sizeof(out_buf));
	read_back(fe, err_buf, sizeof(err_buf));
	return rv;
}

#define assert_err_has(s)                                                            \
	do {                                                                         \
		if (!strstr(err_buf, (s)))                                           \
			fail_msg("stderr lacks \"%s\"; it was:\n%s", (s), err_buf); \
	} while (0)

static bool has_notice(const struct config *cfg, bool warning, const char *s)
{
	int i;
	for (i = 0; i < cfg->n_notices; i++)
		if (cfg->notices[i].warning == warning && strstr(cfg->notices[i].text, s))
			return true;
	return false;
}

/* Each test starts from an environment without ETCD_* variables. */
static int clean_env(void **state)
{
	extern char **environ;
	char **e;
	(void)state;
restart:
	for (e = environ; e && *e; e++) {
		if (strncmp(*e, "ETCD_", 5) == 0) {
			char name[256];
			size_t l = strcspn(*e, "=");
			snprintf(name, sizeof(name), "%.*s", (int)l, *e);
			unsetenv(name);
			goto restart;
		}
	}
	return 0;
}

/* ---- defaults and syntax ------------------------------------------------- */

/* No flags at all gives etcd's defaults (data dir is ours). */
static void test_defaults(void **state)
{
	struct config c;
	(void)state;
	assert_int_equal(parse(&c, NULL), CONFIG_RUN);
	assert_string_equal(c.name, "default");
	assert_string_equal(c.data_dir, "default.raftkv");
	assert_int_equal(c.n_listen_client_urls, 1);
	assert_string_equal(c.listen_client_urls[0], "http://localhost:2379");
	assert_string_equal(c.advertise_client_urls[0], "http://localhost:2379");
	assert_string_equal(c.listen_peer_urls[0], "http://localhost:2380");
	assert_string_equal(c.initial_advertise_peer_urls[0], "http://localhost:2380");
	assert_int_equal(c.n_initial_cluster, 1);
	assert_string_equal(c.initial_cluster[0].name, "default");
	assert_string_equal(c.initial_cluster[0].peer_urls[0], "http://localhost:2380");
	assert_true(c.initial_cluster_new);
	assert_string_equal(c.initial_cluster_token, "etcd-cluster");
	assert_int_equal(c.heartbeat_ms, 100);
	assert_int_equal(c.election_ms, 1000);
	assert_int_equal(c.snapshot_count, 100000);
	assert_int_equal(c.quota_backend_bytes, 0);
	assert_int_equal(c.max_txn_ops, 128);
	assert_int_equal(c.max_request_bytes, 1572864);
	assert_int_equal(c.auto_compaction_mode, COMPACTION_PERIODIC);
	assert_string_equal(c.auto_compaction_retention, "0");
	assert_int_equal(c.auto_compaction_retention_ms, 0);
	assert_string_equal(c.log_level, "info");
	assert_false(c.pre_vote);
	assert_true(c.strict_reconfig_check);
	assert_true(c.enable_grpc_gateway);
	assert_int_equal(c.max_concurrent_streams, UINT32_MAX);
	assert_int_equal(c.grpc_keepalive_min_time_ms, 5000);
	assert_int_equal(c.grpc_keepalive_interval_ms, 2 * 3600 * 1000);
	assert_int_equal(c.grpc_keepalive_timeout_ms, 20000);
	assert_int_equal(c.n_notices, 0);
	config_close(&c);
}

/* -flag, --flag, =value and separate value all work; the last one wins. */
static void test_flag_forms(void **state)
{
	struct config c;
	(void)state;
	assert_int_equal(parse(&c, "-name=a", "--data-dir", "/d", "-heartbeat-interval", "50",
			       "--election-timeout=500", "--name", "b", NULL),
			 CONFIG_RUN);
	assert_string_equal(c.name, "b");
	assert_string_equal(c.data_dir, "/d");
	assert_int_equal(c.heartbeat_ms, 50);
	assert_int_equal(c.election_ms, 500);
	assert_string_equal(c.initial_cluster[0].name, "b");
	config_close(&c);

	/* A value may start with '-', as in Go. */
	assert_int_equal(parse(&c, "--name", "--weird", NULL), CONFIG_RUN);
	assert_string_equal(c.name, "--weird");
	config_close(&c);
}

/* Booleans: bare is true, =false clears, a separate word ends the flags. */
static void test_bool_forms(void **state)
{
	struct config c;
	(void)state;
	assert_int_equal(parse(&c, "--pre-vote", "--strict-reconfig-check=F",
			       "--enable-grpc-gateway=0", NULL),
			 CONFIG_RUN);
	assert_true(c.pre_vote);
	assert_false(c.strict_reconfig_check);
	assert_false(c.enable_grpc_gateway);
	config_close(&c);

	assert_int_equal(parse(&c, "--pre-vote", "false", NULL), CONFIG_EBAD);
	assert_err_has("error verifying flags, 'false' is not a valid flag. See 'raftkv --help'.");
	config_close(&c);

	assert_int_equal(parse(&c, "--pre-vote=yes", NULL), CONFIG_EUSAGE);
	assert_err_has("invalid boolean value \"yes\" for -pre-vote: parse error");
	config_close(&c);
}

/* Go's flag package errors exit 2 (CONFIG_EUSAGE) with its exact text. */
static void test_syntax_errors(void **state)
{
	struct config c;
	(void)state;
	assert_int_equal(parse(&c, "--foo", NULL), CONFIG_EUSAGE);
	assert_err_has("flag provided but not defined: -foo");
	assert_err_has("Usage:");
	config_close(&c);

	assert_int_equal(parse(&c, "-foo=1", NULL), CONFIG_EUSAGE);
	assert_err_has("flag provided but not defined: -foo\n");
	config_close(&c);

	assert_int_equal(parse(&c, "---foo", NULL), CONFIG_EUSAGE);
	assert_err_has("bad flag syntax: ---foo");
	config_close(&c);

	assert_int_equal(parse(&c, "-=x", NULL), CONFIG_EUSAGE);
	assert_err_has("bad flag syntax: -=x");
	config_close(&c);

	assert_int_equal(parse(&c, "--name", NULL), CONFIG_EUSAGE);
	assert_err_has("flag needs an argument: -name");
	config_close(&c);

	assert_int_equal(parse(&c, "--election-timeout=abc", NULL), CONFIG_EUSAGE);
	assert_err_has("invalid value \"abc\" for flag -election-timeout: parse error");
	config_close(&c);

	assert_int_equal(parse(&c, "--heartbeat-interval=-1", NULL), CONFIG_EUSAGE);
	assert_err_has("invalid value \"-1\" for flag -heartbeat-interval: parse error");
	config_close(&c);

	assert_int_equal(parse(&c, "--snapshot-count=99999999999999999999", NULL), CONFIG_EUSAGE);
	assert_err_has("value out of range");
	config_close(&c);

	assert_int_equal(parse(&c, "--initial-cluster-state=bogus", NULL), CONFIG_EUSAGE);
	assert_err_has("invalid value \"bogus\" for flag -initial-cluster-state: invalid value");
	config_close(&c);

	assert_int_equal(parse(&c, "--max-concurrent-streams=4294967296", NULL), CONFIG_EUSAGE);
	assert_err_has("strconv.ParseUint: parsing \"4294967296\": value out of range");
	config_close(&c);

	assert_int_equal(parse(&c, "--grpc-keepalive-min-time=5", NULL), CONFIG_EUSAGE);
	assert_err_has("invalid value \"5\" for flag -grpc-keepalive-min-time: parse error");
	config_close(&c);
}

/* Non-flag arguments, "--", --help, --version. */
static void test_args_help_version(void **state)
{
	struct config c;
	(void)state;
	assert_int_equal(parse(&c, "bar", NULL), CONFIG_EBAD);
	assert_err_has("'bar' is not a valid flag");
	config_close(&c);

	assert_int_equal(parse(&c, "--name", "x", "--", "--name", "y", NULL), CONFIG_EBAD);
	assert_err_has("'--name' is not a valid flag");
	config_close(&c);

	assert_int_equal(parse(&c, "--name", "x", "--", NULL), CONFIG_RUN);
	config_close(&c);

	assert_int_equal(parse(&c, "-h", NULL), CONFIG_DONE);
	assert_non_null(strstr(out_buf, "--initial-cluster"));
	config_close(&c);
	assert_int_equal(parse(&c, "--help=false", NULL), CONFIG_DONE);
	config_close(&c);

	assert_int_equal(parse(&c, "--version", NULL), CONFIG_VERSION);
	config_close(&c);
	/* A bad flag after --version still wins, as in Go. */
	assert_int_equal(parse(&c, "--version", "--foo", NULL), CONFIG_EUSAGE);
	config_close(&c);
}

/* Go integer syntax: prefixes and underscores. */
static void test_numbers(void **state)
{
	struct config c;
	(void)state;
	assert_int_equal(parse(&c, "--heartbeat-interval=0x10", "--election-timeout=0o1000",
			       "--max-txn-ops=1_000", "--max-request-bytes=0b101",
			       "--quota-backend-bytes=-1", "--snapshot-count=0", NULL),
			 CONFIG_RUN);
	assert_int_equal(c.heartbeat_ms, 16);
	assert_int_equal(c.election_ms, 512);
	assert_int_equal(c.max_txn_ops, 1000);
	assert_int_equal(c.max_request_bytes, 5);
	assert_int_equal(c.quota_backend_bytes, -1);
	assert_int_equal(c.snapshot_count, 100000); /* etcd: 0 means the default */
	assert_true(has_notice(&c, false, "set snapshot count to default 100000"));
	config_close(&c);

	assert_int_equal(parse(&c, "--max-txn-ops=1__0", NULL), CONFIG_EUSAGE);
	config_close(&c);
	assert_int_equal(parse(&c, "--max-txn-ops=_1", NULL), CONFIG_EUSAGE);
	config_close(&c);
	assert_int_equal(parse(&c, "--max-txn-ops=09", NULL), CONFIG_EUSAGE);
	config_close(&c);
	assert_int_equal(parse(&c, "--max-txn-ops=4294967296", NULL), CONFIG_EBAD);
	assert_err_has("--max-txn-ops=4294967296 is too large");
	config_close(&c);
}

/* etcd's Validate: timing limits with its messages. */
static void test_timing_validation(void **state)
{
	struct config c;
	(void)state;
	assert_int_equal(parse(&c, "--heartbeat-interval=300", NULL), CONFIG_EBAD);
	assert_err_has("error verifying flags, --election-timeout[1000ms] should be at least as 5 "
		       "times as --heartbeat-interval[300ms]. See 'raftkv --help'.");
	config_close(&c);

	assert_int_equal(parse(&c, "--heartbeat-interval=0", NULL), CONFIG_EBAD);
	assert_err_has("--heartbeat-interval must be >0 (set to 0ms)");
	config_close(&c);

	assert_int_equal(parse(&c, "--election-timeout=0", NULL), CONFIG_EBAD);
	assert_err_has("--election-timeout must be >0 (set to 0ms)");
	config_close(&c);

	assert_int_equal(parse(&c, "--election-timeout=60000", NULL), CONFIG_EBAD);
	assert_err_has("--election-timeout[60000ms] is too long, and should be set less than "
		       "50000ms");
	config_close(&c);

	assert_int_equal(parse(&c, "--election-timeout=50000", "--heartbeat-interval=10000", NULL),
			 CONFIG_RUN);
	config_close(&c);

	/* 5 * 2^62 would overflow: still "should be at least" */
	assert_int_equal(parse(&c, "--heartbeat-interval=4611686018427387904", NULL), CONFIG_EBAD);
	assert_err_has("should be at least as 5 times");
	config_close(&c);
}

/* ---- environment --------------------------------------------------------- */

/* ETCD_* sets flags not on the command line; each use is noted. */
static void test_env(void **state)
{
	struct config c;
	(void)state;
	setenv("ETCD_NAME", "envname", 1);
	setenv("ETCD_HEARTBEAT_INTERVAL", "50", 1);
	setenv("ETCD_ELECTION_TIMEOUT", "", 1); /* empty: unset */
	setenv("ETCD_DEBUG", "true", 1);
	setenv("ETCD_BOGUS", "1", 1);
	assert_int_equal(parse(&c, NULL), CONFIG_RUN);
	assert_string_equal(c.name, "envname");
	assert_string_equal(c.data_dir, "envname.raftkv");
	assert_int_equal(c.heartbeat_ms, 50);
	assert_int_equal(c.election_ms, 1000);
	assert_string_equal(c.log_level, "debug");
	assert_true(has_notice(&c, false, "recognized and used environment variable ETCD_NAME=envname"));
	assert_true(has_notice(&c, true, "unrecognized environment variable ETCD_BOGUS=1"));
	config_close(&c);
}

/* Flag and variable both given: etcd refuses (exit 1). */
static void test_env_conflict(void **state)
{
	struct config c;
	(void)state;
	setenv("ETCD_NAME", "a", 1);
	assert_int_equal(parse(&c, "--name", "b", NULL), CONFIG_EBAD);
	assert_err_has("conflicting environment variable \"ETCD_NAME\" is shadowed by "
		       "corresponding command-line flag (either unset environment variable or "
		       "disable flag)");
	config_close(&c);

	setenv("ETCD_NAME", "", 1); /* even empty, as in etcd */
	assert_int_equal(parse(&c, "--name", "b", NULL), CONFIG_EBAD);
	config_close(&c);
}

/* A bad value in a variable is a configuration error naming the variable. */
static void test_env_bad_value(void **state)
{
	struct config c;
	(void)state;
	setenv("ETCD_HEARTBEAT_INTERVAL", "abc", 1);
	assert_int_equal(parse(&c, NULL), CONFIG_EBAD);
	assert_err_has("error verifying flags, invalid value \"abc\" for ETCD_HEARTBEAT_INTERVAL: "
		       "parse error. See 'raftkv --help'.");
	config_close(&c);

	unsetenv("ETCD_HEARTBEAT_INTERVAL");
	setenv("ETCD_LISTEN_CLIENT_URLS", "http://127.0.0.1:1", 1);
	assert_int_equal(parse(&c, NULL), CONFIG_EBAD);
	assert_err_has("--advertise-client-urls is required when --listen-client-urls is set "
		       "explicitly");
	config_close(&c);
}

/* ---- URLs ---------------------------------------------------------------- */

static void test_url_errors(void **state)
{
	struct config c;
	(void)state;
	assert_int_equal(parse(&c, "--listen-client-urls", "http://127.0.0.1", NULL), CONFIG_EUSAGE);
	assert_err_has("URL address does not have the form \"host:port\": http://127.0.0.1");
	config_close(&c);

	assert_int_equal(parse(&c, "--listen-client-urls", "http://127.0.0.1:2379/", NULL),
			 CONFIG_EUSAGE);
	assert_err_has("URL must not contain a path: http://127.0.0.1:2379/");
	config_close(&c);

	assert_int_equal(parse(&c, "--listen-client-urls", "127.0.0.1:2379", NULL), CONFIG_EUSAGE);
	assert_err_has("first path segment in URL cannot contain colon");
	config_close(&c);

	assert_int_equal(parse(&c, "--listen-client-urls", "localhost:2379", NULL), CONFIG_EUSAGE);
	assert_err_has("URL scheme must be http, https, unix, or unixs: localhost:2379");
	config_close(&c);

	assert_int_equal(parse(&c, "--listen-client-urls=", NULL), CONFIG_EUSAGE);
	config_close(&c);

	assert_int_equal(parse(&c, "--listen-client-urls", "http://::1:2379", NULL), CONFIG_EUSAGE);
	config_close(&c);

	assert_int_equal(parse(&c, "--listen-client-urls", "http://1.2.3.4:99999", NULL),
			 CONFIG_EUSAGE);
	config_close(&c);

	assert_int_equal(parse(&c, "--listen-client-urls", "unix://x:1", NULL), CONFIG_EUSAGE);
	assert_err_has("unix sockets are not supported yet");
	config_close(&c);

	assert_int_equal(parse(&c, "--listen-client-urls", "https://127.0.0.1:2379",
			       "--advertise-client-urls", "http://a:1", NULL),
			 CONFIG_EBAD);
	assert_err_has("TLS is not supported yet");
	config_close(&c);

	assert_int_equal(parse(&c, "--listen-client-urls", "http://myhost:2379",
			       "--advertise-client-urls", "http://myhost:2379", NULL),
			 CONFIG_EBAD);
	assert_err_has("expected IP in URL for binding (http://myhost:2379)");
	config_close(&c);

	assert_int_equal(parse(&c, "--listen-client-urls", "http://127.0.0.1:1",
			       "--advertise-client-urls", "http://:2379", NULL),
			 CONFIG_EBAD);
	assert_err_has("--advertise-client-urls \"http://:2379\" must be \"host:port\" "
		       "(unexpected empty host (http://:2379))");
	config_close(&c);
}

/* Lists are trimmed, scheme-lowercased and sorted, as types.URLs are. */
static void test_url_lists(void **state)
{
	struct config c;
	struct config_url u;
	char err[256];
	(void)state;
	assert_int_equal(parse(&c, "--listen-client-urls", "http://127.0.0.1:2, HTTP://[::1]:1",
			       "--advertise-client-urls", "http://b:1,http://a:2", NULL),
			 CONFIG_RUN);
	assert_int_equal(c.n_listen_client_urls, 2);
	assert_string_equal(c.listen_client_urls[0], "http://127.0.0.1:2");
	assert_string_equal(c.listen_client_urls[1], "http://[::1]:1");
	assert_string_equal(c.advertise_client_urls[0], "http://a:2");
	assert_string_equal(c.advertise_client_urls[1], "http://b:1");
	config_close(&c);

	assert_int_equal(config_url_parse("http://[::1]:2379", &u, err, sizeof(err)), 0);
	assert_string_equal(u.scheme, "http");
	assert_string_equal(u.host, "::1");
	assert_int_equal(u.port, 2379);
	config_url_close(&u);
	assert_int_equal(config_url_parse("HTTPS://example.com:1", &u, err, sizeof(err)), 0);
	assert_string_equal(u.scheme, "https");
	assert_string_equal(u.host, "example.com");
	config_url_close(&u);
	assert_int_equal(config_url_parse("http://a:0", &u, err, sizeof(err)), -1);
	assert_int_equal(config_url_parse("http://a:1:2", &u, err, sizeof(err)), -1);
	assert_int_equal(config_url_parse("http://u@a:1", &u, err, sizeof(err)), -1);
}

/* ---- initial cluster ------------------------------------------------------- */

static void test_cluster_default(void **state)
{
	struct config c;
	char err[1024];
	(void)state;
	/* Derived from name and advertise URLs whatever the name (etcd only
	 * does so for a name other than "default"). */
	assert_int_equal(parse(&c, "--name", "m", "--initial-advertise-peer-urls",
			       "http://10.0.0.2:2380,http://10.0.0.1:2380", NULL),
			 CONFIG_RUN);
	assert_int_equal(c.n_initial_cluster, 1);
	assert_string_equal(c.initial_cluster[0].name, "m");
	assert_int_equal(c.initial_cluster[0].n_peer_urls, 2);
	assert_string_equal(c.initial_cluster[0].peer_urls[0], "http://10.0.0.1:2380");
	assert_int_equal(config_verify_bootstrap(&c, err, sizeof(err)), 0);
	config_close(&c);
}

static void test_cluster_parse(void **state)
{
	struct config c;
	char err[1024];
	(void)state;
	assert_int_equal(parse(&c, "--name", "b", "--initial-advertise-peer-urls", "http://h2:2",
			       "--initial-cluster",
			       "c=http://h3:3,,b=http://h2:2,a=http://h1:1,a=http://h0:0x", NULL),
			 CONFIG_EBAD);
	assert_err_has("error setting up initial cluster:");
	config_close(&c);

	assert_int_equal(parse(&c, "--name", "b", "--initial-advertise-peer-urls", "http://h2:2",
			       "--initial-cluster",
			       "c=http://h3:3,,b=http://h2:2,a=http://h1:1,a= http://h0:9", NULL),
			 CONFIG_RUN);
	assert_int_equal(c.n_initial_cluster, 3);
	assert_string_equal(c.initial_cluster[0].name, "a"); /* sorted by name */
	assert_int_equal(c.initial_cluster[0].n_peer_urls, 2);
	assert_string_equal(c.initial_cluster[0].peer_urls[0], "http://h0:9");
	assert_string_equal(c.initial_cluster[0].peer_urls[1], "http://h1:1");
	assert_string_equal(c.initial_cluster[2].name, "c");
	assert_int_equal(config_verify_bootstrap(&c, err, sizeof(err)), 0);
	config_close(&c);

	assert_int_equal(parse(&c, "--initial-cluster", "default=http://h:1,junk", NULL),
			 CONFIG_EBAD);
	assert_err_has("error setting up initial cluster: URL scheme must be http, https, unix, "
		       "or unixs: ");
	config_close(&c);

	assert_int_equal(parse(&c, "--initial-cluster", "default=https://h:1", NULL), CONFIG_EBAD);
	assert_err_has("TLS is not supported yet");
	config_close(&c);

	/* Only our own entry needs a name. */
	assert_int_equal(parse(&c, "--initial-cluster", "=http://h:1", NULL), CONFIG_RUN);
	assert_int_equal(config_verify_bootstrap(&c, err, sizeof(err)), -1);
	assert_string_equal(err, "couldn't find local name \"default\" in the initial cluster "
				 "configuration");
	config_close(&c);
	assert_int_equal(parse(&c, "--initial-cluster", "default=http://h:1,=", NULL), CONFIG_EBAD);
	assert_err_has("error setting up initial cluster: URL scheme must be http, https, unix, "
		       "or unixs: ");
	config_close(&c);
}

/* What `etcdctl member add` prints while other added members have not
 * started: their names are empty.  etcd 3.4 takes it when joining and when
 * bootstrapping; every "" entry belongs to one member, as in its URLsMap. */
static void test_cluster_empty_names(void **state)
{
	static const char *const states[] = {"existing", "new"};
	struct config c;
	char err[1024];
	size_t i;
	(void)state;
	for (i = 0; i < 2; i++) {
		assert_int_equal(parse(&c, "--name", "m5", "--initial-advertise-peer-urls",
				       "http://127.0.0.1:5", "--initial-cluster-state", states[i],
				       "--initial-cluster",
				       "m1=http://127.0.0.1:1,=http://127.0.0.1:4,"
				       "m5=http://127.0.0.1:5,m2=http://127.0.0.1:2",
				       NULL),
				 CONFIG_RUN);
		assert_int_equal(c.n_initial_cluster, 4);
		assert_string_equal(c.initial_cluster[0].name, ""); /* sorts first */
		assert_int_equal(c.initial_cluster[0].n_peer_urls, 1);
		assert_string_equal(c.initial_cluster[0].peer_urls[0], "http://127.0.0.1:4");
		assert_string_equal(c.initial_cluster[3].name, "m5");
		assert_int_equal(config_verify_bootstrap(&c, err, sizeof(err)), 0);
		config_close(&c);
	}

	/* Two unstarted members: one "" member with both URLs. */
	assert_int_equal(parse(&c, "--name", "m6", "--initial-advertise-peer-urls",
			       "http://127.0.0.1:6", "--initial-cluster-state", "existing",
			       "--initial-cluster",
			       "=http://127.0.0.1:5,m1=http://127.0.0.1:1,=http://127.0.0.1:4,"
			       "m6=http://127.0.0.1:6",
			       NULL),
			 CONFIG_RUN);
	assert_int_equal(c.n_initial_cluster, 3);
	assert_string_equal(c.initial_cluster[0].name, "");
	assert_int_equal(c.initial_cluster[0].n_peer_urls, 2);
	assert_string_equal(c.initial_cluster[0].peer_urls[0], "http://127.0.0.1:4");
	assert_string_equal(c.initial_cluster[0].peer_urls[1], "http://127.0.0.1:5");
	assert_int_equal(config_verify_bootstrap(&c, err, sizeof(err)), 0);
	config_close(&c);

	/* An unnamed entry still may not repeat another member's URL. */
	assert_int_equal(parse(&c, "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
			       "--initial-cluster",
			       "default=http://127.0.0.1:2380,=http://127.0.0.1:2380", NULL),
			 CONFIG_RUN);
	assert_int_equal(config_verify_bootstrap(&c, err, sizeof(err)), -1);
	assert_string_equal(err, "initial cluster =http://127.0.0.1:2380,"
				 "default=http://127.0.0.1:2380 has duplicate url");
	config_close(&c);
}

/* etcd's VerifyBootstrap messages for the usual mistakes. */
static void test_cluster_verify(void **state)
{
	struct config c;
	char err[1024];
	(void)state;
	assert_int_equal(parse(&c, "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
			       "--initial-cluster", "other=http://127.0.0.1:2380", NULL),
			 CONFIG_RUN);
	assert_int_equal(config_verify_bootstrap(&c, err, sizeof(err)), -1);
	assert_string_equal(err, "couldn't find local name \"default\" in the initial cluster "
				 "configuration");
	config_close(&c);

	assert_int_equal(parse(&c, "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
			       "--initial-cluster", "default=http://127.0.0.1:9999", NULL),
			 CONFIG_RUN);
	assert_int_equal(config_verify_bootstrap(&c, err, sizeof(err)), -1);
	assert_string_equal(err, "--initial-cluster has default=http://127.0.0.1:9999 but missing "
				 "from --initial-advertise-peer-urls=http://127.0.0.1:2380 (resolved "
				 "urls: \"http://127.0.0.1:2380\" != \"http://127.0.0.1:9999\")");
	config_close(&c);

	assert_int_equal(parse(&c, "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
			       "--initial-cluster",
			       "default=http://127.0.0.1:2380,default=http://127.0.0.1:9999", NULL),
			 CONFIG_RUN);
	assert_int_equal(config_verify_bootstrap(&c, err, sizeof(err)), -1);
	assert_string_equal(err, "--initial-cluster has default=http://127.0.0.1:9999 but missing "
				 "from --initial-advertise-peer-urls=http://127.0.0.1:2380 "
				 "(len([\"http://127.0.0.1:2380\"]) != len([\"http://127.0.0.1:2380\" "
				 "\"http://127.0.0.1:9999\"]))");
	config_close(&c);

	assert_int_equal(parse(&c, "--initial-advertise-peer-urls",
			       "http://127.0.0.1:2380,http://127.0.0.1:2381", "--initial-cluster",
			       "default=http://127.0.0.1:2380", NULL),
			 CONFIG_RUN);
	assert_int_equal(config_verify_bootstrap(&c, err, sizeof(err)), -1);
	assert_string_equal(err, "--initial-advertise-peer-urls has http://127.0.0.1:2381 but "
				 "missing from --initial-cluster=default=http://127.0.0.1:2380,"
				 "default=http://127.0.0.1:2381");
	config_close(&c);

	assert_int_equal(parse(&c, "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
			       "--initial-cluster",
			       "default=http://127.0.0.1:2380,x=http://127.0.0.1:2380", NULL),
			 CONFIG_RUN);
	assert_int_equal(config_verify_bootstrap(&c, err, sizeof(err)), -1);
	assert_string_equal(err, "initial cluster default=http://127.0.0.1:2380,"
				 "x=http://127.0.0.1:2380 has duplicate url");
	config_close(&c);

	/* Host names are resolved before comparing, as etcd does. */
	assert_int_equal(parse(&c, "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
			       "--initial-cluster", "default=http://localhost:2380", NULL),
			 CONFIG_RUN);
	assert_int_equal(config_verify_bootstrap(&c, err, sizeof(err)), 0);
	config_close(&c);

	/* existing: only the name and duplicates are checked (VerifyJoinExisting). */
	assert_int_equal(parse(&c, "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
			       "--initial-cluster", "default=http://127.0.0.1:9", "--initial-cluster-state",
			       "existing", NULL),
			 CONFIG_RUN);
	assert_false(c.initial_cluster_new);
	assert_int_equal(config_verify_bootstrap(&c, err, sizeof(err)), 0);
	config_close(&c);
}

/* ---- unsupported and accepted flags ---------------------------------------- */

static void test_unsupported(void **state)
{
	static const char *const bad[] = {
		"--cert-file=/x",      "--client-cert-auth",    "--enable-v2",
		"--proxy=on",          "--logger=bogus",        "--log-outputs=stdout",
		"--auth-token=jwt",    "--wal-dir=/w",          "--discovery=http://d",
		"--force-new-cluster", "--unsafe-no-fsync=1",   "--listen-metrics-urls=http://a:1",
		"--cors=http://a:1",   "--enable-pprof",        "--experimental-corrupt-check-time=1m",
		"--config-file=/etc/etcd.yml",
	};
	struct config c;
	size_t i;
	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char want[128];
		size_t l = strcspn(bad[i] + 2, "=");
		assert_int_equal(parse(&c, bad[i], NULL), CONFIG_EBAD);
		snprintf(want, sizeof(want), "raftkv: flag --%.*s is not supported yet", (int)l,
			 bad[i] + 2);
		assert_err_has(want);
		config_close(&c);
	}
}

/* What a drop-in etcd command line may carry runs unchanged. */
static void test_accepted(void **state)
{
	struct config c;
	(void)state;
	assert_int_equal(parse(&c, "--logger=zap", "--log-outputs=stderr", "--enable-v2=false",
			       "--strict-reconfig-check", "--enable-pprof=false", "--cors=*",
			       "--host-whitelist=", "--auth-token=simple", "--proxy=off",
			       "--proxy-dial-timeout=3", "--discovery-fallback=exit",
			       "--experimental-corrupt-check-time=0s", "--client-cert-auth=FALSE",
			       "--cert-file=", "--max-wals=5", "--max-snapshots=0x5", NULL),
			 CONFIG_RUN);
	assert_int_equal(c.n_notices, 0);
	config_close(&c);

	assert_int_equal(parse(&c, "--max-wals=10", "--metrics=extensive", "--v", "-vv", NULL),
			 CONFIG_RUN);
	assert_true(has_notice(&c, true, "--max-wals=10 is accepted for compatibility"));
	assert_true(has_notice(&c, true, "--metrics=extensive"));
	assert_true(has_notice(&c, true, "flag \"-v\" is no longer supported - ignoring."));
	assert_true(has_notice(&c, true, "flag \"-vv\" is no longer supported - ignoring."));
	config_close(&c);
}

/* ---- compaction, logging, limits --------------------------------------------- */

static void test_compaction(void **state)
{
	struct config c;
	(void)state;
	assert_int_equal(parse(&c, "--auto-compaction-retention=5", NULL), CONFIG_RUN);
	assert_int_equal(c.auto_compaction_retention_ms, 5 * 3600000);
	config_close(&c);

	assert_int_equal(parse(&c, "--auto-compaction-retention=1h30m", NULL), CONFIG_RUN);
	assert_int_equal(c.auto_compaction_retention_ms, 90 * 60000);
	config_close(&c);

	assert_int_equal(parse(&c, "--auto-compaction-retention=1.5h", NULL), CONFIG_RUN);
	assert_int_equal(c.auto_compaction_retention_ms, 90 * 60000);
	config_close(&c);

	assert_int_equal(parse(&c, "--auto-compaction-mode=revision",
			       "--auto-compaction-retention=1000", NULL),
			 CONFIG_RUN);
	assert_int_equal(c.auto_compaction_mode, COMPACTION_REVISION);
	assert_int_equal(c.auto_compaction_retention_revs, 1000);
	config_close(&c);

	assert_int_equal(parse(&c, "--auto-compaction-mode=bogus", NULL), CONFIG_EBAD);
	assert_err_has("unknown auto-compaction-mode \"bogus\"");
	config_close(&c);

	assert_int_equal(parse(&c, "--auto-compaction-retention=abc", NULL), CONFIG_EBAD);
	assert_err_has("error parsing CompactionRetention: time: invalid duration \"abc\"");
	config_close(&c);

	assert_int_equal(parse(&c, "--auto-compaction-retention=-1", NULL), CONFIG_EBAD);
	assert_err_has("error parsing CompactionRetention: time: missing unit in duration \"-1\"");
	config_close(&c);

	assert_int_equal(parse(&c, "--auto-compaction-retention=1x", NULL), CONFIG_EBAD);
	assert_err_has("time: unknown unit \"x\" in duration \"1x\"");
	config_close(&c);

	assert_int_equal(parse(&c, "--auto-compaction-mode=revision",
			       "--auto-compaction-retention=1h", NULL),
			 CONFIG_EBAD);
	config_close(&c);
}

static void test_log_level(void **state)
{
	struct config c;
	(void)state;
	assert_int_equal(parse(&c, "--log-level=warn", NULL), CONFIG_RUN);
	assert_string_equal(c.log_level, "warn");
	config_close(&c);
	assert_int_equal(parse(&c, "--log-level=warn", "--debug", NULL), CONFIG_RUN);
	assert_string_equal(c.log_level, "debug");
	config_close(&c);
	assert_int_equal(parse(&c, "--log-level=bogus", NULL), CONFIG_EBAD);
	assert_err_has("unknown log level \"bogus\"");
	config_close(&c);
}

static void test_limits_and_durations(void **state)
{
	struct config c;
	(void)state;
	assert_int_equal(parse(&c, "--quota-backend-bytes=10000000000",
			       "--max-request-bytes=20000000", "--max-concurrent-streams=0x10",
			       "--grpc-keepalive-min-time=1.5s", "--grpc-keepalive-interval=0",
			       "--grpc-keepalive-timeout=1h1m1s",
			       "--experimental-warning-apply-duration=1\xc2\xb5s",
			       "--experimental-watch-progress-notify-interval=.5s", NULL),
			 CONFIG_RUN);
	assert_true(has_notice(&c, true, "backend quota 10000000000 exceeds maximum recommended "
					 "quota 8589934592"));
	assert_true(has_notice(&c, true, "MaxRequestBytes 20000000 exceeds maximum recommended "
					 "size 10485760"));
	assert_int_equal(c.max_concurrent_streams, 16);
	assert_int_equal(c.grpc_keepalive_min_time_ms, 1500);
	assert_int_equal(c.grpc_keepalive_interval_ms, 0);
	assert_int_equal(c.grpc_keepalive_timeout_ms, 3661000);
	assert_int_equal(c.warning_apply_ms, 1); /* sub-ms rounds up, never to 0 */
	assert_int_equal(c.watch_progress_notify_ms, 500);
	config_close(&c);

	assert_int_equal(parse(&c, "--grpc-keepalive-timeout=2562048h", NULL), CONFIG_EUSAGE);
	config_close(&c);
	assert_int_equal(parse(&c, "--grpc-keepalive-timeout=2562047h", NULL), CONFIG_RUN);
	config_close(&c);

	/* Go's fraction scale is a float64 (found by fuzz_config: ours was a
	 * u64 that wrapped past 10^19, here 10^30, into 0.0000...09999h being
	 * 7 s instead of 0.036 ns; wrapped to 0 it made inf, cast to u64). */
	assert_int_equal(parse(&c, "--grpc-keepalive-timeout=1s0.000000000000009999999999999999h",
			       "--grpc-keepalive-min-time=2."
			       "0000000000000000000000000000000000000000000000000"
			       "00000000000000000000000000000000000000000000000005s", NULL),
			 CONFIG_RUN);
	assert_int_equal(c.grpc_keepalive_timeout_ms, 1000);
	assert_int_equal(c.grpc_keepalive_min_time_ms, 2000);
	config_close(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_defaults, clean_env),
		cmocka_unit_test_setup(test_flag_forms, clean_env),
		cmocka_unit_test_setup(test_bool_forms, clean_env),
		cmocka_unit_test_setup(test_syntax_errors, clean_env),
		cmocka_unit_test_setup(test_args_help_version, clean_env),
		cmocka_unit_test_setup(test_numbers, clean_env),
		cmocka_unit_test_setup(test_timing_validation, clean_env),
		cmocka_unit_test_setup(test_env, clean_env),
		cmocka_unit_test_setup(test_env_conflict, clean_env),
		cmocka_unit_test_setup(test_env_bad_value, clean_env),
		cmocka_unit_test_setup(test_url_errors, clean_env),
		cmocka_unit_test_setup(test_url_lists, clean_env),
		cmocka_unit_test_setup(test_cluster_default, clean_env),
		cmocka_unit_test_setup(test_cluster_parse, clean_env),
		cmocka_unit_test_setup(test_cluster_empty_names, clean_env),
		cmocka_unit_test_setup(test_cluster_verify, clean_env),
		cmocka_unit_test_setup(test_unsupported, clean_env),
		cmocka_unit_test_setup(test_accepted, clean_env),
		cmocka_unit_test_setup(test_compaction, clean_env),
		cmocka_unit_test_setup(test_log_level, clean_env),
		cmocka_unit_test_setup(test_limits_and_durations, clean_env),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * main: the raftkv member process.  Parses etcd's flags (config.c), brings
 * the modules up in dependency order on one libuv loop, runs it, and takes
 * everything down again in the reverse order on SIGTERM/SIGINT.
 *
 * Startup: config → identity (node_identity: etcd's member and cluster ids,
 * or the data dir's) → listener (binds the client port; nothing is served
 * before the loop runs) → mvcc + kvs → fsm → node_init → prop → node_start
 * (raft loads the snapshot and log; the fsm may call prop from then on, so
 * prop exists first).  Any failure prints one line and exits 1 before the
 * loop ever runs.
 *
 * Shutdown (first signal): stop accepting clients, close the raft node
 * (it lets pending writes finish, hands leadership to another voter and
 * closes libraft), fail what is still queued with "server stopped", close
 * the client connections, then every remaining handle; uv_run returns and
 * we exit 0.  A second signal, or a shutdown that overruns its deadline,
 * exits 1 at once: what Raft already persisted is safe either way.
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#include "lib/err.h"
#include "lib/log.h"
#include "server/config.h"
#include "server/forward.h"
#include "server/fsm.h"
#include "server/kvs.h"
#include "server/listener.h"
#include "server/metrics.h"
#include "server/mvcc.h"
#include "server/node.h"
#include "server/prop.h"
#include "server/rpc.h"
#include "server/server.h"
#include "server/svc.h"
#include "server/watch.h"

/* node.c's identity file: its absence is what makes a data dir new. */
#define MAIN_ID_FILE "raftkv-identity"

#if defined(__x86_64__)
#define MAIN_ARCH "amd64"
#elif defined(__aarch64__)
#define MAIN_ARCH "arm64"
#elif defined(__i386__)
#define MAIN_ARCH "386"
#elif defined(__arm__)
#define MAIN_ARCH "arm"
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define MAIN_ARCH "ppc64le"
#elif defined(__s390x__)
#define MAIN_ARCH "s390x"
#elif defined(__riscv) && __riscv_xlen == 64
#define MAIN_ARCH "riscv64"
#else
#define MAIN_ARCH "unknown"
#endif

#ifndef RAFTKV_GIT_SHA
#define RAFTKV_GIT_SHA "Not provided"
#endif

static struct config main_cfg;
static struct server main_srv;
static struct raft_fsm main_fsm;
static bool main_fsm_inited;
static uv_signal_t main_sigterm, main_sigint;
static uv_timer_t main_deadline;


/* etcd --version's lines, with ours first. */
static void main_print_version(void)
{
	printf("raftkv Version: %s\n", RAFTKV_VERSION);
	printf("etcd Version: %s\n", RAFTKV_ETCD_VERSION);
	printf("Git SHA: %s\n", RAFTKV_GIT_SHA);
	printf("Go Version: n/a\n");
	printf("Go OS/Arch: linux/%s\n", MAIN_ARCH);
}

static void main_join(char *buf, size_t size, char **v, int n)
{
	int i;
	buf[0] = '\0';
	for (i = 0; i < n; i++) {
		if (i)
			strncat(buf, ",", size - strlen(buf) - 1);
		strncat(buf, v[i], size - strlen(buf) - 1);
	}
}

static void main_log_config(const struct config *cfg)
{
	char buf[4096];
	int i, j;

	LOGI("raftkv Version: %s (etcd API %s)", RAFTKV_VERSION, RAFTKV_ETCD_VERSION);
	LOGI("name = %s", cfg->name);
	LOGI("data dir = %s", cfg->data_dir);
	LOGI("heartbeat = %ums", cfg->heartbeat_ms);
	LOGI("election = %ums", cfg->election_ms);
	LOGI("snapshot count = %" PRIu64, cfg->snapshot_count);
	main_join(buf, sizeof(buf), cfg->listen_client_urls, cfg->n_listen_client_urls);
	LOGI("listen client URLs = %s", buf);
	main_join(buf, sizeof(buf), cfg->advertise_client_urls, cfg->n_advertise_client_urls);
	LOGI("advertise client URLs = %s", buf);
	main_join(buf, sizeof(buf), cfg->listen_peer_urls, cfg->n_listen_peer_urls);
	LOGI("listen peer URLs = %s", buf);
	main_join(buf, sizeof(buf), cfg->initial_advertise_peer_urls,
		  cfg->n_initial_advertise_peer_urls);
	LOGI("initial advertise peer URLs = %s", buf);
	buf[0] = '\0';
	for (i = 0; i < cfg->n_initial_cluster; i++) {
		const struct config_member *m = &cfg->initial_cluster[i];
		for (j = 0; j < m->n_peer_urls; j++) {
			size_t l = strlen(buf);
			snprintf(buf + l, sizeof(buf) - l, "%s%s=%s", l ? "," : "", m->name,
				 m->peer_urls[j]);
		}
	}
	LOGI("initial cluster = %s (state %s, token %s)", buf,
	     cfg->initial_cluster_new ? "new" : "existing", cfg->initial_cluster_token);
}

/* Flags config.c parses and stores but no module reads yet: say so rather
 * than let a deployment believe it is in force.  Drop a line here when its
 * module starts using the field. */
static void main_warn_unused(const struct config *cfg)
{
	if (cfg->auto_compaction_retention_ms || cfg->auto_compaction_retention_revs)
		LOGW("--auto-compaction-retention=%s: automatic compaction is not implemented "
		     "yet; compact with etcdctl compact",
		     cfg->auto_compaction_retention);
	if (cfg->max_concurrent_streams != UINT32_MAX)
		LOGW("--max-concurrent-streams=%u is not enforced yet", cfg->max_concurrent_streams);
	if (cfg->grpc_keepalive_min_time_ms != 5000 || cfg->grpc_keepalive_interval_ms != 7200000 ||
	    cfg->grpc_keepalive_timeout_ms != 20000)
		LOGW("--grpc-keepalive-* settings are not used yet (TCP keepalive is on)");
	if (!cfg->enable_grpc_gateway)
		LOGW("--enable-grpc-gateway=false is not honoured yet");
	if (cfg->warning_apply_ms != 100)
		LOGW("--experimental-warning-apply-duration is not used yet");
}

/* A data dir is new until node.c has written its identity file there. */
static bool main_data_dir_is_new(const char *dir)
{
	char path[4096];
	struct stat st;
	int l = snprintf(path, sizeof(path), "%s/%s", dir, MAIN_ID_FILE);
	if (l < 0 || (size_t)l >= sizeof(path))
		return false; /* node_init reports the over-long path */
	return stat(path, &st) != 0 && errno == ENOENT;
}

/* The one line a failed start ends with; modules log the details first. */
static int main_fail(const char *what, int err)
{
	fprintf(stderr, "raftkv: cannot start: %s failed (%s)\n", what, kv_err_name(err));
	return 1;
}

/* --- shutdown --------------------------------------------------------------- */

static void main_close_any(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h)) {
		LOGD("closing a leftover handle of type %s", uv_handle_type_name(h->type));
		uv_close(h, NULL);
	}
}

static void main_listener_freed(void *arg)
{
	(void)arg;
	main_srv.listener = NULL;
	if (main_fsm_inited) {
		fsm_close(&main_fsm);
		main_fsm_inited = false;
	}
	/* Our own handles, then anything a module left open, so uv_run ends. */
	uv_close((uv_handle_t *)&main_sigterm, NULL);
	uv_close((uv_handle_t *)&main_sigint, NULL);
	uv_close((uv_handle_t *)&main_deadline, NULL);
	uv_walk(main_srv.loop, main_close_any, NULL);
}

static void main_node_closed(struct node *n)
{
	(void)n;
	LOGI("raft node closed");
	/* Commands queued but never handed to raft: nobody will apply them. */
	prop_fail_all(&main_srv.prop, -KV_ESTOPPED);
	prop_close(&main_srv.prop);
	if (main_srv.listener)
		listener_free(main_srv.listener, main_listener_freed, NULL);
	else
		main_listener_freed(NULL);
}

static void main_deadline_cb(uv_timer_t *t)
{
	(void)t;
	LOGE("shutdown did not finish in time: exiting now");
	_exit(1);
}

static void main_shutdown(int signum)
{
	/* Bounded: node_close drains for up to 2 election timeouts, then
	 * transfers leadership; beyond this something is stuck. */
	uint64_t deadline = 10000 + 3 * (uint64_t)main_cfg.election_ms;

	LOGI("received %s signal, shutting down...", strsignal(signum));
	main_srv.stopping = true;
	uv_timer_start(&main_deadline, main_deadline_cb, deadline, 0);
	if (main_srv.listener)
		listener_stop(main_srv.listener);
	svc_lease_stop(&main_srv);
	svc_cluster_stop(&main_srv);
	forward_stop(&main_srv); /* relayed calls end "leader changed"/"timed out" */
	node_close(&main_srv.node, main_node_closed);
}

static void main_signal_cb(uv_signal_t *h, int signum)
{
	(void)h;
	if (main_srv.stopping) {
		/* etcd also dies at once on a repeated signal. */
		LOGW("received %s signal again: exiting now", strsignal(signum));
		_exit(1);
	}
	main_shutdown(signum);
}

/* --- startup ---------------------------------------------------------------- */

static int main_start(void)
{
	struct server *srv = &main_srv;
	struct config *cfg = &main_cfg;
	char err[2048];
	int rv;

	srv->loop = uv_default_loop();
	srv->cfg = cfg;

	main_log_config(cfg);
	main_warn_unused(cfg);
	if (main_data_dir_is_new(cfg->data_dir) &&
	    config_verify_bootstrap(cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "raftkv: %s\n", err);
		return 1;
	}
	rv = node_identity(cfg, &srv->cluster_id, &srv->member_id);
	if (rv)
		return main_fail("reading the member identity", rv);
	LOGI("starting member %" PRIx64 " in cluster %" PRIx64, srv->member_id, srv->cluster_id);
	/* Bind the client port before raft touches the data dir, as etcd binds
	 * its listeners first: a busy port then fails fast.  Nothing is
	 * accepted before uv_run, when everything below is in place. */
	rv = listener_new(srv, &srv->listener);
	if (rv)
		return main_fail("listening for clients", rv);

	rv = metrics_init(rpc_method_count());
	if (rv)
		return main_fail("setting up metrics", rv);
	srv->mvcc = mvcc_new();
	if (!srv->mvcc)
		return main_fail("creating the store", -KV_ENOMEM);
	srv->kvs.mvcc = srv->mvcc;
	rv = svc_lease_init(srv); /* the lease table: kvs and fsm use it */
	if (rv == 0)
		rv = svc_cluster_init(srv); /* the member table: fsm fills it */
	if (rv)
		return main_fail("creating the lease table", rv);
	srv->kvs.max_txn_ops = cfg->max_txn_ops;
	rv = watch_hub_new(srv, &srv->watch); /* attaches itself to mvcc */
	if (rv)
		return main_fail("setting up watches", rv);

	rv = server_fsm_init(srv, &main_fsm);
	if (rv)
		return main_fail("setting up the state machine", rv);
	main_fsm_inited = true;
	rv = node_init(&srv->node, srv, &main_fsm);
	if (rv)
		return main_fail("setting up the raft node", rv);
	rv = prop_init(&srv->prop, srv);
	if (rv)
		return main_fail("setting up proposals", rv);
	rv = forward_init(srv); /* a follower's relay to the leader */
	if (rv)
		return main_fail("setting up forwarding", rv);
	rv = node_start(&srv->node);
	if (rv)
		return main_fail("starting raft from the data dir", rv);
	rv = svc_lease_start(srv);
	if (rv)
		return main_fail("starting lease expiry", rv);
	rv = svc_cluster_start(srv);
	if (rv)
		return main_fail("starting the membership timer", rv);

	uv_signal_init(srv->loop, &main_sigterm);
	uv_signal_init(srv->loop, &main_sigint);
	uv_timer_init(srv->loop, &main_deadline);
	uv_signal_start(&main_sigterm, main_signal_cb, SIGTERM);
	uv_signal_start(&main_sigint, main_signal_cb, SIGINT);
	LOGI("ready to serve client requests");
	return 0;
}

int main(int argc, char **argv)
{
	enum log_level level;
	int rv, i;

	/* A client that goes away mid-write must cost an EPIPE, not the process. */
	signal(SIGPIPE, SIG_IGN);
	/* Memory (issue #6).  glibc raises its mmap threshold to the size of
	 * the largest block freed (up to 32 MiB), so after the first snapshot
	 * image (one block the size of the store) such blocks came from the
	 * heap and stayed there once freed.  A fixed threshold keeps the
	 * large ones (images, loaded segments) mmaps given back when freed.
	 * 4 MiB, not lower: buffers that every loop turn grows and frees
	 * (connection output under watch fan-out: a few MiB per connection
	 * and turn with 100 watchers on it; raft entries) stay on the heap,
	 * where they are reused without page faults (1 MiB left 60% of the
	 * server's CPU under a 1000-watcher fan-out in page faults and
	 * copies: 3.9M events/s, 9.8M with 4 MiB; 256 KiB had cost 30% in an
	 * earlier design), and up to 4 MiB free at the top of the heap is
	 * kept for the next turn rather than trimmed (a snapshot ends with
	 * malloc_trim anyway).  The libuv threads (disk I/O)
	 * allocate little: one arena for them all. */
	mallopt(M_MMAP_THRESHOLD, 4 << 20);
	mallopt(M_TRIM_THRESHOLD, 4 << 20);
	mallopt(M_ARENA_MAX, 2);

	rv = config_parse(&main_cfg, argc, argv);
	switch (rv) {
	case CONFIG_RUN:
		break;
	case CONFIG_DONE:
		config_close(&main_cfg);
		return 0;
	case CONFIG_VERSION:
		main_print_version();
		config_close(&main_cfg);
		return 0;
	case CONFIG_EUSAGE:
		config_close(&main_cfg);
		return 2;
	default:
		config_close(&main_cfg);
		return 1;
	}
	if (log_level_parse(main_cfg.log_level, &level) == 0)
		log_threshold = level;
	for (i = 0; i < main_cfg.n_notices; i++) {
		if (main_cfg.notices[i].warning)
			LOGW("%s", main_cfg.notices[i].text);
		else
			LOGI("%s", main_cfg.notices[i].text);
	}

	rv = main_start();
	if (rv)
		return rv; /* raft may hold files open: exit, do not unwind */

	uv_run(main_srv.loop, UV_RUN_DEFAULT);

	if (uv_loop_close(main_srv.loop) != 0)
		LOGW("some libuv handles were still open at exit");
	svc_lease_free(&main_srv);
	svc_cluster_free(&main_srv);
	forward_free(&main_srv);
	watch_hub_free(main_srv.watch);
	mvcc_free(main_srv.mvcc);
	config_close(&main_cfg);
	LOGI("stopped");
	return 0;
}

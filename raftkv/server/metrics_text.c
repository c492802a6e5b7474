/*
 * metrics_text: GET /metrics, the Prometheus text exposition (format
 * 0.0.4) of the counters in metrics.c and of gauges read from the modules
 * at scrape time.  It follows the Go client's output, which etcd serves:
 * families with HELP and TYPE lines, etcd's names and texts, values as Go's
 * strconv.FormatFloat(v, 'g', -1, 64), so a scrape of raftkv reads like a
 * scrape of etcd.
 */
#include "server/metrics.h"

#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "server/mvcc.h"
#include "server/rpc.h"
#include "server/server.h"
#include "server/watch.h"

/* Go's FormatFloat(v, 'g', -1, 64): the shortest digits that read back as
 * v; %e form when the decimal exponent is < -4 or >= 6 (Go decides with a
 * precision of 6 when formatting shortest), so 2147483648 is 2.147483648e+09. */
static void metrics_fmt_float(char *out, size_t outlen, double v)
{
	char e[40];
	int digits, exp;

	if (isnan(v)) {
		snprintf(out, outlen, "NaN");
		return;
	}
	if (isinf(v)) {
		snprintf(out, outlen, v > 0 ? "+Inf" : "-Inf");
		return;
	}
	if (v == 0) {
		snprintf(out, outlen, "0");
		return;
	}
	for (digits = 1; digits <= 17; digits++) {
		snprintf(e, sizeof(e), "%.*e", digits - 1, v);
		if (strtod(e, NULL) == v)
			break;
	}
	exp = atoi(strchr(e, 'e') + 1);
	if (exp < -4 || exp >= 6) {
		snprintf(out, outlen, "%s", e);
		return;
	}
	snprintf(out, outlen, "%.*f", digits - 1 - exp > 0 ? digits - 1 - exp : 0, v);
}

struct metrics_out {
	FILE *f;
};

static void metrics_family(struct metrics_out *o, const char *name, const char *type, const char *help)
{
	fprintf(o->f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void metrics_sample(struct metrics_out *o, const char *name, const char *labels, double v)
{
	char num[48];

	metrics_fmt_float(num, sizeof(num), v);
	if (labels && *labels)
		fprintf(o->f, "%s{%s} %s\n", name, labels, num);
	else
		fprintf(o->f, "%s %s\n", name, num);
}

static void metrics_one(struct metrics_out *o, const char *name, const char *type, const char *help,
			double v)
{
	metrics_family(o, name, type, help);
	metrics_sample(o, name, NULL, v);
}

static const char *const metrics_code_names[METRICS_GRPC_CODES] = {
	"OK",       "Canceled",          "Unknown",          "InvalidArgument", "DeadlineExceeded",
	"NotFound", "AlreadyExists",     "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
	"Aborted",  "OutOfRange",        "Unimplemented",    "Internal",        "Unavailable",
	"DataLoss", "Unauthenticated",
};

static const char *metrics_grpc_type(enum rpc_kind k)
{
	return k == RPC_UNARY ? "unary" : k == RPC_SERVER_STREAM ? "server_stream" : "bidi_stream";
}

/* "/etcdserverpb.KV/Range" -> grpc_method="Range",grpc_service="etcdserverpb.KV" */
static void metrics_method_labels(char *out, size_t outlen, const struct rpc_method *m)
{
	const char *path = m->path + 1;
	const char *slash = strchr(path, '/');
	int svc_len = slash ? (int)(slash - path) : (int)strlen(path);

	snprintf(out, outlen, "grpc_method=\"%s\",grpc_service=\"%.*s\",grpc_type=\"%s\"",
		 slash ? slash + 1 : "", svc_len, path, metrics_grpc_type(m->kind));
}

static void metrics_grpc(struct metrics_out *o, const char *name, const char *help, int which)
{
	char labels[256], full[320];
	size_t i;
	int c;

	metrics_family(o, name, "counter", help);
	for (i = 0; i < metrics_n_methods; i++) {
		const struct metrics_grpc_method *g = &metrics.grpc[i];

		metrics_method_labels(labels, sizeof(labels), rpc_method_at(i));
		if (which == 0) {
			for (c = 0; c < METRICS_GRPC_CODES; c++) {
				snprintf(full, sizeof(full), "grpc_code=\"%s\",%s", metrics_code_names[c],
					 labels);
				metrics_sample(o, name, full, (double)g->handled[c]);
			}
			continue;
		}
		metrics_sample(o, name, labels,
			       (double)(which == 1 ? g->msg_received : which == 2 ? g->msg_sent : g->started));
	}
}

struct metrics_proc {
	double cpu_seconds;
	double start_time;
	double vsize;
	double rss;
	double open_fds;
	double max_fds;
	double max_vm;
};

/* /proc is memory, not disk: reading it on the loop is as cheap as a
 * syscall or two, like the Go client's process collector. */
static void metrics_proc_read(struct metrics_proc *p)
{
	char buf[1024], *s;
	unsigned long long utime = 0, stime = 0, start = 0, vsize = 0, btime = 0;
	long long rss = 0;
	long ticks = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	struct rlimit rl;
	FILE *f;
	DIR *d;
	struct dirent *de;

	memset(p, 0, sizeof(*p));
	if ((f = fopen("/proc/self/stat", "r"))) {
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);

		buf[n] = '\0';
		fclose(f);
		/* after "pid (comm) ": comm may hold spaces, so start at the last ')' */
		s = strrchr(buf, ')');
		if (s && sscanf(s + 2,
				"%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d "
				"%*d %*d %llu %llu %lld",
				&utime, &stime, &start, &vsize, &rss) == 5) {
			p->cpu_seconds = (double)(utime + stime) / (double)ticks;
			p->vsize = (double)vsize;
			p->rss = (double)rss * (double)page;
		}
	}
	if ((f = fopen("/proc/stat", "r"))) {
		while (fgets(buf, sizeof(buf), f))
			if (sscanf(buf, "btime %llu", &btime) == 1)
				break;
		fclose(f);
	}
	p->start_time = (double)btime + (double)start / (double)ticks;
	if ((d = opendir("/proc/self/fd"))) {
		while ((de = readdir(d)))
			if (de->d_name[0] != '.')
				p->open_fds++;
		closedir(d);
		p->open_fds--; /* the directory stream itself */
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		p->max_fds = rl.rlim_cur == RLIM_INFINITY ? 18446744073709551615.0 : (double)rl.rlim_cur;
	if (getrlimit(RLIMIT_AS, &rl) == 0)
		p->max_vm = rl.rlim_cur == RLIM_INFINITY ? 18446744073709551615.0 : (double)rl.rlim_cur;
}

static bool metrics_self_learner(const struct server *srv)
{
	const struct member *m = members_find(&srv->members, srv->member_id);

	return m && m->is_learner;
}

static void metrics_write(struct metrics_out *o, struct server *srv)
{
	struct watch_stats ws;
	struct metrics_proc p;
	char label[96];
	int64_t quota = srv->cfg->quota_backend_bytes;

	memset(&ws, 0, sizeof(ws));
	if (srv->watch)
		watch_hub_stats(srv->watch, &ws);
	metrics_proc_read(&p);
	if (quota == 0)
		quota = 2147483648LL;

	metrics_family(o, "etcd_cluster_version", "gauge",
		       "Which version is running. 1 for 'cluster_version' label with current cluster version");
	metrics_sample(o, "etcd_cluster_version", "cluster_version=\"3.4\"", 1);
	metrics_one(o, "etcd_debugging_lease_granted_total", "counter",
		    "The total number of granted leases.", (double)metrics.lease_granted);
	metrics_one(o, "etcd_debugging_lease_renewed_total", "counter",
		    "The number of renewed leases seen by the leader.", (double)metrics.lease_renewed);
	metrics_one(o, "etcd_debugging_lease_revoked_total", "counter",
		    "The total number of revoked leases.", (double)metrics.lease_revoked);
	metrics_one(o, "etcd_debugging_mvcc_compact_revision", "gauge",
		    "The revision of the last compaction in store.",
		    srv->mvcc && mvcc_compact_rev(srv->mvcc) > 0 ? (double)mvcc_compact_rev(srv->mvcc) : -1);
	metrics_one(o, "etcd_debugging_mvcc_current_revision", "gauge", "The current revision of store.",
		    srv->mvcc ? (double)mvcc_rev(srv->mvcc) : 0);
	metrics_one(o, "etcd_debugging_mvcc_events_total", "counter",
		    "Total number of events sent by this member.", (double)ws.events);
	metrics_one(o, "etcd_debugging_mvcc_keys_total", "gauge", "Total number of keys.",
		    srv->mvcc ? (double)mvcc_live_keys(srv->mvcc) : 0);
	metrics_one(o, "etcd_debugging_mvcc_slow_watcher_total", "gauge",
		    "Total number of unsynced slow watchers.", (double)ws.unsynced);
	metrics_one(o, "etcd_debugging_mvcc_watch_stream_total", "gauge", "Total number of watch streams.",
		    (double)ws.streams);
	metrics_one(o, "etcd_debugging_mvcc_watcher_total", "gauge", "Total number of watchers.",
		    (double)ws.watchers);
	metrics_one(o, "etcd_debugging_server_lease_expired_total", "counter",
		    "The total number of expired leases.", (double)metrics.lease_expired);
	metrics_one(o, "etcd_mvcc_db_total_size_in_bytes", "gauge",
		    "Total size of the underlying database physically allocated in bytes.",
		    srv->mvcc ? (double)mvcc_bytes(srv->mvcc) : 0);
	metrics_one(o, "etcd_mvcc_db_total_size_in_use_in_bytes", "gauge",
		    "Total size of the underlying database logically in use in bytes.",
		    srv->mvcc ? (double)mvcc_bytes(srv->mvcc) : 0);
	metrics_one(o, "etcd_mvcc_delete_total", "counter", "Total number of deletes seen by this member.",
		    (double)metrics.mvcc_delete);
	metrics_one(o, "etcd_mvcc_put_total", "counter", "Total number of puts seen by this member.",
		    (double)metrics.mvcc_put);
	metrics_one(o, "etcd_mvcc_range_total", "counter", "Total number of ranges seen by this member.",
		    (double)metrics.mvcc_range);
	metrics_one(o, "etcd_mvcc_txn_total", "counter", "Total number of txns seen by this member.",
		    (double)metrics.mvcc_txn);
	metrics_one(o, "etcd_network_client_grpc_received_bytes_total", "counter",
		    "The total number of bytes received from grpc clients.",
		    (double)metrics.grpc_received_bytes);
	metrics_one(o, "etcd_network_client_grpc_sent_bytes_total", "counter",
		    "The total number of bytes sent to grpc clients.", (double)metrics.grpc_sent_bytes);
	metrics_family(o, "etcd_server_client_requests_total", "counter",
		       "The total number of client requests per client version.");
	metrics_sample(o, "etcd_server_client_requests_total", "client_api_version=\"3.4\",type=\"stream\"",
		       (double)metrics.client_requests_stream);
	metrics_sample(o, "etcd_server_client_requests_total", "client_api_version=\"3.4\",type=\"unary\"",
		       (double)metrics.client_requests_unary);
	metrics_one(o, "etcd_server_has_leader", "gauge",
		    "Whether or not a leader exists. 1 is existence, 0 is not.",
		    node_leader(&srv->node) ? 1 : 0);
	metrics_one(o, "etcd_server_health_failures", "counter", "The total number of failed health checks",
		    (double)metrics.health_failures);
	metrics_one(o, "etcd_server_health_success", "counter",
		    "The total number of successful health checks", (double)metrics.health_success);
	metrics_family(o, "etcd_server_id", "gauge",
		       "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.");
	snprintf(label, sizeof(label), "server_id=\"%" PRIx64 "\"", srv->member_id);
	metrics_sample(o, "etcd_server_id", label, 1);
	metrics_one(o, "etcd_server_is_leader", "gauge",
		    "Whether or not this member is a leader. 1 if is, 0 otherwise.",
		    node_is_leader(&srv->node) ? 1 : 0);
	metrics_one(o, "etcd_server_is_learner", "gauge",
		    "Whether or not this member is a learner. 1 if is, 0 otherwise.",
		    metrics_self_learner(srv) ? 1 : 0);
	metrics_one(o, "etcd_server_leader_changes_seen_total", "counter", "The number of leader changes seen.",
		    (double)metrics.leader_changes);
	metrics_one(o, "etcd_server_proposals_applied_total", "gauge",
		    "The total number of consensus proposals applied.",
		    (double)node_applied_index(&srv->node));
	metrics_one(o, "etcd_server_proposals_committed_total", "gauge",
		    "The total number of consensus proposals committed.",
		    (double)node_commit_index(&srv->node));
	metrics_one(o, "etcd_server_proposals_failed_total", "counter", "The total number of failed proposals seen.",
		    (double)metrics.proposals_failed);
	metrics_one(o, "etcd_server_proposals_pending", "gauge",
		    "The current number of pending proposals to commit.", (double)prop_pending(&srv->prop));
	metrics_one(o, "etcd_server_quota_backend_bytes", "gauge", "Current backend storage quota size in bytes.",
		    (double)quota);
	metrics_one(o, "etcd_server_read_indexes_failed_total", "counter",
		    "The total number of failed read indexes seen.", (double)metrics.read_indexes_failed);
	metrics_one(o, "etcd_server_snapshot_apply_in_progress_total", "gauge",
		    "1 if the server is applying the incoming snapshot. 0 if none.",
		    (double)metrics.snapshot_apply_in_progress);
	metrics_family(o, "etcd_server_version", "gauge",
		       "Which version is running. 1 for 'server_version' label with current version.");
	metrics_sample(o, "etcd_server_version", "server_version=\"" RAFTKV_ETCD_VERSION "\"", 1);
	if (metrics.grpc) {
		metrics_grpc(o, "grpc_server_handled_total",
			     "Total number of RPCs completed on the server, regardless of success or failure.", 0);
		metrics_grpc(o, "grpc_server_msg_received_total",
			     "Total number of RPC stream messages received on the server.", 1);
		metrics_grpc(o, "grpc_server_msg_sent_total",
			     "Total number of gRPC stream messages sent by the server.", 2);
		metrics_grpc(o, "grpc_server_started_total", "Total number of RPCs started on the server.", 3);
	}
	metrics_one(o, "os_fd_limit", "gauge", "The file descriptor limit.", p.max_fds);
	metrics_one(o, "os_fd_used", "gauge", "The number of used file descriptors.", p.open_fds);
	metrics_one(o, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
		    p.cpu_seconds);
	metrics_one(o, "process_max_fds", "gauge", "Maximum number of open file descriptors.", p.max_fds);
	metrics_one(o, "process_open_fds", "gauge", "Number of open file descriptors.", p.open_fds);
	metrics_one(o, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", p.rss);
	metrics_one(o, "process_start_time_seconds", "gauge",
		    "Start time of the process since unix epoch in seconds.", p.start_time);
	metrics_one(o, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", p.vsize);
	metrics_one(o, "process_virtual_memory_max_bytes", "gauge",
		    "Maximum amount of virtual memory available in bytes.", p.max_vm);
	metrics_one(o, "raftkv_snapshots_restored_total", "counter",
		    "Raft snapshots restored into the store: at start-up, or installed from the leader.",
		    (double)metrics.snapshots_restored);
	metrics_one(o, "raftkv_snapshots_saved_total", "counter", "Raft snapshots taken by this member.",
		    (double)metrics.snapshots_saved);
}

int metrics_render(struct server *srv, char **out, size_t *len)
{
	struct metrics_out o;
	char *buf = NULL;
	size_t n = 0;

	o.f = open_memstream(&buf, &n);
	if (!o.f)
		return -KV_ENOMEM;
	metrics_write(&o, srv);
	if (fclose(o.f) != 0 || !buf) {
		free(buf);
		return -KV_ENOMEM;
	}
	*out = buf;
	*len = n;
	return 0;
}

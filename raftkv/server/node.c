/*
 * node: raftkv's one door to libraft 0.22.1 (legacy v0 API).
 *
 * Data path: prop hands node_apply() one packed entry (cmd.h) per loop
 * iteration and node_barrier() one barrier for the reads of an iteration;
 * libraft persists and replicates them, calls the fsm (fsm.c) for every
 * committed entry, then our request callbacks, which map raft status codes
 * to KV_E* codes for prop.
 *
 * Around that: the member identity (etcd's ids, kept in an identity file in
 * the data dir next to libraft's own files), bootstrap of a new data dir
 * from --initial-cluster, a timer that polls raft_state()/raft_leader()
 * because 0.22.1 has no state callback, a watch on free disk space and on
 * commits that stop moving, the storage health (node_storage_error: the
 * log cannot grow, or entries stop being persisted; see "storage health"),
 * and the shutdown order from the libraft notes:
 * refuse new writes, let pending callbacks drain (bounded), hand leadership
 * to another voter, raft_close, then free the uv backend and transport.
 *
 * Everything after node_start() runs on the loop and never blocks it; the
 * identity file is written synchronously in node_init(), before the loop
 * runs.
 */
#include "server/node.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sha1.h>
#include <sha2.h>

#include "lib/err.h"
#include "lib/log.h"
#include "server/cmd.h"
#include "server/config.h"
#include "server/members.h"
#include "server/metrics.h"
#include "server/node_guard.h"
#include "server/segcheck.h"
#include "server/server.h"

/* The identity file: our ids, written once per start (boot counter). */
#define NODE_ID_FILE "raftkv-identity"
#define NODE_ID_TMP "raftkv-identity.tmp"
#define NODE_ID_MAGIC "raftkv-identity"
/* 2: a last line "checksum=<sha256 of the lines before it>", so that a
 * damaged file is refused at start (a flipped bit in an id would otherwise
 * read as another cluster's).  Files of format 1 (no checksum) are read and
 * rewritten as 2 by the next start. */
#define NODE_ID_FORMAT 2
#define NODE_ID_CHECKSUM "checksum="
#define NODE_ID_MAX_BYTES 65536

/* Proposal seqs: boot counter above, per-run counter below.  2^44 proposals
 * per run is years at any rate this server reaches. */
#define NODE_SEQ_BITS 44

/* Snapshot policy.  libraft triggers on a count of entries (we pass
 * --snapshot-count, etcd's meaning: entries since the last snapshot), but it
 * keeps every entry since the last snapshot in memory and a restart replays
 * them, and one of our entries packs up to ~1 MiB of requests: 100000 such
 * entries would be 100 GB.  So node also counts the bytes applied and asks
 * for a snapshot early once they pass max(NODE_LOG_BYTES_MIN, size of the
 * last store image / NODE_LOG_STORE_DIV): the log held in memory (and
 * replayed by a restart) stays within half the state size, for a snapshot
 * cost (the image is encoded on the loop, ~3-5 ms per MB) of about two
 * bytes encoded per byte written under a steady write load.
 *
 * Once writes stop (nothing applied for NODE_IDLE_MS) with at least
 * NODE_IDLE_LOG_BYTES of log since the last snapshot, one is taken anyway,
 * and a leader shutting down cleanly takes one first: after a burst of
 * writes the memory held falls back to the store itself, and a restart
 * replays (and loads) next to nothing.  Each costs one encode of the store
 * while nothing else is going on.  An idle snapshot keeps only
 * NODE_TRAILING_MIN entries behind it when no follower needs more (a
 * leader's followers all hold its last entry; a follower serves its log
 * only once it leads): the trailing window would otherwise keep up to
 * NODE_TRAILING_BYTES of entries in memory for nobody. */
#define NODE_LOG_BYTES_MIN (4ull << 20)
#define NODE_LOG_STORE_DIV 2
#define NODE_IDLE_MS 1000
#define NODE_IDLE_LOG_BYTES (1ull << 20)
/* Longest a clean shutdown waits for that snapshot to be written. */
#define NODE_CLOSE_SNAPSHOT_MS 3000
/* Entries kept behind a snapshot, so that followers lagging by less catch
 * up from the log instead of an InstallSnapshot: etcd keeps 5000.  Ours
 * pack many requests each, so 5000 of them could hold gigabytes in memory:
 * the window is also capped in bytes, from the average entry size seen
 * since the last snapshot.  (A short window makes installs common; the
 * libraft 0.22.1 crash when one lands during our own snapshot is kept away
 * by node_guard.) */
#define NODE_SNAPSHOT_TRAILING 5000u
#define NODE_TRAILING_BYTES (8ull << 20)
#define NODE_TRAILING_MIN 64u
/* A member alone in its configuration has no follower to catch up: it
 * keeps one entry (a member added later gets a snapshot anyway; trailing 0
 * would be read as an install by libraft's uv backend). */
#define NODE_TRAILING_SOLO 1u

#define NODE_ADDR_MAX 300
#define NODE_DRAIN_POLL_MS 5
#define NODE_TRANSFER_ATTEMPTS 3
/* Free space is checked this often: a full disk must be noticed within
 * about an election timeout (see "storage health"). */
#define NODE_STATFS_EVERY_MS 1000
#define NODE_LOW_SPACE_BYTES (128ull << 20)
#define NODE_WARN_EVERY_MS 30000
/* A member that cannot persist waits this many election timeouts before it
 * campaigns (normally 1 to 2): any other member campaigns first. */
#define NODE_NO_CAMPAIGN_FACTOR 10
#define NODE_DISK_RETRY_MS 250
/* Held entries (see "held entries"): how often they are offered to libraft
 * again, and how long without one accepted before its refusal counts. */
#define NODE_HOLD_RETRY_MS 2
#define NODE_HOLD_MAX_MS 3000

/* The snapshots of a clean shutdown (NODE_SNAPSHOTTING). */
enum node_close_snap {
	NODE_CLOSE_SNAP_TAKE,    /* of what was applied since the last one */
	NODE_CLOSE_SNAP_BARRIER, /* an entry in a fresh segment */
	NODE_CLOSE_SNAP_FINAL,   /* at that entry, once it is committed */
	NODE_CLOSE_SNAP_DONE,
};

enum node_close_step {
	NODE_RUNNING = 0,
	NODE_DRAINING,     /* waiting for pending apply/barrier callbacks */
	NODE_SNAPSHOTTING, /* a leader's last snapshot, so a restart replays nothing */
	NODE_TRANSFERRING, /* raft_transfer in flight */
	NODE_RAFT_CLOSING, /* raft_close called */
	NODE_HANDLES_CLOSING,
	NODE_CLOSED,
};

/* One peer this member opened a raft connection to (see "peer links"). */
struct node_link {
	uint64_t id;
	uint64_t up_since; /* loop time the connection came up; 0: down */
	unsigned gen;      /* connect attempts so far: only the latest counts */
};

struct node_identity_file {
	uint64_t cluster_id;
	uint64_t member_id;
	uint64_t boots;
	char name[256];
	char token[256];
};

struct node_impl {
	char address[NODE_ADDR_MAX]; /* our raft address, host:port */
	bool io_inited, transport_inited, raft_inited, timers_inited;
	uint64_t seq_base;

	enum node_close_step step;
	unsigned pending; /* apply + barrier callbacks still to come */
	uv_timer_t close_timer;
	uint64_t drain_deadline;
	int transfer_attempts;
	uint64_t transfer_deadline;
	struct raft_transfer transfer;
	int handles_open;

	/* state polling */
	int last_state;
	uint64_t last_term;
	uint64_t watch_commit; /* commit index when it last moved */
	uint64_t watch_since;  /* loop time of that move */
	uint64_t last_stall_warn;
	uv_fs_t statfs_req;
	bool statfs_busy;
	uint64_t next_statfs;
	uint64_t last_space_warn;
	uint64_t avail; /* free bytes at the last statfs; UINT64_MAX: unknown */

	/* storage health (node_storage_error) */
	bool no_space;      /* libraft refused an entry: no room to grow the log */
	bool stuck;         /* accepted entries stopped being persisted */
	uint64_t stored;    /* raft last_stored when it last moved */
	uint64_t stored_since;
	uint64_t next_probe;
	uint64_t segment_bytes;  /* size of the log segments libraft prepares */
	uint64_t storage_since;  /* loop time the current storage error began */
	struct raft_transfer storage_transfer;
	bool storage_transfer_busy;
	unsigned transfer_tries; /* hand-offs tried since the error began */
	uint64_t next_transfer;
	bool no_campaign;        /* election timeout stretched */
	int storage_err;         /* node_storage_error at the last tick */

	/* peer links: the TCP transport's own connect, and what came of ours */
	int (*tcp_connect)(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
			   const char *address, raft_uv_connect_cb cb);
	struct node_link *links;
	size_t n_links;

	/* snapshot policy (see NODE_LOG_BYTES_MIN) */
	unsigned threshold;
	uint64_t log_bytes;   /* entry bytes applied since the last image */
	uint64_t log_entries; /* entries applied since the last image */
	unsigned trailing;    /* what libraft was last told */
	uint64_t image_bytes; /* size of the last image taken or restored */
	bool snapshot_soon;   /* threshold lowered to 1 */
	uint64_t applied_at;  /* loop time of the last entry applied */
	uint64_t snapshots;   /* images taken or restored so far */
	uint64_t trimmed;     /* value of snapshots at the last malloc_trim */
	uint64_t close_snapshot_deadline;
	int close_phase;      /* enum node_close_snap */

	struct node_guard guard; /* InstallSnapshot vs our own snapshot */
	bool guard_inited;
	bool seen_leader;     /* the short first-election timeout is over */
	struct raft_barrier snap_barrier; /* node_snapshot_now's */
	bool snap_barrier_busy;

	/* held entries: refused by libraft for want of prepared log space */
	struct node_req *held_head, *held_tail;
	uint64_t held_since; /* loop time of the hold, or of the last one accepted */
	uint64_t holds;      /* times entries had to be held, for the log */
	uv_timer_t hold_timer;
};

/* One request in flight through libraft. */
struct node_req {
	union {
		struct raft_apply apply;
		struct raft_barrier barrier;
	} u;
	struct node *n;
	node_apply_cb cb; /* node_barrier_cb has the same shape */
	void *arg;
	bool barrier;
	struct raft_buffer buf;  /* the entry of an apply, ours until libraft takes it */
	struct node_req *next;   /* held behind this one */
};

static void node_closed(struct node *n);
static void node_snap_barrier_done(struct raft_barrier *req, int status);
static void node_idle_check(struct node *n, uint64_t now);
static void node_hold_timer_cb(uv_timer_t *t);
static void node_statfs_start(struct node *n, uint64_t now);

static struct node_impl *node_impl(const struct node *n)
{
	return n->impl;
}

/* --- identity --------------------------------------------------------- */

static uint64_t node_sha1_u64(const void *data, size_t len)
{
	uint8_t md[SHA1_DIGEST_LENGTH];
	SHA1_CTX ctx;
	uint64_t v = 0;
	int i;

	SHA1Init(&ctx);
	SHA1Update(&ctx, data, len);
	SHA1Final(md, &ctx);
	for (i = 0; i < 8; i++)
		v = (v << 8) | md[i];
	return v;
}

static int node_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* etcd's membership.NewMember(name, peerURLs, token, nil): sha1 over the
 * sorted peer URLs then the token, first 8 bytes big-endian.  The initial
 * cluster passes no time, so every member computes the same ids. */
static uint64_t node_member_id(const struct config_member *m, const char *token)
{
	/* The one derivation: MemberAdd (members.c) gives a joining member the
	 * id this computes from its own flags. */
	return members_id(m->peer_urls, (size_t)(m->n_peer_urls > 0 ? m->n_peer_urls : 0), token);
}

/* etcd's RaftCluster.genID: sha1 over the sorted member ids, each 8 bytes
 * big-endian. */
static uint64_t node_cluster_id(uint64_t *ids, int n)
{
	unsigned char *b;
	uint64_t id;
	int i, j;
	qsort(ids, (size_t)n, sizeof(*ids), node_cmp_u64);
	b = malloc((size_t)n * 8 + 1);
	if (!b)
		return 0;
	for (i = 0; i < n; i++)
		for (j = 0; j < 8; j++)
			b[i * 8 + j] = (unsigned char)(ids[i] >> (56 - 8 * j));
	id = node_sha1_u64(b, (size_t)n * 8);
	free(b);
	return id;
}

static const char *node_cfg_token(const struct config *cfg)
{
	return cfg->initial_cluster_token ? cfg->initial_cluster_token : "etcd-cluster";
}

/* Ids from the flags alone; -KV_EINVAL with the reason logged. */
static int node_identity_from_flags(const struct config *cfg, uint64_t *cluster_id,
				    uint64_t *member_id)
{
	const char *token = node_cfg_token(cfg);
	uint64_t *ids;
	int i, j, self = -1;
	if (cfg->n_initial_cluster <= 0) {
		LOGE("--initial-cluster is empty");
		return -KV_EINVAL;
	}
	ids = calloc((size_t)cfg->n_initial_cluster, sizeof(*ids));
	if (!ids)
		return -KV_ENOMEM;
	for (i = 0; i < cfg->n_initial_cluster; i++) {
		const struct config_member *m = &cfg->initial_cluster[i];
		if (m->n_peer_urls <= 0) {
			LOGE("--initial-cluster: member %s has no peer URL", m->name);
			free(ids);
			return -KV_EINVAL;
		}
		ids[i] = node_member_id(m, token);
		if (ids[i] == 0) {
			LOGE("cannot use 0 as member id (member %s)", m->name);
			free(ids);
			return -KV_EINVAL;
		}
		for (j = 0; j < i; j++) {
			if (ids[j] == ids[i]) {
				LOGE("--initial-cluster: member %s has the same peer URLs as %s "
				     "(member id %016" PRIx64 ")",
				     m->name, cfg->initial_cluster[j].name, ids[i]);
				free(ids);
				return -KV_EINVAL;
			}
		}
		if (self < 0 && strcmp(m->name, cfg->name) == 0)
			self = i;
	}
	if (self < 0) {
		/* etcd's wording (etcdserver/config.go). */
		LOGE("couldn't find local name \"%s\" in the initial cluster configuration",
		     cfg->name);
		free(ids);
		return -KV_EINVAL;
	}
	*member_id = ids[self];
	*cluster_id = node_cluster_id(ids, cfg->n_initial_cluster);
	free(ids);
	return 0;
}

static int node_path(char *out, size_t outlen, const char *dir, const char *file)
{
	int l = snprintf(out, outlen, "%s/%s", dir, file);
	if (l < 0 || (size_t)l >= outlen) {
		LOGE("data dir path too long: %s", dir);
		return -KV_EINVAL;
	}
	return 0;
}

static int node_parse_hex(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	*out = strtoull(s, &end, 16);
	return (errno || end == s || *end) ? -1 : 0;
}

static int node_parse_dec(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	*out = strtoull(s, &end, 10);
	return (errno || end == s || *end) ? -1 : 0;
}

/* 0 and *f filled; 1 when the file does not exist; -KV_E* (logged) when it
 * cannot be read or is not ours. */
static void node_identity_sum(const char *text, size_t len, char hex[2 * SHA256_DIGEST_LENGTH + 1])
{
	uint8_t d[SHA256_DIGEST_LENGTH];
	SHA2_CTX c;
	int i;

	SHA256Init(&c);
	SHA256Update(&c, (const uint8_t *)text, len);
	SHA256Final(d, &c);
	for (i = 0; i < SHA256_DIGEST_LENGTH; i++)
		snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

/* Verifies and strips the checksum line of buf (the file's text); *checked
 * says whether there was one.  A file without it is judged by its format. */
static int node_identity_check(const char *path, char *buf, bool *checked)
{
	char want[2 * SHA256_DIGEST_LENGTH + 1];
	char *line = NULL, *p = buf, *end;

	*checked = false;
	while ((p = strstr(p, "\n" NODE_ID_CHECKSUM))) {
		line = p + 1;
		p = line;
	}
	if (!line)
		return 0;
	node_identity_sum(buf, (size_t)(line - buf), want);
	p = line + strlen(NODE_ID_CHECKSUM);
	end = strchr(p, '\n');
	if (!end || end[1] != '\0' || (size_t)(end - p) != strlen(want) ||
	    memcmp(p, want, strlen(want)) != 0) {
		LOGE("%s is damaged (its checksum does not match its contents); refusing to start",
		     path);
		return -KV_ECORRUPT;
	}
	*line = '\0';
	*checked = true;
	return 0;
}

static int node_identity_read(const char *dir, struct node_identity_file *f)
{
	char path[4096], *buf, *line, *save = NULL;
	uint64_t format = 0;
	bool checked = false;
	int have = 0, fd, rv = 0;
	ssize_t got;
	size_t len = 0;

	if ((rv = node_path(path, sizeof(path), dir, NODE_ID_FILE)))
		return rv;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 1;
		LOGE("cannot open %s: %s", path, strerror(errno));
		return -KV_EIO;
	}
	buf = malloc(NODE_ID_MAX_BYTES + 1);
	if (!buf) {
		close(fd);
		return -KV_ENOMEM;
	}
	while (len < NODE_ID_MAX_BYTES &&
	       (got = read(fd, buf + len, NODE_ID_MAX_BYTES - len)) != 0) {
		if (got < 0) {
			if (errno == EINTR)
				continue;
			LOGE("cannot read %s: %s", path, strerror(errno));
			close(fd);
			free(buf);
			return -KV_EIO;
		}
		len += (size_t)got;
	}
	close(fd);
	buf[len] = '\0';
	memset(f, 0, sizeof(*f));
	if ((rv = node_identity_check(path, buf, &checked))) {
		free(buf);
		return rv;
	}

	line = strtok_r(buf, "\n", &save);
	if (!line || strcmp(line, NODE_ID_MAGIC) != 0) {
		LOGE("%s is not a raftkv identity file: this data dir was not created by "
		     "raftkv (or the file is damaged); refusing to start",
		     path);
		free(buf);
		return -KV_ECORRUPT;
	}
	while ((line = strtok_r(NULL, "\n", &save))) {
		char *eq = strchr(line, '=');
		const char *k = line, *v;
		if (!eq)
			goto bad;
		*eq = '\0';
		v = eq + 1;
		if (strcmp(k, "format") == 0) {
			if (node_parse_dec(v, &format))
				goto bad;
			if (format == 1 && !checked) {
				/* before checksums: read as it is */
			} else if (format != NODE_ID_FORMAT || !checked) {
				if (format == NODE_ID_FORMAT)
					goto bad; /* its checksum line is gone */
				LOGE("%s has format version %" PRIu64 ", this raftkv reads only "
				     "versions 1 and %d (written by a newer raftkv, or damaged?); "
				     "refusing to start",
				     path, format, NODE_ID_FORMAT);
				free(buf);
				return -KV_ECORRUPT;
			}
			have |= 1;
		} else if (strcmp(k, "cluster-id") == 0) {
			if (node_parse_hex(v, &f->cluster_id))
				goto bad;
			have |= 2;
		} else if (strcmp(k, "member-id") == 0) {
			if (node_parse_hex(v, &f->member_id))
				goto bad;
			have |= 4;
		} else if (strcmp(k, "boots") == 0) {
			if (node_parse_dec(v, &f->boots))
				goto bad;
			have |= 8;
		} else if (strcmp(k, "name") == 0) {
			snprintf(f->name, sizeof(f->name), "%s", v);
		} else if (strcmp(k, "token") == 0) {
			snprintf(f->token, sizeof(f->token), "%s", v);
		}
		/* Unknown keys of the same format are ignored: room to grow. */
	}
	if (have != 15 || f->member_id == 0)
		goto bad;
	free(buf);
	return 0;
bad:
	LOGE("%s is damaged (missing or invalid fields); refusing to start", path);
	free(buf);
	return -KV_ECORRUPT;
}

static int node_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rv = 0;
	if (fd < 0)
		return -1;
	if (fsync(fd) != 0)
		rv = -1;
	close(fd);
	return rv;
}

/* write-to-temp, fsync, rename, fsync dir: the file is either the old one
 * or the new one after a crash, never a torn mix. */
static int node_identity_write(const char *dir, const struct node_identity_file *f)
{
	char tmp[4096], path[4096], text[1024];
	int fd, len, rv;
	size_t off = 0;

	if ((rv = node_path(tmp, sizeof(tmp), dir, NODE_ID_TMP)) ||
	    (rv = node_path(path, sizeof(path), dir, NODE_ID_FILE)))
		return rv;
	len = snprintf(text, sizeof(text),
		       "%s\nformat=%d\ncluster-id=%016" PRIx64 "\nmember-id=%016" PRIx64
		       "\nboots=%" PRIu64 "\nname=%s\ntoken=%s\n",
		       NODE_ID_MAGIC, NODE_ID_FORMAT, f->cluster_id, f->member_id, f->boots,
		       f->name, f->token);
	if (len < 0 || (size_t)len + sizeof(NODE_ID_CHECKSUM) + 2 * SHA256_DIGEST_LENGTH + 2 >
			       sizeof(text))
		return -KV_EINVAL;
	len += snprintf(text + len, sizeof(text) - (size_t)len, NODE_ID_CHECKSUM);
	node_identity_sum(text, (size_t)len - strlen(NODE_ID_CHECKSUM), text + len);
	len += 2 * SHA256_DIGEST_LENGTH;
	text[len++] = '\n';
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		goto fail;
	while (off < (size_t)len) {
		ssize_t w = write(fd, text + off, (size_t)len - off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			close(fd);
			goto fail;
		}
		off += (size_t)w;
	}
	if (fsync(fd) != 0) {
		close(fd);
		goto fail;
	}
	if (close(fd) != 0)
		goto fail;
	if (rename(tmp, path) != 0)
		goto fail;
	if (node_fsync_dir(dir) != 0)
		goto fail;
	return 0;
fail:
	LOGE("cannot write %s: %s", path, strerror(errno));
	unlink(tmp);
	return errno == ENOSPC ? -KV_ENOSPACE : -KV_EIO;
}

static bool node_file_exists(const char *dir, const char *file)
{
	char path[4096];
	struct stat st;
	if (node_path(path, sizeof(path), dir, file))
		return false;
	return stat(path, &st) == 0;
}

/* libraft's term/vote files: their presence means the dir has raft state. */
static bool node_has_raft_state(const char *dir)
{
	return node_file_exists(dir, "metadata1") || node_file_exists(dir, "metadata2");
}

int node_identity(const struct config *cfg, uint64_t *cluster_id, uint64_t *member_id)
{
	struct node_identity_file f;
	uint64_t cid = 0, mid = 0;
	int rv, have_file;

	have_file = node_identity_read(cfg->data_dir, &f);
	if (have_file < 0)
		return have_file;
	if (have_file == 1) {
		if (node_has_raft_state(cfg->data_dir)) {
			LOGE("data dir %s holds raft state but no %s: it was not created by "
			     "raftkv or was damaged; refusing to start",
			     cfg->data_dir, NODE_ID_FILE);
			return -KV_ECORRUPT;
		}
		rv = node_identity_from_flags(cfg, &cid, &mid);
		if (rv)
			return rv;
		/* Joining a running cluster: our id is the one MemberAdd derived
		 * from our peer URLs and the token (members.h); the cluster id
		 * comes with the replicated member table (node_learn_cluster_id). */
		*cluster_id = cfg->initial_cluster_new ? cid : 0;
		*member_id = mid;
		return 0;
	}

	/* The data dir decides who we are.  Our own id (peer URLs + token) must
	 * match it: another token or other URLs mean a data dir of another
	 * cluster or member.  The rest of --initial-cluster may differ, as
	 * etcd ignores it on restart: operators list the members added since
	 * the bootstrap, which changes the cluster id the flags would give. */
	rv = node_identity_from_flags(cfg, &cid, &mid);
	if (rv)
		return rv;
	if (mid != f.member_id) {
		LOGE("data dir %s belongs to member %016" PRIx64 " of cluster %016" PRIx64
		     " (name \"%s\", token \"%s\"), but --name/--initial-cluster/"
		     "--initial-cluster-token give member %016" PRIx64 "; refusing to start: use "
		     "the flags this data dir was created with, or another --data-dir",
		     cfg->data_dir, f.member_id, f.cluster_id, f.name, f.token, mid);
		return -KV_EINVAL;
	}
	if (cfg->initial_cluster_new && cid != f.cluster_id)
		LOGW("--initial-cluster differs from the one that bootstrapped cluster %016" PRIx64
		     " (members added or removed since?): ignored, the data dir's membership holds",
		     f.cluster_id);
	*cluster_id = f.cluster_id;
	*member_id = f.member_id;
	return 0;
}

/* mkdir -p with mode 0700 for what we create. */
static int node_mkdir_p(const char *dir)
{
	char *p = strdup(dir), *s;
	struct stat st;
	if (!p)
		return -KV_ENOMEM;
	for (s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0700) != 0 && errno != EEXIST)
			goto fail;
		*s = '/';
	}
	if (mkdir(p, 0700) != 0 && errno != EEXIST)
		goto fail;
	if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		goto fail;
	}
	if (st.st_mode & 077)
		LOGW("data dir %s has permission %04o; the recommended permission is 0700 "
		     "to prevent possible unprivileged access to the data",
		     dir, (unsigned)(st.st_mode & 07777));
	free(p);
	return 0;
fail:
	LOGE("cannot create data dir %s: %s", dir, strerror(errno));
	free(p);
	return -KV_EIO;
}

/* Records this start in the identity file and returns the boot number. */
static int node_identity_record(struct server *srv, uint64_t *boots)
{
	const struct config *cfg = srv->cfg;
	struct node_identity_file f;
	int rv = node_identity_read(cfg->data_dir, &f);
	if (rv < 0)
		return rv;
	if (rv == 1) {
		memset(&f, 0, sizeof(f));
		f.cluster_id = srv->cluster_id;
		f.member_id = srv->member_id;
		snprintf(f.name, sizeof(f.name), "%s", cfg->name);
		snprintf(f.token, sizeof(f.token), "%s", node_cfg_token(cfg));
		if (strchr(f.name, '\n') || strchr(f.token, '\n')) {
			LOGE("--name and --initial-cluster-token must not contain newlines");
			return -KV_EINVAL;
		}
	} else if (f.cluster_id != srv->cluster_id || f.member_id != srv->member_id) {
		LOGE("data dir %s belongs to member %016" PRIx64 " of cluster %016" PRIx64
		     ", not %016" PRIx64 " of %016" PRIx64 "; refusing to start",
		     cfg->data_dir, f.member_id, f.cluster_id, srv->member_id, srv->cluster_id);
		return -KV_EINVAL;
	}
	f.boots++;
	rv = node_identity_write(cfg->data_dir, &f);
	if (rv)
		return rv;
	*boots = f.boots;
	return 0;
}

/* --- addresses ---------------------------------------------------------- */

/* host:port of a URL, IPv6 hosts in brackets as libraft's parser wants. */
static int node_url_addr(const char *url, char *out, size_t outlen)
{
	struct config_url u;
	char err[256];
	int l;
	if (config_url_parse(url, &u, err, sizeof(err)) != 0) {
		LOGE("bad peer URL %s: %s", url, err);
		return -KV_EINVAL;
	}
	if (strchr(u.host, ':'))
		l = snprintf(out, outlen, "[%s]:%u", u.host, (unsigned)u.port);
	else
		l = snprintf(out, outlen, "%s:%u", u.host, (unsigned)u.port);
	config_url_close(&u);
	if (l < 0 || (size_t)l >= outlen) {
		LOGE("peer URL too long: %s", url);
		return -KV_EINVAL;
	}
	return 0;
}

/* --- error mapping -------------------------------------------------------- */

static int node_err(int raft_rv)
{
	switch (raft_rv) {
	case 0:
		return 0;
	case RAFT_LEADERSHIPLOST:
		return -KV_ELEADERCHANGED;
	case RAFT_NOTLEADER:
		return -KV_ENOLEADER;
	case RAFT_SHUTDOWN:
	case RAFT_CANCELED:
		return -KV_ESTOPPED;
	case RAFT_NOMEM:
		return -KV_ENOMEM;
	case RAFT_NOSPACE:
		return -KV_ENOSPACE;
	case RAFT_IOERR:
		return -KV_EIO;
	case RAFT_TOOBIG:
		return -KV_EREQUESTTOOLARGE;
	case RAFT_CORRUPT:
	case RAFT_MALFORMED:
		return -KV_ECORRUPT;
	case RAFT_BUSY:
	case RAFT_TOOMANY:
		return -KV_ETOOMANYREQUESTS;
	default:
		return -KV_EINTERNAL;
	}
}

/* --- state polling ---------------------------------------------------------- */

static const char *node_state_name(int st)
{
	switch (st) {
	case RAFT_FOLLOWER:
		return "follower";
	case RAFT_CANDIDATE:
		return "candidate";
	case RAFT_LEADER:
		return "leader";
	default:
		return "unavailable";
	}
}

static void node_statfs_cb(uv_fs_t *req)
{
	struct node *n = req->data;
	struct node_impl *im = node_impl(n);
	if (req->result == 0 && req->ptr) {
		const uv_statfs_t *st = req->ptr;
		uint64_t avail = st->f_bavail * st->f_bsize;
		uint64_t now = uv_now(n->srv->loop);
		im->avail = avail;
		if (avail < NODE_LOW_SPACE_BYTES &&
		    (im->last_space_warn == 0 || now - im->last_space_warn >= NODE_WARN_EVERY_MS)) {
			im->last_space_warn = now;
			LOGW("data dir %s: only %" PRIu64 " MiB free; once the raft log cannot "
			     "grow, this member stops serving (see /health)",
			     n->srv->cfg->data_dir, avail >> 20);
		}
	}
	uv_fs_req_cleanup(req);
	im->statfs_busy = false;
	if (im->step == NODE_HANDLES_CLOSING && im->handles_open == 0)
		node_closed(n);
}

static void node_statfs_start(struct node *n, uint64_t now)
{
	struct node_impl *im = node_impl(n);
	if (im->statfs_busy || im->step >= NODE_HANDLES_CLOSING)
		return;
	im->next_statfs = now + NODE_STATFS_EVERY_MS;
	im->statfs_req.data = n;
	if (uv_fs_statfs(n->srv->loop, &im->statfs_req, n->srv->cfg->data_dir, node_statfs_cb) ==
	    0)
		im->statfs_busy = true;
}

/* Commits that stop moving while entries wait are the one visible sign of
 * a failing disk (or of lost peers): libraft itself says nothing. */
static void node_watch_commit(struct node *n, int st, uint64_t now)
{
	struct node_impl *im = node_impl(n);
	uint64_t commit = raft_commit_index(&n->raft);
	uint64_t last = raft_last_index(&n->raft);
	uint64_t limit = 5 * (uint64_t)n->srv->cfg->election_ms;
	if (limit < 5000)
		limit = 5000;
	if (commit != im->watch_commit || st != RAFT_LEADER || last <= commit) {
		im->watch_commit = commit;
		im->watch_since = now;
		return;
	}
	if (now - im->watch_since >= limit &&
	    (im->last_stall_warn == 0 || now - im->last_stall_warn >= NODE_WARN_EVERY_MS)) {
		im->last_stall_warn = now;
		LOGW("raft: nothing committed for %" PRIu64 " s with %" PRIu64
		     " entries waiting (commit %" PRIu64 ", last %" PRIu64
		     "): disk full or failing, or a quorum of peers unreachable",
		     (now - im->watch_since) / 1000, last - commit, commit, last);
	}
}

/* --- storage health -----------------------------------------------------
 *
 * Two ways a member stops being able to persist:
 *   no_space: libraft 0.22.1 refuses a new entry (raft_apply/raft_barrier
 *     return RAFT_NOSPACE) when a majority of the voters report that they
 *     cannot prepare log segments (each member reports its own; alone, that
 *     is this member).  It is this member's disk only when it is the only
 *     voter or statfs says its disk is full: a new leader also gets it for a
 *     moment while the full member it took over from is all it has heard
 *     from.  A refused submission sets it; the next accepted one clears it
 *     (a leader probes with a barrier every second meanwhile), and so does
 *     a follower persisting entries again or finding room for two
 *     segments.
 *   stuck: entries were accepted but last_stored has not moved (libraft
 *     retries failed writes forever and says nothing): after one election
 *     timeout when statfs says the disk cannot hold another log segment
 *     (full), after max(5 s, 5 election timeouts) otherwise (failing, or
 *     very slow).  Requests waiting for them fail with "request timed out":
 *     their outcome is unknown (followers may commit the entries, and
 *     libraft writes them once the disk takes writes again).
 * Meanwhile (node_storage_error), until the disk takes writes again:
 *   - a leader with another voter hands leadership away, again and again
 *     until it no longer leads (0.22.1 may let a transfer time out), so the
 *     others keep serving writes;
 *   - a follower does not campaign: libraft already keeps a member with
 *     unpersisted entries from it, and node stretches the election timeout
 *     of one that libraft refused (NODE_NO_CAMPAIGN_FACTOR), so it is not
 *     elected while others can be; a TimeoutNow may still elect it, which
 *     it then hands on at once;
 *   - with another voter, client requests are refused (svc_unfit), so that
 *     clients go to another member; a lone voter serves reads, and writes
 *     fail in prop;
 *   - it is logged, /health is false and Status.errors says why
 *     (node_storage_reason).
 * No alarm is raised: etcd has none for this (a WAL write that fails makes
 * the member exit), and alarms are replicated: NOSPACE would stop writes on
 * every member when only this one's disk is full. */

static bool node_disk_full(const struct node_impl *im)
{
	return im->avail != UINT64_MAX && im->avail < im->segment_bytes;
}

static unsigned node_voters(const struct node *n);

static void node_storage_transfer_done(struct raft_transfer *req)
{
	struct node *n = req->data;
	struct node_impl *im = node_impl(n);
	uint64_t leader = node_leader(n);

	im->storage_transfer_busy = false;
	if (raft_state(&n->raft) != RAFT_LEADER) {
		LOGW("raft: leadership handed to %016" PRIx64 " (0: none yet): this member "
		     "cannot persist",
		     leader);
		im->transfer_tries = 0;
		return;
	}
	/* Under load 0.22.1 may drop the TimeoutNow: the tick tries again. */
	LOGW("raft: handing leadership away (attempt %u) did not take; trying again",
	     im->transfer_tries);
	im->next_transfer = uv_now(n->srv->loop) + n->srv->cfg->heartbeat_ms;
}

/* A leader that cannot persist: one more try at handing leadership away. */
static void node_storage_step_down(struct node *n, uint64_t now)
{
	struct node_impl *im = node_impl(n);
	int rv;
	if (im->storage_transfer_busy || im->step != NODE_RUNNING || now < im->next_transfer ||
	    raft_state(&n->raft) != RAFT_LEADER || node_voters(n) < 2)
		return;
	memset(&im->storage_transfer, 0, sizeof(im->storage_transfer));
	im->storage_transfer.data = n;
	im->transfer_tries++;
	rv = raft_transfer(&n->raft, &im->storage_transfer, 0, node_storage_transfer_done);
	if (rv == 0) {
		im->storage_transfer_busy = true;
	} else {
		LOGW("raft: cannot hand leadership away: %s", raft_strerror(rv));
		im->next_transfer = now + n->srv->cfg->election_ms;
	}
}

/* Whether libraft's refusal is about this member's own disk. */
static bool node_no_space_here(const struct node *n)
{
	const struct node_impl *im = node_impl(n);
	return im->no_space && (node_voters(n) < 2 || node_disk_full(im));
}

int node_storage_error(const struct node *n)
{
	const struct node_impl *im = node_impl(n);
	bool here;
	if (!im)
		return 0;
	here = node_no_space_here(n);
	if (!here && !im->stuck)
		return 0;
	if (here || (im->avail != UINT64_MAX && im->avail < NODE_LOW_SPACE_BYTES))
		return -KV_ENOSPACE;
	return -KV_EIO;
}

int node_storage_refuse(const struct node *n)
{
	return node_storage_error(n) && node_voters(n) >= 2 ? -KV_EIO : 0;
}

int node_storage_reason(const struct node *n, char *buf, size_t len)
{
	const struct node_impl *im = node_impl(n);
	int err = node_storage_error(n);
	uint64_t secs;
	if (!err)
		return 0;
	secs = im->storage_since && im->storage_err ?
		       (uv_now(n->srv->loop) - im->storage_since) / 1000 : 0;
	if (node_no_space_here(n))
		snprintf(buf, len, "disk full: the raft log cannot grow (for %" PRIu64 " s)", secs);
	else
		snprintf(buf, len, "disk %s: nothing persisted for %" PRIu64 " s",
			 err == -KV_ENOSPACE ? "full" : "failing", secs);
	return err;
}

/* What libraft said to a submission (raft_apply or raft_barrier). */
static void node_storage_submitted(struct node *n, int raft_rv)
{
	struct node_impl *im = node_impl(n);
	if (raft_rv == RAFT_NOSPACE && !im->no_space) {
		im->no_space = true;
		if (node_no_space_here(n))
			LOGE("raft: the log in %s cannot grow (%s%" PRIu64 " MiB free): %s until "
			     "space is freed",
			     n->srv->cfg->data_dir, im->avail == UINT64_MAX ? "about " : "",
			     im->avail == UINT64_MAX ? 0 : im->avail >> 20,
			     node_voters(n) >= 2 ? "it does not lead, clients are refused and "
						   "/health is false"
						 : "writes and linearizable reads fail and "
						   "/health is false");
		else
			LOGW("raft: an entry was refused: a majority of the voters report no room "
			     "for their logs (this member has %" PRIu64 " MiB free); writes fail "
			     "with \"%s\" until they have",
			     im->avail == UINT64_MAX ? 0 : im->avail >> 20,
			     kv_err_message(-KV_ENOSPACE));
	} else if (raft_rv == 0 && im->no_space) {
		im->no_space = false;
	}
}

static void node_probe_done(void *arg, int err)
{
	(void)arg;
	(void)err;
}

static void node_watch_storage(struct node *n, int st, uint64_t now)
{
	struct node_impl *im = node_impl(n);
	uint64_t stored = n->raft.last_stored, last = raft_last_index(&n->raft);
	uint64_t limit = 5 * (uint64_t)n->srv->cfg->election_ms;
	int err;

	if (limit < 5000)
		limit = 5000;
	if (node_disk_full(im))
		limit = n->srv->cfg->election_ms;
	if (im->no_space && st == RAFT_LEADER && now >= im->next_probe) {
		im->next_probe = now + 1000;
		node_barrier(n, node_probe_done, NULL); /* updates no_space either way */
	}
	/* A follower that persists entries, or finds room for two segments,
	 * can grow its log again. */
	if (im->no_space && st != RAFT_LEADER &&
	    ((stored != im->stored && stored > 0) ||
	     (im->avail != UINT64_MAX && im->avail >= 2 * im->segment_bytes)))
		im->no_space = false;
	if (stored != im->stored || stored >= last) {
		im->stored = stored;
		im->stored_since = now;
		im->stuck = false;
		return;
	}
	if (im->stuck || now - im->stored_since < limit)
		return;
	im->stuck = true;
	err = node_storage_error(n);
	LOGE("raft: nothing persisted to %s for %" PRIu64 " s with %" PRIu64 " entries waiting "
	     "(%s): requests waiting for them fail with \"%s\"; %s until the disk accepts "
	     "writes again",
	     n->srv->cfg->data_dir, (now - im->stored_since) / 1000, last - stored,
	     err == -KV_ENOSPACE ? "the disk is full" : "the disk is failing",
	     kv_err_message(-KV_ETIMEOUT),
	     node_voters(n) >= 2 ? "it does not lead, clients are refused and /health is "
				   "false"
				 : "new writes fail and /health is false");
	prop_fail_all(&n->srv->prop, -KV_ETIMEOUT);
}

/* etcd fast-forwards a starting member's election ticks, so a new cluster
 * elects within a tick or two; libraft waits a full randomized timeout (1-2x
 * --election-timeout), which made a 3-member start take 1.3 s against
 * etcd's 0.3 s.  Until this member has seen a leader it campaigns on a
 * short timeout instead (pre-vote keeps that from disrupting a running
 * cluster it joins); the configured one holds from the first leader on. */
static unsigned node_election_timeout(const struct node *n, const struct node_impl *im)
{
	unsigned e = n->srv->cfg->election_ms, hb = n->srv->cfg->heartbeat_ms, s;

	if (im->no_campaign)
		return NODE_NO_CAMPAIGN_FACTOR * e;
	if (im->seen_leader)
		return e;
	s = e / 4 > 3 * hb ? e / 4 : 3 * hb;
	return s < e ? s : e;
}

/* What a member that cannot persist does about it (see above). */
static void node_storage_act(struct node *n, int st, uint64_t now)
{
	struct node_impl *im = node_impl(n);
	int e = node_storage_error(n);
	bool err = e != 0, others = node_voters(n) >= 2;
	bool stretch = err && others && st != RAFT_LEADER;

	if (err && !im->storage_err)
		im->storage_since = now;
	if (!err && im->storage_err) {
		LOGI("raft: %s takes writes again: this member serves clients and may lead "
		     "again",
		     n->srv->cfg->data_dir);
		im->transfer_tries = 0;
	}
	im->storage_err = e;
	if (err && others && st == RAFT_LEADER)
		node_storage_step_down(n, now);
	if (stretch != im->no_campaign) {
		im->no_campaign = stretch;
		raft_set_election_timeout(&n->raft, node_election_timeout(n, im));
		if (stretch)
			LOGW("raft: this member cannot persist: it will not campaign while "
			     "another member can lead");
	}
}

static void node_tick_cb(uv_timer_t *t)
{
	struct node *n = t->data;
	struct node_impl *im = node_impl(n);
	raft_id leader = 0;
	const char *addr = NULL;
	uint64_t now = uv_now(n->srv->loop);
	uint64_t term;
	int st;

	if (im->step >= NODE_RAFT_CLOSING || !n->started)
		return;
	st = raft_state(&n->raft);
	raft_leader(&n->raft, &leader, &addr);
	term = raft_current_term(&n->raft);
	if (st == RAFT_LEADER && im->last_state != RAFT_LEADER)
		LOGI("raft: %016" PRIx64 " became leader at term %" PRIu64, n->srv->member_id,
		     term);
	else if (st != RAFT_LEADER && im->last_state == RAFT_LEADER)
		LOGI("raft: %016" PRIx64 " stepped down at term %" PRIu64 ", now %s", n->srv->member_id,
		     term, node_state_name(st));
	else if (st != RAFT_LEADER && leader != n->leader_id && leader)
		LOGI("raft: %016" PRIx64 " (%s) elected leader %016" PRIx64 " (%s) at term %" PRIu64,
		     n->srv->member_id, node_state_name(st), (uint64_t)leader, addr ? addr : "?",
		     term);
	else if (st != RAFT_LEADER && leader != n->leader_id)
		LOGI("raft: %016" PRIx64 " (%s) lost leader %016" PRIx64 " at term %" PRIu64,
		     n->srv->member_id, node_state_name(st), n->leader_id, term);
	if (leader && leader != n->leader_id)
		metrics.leader_changes++;
	if (leader && !im->seen_leader) {
		im->seen_leader = true;
		raft_set_election_timeout(&n->raft, node_election_timeout(n, im));
	}
	n->leader_id = leader;
	im->last_state = st;
	im->last_term = term;
	node_watch_commit(n, st, now);
	node_watch_storage(n, st, now);
	node_storage_act(n, st, now);
	node_idle_check(n, now);

	if (now >= im->next_statfs)
		node_statfs_start(n, now);
}

/* --- peer links -----------------------------------------------------------
 *
 * etcd refuses a reconfiguration unless this member has been connected to
 * the voters for a while (svc_cluster.c).  libraft does not say whether a
 * peer is reachable, but it opens every outgoing connection through the
 * transport's connect, and calls it again as soon as a connection breaks
 * (it reads from its outgoing streams, so a peer that exits is noticed at
 * once) or an attempt fails.  So node wraps connect: a link is up from a
 * successful connect until the next connect to the same peer.  On a
 * leader, that is every member of its configuration (it sends to all). */

struct node_connect {
	struct raft_uv_connect req;   /* ours, handed to the TCP transport */
	struct raft_uv_connect *orig; /* libraft's */
	raft_uv_connect_cb cb;
	struct node *n;
	uint64_t id;
	unsigned gen;
};

static struct node_link *node_link_find(const struct node_impl *im, uint64_t id)
{
	size_t i;
	for (i = 0; i < im->n_links; i++)
		if (im->links[i].id == id)
			return &im->links[i];
	return NULL;
}

static void node_connect_done(struct raft_uv_connect *req, struct uv_stream_s *stream, int status)
{
	struct node_connect *c = req->data;
	struct raft_uv_connect *orig = c->orig;
	raft_uv_connect_cb cb = c->cb;
	struct node_impl *im = node_impl(c->n);
	struct node_link *l = im ? node_link_find(im, c->id) : NULL;

	if (l && l->gen == c->gen && status == 0) {
		uint64_t now = uv_now(c->n->srv->loop);
		l->up_since = now ? now : 1;
		LOGD("raft: connected to %016" PRIx64, c->id);
	}
	free(c);
	cb(orig, stream, status);
}

/* Installed as the transport's connect (node_init); libraft calls it. */
static int node_transport_connect(struct raft_uv_transport *t, struct raft_uv_connect *req,
				  raft_id id, const char *address, raft_uv_connect_cb cb)
{
	struct node *n = (struct node *)((char *)t - offsetof(struct node, transport));
	struct node_impl *im = node_impl(n);
	struct node_link *l = node_link_find(im, id);
	struct node_connect *c;
	int rv;

	if (!l) {
		struct node_link *v = realloc(im->links, (im->n_links + 1) * sizeof(*v));
		if (!v)
			return RAFT_NOMEM;
		im->links = v;
		l = &v[im->n_links++];
		memset(l, 0, sizeof(*l));
		l->id = id;
	}
	if (l->up_since)
		LOGD("raft: connection to %016" PRIx64 " lost", (uint64_t)id);
	l->up_since = 0;
	l->gen++;
	if (!(c = malloc(sizeof(*c))))
		return RAFT_NOMEM;
	c->req.data = c;
	c->orig = req;
	c->cb = cb;
	c->n = n;
	c->id = id;
	c->gen = l->gen;
	req->cb = cb;
	rv = im->tcp_connect(t, &c->req, id, address, node_connect_done);
	if (rv)
		free(c);
	return rv;
}

uint64_t node_peer_up_since(const struct node *n, uint64_t id)
{
	const struct node_impl *im = node_impl(n);
	const struct node_link *l = im ? node_link_find(im, id) : NULL;
	return l ? l->up_since : 0;
}

/* --- init / start --------------------------------------------------------- */

static unsigned node_snapshot_threshold(const struct config *cfg)
{
	uint64_t c = cfg->snapshot_count ? cfg->snapshot_count : 1;
	return c > UINT32_MAX ? UINT32_MAX : (unsigned)c;
}

static bool node_solo(const struct node *n)
{
	return n->raft.configuration.n <= 1;
}

/* NODE_TRAILING_BYTES worth of entries of the average size lately
 * (NODE_TRAILING_SOLO when no other member is configured). */
static void node_set_trailing(struct node *n, struct node_impl *im)
{
	uint64_t avg = im->log_entries ? im->log_bytes / im->log_entries : 0;
	uint64_t t = avg ? NODE_TRAILING_BYTES / avg : NODE_SNAPSHOT_TRAILING;

	if (t > NODE_SNAPSHOT_TRAILING)
		t = NODE_SNAPSHOT_TRAILING;
	if (t < NODE_TRAILING_MIN)
		t = NODE_TRAILING_MIN;
	if (node_solo(n))
		t = NODE_TRAILING_SOLO;
	/* libraft reads it when a snapshot completes: keep it current, but
	 * only a real change is worth a call. */
	if (t != im->trailing) {
		im->trailing = (unsigned)t;
		raft_set_snapshot_trailing(&n->raft, (unsigned)t);
	}
}

void node_note_applied(struct node *n, size_t entry_bytes)
{
	struct node_impl *im = node_impl(n);
	uint64_t budget;
	if (!im || !im->raft_inited)
		return;
	im->log_bytes += entry_bytes;
	im->log_entries++;
	im->applied_at = uv_now(n->srv->loop);
	node_set_trailing(n, im);
	budget = im->image_bytes / NODE_LOG_STORE_DIV;
	if (budget < NODE_LOG_BYTES_MIN)
		budget = NODE_LOG_BYTES_MIN;
	if (!im->snapshot_soon && im->log_bytes >= budget) {
		/* libraft checks the threshold after each apply batch. */
		raft_set_snapshot_threshold(&n->raft, 1);
		im->snapshot_soon = true;
		LOGD("raft: %" PRIu64 " MiB applied since the last snapshot: taking one early",
		     im->log_bytes >> 20);
	}
}

static void node_snap_barrier_done(struct raft_barrier *req, int status)
{
	struct node *n = req->data;
	(void)status; /* the snapshot follows the apply, or it does not */
	node_impl(n)->snap_barrier_busy = false;
}

/* Asks libraft for a snapshot now.  It compares the entries committed
 * since its last snapshot with the threshold at every step (every tick,
 * every completed write), and takes one at the commit index: with the
 * threshold at 1 that is on the next step, provided something was committed
 * since.  false when nothing can come of it. */
static bool node_snapshot_now(struct node *n, const char *why, bool force)
{
	struct node_impl *im = node_impl(n);

	if ((im->log_entries == 0 && !force) || node_storage_error(n))
		return false;
	if (!im->snapshot_soon) {
		raft_set_snapshot_threshold(&n->raft, 1);
		im->snapshot_soon = true;
		LOGD("raft: %s with %" PRIu64 " KiB of log since the last snapshot: taking one", why,
		     im->log_bytes >> 10);
	}
	return true;
}

/* Whether no member may still need entries from this one's log. */
static bool node_followers_caught_up(struct node *n)
{
	struct raft *r = &n->raft;
	raft_index last = raft_last_index(r), match;
	unsigned i;

	if (raft_state(r) != RAFT_LEADER)
		return raft_state(r) == RAFT_FOLLOWER;
	for (i = 0; i < r->configuration.n; i++) {
		const struct raft_server *srv = &r->configuration.servers[i];
		if (srv->id == r->id)
			continue;
		if (raft_match_index(r, srv->id, &match) != 0 || match < last)
			return false;
	}
	return true;
}

/* After a burst of writes: see NODE_IDLE_MS.  Also hands the memory that
 * snapshots freed (the log entries behind them, the image) back to the
 * system: glibc keeps freed heap pages otherwise. */
static void node_idle_check(struct node *n, uint64_t now)
{
	struct node_impl *im = node_impl(n);

	if (im->snapshots != im->trimmed && !im->guard.taking) {
		im->trimmed = im->snapshots;
		malloc_trim(0);
	}
	if (im->step != NODE_RUNNING || im->snapshot_soon || im->log_bytes < NODE_IDLE_LOG_BYTES ||
	    now - im->applied_at < NODE_IDLE_MS)
		return;
	/* The next apply sets the byte-sized window again (node_set_trailing). */
	if (im->trailing > NODE_TRAILING_MIN && node_followers_caught_up(n)) {
		im->trailing = NODE_TRAILING_MIN;
		raft_set_snapshot_trailing(&n->raft, NODE_TRAILING_MIN);
	}
	node_snapshot_now(n, "idle", false);
}

void node_note_snapshot(struct node *n, size_t image_bytes)
{
	struct node_impl *im = node_impl(n);
	if (!im || !im->raft_inited)
		return;
	im->log_bytes = 0;
	im->log_entries = 0;
	im->image_bytes = image_bytes;
	im->snapshots++;
	if (im->snapshot_soon) {
		raft_set_snapshot_threshold(&n->raft, im->threshold);
		im->snapshot_soon = false;
	}
}

int node_init(struct node *n, struct server *srv, struct raft_fsm *fsm)
{
	const struct config *cfg = srv->cfg;
	struct node_impl *im;
	char bind[NODE_ADDR_MAX];
	uint64_t boots = 0;
	unsigned threshold;
	size_t segment;
	int rv;

	memset(n, 0, sizeof(*n));
	n->srv = srv;
	n->fsm = fsm;
	im = calloc(1, sizeof(*im));
	if (!im)
		return -KV_ENOMEM;
	n->impl = im;
	im->avail = UINT64_MAX;

	if (cfg->heartbeat_ms == 0 || cfg->election_ms <= cfg->heartbeat_ms) {
		LOGE("--election-timeout (%u ms) must be greater than --heartbeat-interval "
		     "(%u ms)",
		     cfg->election_ms, cfg->heartbeat_ms);
		rv = -KV_EINVAL;
		goto fail;
	}
	if (cfg->n_initial_advertise_peer_urls <= 0 || cfg->n_listen_peer_urls <= 0) {
		LOGE("no peer URL to advertise or listen on");
		rv = -KV_EINVAL;
		goto fail;
	}
	if ((rv = node_mkdir_p(cfg->data_dir)))
		goto fail;
	if (srv->member_id == 0 &&
	    (rv = node_identity(cfg, &srv->cluster_id, &srv->member_id)))
		goto fail;
	if ((rv = node_identity_record(srv, &boots)))
		goto fail;
	im->seq_base = (boots & ((1ull << (64 - NODE_SEQ_BITS)) - 1)) << NODE_SEQ_BITS;

	if ((rv = node_url_addr(cfg->initial_advertise_peer_urls[0], im->address,
				sizeof(im->address))) ||
	    (rv = node_url_addr(cfg->listen_peer_urls[0], bind, sizeof(bind))))
		goto fail;

	/* Since 0.17.1 raft_uv_tcp_init rejects an unversioned transport as
	 * RAFT_INVALID: the version goes in first. */
	n->transport.version = 1;
	rv = raft_uv_tcp_init(&n->transport, srv->loop);
	if (rv) {
		LOGE("raft: transport: %s", raft_strerror(rv));
		rv = node_err(rv);
		goto fail;
	}
	im->transport_inited = true;
	im->tcp_connect = n->transport.connect;
	n->transport.connect = node_transport_connect;
	rv = raft_uv_tcp_set_bind_address(&n->transport, bind);
	if (rv) {
		LOGE("raft: cannot use peer listen address %s: %s", bind, n->transport.errmsg);
		rv = -KV_EINVAL;
		goto fail;
	}

	rv = raft_uv_init(&n->io, srv->loop, cfg->data_dir, &n->transport);
	if (rv) {
		LOGE("raft: data dir %s: %s", cfg->data_dir, n->io.errmsg);
		rv = node_err(rv);
		goto fail;
	}
	im->io_inited = true;
	/* libraft's auto-recovery renames a damaged last closed segment (or a
	 * damaged open one and those after it) to corrupt-* and starts
	 * without it: acknowledged entries silently gone.  Off, a damaged
	 * segment keeps refusing the start until an operator decides. */
	raft_uv_set_auto_recovery(&n->io, false);
	/* No-op in 0.22.1 (files are written raw); fsm.c compresses itself. */
	raft_uv_set_snapshot_compression(&n->io, false);
	/* libraft retries a failed log write forever; retry often, so that a
	 * member whose disk was full takes writes soon after space is freed. */
	raft_uv_set_disk_retry(&n->io, NODE_DISK_RETRY_MS);
	/* One entry is at most a 1 MiB batch plus the largest request (prop.c);
	 * keep two per segment, as entries larger than a segment are untested
	 * in libraft.  The default 8 MiB covers the default 1.5 MiB limit. */
	segment = 2 * ((size_t)cfg->max_request_bytes + (1u << 20) + 4096);
	im->segment_bytes = 8u << 20; /* libraft's default */
	if (segment > (8u << 20)) {
		raft_uv_set_segment_size(&n->io, (segment + 4095) & ~(size_t)4095);
		im->segment_bytes = (segment + 4095) & ~(size_t)4095;
	}

	node_guard_init(&im->guard, &n->io);
	im->guard_inited = true;
	rv = raft_init(&n->raft, &n->io, fsm, srv->member_id, im->address);
	if (rv) {
		LOGE("raft: init: %s", raft_errmsg(&n->raft));
		rv = node_err(rv);
		goto fail;
	}
	im->raft_inited = true;
	n->raft.data = n;
	raft_set_heartbeat_timeout(&n->raft, cfg->heartbeat_ms);
	raft_set_election_timeout(&n->raft, node_election_timeout(n, im));
	raft_set_pre_vote(&n->raft, true);
	/* The default 32 also caps local persistence: 3x slower pipelines. */
	raft_set_max_inflight_entries(&n->raft, 2048);
	threshold = node_snapshot_threshold(cfg);
	im->threshold = threshold;
	raft_set_snapshot_threshold(&n->raft, threshold);
	im->trailing = NODE_SNAPSHOT_TRAILING;
	raft_set_snapshot_trailing(&n->raft, NODE_SNAPSHOT_TRAILING);

	uv_timer_init(srv->loop, &n->tick);
	uv_timer_init(srv->loop, &im->close_timer);
	uv_timer_init(srv->loop, &im->hold_timer);
	n->tick.data = n;
	im->close_timer.data = n;
	im->hold_timer.data = n;
	im->timers_inited = true;
	LOGI("raft: member %016" PRIx64 " of cluster %016" PRIx64 " at %s (listening on %s), "
	     "data dir %s, boot %" PRIu64 "; snapshot every %u entries, or sooner once the "
	     "log since the last one outgrows the store",
	     srv->member_id, srv->cluster_id, im->address, bind, cfg->data_dir, boots, threshold);
	return 0;

fail:
	if (im->guard_inited)
		node_guard_close(&im->guard);
	if (im->io_inited)
		raft_uv_close(&n->io);
	if (im->transport_inited)
		raft_uv_tcp_close(&n->transport);
	free(im->links);
	free(im);
	n->impl = NULL;
	return rv;
}

int node_initial_configuration(const struct config *cfg, struct raft_configuration *conf)
{
	const char *token = node_cfg_token(cfg);
	char addr[NODE_ADDR_MAX];
	int i, rv;

	raft_configuration_init(conf);
	for (i = 0; i < cfg->n_initial_cluster; i++) {
		const struct config_member *m = &cfg->initial_cluster[i];
		uint64_t id = node_member_id(m, token);
		if ((rv = node_url_addr(m->peer_urls[0], addr, sizeof(addr))))
			goto fail;
		rv = raft_configuration_add(conf, id, addr, RAFT_VOTER);
		if (rv) {
			LOGE("raft: member %s (%s): %s", m->name, addr, raft_strerror(rv));
			rv = -KV_EINVAL;
			goto fail;
		}
	}
	return 0;
fail:
	raft_configuration_close(conf);
	return rv;
}

static int node_bootstrap(struct node *n)
{
	const struct config *cfg = n->srv->cfg;
	struct raft_configuration conf;
	int rv;

	if ((rv = node_initial_configuration(cfg, &conf)))
		return rv;
	rv = raft_bootstrap(&n->raft, &conf);
	if (rv == RAFT_CANTBOOTSTRAP) {
		rv = 0; /* the data dir has state already: a restart */
	} else if (rv) {
		LOGE("raft: bootstrap: %s", raft_errmsg(&n->raft));
		rv = node_err(rv);
	} else {
		LOGI("raft: bootstrapped a new cluster of %d member(s)", cfg->n_initial_cluster);
	}
	raft_configuration_close(&conf);
	return rv;
}

int node_start(struct node *n)
{
	struct node_impl *im = node_impl(n);
	char why[512];
	unsigned every;
	int rv;

	if (!im || !im->raft_inited)
		return -KV_EINVAL;
	if (n->srv->cfg->initial_cluster_new && (rv = node_bootstrap(n)))
		return rv;
	if (!n->srv->cfg->initial_cluster_new && !node_has_raft_state(n->srv->cfg->data_dir))
		LOGI("raft: joining a running cluster as member %016" PRIx64 " with an empty log: "
		     "waiting for its leader (add this member first: etcdctl member add)",
		     n->srv->member_id);
	/* libraft would take damage inside an open segment for a torn write
	 * and drop acknowledged entries (segcheck.h). */
	if ((rv = segcheck_open_segments(n->srv->cfg->data_dir, why, sizeof(why)))) {
		LOGE("raft: cannot start from data dir %s: %s; refusing to start (restore this "
		     "member from a snapshot, or remove it from the cluster and add it again "
		     "with an empty data dir)",
		     n->srv->cfg->data_dir, why[0] ? why : kv_err_name(rv));
		return rv;
	}
	rv = raft_start(&n->raft);
	if (rv) {
		const char *msg = raft_errmsg(&n->raft);
		LOGE("raft: cannot start from data dir %s: %s%s%s%s", n->srv->cfg->data_dir,
		     raft_strerror(rv), *msg ? " (" : "", msg, *msg ? ")" : "");
		return node_err(rv);
	}
	n->started = true;
	im->last_state = RAFT_UNAVAILABLE;
	im->watch_since = uv_now(n->srv->loop);
	every = n->srv->cfg->heartbeat_ms / 2;
	if (every < 10)
		every = 10;
	uv_timer_start(&n->tick, node_tick_cb, 0, every);
	LOGI("raft: started, last index %" PRIu64 ", applied %" PRIu64,
	     (uint64_t)raft_last_index(&n->raft), (uint64_t)raft_last_applied(&n->raft));
	return 0;
}

/* --- requests ---------------------------------------------------------------- */

/* --- held entries -------------------------------------------------------
 *
 * libraft 0.22.1's raft_init sets a capacity threshold of 4096 KiB for the
 * legacy API (raft_set_capacity_threshold), and ClientSubmit refuses an
 * entry (raft_apply/raft_barrier return RAFT_NOSPACE) while a majority of
 * the voters report a capacity below it.  The uv backend recomputes its
 * capacity (io->capacity, KiB) in a uv_prepare and a uv_check handle of
 * every loop iteration as the log space prepared and not yet promised:
 * segments in the prepared pool (two at most, created one at a time in the
 * thread pool) times the segment size, plus the room left in the open
 * segments being written, where an entry takes its room as soon as it is
 * queued, not when it is written.  So a burst of large entries, queued
 * faster than the disk writes them and the thread pool prepares segments,
 * drives it under 4 MiB for a few milliseconds on a disk with gigabytes
 * free: with 1.4 MB entries, about a dozen queued unwritten entries.
 *
 * Such a refusal is back-pressure, not a full disk.  While statfs does not
 * say the disk is full (node_disk_full) and no refusal has counted yet
 * (no_space), the refused entry or barrier is held, and everything
 * submitted after it queues behind it, in order; every NODE_HOLD_RETRY_MS
 * they are offered again, as the writes and segment preparation catch up.
 * Held requests count as pending and their callbacks run as for any other.
 * The refusal counts as before (node_storage_submitted: no_space, the log
 * says why, writes fail with "database space exceeded") once statfs says
 * the disk is full (a first refusal asks statfs at once), or when nothing
 * has been accepted for max(NODE_HOLD_MAX_MS, 2 election timeouts): a
 * majority of the voters really without room, or a disk that stopped
 * taking writes.  A leader that loses its leadership fails its held
 * requests at the next offer (libraft: not leader); a member closing fails
 * them once its pending requests have had their time to drain. */

static void node_apply_done(struct raft_apply *req, int status, void *result)
{
	struct node_req *r = req->data;
	struct node_impl *im = node_impl(r->n);
	(void)result; /* fsm results go straight to prop_complete() */
	im->pending--;
	r->cb(r->arg, node_err(status));
	free(r);
}

static void node_barrier_done(struct raft_barrier *req, int status)
{
	struct node_req *r = req->data;
	struct node_impl *im = node_impl(r->n);
	im->pending--;
	r->cb(r->arg, node_err(status));
	free(r);
}

static int node_accepting(const struct node *n)
{
	const struct node_impl *im = node_impl(n);
	if (!im || im->step != NODE_RUNNING)
		return -KV_ESTOPPED;
	if (!n->started)
		return -KV_ENOLEADER;
	return 0;
}

/* Hands r to libraft: 0, or its refusal (then r and its buffer are still
 * ours: past that point 0.22.1 copies the entry and frees our buffer even
 * if the append then fails). */
static int node_submit(struct node *n, struct node_req *r)
{
	if (r->barrier)
		return raft_barrier(&n->raft, &r->u.barrier, node_barrier_done);
	/* libraft 0.22.1 replicates only bufs[0] of a raft_apply (and its own
	 * assert is compiled out): exactly one buffer, always. */
	return raft_apply(&n->raft, &r->u.apply, &r->buf, 1, node_apply_done);
}

/* Whether a RAFT_NOSPACE from libraft may be back-pressure (see above). */
static bool node_may_hold(const struct node *n)
{
	const struct node_impl *im = node_impl(n);
	return !im->no_space && !node_disk_full(im);
}

static uint64_t node_hold_max(const struct node *n)
{
	uint64_t e = 2 * (uint64_t)n->srv->cfg->election_ms;
	return e > NODE_HOLD_MAX_MS ? e : NODE_HOLD_MAX_MS;
}

/* A request that will not reach libraft: its callback gets err. */
static void node_req_fail(struct node *n, struct node_req *r, int err)
{
	node_impl(n)->pending--;
	if (!r->barrier)
		free(r->buf.base);
	r->cb(r->arg, err);
	free(r);
}

static void node_hold(struct node *n, struct node_req *r)
{
	struct node_impl *im = node_impl(n);
	uint64_t now = uv_now(n->srv->loop);

	r->next = NULL;
	if (im->held_tail) {
		im->held_tail->next = r;
		im->held_tail = r;
		return;
	}
	im->held_head = im->held_tail = r;
	im->held_since = now;
	im->holds++;
	LOGD("raft: entry refused with %u KiB of log space prepared (libraft wants %u KiB): "
	     "holding it until the disk catches up (hold %" PRIu64 ")",
	     (unsigned)n->io.capacity, (unsigned)n->raft.capacity_threshold, im->holds);
	/* A disk that is really full should not wait for the next tick. */
	node_statfs_start(n, now);
	uv_timer_start(&im->hold_timer, node_hold_timer_cb, NODE_HOLD_RETRY_MS,
		       NODE_HOLD_RETRY_MS);
}

/* Fails every held request (shutdown). */
static void node_hold_fail_all(struct node *n, int err)
{
	struct node_impl *im = node_impl(n);
	struct node_req *r;

	if (im->timers_inited)
		uv_timer_stop(&im->hold_timer);
	while ((r = im->held_head)) {
		im->held_head = r->next;
		if (!im->held_head)
			im->held_tail = NULL;
		node_req_fail(n, r, err);
	}
}

static void node_hold_timer_cb(uv_timer_t *t)
{
	struct node *n = t->data;
	struct node_impl *im = node_impl(n);
	uint64_t now = uv_now(n->srv->loop);
	struct node_req *r;
	int rv;

	while ((r = im->held_head)) {
		rv = node_submit(n, r);
		if (rv == RAFT_NOSPACE && node_may_hold(n)) {
			if (now - im->held_since < node_hold_max(n))
				return; /* the timer repeats */
			LOGW("raft: entries refused for %" PRIu64 " ms with %u KiB of log space "
			     "prepared (libraft wants %u KiB): no longer taken as back-pressure",
			     now - im->held_since, (unsigned)n->io.capacity,
			     (unsigned)n->raft.capacity_threshold);
		}
		im->held_head = r->next;
		if (!im->held_head)
			im->held_tail = NULL;
		node_storage_submitted(n, rv);
		if (rv == 0) {
			im->held_since = now;
			continue;
		}
		/* The callback may submit again: r is off the queue. */
		node_req_fail(n, r, node_err(rv));
		if (!n->impl)
			return;
	}
	uv_timer_stop(&im->hold_timer);
}

/* Submits r, or holds it (behind those held already): 0, and r's callback
 * will run; or the refusal, and r is still the caller's. */
static int node_enqueue(struct node *n, struct node_req *r)
{
	struct node_impl *im = node_impl(n);
	int rv;

	if (!im->held_head) {
		rv = node_submit(n, r);
		if (rv != RAFT_NOSPACE || !node_may_hold(n)) {
			node_storage_submitted(n, rv);
			if (rv)
				return rv;
			im->pending++;
			return 0;
		}
	}
	node_hold(n, r);
	im->pending++;
	return 0;
}

int node_apply(struct node *n, void *data, size_t len, node_apply_cb cb, void *arg)
{
	struct node_req *r;
	size_t padded = cmd_entry_padded_len(len);
	uint8_t *p;
	int rv;

	if ((rv = node_accepting(n))) {
		free(data);
		return rv;
	}
	p = realloc(data, padded);
	r = p ? malloc(sizeof(*r)) : NULL;
	if (!r) {
		free(p ? p : data);
		return -KV_ENOMEM;
	}
	cmd_entry_pad(p, len, padded);
	r->n = n;
	r->cb = cb;
	r->arg = arg;
	r->barrier = false;
	r->u.apply.data = r;
	r->buf.base = p;
	r->buf.len = padded;
	rv = node_enqueue(n, r);
	if (rv) {
		/* Only a submission refused up front leaves the buffer ours
		 * (node_submit).  Leak rather than double free in those (out
		 * of memory) cases. */
		if (rv == RAFT_NOTLEADER || rv == RAFT_NOSPACE)
			free(p);
		else
			LOGE("raft: apply of a %zu byte entry failed: %s (%s)", padded,
			     raft_strerror(rv), raft_errmsg(&n->raft));
		free(r);
		return node_err(rv);
	}
	return 0;
}

int node_barrier(struct node *n, node_barrier_cb cb, void *arg)
{
	struct node_req *r;
	int rv;
	if ((rv = node_accepting(n)))
		return rv;
	r = malloc(sizeof(*r));
	if (!r)
		return -KV_ENOMEM;
	r->n = n;
	r->cb = cb;
	r->arg = arg;
	r->barrier = true;
	r->buf.base = NULL;
	r->buf.len = 0;
	r->u.barrier.data = r;
	rv = node_enqueue(n, r);
	if (rv) {
		free(r);
		return node_err(rv);
	}
	return 0;
}

/* --- accessors ------------------------------------------------------------------ */

/* libraft's getters take a non-const raft but only read it. */
static struct raft *node_raft(const struct node *n)
{
	return (struct raft *)&n->raft;
}

bool node_is_leader(const struct node *n)
{
	return n->started && node_impl(n) && node_impl(n)->step == NODE_RUNNING &&
	       raft_state(node_raft(n)) == RAFT_LEADER;
}

uint64_t node_leader(const struct node *n)
{
	raft_id id = 0;
	const char *addr = NULL;
	if (!n->started || !node_impl(n) || node_impl(n)->step >= NODE_RAFT_CLOSING)
		return 0;
	raft_leader(node_raft(n), &id, &addr);
	return id;
}

uint64_t node_term(const struct node *n)
{
	return n->started ? raft_current_term(&n->raft) : 0;
}

uint64_t node_commit_index(const struct node *n)
{
	return n->started ? raft_commit_index(&n->raft) : 0;
}

uint64_t node_applied_index(const struct node *n)
{
	return n->started ? raft_last_applied(node_raft(n)) : 0;
}

uint64_t node_last_index(const struct node *n)
{
	return n->started ? raft_last_index(node_raft(n)) : 0;
}

uint64_t node_seq_base(const struct node *n)
{
	return node_impl(n) ? node_impl(n)->seq_base : 0;
}

/* --- shutdown -------------------------------------------------------------------- */

static void node_close_step(struct node *n);

/* Last step: everything of ours is off the loop. */
static void node_closed(struct node *n)
{
	free(node_impl(n)->links);
	free(n->impl);
	n->impl = NULL;
	if (n->close_cb)
		n->close_cb(n);
}

static void node_handle_closed(uv_handle_t *h)
{
	struct node *n = h->data;
	struct node_impl *im = node_impl(n);
	if (--im->handles_open > 0 || im->statfs_busy)
		return;
	node_closed(n);
}

static void node_finish(struct node *n)
{
	struct node_impl *im = node_impl(n);
	if (im->guard_inited)
		node_guard_close(&im->guard);
	im->guard_inited = false;
	if (im->io_inited)
		raft_uv_close(&n->io);
	if (im->transport_inited)
		raft_uv_tcp_close(&n->transport);
	im->io_inited = im->transport_inited = false;
	n->started = false;
	node_hold_fail_all(n, -KV_ESTOPPED);
	im->step = NODE_HANDLES_CLOSING;
	if (im->timers_inited) {
		im->handles_open = 3;
		uv_close((uv_handle_t *)&n->tick, node_handle_closed);
		uv_close((uv_handle_t *)&im->close_timer, node_handle_closed);
		uv_close((uv_handle_t *)&im->hold_timer, node_handle_closed);
	} else if (!im->statfs_busy) {
		node_closed(n);
	}
}

static void node_raft_closed(struct raft *r)
{
	struct node *n = r->data;
	LOGI("raft: closed");
	node_finish(n);
}

static void node_close_timer_cb(uv_timer_t *t)
{
	node_close_step(t->data);
}

static unsigned node_voters(const struct node *n)
{
	const struct raft_configuration *c = &n->raft.configuration;
	unsigned i, v = 0;
	for (i = 0; i < c->n; i++)
		if (c->servers[i].role == RAFT_VOTER)
			v++;
	return v;
}

static void node_transfer_done(struct raft_transfer *req)
{
	struct node *n = req->data;
	struct node_impl *im = node_impl(n);
	uint64_t leader;
	if (im->step != NODE_TRANSFERRING)
		return; /* given up already, or raft_close fired it */
	leader = node_leader(n);
	if (raft_state(&n->raft) != RAFT_LEADER) {
		if (leader && leader != n->srv->member_id)
			LOGI("raft: leadership transferred to %016" PRIx64, leader);
		else
			LOGI("raft: stepped down, no leader known");
		im->transfer_attempts = NODE_TRANSFER_ATTEMPTS;
	} else {
		/* 0.22.1 may drop the TimeoutNow of a transfer under load. */
		LOGW("raft: leadership transfer attempt %d did not take", im->transfer_attempts);
	}
	uv_timer_start(&im->close_timer, node_close_timer_cb, 0, 0);
}

/* libraft fires the transfer callback only once a new leader is known or
 * this one is leader again: never, if we fell to candidate with no quorum. */
static void node_transfer_timeout_cb(uv_timer_t *t)
{
	struct node *n = t->data;
	struct node_impl *im = node_impl(n);
	if (im->step != NODE_TRANSFERRING)
		return;
	LOGW("raft: leadership transfer did not finish (%s now); closing anyway",
	     node_state_name(raft_state(&n->raft)));
	/* raft_close fires the abandoned request; step tells it to do nothing. */
	im->transfer_attempts = NODE_TRANSFER_ATTEMPTS;
	node_close_step(n);
}

/* The shutdown state machine, advanced by close_timer and callbacks. */
static void node_close_step(struct node *n)
{
	struct node_impl *im = node_impl(n);
	int rv;

	if (im->step == NODE_DRAINING) {
		if (im->pending > 0 && uv_now(n->srv->loop) < im->drain_deadline) {
			uv_timer_start(&im->close_timer, node_close_timer_cb, NODE_DRAIN_POLL_MS, 0);
			return;
		}
		/* Held ones never reached libraft: not applied, for sure. */
		node_hold_fail_all(n, -KV_ESTOPPED);
		if (im->pending > 0)
			LOGW("raft: closing with %u request(s) still pending", im->pending);
		im->step = NODE_SNAPSHOTTING;
		im->close_snapshot_deadline = 0;
	}
	if (im->step == NODE_SNAPSHOTTING) {
		uint64_t now = uv_now(n->srv->loop);
		bool busy;
		if (im->close_snapshot_deadline == 0) {
			/* A member alone (a cluster's leader hands over instead)
			 * leaves its data dir so that a restart loads and replays
			 * next to nothing.  libraft keeps the log segment that
			 * holds the entry at a snapshot's index (the trailing
			 * window is one entry), and writing a snapshot closes the
			 * segment in use.  So: a snapshot of what was applied
			 * since the last one, if anything; then a barrier, which
			 * lands in a fresh segment, and a snapshot at it: every
			 * older segment goes. */
			im->close_snapshot_deadline = now + NODE_CLOSE_SNAPSHOT_MS;
			im->close_phase = NODE_CLOSE_SNAP_DONE;
			if (node_solo(n) && raft_state(&n->raft) == RAFT_LEADER && !node_storage_error(n)) {
				im->close_phase = im->log_entries > 0 ? NODE_CLOSE_SNAP_TAKE
								      : NODE_CLOSE_SNAP_BARRIER;
				raft_set_snapshot_trailing(&n->raft, NODE_TRAILING_SOLO);
				im->trailing = NODE_TRAILING_SOLO;
			}
		}
		/* A take is done once it was made (snapshot_soon back off) and
		 * written; one already under way is waited for too. */
		busy = im->guard.taking || im->snapshot_soon || im->snap_barrier_busy;
		if (!busy && now < im->close_snapshot_deadline) {
			switch (im->close_phase) {
			case NODE_CLOSE_SNAP_TAKE:
				node_snapshot_now(n, "shutting down", false);
				im->close_phase = NODE_CLOSE_SNAP_BARRIER;
				busy = true;
				break;
			case NODE_CLOSE_SNAP_BARRIER:
				im->snap_barrier.data = n;
				busy = im->snap_barrier_busy =
					raft_barrier(&n->raft, &im->snap_barrier, node_snap_barrier_done) == 0;
				im->close_phase = busy ? NODE_CLOSE_SNAP_FINAL : NODE_CLOSE_SNAP_DONE;
				break;
			case NODE_CLOSE_SNAP_FINAL:
				/* The barrier is committed: the next step takes one at it. */
				busy = node_snapshot_now(n, "shutting down", true);
				im->close_phase = NODE_CLOSE_SNAP_DONE;
				break;
			default:
				break;
			}
		}
		if (busy && now < im->close_snapshot_deadline) {
			uv_timer_start(&im->close_timer, node_close_timer_cb, NODE_DRAIN_POLL_MS, 0);
			return;
		}
		if (busy)
			LOGW("raft: closing before the last snapshot was written");
		im->step = NODE_TRANSFERRING;
	}
	if (im->step == NODE_TRANSFERRING) {
		uint64_t now = uv_now(n->srv->loop);
		if (im->transfer_attempts == 0)
			im->transfer_deadline = now + 2 * (uint64_t)n->srv->cfg->election_ms;
		if (im->transfer_attempts < NODE_TRANSFER_ATTEMPTS && now < im->transfer_deadline &&
		    raft_state(&n->raft) == RAFT_LEADER && node_voters(n) > 1) {
			im->transfer_attempts++;
			memset(&im->transfer, 0, sizeof(im->transfer));
			im->transfer.data = n;
			rv = raft_transfer(&n->raft, &im->transfer, 0, node_transfer_done);
			if (rv == 0) {
				/* libraft gives up by itself after one election
				 * timeout, but only while it can see a leader. */
				uv_timer_start(&im->close_timer, node_transfer_timeout_cb,
					       im->transfer_deadline - now, 0);
				return;
			}
			LOGW("raft: leadership transfer: %s", raft_strerror(rv));
		}
		im->step = NODE_RAFT_CLOSING;
		uv_timer_stop(&n->tick);
		raft_close(&n->raft, node_raft_closed);
	}
}

void node_close(struct node *n, node_close_cb cb)
{
	struct node_impl *im = node_impl(n);
	uint64_t wait;

	n->close_cb = cb;
	if (!im) {
		if (cb)
			cb(n);
		return;
	}
	if (im->step != NODE_RUNNING)
		return;
	if (!im->raft_inited) {
		node_finish(n);
		return;
	}
	if (!n->started) {
		im->step = NODE_RAFT_CLOSING;
		raft_close(&n->raft, node_raft_closed);
		return;
	}
	/* Bounded: a write that cannot commit (no quorum, disk full) must not
	 * hold shutdown hostage; its outcome stays unknown either way.  With
	 * the transfer's own bound, closing takes at most 3 election timeouts
	 * (plus 1 s for tiny timeouts) before raft_close. */
	wait = n->srv->cfg->election_ms;
	if (wait < 1000)
		wait = 1000;
	im->drain_deadline = uv_now(n->srv->loop) + wait;
	im->step = NODE_DRAINING;
	node_close_step(n);
}

/* --- membership ------------------------------------------------------------------ */

struct node_change {
	struct raft_change req;
	struct node *n;
	node_change_cb cb;
	void *arg;
};

static int node_change_err(int raft_rv)
{
	switch (raft_rv) {
	case RAFT_CANTCHANGE:
		return -KV_ETOOMANYREQUESTS;
	case RAFT_BADID:
	case RAFT_NOTFOUND:
	case RAFT_BADROLE:
	case RAFT_DUPLICATEID:
	case RAFT_DUPLICATEADDRESS:
		return -KV_EINVAL;
	default:
		return node_err(raft_rv);
	}
}

static void node_change_done(struct raft_change *req, int status)
{
	struct node_change *c = req->data;
	node_impl(c->n)->pending--;
	c->cb(c->arg, node_change_err(status));
	free(c);
}

static struct node_change *node_change_new(struct node *n, node_change_cb cb, void *arg)
{
	struct node_change *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->n = n;
	c->cb = cb;
	c->arg = arg;
	c->req.data = c;
	return c;
}

/* After raft_add/assign/remove returned rv for c. */
static int node_change_submitted(struct node *n, struct node_change *c, int rv)
{
	if (rv) {
		free(c);
		return node_change_err(rv);
	}
	node_impl(n)->pending++;
	return 0;
}

int node_change_add(struct node *n, uint64_t id, const char *peer_url, node_change_cb cb,
		    void *arg)
{
	char addr[NODE_ADDR_MAX];
	struct node_change *c;
	int rv;
	if ((rv = node_accepting(n)) || (rv = node_url_addr(peer_url, addr, sizeof(addr))))
		return rv;
	if (!(c = node_change_new(n, cb, arg)))
		return -KV_ENOMEM;
	return node_change_submitted(n, c, raft_add(&n->raft, &c->req, id, addr, node_change_done));
}

int node_change_assign(struct node *n, uint64_t id, int role, node_change_cb cb, void *arg)
{
	struct node_change *c;
	int rv;
	if ((rv = node_accepting(n)))
		return rv;
	if (!(c = node_change_new(n, cb, arg)))
		return -KV_ENOMEM;
	return node_change_submitted(n, c,
				     raft_assign(&n->raft, &c->req, id, role, node_change_done));
}

int node_change_remove(struct node *n, uint64_t id, node_change_cb cb, void *arg)
{
	struct node_change *c;
	int rv;
	if ((rv = node_accepting(n)))
		return rv;
	if (!(c = node_change_new(n, cb, arg)))
		return -KV_ENOMEM;
	return node_change_submitted(n, c, raft_remove(&n->raft, &c->req, id, node_change_done));
}

const struct raft_configuration *node_configuration(const struct node *n)
{
	return &n->raft.configuration;
}

int node_peer_addr(const char *peer_url, char *out, size_t outlen)
{
	return node_url_addr(peer_url, out, outlen);
}

uint64_t node_match_index(const struct node *n, uint64_t id)
{
	raft_index idx = 0;
	if (!node_is_leader(n) || raft_match_index(&n->raft, id, &idx) != 0)
		return 0;
	return idx;
}

struct node_learn {
	uv_work_t work;
	char *dir;
	uint64_t cluster_id;
	int rv;
};

/* On the thread pool: a synchronous rewrite of the small identity file. */
static void node_learn_work(uv_work_t *w)
{
	struct node_learn *l = w->data;
	struct node_identity_file f;
	l->rv = node_identity_read(l->dir, &f);
	if (l->rv == 0 && f.cluster_id == 0) {
		f.cluster_id = l->cluster_id;
		l->rv = node_identity_write(l->dir, &f);
	}
}

static void node_learn_done(uv_work_t *w, int status)
{
	struct node_learn *l = w->data;
	if (status == 0 && l->rv == 0)
		LOGI("recorded cluster id %016" PRIx64 " in %s/%s", l->cluster_id, l->dir,
		     NODE_ID_FILE);
	else
		LOGW("could not record cluster id %016" PRIx64 " in %s/%s; it is learnt again "
		     "from the member table on the next start",
		     l->cluster_id, l->dir, NODE_ID_FILE);
	free(l->dir);
	free(l);
}

void node_learn_cluster_id(struct node *n, uint64_t cluster_id)
{
	struct node_learn *l;
	if (n->srv->cluster_id != 0 || cluster_id == 0)
		return;
	n->srv->cluster_id = cluster_id;
	LOGI("member %016" PRIx64 " joined cluster %016" PRIx64, n->srv->member_id, cluster_id);
	l = calloc(1, sizeof(*l));
	if (!l || !(l->dir = strdup(n->srv->cfg->data_dir))) {
		free(l);
		return;
	}
	l->cluster_id = cluster_id;
	l->work.data = l;
	if (uv_queue_work(n->srv->loop, &l->work, node_learn_work, node_learn_done) != 0) {
		free(l->dir);
		free(l);
	}
}

/* --- leadership transfer on request (MoveLeader) ----------------------- */

/* libraft 0.22.1 can let a transfer time out under write load (its
 * TimeoutNow may reach a follower that is not quite caught up and is never
 * re-sent), so a transfer that ends with the leadership unchanged is tried
 * again a few times before giving up. */
#define NODE_MOVE_ATTEMPTS 3

struct node_move {
	struct raft_transfer req;
	struct node *n;
	uint64_t target;
	int attempts;
	node_move_cb cb;
	void *arg;
};

static void node_move_done(struct raft_transfer *req)
{
	struct node_move *mv = req->data;
	struct node *n = mv->n;
	uint64_t leader = node_leader(n);
	int rv;

	if (raft_state(&n->raft) != RAFT_LEADER && leader == mv->target) {
		LOGI("raft: leadership moved to %016" PRIx64, mv->target);
		mv->cb(mv->arg, 0);
		free(mv);
		return;
	}
	if (raft_state(&n->raft) == RAFT_LEADER && ++mv->attempts < NODE_MOVE_ATTEMPTS) {
		mv->req.data = mv;
		rv = raft_transfer(&n->raft, &mv->req, mv->target, node_move_done);
		if (rv == 0)
			return;
	}
	LOGW("raft: moving leadership to %016" PRIx64 " failed (leader now %016" PRIx64 ")",
	     mv->target, leader);
	mv->cb(mv->arg, raft_state(&n->raft) == RAFT_LEADER ? -KV_ETIMEOUT : -KV_ELEADERCHANGED);
	free(mv);
}

int node_move_leader(struct node *n, uint64_t target, node_move_cb cb, void *arg)
{
	const struct raft_configuration *c = &n->raft.configuration;
	struct node_move *mv;
	unsigned i;
	int rv;

	if (raft_state(&n->raft) != RAFT_LEADER)
		return -KV_ENOTLEADER;
	for (i = 0; i < c->n; i++)
		if (c->servers[i].id == target && c->servers[i].role == RAFT_VOTER)
			break;
	if (i == c->n)
		return -KV_EBADTRANSFEREE;
	if (target == n->srv->member_id) {
		cb(arg, 0);
		return 0;
	}
	mv = calloc(1, sizeof(*mv));
	if (!mv)
		return -KV_ENOMEM;
	mv->n = n;
	mv->target = target;
	mv->cb = cb;
	mv->arg = arg;
	mv->req.data = mv;
	rv = raft_transfer(&n->raft, &mv->req, target, node_move_done);
	if (rv) {
		free(mv);
		return rv == RAFT_NOTLEADER ? -KV_ENOTLEADER : -KV_EBADTRANSFEREE;
	}
	return 0;
}

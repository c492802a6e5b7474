/*
 * raftkv-restore: turns a snapshot file saved with `etcdctl snapshot save`
 * from a raftkv member into the data dir of one member of a NEW cluster,
 * as `etcdctl snapshot restore` does for etcd.
 *
 *   raftkv-restore SNAPSHOT_FILE --name N --data-dir D \
 *       --initial-cluster N=URL,... --initial-cluster-token T \
 *       --initial-advertise-peer-urls URL [--skip-hash-check]
 *
 * The file is what Maintenance/Snapshot streams (svc_maint.c): the fsm
 * image (fsm_image(): header "RKVS", format, size, then one LZ4 frame with
 * a content checksum holding the store, lease and alarm sections), zero
 * padding to a multiple of 512 bytes, and the SHA-256 of all that as the
 * last 32 bytes.  A file of size 32 mod 512 has the trailer (etcd's rule);
 * it must match unless --skip-hash-check, which also accepts a bare image
 * such as a libraft snapshot-* file copied out of a data dir.
 *
 * Checks, before anything is written: the trailer, the header, the LZ4
 * frame and its checksum, then the whole image decoded by the server's own
 * fsm restore into a scratch server (so a file that restores here loads in
 * the server), and the flags as the server checks a new member's
 * (config_verify_bootstrap).  Any failure: one clear line, exit 1.
 *
 * What the new cluster gets is the scratch server's state re-encoded by
 * fsm_image() (the server's one encoder), with one change, as etcd's
 * restore deletes the old cluster's members: the member table is emptied
 * (uninitialised), so the new cluster's first leader fills it from the new
 * --initial-cluster exactly as after a fresh bootstrap.  Keys, revisions,
 * leases and alarms are kept.
 *
 * Design: the data dir is made a libraft data dir whose state is the
 * snapshot, with no log.  node_init (the server's own code) creates the
 * dir and its identity file (cluster and member ids from the new
 * --initial-cluster and token, exactly as the server derives them); then,
 * through libraft's uv I/O without running raft, the term is set to 1 and
 * the image is stored as the raft snapshot at index 1, term 1, whose
 * configuration is the new cluster's (node_initial_configuration, the one
 * a bootstrap would write).  When raftkv starts on that dir with the same
 * flags, the identity matches, bootstrap is skipped (the dir has a term)
 * and libraft loads the snapshot through fsm restore: the member serves the
 * restored keys at their revisions.  Every member restored from the same
 * file holds the same snapshot at the same index, so they agree from the
 * start.  Later restarts find an ordinary data dir: the restored state is a
 * raft snapshot like any other, never applied twice, replaced only by
 * newer snapshots; a member added later gets it by InstallSnapshot, since
 * no log entry before index 2 exists anywhere.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

#include <lz4frame.h>
#include <sha2.h>
#include <raft.h>
#include <uv.h>

#include "lib/err.h"
#include "lib/log.h"
#include "server/alarm.h"
#include "server/config.h"
#include "server/fsm.h"
#include "server/lease.h"
#include "server/members.h"
#include "server/mvcc.h"
#include "server/node.h"
#include "server/server.h"

#define RESTORE_SHA_LEN 32u
#define RESTORE_ALIGN 512u
/* fsm.c's header: magic | format u32 | uncompressed length u64. */
#define RESTORE_MAGIC "RKVS"
#define RESTORE_HEADER 16u
#define RESTORE_SCRATCH (4u << 20)

struct restore {
	const char *file;
	bool skip_hash_check;
	uint8_t *data; /* the whole file */
	size_t len;
	size_t image_len; /* header + LZ4 frame in data */
	uint8_t *image;   /* what the data dir gets (fsm_image, raft_malloc'd) */
	size_t new_len;
	struct config cfg;
	struct server srv;
	struct raft_fsm fsm;
	/* what the verification found */
	int64_t revision;
	uint64_t keys, leases;
	size_t alarms;
	/* async steps */
	struct raft_io_snapshot_put put;
	int put_status;
	bool put_done, node_closed;
};

static void restore_usage(FILE *out)
{
	fprintf(out,
		"Usage: raftkv-restore SNAPSHOT_FILE [options]\n"
		"\n"
		"Restores a snapshot saved by `etcdctl snapshot save` from a raftkv member\n"
		"into the data dir of a member of a new cluster.  Run it once per member,\n"
		"with that member's --name and --initial-advertise-peer-urls and the same\n"
		"--initial-cluster and --initial-cluster-token everywhere; then start\n"
		"raftkv on every member with the same flags.\n"
		"\n"
		"Options:\n"
		"  --name NAME                      this member's name (default \"default\")\n"
		"  --data-dir DIR                   data dir to create (default NAME.raftkv);\n"
		"                                   must not exist or be empty\n"
		"  --initial-cluster N=URL,...      the new cluster's members and peer URLs\n"
		"  --initial-cluster-token TOKEN    the new cluster's token (default etcd-cluster)\n"
		"  --initial-advertise-peer-urls U  this member's peer URLs\n"
		"  --skip-hash-check                do not require the SHA-256 trailer (a file\n"
		"                                   copied out of a data dir has none)\n"
		"  -h, --help                       this text\n");
}

/* --- the file ------------------------------------------------------------- */

static int restore_read_file(struct restore *r)
{
	struct stat st;
	size_t off = 0;
	int fd = open(r->file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "raftkv-restore: cannot open %s: %s\n", r->file, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		fprintf(stderr, "raftkv-restore: %s is not a regular file\n", r->file);
		close(fd);
		return -1;
	}
	if ((uint64_t)st.st_size > SIZE_MAX - 1 || !(r->data = malloc((size_t)st.st_size + 1))) {
		fprintf(stderr, "raftkv-restore: %s: %lld bytes do not fit in memory\n", r->file,
			(long long)st.st_size);
		close(fd);
		return -1;
	}
	while (off < (size_t)st.st_size) {
		ssize_t n = read(fd, r->data + off, (size_t)st.st_size - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fprintf(stderr, "raftkv-restore: cannot read %s: %s\n", r->file,
				n < 0 ? strerror(errno) : "file shrank while reading");
			close(fd);
			return -1;
		}
		off += (size_t)n;
	}
	close(fd);
	r->len = off;
	return 0;
}

static void restore_hex(const uint8_t *b, size_t n, char *out)
{
	size_t i;
	for (i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

/* The SHA-256 trailer, as etcd's snapshot restore checks it. */
static int restore_check_hash(struct restore *r)
{
	uint8_t md[SHA256_DIGEST_LENGTH];
	SHA2_CTX ctx;
	char want[2 * RESTORE_SHA_LEN + 1], got[2 * RESTORE_SHA_LEN + 1];
	bool has_hash = r->len % RESTORE_ALIGN == RESTORE_SHA_LEN;

	if (!has_hash) {
		if (!r->skip_hash_check) {
			fprintf(stderr,
				"raftkv-restore: %s: snapshot missing hash but --skip-hash-check=false "
				"(%zu bytes: not the size of a file saved by `etcdctl snapshot save`; "
				"truncated?)\n",
				r->file, r->len);
			return -1;
		}
		return 0;
	}
	r->len -= RESTORE_SHA_LEN;
	if (r->skip_hash_check)
		return 0;
	SHA256Init(&ctx);
	SHA256Update(&ctx, r->data, r->len);
	SHA256Final(md, &ctx);
	if (memcmp(md, r->data + r->len, RESTORE_SHA_LEN) != 0) {
		restore_hex(r->data + r->len, RESTORE_SHA_LEN, want);
		restore_hex(md, RESTORE_SHA_LEN, got);
		fprintf(stderr,
			"raftkv-restore: %s is damaged: its SHA-256 trailer is %s but its "
			"contents hash to %s; refusing to restore it\n",
			r->file, want, got);
		return -1;
	}
	return 0;
}

/* Length of the LZ4 frame at src: decompressing it to nowhere, which also
 * checks its content checksum.  0 with *why set when it is not whole. */
static size_t restore_frame_len(const uint8_t *src, size_t len, const char **why)
{
	LZ4F_decompressionContext_t dctx;
	uint8_t *scratch;
	size_t pos = 0, r = 1;

	scratch = malloc(RESTORE_SCRATCH);
	if (!scratch || LZ4F_isError(LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION))) {
		free(scratch);
		*why = "out of memory";
		return 0;
	}
	while (r != 0) {
		size_t in = len - pos, out = RESTORE_SCRATCH;
		if (in == 0) {
			*why = "the LZ4 frame is truncated";
			pos = 0;
			break;
		}
		r = LZ4F_decompress(dctx, scratch, &out, src + pos, &in, NULL);
		if (LZ4F_isError(r)) {
			*why = LZ4F_getErrorName(r); /* includes a checksum mismatch */
			pos = 0;
			break;
		}
		if (in == 0 && out == 0) {
			*why = "the LZ4 frame makes no progress";
			pos = 0;
			break;
		}
		pos += in;
	}
	LZ4F_freeDecompressionContext(dctx);
	free(scratch);
	return pos;
}

/* The header and the frame; what follows the frame may only be padding. */
static int restore_check_image(struct restore *r)
{
	const char *why = NULL;
	size_t frame, i;

	if (r->len < RESTORE_HEADER || memcmp(r->data, RESTORE_MAGIC, 4) != 0) {
		fprintf(stderr,
			"raftkv-restore: %s is not a raftkv snapshot (no \"%s\" header); an "
			"etcd (bbolt) snapshot is restored with `etcdctl snapshot restore`\n",
			r->file, RESTORE_MAGIC);
		return -1;
	}
	frame = restore_frame_len(r->data + RESTORE_HEADER, r->len - RESTORE_HEADER, &why);
	if (frame == 0) {
		fprintf(stderr, "raftkv-restore: %s is damaged: %s\n", r->file, why);
		return -1;
	}
	r->image_len = RESTORE_HEADER + frame;
	for (i = r->image_len; i < r->len; i++) {
		if (r->data[i] != 0 || r->len - r->image_len >= RESTORE_ALIGN) {
			fprintf(stderr,
				"raftkv-restore: %s is damaged: %zu unexpected bytes after the "
				"image\n",
				r->file, r->len - r->image_len);
			return -1;
		}
	}
	return 0;
}

/* Decodes the image exactly as a starting member will (fsm restore) into a
 * scratch server: a file that passes here loads there.  Then re-encodes it
 * for the new cluster, without the old cluster's members. */
static int restore_decode(struct restore *r)
{
	struct raft_buffer buf;
	/* No hooks: nothing waits for results and there is no raft. */
	const struct fsm_ctx ctx = {
		.mvcc = &r->srv.mvcc,
		.kvs = &r->srv.kvs,
		.leases = &r->srv.leases,
		.alarms = &r->srv.alarms,
		.members = &r->srv.members,
		.data_dir = r->file,
	};
	int rv;

	members_init(&r->srv.members);
	buf.len = r->image_len;
	buf.base = raft_malloc(buf.len);
	r->srv.leases = lease_table_new();
	if (!buf.base || !r->srv.leases || fsm_init(&r->fsm, &ctx) != 0) {
		raft_free(buf.base);
		fprintf(stderr, "raftkv-restore: out of memory\n");
		return -1;
	}
	memcpy(buf.base, r->data, buf.len);
	rv = r->fsm.restore(&r->fsm, &buf);
	fsm_close(&r->fsm);
	if (rv) {
		/* fsm logged why; on failure the buffer is still ours. */
		raft_free(buf.base);
		fprintf(stderr, "raftkv-restore: %s does not decode as a raftkv snapshot (%s)\n",
			r->file, raft_strerror(rv));
		return -1;
	}
	r->revision = mvcc_rev(r->srv.mvcc);
	r->keys = mvcc_live_keys(r->srv.mvcc);
	r->leases = lease_table_count(r->srv.leases);
	r->alarms = r->srv.alarms.n;
	members_close(&r->srv.members);
	members_init(&r->srv.members);
	rv = fsm_image(&ctx, &r->image, &r->new_len);
	if (rv)
		fprintf(stderr, "raftkv-restore: cannot encode the restored state (%s)\n",
			kv_err_name(rv));
	mvcc_free(r->srv.mvcc);
	r->srv.mvcc = NULL;
	lease_table_free(r->srv.leases);
	r->srv.leases = NULL;
	alarm_table_close(&r->srv.alarms);
	members_close(&r->srv.members);
	return rv ? -1 : 0;
}

/* --- flags --------------------------------------------------------------- */

static bool restore_is_flag(const char *a, const char *name)
{
	while (*a == '-')
		a++;
	return strcmp(a, name) == 0;
}

/* The server flags that mean something here; all take a value. */
static const char *const restore_flags[] = {
	"name", "data-dir", "initial-cluster", "initial-cluster-token",
	"initial-advertise-peer-urls", "initial-cluster-state",
};

/* 1: takes the next argument as its value; 0: value inline; -1: refused
 * (printed). */
static int restore_check_flag(const char *a, bool have_next)
{
	const char *name = a + strspn(a, "-"), *eq = strchr(name, '=');
	size_t len = eq ? (size_t)(eq - name) : strlen(name), i;

	for (i = 0; i < sizeof(restore_flags) / sizeof(restore_flags[0]); i++) {
		if (strlen(restore_flags[i]) != len || strncmp(restore_flags[i], name, len) != 0)
			continue;
		if (eq)
			return 0;
		if (!have_next) {
			fprintf(stderr, "raftkv-restore: --%s needs a value (see raftkv-restore --help)\n",
				restore_flags[i]);
			return -1;
		}
		return 1;
	}
	fprintf(stderr, "raftkv-restore: unknown flag %s (see raftkv-restore --help)\n", a);
	return -1;
}

/* Takes SNAPSHOT_FILE (first or last argument) and --skip-hash-check out of
 * argv; the rest are the server's own flags, parsed by config.c.  Returns
 * 0, 1 (help printed) or -1 (usage error, printed). */
static int restore_parse(struct restore *r, int argc, char **argv, char ***rest, int *n_rest)
{
	char **out = calloc((size_t)argc + 1, sizeof(*out));
	int i, n = 0, file_at = -1, rv;

	if (!out)
		return -1;
	out[n++] = argv[0];
	if (argc > 1 && argv[1][0] != '-')
		file_at = 1;
	else if (argc > 1 && argv[argc - 1][0] != '-')
		file_at = argc - 1;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (i == file_at)
			continue;
		if (restore_is_flag(a, "h") || restore_is_flag(a, "help")) {
			restore_usage(stdout);
			free(out);
			return 1;
		}
		if (restore_is_flag(a, "skip-hash-check") ||
		    restore_is_flag(a, "skip-hash-check=true")) {
			r->skip_hash_check = true;
			continue;
		}
		if (restore_is_flag(a, "skip-hash-check=false")) {
			r->skip_hash_check = false;
			continue;
		}
		if (a[0] == '-' && strncmp(a + strspn(a, "-"), "wal-dir", 7) == 0) {
			fprintf(stderr, "raftkv-restore: --wal-dir: raftkv keeps its log in the data "
					"dir\n");
			free(out);
			return -1;
		}
		if (a[0] != '-') {
			fprintf(stderr, "raftkv-restore: unexpected argument %s (one SNAPSHOT_FILE, "
					"first or last)\n",
				a);
			free(out);
			return -1;
		}
		rv = restore_check_flag(a, i + 1 < argc && i + 1 != file_at);
		if (rv < 0) {
			free(out);
			return -1;
		}
		out[n++] = argv[i];
		if (rv == 1)
			out[n++] = argv[++i];
	}
	if (file_at < 0) {
		fprintf(stderr, "raftkv-restore: SNAPSHOT_FILE is missing\n");
		restore_usage(stderr);
		free(out);
		return -1;
	}
	r->file = argv[file_at];
	rv = config_parse(&r->cfg, n, out);
	if (rv != CONFIG_RUN) {
		if (rv == CONFIG_DONE || rv == CONFIG_VERSION)
			fprintf(stderr, "raftkv-restore: --help and --version are raftkv's, not "
					"this tool's; see raftkv-restore --help\n");
		free(out);
		return -1;
	}
	*rest = out;
	*n_rest = n;
	return 0;
}

static int restore_check_flags(struct restore *r)
{
	char err[2048];
	DIR *d;
	struct dirent *e;

	if (!r->cfg.initial_cluster_new) {
		fprintf(stderr, "raftkv-restore: --initial-cluster-state must be new: a restore "
				"starts a new cluster\n");
		return -1;
	}
	if (config_verify_bootstrap(&r->cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "raftkv-restore: %s\n", err);
		return -1;
	}
	/* etcd: the data dir must not exist, or be empty. */
	d = opendir(r->cfg.data_dir);
	if (!d) {
		if (errno == ENOENT)
			return 0;
		fprintf(stderr, "raftkv-restore: data-dir \"%s\" not empty or could not be read "
				"(%s)\n",
			r->cfg.data_dir, strerror(errno));
		return -1;
	}
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			closedir(d);
			fprintf(stderr, "raftkv-restore: data-dir \"%s\" not empty or could not be "
					"read\n",
				r->cfg.data_dir);
			return -1;
		}
	}
	closedir(d);
	return 0;
}

/* --- the data dir ---------------------------------------------------------- */

static void restore_put_cb(struct raft_io_snapshot_put *req, int status)
{
	struct restore *r = req->data;
	r->put_status = status;
	r->put_done = true;
}

static void restore_node_closed(struct node *n)
{
	struct restore *r = n->fsm->data;
	r->node_closed = true;
}

/* The data dir: identity (node_init), term 1, the image as the raft
 * snapshot at index 1 with the new configuration. */
static int restore_write(struct restore *r)
{
	struct server *s = &r->srv;
	struct raft_snapshot snap;
	struct raft_buffer buf;
	struct raft_io *io;
	int rv, ret = -1;

	s->loop = uv_default_loop();
	s->cfg = &r->cfg;
	/* node_init wants an fsm; it is never called here (raft never starts),
	 * and its data points back to us for the close callback. */
	memset(&r->fsm, 0, sizeof(r->fsm));
	r->fsm.version = 2;
	r->fsm.data = r;
	rv = node_init(&s->node, s, &r->fsm);
	if (rv) {
		fprintf(stderr, "raftkv-restore: cannot create data dir %s (%s)\n", r->cfg.data_dir,
			kv_err_name(rv));
		return -1;
	}
	memset(&snap, 0, sizeof(snap));
	rv = node_initial_configuration(&r->cfg, &snap.configuration);
	if (rv) {
		fprintf(stderr, "raftkv-restore: bad --initial-cluster (%s)\n", kv_err_name(rv));
		goto close;
	}
	io = &s->node.io;
	rv = io->set_term(io, 1);
	if (rv) {
		fprintf(stderr, "raftkv-restore: cannot write the raft term in %s: %s (%s)\n",
			r->cfg.data_dir, raft_strerror(rv), io->errmsg);
		goto close;
	}
	snap.index = 1;
	snap.term = 1;
	snap.configuration_index = 1;
	buf.base = r->image;
	buf.len = r->new_len;
	snap.bufs = &buf;
	snap.n_bufs = 1;
	r->put.data = r;
	rv = io->snapshot_put(io, 0, &r->put, &snap, restore_put_cb);
	if (rv) {
		fprintf(stderr, "raftkv-restore: cannot store the snapshot in %s: %s (%s)\n",
			r->cfg.data_dir, raft_strerror(rv), io->errmsg);
		goto close;
	}
	while (!r->put_done && uv_run(s->loop, UV_RUN_ONCE))
		;
	if (!r->put_done || r->put_status) {
		fprintf(stderr, "raftkv-restore: cannot store the snapshot in %s: %s (%s)\n",
			r->cfg.data_dir, raft_strerror(r->put_done ? r->put_status : RAFT_IOERR),
			io->errmsg);
		goto close;
	}
	ret = 0;
close:
	raft_configuration_close(&snap.configuration);
	node_close(&s->node, restore_node_closed);
	while (!r->node_closed && uv_run(s->loop, UV_RUN_ONCE))
		;
	if (!r->node_closed) {
		fprintf(stderr, "raftkv-restore: closing the raft I/O did not finish\n");
		ret = -1;
	}
	return ret;
}

int main(int argc, char **argv)
{
	struct restore r;
	char **rest = NULL;
	int n_rest = 0, rv, i;

	signal(SIGPIPE, SIG_IGN);
	memset(&r, 0, sizeof(r));
	log_threshold = LOG_WARN;
	rv = restore_parse(&r, argc, argv, &rest, &n_rest);
	if (rv) {
		config_close(&r.cfg);
		return rv > 0 ? 0 : 2;
	}
	for (i = 0; i < r.cfg.n_notices; i++)
		if (r.cfg.notices[i].warning)
			fprintf(stderr, "raftkv-restore: warning: %s\n", r.cfg.notices[i].text);
	rv = 1;
	if (restore_check_flags(&r) || restore_read_file(&r) || restore_check_hash(&r) ||
	    restore_check_image(&r) || restore_decode(&r))
		goto out;
	if (restore_write(&r)) {
		fprintf(stderr, "raftkv-restore: %s may hold a partial restore: remove it before "
				"trying again\n",
			r.cfg.data_dir);
		goto out;
	}
	printf("restored %s into %s: cluster %016" PRIx64 ", member %016" PRIx64
	       " (%s), revision %" PRId64 ", %" PRIu64 " keys, %" PRIu64 " leases, %zu alarms\n",
	       r.file, r.cfg.data_dir, r.srv.cluster_id, r.srv.member_id, r.cfg.name, r.revision,
	       r.keys, r.leases, r.alarms);
	rv = 0;
out:
	free(r.data);
	raft_free(r.image);
	free(rest);
	config_close(&r.cfg);
	return rv;
}

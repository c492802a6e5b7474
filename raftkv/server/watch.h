/*
 * watch: etcd's watchers (etcd 3.4 mvcc/watchable_store.go semantics), as a
 * registry that knows nothing of sockets or gRPC framing.
 *
 * Data path: the fsm applies a write through kvs to mvcc; mvcc calls our
 * observer for every changed key and our commit hook once per revision.
 * The observer matches each change against the SYNCED watchers (single keys
 * in a tree keyed by key, ranges in an interval tree: the cost is in
 * proportion to the watchers that match, not to all of them); the commit
 * hook sends each matched watcher ONE response holding all its events of
 * that revision.  Responses leave through a stream's sink (svc_watch.c
 * packs them onto the gRPC stream).
 *
 * Fan-out cost: a revision's events are encoded once (per prev_kv choice)
 * into a shared buffer, and a sink that offers send_events gets, for each
 * watcher, a slice of those bytes to queue behind its own small head
 * (header and watch id; watch_head_encode): no per-watcher protobuf work or
 * copy of the events.  With cfg.batch (on under a loop) those events are
 * held until the end of the loop turn, so a watcher gets one response for
 * all the revisions applied in a turn (whole revisions, in order, header at
 * the hub's revision, as etcd's catch-up responses): the fan-out costs per
 * watcher and turn, not per watcher and revision, and the apply loop keeps
 * up with the writes however many watchers there are.  A sink without
 * send_events gets protobuf structs (send), one response per revision.
 *
 * Slow consumers: before sending, the hub asks the sink how many bytes the
 * transport still holds for that stream.  Above high_water the watcher is
 * not sent anything: it moves to the UNSYNCED set, remembering the first
 * revision it has not received, and later catches up from the store's
 * history (mvcc_changes), once its stream has drained below low_water, in
 * windows of revisions that widen while they come back sparse (one pass
 * over the watcher's key range per window) and in responses of about
 * max_resp_bytes cut at revision boundaries.  A watcher whose next revision
 * has been compacted meanwhile is canceled with compact_revision, as etcd.
 * Watchers created with a start_revision in the past begin unsynced.  A
 * watcher moves back to SYNCED when it has everything up to the current
 * revision.  So each watcher sees every event of its range exactly once, in
 * revision order, whatever the other watchers or streams do.
 *
 * Store swap: fsm replaces srv->mvcc when it installs a raft snapshot.  The
 * hub notices (at every entry point and on its timer), attaches itself to
 * the new store and sends every synced watcher through the unsynced path.
 *
 * Timers: with a libuv loop (srv->loop != NULL) the hub runs watch_hub_tick
 * every WATCH_TICK_MS while any stream exists; without one (unit tests) the
 * caller drives watch_hub_tick itself.
 */
#ifndef RAFTKV_WATCH_H
#define RAFTKV_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rpc.pb-c.h"

struct blob;
struct server;
struct watch_hub;
struct watch_stream;

/* How the hub reaches one client stream. */
struct watch_sink_ops {
	/* Queues resp for the client.  header->revision is set; the sink fills
	 * the rest of the header.  resp is valid only during the call, and the
	 * call must not re-enter the hub (no watch_stream_free from here).
	 * A non-zero return marks the stream dead: nothing more is sent. */
	int (*send)(void *sink, Etcdserverpb__WatchResponse *resp);
	/* Bytes queued for the client and not yet written (NULL: always 0,
	 * i.e. no backpressure). */
	size_t (*pending)(void *sink);
	/* Optional: called every check_ms (hasleader monitoring).  May end the
	 * call, but must not free the stream. */
	void (*check)(void *sink);
	/* Optional fast path for live events: queues the WatchResponse made of
	 * the sink's header at revision rev, watch_id, and blob[off, off + len),
	 * the events already encoded as the response's `events` field.  The
	 * sink takes its own reference on blob if it keeps the bytes.  The rest
	 * as for send. */
	int (*send_events)(void *sink, int64_t rev, int64_t watch_id, struct blob *blob, size_t off,
			   size_t len);
};

/* What comes before the events in a WatchResponse sent by send_events:
 * the header field (hdr: a packed ResponseHeader of hdr_len bytes) and
 * watch_id.  out must have room for hdr_len + WATCH_HEAD_MAX bytes; returns
 * the bytes written. */
#define WATCH_HEAD_MAX 16
size_t watch_head_encode(uint8_t *out, const uint8_t *hdr, size_t hdr_len, int64_t watch_id);

/* Tunables; watch_hub_config() returns the live copy. */
struct watch_config {
	int64_t progress_ms;      /* --experimental-watch-progress-notify-interval */
	int64_t check_ms;         /* period of sink->check (etcd: election timeout) */
	size_t high_water;        /* stop sending live events to a stream above this */
	size_t low_water;         /* catch up only below this */
	int64_t max_sync_revs;    /* first catch-up window, in revisions (etcd: 1000) */
	size_t max_resp_bytes;    /* split catch-up responses (at revision bounds) */
	unsigned max_sync_watchers; /* catch-up steps per tick (etcd: 512) */
	/* Hold live events for fast-path sinks until the end of the loop turn
	 * (or watch_hub_flush): one response per watcher and turn.  On with a
	 * loop; off (one response per revision, at once) without. */
	bool batch;
};

#define WATCH_TICK_MS 100
#define WATCH_PROGRESS_MS_DEFAULT (10 * 60 * 1000)

struct watch_stats {
	uint64_t streams;
	uint64_t watchers;  /* all, idle (compacted) ones included */
	uint64_t synced;
	uint64_t unsynced;
	uint64_t responses; /* sent since the hub was made */
	uint64_t events;
	uint64_t fell_behind; /* times a synced watcher became unsynced */
};

/* Makes the hub of srv and attaches it to srv->mvcc (observer and commit
 * hook); the progress interval comes from srv->cfg when set.  0 or
 * -KV_ENOMEM. */
int watch_hub_new(struct server *srv, struct watch_hub **out);
/* After the loop stopped (the timer is closed by then) and before
 * mvcc_free.  Frees any stream still registered, without sending. */
void watch_hub_free(struct watch_hub *h);
struct watch_config *watch_hub_config(struct watch_hub *h);
void watch_hub_stats(struct watch_hub *h, struct watch_stats *st);
/* Catch-up, progress notifications, sink checks, store-swap detection.
 * now_ms only needs to be monotonic. */
void watch_hub_tick(struct watch_hub *h, uint64_t now_ms);
/* Sends what the batch holds now (the loop does at the end of each turn). */
void watch_hub_flush(struct watch_hub *h);
/* Optional fast path for fsm after it swapped srv->mvcc (the hub would
 * notice within one tick anyway). */
void watch_hub_store_changed(struct watch_hub *h);

/* One gRPC Watch stream.  ops and sink must outlive the stream. */
int watch_stream_new(struct watch_hub *h, const struct watch_sink_ops *ops, void *sink,
		     struct watch_stream **out);
/* Cancels its watchers silently and frees it. */
void watch_stream_free(struct watch_stream *st);

/*
 * The three WatchRequest kinds, answered as etcd 3.4's watch server does.
 * create: replies created=true with the watch id (server-assigned 0,1,... or
 *   the client's), or created+canceled with watch_id -1 and the reason; a
 *   start_revision at or below the current revision replays history first.
 * cancel: replies canceled=true; an unknown id gets no reply at all.
 * progress: replies watch_id -1 with the current revision once every
 *   watcher of the stream is synced (at once if they already are).
 * 0, or the send error (the stream is then dead).
 */
int watch_stream_create(struct watch_stream *st, const Etcdserverpb__WatchCreateRequest *req);
int watch_stream_cancel(struct watch_stream *st, int64_t watch_id);
int watch_stream_progress(struct watch_stream *st);

#endif

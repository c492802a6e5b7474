/*
 * unary: the closed loop behind put, range and txn-put (and the puts of
 * watch): --clients request slots ("workers"), each with one unary call in
 * flight, spread over the connections; a worker whose call ends records
 * it and at once starts the next request, from inside the done callback,
 * so every request started in a loop turn leaves in that turn's one write
 * per connection.  With --rate, a worker first claims its request number,
 * then waits for a token.
 *
 * A worker owns a copy of the request template when the template has key
 * slots (only the key bytes are rewritten per request), and shares the
 * template's bytes when it has none (range).  The library does not copy a
 * unary request, so those bytes stay untouched until the call's done
 * callback, which is also when the worker reuses them.
 */
#include "bench.h"

#include <stdlib.h>
#include <string.h>

struct unary_worker {
	struct kvc_call call;
	struct rate_waiter wait;
	struct unary *u;
	struct kvc_client *kc;
	uint8_t *req;        /* own copy of the template, or the template */
	uint64_t i;          /* the request being sent */
	uint64_t t0;
};

struct unary {
	struct bench *b;
	const struct unary_spec *spec;
	struct report *r;
	struct rate rate;
	struct progress prog;
	struct unary_worker *w;
	size_t n_w;
	uint64_t claimed, completed;
	bool done;
};

static void unary_next(struct unary_worker *w);

static void unary_count(struct unary *u)
{
	if (++u->completed == u->spec->total) {
		report_end(u->r);
		u->done = true;
	}
}

static void unary_done(struct kvc_call *call, int err)
{
	struct unary_worker *w = call->data;
	uint64_t t1 = uv_hrtime();

	if (err)
		report_error(w->u->r, kvc_call_grpc_message(call));
	else
		report_ok(w->u->r, w->t0, t1);
	unary_count(w->u);
	unary_next(w);
}

/* Sends request w->i.  Returns false if it could not even start. */
static bool unary_send(struct unary_worker *w)
{
	struct unary *u = w->u;
	const struct unary_spec *sp = u->spec;
	const struct tmpl *t = sp->tmpl;
	int rv;

	for (size_t s = 0; s < t->n_slots; s++)
		key_encode(w->req + t->slot[s], t->key_size, sp->key_index(sp->ud, w->i, s));
	w->t0 = uv_hrtime();
	rv = kvc_call_unary(w->kc, &w->call, sp->method, w->req, t->len, unary_done);
	if (rv == 0)
		return true;
	report_error(u->r, kv_err_message(rv));
	unary_count(u);
	return false;
}

static void unary_wait_cb(struct rate_waiter *rw)
{
	struct unary_worker *w = (struct unary_worker *)((char *)rw -
							 offsetof(struct unary_worker, wait));

	if (!unary_send(w))
		unary_next(w);
}

/* The worker's next request, if any are left: a loop rather than
 * recursion, for calls that fail to start. */
static void unary_next(struct unary_worker *w)
{
	struct unary *u = w->u;

	while (u->claimed < u->spec->total) {
		w->i = u->claimed++;
		if (!rate_take(&u->rate, &w->wait))
			return; /* unary_wait_cb sends it */
		if (unary_send(w))
			return;
	}
}

int unary_run(struct bench *b, const struct unary_spec *spec, struct report *r)
{
	struct unary u;
	size_t i;
	int rv = 0;

	memset(&u, 0, sizeof(u));
	u.b = b;
	u.spec = spec;
	u.r = r;
	u.n_w = (uint64_t)b->clients < spec->total ? (size_t)b->clients : (size_t)spec->total;
	u.w = calloc(u.n_w ? u.n_w : 1, sizeof(*u.w));
	if (!u.w)
		return -1;
	for (i = 0; i < u.n_w; i++) {
		struct unary_worker *w = &u.w[i];

		kvc_call_init(&w->call);
		w->call.data = w;
		w->call.timeout_ms = KVC_NO_TIMEOUT;
		w->wait.cb = unary_wait_cb;
		w->u = &u;
		w->kc = bench_conn(b, i);
		if (spec->tmpl->n_slots) {
			w->req = malloc(spec->tmpl->len ? spec->tmpl->len : 1);
			if (!w->req) {
				rv = -1;
				goto out;
			}
			memcpy(w->req, spec->tmpl->enc, spec->tmpl->len);
		} else {
			w->req = spec->tmpl->enc;
		}
	}
	rate_init(&u.rate, b->loop, spec->rate);
	if (!spec->quiet)
		progress_start(&u.prog, b, &u.completed, spec->total);
	report_begin(r);
	if (spec->total == 0) {
		report_end(r);
		u.done = true;
	}
	for (i = 0; i < u.n_w; i++)
		unary_next(&u.w[i]);
	if (!bench_run_until(b, &u.done)) {
		bench_err("the loop ran out of work with %llu of %llu requests done",
			  (unsigned long long)u.completed, (unsigned long long)spec->total);
		rv = -1;
	}
	if (!spec->quiet)
		progress_stop(&u.prog, b);
	rate_close(&u.rate, b);
out:
	u.claimed = spec->total; /* a cancelled call must not start another */
	for (i = 0; i < u.n_w; i++) {
		kvc_call_cancel(&u.w[i].call);
		if (spec->tmpl->n_slots)
			free(u.w[i].req);
	}
	free(u.w);
	return rv;
}

/*
 * rate: --rate and --put-rate.  A token bucket refilled at per_sec tokens a
 * second.  It holds at most 10 ms worth, so that the rate is kept on
 * average without long bursts after a stall, and at least two tokens, so
 * that a timer that fires late is made up for by the next wait.  Whoever
 * finds it empty waits in a FIFO; one libuv timer wakes waiters as tokens
 * come in (libuv timers tick in milliseconds, so at high rates several
 * waiters go per tick).  per_sec 0 means no limit: rate_take() always
 * says go.
 */
#include "bench.h"

#include <math.h>
#include <string.h>

static void rate_timer_cb(uv_timer_t *t);

static void rate_refill(struct rate *r, uint64_t now)
{
	r->tokens += (double)(now - r->last) * (double)r->per_sec / 1e9;
	if (r->tokens > r->burst)
		r->tokens = r->burst;
	r->last = now;
}

static void rate_arm(struct rate *r)
{
	double need_ms = (1.0 - r->tokens) * 1e3 / (double)r->per_sec;
	uint64_t ms = need_ms <= 0 ? 0 : (uint64_t)ceil(need_ms);

	uv_timer_start(&r->timer, rate_timer_cb, ms, 0);
}

static void rate_timer_cb(uv_timer_t *t)
{
	struct rate *r = t->data;

	r->armed = false;
	rate_refill(r, uv_hrtime());
	while (r->head && r->tokens >= 1.0) {
		struct rate_waiter *w = r->head;

		r->head = w->next;
		if (!r->head)
			r->tail = NULL;
		r->tokens -= 1.0;
		w->cb(w);
	}
	if (r->head && r->open && !r->armed) {
		r->armed = true;
		rate_arm(r);
	}
}

void rate_init(struct rate *r, uv_loop_t *loop, uint64_t per_sec)
{
	memset(r, 0, sizeof(*r));
	r->per_sec = per_sec;
	r->burst = per_sec / 100 > 2 ? (double)(per_sec / 100) : 2.0;
	r->tokens = 1.0;
	r->last = uv_hrtime();
	uv_timer_init(loop, &r->timer);
	r->timer.data = r;
	r->open = true;
}

bool rate_take(struct rate *r, struct rate_waiter *w)
{
	if (!r->per_sec)
		return true;
	rate_refill(r, uv_hrtime());
	if (!r->head && r->tokens >= 1.0) {
		r->tokens -= 1.0;
		return true;
	}
	w->next = NULL;
	if (r->tail)
		r->tail->next = w;
	else
		r->head = w;
	r->tail = w;
	if (!r->armed) {
		r->armed = true;
		rate_arm(r);
	}
	return false;
}

void rate_close(struct rate *r, struct bench *b)
{
	if (!r->open)
		return;
	r->open = false;
	r->head = r->tail = NULL;
	bench_close(b, (uv_handle_t *)&r->timer);
}

/*
 * progress: etcd's benchmark shows a progress bar while it runs; so does
 * this one, but only when stdout is a terminal (a script reading the
 * summary gets no carriage-return noise).  A 200 ms timer redraws
 * "  done / total [=====>     ]  42%" on one line.
 */
#include "bench.h"

#define PROGRESS_WIDTH 40

static void progress_draw(struct progress *p)
{
	uint64_t done = *p->done > p->total ? p->total : *p->done;
	unsigned fill = p->total ? (unsigned)(done * PROGRESS_WIDTH / p->total) : PROGRESS_WIDTH;
	char bar[PROGRESS_WIDTH + 1];

	for (unsigned i = 0; i < PROGRESS_WIDTH; i++)
		bar[i] = i < fill ? '=' : i == fill ? '>' : ' ';
	bar[PROGRESS_WIDTH] = '\0';
	printf("\r %llu / %llu [%s] %3u%%", (unsigned long long)done,
	       (unsigned long long)p->total, bar,
	       p->total ? (unsigned)(done * 100 / p->total) : 100);
	fflush(stdout);
}

static void progress_timer_cb(uv_timer_t *t)
{
	progress_draw(t->data);
}

void progress_start(struct progress *p, struct bench *b, const uint64_t *done, uint64_t total)
{
	p->done = done;
	p->total = total;
	p->on = b->tty;
	if (!p->on)
		return;
	uv_timer_init(b->loop, &p->timer);
	p->timer.data = p;
	uv_timer_start(&p->timer, progress_timer_cb, 200, 200);
	progress_draw(p);
}

void progress_stop(struct progress *p, struct bench *b)
{
	if (!p->on)
		return;
	p->on = false;
	progress_draw(p);
	printf("\n");
	fflush(stdout);
	bench_close(b, (uv_handle_t *)&p->timer);
}

/*
 * metrics: the counters (see metrics.h); metrics_text.c renders them.
 */
#include "server/metrics.h"

#include <stdlib.h>

struct metrics metrics;

size_t metrics_n_methods;

int metrics_init(size_t n)
{
	metrics.grpc = calloc(n, sizeof(*metrics.grpc));
	if (!metrics.grpc)
		return -KV_ENOMEM;
	metrics_n_methods = n;
	return 0;
}

void metrics_close(void)
{
	free(metrics.grpc);
	metrics.grpc = NULL;
	metrics_n_methods = 0;
}

static struct metrics_grpc_method *metrics_method(size_t i)
{
	return i < metrics_n_methods ? &metrics.grpc[i] : NULL;
}

void metrics_grpc_started(size_t m, bool streaming)
{
	struct metrics_grpc_method *g = metrics_method(m);

	if (streaming)
		metrics.client_requests_stream++;
	else
		metrics.client_requests_unary++;
	if (g)
		g->started++;
}

void metrics_grpc_msg_received(size_t m)
{
	struct metrics_grpc_method *g = metrics_method(m);

	if (g)
		g->msg_received++;
}

void metrics_grpc_msg_sent(size_t m)
{
	struct metrics_grpc_method *g = metrics_method(m);

	if (g)
		g->msg_sent++;
}

void metrics_grpc_handled(size_t m, enum grpc_code code)
{
	struct metrics_grpc_method *g = metrics_method(m);

	if (g && (unsigned)code < METRICS_GRPC_CODES)
		g->handled[code]++;
}

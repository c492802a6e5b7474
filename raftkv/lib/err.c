/*
 * err: the table behind err.h.  Lookups are by index; the reverse lookup by
 * message is a linear scan, used only on the client side and on error paths.
 */
#include "lib/err.h"

#include <stdlib.h>
#include <string.h>

struct kv_err_entry {
	const char *name;
	enum grpc_code code;
	const char *msg;
};

static const struct kv_err_entry kv_err_table[] = {
#define KV_ERR_ROW(n, c, m) {#n, c, m},
	KV_ERRORS(KV_ERR_ROW)
#undef KV_ERR_ROW
};

static const struct kv_err_entry *kv_err_lookup(int err)
{
	int e = abs(err);
	if (e <= KV_E__FIRST || e >= KV_E__LAST)
		return NULL;
	return &kv_err_table[e - KV_E__FIRST - 1];
}

const char *kv_err_message(int err)
{
	const struct kv_err_entry *ent = kv_err_lookup(err);
	if (err == 0)
		return "";
	return ent ? ent->msg : "etcdserver: internal error";
}

enum grpc_code kv_err_grpc_code(int err)
{
	const struct kv_err_entry *ent = kv_err_lookup(err);
	if (err == 0)
		return GRPC_OK;
	return ent ? ent->code : GRPC_INTERNAL;
}

const char *kv_err_name(int err)
{
	const struct kv_err_entry *ent = kv_err_lookup(err);
	if (err == 0)
		return "KV_OK";
	return ent ? ent->name : "KV_E?";
}

int kv_err_from_message(const char *msg)
{
	size_t i;
	for (i = 0; i < sizeof(kv_err_table) / sizeof(kv_err_table[0]); i++)
		if (strcmp(kv_err_table[i].msg, msg) == 0)
			return -(int)(KV_E__FIRST + 1 + i);
	return 0;
}

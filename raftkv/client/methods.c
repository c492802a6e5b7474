/*
 * methods: etcd's v3 gRPC methods as the client library sees them (path,
 * streaming kind, whether a resend is safe, message types), generated from
 * the KVC_METHODS table in kvc.h.
 */
#include "client/kvc.h"

#include <string.h>

#define KVC_METHOD_DEF(name, path, kind, idem, req, resp)                  \
	const struct kvc_method kvc_##name = {                             \
		path, kind, idem, &etcdserverpb__##req##__descriptor,      \
		&etcdserverpb__##resp##__descriptor,                       \
	};
KVC_METHODS(KVC_METHOD_DEF)
#undef KVC_METHOD_DEF

static const struct kvc_method *const kvc_method_table[] = {
#define KVC_METHOD_REF(name, path, kind, idem, req, resp) &kvc_##name,
	KVC_METHODS(KVC_METHOD_REF)
#undef KVC_METHOD_REF
};

const struct kvc_method *kvc_method_find(const char *path)
{
	size_t i;

	for (i = 0; i < sizeof(kvc_method_table) / sizeof(kvc_method_table[0]); i++)
		if (strcmp(kvc_method_table[i]->path, path) == 0)
			return kvc_method_table[i];
	return NULL;
}

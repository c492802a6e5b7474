/*
 * Unit tests for pbjson, the protobuf <-> JSON mapping of the gateway.
 * Expected texts are what etcd 3.4.23's gateway (golang/protobuf jsonpb,
 * Go encoding/json) answered for the same input.  A hand-written descriptor
 * ("test.All") covers the scalar types etcd's protos do not use.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/arena.h"
#include "lib/err.h"
#include "lib/pbjson.h"
#include "rpc.pb-c.h"

/* ---- a message with every field type ------------------------------------ */

typedef struct All All;
struct All {
	ProtobufCMessage base;
	int32_t int32_val;
	int32_t sint32_val;
	int32_t sfixed32_val;
	uint32_t uint32_val;
	uint32_t fixed32_val;
	int64_t int64_val;
	int64_t sint64_val;
	int64_t sfixed64_val;
	uint64_t uint64_val;
	uint64_t fixed64_val;
	float float_val;
	double double_val;
	protobuf_c_boolean bool_val;
	int enum_val;
	char *string_val;
	ProtobufCBinaryData bytes_val;
	All *sub;
	size_t n_r_int64;
	int64_t *r_int64;
	size_t n_r_string;
	char **r_string;
	size_t n_r_sub;
	All **r_sub;
	size_t n_r_enum;
	int *r_enum;
	uint32_t choice_case;
	union {
		char *o_string;
		All *o_sub;
		int64_t o_int64;
	};
	protobuf_c_boolean has_opt_int32;
	int32_t opt_int32;
	size_t n_r_bytes;
	ProtobufCBinaryData *r_bytes;
	int64_t id;
};

static const ProtobufCEnumValue color_values[] = {
	{"RED", "TEST__RED", 0},
	{"GREEN", "TEST__GREEN", 1},
	{"BLUE", "TEST__BLUE", 5},
};
static const ProtobufCEnumValueIndex color_by_name[] = {{"BLUE", 2}, {"GREEN", 1}, {"RED", 0}};
static const ProtobufCIntRange color_ranges[] = {{0, 0}, {5, 2}, {0, 3}};
static const ProtobufCEnumDescriptor color_descriptor = {
	PROTOBUF_C__ENUM_DESCRIPTOR_MAGIC, "test.All.Color", "Color", "Test__All__Color", "test",
	3, color_values, 3, color_by_name, 2, color_ranges, NULL, NULL, NULL, NULL,
};

extern const ProtobufCMessageDescriptor all_descriptor;

#define F(name, id, label, type, q, member, desc, def, flags)                                \
	{                                                                                    \
		name, id, PROTOBUF_C_LABEL_##label, PROTOBUF_C_TYPE_##type, q,               \
			offsetof(All, member), desc, def, flags, 0, NULL, NULL               \
	}
#define Q(member) offsetof(All, member)

static const ProtobufCFieldDescriptor all_fields[] = {
	F("int32_val", 1, NONE, INT32, 0, int32_val, NULL, NULL, 0),
	F("sint32_val", 2, NONE, SINT32, 0, sint32_val, NULL, NULL, 0),
	F("sfixed32_val", 3, NONE, SFIXED32, 0, sfixed32_val, NULL, NULL, 0),
	F("uint32_val", 4, NONE, UINT32, 0, uint32_val, NULL, NULL, 0),
	F("fixed32_val", 5, NONE, FIXED32, 0, fixed32_val, NULL, NULL, 0),
	F("int64_val", 6, NONE, INT64, 0, int64_val, NULL, NULL, 0),
	F("sint64_val", 7, NONE, SINT64, 0, sint64_val, NULL, NULL, 0),
	F("sfixed64_val", 8, NONE, SFIXED64, 0, sfixed64_val, NULL, NULL, 0),
	F("uint64_val", 9, NONE, UINT64, 0, uint64_val, NULL, NULL, 0),
	F("fixed64_val", 10, NONE, FIXED64, 0, fixed64_val, NULL, NULL, 0),
	F("float_val", 11, NONE, FLOAT, 0, float_val, NULL, NULL, 0),
	F("double_val", 12, NONE, DOUBLE, 0, double_val, NULL, NULL, 0),
	F("bool_val", 13, NONE, BOOL, 0, bool_val, NULL, NULL, 0),
	F("enum_val", 14, NONE, ENUM, 0, enum_val, &color_descriptor, NULL, 0),
	F("string_val", 15, NONE, STRING, 0, string_val, NULL, &protobuf_c_empty_string, 0),
	F("bytes_val", 16, NONE, BYTES, 0, bytes_val, NULL, NULL, 0),
	F("sub", 17, NONE, MESSAGE, 0, sub, &all_descriptor, NULL, 0),
	F("r_int64", 18, REPEATED, INT64, Q(n_r_int64), r_int64, NULL, NULL, PROTOBUF_C_FIELD_FLAG_PACKED),
	F("r_string", 19, REPEATED, STRING, Q(n_r_string), r_string, NULL, NULL, 0),
	F("r_sub", 20, REPEATED, MESSAGE, Q(n_r_sub), r_sub, &all_descriptor, NULL, 0),
	F("r_enum", 21, REPEATED, ENUM, Q(n_r_enum), r_enum, &color_descriptor, NULL, PROTOBUF_C_FIELD_FLAG_PACKED),
	F("o_string", 22, NONE, STRING, Q(choice_case), o_string, NULL, &protobuf_c_empty_string,
	  PROTOBUF_C_FIELD_FLAG_ONEOF),
	F("o_sub", 23, NONE, MESSAGE, Q(choice_case), o_sub, &all_descriptor, NULL, PROTOBUF_C_FIELD_FLAG_ONEOF),
	F("o_int64", 24, NONE, INT64, Q(choice_case), o_int64, NULL, NULL, PROTOBUF_C_FIELD_FLAG_ONEOF),
	F("opt_int32", 25, OPTIONAL, INT32, Q(has_opt_int32), opt_int32, NULL, NULL, 0),
	F("r_bytes", 26, REPEATED, BYTES, Q(n_r_bytes), r_bytes, NULL, NULL, 0),
	F("ID", 27, NONE, INT64, 0, id, NULL, NULL, 0),
};

static const ProtobufCIntRange all_ranges[] = {{1, 0}, {0, 27}};

static void all_init(All *m)
{
	memset(m, 0, sizeof(*m));
	m->base.descriptor = &all_descriptor;
	m->string_val = (char *)protobuf_c_empty_string;
}

/* fields_sorted_by_name is left out: pbjson never looks fields up by name
 * through protobuf-c. */
const ProtobufCMessageDescriptor all_descriptor = {
	PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC, "test.All", "All", "Test__All", "test", sizeof(All),
	sizeof(all_fields) / sizeof(all_fields[0]), all_fields, NULL, 1, all_ranges,
	(ProtobufCMessageInit)all_init, NULL, NULL, NULL,
};

/* ---- helpers ---------------------------------------------------------------- */

struct fx {
	struct arena a;
	struct pbjson_buf b;
	char err[PBJSON_ERR_MAX];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	arena_init(&f->a);
	pbjson_buf_init(&f->b);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	arena_close(&f->a);
	pbjson_buf_close(&f->b);
	free(f);
	return 0;
}

static const char *enc(struct fx *f, const void *msg, unsigned flags)
{
	f->b.len = 0;
	assert_int_equal(pbjson_encode(&f->b, msg, flags), 0);
	return f->b.len ? f->b.data : "";
}

static void *dec(struct fx *f, const ProtobufCMessageDescriptor *d, const char *text)
{
	ProtobufCMessage *m = NULL;
	int rv = pbjson_decode(d, text, strlen(text), arena_pb_allocator(&f->a), &m, f->err);
	if (rv)
		fail_msg("decode %s: %s", text, f->err);
	return m;
}

static void dec_err(struct fx *f, const ProtobufCMessageDescriptor *d, const char *text, const char *want)
{
	ProtobufCMessage *m = NULL;
	assert_int_equal(pbjson_decode(d, text, strlen(text), arena_pb_allocator(&f->a), &m, f->err), -KV_EINVAL);
	assert_string_equal(f->err, want);
}

/* decode then encode: the canonical form of text */
static const char *canon(struct fx *f, const ProtobufCMessageDescriptor *d, const char *text)
{
	return enc(f, dec(f, d, text), 0);
}

/* ---- output ------------------------------------------------------------- */

/* The sample etcd 3.4.23 answered to POST /v3/kv/range. */
static void test_encode_range_response(void **state)
{
	struct fx *f = *state;
	Etcdserverpb__RangeResponse resp = ETCDSERVERPB__RANGE_RESPONSE__INIT;
	Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	Mvccpb__KeyValue kv = MVCCPB__KEY_VALUE__INIT, *kvs[1] = {&kv};

	h.cluster_id = 3556172557997394135ull;
	h.member_id = 17496614320493254894ull;
	h.revision = 13;
	h.raft_term = 2;
	kv.key.data = (uint8_t *)"gk";
	kv.key.len = 2;
	kv.value.data = (uint8_t *)"gv";
	kv.value.len = 2;
	kv.create_revision = 13;
	kv.mod_revision = 13;
	kv.version = 1;
	resp.header = &h;
	resp.n_kvs = 1;
	resp.kvs = kvs;
	resp.count = 1;
	assert_string_equal(enc(f, &resp, 0),
			    "{\"header\":{\"cluster_id\":\"3556172557997394135\",\"member_id\":\"17496614320493254894\","
			    "\"revision\":\"13\",\"raft_term\":\"2\"},\"kvs\":[{\"key\":\"Z2s=\",\"create_revision\":\"13\","
			    "\"mod_revision\":\"13\",\"version\":\"1\",\"value\":\"Z3Y=\"}],\"count\":\"1\"}");
	/* etcdctl -w json style */
	resp.n_kvs = 0;
	assert_string_equal(enc(f, &resp, PBJSON_INT64_NUMBERS),
			    "{\"header\":{\"cluster_id\":3556172557997394135,\"member_id\":17496614320493254894,"
			    "\"revision\":13,\"raft_term\":2},\"count\":1}");
}

static void test_encode_defaults_omitted(void **state)
{
	struct fx *f = *state;
	Etcdserverpb__AlarmResponse alarm = ETCDSERVERPB__ALARM_RESPONSE__INIT;
	Mvccpb__Event put = MVCCPB__EVENT__INIT, del = MVCCPB__EVENT__INIT;
	Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	Etcdserverpb__TxnResponse txn = ETCDSERVERPB__TXN_RESPONSE__INIT;
	All a;

	assert_string_equal(enc(f, &alarm, 0), "{}");
	del.type = MVCCPB__EVENT__EVENT_TYPE__DELETE;
	assert_string_equal(enc(f, &put, 0), "{}");
	assert_string_equal(enc(f, &del, 0), "{\"type\":\"DELETE\"}");
	/* a present but empty message is written */
	txn.header = &h;
	txn.succeeded = 0;
	assert_string_equal(enc(f, &txn, 0), "{\"header\":{}}");
	all_init(&a);
	assert_string_equal(enc(f, &a, 0), "{}");
	/* EmitDefaults: everything but an unset oneof */
	assert_string_equal(enc(f, &a, PBJSON_EMIT_DEFAULTS),
			    "{\"int32_val\":0,\"sint32_val\":0,\"sfixed32_val\":0,\"uint32_val\":0,\"fixed32_val\":0,"
			    "\"int64_val\":\"0\",\"sint64_val\":\"0\",\"sfixed64_val\":\"0\",\"uint64_val\":\"0\","
			    "\"fixed64_val\":\"0\",\"float_val\":0,\"double_val\":0,\"bool_val\":false,"
			    "\"enum_val\":\"RED\",\"string_val\":\"\",\"bytes_val\":\"\",\"sub\":null,\"r_int64\":[],"
			    "\"r_string\":[],\"r_sub\":[],\"r_enum\":[],\"opt_int32\":0,\"r_bytes\":[],\"ID\":\"0\"}");
}

static void test_encode_every_scalar(void **state)
{
	struct fx *f = *state;
	All a, sub;
	int64_t r64[] = {1, -2, INT64_MIN};
	char *rs[] = {"x", ""};
	int re[] = {5, 7};
	All *rsub[] = {&sub};
	ProtobufCBinaryData rb[] = {{3, (uint8_t *)"\0\1\2"}, {0, NULL}};

	all_init(&a);
	all_init(&sub);
	a.int32_val = -7;
	a.sint32_val = INT32_MIN;
	a.sfixed32_val = INT32_MAX;
	a.uint32_val = UINT32_MAX;
	a.fixed32_val = 3;
	a.int64_val = INT64_MIN;
	a.sint64_val = -1;
	a.sfixed64_val = INT64_MAX;
	a.uint64_val = UINT64_MAX;
	a.fixed64_val = 42;
	a.float_val = 1.5f;
	a.double_val = 0.1;
	a.bool_val = 1;
	a.enum_val = 5;
	a.string_val = "h\xc3\xa9";
	a.bytes_val.data = (uint8_t *)"\xff\xfe\x00";
	a.bytes_val.len = 3;
	a.sub = &sub;
	a.n_r_int64 = 3;
	a.r_int64 = r64;
	a.n_r_string = 2;
	a.r_string = rs;
	a.n_r_sub = 1;
	a.r_sub = rsub;
	a.n_r_enum = 2;
	a.r_enum = re;
	a.choice_case = 24;
	a.o_int64 = 0; /* a set oneof is written even at its default */
	a.has_opt_int32 = 1;
	a.opt_int32 = 0;
	a.n_r_bytes = 2;
	a.r_bytes = rb;
	a.id = 9;
	assert_string_equal(enc(f, &a, 0),
			    "{\"int32_val\":-7,\"sint32_val\":-2147483648,\"sfixed32_val\":2147483647,"
			    "\"uint32_val\":4294967295,\"fixed32_val\":3,\"int64_val\":\"-9223372036854775808\","
			    "\"sint64_val\":\"-1\",\"sfixed64_val\":\"9223372036854775807\","
			    "\"uint64_val\":\"18446744073709551615\",\"fixed64_val\":\"42\",\"float_val\":1.5,"
			    "\"double_val\":0.1,\"bool_val\":true,\"enum_val\":\"BLUE\",\"string_val\":\"h\xc3\xa9\","
			    "\"bytes_val\":\"//4A\",\"sub\":{},\"r_int64\":[\"1\",\"-2\",\"-9223372036854775808\"],"
			    "\"r_string\":[\"x\",\"\"],\"r_sub\":[{}],\"r_enum\":[\"BLUE\",7],\"o_int64\":\"0\","
			    "\"opt_int32\":0,\"r_bytes\":[\"AAEC\",\"\"],\"ID\":\"9\"}");
	assert_string_equal(enc(f, &sub, 0), "{}");
	/* numbers everywhere */
	a.n_r_int64 = a.n_r_string = a.n_r_sub = a.n_r_bytes = 0;
	a.sub = NULL;
	a.choice_case = 0;
	a.has_opt_int32 = 0;
	assert_string_equal(enc(f, &a, PBJSON_INT64_NUMBERS | PBJSON_ENUM_NUMBERS),
			    "{\"int32_val\":-7,\"sint32_val\":-2147483648,\"sfixed32_val\":2147483647,"
			    "\"uint32_val\":4294967295,\"fixed32_val\":3,\"int64_val\":-9223372036854775808,"
			    "\"sint64_val\":-1,\"sfixed64_val\":9223372036854775807,"
			    "\"uint64_val\":18446744073709551615,\"fixed64_val\":42,\"float_val\":1.5,"
			    "\"double_val\":0.1,\"bool_val\":true,\"enum_val\":5,\"string_val\":\"h\xc3\xa9\","
			    "\"bytes_val\":\"//4A\",\"r_enum\":[5,7],\"ID\":9}");
}

static void test_encode_floats(void **state)
{
	struct fx *f = *state;
	static const struct {
		double v;
		const char *want;
	} cases[] = {
		{1, "1"},          {-2.5, "-2.5"},           {1e20, "100000000000000000000"},
		{1e21, "1e+21"},   {1.5e-7, "1.5e-7"},       {0.000001, "0.000001"},
		{1e-10, "1e-10"},  {123456.789, "123456.789"}, {-0.0, "-0"},
		{NAN, "\"NaN\""}, {INFINITY, "\"Infinity\""}, {-INFINITY, "\"-Infinity\""},
	};
	char want[64];
	size_t i;
	All a;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		all_init(&a);
		a.double_val = cases[i].v;
		a.has_opt_int32 = 0;
		snprintf(want, sizeof(want), "{\"double_val\":%s}", cases[i].want);
		if (cases[i].v == 0)
			snprintf(want, sizeof(want), "{}"); /* -0 == 0: a default */
		assert_string_equal(enc(f, &a, 0), want);
	}
	all_init(&a);
	a.float_val = 0.1f; /* shortest digits of the float, not the double */
	assert_string_equal(enc(f, &a, 0), "{\"float_val\":0.1}");
}

static void test_encode_string_escapes(void **state)
{
	struct fx *f = *state;
	struct pbjson_buf *b = &f->b;
	static const char in[] = "a\"b\\c\n\r\t\x01\x1f<>&\x7f \xe2\x80\xa8\xe2\x80\xa9\xff\xc3(\xed\xa0\x80\xf0\x9f\x98\x80";

	b->len = 0;
	assert_int_equal(pbjson_buf_string(b, in, sizeof(in) - 1), 0);
	assert_string_equal(b->data, "\"a\\\"b\\\\c\\n\\r\\t\\u0001\\u001f\\u003c\\u003e\\u0026\x7f "
				     "\\u2028\\u2029\\ufffd\\ufffd(\\ufffd\\ufffd\\ufffd\xf0\x9f\x98\x80\"");
	b->len = 0;
	assert_int_equal(pbjson_buf_string(b, "", 0), 0);
	assert_string_equal(b->data, "\"\"");
}

static void test_encode_large_bytes(void **state)
{
	struct fx *f = *state;
	size_t n = 1000003, i;
	uint8_t *data = malloc(n);
	Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT, *back;
	const char *json;

	for (i = 0; i < n; i++)
		data[i] = (uint8_t)(i * 7);
	req.key.data = (uint8_t *)"k";
	req.key.len = 1;
	req.value.data = data;
	req.value.len = n;
	json = enc(f, &req, 0);
	assert_int_equal(strlen(json), strlen("{\"key\":\"aw==\",\"value\":\"\"}") + (n + 2) / 3 * 4);
	back = dec(f, &etcdserverpb__put_request__descriptor, json);
	assert_int_equal(back->value.len, n);
	assert_memory_equal(back->value.data, data, n);
	free(data);
}

/* ---- input: values ------------------------------------------------------ */

static void test_decode_every_scalar(void **state)
{
	struct fx *f = *state;
	All *a = dec(f, &all_descriptor,
		     "{\"int32_val\":-7,\"sint32_val\":\"-2147483648\",\"sfixed32_val\":2147483647,"
		     "\"uint32_val\":\"4294967295\",\"fixed32_val\":3,\"int64_val\":\"-9223372036854775808\","
		     "\"sint64_val\":-1,\"sfixed64_val\":9223372036854775807,"
		     "\"uint64_val\":18446744073709551615,\"fixed64_val\":\"42\",\"float_val\":\"1.5\","
		     "\"double_val\":0.1,\"bool_val\":true,\"enum_val\":\"BLUE\",\"string_val\":\"h\\u00e9\","
		     "\"bytes_val\":\"//4A\",\"sub\":{\"ID\":\"3\"},\"r_int64\":[\"1\",-2],"
		     "\"r_string\":[\"x\",\"\",null],\"r_sub\":[{},null,{\"int32_val\":1}],\"r_enum\":[\"GREEN\",7],"
		     "\"o_int64\":\"0\",\"opt_int32\":0,\"r_bytes\":[\"AAEC\",\"\"],\"ID\":9}");

	assert_int_equal(a->int32_val, -7);
	assert_int_equal(a->sint32_val, INT32_MIN);
	assert_int_equal(a->sfixed32_val, INT32_MAX);
	assert_int_equal(a->uint32_val, UINT32_MAX);
	assert_int_equal(a->fixed32_val, 3);
	assert_true(a->int64_val == INT64_MIN);
	assert_true(a->sint64_val == -1);
	assert_true(a->sfixed64_val == INT64_MAX);
	assert_true(a->uint64_val == UINT64_MAX);
	assert_true(a->fixed64_val == 42);
	assert_true(a->float_val == 1.5f);
	assert_true(a->double_val == 0.1);
	assert_true(a->bool_val);
	assert_int_equal(a->enum_val, 5);
	assert_string_equal(a->string_val, "h\xc3\xa9");
	assert_int_equal(a->bytes_val.len, 3);
	assert_memory_equal(a->bytes_val.data, "\xff\xfe\x00", 3);
	assert_non_null(a->sub);
	assert_true(a->sub->id == 3);
	assert_int_equal(a->n_r_int64, 2);
	assert_true(a->r_int64[0] == 1 && a->r_int64[1] == -2);
	assert_int_equal(a->n_r_string, 3);
	assert_string_equal(a->r_string[0], "x");
	assert_string_equal(a->r_string[1], "");
	assert_string_equal(a->r_string[2], "");
	assert_int_equal(a->n_r_sub, 3);
	assert_non_null(a->r_sub[1]);
	assert_int_equal(a->r_sub[2]->int32_val, 1);
	assert_int_equal(a->n_r_enum, 2);
	assert_int_equal(a->r_enum[0], 1);
	assert_int_equal(a->r_enum[1], 7);
	assert_int_equal(a->choice_case, 24);
	assert_true(a->o_int64 == 0);
	assert_true(a->has_opt_int32);
	assert_int_equal(a->n_r_bytes, 2);
	assert_int_equal(a->r_bytes[0].len, 3);
	assert_int_equal(a->r_bytes[1].len, 0);
	assert_true(a->id == 9);
}

static void test_decode_numbers_as_strings_and_back(void **state)
{
	struct fx *f = *state;

	/* what etcd3gw and curl users send */
	assert_string_equal(canon(f, &etcdserverpb__lease_keep_alive_request__descriptor, "{\"ID\":6408237527136693325}"),
			    "{\"ID\":\"6408237527136693325\"}");
	assert_string_equal(canon(f, &etcdserverpb__range_request__descriptor,
				  "{\"key\":\"Zm9v\",\"limit\":\"2\",\"revision\":\" 5 \",\"sort_order\":1,"
				  "\"sort_target\":\"VALUE\",\"max_create_revision\":-0}"),
			    "{\"key\":\"Zm9v\",\"limit\":\"2\",\"revision\":\"5\",\"sort_order\":\"ASCEND\","
			    "\"sort_target\":\"VALUE\"}");
	assert_string_equal(canon(f, &etcdserverpb__member_remove_request__descriptor,
				  "{\"ID\":13458989633860879742}"),
			    "{\"ID\":\"13458989633860879742\"}");
	/* floats: quoted, exponent, non-finite only when quoted */
	assert_string_equal(canon(f, &all_descriptor, "{\"double_val\":\"1e3\",\"float_val\":\"NaN\"}"),
			    "{\"float_val\":\"NaN\",\"double_val\":1000}");
	assert_string_equal(canon(f, &all_descriptor, "{\"double_val\":\"-Infinity\"}"),
			    "{\"double_val\":\"-Infinity\"}");
}

static void test_decode_oneof_nested(void **state)
{
	struct fx *f = *state;
	static const char txn[] =
		"{\"compare\":[{\"key\":\"dHg=\",\"result\":\"EQUAL\",\"target\":\"VALUE\",\"value\":\"djE=\"}],"
		"\"success\":[{\"request_put\":{\"key\":\"dHg=\",\"value\":\"djI=\"}},{\"request_range\":{\"key\":\"dHg=\"}},"
		"{\"request_txn\":{\"success\":[{\"request_delete_range\":{\"key\":\"eA==\",\"prev_kv\":true}}]}}],"
		"\"failure\":[{\"request_range\":{\"key\":\"bm9wZQ==\"}}]}";
	Etcdserverpb__TxnRequest *t = dec(f, &etcdserverpb__txn_request__descriptor, txn);
	Etcdserverpb__Compare *c;

	assert_int_equal(t->n_compare, 1);
	c = t->compare[0];
	assert_int_equal(c->result, ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL);
	assert_int_equal(c->target, ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE);
	assert_int_equal(c->target_union_case, ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE);
	assert_memory_equal(c->value.data, "v1", 2);
	assert_int_equal(t->n_success, 3);
	assert_int_equal(t->success[0]->request_case, ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT);
	assert_memory_equal(t->success[0]->request_put->value.data, "v2", 2);
	assert_int_equal(t->success[1]->request_case, ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE);
	assert_int_equal(t->success[2]->request_case, ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN);
	assert_true(t->success[2]->request_txn->success[0]->request_delete_range->prev_kv);
	assert_int_equal(t->n_failure, 1);
	/* EQUAL (0) is a default: the canonical form drops it */
	assert_string_equal(canon(f, &etcdserverpb__txn_request__descriptor, txn),
			    "{\"compare\":[{\"target\":\"VALUE\",\"key\":\"dHg=\",\"value\":\"djE=\"}],"
			    "\"success\":[{\"request_put\":{\"key\":\"dHg=\",\"value\":\"djI=\"}},"
			    "{\"request_range\":{\"key\":\"dHg=\"}},{\"request_txn\":{\"success\":"
			    "[{\"request_delete_range\":{\"key\":\"eA==\",\"prev_kv\":true}}]}}],"
			    "\"failure\":[{\"request_range\":{\"key\":\"bm9wZQ==\"}}]}");
	/* a oneof scalar set to its default stays set; a null message member does not */
	assert_string_equal(canon(f, &etcdserverpb__txn_request__descriptor,
				  "{\"compare\":[{\"version\":0}],\"success\":[{\"request_range\":null}]}"),
			    "{\"compare\":[{\"version\":\"0\"}],\"success\":[{}]}");
	assert_string_equal(canon(f, &all_descriptor, "{\"o_sub\":{\"o_string\":\"\"}}"),
			    "{\"o_sub\":{\"o_string\":\"\"}}");
}

static void test_decode_names_unknown_null_dups(void **state)
{
	struct fx *f = *state;
	const ProtobufCMessageDescriptor *rr = &etcdserverpb__range_request__descriptor;

	/* lowerCamel names too; unknown keys and nulls ignored */
	assert_string_equal(canon(f, rr, "{\"key\":\"YQ==\",\"rangeEnd\":\"Yg==\",\"keysOnly\":true,\"nope\":[1,{\"a\":2}],"
				      "\"limit\":null,\"count_only\":null,\"range_end\":\"!!\"}"),
			    "{\"key\":\"YQ==\",\"range_end\":\"Yg==\",\"keys_only\":true}");
	/* the last duplicate wins */
	assert_string_equal(canon(f, rr, "{\"key\":\"!!\",\"key\":\"YQ==\"}"), "{\"key\":\"YQ==\"}");
	/* null, empty object, whitespace */
	assert_string_equal(canon(f, rr, "null"), "{}");
	assert_string_equal(canon(f, rr, " \t\r\n{ } \n"), "{}");
	/* names are case-sensitive */
	assert_string_equal(canon(f, &etcdserverpb__lease_grant_request__descriptor, "{\"ttl\":5,\"TTL\":6}"),
			    "{\"TTL\":\"6\"}");
}

static void test_decode_unicode(void **state)
{
	struct fx *f = *state;
	Etcdserverpb__AuthUserAddRequest *u;

	u = dec(f, &etcdserverpb__auth_user_add_request__descriptor,
		"{\"name\":\"\\ud83d\\ude00\\u00e9\\n\\\"\\/\\b\\f\\r\\t\\\\\",\"password\":\"\\ud800x\\udc00\"}");
	assert_string_equal(u->name, "\xf0\x9f\x98\x80\xc3\xa9\n\"/\b\f\r\t\\");
	/* lone surrogates become U+FFFD */
	assert_string_equal(u->password, "\xef\xbf\xbdx\xef\xbf\xbd");
	/* bytes as an array of numbers, as encoding/json allows */
	assert_string_equal(canon(f, &etcdserverpb__put_request__descriptor, "{\"key\":[102,111,111]}"),
			    "{\"key\":\"Zm9v\"}");
	/* base64 may carry line breaks */
	assert_string_equal(canon(f, &etcdserverpb__put_request__descriptor, "{\"key\":\"Zm\\r\\n9v\\n\"}"),
			    "{\"key\":\"Zm9v\"}");
}

/* ---- input: errors, as etcd's gateway words them --------------------------- */

static void test_decode_syntax_errors(void **state)
{
	struct fx *f = *state;
	const ProtobufCMessageDescriptor *rr = &etcdserverpb__range_request__descriptor;
	static const struct {
		const char *in, *want;
	} cases[] = {
		{"xyz", "invalid character 'x' looking for beginning of value"},
		{"{\"key\":\"Zm9v\",}", "invalid character '}' looking for beginning of object key string"},
		{"{\"key\" \"Zm9v\"}", "invalid character '\"' after object key"},
		{"{key:1}", "invalid character 'k' looking for beginning of object key string"},
		{"{\"key\":\"Zm9v\"\x01}", "invalid character '\\x01' after object key:value pair"},
		{"{\"key\":\"Zm9\x01v\"}", "invalid character '\\x01' in string literal"},
		{"{\"key\":\"Zm9\\xv\"}", "invalid character 'x' in string escape code"},
		{"{\"key\":\"\\u12g4\"}", "invalid character 'g' in \\u hexadecimal character escape"},
		{"{\"key\":tru}", "invalid character '}' in literal true (expecting 'e')"},
		{"{\"key\":fals}", "invalid character '}' in literal false (expecting 'e')"},
		{"{\"key\":nul}", "invalid character '}' in literal null (expecting 'l')"},
		{"{\"key\":-a}", "invalid character 'a' in numeric literal"},
		{"{\"key\":1.}", "invalid character '}' after decimal point in numeric literal"},
		{"{\"key\":1e}", "invalid character '}' in exponent of numeric literal"},
		{"{\"key\":01}", "invalid character '1' after object key:value pair"},
		{"[1,]", "invalid character ']' looking for beginning of value"},
		{"[1 2]", "invalid character '2' after array element"},
		{"'x'", "invalid character '\\'' looking for beginning of value"},
		{"\xc3\xa9", "invalid character '\xc3\x83' looking for beginning of value"},
		{"\x80", "invalid character '\\u0080' looking for beginning of value"},
		{"\n", "unexpected end of JSON input"},
		{"", "unexpected end of JSON input"},
		{"{\"key\":\"x\"", "unexpected end of JSON input"},
		{"{} x", "invalid character 'x' after top-level value"},
		{"{}x", "invalid character 'x' after top-level value"},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		dec_err(f, rr, cases[i].in, cases[i].want);
}

static void test_decode_type_errors(void **state)
{
	struct fx *f = *state;
	const ProtobufCMessageDescriptor *rr = &etcdserverpb__range_request__descriptor;
	const ProtobufCMessageDescriptor *txn = &etcdserverpb__txn_request__descriptor;
	static const struct {
		const char *in, *want;
	} cases[] = {
		{"[]", "json: cannot unmarshal array into Go value of type map[string]json.RawMessage"},
		{"\"s\"", "json: cannot unmarshal string into Go value of type map[string]json.RawMessage"},
		{"5", "json: cannot unmarshal number into Go value of type map[string]json.RawMessage"},
		{"{\"key\":1}", "json: cannot unmarshal number into Go value of type []uint8"},
		{"{\"key\":{}}", "json: cannot unmarshal object into Go value of type []uint8"},
		{"{\"key\":true}", "json: cannot unmarshal bool into Go value of type []uint8"},
		{"{\"key\":[300]}", "json: cannot unmarshal number 300 into Go value of type uint8"},
		{"{\"key\":[\"a\"]}", "json: cannot unmarshal string into Go value of type uint8"},
		{"{\"key\":\"Zm9\"}", "illegal base64 data at input byte 0"},
		{"{\"key\":\"Zm9v==\"}", "illegal base64 data at input byte 4"},
		{"{\"key\":\"Zm9=v\"}", "illegal base64 data at input byte 4"},
		{"{\"key\":\"Zm9vY\"}", "illegal base64 data at input byte 4"},
		{"{\"key\":\"Zm9vYg=\"}", "illegal base64 data at input byte 7"},
		{"{\"key\":\"Zg==Zg==\"}", "illegal base64 data at input byte 4"},
		{"{\"key\":\"Zm 9v\"}", "illegal base64 data at input byte 2"},
		{"{\"limit\":\"abc\"}", "invalid character 'a' looking for beginning of value"},
		{"{\"limit\":\"12abc\"}", "invalid character 'a' after top-level value"},
		{"{\"limit\":\"\"}", "unexpected end of JSON input"},
		{"{\"limit\":\"tr\"}", "invalid character ' ' in literal true (expecting 'u')"},
		{"{\"limit\":\"-\"}", "invalid character ' ' in numeric literal"},
		{"{\"limit\":\"\\u0031\"}", "invalid character '\\\\' looking for beginning of value"},
		{"{\"limit\":\"true\"}", "json: cannot unmarshal bool into Go value of type int64"},
		{"{\"limit\":{}}", "json: cannot unmarshal object into Go value of type int64"},
		{"{\"limit\":[]}", "json: cannot unmarshal array into Go value of type int64"},
		{"{\"limit\":1.5}", "json: cannot unmarshal number 1.5 into Go value of type int64"},
		{"{\"limit\":1e3}", "json: cannot unmarshal number 1e3 into Go value of type int64"},
		{"{\"limit\":99999999999999999999}",
		 "json: cannot unmarshal number 99999999999999999999 into Go value of type int64"},
		{"{\"sort_order\":\"FOO\"}", "unknown value \"FOO\" for enum etcdserverpb.RangeRequest_SortOrder"},
		{"{\"sort_order\":\"1\"}", "unknown value \"1\" for enum etcdserverpb.RangeRequest_SortOrder"},
		{"{\"sort_order\":1.5}",
		 "json: cannot unmarshal number 1.5 into Go value of type etcdserverpb.RangeRequest_SortOrder"},
		{"{\"sort_order\":true}",
		 "json: cannot unmarshal bool into Go value of type etcdserverpb.RangeRequest_SortOrder"},
		{"{\"sort_order\":3000000000}",
		 "json: cannot unmarshal number 3000000000 into Go value of type etcdserverpb.RangeRequest_SortOrder"},
		{"{\"keys_only\":\"true\"}", "json: cannot unmarshal string into Go value of type bool"},
		{"{\"keys_only\":1}", "json: cannot unmarshal number into Go value of type bool"},
		/* fields are checked in declaration order, whatever the key order */
		{"{\"limit\":\"x\",\"key\":\"!!\"}", "illegal base64 data at input byte 0"},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		dec_err(f, rr, cases[i].in, cases[i].want);
	dec_err(f, txn, "{\"compare\":{}}", "json: cannot unmarshal object into Go value of type []json.RawMessage");
	dec_err(f, txn, "{\"compare\":[1]}", "json: cannot unmarshal number into Go value of type map[string]json.RawMessage");
	dec_err(f, txn, "{\"compare\":[{\"result\":\"NOPE\"}]}",
		"unknown value \"NOPE\" for enum etcdserverpb.Compare_CompareResult");
	dec_err(f, txn, "{\"success\":[{\"request_put\":5}]}",
		"json: cannot unmarshal number into Go value of type map[string]json.RawMessage");
	dec_err(f, &etcdserverpb__member_remove_request__descriptor, "{\"ID\":-1}",
		"json: cannot unmarshal number -1 into Go value of type uint64");
	dec_err(f, &etcdserverpb__member_remove_request__descriptor, "{\"ID\":\"-0\"}",
		"json: cannot unmarshal number -0 into Go value of type uint64");
	dec_err(f, &etcdserverpb__member_remove_request__descriptor, "{\"ID\":18446744073709551616}",
		"json: cannot unmarshal number 18446744073709551616 into Go value of type uint64");
	dec_err(f, &etcdserverpb__auth_user_add_request__descriptor, "{\"name\":5}",
		"json: cannot unmarshal number into Go value of type string");
	dec_err(f, &all_descriptor, "{\"int32_val\":2147483648}",
		"json: cannot unmarshal number 2147483648 into Go value of type int32");
	dec_err(f, &all_descriptor, "{\"uint32_val\":\"4294967296\"}",
		"json: cannot unmarshal number 4294967296 into Go value of type uint32");
	dec_err(f, &all_descriptor, "{\"double_val\":1e999}",
		"json: cannot unmarshal number 1e999 into Go value of type float64");
	dec_err(f, &all_descriptor, "{\"enum_val\":\"PURPLE\"}", "unknown value \"PURPLE\" for enum test.All_Color");
}

static void test_decode_depth(void **state)
{
	struct fx *f = *state;
	size_t n = PBJSON_MAX_DEPTH + 1, i;
	char *s = malloc(2 * n + 1);

	for (i = 0; i < n; i++) {
		s[i] = '[';
		s[n + i] = ']';
	}
	s[2 * n] = '\0';
	dec_err(f, &etcdserverpb__range_request__descriptor, s, "invalid character '[' exceeded max depth");
	/* one level less is valid JSON (and the wrong type) */
	s[n - 1] = ' ';
	s[n] = ' ';
	dec_err(f, &etcdserverpb__range_request__descriptor, s,
		"json: cannot unmarshal array into Go value of type map[string]json.RawMessage");
	free(s);
}

/* ---- the json.Decoder stream ------------------------------------------------ */

static void test_decode_next_stream(void **state)
{
	struct fx *f = *state;
	static const char in[] = " {\"ID\":77}{\"ID\":\"78\"}\n null 123 xx";
	const ProtobufCMessageDescriptor *d = &etcdserverpb__lease_keep_alive_request__descriptor;
	Etcdserverpb__LeaseKeepAliveRequest *m;
	size_t off = 0, len = sizeof(in) - 1;

	assert_int_equal(pbjson_decode_next(d, in, len, &off, arena_pb_allocator(&f->a), (ProtobufCMessage **)&m, f->err), 0);
	assert_true(m->id == 77);
	assert_int_equal(off, 10);
	assert_int_equal(pbjson_decode_next(d, in, len, &off, arena_pb_allocator(&f->a), (ProtobufCMessage **)&m, f->err), 0);
	assert_true(m->id == 78);
	assert_int_equal(pbjson_decode_next(d, in, len, &off, arena_pb_allocator(&f->a), (ProtobufCMessage **)&m, f->err), 0);
	assert_true(m->id == 0);
	/* the value is read before its type is checked */
	assert_int_equal(pbjson_decode_next(d, in, len, &off, arena_pb_allocator(&f->a), (ProtobufCMessage **)&m, f->err),
			 -KV_EINVAL);
	assert_string_equal(f->err, "json: cannot unmarshal number into Go value of type map[string]json.RawMessage");
	off = len - 2;
	assert_int_equal(pbjson_decode_next(d, in, len, &off, arena_pb_allocator(&f->a), (ProtobufCMessage **)&m, f->err),
			 -KV_EINVAL);
	assert_string_equal(f->err, "invalid character 'x' looking for beginning of value");
	/* end of input: clean (io.EOF) or in the middle of a value */
	off = 0;
	assert_int_equal(pbjson_decode_next(d, " \n\t", 3, &off, arena_pb_allocator(&f->a), (ProtobufCMessage **)&m, f->err), 1);
	assert_int_equal(pbjson_decode_next(d, "", 0, &off, arena_pb_allocator(&f->a), (ProtobufCMessage **)&m, f->err), 1);
	assert_int_equal(pbjson_decode_next(d, "{\"ID\":1", 7, &off, arena_pb_allocator(&f->a), (ProtobufCMessage **)&m, f->err),
			 -KV_EINVAL);
	assert_string_equal(f->err, "unexpected EOF");
	off = 0;
	assert_int_equal(pbjson_decode_next(d, "tr", 2, &off, arena_pb_allocator(&f->a), (ProtobufCMessage **)&m, f->err),
			 -KV_EINVAL);
	assert_string_equal(f->err, "unexpected EOF");
	/* a value's end needs no delimiter; what follows is the next call's */
	off = 0;
	assert_int_equal(pbjson_decode_next(d, "{}garbage", 9, &off, arena_pb_allocator(&f->a), (ProtobufCMessage **)&m, f->err), 0);
	assert_int_equal(off, 2);
}

/* With no allocator, the message is plain malloc'd and free_unpacked frees
 * it; a failed decode leaves nothing behind (ASan builds check both). */
static void test_decode_malloc_allocator(void **state)
{
	struct fx *f = *state;
	ProtobufCMessage *m = NULL;
	static const char ok[] = "{\"string_val\":\"abc\",\"bytes_val\":\"AAEC\",\"sub\":{\"r_string\":[\"a\",\"b\"]},"
				 "\"r_sub\":[{\"o_string\":\"x\"},{\"o_sub\":{}}],\"r_bytes\":[\"AA==\"],\"o_string\":\"y\"}";
	static const char bad[] = "{\"string_val\":\"abc\",\"sub\":{\"r_string\":[\"a\"]},"
				  "\"r_sub\":[{\"o_string\":\"x\"},{\"int32_val\":\"q\"},{}]}";

	assert_int_equal(pbjson_decode(&all_descriptor, ok, sizeof(ok) - 1, NULL, &m, f->err), 0);
	assert_string_equal(enc(f, m, 0), "{\"string_val\":\"abc\",\"bytes_val\":\"AAEC\",\"sub\":{\"r_string\":[\"a\",\"b\"]},"
					  "\"r_sub\":[{\"o_string\":\"x\"},{\"o_sub\":{}}],\"o_string\":\"y\",\"r_bytes\":[\"AA==\"]}");
	protobuf_c_message_free_unpacked(m, NULL);
	m = NULL;
	assert_int_equal(pbjson_decode(&all_descriptor, bad, sizeof(bad) - 1, NULL, &m, f->err), -KV_EINVAL);
	assert_null(m);
	assert_string_equal(f->err, "invalid character 'q' looking for beginning of value");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_encode_range_response, setup, teardown),
		cmocka_unit_test_setup_teardown(test_encode_defaults_omitted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_encode_every_scalar, setup, teardown),
		cmocka_unit_test_setup_teardown(test_encode_floats, setup, teardown),
		cmocka_unit_test_setup_teardown(test_encode_string_escapes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_encode_large_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decode_every_scalar, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decode_numbers_as_strings_and_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decode_oneof_nested, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decode_names_unknown_null_dups, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decode_unicode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decode_syntax_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decode_type_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decode_depth, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decode_next_stream, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decode_malloc_allocator, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

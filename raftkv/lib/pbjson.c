/*
 * pbjson: see pbjson.h.  Three parts:
 *
 *   output  walks a message through its descriptor and writes Go's bytes
 *           (jsonpb's choices, encoding/json's string escaping); base64 is
 *           glibc's (b64_ntop/b64_pton).
 *   scanner a port of Go's encoding/json scanner state machine: it finds
 *           where a value ends (json.Decoder) or checks a whole text
 *           (json.Unmarshal) and words its errors exactly as Go does.
 *   input   runs over text the scanner accepted, so it never meets a
 *           syntax error; it reproduces golang/protobuf 1.3 jsonpb's
 *           Unmarshaler (with AllowUnknownFields, as grpc-gateway sets it),
 *           which hands each field's raw JSON to json.Unmarshal: so do we,
 *           including the quirks (a 64-bit number in a string is the
 *           string's raw contents re-parsed as JSON).
 *
 * Nothing here allocates from a length it has not bounded: decoded sizes
 * derive from the text, which the caller has already bounded.
 */
#include "lib/pbjson.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <resolv.h> /* glibc's b64_ntop/b64_pton (libresolv) */

#include "lib/arena.h"
#include "lib/err.h"

/* EVP_{En,De}codeBlock take an int: feed them slices this big. */
#define PBJSON_B64_SLICE (3 * 4 * 16384)

/* ===================================================================== */
/* output buffer                                                          */
/* ===================================================================== */

void pbjson_buf_init(struct pbjson_buf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void pbjson_buf_close(struct pbjson_buf *b)
{
	free(b->data);
	pbjson_buf_init(b);
}

/* Room for n more bytes and a NUL. */
static int buf_reserve(struct pbjson_buf *b, size_t n)
{
	size_t need = b->len + n + 1, cap;
	char *p;

	if (need < n)
		return -KV_ENOMEM;
	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 256;
	while (cap < need) {
		if (cap > SIZE_MAX / 2) {
			cap = need;
			break;
		}
		cap *= 2;
	}
	p = realloc(b->data, cap);
	if (!p)
		return -KV_ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

int pbjson_buf_append(struct pbjson_buf *b, const void *p, size_t n)
{
	if (buf_reserve(b, n))
		return -KV_ENOMEM;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

static int buf_str(struct pbjson_buf *b, const char *s)
{
	return pbjson_buf_append(b, s, strlen(s));
}

static int buf_printf(struct pbjson_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int buf_printf(struct pbjson_buf *b, const char *fmt, ...)
{
	char tmp[64];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -KV_EINTERNAL;
	return pbjson_buf_append(b, tmp, (size_t)n);
}

/* ===================================================================== */
/* UTF-8                                                                  */
/* ===================================================================== */

/* Length of the UTF-8 sequence at s as Go's utf8.DecodeRune accepts it
 * (no overlongs, no surrogates, at most U+10FFFF); 0 when invalid. */
static size_t utf8_len(const unsigned char *s, size_t n, uint32_t *rune)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xBF;

	if (c < 0x80) {
		*rune = c;
		return 1;
	}
	if (c < 0xC2 || c > 0xF4)
		return 0;
	if (c < 0xE0) {
		if (n < 2 || (s[1] & 0xC0) != 0x80)
			return 0;
		*rune = (uint32_t)(c & 0x1F) << 6 | (s[1] & 0x3F);
		return 2;
	}
	if (c < 0xF0) {
		if (c == 0xE0)
			lo = 0xA0;
		else if (c == 0xED)
			hi = 0x9F;
		if (n < 3 || s[1] < lo || s[1] > hi || (s[2] & 0xC0) != 0x80)
			return 0;
		*rune = (uint32_t)(c & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
		return 3;
	}
	if (c == 0xF0)
		lo = 0x90;
	else if (c == 0xF4)
		hi = 0x8F;
	if (n < 4 || s[1] < lo || s[1] > hi || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
		return 0;
	*rune = (uint32_t)(c & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 | (uint32_t)(s[2] & 0x3F) << 6 |
		(s[3] & 0x3F);
	return 4;
}

static size_t utf8_put(char *out, uint32_t r)
{
	if (r < 0x80) {
		out[0] = (char)r;
		return 1;
	}
	if (r < 0x800) {
		out[0] = (char)(0xC0 | (r >> 6));
		out[1] = (char)(0x80 | (r & 0x3F));
		return 2;
	}
	if (r < 0x10000) {
		out[0] = (char)(0xE0 | (r >> 12));
		out[1] = (char)(0x80 | ((r >> 6) & 0x3F));
		out[2] = (char)(0x80 | (r & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | (r >> 18));
	out[1] = (char)(0x80 | ((r >> 12) & 0x3F));
	out[2] = (char)(0x80 | ((r >> 6) & 0x3F));
	out[3] = (char)(0x80 | (r & 0x3F));
	return 4;
}

/* ===================================================================== */
/* output                                                                 */
/* ===================================================================== */

/* encoding/json with HTML escaping, as jsonpb strings are written (Go
 * 1.19: \b and \f still come out as \u0008 and \u000c). */
int pbjson_buf_string(struct pbjson_buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, start = 0, k;
	uint32_t r;
	char esc[8];
	const char *rep;

	if (pbjson_buf_append(b, "\"", 1))
		return -KV_ENOMEM;
	while (i < n) {
		unsigned char c = p[i];
		k = 1;
		if (c < 0x80) {
			if (c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&') {
				i++;
				continue;
			}
			switch (c) {
			case '"': rep = "\\\""; break;
			case '\\': rep = "\\\\"; break;
			case '\n': rep = "\\n"; break;
			case '\r': rep = "\\r"; break;
			case '\t': rep = "\\t"; break;
			default:
				esc[0] = '\\';
				esc[1] = 'u';
				esc[2] = '0';
				esc[3] = '0';
				esc[4] = hex[c >> 4];
				esc[5] = hex[c & 15];
				esc[6] = '\0';
				rep = esc;
			}
		} else {
			k = utf8_len(p + i, n - i, &r);
			if (k == 0) {
				rep = "\\ufffd";
				k = 1;
			} else if (r == 0x2028 || r == 0x2029) {
				rep = r == 0x2028 ? "\\u2028" : "\\u2029";
			} else {
				i += k;
				continue;
			}
		}
		if (pbjson_buf_append(b, p + start, i - start) || buf_str(b, rep))
			return -KV_ENOMEM;
		i += k;
		start = i;
	}
	if (pbjson_buf_append(b, p + start, i - start) || pbjson_buf_append(b, "\"", 1))
		return -KV_ENOMEM;
	return 0;
}

static int buf_base64(struct pbjson_buf *b, const uint8_t *p, size_t n)
{
	size_t out;

	if (n > (SIZE_MAX / 4 - 2) * 3)
		return -KV_ENOMEM;
	out = (n + 2) / 3 * 4;
	if (buf_reserve(b, out + 3))
		return -KV_ENOMEM;
	b->data[b->len++] = '"';
	while (n > 0) {
		size_t take = n > PBJSON_B64_SLICE ? PBJSON_B64_SLICE : n;
		/* room for the slice's text and b64_ntop's NUL */
		int w = b64_ntop(p, take, b->data + b->len, (take + 2) / 3 * 4 + 1);
		if (w < 0)
			return -KV_EINTERNAL;
		b->len += (size_t)w;
		p += take;
		n -= take;
	}
	b->data[b->len++] = '"';
	b->data[b->len] = '\0';
	return 0;
}

/* encoding/json's float format: shortest digits that read back the same,
 * plain notation unless the magnitude is below 1e-6 or at least 1e21. */
static int buf_float(struct pbjson_buf *b, double v, bool is32)
{
	char tmp[40], digits[24], out[64];
	int prec, exp10, nd = 0, i, o = 0;
	const char *q;
	double a = fabs(v);

	if (isnan(v))
		return buf_str(b, "\"NaN\"");
	if (isinf(v))
		return buf_str(b, v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
	if (v == 0)
		return buf_str(b, signbit(v) ? "-0" : "0");
	for (prec = 1; prec <= 17; prec++) {
		snprintf(tmp, sizeof(tmp), "%.*e", prec - 1, v);
		if (is32 ? (float)strtod(tmp, NULL) == (float)v : strtod(tmp, NULL) == v)
			break;
	}
	/* tmp is "-d.ddde+XX": collect the digits and the exponent */
	for (q = tmp; *q && *q != 'e'; q++)
		if (*q >= '0' && *q <= '9')
			digits[nd++] = *q;
	exp10 = atoi(q + 1);
	while (nd > 1 && digits[nd - 1] == '0')
		nd--;
	if (v < 0)
		out[o++] = '-';
	if (is32 ? ((float)a < 1e-6f || (float)a >= 1e21f) : (a < 1e-6 || a >= 1e21)) {
		out[o++] = digits[0];
		if (nd > 1) {
			out[o++] = '.';
			for (i = 1; i < nd; i++)
				out[o++] = digits[i];
		}
		o += snprintf(out + o, sizeof(out) - (size_t)o, "e%c%0*d", exp10 < 0 ? '-' : '+',
			      exp10 < 0 && exp10 > -10 ? 1 : 2, abs(exp10));
	} else if (exp10 >= 0) {
		for (i = 0; i <= exp10 || i < nd; i++) {
			if (i == exp10 + 1)
				out[o++] = '.';
			out[o++] = i < nd ? digits[i] : '0';
		}
	} else {
		out[o++] = '0';
		out[o++] = '.';
		for (i = -1; i > exp10; i--)
			out[o++] = '0';
		for (i = 0; i < nd; i++)
			out[o++] = digits[i];
	}
	return pbjson_buf_append(b, out, (size_t)o);
}

static size_t pb_elem_size(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_FLOAT:
	case PROTOBUF_C_TYPE_ENUM:
		return 4;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_DOUBLE:
		return 8;
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_STRING:
		return sizeof(char *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(ProtobufCMessage *);
	}
	return 0;
}

static bool pb_is_default(const ProtobufCFieldDescriptor *f, const void *p)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_ENUM:
		return *(const uint32_t *)p == 0;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return *(const uint64_t *)p == 0;
	case PROTOBUF_C_TYPE_FLOAT:
		return *(const float *)p == 0;
	case PROTOBUF_C_TYPE_DOUBLE:
		return *(const double *)p == 0;
	case PROTOBUF_C_TYPE_BOOL:
		return !*(const protobuf_c_boolean *)p;
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(char *const *)p;
		return !s || !*s;
	}
	case PROTOBUF_C_TYPE_BYTES:
		return ((const ProtobufCBinaryData *)p)->len == 0;
	case PROTOBUF_C_TYPE_MESSAGE:
		return *(ProtobufCMessage *const *)p == NULL;
	}
	return true;
}

/* Whether a singular field is written (jsonpb with EmitDefaults false). */
static bool pb_present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
	const char *base = (const char *)m;
	const void *p = base + f->offset;

	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
		return *(const uint32_t *)(base + f->quantifier_offset) == f->id;
	if (f->label == PROTOBUF_C_LABEL_OPTIONAL) {
		if (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE) {
			const void *v = *(void *const *)p;
			return v && v != f->default_value;
		}
		return *(const protobuf_c_boolean *)(base + f->quantifier_offset);
	}
	if (f->label == PROTOBUF_C_LABEL_REQUIRED)
		return true;
	return !pb_is_default(f, p);
}

static int enc_message(struct pbjson_buf *b, const ProtobufCMessage *m, unsigned flags, int depth);

static int enc_value(struct pbjson_buf *b, const ProtobufCFieldDescriptor *f, const void *p, unsigned flags,
		     int depth)
{
	bool q64 = !(flags & PBJSON_INT64_NUMBERS);

	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		return buf_printf(b, "%" PRId32, *(const int32_t *)p);
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		return buf_printf(b, "%" PRIu32, *(const uint32_t *)p);
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		return buf_printf(b, q64 ? "\"%" PRId64 "\"" : "%" PRId64, *(const int64_t *)p);
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return buf_printf(b, q64 ? "\"%" PRIu64 "\"" : "%" PRIu64, *(const uint64_t *)p);
	case PROTOBUF_C_TYPE_FLOAT:
		return buf_float(b, *(const float *)p, true);
	case PROTOBUF_C_TYPE_DOUBLE:
		return buf_float(b, *(const double *)p, false);
	case PROTOBUF_C_TYPE_BOOL:
		return buf_str(b, *(const protobuf_c_boolean *)p ? "true" : "false");
	case PROTOBUF_C_TYPE_ENUM: {
		int v = *(const int *)p;
		const ProtobufCEnumValue *ev = NULL;
		if (!(flags & PBJSON_ENUM_NUMBERS) && f->descriptor)
			ev = protobuf_c_enum_descriptor_get_value(f->descriptor, v);
		if (ev)
			return pbjson_buf_string(b, ev->name, strlen(ev->name));
		return buf_printf(b, "%d", v);
	}
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(char *const *)p;
		return pbjson_buf_string(b, s ? s : "", s ? strlen(s) : 0);
	}
	case PROTOBUF_C_TYPE_BYTES: {
		const ProtobufCBinaryData *d = p;
		return buf_base64(b, d->data, d->len);
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessage *sub = *(ProtobufCMessage *const *)p;
		if (!sub)
			return buf_str(b, "null");
		return enc_message(b, sub, flags, depth + 1);
	}
	}
	return -KV_EINTERNAL;
}

static int enc_message(struct pbjson_buf *b, const ProtobufCMessage *m, unsigned flags, int depth)
{
	const ProtobufCMessageDescriptor *desc = m->descriptor;
	bool first = true, emit = flags & PBJSON_EMIT_DEFAULTS;
	const char *base = (const char *)m;
	unsigned i;
	size_t j;
	int rv;

	if (depth > PBJSON_MAX_MSG_DEPTH)
		return -KV_EINVAL;
	if (pbjson_buf_append(b, "{", 1))
		return -KV_ENOMEM;
	for (i = 0; i < desc->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &desc->fields[i];
		size_t n = 0;

		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			n = *(const size_t *)(base + f->quantifier_offset);
			if (n == 0 && !emit)
				continue;
		} else if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
			/* jsonpb skips an unset oneof even with EmitDefaults */
			if (!pb_present(m, f))
				continue;
		} else if (!emit && !pb_present(m, f)) {
			continue;
		}
		if ((!first && pbjson_buf_append(b, ",", 1)) || pbjson_buf_append(b, "\"", 1) || buf_str(b, f->name) ||
		    pbjson_buf_append(b, "\":", 2))
			return -KV_ENOMEM;
		first = false;
		if (f->label != PROTOBUF_C_LABEL_REPEATED) {
			rv = enc_value(b, f, base + f->offset, flags, depth);
			if (rv)
				return rv;
			continue;
		}
		if (pbjson_buf_append(b, "[", 1))
			return -KV_ENOMEM;
		for (j = 0; j < n; j++) {
			const char *arr = *(char *const *)(base + f->offset);
			if (j && pbjson_buf_append(b, ",", 1))
				return -KV_ENOMEM;
			rv = enc_value(b, f, arr + j * pb_elem_size(f->type), flags, depth);
			if (rv)
				return rv;
		}
		if (pbjson_buf_append(b, "]", 1))
			return -KV_ENOMEM;
	}
	return pbjson_buf_append(b, "}", 1);
}

int pbjson_encode(struct pbjson_buf *b, const ProtobufCMessage *msg, unsigned flags)
{
	size_t len = b->len;
	int rv = enc_message(b, msg, flags, 0);
	if (rv && b->data) {
		b->len = len;
		b->data[len] = '\0';
	}
	return rv;
}

/* ===================================================================== */
/* scanner: Go's encoding/json/scanner.go                                  */
/* ===================================================================== */

enum gs_state {
	GS_BEGIN_VALUE,
	GS_BEGIN_VALUE_OR_EMPTY,
	GS_BEGIN_STRING_OR_EMPTY,
	GS_BEGIN_STRING,
	GS_END_VALUE,
	GS_END_TOP,
	GS_IN_STRING,
	GS_IN_STRING_ESC,
	GS_ESC_U,
	GS_ESC_U1,
	GS_ESC_U12,
	GS_ESC_U123,
	GS_NEG,
	GS_1,
	GS_0,
	GS_DOT,
	GS_DOT0,
	GS_E,
	GS_ESIGN,
	GS_E0,
	GS_T,
	GS_TR,
	GS_TRU,
	GS_F,
	GS_FA,
	GS_FAL,
	GS_FALS,
	GS_N,
	GS_NU,
	GS_NUL,
	GS_ERROR,
};

enum { PS_OBJ_KEY, PS_OBJ_VALUE, PS_ARR_VALUE };

enum gs_op {
	OP_CONTINUE,
	OP_BEGIN_LITERAL,
	OP_BEGIN_OBJECT,
	OP_OBJECT_KEY,
	OP_OBJECT_VALUE,
	OP_END_OBJECT,
	OP_BEGIN_ARRAY,
	OP_ARRAY_VALUE,
	OP_END_ARRAY,
	OP_SKIP_SPACE,
	OP_END,
	OP_ERROR,
};

struct gscan {
	enum gs_state state;
	bool end_top;
	bool has_err;
	size_t depth;
	size_t cap;
	uint8_t *stack;
	uint8_t small[64];
	char *err; /* PBJSON_ERR_MAX bytes */
};

static void gs_init(struct gscan *s, char *err)
{
	s->state = GS_BEGIN_VALUE;
	s->end_top = false;
	s->has_err = false;
	s->depth = 0;
	s->cap = sizeof(s->small);
	s->stack = s->small;
	s->err = err;
}

static void gs_close(struct gscan *s)
{
	if (s->stack != s->small)
		free(s->stack);
}

static bool gs_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Go's quoteChar: the byte as a rune, in strconv.Quote's notation. */
static void go_quote_char(unsigned char c, char out[16])
{
	if (c == '\'') {
		strcpy(out, "'\\''");
		return;
	}
	if (c == '"') {
		strcpy(out, "'\"'");
		return;
	}
	switch (c) {
	case '\a': strcpy(out, "'\\a'"); return;
	case '\b': strcpy(out, "'\\b'"); return;
	case '\f': strcpy(out, "'\\f'"); return;
	case '\n': strcpy(out, "'\\n'"); return;
	case '\r': strcpy(out, "'\\r'"); return;
	case '\t': strcpy(out, "'\\t'"); return;
	case '\v': strcpy(out, "'\\v'"); return;
	case '\\': strcpy(out, "'\\\\'"); return;
	}
	if (c < 0x20 || c == 0x7f) {
		snprintf(out, 16, "'\\x%02x'", c);
	} else if (c < 0x80) {
		snprintf(out, 16, "'%c'", c);
	} else if (c < 0xA1 || c == 0xAD) {
		/* U+0080..U+00A0 and the soft hyphen are not printable */
		snprintf(out, 16, "'\\u%04x'", c);
	} else {
		out[0] = '\'';
		out[1] = (char)(0xC0 | (c >> 6));
		out[2] = (char)(0x80 | (c & 0x3F));
		out[3] = '\'';
		out[4] = '\0';
	}
}

static enum gs_op gs_error(struct gscan *s, unsigned char c, const char *context)
{
	char q[16];

	go_quote_char(c, q);
	snprintf(s->err, PBJSON_ERR_MAX, "invalid character %s %s", q, context);
	s->state = GS_ERROR;
	s->has_err = true;
	return OP_ERROR;
}

static enum gs_op gs_push(struct gscan *s, unsigned char c, uint8_t ps, enum gs_op op)
{
	if (s->depth == s->cap) {
		size_t cap = s->cap * 2;
		uint8_t *st = s->stack == s->small ? malloc(cap) : realloc(s->stack, cap);
		if (!st) {
			snprintf(s->err, PBJSON_ERR_MAX, "out of memory");
			s->state = GS_ERROR;
			s->has_err = true;
			return OP_ERROR;
		}
		if (s->stack == s->small)
			memcpy(st, s->small, s->depth);
		s->stack = st;
		s->cap = cap;
	}
	s->stack[s->depth++] = ps;
	if (s->depth > PBJSON_MAX_DEPTH)
		return gs_error(s, c, "exceeded max depth");
	return op;
}

static void gs_pop(struct gscan *s)
{
	s->depth--;
	if (s->depth == 0) {
		s->state = GS_END_TOP;
		s->end_top = true;
	} else {
		s->state = GS_END_VALUE;
	}
}

static bool gs_hex(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* One byte through the state machine; a state that hands the byte on to
 * another (Go's "return stateX(s, c)") loops. */
static enum gs_op gs_step(struct gscan *s, unsigned char c)
{
	for (;;) {
		switch (s->state) {
		case GS_BEGIN_VALUE_OR_EMPTY:
			if (gs_space(c))
				return OP_SKIP_SPACE;
			s->state = c == ']' ? GS_END_VALUE : GS_BEGIN_VALUE;
			continue;
		case GS_BEGIN_VALUE:
			if (gs_space(c))
				return OP_SKIP_SPACE;
			switch (c) {
			case '{':
				s->state = GS_BEGIN_STRING_OR_EMPTY;
				return gs_push(s, c, PS_OBJ_KEY, OP_BEGIN_OBJECT);
			case '[':
				s->state = GS_BEGIN_VALUE_OR_EMPTY;
				return gs_push(s, c, PS_ARR_VALUE, OP_BEGIN_ARRAY);
			case '"': s->state = GS_IN_STRING; return OP_BEGIN_LITERAL;
			case '-': s->state = GS_NEG; return OP_BEGIN_LITERAL;
			case '0': s->state = GS_0; return OP_BEGIN_LITERAL;
			case 't': s->state = GS_T; return OP_BEGIN_LITERAL;
			case 'f': s->state = GS_F; return OP_BEGIN_LITERAL;
			case 'n': s->state = GS_N; return OP_BEGIN_LITERAL;
			}
			if (c >= '1' && c <= '9') {
				s->state = GS_1;
				return OP_BEGIN_LITERAL;
			}
			return gs_error(s, c, "looking for beginning of value");
		case GS_BEGIN_STRING_OR_EMPTY:
			if (gs_space(c))
				return OP_SKIP_SPACE;
			if (c == '}') {
				s->stack[s->depth - 1] = PS_OBJ_VALUE;
				s->state = GS_END_VALUE;
			} else {
				s->state = GS_BEGIN_STRING;
			}
			continue;
		case GS_BEGIN_STRING:
			if (gs_space(c))
				return OP_SKIP_SPACE;
			if (c == '"') {
				s->state = GS_IN_STRING;
				return OP_BEGIN_LITERAL;
			}
			return gs_error(s, c, "looking for beginning of object key string");
		case GS_END_VALUE:
			if (s->depth == 0) {
				s->state = GS_END_TOP;
				s->end_top = true;
				continue;
			}
			if (gs_space(c))
				return OP_SKIP_SPACE;
			switch (s->stack[s->depth - 1]) {
			case PS_OBJ_KEY:
				if (c == ':') {
					s->stack[s->depth - 1] = PS_OBJ_VALUE;
					s->state = GS_BEGIN_VALUE;
					return OP_OBJECT_KEY;
				}
				return gs_error(s, c, "after object key");
			case PS_OBJ_VALUE:
				if (c == ',') {
					s->stack[s->depth - 1] = PS_OBJ_KEY;
					s->state = GS_BEGIN_STRING;
					return OP_OBJECT_VALUE;
				}
				if (c == '}') {
					gs_pop(s);
					return OP_END_OBJECT;
				}
				return gs_error(s, c, "after object key:value pair");
			default:
				if (c == ',') {
					s->state = GS_BEGIN_VALUE;
					return OP_ARRAY_VALUE;
				}
				if (c == ']') {
					gs_pop(s);
					return OP_END_ARRAY;
				}
				return gs_error(s, c, "after array element");
			}
		case GS_END_TOP:
			/* Go records the complaint and reports it on the next
			 * byte; the value itself is complete. */
			if (!gs_space(c) && !s->has_err) {
				gs_error(s, c, "after top-level value");
				s->state = GS_END_TOP;
			}
			return OP_END;
		case GS_IN_STRING:
			if (c == '"') {
				s->state = GS_END_VALUE;
				return OP_CONTINUE;
			}
			if (c == '\\') {
				s->state = GS_IN_STRING_ESC;
				return OP_CONTINUE;
			}
			if (c < 0x20)
				return gs_error(s, c, "in string literal");
			return OP_CONTINUE;
		case GS_IN_STRING_ESC:
			if (strchr("bfnrt\\/\"", c) && c) {
				s->state = GS_IN_STRING;
				return OP_CONTINUE;
			}
			if (c == 'u') {
				s->state = GS_ESC_U;
				return OP_CONTINUE;
			}
			return gs_error(s, c, "in string escape code");
		case GS_ESC_U:
		case GS_ESC_U1:
		case GS_ESC_U12:
		case GS_ESC_U123:
			if (gs_hex(c)) {
				s->state = s->state == GS_ESC_U123 ? GS_IN_STRING : s->state + 1;
				return OP_CONTINUE;
			}
			return gs_error(s, c, "in \\u hexadecimal character escape");
		case GS_NEG:
			if (c == '0') {
				s->state = GS_0;
				return OP_CONTINUE;
			}
			if (c >= '1' && c <= '9') {
				s->state = GS_1;
				return OP_CONTINUE;
			}
			return gs_error(s, c, "in numeric literal");
		case GS_1:
			if (c >= '0' && c <= '9')
				return OP_CONTINUE;
			s->state = GS_0;
			continue;
		case GS_0:
			if (c == '.') {
				s->state = GS_DOT;
				return OP_CONTINUE;
			}
			if (c == 'e' || c == 'E') {
				s->state = GS_E;
				return OP_CONTINUE;
			}
			s->state = GS_END_VALUE;
			continue;
		case GS_DOT:
			if (c >= '0' && c <= '9') {
				s->state = GS_DOT0;
				return OP_CONTINUE;
			}
			return gs_error(s, c, "after decimal point in numeric literal");
		case GS_DOT0:
			if (c >= '0' && c <= '9')
				return OP_CONTINUE;
			if (c == 'e' || c == 'E') {
				s->state = GS_E;
				return OP_CONTINUE;
			}
			s->state = GS_END_VALUE;
			continue;
		case GS_E:
			if (c == '+' || c == '-') {
				s->state = GS_ESIGN;
				return OP_CONTINUE;
			}
			s->state = GS_ESIGN;
			continue;
		case GS_ESIGN:
			if (c >= '0' && c <= '9') {
				s->state = GS_E0;
				return OP_CONTINUE;
			}
			return gs_error(s, c, "in exponent of numeric literal");
		case GS_E0:
			if (c >= '0' && c <= '9')
				return OP_CONTINUE;
			s->state = GS_END_VALUE;
			continue;
		case GS_T:
			if (c == 'r') {
				s->state = GS_TR;
				return OP_CONTINUE;
			}
			return gs_error(s, c, "in literal true (expecting 'r')");
		case GS_TR:
			if (c == 'u') {
				s->state = GS_TRU;
				return OP_CONTINUE;
			}
			return gs_error(s, c, "in literal true (expecting 'u')");
		case GS_TRU:
			if (c == 'e') {
				s->state = GS_END_VALUE;
				return OP_CONTINUE;
			}
			return gs_error(s, c, "in literal true (expecting 'e')");
		case GS_F:
			if (c == 'a') {
				s->state = GS_FA;
				return OP_CONTINUE;
			}
			return gs_error(s, c, "in literal false (expecting 'a')");
		case GS_FA:
			if (c == 'l') {
				s->state = GS_FAL;
				return OP_CONTINUE;
			}
			return gs_error(s, c, "in literal false (expecting 'l')");
		case GS_FAL:
			if (c == 's') {
				s->state = GS_FALS;
				return OP_CONTINUE;
			}
			return gs_error(s, c, "in literal false (expecting 's')");
		case GS_FALS:
			if (c == 'e') {
				s->state = GS_END_VALUE;
				return OP_CONTINUE;
			}
			return gs_error(s, c, "in literal false (expecting 'e')");
		case GS_N:
			if (c == 'u') {
				s->state = GS_NU;
				return OP_CONTINUE;
			}
			return gs_error(s, c, "in literal null (expecting 'u')");
		case GS_NU:
			if (c == 'l') {
				s->state = GS_NUL;
				return OP_CONTINUE;
			}
			return gs_error(s, c, "in literal null (expecting 'l')");
		case GS_NUL:
			if (c == 'l') {
				s->state = GS_END_VALUE;
				return OP_CONTINUE;
			}
			return gs_error(s, c, "in literal null (expecting 'l')");
		case GS_ERROR:
			return OP_ERROR;
		}
		return OP_ERROR;
	}
}

/* json.Unmarshal's checkValid: exactly one value, whitespace around it. */
static int gs_check_valid(const char *p, size_t n, char *err)
{
	struct gscan s;
	size_t i;
	int rv = 0;

	gs_init(&s, err);
	for (i = 0; i < n; i++) {
		if (gs_step(&s, (unsigned char)p[i]) == OP_ERROR) {
			rv = -KV_EINVAL;
			break;
		}
		if (s.has_err)
			break; /* "after top-level value" */
	}
	if (rv == 0 && !s.has_err && !s.end_top) {
		/* scanner.eof(): a space may still end a number, or fail a
		 * literal with its own message */
		gs_step(&s, ' ');
		if (!s.end_top && !s.has_err)
			snprintf(err, PBJSON_ERR_MAX, "unexpected end of JSON input");
		if (!s.end_top)
			rv = -KV_EINVAL;
	}
	if (rv == 0 && s.has_err)
		rv = -KV_EINVAL;
	gs_close(&s);
	return rv;
}

/* json.Decoder.readValue from text[off]: 0 with the value in
 * [*vstart, *vend), 1 at a clean end of input, or -KV_EINVAL. */
static int gs_next_value(const char *text, size_t len, size_t off, size_t *vstart, size_t *vend, char *err)
{
	struct gscan s;
	size_t i = off;
	enum gs_op op;
	int rv = -KV_EINVAL;
	bool started = false;

	gs_init(&s, err);
	for (; i < len; i++) {
		op = gs_step(&s, (unsigned char)text[i]);
		if (op == OP_ERROR)
			goto out;
		if (!started && op != OP_SKIP_SPACE) {
			started = true;
			*vstart = i;
		}
		if (op == OP_END) {
			*vend = i;
			rv = 0;
			goto out;
		}
		if ((op == OP_END_OBJECT || op == OP_END_ARRAY) && s.depth == 0) {
			*vend = i + 1;
			rv = 0;
			goto out;
		}
	}
	/* end of input */
	if (started && gs_step(&s, ' ') == OP_END) {
		*vend = len;
		rv = 0;
	} else if (started) {
		snprintf(err, PBJSON_ERR_MAX, "unexpected EOF");
	} else {
		rv = 1;
	}
out:
	gs_close(&s);
	return rv;
}

/* ===================================================================== */
/* input: reading text the scanner accepted                                */
/* ===================================================================== */

static const char *js_ws(const char *p, const char *end)
{
	while (p < end && gs_space((unsigned char)*p))
		p++;
	return p;
}

/* p at the opening quote; returns just past the closing one. */
static const char *js_string_end(const char *p, const char *end)
{
	for (p++; p < end && *p != '"'; p++)
		if (*p == '\\')
			p++;
	return p < end ? p + 1 : end;
}

/* p at the start of a value; returns just past it. */
static const char *js_skip(const char *p, const char *end)
{
	size_t depth = 0;

	do {
		p = js_ws(p, end);
		if (p >= end)
			return end;
		switch (*p) {
		case '{':
		case '[':
			depth++;
			p++;
			break;
		case '}':
		case ']':
			depth--;
			p++;
			break;
		case ',':
		case ':':
			p++;
			break;
		case '"':
			p = js_string_end(p, end);
			break;
		default:
			while (p < end && !strchr(",:]} \t\r\n", *p))
				p++;
		}
	} while (depth > 0);
	return p;
}

/* Go's kind names in "json: cannot unmarshal <kind> into ...". */
static const char *js_kind(const char *p)
{
	switch (*p) {
	case '{': return "object";
	case '[': return "array";
	case '"': return "string";
	case 't':
	case 'f': return "bool";
	default: return "number";
	}
}

struct dec {
	ProtobufCAllocator *alloc;
	struct arena tmp; /* keys and member lists, freed after the decode */
	char *err;
};

static int dec_fail(struct dec *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int dec_fail(struct dec *d, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(d->err, PBJSON_ERR_MAX, fmt, ap);
	va_end(ap);
	return -KV_EINVAL;
}

static int dec_type_error(struct dec *d, const char *kind, const char *gotype)
{
	return dec_fail(d, "json: cannot unmarshal %s into Go value of type %s", kind, gotype);
}

static void *dec_alloc(struct dec *d, size_t n)
{
	return d->alloc->alloc(d->alloc->allocator_data, n);
}

static uint32_t hex4(const char *p)
{
	uint32_t v = 0;
	int i;

	for (i = 0; i < 4; i++) {
		char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (uint32_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (uint32_t)(c - 'a' + 10);
		else
			v |= (uint32_t)(c - 'A' + 10);
	}
	return v;
}

/* Go's unquote of the valid string literal [p, q) (quotes included) into
 * out, which holds at least 3 * (q - p) bytes; returns the length. */
static size_t go_unquote(const char *p, const char *q, char *out)
{
	const char *s = p + 1, *e = q - 1;
	size_t w = 0, k;
	uint32_t r;

	while (s < e) {
		unsigned char c = (unsigned char)*s;
		if (c == '\\') {
			c = (unsigned char)s[1];
			s += 2;
			switch (c) {
			case 'b': out[w++] = '\b'; break;
			case 'f': out[w++] = '\f'; break;
			case 'n': out[w++] = '\n'; break;
			case 'r': out[w++] = '\r'; break;
			case 't': out[w++] = '\t'; break;
			case 'u':
				r = hex4(s);
				s += 4;
				if (r >= 0xD800 && r < 0xE000) {
					uint32_t r2;
					/* a pair makes one rune; anything else is U+FFFD */
					if (r < 0xDC00 && e - s >= 6 && s[0] == '\\' && s[1] == 'u' &&
					    (r2 = hex4(s + 2)) >= 0xDC00 && r2 < 0xE000) {
						r = 0x10000 + ((r - 0xD800) << 10) + (r2 - 0xDC00);
						s += 6;
					} else {
						r = 0xFFFD;
					}
				}
				w += utf8_put(out + w, r);
				break;
			default: out[w++] = (char)c; break; /* " \ / */
			}
			continue;
		}
		if (c < 0x80) {
			out[w++] = (char)c;
			s++;
			continue;
		}
		k = utf8_len((const unsigned char *)s, (size_t)(e - s), &r);
		if (k == 0) {
			w += utf8_put(out + w, 0xFFFD);
			s++;
		} else {
			memcpy(out + w, s, k);
			w += k;
			s += k;
		}
	}
	return w;
}

/* --- base64 as Go's base64.StdEncoding.Decode -------------------------- */

static bool b64_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* Checks src as Go's decoder walks it (CR and LF skipped anywhere) and
 * copies the significant characters, padding included, to clean.
 * Returns 0, or -1 with the offset Go names in *bad. */
static int b64_check(const char *src, size_t n, char *clean, size_t *clean_len, size_t *bad)
{
	size_t si = 0, w = 0;
	int j;

	while (si < n) {
		char q[4];
		for (j = 0; j < 4; j++) {
			unsigned char in;
			if (si == n) {
				if (j == 0)
					goto done;
				*bad = si - (size_t)j;
				return -1;
			}
			in = (unsigned char)src[si++];
			if (b64_char(in)) {
				q[j] = (char)in;
				continue;
			}
			if (in == '\n' || in == '\r') {
				j--;
				continue;
			}
			if (in != '=' || j < 2) {
				*bad = si - 1;
				return -1;
			}
			q[j] = '=';
			if (j == 2) {
				while (si < n && (src[si] == '\n' || src[si] == '\r'))
					si++;
				if (si == n) {
					*bad = n;
					return -1;
				}
				if (src[si] != '=') {
					*bad = si - 1;
					return -1;
				}
				si++;
				q[3] = '=';
			}
			while (si < n && (src[si] == '\n' || src[si] == '\r'))
				si++;
			if (si < n) {
				*bad = si; /* trailing garbage */
				return -1;
			}
			memcpy(clean + w, q, 4);
			w += 4;
			goto done;
		}
		memcpy(clean + w, q, 4);
		w += 4;
	}
done:
	*clean_len = w;
	return 0;
}

static int dec_bytes_b64(struct dec *d, const char *s, size_t n, ProtobufCBinaryData *out)
{
	char *clean;
	size_t clen = 0, bad = 0, off, w = 0;
	uint8_t *data;

	if (n == 0) {
		out->len = 0;
		out->data = NULL;
		return 0;
	}
	clean = arena_alloc(&d->tmp, n + 1);
	if (!clean)
		return -KV_ENOMEM;
	if (b64_check(s, n, clean, &clen, &bad))
		return dec_fail(d, "illegal base64 data at input byte %zu", bad);
	if (clen == 0) {
		out->len = 0;
		out->data = NULL;
		return 0;
	}
	data = dec_alloc(d, clen / 4 * 3);
	if (!data)
		return -KV_ENOMEM;
	/* b64_pton reads NUL-terminated text: each slice (whole 4-character
	 * groups, so only the last may hold padding) is ended in place. */
	for (off = 0; off < clen; off += PBJSON_B64_SLICE) {
		size_t take = clen - off > PBJSON_B64_SLICE ? PBJSON_B64_SLICE : clen - off;
		char saved = clean[off + take];
		int got;

		clean[off + take] = '\0';
		got = b64_pton(clean + off, data + w, clen / 4 * 3 - w);
		clean[off + take] = saved;
		if (got < 0) {
			d->alloc->free(d->alloc->allocator_data, data);
			return dec_fail(d, "illegal base64 data at input byte %zu", off);
		}
		w += (size_t)got;
	}
	out->data = data;
	out->len = w;
	return 0;
}

/* --- scalars: json.Unmarshal into a Go value ------------------------------ */

enum go_kind { GK_INT, GK_UINT, GK_FLOAT, GK_BOOL, GK_STRING, GK_BYTES };

struct go_type {
	enum go_kind kind;
	unsigned bits;      /* GK_INT, GK_UINT, GK_FLOAT */
	const char *name;   /* for messages */
};

static void go_type_of(const ProtobufCFieldDescriptor *f, struct go_type *t, char *enum_name, size_t enum_size)
{
	t->kind = GK_BYTES;
	t->name = "[]uint8";
	t->bits = 64;
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		t->kind = GK_INT;
		t->bits = 32;
		t->name = "int32";
		return;
	case PROTOBUF_C_TYPE_ENUM: {
		/* golang/protobuf names it Package.Outer_Inner */
		const ProtobufCEnumDescriptor *ed = f->descriptor;
		const char *full = ed ? ed->name : "int32", *pkg = ed ? ed->package_name : NULL;
		size_t pl = pkg ? strlen(pkg) : 0, i;
		if (pl && strncmp(full, pkg, pl) == 0 && full[pl] == '.')
			snprintf(enum_name, enum_size, "%s.%s", pkg, full + pl + 1);
		else
			snprintf(enum_name, enum_size, "%s", full);
		for (i = pl ? pl + 1 : 0; enum_name[i]; i++)
			if (enum_name[i] == '.')
				enum_name[i] = '_';
		t->kind = GK_INT;
		t->bits = 32;
		t->name = enum_name;
		return;
	}
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		t->kind = GK_UINT;
		t->bits = 32;
		t->name = "uint32";
		return;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		t->kind = GK_INT;
		t->name = "int64";
		return;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		t->kind = GK_UINT;
		t->name = "uint64";
		return;
	case PROTOBUF_C_TYPE_FLOAT:
		t->kind = GK_FLOAT;
		t->bits = 32;
		t->name = "float32";
		return;
	case PROTOBUF_C_TYPE_DOUBLE:
		t->kind = GK_FLOAT;
		t->name = "float64";
		return;
	case PROTOBUF_C_TYPE_BOOL:
		t->kind = GK_BOOL;
		t->name = "bool";
		return;
	case PROTOBUF_C_TYPE_STRING:
		t->kind = GK_STRING;
		t->name = "string";
		return;
	case PROTOBUF_C_TYPE_BYTES:
	case PROTOBUF_C_TYPE_MESSAGE:
		t->kind = GK_BYTES;
		t->name = "[]uint8";
		return;
	}
}

/* strconv.ParseInt/ParseUint(s, 10, bits) on a valid JSON number. */
static bool go_parse_int(const char *s, size_t n, bool is_signed, unsigned bits, int64_t *iv, uint64_t *uv)
{
	bool neg = false;
	uint64_t v = 0, limit;
	size_t i = 0;

	if (n > 0 && s[0] == '-') {
		if (!is_signed)
			return false;
		neg = true;
		i = 1;
	}
	if (i == n)
		return false;
	if (is_signed)
		limit = neg ? (uint64_t)1 << (bits - 1) : ((uint64_t)1 << (bits - 1)) - 1;
	else
		limit = bits == 64 ? UINT64_MAX : ((uint64_t)1 << bits) - 1;
	for (; i < n; i++) {
		unsigned dgt;
		if (s[i] < '0' || s[i] > '9')
			return false;
		dgt = (unsigned)(s[i] - '0');
		if (v > (limit - dgt) / 10)
			return false;
		v = v * 10 + dgt;
	}
	if (is_signed)
		*iv = neg ? (int64_t)(0 - v) : (int64_t)v;
	else
		*uv = v;
	return true;
}

/* json.Unmarshal(raw, &dst) for a scalar of Go type t.  dst points to the
 * protobuf-c member.  null leaves it alone, as Go does. */
static int go_unmarshal(struct dec *d, const char *p, const char *end, const struct go_type *t, ProtobufCType pt,
			void *dst)
{
	char numtmp[64];
	const char *q;
	size_t n;

	if (gs_check_valid(p, (size_t)(end - p), d->err))
		return -KV_EINVAL;
	q = js_ws(p, end);
	while (end > q && gs_space((unsigned char)end[-1]))
		end--;
	n = (size_t)(end - q);
	if (*q == 'n')
		return 0;
	switch (t->kind) {
	case GK_INT:
	case GK_UINT:
	case GK_FLOAT:
		if (*q != '-' && (*q < '0' || *q > '9'))
			return dec_type_error(d, js_kind(q), t->name);
		if (t->kind == GK_FLOAT) {
			double v;
			char *ep;
			if (n >= sizeof(numtmp))
				goto bad_number;
			memcpy(numtmp, q, n);
			numtmp[n] = '\0';
			errno = 0;
			v = strtod(numtmp, &ep);
			if (errno == ERANGE && fabs(v) > 1)
				goto bad_number;
			if (t->bits == 32) {
				if (fabs(v) > 3.4028234663852886e38)
					goto bad_number;
				*(float *)dst = (float)v;
			} else {
				*(double *)dst = v;
			}
			return 0;
		} else {
			int64_t iv = 0;
			uint64_t uv = 0;
			if (!go_parse_int(q, n, t->kind == GK_INT, t->bits, &iv, &uv))
				goto bad_number;
			/* narrower than 64 bits lands in 32 (uint8 included) */
			if (t->kind == GK_INT && t->bits < 64)
				*(int32_t *)dst = (int32_t)iv;
			else if (t->bits < 64)
				*(uint32_t *)dst = (uint32_t)uv;
			else if (t->kind == GK_INT)
				*(int64_t *)dst = iv;
			else
				*(uint64_t *)dst = uv;
			return 0;
		}
	case GK_BOOL:
		if (*q != 't' && *q != 'f')
			return dec_type_error(d, js_kind(q), t->name);
		*(protobuf_c_boolean *)dst = *q == 't';
		return 0;
	case GK_STRING: {
		char *s;
		size_t len;
		if (*q != '"')
			return dec_type_error(d, js_kind(q), t->name);
		s = arena_alloc(&d->tmp, 3 * n + 1);
		if (!s)
			return -KV_ENOMEM;
		len = go_unquote(q, end, s);
		if (len == 0) {
			*(char **)dst = (char *)protobuf_c_empty_string;
			return 0;
		}
		{
			char *out = dec_alloc(d, len + 1);
			if (!out)
				return -KV_ENOMEM;
			memcpy(out, s, len);
			out[len] = '\0';
			*(char **)dst = out;
		}
		return 0;
	}
	case GK_BYTES:
		if (*q == '"') {
			char *s = arena_alloc(&d->tmp, 3 * n + 1);
			if (!s)
				return -KV_ENOMEM;
			return dec_bytes_b64(d, s, go_unquote(q, end, s), dst);
		}
		if (*q == '[') {
			/* encoding/json fills a []byte from an array of numbers */
			ProtobufCBinaryData *bd = dst;
			struct go_type u8 = {GK_UINT, 8, "uint8"};
			const char *e;
			size_t cnt = 0;
			for (e = js_ws(q + 1, end); *e != ']'; e = js_ws(e, end)) {
				e = js_ws(js_skip(e, end), end);
				cnt++;
				if (*e == ',')
					e++;
			}
			bd->len = 0;
			bd->data = cnt ? dec_alloc(d, cnt) : NULL;
			if (cnt && !bd->data)
				return -KV_ENOMEM;
			for (e = js_ws(q + 1, end); *e != ']'; e = js_ws(e, end)) {
				const char *ve = js_skip(e, end);
				uint32_t v = 0;
				int rv = go_unmarshal(d, e, ve, &u8, PROTOBUF_C_TYPE_UINT32, &v);
				if (rv)
					return rv;
				bd->data[bd->len++] = (uint8_t)v;
				e = js_ws(ve, end);
				if (*e == ',')
					e++;
			}
			return 0;
		}
		return dec_type_error(d, js_kind(q), t->name);
	}
	return -KV_EINTERNAL;
bad_number:
	return dec_fail(d, "json: cannot unmarshal number %.*s into Go value of type %s", (int)(n > 64 ? 64 : n),
			q, t->name);
}

/* jsonpb's unmarshalValue for a non-message field value [p, end). */
static int dec_scalar(struct dec *d, const ProtobufCFieldDescriptor *f, const char *p, const char *end, void *dst)
{
	char enum_name[160];
	struct go_type t;
	const char *q = js_ws(p, end);

	go_type_of(f, &t, enum_name, sizeof(enum_name));
	if (f->type == PROTOBUF_C_TYPE_ENUM && *q == '"') {
		/* jsonpb looks the raw bytes between the quotes up */
		const char *qe = js_string_end(q, end);
		size_t n = (size_t)(qe - q - 2);
		char *name = arena_alloc(&d->tmp, n + 1);
		const ProtobufCEnumValue *ev;
		if (!name)
			return -KV_ENOMEM;
		memcpy(name, q + 1, n);
		name[n] = '\0';
		ev = f->descriptor ? protobuf_c_enum_descriptor_get_value_by_name(f->descriptor, name) : NULL;
		if (!ev || strlen(name) != n)
			return dec_fail(d, "unknown value \"%.*s\" for enum %s", (int)(n > 64 ? 64 : n), name,
					enum_name);
		*(int *)dst = ev->value;
		return 0;
	}
	if (f->type == PROTOBUF_C_TYPE_FLOAT || f->type == PROTOBUF_C_TYPE_DOUBLE) {
		const char *qe = js_ws(p, end);
		size_t n = (size_t)(end - qe);
		double v = NAN;
		while (n > 0 && gs_space((unsigned char)qe[n - 1]))
			n--;
		if (n == 5 && memcmp(qe, "\"NaN\"", 5) == 0)
			v = NAN;
		else if (n == 10 && memcmp(qe, "\"Infinity\"", 10) == 0)
			v = INFINITY;
		else if (n == 11 && memcmp(qe, "\"-Infinity\"", 11) == 0)
			v = -INFINITY;
		else
			n = 0;
		if (n) {
			if (f->type == PROTOBUF_C_TYPE_FLOAT)
				*(float *)dst = (float)v;
			else
				*(double *)dst = v;
			return 0;
		}
	}
	if (t.kind == GK_INT || t.kind == GK_UINT || t.kind == GK_FLOAT) {
		if (*q == '"') {
			/* jsonpb drops the quotes and parses what was inside */
			const char *qe = js_string_end(q, end);
			return go_unmarshal(d, q + 1, qe - 1, &t, f->type, dst);
		}
	}
	return go_unmarshal(d, p, end, &t, f->type, dst);
}

/* --- messages --------------------------------------------------------------- */

struct js_member {
	const char *key;
	size_t key_len;
	const char *val;
	const char *val_end;
};

static int dec_message(struct dec *d, const ProtobufCMessageDescriptor *desc, const char *p, const char *end,
		       ProtobufCMessage *m, int depth);

static int dec_new_message(struct dec *d, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out)
{
	ProtobufCMessage *m = dec_alloc(d, desc->sizeof_message);
	if (!m)
		return -KV_ENOMEM;
	desc->message_init(m);
	*out = m;
	return 0;
}

/* The value of a (sub-)message field: null stays unset. */
static int dec_sub(struct dec *d, const ProtobufCFieldDescriptor *f, const char *p, const char *end,
		   ProtobufCMessage **slot, int depth)
{
	int rv;

	if (*js_ws(p, end) == 'n')
		return 0;
	rv = dec_new_message(d, f->descriptor, slot);
	if (rv)
		return rv;
	return dec_message(d, f->descriptor, p, end, *slot, depth + 1);
}

static int dec_repeated(struct dec *d, const ProtobufCFieldDescriptor *f, const char *p, const char *end,
			ProtobufCMessage *m, int depth)
{
	char *base = (char *)m;
	size_t esz = pb_elem_size(f->type), cnt = 0, i;
	const char *q = js_ws(p, end), *e;
	char *arr;
	int rv;

	if (*q == 'n')
		return 0;
	if (*q != '[')
		return dec_type_error(d, js_kind(q), "[]json.RawMessage");
	for (e = js_ws(q + 1, end); *e != ']'; e = js_ws(e, end)) {
		e = js_ws(js_skip(e, end), end);
		cnt++;
		if (*e == ',')
			e++;
	}
	if (cnt == 0)
		return 0;
	if (cnt > SIZE_MAX / esz)
		return -KV_ENOMEM;
	arr = dec_alloc(d, cnt * esz);
	if (!arr)
		return -KV_ENOMEM;
	memset(arr, 0, cnt * esz);
	*(void **)(base + f->offset) = arr;
	*(size_t *)(base + f->quantifier_offset) = cnt;
	/* every element exists before any is filled, so that a failure
	 * leaves what free_unpacked expects */
	for (i = 0; f->type == PROTOBUF_C_TYPE_MESSAGE && i < cnt; i++) {
		rv = dec_new_message(d, f->descriptor, (ProtobufCMessage **)(arr + i * esz));
		if (rv)
			return rv;
	}
	for (i = 0, e = js_ws(q + 1, end); i < cnt; i++) {
		const char *ve = js_skip(e, end);
		void *slot = arr + i * esz;
		if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
			rv = dec_message(d, f->descriptor, e, ve, *(ProtobufCMessage **)slot, depth + 1);
		} else {
			rv = dec_scalar(d, f, e, ve, slot);
			/* protobuf-c owns every element string */
			if (rv == 0 && f->type == PROTOBUF_C_TYPE_STRING &&
			    (!*(char **)slot || *(char **)slot == protobuf_c_empty_string)) {
				char *s = dec_alloc(d, 1);
				if (!s)
					return -KV_ENOMEM;
				*s = '\0';
				*(char **)slot = s;
			}
		}
		if (rv)
			return rv;
		e = js_ws(ve, end);
		if (*e == ',')
			e = js_ws(e + 1, end);
	}
	return 0;
}

/* protoc's json_name: "range_end" -> "rangeEnd". */
static size_t camel_name(const char *name, char *out, size_t size)
{
	size_t w = 0;
	bool up = false;

	for (; *name && w + 1 < size; name++) {
		if (*name == '_') {
			up = true;
			continue;
		}
		out[w++] = up && *name >= 'a' && *name <= 'z' ? (char)(*name - 32) : *name;
		up = false;
	}
	out[w] = '\0';
	return w;
}

/* jsonpb's consumeField: the last member with the camel name, else the
 * last with the original name (a Go map keeps the last duplicate). */
static const struct js_member *find_member(const struct js_member *mem, size_t n, const char *name)
{
	char camel[128];
	size_t cl = camel_name(name, camel, sizeof(camel)), nl = strlen(name), i;

	for (i = n; i-- > 0;)
		if (mem[i].key_len == cl && memcmp(mem[i].key, camel, cl) == 0)
			return &mem[i];
	for (i = n; i-- > 0;)
		if (mem[i].key_len == nl && memcmp(mem[i].key, name, nl) == 0)
			return &mem[i];
	return NULL;
}

static int dec_field(struct dec *d, const ProtobufCFieldDescriptor *f, const struct js_member *mb,
		     ProtobufCMessage *m, int depth)
{
	char *base = (char *)m;
	void *dst = base + f->offset;
	const char *q = js_ws(mb->val, mb->val_end);
	int rv;

	if (f->label == PROTOBUF_C_LABEL_REPEATED)
		return dec_repeated(d, f, mb->val, mb->val_end, m, depth);
	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
		uint32_t *oneof_case = (uint32_t *)(base + f->quantifier_offset);
		/* a null message member marshals to nothing: leave it unset */
		if (f->type == PROTOBUF_C_TYPE_MESSAGE && *q == 'n')
			return 0;
		*oneof_case = f->id;
		if (f->type == PROTOBUF_C_TYPE_MESSAGE)
			return dec_sub(d, f, mb->val, mb->val_end, dst, depth);
		return dec_scalar(d, f, mb->val, mb->val_end, dst);
	}
	if (f->type == PROTOBUF_C_TYPE_MESSAGE)
		return dec_sub(d, f, mb->val, mb->val_end, dst, depth);
	rv = dec_scalar(d, f, mb->val, mb->val_end, dst);
	if (rv == 0 && *q != 'n' && f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING)
		*(protobuf_c_boolean *)(base + f->quantifier_offset) = 1;
	return rv;
}

/* jsonpb's struct case: json.Unmarshal into map[string]json.RawMessage,
 * then the regular fields in order, then the oneofs. */
static int dec_message(struct dec *d, const ProtobufCMessageDescriptor *desc, const char *p, const char *end,
		       ProtobufCMessage *m, int depth)
{
	const char *q = js_ws(p, end), *e;
	struct js_member *mem = NULL;
	size_t n = 0, cap = 0;
	unsigned i;
	int rv;

	if (depth > PBJSON_MAX_MSG_DEPTH)
		return dec_fail(d, "exceeded max depth");
	if (*q == 'n')
		return 0;
	if (*q != '{')
		return dec_type_error(d, js_kind(q), "map[string]json.RawMessage");
	for (e = js_ws(q + 1, end); *e != '}';) {
		const char *ke = js_string_end(e, end), *vs, *ve;
		char *key;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			struct js_member *nm = arena_alloc(&d->tmp, ncap * sizeof(*nm));
			if (!nm)
				return -KV_ENOMEM;
			if (n)
				memcpy(nm, mem, n * sizeof(*nm));
			mem = nm;
			cap = ncap;
		}
		key = arena_alloc(&d->tmp, 3 * (size_t)(ke - e) + 1);
		if (!key)
			return -KV_ENOMEM;
		mem[n].key = key;
		mem[n].key_len = go_unquote(e, ke, key);
		vs = js_ws(js_ws(ke, end) + 1, end); /* past ':' */
		ve = js_skip(vs, end);
		mem[n].val = vs;
		mem[n].val_end = ve;
		n++;
		e = js_ws(ve, end);
		if (*e == ',')
			e = js_ws(e + 1, end);
	}
	for (i = 0; i < desc->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &desc->fields[i];
		const struct js_member *mb;
		if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
			continue;
		mb = find_member(mem, n, f->name);
		if (mb && (rv = dec_field(d, f, mb, m, depth)))
			return rv;
	}
	for (i = 0; i < desc->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &desc->fields[i];
		const struct js_member *mb;
		uint32_t oneof_case;
		if (!(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
			continue;
		/* one member per oneof: Go would keep whichever its map
		 * iteration met last, so any one is as right */
		oneof_case = *(const uint32_t *)((const char *)m + f->quantifier_offset);
		if (oneof_case != 0)
			continue;
		mb = find_member(mem, n, f->name);
		if (mb && (rv = dec_field(d, f, mb, m, depth)))
			return rv;
	}
	return 0;
}

static void *pbjson_malloc(void *ud, size_t n)
{
	(void)ud;
	return malloc(n);
}

static void pbjson_free(void *ud, void *p)
{
	(void)ud;
	free(p);
}

static ProtobufCAllocator pbjson_default_alloc = {pbjson_malloc, pbjson_free, NULL};

static int decode_span(const ProtobufCMessageDescriptor *desc, const char *p, const char *end,
		       ProtobufCAllocator *alloc, ProtobufCMessage **out, char *err)
{
	struct dec d;
	ProtobufCMessage *m = NULL;
	int rv;

	d.alloc = alloc ? alloc : &pbjson_default_alloc;
	d.err = err;
	arena_init(&d.tmp);
	rv = dec_new_message(&d, desc, &m);
	if (rv == 0)
		rv = dec_message(&d, desc, p, end, m, 0);
	arena_close(&d.tmp);
	if (rv) {
		if (m)
			protobuf_c_message_free_unpacked(m, d.alloc);
		if (rv == -KV_ENOMEM)
			snprintf(err, PBJSON_ERR_MAX, "out of memory");
		return rv;
	}
	*out = m;
	return 0;
}

int pbjson_decode_next(const ProtobufCMessageDescriptor *desc, const char *text, size_t len, size_t *off,
		       ProtobufCAllocator *alloc, ProtobufCMessage **out, char err[PBJSON_ERR_MAX])
{
	size_t vs = 0, ve = 0;
	int rv;

	err[0] = '\0';
	rv = gs_next_value(text, len, *off, &vs, &ve, err);
	if (rv)
		return rv;
	rv = decode_span(desc, text + vs, text + ve, alloc, out, err);
	if (rv == 0)
		*off = ve;
	return rv;
}

int pbjson_decode(const ProtobufCMessageDescriptor *desc, const char *text, size_t len, ProtobufCAllocator *alloc,
		  ProtobufCMessage **out, char err[PBJSON_ERR_MAX])
{
	err[0] = '\0';
	if (gs_check_valid(text, len, err))
		return -KV_EINVAL;
	return decode_span(desc, text, text + len, alloc, out, err);
}

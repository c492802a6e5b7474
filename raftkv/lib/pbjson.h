/*
 * pbjson: the one protobuf <-> JSON mapping of raftkv, driven by protobuf-c
 * descriptors, so every message of every .proto works without generated
 * code.  The JSON gateway (server/gw.c) decodes requests and encodes
 * responses with it; the admin tool's `-w json` prints with it.
 *
 * The default mapping is etcd 3.4's gateway (grpc-gateway v1 with golang
 * jsonpb, OrigName, defaults omitted):
 *   - keys are the proto field names as declared ("create_revision",
 *     "dbSize", "ID"); on input the lowerCamel JSON name is accepted too;
 *   - 64-bit integers are strings on output; numbers or strings on input
 *     (so are 32-bit ones, which are numbers on output);
 *   - bytes are standard base64 with padding;
 *   - enums are names on output, names or numbers on input;
 *   - fields holding their default (0, false, "", empty list, no message)
 *     are left out, except a set oneof member; oneof members are plain keys;
 *   - unknown keys and null values are ignored.
 * Flags select the variants Go's encoding/json prints (etcdctl -w json).
 *
 * Input follows Go's json.Decoder and jsonpb to the letter where a client
 * can see it: a syntax error anywhere in the value wins over a type error,
 * and error texts are Go's ("invalid character 'x' looking for beginning of
 * value", "unexpected EOF", "json: cannot unmarshal string into Go value of
 * type bool", "illegal base64 data at input byte 4").  Output escapes
 * strings as Go does (\u003c, \u0026, invalid UTF-8 as \ufffd).
 *
 * We do not build a jansson tree on purpose: jansson holds integers in a
 * long long, so member IDs above INT64_MAX could neither be read as numbers
 * nor printed as numbers (etcdctl -w json does), and Go's error texts need a
 * scanner that follows Go's states anyway.
 */
#ifndef RAFTKV_PBJSON_H
#define RAFTKV_PBJSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

enum pbjson_flags {
	PBJSON_INT64_NUMBERS = 1 << 0, /* 64-bit integers as JSON numbers */
	PBJSON_ENUM_NUMBERS = 1 << 1,  /* enums as numbers */
	PBJSON_EMIT_DEFAULTS = 1 << 2, /* print every field, defaults too */
};

/* Go's encoding/json nests at most this deep ("exceeded max depth"). */
#define PBJSON_MAX_DEPTH 10000
/* Messages nest at most this deep (the walk is recursive; Go's limit would
 * take megabytes of C stack). */
#define PBJSON_MAX_MSG_DEPTH 1000
/* Longest error text (longer ones are cut). */
#define PBJSON_ERR_MAX 256

/* A growable output buffer (malloc'd); data is NUL-terminated when len > 0. */
struct pbjson_buf {
	char *data;
	size_t len;
	size_t cap;
};

void pbjson_buf_init(struct pbjson_buf *b);
void pbjson_buf_close(struct pbjson_buf *b);
/* Returns 0 or -KV_ENOMEM. */
int pbjson_buf_append(struct pbjson_buf *b, const void *p, size_t n);
/* Appends s as a JSON string literal, escaped as Go's encoding/json does. */
int pbjson_buf_string(struct pbjson_buf *b, const char *s, size_t n);

/* Appends the JSON of msg (compact, fields in tag order).  Returns 0 or
 * -KV_ENOMEM. */
int pbjson_encode(struct pbjson_buf *b, const ProtobufCMessage *msg, unsigned flags);

/* Decodes the next JSON value of text[*off, len) as Go's json.Decoder does
 * (leading whitespace skipped, whatever follows the value left for the next
 * call) into a new message of type desc, allocated through alloc in the
 * layout protobuf_c_message_unpack uses (so free_unpacked frees it).
 * Returns 0 with *out set and *off moved past the value; 1 when nothing but
 * whitespace is left (Go's io.EOF); -KV_EINVAL with Go's error text in err;
 * -KV_ENOMEM. */
int pbjson_decode_next(const ProtobufCMessageDescriptor *desc, const char *text, size_t len, size_t *off,
		       ProtobufCAllocator *alloc, ProtobufCMessage **out, char err[PBJSON_ERR_MAX]);

/* The whole of text is one value (Go's json.Unmarshal): trailing
 * non-whitespace is an error, and so is empty input. */
int pbjson_decode(const ProtobufCMessageDescriptor *desc, const char *text, size_t len,
		  ProtobufCAllocator *alloc, ProtobufCMessage **out, char err[PBJSON_ERR_MAX]);

#endif

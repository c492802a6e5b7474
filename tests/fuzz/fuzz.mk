# tests/fuzz/fuzz.mk: builds the libFuzzer targets with clang, ASan and
# UBSan in a build directory of their own.  scripts/fuzz.sh runs it as
#   make -f TOP/tests/fuzz/fuzz.mk -C BUILD_DIR TOP=TOP
# It needs nothing from ./configure: the protobuf sources are generated here
# and the libraries come from pkg-config, so it works whether or not the
# source tree is configured.
TOP ?= ../..
CC = clang
PROTOC_C ?= protoc-c
PKGS = raft libuv liblz4 libmd jansson libnghttp2 libprotobuf-c libbsd
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS := $(shell pkg-config --libs $(PKGS)) -lresolv -lm
SAN = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
WARN = -Wall -Wextra -Wno-unused-parameter -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Werror
CPPFLAGS = -D_GNU_SOURCE -Iraftkv/proto -I$(TOP)/raftkv -I$(TOP)/tests/fuzz $(PKG_CFLAGS)
CFLAGS = -std=gnu11 -g -O1 $(SAN) -fsanitize=fuzzer-no-link $(WARN)
LDFLAGS = $(SAN) -fsanitize=fuzzer

PROTO = kv auth rpc
PROTO_GEN = $(PROTO:%=raftkv/proto/%.pb-c.c) $(PROTO:%=raftkv/proto/%.pb-c.h)
PROTO_OBJ = $(PROTO:%=obj/raftkv/proto/%.pb-c.o)

BASE = raftkv/lib/err.c raftkv/lib/arena.c raftkv/lib/blob.c raftkv/lib/log.c raftkv/lib/pbjson.c
CLIENT = raftkv/client/client.c raftkv/client/conn.c raftkv/client/call.c \
	raftkv/client/methods.c raftkv/client/sync.c
# The server without main.c and listener.c (fz.c stands in for both).
SERVER = raftkv/server/config.c raftkv/server/grpc.c raftkv/server/http1.c \
	raftkv/server/gw.c raftkv/server/rpc.c raftkv/server/svc_kv.c \
	raftkv/server/svc_maint.c raftkv/server/svc_watch.c raftkv/server/svc_lease.c \
	raftkv/server/svc_cluster.c raftkv/server/node.c raftkv/server/node_guard.c raftkv/server/segcheck.c raftkv/server/fsm.c \
	raftkv/server/metrics.c raftkv/server/metrics_text.c raftkv/server/server.c \
	raftkv/server/prop.c raftkv/server/alarm.c raftkv/server/forward.c \
	raftkv/server/mvcc.c raftkv/server/kvs.c raftkv/server/cmd.c \
	raftkv/server/members.c raftkv/server/lease.c raftkv/server/watch.c \
	tests/fuzz/fz.c
obj = $(1:%.c=obj/%.o)

MEMBER_OBJ = $(call obj,$(SERVER) $(CLIENT) $(BASE)) $(PROTO_OBJ)
MEMBER_TARGETS = fuzz_grpc fuzz_grpc_msg fuzz_http1 fuzz_entry fuzz_snapshot
TARGETS = $(MEMBER_TARGETS) fuzz_pbjson fuzz_config

all: $(TARGETS)

$(PROTO_GEN): raftkv/proto/.stamp
raftkv/proto/.stamp: $(PROTO:%=$(TOP)/raftkv/proto/%.proto)
	@mkdir -p raftkv/proto
	$(PROTOC_C) -I$(TOP)/raftkv/proto --c_out=raftkv/proto $^
	@touch $@

obj/raftkv/proto/%.pb-c.o: raftkv/proto/%.pb-c.c raftkv/proto/.stamp
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -Wno-missing-prototypes -MMD -MP -c $< -o $@

obj/%.o: $(TOP)/%.c raftkv/proto/.stamp
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(MEMBER_TARGETS): %: obj/tests/fuzz/%.o $(MEMBER_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

fuzz_pbjson: obj/tests/fuzz/fuzz_pbjson.o $(call obj,$(BASE)) $(PROTO_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

fuzz_config: obj/tests/fuzz/fuzz_config.o obj/raftkv/server/config.o
	$(CC) $(LDFLAGS) -o $@ $^ -ldl

-include $(shell find obj -name '*.d' 2>/dev/null)

.PHONY: all

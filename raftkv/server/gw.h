/*
 * gw: etcd's gRPC-gateway (the JSON API under /v3/, /v3beta/ and /v3alpha/)
 * on the client port's HTTP/1.1 side.
 *
 * http1 hands every request under those prefixes to gw_handle().  A route
 * (POST /v3/kv/range) names a gRPC method (/etcdserverpb.KV/Range); the JSON
 * body is decoded with pbjson into the method's request message, packed, and
 * given to the SAME service handler gRPC uses, through a struct rpc_call that
 * gw implements (rpc.h): rpc_call_send turns each response message into JSON,
 * rpc_call_finish writes the HTTP response.  Services cannot tell the two
 * transports apart.
 *
 * Answers follow etcd 3.4.23 (grpc-gateway v1, jsonpb with proto names):
 *   unary    200 application/json + "Grpc-Metadata-Content-Type:
 *            application/grpc"; a gRPC error becomes the HTTP status of its
 *            code with {"error","message","code"} and a
 *            Grpc-Trailer-Content-Type trailer; a body that does not decode
 *            is 400 (code 3) before any service sees it.
 *   streams  (Watch, LeaseKeepAlive, Snapshot) chunked, one
 *            {"result":{...}} line per message; the body may hold several
 *            request messages, read one after the other.
 *   paths    unknown under a prefix: 404 "Not Found"; a method other than
 *            POST on a route: 405 "Method Not Allowed".
 * /v3alpha/ is served too (etcd 3.4 answers 404 there), because etcd3gw
 * 2.0 uses it by default.  --enable-grpc-gateway=false turns it all off.
 */
#ifndef RAFTKV_GW_H
#define RAFTKV_GW_H

#include "server/http1.h"

void gw_handle(struct http1_req *req);

#endif

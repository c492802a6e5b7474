"""
kv_python: the KV, Txn and Maintenance API through python3-etcd3 (gRPC).

put/get/delete with their metadata, get_prefix/get_range/get_all with sort
and keys_only, transactions with version/create/mod/value compares (both
branches, nested txn), put_if_not_exists and replace, status(), and how gRPC
errors reach the client: the exact status code and etcd message for the
library's own calls and for raw RangeRequest/TxnRequest stubs, and
ConnectionFailedError once the server is gone.
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cluster  # noqa: E402
from cluster import Failure, check, eq  # noqa: E402


def rpc_error(fn, code, details, what):
    """fn() must raise a grpc.RpcError with this code and exact details."""
    import grpc
    try:
        fn()
    except grpc.RpcError as e:
        eq((e.code(), e.details()), (getattr(grpc.StatusCode, code), details), what)
        return
    raise Failure("%s: no error raised" % what)


def main(t):
    cluster.require_python_etcd3()
    import etcd3
    import etcd3.exceptions
    from etcd3 import etcdrpc

    m = t.cluster().members[0]
    c = m.client()
    tx = c.transactions

    # ---- put / get / delete
    p1 = c.put("foo", "bar")
    r1 = p1.header.revision
    check(r1 >= 2, "first put revision %d" % r1)
    val, meta = c.get("foo")
    eq(val, b"bar", "get value")
    eq((meta.key, meta.create_revision, meta.mod_revision, meta.version, meta.lease_id),
       (b"foo", r1, r1, 1, 0), "get metadata")
    p2 = c.put("foo", "baz", prev_kv=True)
    eq((p2.header.revision, p2.prev_kv.key, p2.prev_kv.value, p2.prev_kv.version),
       (r1 + 1, b"foo", b"bar", 1), "put prev_kv")
    val, meta = c.get("foo")
    eq((val, meta.version, meta.create_revision, meta.mod_revision), (b"baz", 2, r1, r1 + 1),
       "overwritten key")
    eq(c.get("missing"), (None, None), "missing key")
    c.put("bin", b"\x00\xff\x01 binary")
    eq(c.get("bin")[0], b"\x00\xff\x01 binary", "binary value round trip")
    eq(c.delete("bin"), True, "delete existing")
    eq(c.delete("bin"), False, "delete missing")
    d = c.delete("foo", prev_kv=True, return_response=True)
    eq((d.deleted, [(kv.key, kv.value) for kv in d.prev_kvs]), (1, [(b"foo", b"baz")]),
       "delete prev_kv")

    # ---- prefix, range, all, sort, keys_only
    for k, v in [("p/b", "2"), ("p/a", "3"), ("p/c", "1"), ("q", "x")]:
        c.put(k, v)
    keys = lambda it: [meta.key.decode() for _, meta in it]  # noqa: E731
    eq(keys(c.get_prefix("p/")), ["p/a", "p/b", "p/c"], "get_prefix")
    eq([v for v, _ in c.get_prefix("p/")], [b"3", b"2", b"1"], "get_prefix values")
    eq(keys(c.get_prefix("p/", sort_order="descend")), ["p/c", "p/b", "p/a"], "descend")
    eq(keys(c.get_prefix("p/", sort_order="ascend", sort_target="value")), ["p/c", "p/b", "p/a"],
       "sort by value")
    eq(keys(c.get_prefix("p/", sort_order="ascend", sort_target="create")), ["p/b", "p/a", "p/c"],
       "sort by create")
    eq([v for v, _ in c.get_prefix("p/", keys_only=True)], [b"", b"", b""], "keys_only")
    eq(keys(c.get_range("p/b", "q")), ["p/b", "p/c"], "get_range [p/b, q)")
    eq(keys(c.get_all()), ["p/a", "p/b", "p/c", "q"], "get_all")
    eq(c.delete_prefix("p/").deleted, 3, "delete_prefix count")
    eq(keys(c.get_prefix("p/")), [], "prefix gone")

    # ---- transactions: every compare target, both branches
    c.put("t", "1")
    _, tm = c.get("t")
    ok, resp = c.transaction(
        compare=[tx.value("t") == "1", tx.version("t") == 1, tx.create("t") == tm.create_revision,
                 tx.mod("t") == tm.mod_revision],
        success=[tx.put("t", "2"), tx.get("t"), tx.put("u", "new")],
        failure=[tx.put("t", "failure")])
    eq(ok, True, "all compares equal")
    eq(resp[1][0][0], b"2", "get inside the txn sees the txn's own put")
    v, um = c.get("u")
    eq((v, um.mod_revision), (b"new", tm.mod_revision + 1), "one revision for the whole txn")

    ok, resp = c.transaction(
        compare=[tx.version("t") > 5], success=[tx.put("t", "wrong")],
        failure=[tx.get("t"), tx.delete("u")])
    eq(ok, False, "version > 5 is false")
    eq((resp[0][0][0], resp[1].response_delete_range.deleted), (b"2", 1), "failure branch ran")
    eq(c.get("t")[0], b"2", "success branch did not run")
    ok, _ = c.transaction(compare=[tx.mod("t") < tm.mod_revision], success=[], failure=[])
    eq(ok, False, "mod < old mod is false")
    ok, _ = c.transaction(compare=[tx.value("t") != "1", tx.create("nokey") == 0], success=[],
                          failure=[])
    eq(ok, True, "value != and a missing key's create == 0")
    ok, resp = c.transaction(
        compare=[], success=[etcd3.transactions.Txn(compare=[tx.value("t") == "2"],
                                                    success=[tx.put("nested", "yes")],
                                                    failure=[])],
        failure=[])
    eq((ok, resp[0].response_txn.succeeded, c.get("nested")[0]), (True, True, b"yes"), "nested txn")

    eq(c.put_if_not_exists("once", "1"), True, "put_if_not_exists on a new key")
    eq(c.put_if_not_exists("once", "2"), False, "put_if_not_exists on an existing key")
    eq(c.get("once")[0], b"1", "value kept")
    eq(c.replace("once", "1", "3"), True, "replace with the right value")
    eq(c.replace("once", "1", "4"), False, "replace with a stale value")
    eq(c.get("once")[0], b"3", "replaced value")

    # ---- status
    head = c.get_response("once").header
    st = c.status()
    check(isinstance(st.version, str) and len(st.version.split(".")) == 3, "version %r" % st.version)
    check(st.db_size > 0, "db_size %r" % st.db_size)
    check(st.leader is not None and st.leader.id == head.member_id,
          "status leader is this member: %r vs %r" % (st.leader, head.member_id))
    eq(st.leader.name, m.name, "leader name")
    check(st.raft_index >= 1 and st.raft_term >= 1, "raft index/term %r %r" % (st.raft_index, st.raft_term))
    mem = list(c.members)
    eq([(x.name, list(x.peer_urls), list(x.client_urls)) for x in mem],
       [(m.name, [m.peer_url], [m.client_url])], "member list")

    # ---- errors: codes and exact messages
    kv = c.kvstub
    rev = head.revision
    rpc_error(lambda: kv.Range(etcdrpc.RangeRequest(key=b"once", revision=rev + 10), timeout=10),
              "OUT_OF_RANGE", "etcdserver: mvcc: required revision is a future revision",
              "range at a future revision")
    c.compact(rev)
    rpc_error(lambda: kv.Range(etcdrpc.RangeRequest(key=b"once", revision=rev - 1), timeout=10),
              "OUT_OF_RANGE", "etcdserver: mvcc: required revision has been compacted",
              "range below the compact revision")
    rpc_error(lambda: c.compact(rev - 1), "OUT_OF_RANGE",
              "etcdserver: mvcc: required revision has been compacted", "compact again")
    rpc_error(lambda: c.compact(rev + 100), "OUT_OF_RANGE",
              "etcdserver: mvcc: required revision is a future revision", "compact the future")
    rpc_error(lambda: c.put("", "v"), "INVALID_ARGUMENT", "etcdserver: key is not provided",
              "empty key")
    rpc_error(lambda: c.put("k", "v", lease=0x1234567), "NOT_FOUND",
              "etcdserver: requested lease not found", "unknown lease")
    rpc_error(lambda: c.transaction(compare=[], success=[tx.put("d", "1"), tx.put("d", "2")],
                                    failure=[]),
              "INVALID_ARGUMENT", "etcdserver: duplicate key given in txn request", "duplicate key")
    rpc_error(lambda: c.transaction(compare=[], success=[tx.put("k%d" % i, "v") for i in range(129)],
                                    failure=[]),
              "INVALID_ARGUMENT", "etcdserver: too many operations in txn request", "129 ops")
    ok, _ = c.transaction(compare=[], success=[tx.put("k%d" % i, "v") for i in range(128)],
                          failure=[])
    eq(ok, True, "128 ops are allowed")
    eq(len(list(c.get_prefix("k"))), 128, "128 keys written by one txn")
    rpc_error(lambda: kv.Put(etcdrpc.PutRequest(key=b"nokey", ignore_value=True), timeout=10),
              "INVALID_ARGUMENT", "etcdserver: key not found", "ignore_value on a missing key")
    rpc_error(lambda: kv.Put(etcdrpc.PutRequest(key=b"once", value=b"x", ignore_value=True),
                             timeout=10),
              "INVALID_ARGUMENT", "etcdserver: value is provided", "value with ignore_value")

    # the library maps UNAVAILABLE to ConnectionFailedError once the server is gone
    m.stop()
    try:
        c.get("once")
    except etcd3.exceptions.ConnectionFailedError:
        pass
    else:
        raise Failure("get from a stopped server did not raise ConnectionFailedError")


cluster.run(main)

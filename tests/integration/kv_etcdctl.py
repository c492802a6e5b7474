"""
kv_etcdctl: the KV API as the real etcdctl 3.4 sees it, on one member.

put/get/del, prefix, from-key, explicit ranges, limit (more/count), every
sort target, historical revisions, keys-only, count_only (through gRPC:
etcdctl 3.4 has no --count-only), interactive txn on stdin (compares on
value/version/create/mod, both branches), compaction, the exact error lines
for future/compacted revisions and empty keys, and endpoint
status/health/hashkv whose JSON must agree with the KV revision.
"""
import base64
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cluster  # noqa: E402
from cluster import check, ctl_json, eq  # noqa: E402


def b64(s):
    return base64.b64encode(s.encode()).decode()


def unb64(s):
    return base64.b64decode(s).decode()


def pairs(resp):
    return [(unb64(kv["key"]), unb64(kv.get("value", ""))) for kv in resp.get("kvs", [])]


def err_line(r):
    """The last stderr line of a failed etcdctl call ("Error: ...")."""
    lines = r.stderr.strip().splitlines()
    return lines[-1] if lines else ""


def expect_error(m, args, message):
    args = [str(a) for a in args]
    r = m.ctl(*args, check_rc=False)
    check(r.returncode != 0, "etcdctl %s should fail, got stdout %r" % (" ".join(args), r.stdout))
    eq(err_line(r), "Error: " + message, "error of etcdctl %s" % " ".join(args))


def main(t):
    m = t.cluster().members[0]

    # ---- put / get / overwrite / delete
    eq(m.ctl("put", "foo", "bar").stdout, "OK\n", "put output")
    eq(m.ctl("get", "foo").stdout, "foo\nbar\n", "get output")
    g1 = ctl_json(m, "get", "foo")
    kv1 = g1["kvs"][0]
    eq((unb64(kv1["key"]), unb64(kv1["value"]), kv1["version"]), ("foo", "bar", 1), "first put")
    eq(kv1["create_revision"], kv1["mod_revision"], "create == mod after first put")
    eq(g1["header"]["revision"], kv1["mod_revision"], "header revision is the last write")
    eq(g1.get("count"), 1, "count of one key")
    r1 = kv1["mod_revision"]

    m.ctl("put", "foo", "baz")
    kv2 = ctl_json(m, "get", "foo")["kvs"][0]
    eq((unb64(kv2["value"]), kv2["version"], kv2["create_revision"], kv2["mod_revision"]),
       ("baz", 2, r1, r1 + 1), "overwrite keeps create_revision, bumps version and mod")
    m.ctl("put", "foo", "baz")
    eq(ctl_json(m, "get", "foo")["header"]["revision"], r1 + 2, "same-value put still bumps the revision")

    eq(m.ctl("get", "missing").stdout, "", "get of a missing key prints nothing")
    gm = ctl_json(m, "get", "missing")
    check("kvs" not in gm and gm.get("count", 0) == 0, "missing key json: %r" % gm)
    eq(m.ctl("put", "empty", "").stdout, "OK\n", "put of an empty value")
    eq(pairs(ctl_json(m, "get", "empty")), [("empty", "")], "empty value")
    eq(m.ctl("put", "key with spaces", "value with spaces").stdout, "OK\n", "put with spaces")
    eq(m.ctl("get", "key with spaces", "--print-value-only").stdout, "value with spaces\n",
       "--print-value-only")

    eq(m.ctl("del", "foo").stdout, "1\n", "del existing")
    eq(m.ctl("del", "foo").stdout, "0\n", "del missing")
    m.ctl("put", "foo", "again")
    kv3 = ctl_json(m, "get", "foo")["kvs"][0]
    eq(kv3["version"], 1, "version restarts at 1 after a delete")
    check(kv3["create_revision"] > r1, "create_revision is new after a delete")
    m.ctl("del", "empty")
    m.ctl("del", "key with spaces")
    m.ctl("del", "foo")

    # ---- ranges: prefix, from-key, [key, range_end), limit
    for k, v in [("a", "1"), ("ab", "2"), ("abc", "3"), ("b", "4"), ("c", "5")]:
        m.ctl("put", k, v)
    eq(m.ctl("get", "a", "--prefix").stdout, "a\n1\nab\n2\nabc\n3\n", "prefix")
    eq(pairs(ctl_json(m, "get", "ab", "--prefix")), [("ab", "2"), ("abc", "3")], "prefix ab")
    eq(pairs(ctl_json(m, "get", "ab", "--from-key")),
       [("ab", "2"), ("abc", "3"), ("b", "4"), ("c", "5")], "from-key")
    eq(pairs(ctl_json(m, "get", "ab", "c")), [("ab", "2"), ("abc", "3"), ("b", "4")], "[ab, c)")
    lim = ctl_json(m, "get", "a", "--prefix", "--limit", "2")
    eq(pairs(lim), [("a", "1"), ("ab", "2")], "limit 2")
    eq((lim.get("more"), lim.get("count")), (True, 3), "limit: more and count ignore the limit")
    all_ = ctl_json(m, "get", "", "--from-key", "--limit", "1")
    eq((len(all_["kvs"]), all_.get("more"), all_.get("count")), (1, True, 5), "whole keyspace count")
    eq(m.ctl("get", "a", "--prefix", "--keys-only").stdout, "a\n\nab\n\nabc\n\n", "keys-only output")
    ko = ctl_json(m, "get", "a", "--prefix", "--keys-only")
    check(all("value" not in kv for kv in ko["kvs"]), "keys-only returns no values: %r" % ko)
    eq(ko.get("count"), 3, "keys-only count")

    # ---- sort: every target, both orders (writes in an order unlike key order)
    m.ctl("put", "s/b", "2")
    m.ctl("put", "s/c", "1")
    m.ctl("put", "s/a", "3")
    m.ctl("put", "s/c", "1")   # s/c: version 2, newest mod
    keys = lambda *a: [k for k, _ in pairs(ctl_json(m, "get", "s/", "--prefix", *a))]  # noqa: E731
    eq(keys(), ["s/a", "s/b", "s/c"], "default order")
    eq(keys("--sort-by=KEY", "--order=DESCEND"), ["s/c", "s/b", "s/a"], "KEY DESCEND")
    eq(keys("--sort-by=CREATE"), ["s/b", "s/c", "s/a"], "CREATE")
    eq(keys("--sort-by=MODIFY", "--order=DESCEND"), ["s/c", "s/a", "s/b"], "MODIFY DESCEND")
    eq(keys("--sort-by=VALUE"), ["s/c", "s/b", "s/a"], "VALUE")
    eq(keys("--sort-by=VERSION", "--order=DESCEND")[0], "s/c", "VERSION DESCEND")
    eq(keys("--sort-by=VALUE", "--limit", "1", "--order=DESCEND"), ["s/a"],
       "sort applies before limit")

    # ---- historical revisions
    m.ctl("put", "h", "v1")
    rh1 = ctl_json(m, "get", "h")["header"]["revision"]
    m.ctl("put", "h", "v2")
    m.ctl("del", "h")
    m.ctl("put", "h", "v3")
    cur = ctl_json(m, "get", "h")["header"]["revision"]
    eq(pairs(ctl_json(m, "get", "h", "--rev", rh1)), [("h", "v1")], "get --rev at first put")
    eq(pairs(ctl_json(m, "get", "h", "--rev", rh1 + 1)), [("h", "v2")], "get --rev at second put")
    eq(pairs(ctl_json(m, "get", "h", "--rev", rh1 + 2)), [], "get --rev while deleted")
    eq(pairs(ctl_json(m, "get", "h", "--rev", cur)), [("h", "v3")], "get --rev current")
    eq(pairs(ctl_json(m, "get", "h", "--rev", 1)), [], "get --rev 1 (before anything)")
    expect_error(m, ["get", "h", "--rev", cur + 1],
                 "etcdserver: mvcc: required revision is a future revision")
    expect_error(m, ["put", "", "v"], "etcdserver: key is not provided")

    # ---- count_only through gRPC (etcdctl 3.4 has no --count-only)
    cluster.require_python_etcd3()
    from etcd3 import etcdrpc
    cl = m.client()
    rr = cl.kvstub.Range(etcdrpc.RangeRequest(key=b"a", range_end=b"b", count_only=True),
                         timeout=10)
    eq((len(rr.kvs), rr.count, rr.more), (0, 3, False), "count_only: no kvs, count 3")
    eq(rr.header.revision, cur, "count_only header revision")

    # ---- txn from stdin: compares on value, version, create, mod
    m.ctl("put", "t", "x")
    out = m.ctl("txn", input='value("t") = "x"\n\nput t y\nget t\n\nput nope 1\n\n').stdout
    eq(out, "SUCCESS\n\nOK\n\nt\ny\n", "txn success branch output")
    out = m.ctl("txn", input='version("t") = "5"\n\nput nope 1\n\nget t\ndel c\n\n').stdout
    eq(out, "FAILURE\n\nt\ny\n\n1\n", "txn failure branch output")
    eq(m.ctl("get", "nope").stdout, "", "the branch not taken did not run")
    tget = ctl_json(m, "get", "t")
    trev = tget["kvs"][0]
    tx = ctl_json(m, "txn", input='mod("t") = "%d"\ncreate("t") < "%d"\nversion("t") > "1"\n\n'
                  'put t z\nput t2 w\n\n\n' % (trev["mod_revision"], trev["mod_revision"]))
    eq(tx.get("succeeded"), True, "txn with mod/create/version compares: %r" % tx)
    after = ctl_json(m, "get", "t")
    eq(after["header"]["revision"], tget["header"]["revision"] + 1, "a txn is one revision")
    eq(pairs(after), [("t", "z")], "txn put applied")
    ro = ctl_json(m, "txn", input='value("t") != "z"\n\n\nget t\n\n')
    eq((ro.get("succeeded", False), ro["header"]["revision"]), (False, after["header"]["revision"]),
       "a read-only failed txn does not bump the revision")

    # ---- compaction and its errors
    head = ctl_json(m, "get", "h")["header"]["revision"]
    eq(m.ctl("compaction", rh1 + 1).stdout, "compacted revision %d\n" % (rh1 + 1), "compaction output")
    expect_error(m, ["get", "h", "--rev", rh1],
                 "etcdserver: mvcc: required revision has been compacted")
    eq(pairs(ctl_json(m, "get", "h", "--rev", rh1 + 1)), [("h", "v2")], "get at the compact revision")
    expect_error(m, ["compaction", rh1], "etcdserver: mvcc: required revision has been compacted")
    expect_error(m, ["compaction", head + 100],
                 "etcdserver: mvcc: required revision is a future revision")
    eq(m.ctl("compaction", "--physical", rh1 + 2).stdout, "compacted revision %d\n" % (rh1 + 2),
       "physical compaction")
    eq(pairs(ctl_json(m, "get", "h")), [("h", "v3")], "latest value survives compaction")

    # ---- endpoint status / health / hashkv
    rev = ctl_json(m, "get", "anything")["header"]["revision"]
    st = ctl_json(m, "endpoint", "status")
    eq(len(st), 1, "one status row")
    eq(st[0]["Endpoint"], m.endpoint, "status endpoint")
    s = st[0]["Status"]
    eq(s["header"]["revision"], rev, "status revision matches the KV revision")
    eq(s["leader"], s["header"]["member_id"], "a single member is its own leader")
    check(s.get("raftIndex", 0) >= 1 and s.get("raftTerm", 0) >= 1, "raft index/term: %r" % s)
    check(s.get("raftAppliedIndex", s["raftIndex"]) <= s["raftIndex"], "applied <= index: %r" % s)
    check(isinstance(s.get("version"), str) and s["version"].count(".") == 2,
          "version is x.y.z: %r" % s.get("version"))
    check(s.get("dbSize", 0) > 0, "dbSize > 0: %r" % s)
    text = m.ctl("endpoint", "status").stdout
    check(text.startswith(m.endpoint + ", ") and ", true, false, " in text,
          "endpoint status line (leader=true, learner=false): %r" % text)

    h = m.ctl("endpoint", "health")
    check((m.endpoint + " is healthy: successfully committed proposal") in h.stdout + h.stderr,
          "endpoint health: %r" % (h.stdout + h.stderr))
    hj = ctl_json(m, "endpoint", "health")
    eq((hj[0]["endpoint"], hj[0]["health"]), (m.endpoint, True), "endpoint health json")

    hk1 = ctl_json(m, "endpoint", "hashkv")
    eq(hk1[0]["Endpoint"], m.endpoint, "hashkv endpoint")
    eq(hk1[0]["HashKV"]["header"]["revision"], rev, "hashkv revision")
    eq(hk1[0]["HashKV"].get("compact_revision"), rh1 + 2, "hashkv compact_revision")
    check(isinstance(hk1[0]["HashKV"].get("hash"), int), "hashkv hash: %r" % hk1)
    hk2 = ctl_json(m, "endpoint", "hashkv")
    eq(hk2[0]["HashKV"]["hash"], hk1[0]["HashKV"]["hash"], "hashkv is stable without writes")
    m.ctl("put", "hash-changer", "1")
    hk3 = ctl_json(m, "endpoint", "hashkv")
    eq(hk3[0]["HashKV"]["header"]["revision"], rev + 1, "hashkv revision after a put")
    check(hk3[0]["HashKV"]["hash"] != hk1[0]["HashKV"]["hash"], "hashkv changes after a put")


cluster.run(main)

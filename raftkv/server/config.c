/*
 * config: etcd 3.4's command line and ETCD_* environment, parsed the way
 * etcd does it (Go's flag package, then pkg/flags.SetFlagsFromEnv, then
 * embed.Config.Validate), into struct config for main.c and the modules.
 *
 * Every flag etcd 3.4.23 registers is in cf_defs[], so nothing an etcd
 * deployment passes is silently dropped.  Each flag is one of:
 *   FS_YES   honoured (or stored for the module that honours it);
 *   FS_NOOP  accepted: it has no effect in etcd either in any configuration
 *            raftkv can run (e.g. --proxy-* timeouts without --proxy);
 *   FS_WARN  accepted, but a non-default value is ignored with a warning
 *            (knobs of etcd's own storage internals: --max-wals, ...);
 *   FS_ONLY  accepted only with the values in `only` (etcd's default, or a
 *            value meaning what raftkv does anyway, e.g. --logger=zap);
 *            anything else fails with "flag --X is not supported yet".
 *
 * Error texts and exit codes are etcd's (checked against /usr/bin/etcd
 * 3.4.23): syntax errors print Go's message and the short usage and exit 2;
 * configuration errors print one line and exit 1.
 */
#include "server/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CF_ERR 1024
#define CF_MAX_ELECTION_MS 50000u
#define CF_MAX_QUOTA_RECOMMENDED (8ll << 30)
#define CF_MAX_REQUEST_RECOMMENDED (10u << 20)
#define CF_NS_PER_MS 1000000ll

enum cf_type {
	FT_STR,
	FT_URLS,   /* comma-separated URL list (flags.URLsValue) */
	FT_BOOL,
	FT_UINT,   /* Go uint: ParseUint(s, 0, 64) */
	FT_UINT32, /* etcd's uint32Value: ParseUint(s, 0, 32) */
	FT_UINT64,
	FT_INT64,  /* Go int and int64 */
	FT_DUR,    /* Go time.Duration */
	FT_CHOICE, /* flags.StringsFlag: one of `choices` */
	FT_IGNORED /* flags.IgnoredFlag: legacy names etcd accepts and ignores */
};

enum cf_support { FS_YES, FS_NOOP, FS_WARN, FS_ONLY };

struct cf_def {
	const char *name;
	enum cf_type type;
	const char *def;     /* etcd's default, as text (NULL: none) */
	enum cf_support support;
	const char *only;    /* FS_ONLY: accepted values, '|'-separated */
	const char *choices; /* FT_CHOICE: valid values, '|'-separated */
};

/* All flags of etcd 3.4.23 (probed one by one against /usr/bin/etcd). */
static const struct cf_def cf_defs[] = {
	/* Member */
	{"name", FT_STR, "default", FS_YES, NULL, NULL},
	{"data-dir", FT_STR, "", FS_YES, NULL, NULL},
	{"wal-dir", FT_STR, "", FS_ONLY, "", NULL},
	{"snapshot-count", FT_UINT64, "100000", FS_YES, NULL, NULL},
	{"heartbeat-interval", FT_UINT, "100", FS_YES, NULL, NULL},
	{"election-timeout", FT_UINT, "1000", FS_YES, NULL, NULL},
	{"initial-election-tick-advance", FT_BOOL, "true", FS_WARN, NULL, NULL},
	{"listen-peer-urls", FT_URLS, "http://localhost:2380", FS_YES, NULL, NULL},
	{"listen-client-urls", FT_URLS, "http://localhost:2379", FS_YES, NULL, NULL},
	{"max-snapshots", FT_UINT, "5", FS_WARN, NULL, NULL},
	{"max-wals", FT_UINT, "5", FS_WARN, NULL, NULL},
	{"quota-backend-bytes", FT_INT64, "0", FS_YES, NULL, NULL},
	{"backend-batch-interval", FT_DUR, "0", FS_WARN, NULL, NULL},
	{"backend-batch-limit", FT_INT64, "0", FS_WARN, NULL, NULL},
	{"max-txn-ops", FT_UINT, "128", FS_YES, NULL, NULL},
	{"max-request-bytes", FT_UINT, "1572864", FS_YES, NULL, NULL},
	{"max-concurrent-streams", FT_UINT32, "4294967295", FS_YES, NULL, NULL},
	{"grpc-keepalive-min-time", FT_DUR, "5s", FS_YES, NULL, NULL},
	{"grpc-keepalive-interval", FT_DUR, "2h", FS_YES, NULL, NULL},
	{"grpc-keepalive-timeout", FT_DUR, "20s", FS_YES, NULL, NULL},
	/* Clustering */
	{"initial-advertise-peer-urls", FT_URLS, "http://localhost:2380", FS_YES, NULL, NULL},
	{"initial-cluster", FT_STR, NULL, FS_YES, NULL, NULL},
	{"initial-cluster-state", FT_CHOICE, "new", FS_YES, NULL, "new|existing"},
	{"initial-cluster-token", FT_STR, "etcd-cluster", FS_YES, NULL, NULL},
	{"advertise-client-urls", FT_URLS, "http://localhost:2379", FS_YES, NULL, NULL},
	{"discovery", FT_STR, "", FS_ONLY, "", NULL},
	{"discovery-fallback", FT_CHOICE, "proxy", FS_NOOP, NULL, "proxy|exit"},
	{"discovery-proxy", FT_STR, "", FS_ONLY, "", NULL},
	{"discovery-srv", FT_STR, "", FS_ONLY, "", NULL},
	{"discovery-srv-name", FT_STR, "", FS_ONLY, "", NULL},
	{"strict-reconfig-check", FT_BOOL, "true", FS_YES, NULL, NULL},
	{"pre-vote", FT_BOOL, "false", FS_YES, NULL, NULL},
	{"auto-compaction-retention", FT_STR, "0", FS_YES, NULL, NULL},
	{"auto-compaction-mode", FT_STR, "periodic", FS_YES, NULL, NULL},
	{"enable-v2", FT_BOOL, "false", FS_ONLY, "false", NULL},
	{"experimental-enable-v2v3", FT_STR, "", FS_ONLY, "", NULL},
	{"enable-grpc-gateway", FT_BOOL, "true", FS_YES, NULL, NULL},
	/* Proxy (v2): only --proxy=off, so its timeouts never apply */
	{"proxy", FT_CHOICE, "off", FS_ONLY, "off", "off|readonly|on"},
	{"proxy-failure-wait", FT_UINT, "5000", FS_NOOP, NULL, NULL},
	{"proxy-refresh-interval", FT_UINT, "30000", FS_NOOP, NULL, NULL},
	{"proxy-dial-timeout", FT_UINT, "1000", FS_NOOP, NULL, NULL},
	{"proxy-write-timeout", FT_UINT, "5000", FS_NOOP, NULL, NULL},
	{"proxy-read-timeout", FT_UINT, "0", FS_NOOP, NULL, NULL},
	/* Security */
	{"cert-file", FT_STR, "", FS_ONLY, "", NULL},
	{"key-file", FT_STR, "", FS_ONLY, "", NULL},
	{"client-cert-auth", FT_BOOL, "false", FS_ONLY, "false", NULL},
	{"client-crl-file", FT_STR, "", FS_ONLY, "", NULL},
	{"client-cert-allowed-hostname", FT_STR, "", FS_ONLY, "", NULL},
	{"trusted-ca-file", FT_STR, "", FS_ONLY, "", NULL},
	{"auto-tls", FT_BOOL, "false", FS_ONLY, "false", NULL},
	{"peer-cert-file", FT_STR, "", FS_ONLY, "", NULL},
	{"peer-key-file", FT_STR, "", FS_ONLY, "", NULL},
	{"peer-client-cert-auth", FT_BOOL, "false", FS_ONLY, "false", NULL},
	{"peer-trusted-ca-file", FT_STR, "", FS_ONLY, "", NULL},
	{"peer-cert-allowed-cn", FT_STR, "", FS_ONLY, "", NULL},
	{"peer-cert-allowed-hostname", FT_STR, "", FS_ONLY, "", NULL},
	{"peer-auto-tls", FT_BOOL, "false", FS_ONLY, "false", NULL},
	{"peer-crl-file", FT_STR, "", FS_ONLY, "", NULL},
	{"cipher-suites", FT_STR, "", FS_ONLY, "", NULL},
	{"experimental-peer-skip-client-san-verification", FT_BOOL, "false", FS_NOOP, NULL, NULL},
	{"cors", FT_STR, "*", FS_ONLY, "*", NULL},
	{"host-whitelist", FT_STR, "*", FS_ONLY, "*|", NULL},
	/* Auth: no auth yet, so the token type cannot matter but jwt's keys would */
	{"auth-token", FT_STR, "simple", FS_ONLY, "simple", NULL},
	{"bcrypt-cost", FT_UINT, "10", FS_WARN, NULL, NULL},
	{"auth-token-ttl", FT_UINT, "300", FS_WARN, NULL, NULL},
	/* Profiling and monitoring */
	{"enable-pprof", FT_BOOL, "false", FS_ONLY, "false", NULL},
	{"metrics", FT_STR, "basic", FS_WARN, NULL, NULL},
	{"listen-metrics-urls", FT_STR, "", FS_ONLY, "", NULL},
	/* Logging: our own line format whatever the logger, always on stderr */
	{"logger", FT_STR, "capnslog", FS_ONLY, "capnslog|zap", NULL},
	{"log-outputs", FT_STR, "default", FS_ONLY, "default|stderr", NULL},
	{"log-output", FT_STR, "default", FS_ONLY, "default|stderr", NULL},
	{"log-level", FT_STR, "info", FS_YES, NULL, NULL},
	{"debug", FT_BOOL, "false", FS_YES, NULL, NULL},
	{"log-package-levels", FT_STR, "", FS_ONLY, "", NULL},
	/* Experimental */
	{"experimental-initial-corrupt-check", FT_BOOL, "false", FS_ONLY, "false", NULL},
	{"experimental-corrupt-check-time", FT_DUR, "0", FS_ONLY, "0", NULL},
	{"experimental-backend-bbolt-freelist-type", FT_STR, "array", FS_WARN, NULL, NULL},
	{"experimental-enable-lease-checkpoint", FT_BOOL, "false", FS_ONLY, "false", NULL},
	{"experimental-enable-lease-checkpoint-persist", FT_BOOL, "false", FS_ONLY, "false", NULL},
	{"experimental-compaction-batch-limit", FT_INT64, "1000", FS_WARN, NULL, NULL},
	{"experimental-watch-progress-notify-interval", FT_DUR, "10m", FS_YES, NULL, NULL},
	{"experimental-warning-apply-duration", FT_DUR, "100ms", FS_YES, NULL, NULL},
	/* Unsafe */
	{"force-new-cluster", FT_BOOL, "false", FS_ONLY, "false", NULL},
	{"unsafe-no-fsync", FT_BOOL, "false", FS_ONLY, "false", NULL},
	/* Other */
	{"config-file", FT_STR, "", FS_ONLY, "", NULL},
	{"version", FT_BOOL, "false", FS_YES, NULL, NULL},
	/* etcd's `ignored` list (etcdmain/config.go): accepted, warned, no value */
	{"cluster-active-size", FT_IGNORED, NULL, FS_NOOP, NULL, NULL},
	{"cluster-remove-delay", FT_IGNORED, NULL, FS_NOOP, NULL, NULL},
	{"cluster-sync-interval", FT_IGNORED, NULL, FS_NOOP, NULL, NULL},
	{"config", FT_IGNORED, NULL, FS_NOOP, NULL, NULL},
	{"force", FT_IGNORED, NULL, FS_NOOP, NULL, NULL},
	{"max-result-buffer", FT_IGNORED, NULL, FS_NOOP, NULL, NULL},
	{"max-retry-attempts", FT_IGNORED, NULL, FS_NOOP, NULL, NULL},
	{"peer-heartbeat-interval", FT_IGNORED, NULL, FS_NOOP, NULL, NULL},
	{"peer-election-timeout", FT_IGNORED, NULL, FS_NOOP, NULL, NULL},
	{"retry-interval", FT_IGNORED, NULL, FS_NOOP, NULL, NULL},
	{"snapshot", FT_IGNORED, NULL, FS_NOOP, NULL, NULL},
	{"v", FT_IGNORED, NULL, FS_NOOP, NULL, NULL},
	{"vv", FT_IGNORED, NULL, FS_NOOP, NULL, NULL},
	{"test.coverprofile", FT_IGNORED, NULL, FS_NOOP, NULL, NULL},
	{"test.outputdir", FT_IGNORED, NULL, FS_NOOP, NULL, NULL},
};

#define CF_N (sizeof(cf_defs) / sizeof(cf_defs[0]))

enum cf_src { SRC_DEFAULT = 0, SRC_ARGS, SRC_ENV };

/* Where each flag's value came from; values point into argv or environ,
 * which outlive config_parse(). */
struct cf_val {
	const char *value;
	enum cf_src src;
};

struct cf_state {
	struct config *cfg;
	struct cf_val vals[CF_N];
	bool failed_notice; /* out of memory while recording a notice */
};

static const char cf_usage_short[] =
	"Usage:\n"
	"\n"
	"  raftkv [flags]\n"
	"    Start a raftkv member (etcd v3 API compatible).\n"
	"\n"
	"  raftkv --version\n"
	"    Show the version of raftkv.\n"
	"\n"
	"  raftkv -h | --help\n"
	"    Show the help information about raftkv.\n";

static const char cf_usage_flags[] =
	"\n"
	"Member:\n"
	"  --name 'default'\n"
	"    Human-readable name for this member.\n"
	"  --data-dir '${name}.raftkv'\n"
	"    Path to the data directory.\n"
	"  --snapshot-count '100000'\n"
	"    Number of committed transactions to trigger a snapshot to disk.\n"
	"  --heartbeat-interval '100'\n"
	"    Time (in milliseconds) of a heartbeat interval.\n"
	"  --election-timeout '1000'\n"
	"    Time (in milliseconds) for an election to timeout (at least 5 heartbeats, at most 50000).\n"
	"  --listen-peer-urls 'http://localhost:2380'\n"
	"    List of URLs to listen on for peer traffic.\n"
	"  --listen-client-urls 'http://localhost:2379'\n"
	"    List of URLs to listen on for client traffic.\n"
	"  --quota-backend-bytes '0'\n"
	"    Raise alarms when backend size exceeds the given quota (0 defaults to 2 GiB).\n"
	"  --max-txn-ops '128'\n"
	"    Maximum number of operations permitted in a transaction.\n"
	"  --max-request-bytes '1572864'\n"
	"    Maximum client request size in bytes the server will accept.\n"
	"  --max-concurrent-streams 'math.MaxUint32'\n"
	"    Maximum concurrent streams that each client can open at a time.\n"
	"  --grpc-keepalive-min-time '5s'\n"
	"    Minimum duration interval that a client should wait before pinging server.\n"
	"  --grpc-keepalive-interval '2h'\n"
	"    Frequency duration of server-to-client ping to check if a connection is alive (0 to disable).\n"
	"  --grpc-keepalive-timeout '20s'\n"
	"    Additional duration of wait before closing a non-responsive connection (0 to disable).\n"
	"\n"
	"Clustering:\n"
	"  --initial-advertise-peer-urls 'http://localhost:2380'\n"
	"    List of this member's peer URLs to advertise to the rest of the cluster.\n"
	"  --initial-cluster '${name}=${initial-advertise-peer-urls}'\n"
	"    Initial cluster configuration for bootstrapping (name=url,name=url,...).\n"
	"  --initial-cluster-state 'new'\n"
	"    Initial cluster state ('new' or 'existing').\n"
	"  --initial-cluster-token 'etcd-cluster'\n"
	"    Initial cluster token for the cluster during bootstrap.\n"
	"  --advertise-client-urls 'http://localhost:2379'\n"
	"    List of this member's client URLs to advertise to the public.\n"
	"  --strict-reconfig-check 'true'\n"
	"    Reject reconfiguration requests that would cause quorum loss.\n"
	"  --pre-vote 'false'\n"
	"    Enable to run an additional Raft election phase.\n"
	"  --auto-compaction-retention '0'\n"
	"    Auto compaction retention length. 0 means disable auto compaction.\n"
	"  --auto-compaction-mode 'periodic'\n"
	"    Interpret 'auto-compaction-retention' one of: periodic|revision. 'periodic' for duration based\n"
	"    retention, defaulting to hours if no time unit is provided (e.g. '5m'). 'revision' for revision\n"
	"    number based retention.\n"
	"  --enable-grpc-gateway 'true'\n"
	"    Enable the JSON gateway (/v3/...) on the client URLs.\n"
	"\n"
	"Logging:\n"
	"  --log-level 'info'\n"
	"    Configures log level. Only supports debug, info, warn, error, panic, or fatal.\n"
	"  --debug 'false'\n"
	"    Same as --log-level=debug.\n"
	"\n"
	"Experimental:\n"
	"  --experimental-watch-progress-notify-interval '10m'\n"
	"    Duration of periodical watch progress notification.\n"
	"  --experimental-warning-apply-duration '100ms'\n"
	"    Warning is generated if requests take more than this duration.\n"
	"\n"
	"Accepted for compatibility with etcd, with only these values:\n"
	"  --logger 'capnslog' or 'zap', --log-outputs / --log-output 'default' or 'stderr',\n"
	"  --enable-v2 'false', --proxy 'off', --auth-token 'simple', --cors '*', --host-whitelist '*',\n"
	"  --enable-pprof, --client-cert-auth, --auto-tls, --peer-client-cert-auth, --peer-auto-tls,\n"
	"  --force-new-cluster, --unsafe-no-fsync, --experimental-initial-corrupt-check,\n"
	"  --experimental-enable-lease-checkpoint[-persist] 'false', --experimental-corrupt-check-time '0s',\n"
	"  and empty --wal-dir, --discovery*, --cert-file, --key-file, --trusted-ca-file, --client-crl-file,\n"
	"  --client-cert-allowed-hostname, --peer-*-file, --peer-cert-allowed-*, --cipher-suites,\n"
	"  --listen-metrics-urls, --log-package-levels, --experimental-enable-v2v3, --config-file.\n"
	"  Any other value fails with \"flag --X is not supported yet\".\n"
	"\n"
	"Accepted and ignored (with a warning unless left at etcd's default):\n"
	"  --max-snapshots, --max-wals, --backend-batch-interval, --backend-batch-limit, --bcrypt-cost,\n"
	"  --auth-token-ttl, --metrics, --initial-election-tick-advance,\n"
	"  --experimental-backend-bbolt-freelist-type, --experimental-compaction-batch-limit;\n"
	"  without effect: --discovery-fallback, --proxy-*, --experimental-peer-skip-client-san-verification.\n"
	"\n"
	"Every flag can also be set with an environment variable: ETCD_ followed by the flag name in\n"
	"upper case with '-' replaced by '_' (ETCD_NAME, ETCD_DATA_DIR, ...).  Setting a flag both on the\n"
	"command line and in the environment is an error.\n";

void config_usage(FILE *out)
{
	fputs(cf_usage_short, out);
	fputs(cf_usage_flags, out);
}

/* --- small helpers --------------------------------------------------------- */

static const struct cf_def *cf_find(const char *name, size_t len)
{
	size_t i;
	for (i = 0; i < CF_N; i++)
		if (strlen(cf_defs[i].name) == len && memcmp(cf_defs[i].name, name, len) == 0)
			return &cf_defs[i];
	return NULL;
}

static size_t cf_index(const struct cf_def *d)
{
	return (size_t)(d - cf_defs);
}

static const struct cf_def *cf_def_named(const char *name)
{
	return cf_find(name, strlen(name));
}

/* Go's %q for the strings we print: quotes, \" \\ and \xNN escapes. */
static const char *cf_quote(char *buf, size_t size, const char *s)
{
	size_t o = 0;
	if (size < 3)
		return "\"\"";
	buf[o++] = '"';
	for (; *s && o + 6 < size; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			buf[o++] = '\\';
			buf[o++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
		} else {
			buf[o++] = (char)c;
		}
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

/* Is v one of the '|'-separated words of list? */
static bool cf_in_list(const char *list, const char *v)
{
	size_t n = strlen(v);
	const char *p = list;
	for (;;) {
		const char *bar = strchr(p, '|');
		size_t l = bar ? (size_t)(bar - p) : strlen(p);
		if (l == n && strncmp(p, v, n) == 0)
			return true;
		if (!bar)
			return false;
		p = bar + 1;
	}
}

static void cf_notice(struct cf_state *st, bool warning, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void cf_notice(struct cf_state *st, bool warning, const char *fmt, ...)
{
	struct config *cfg = st->cfg;
	struct config_notice *n;
	char *text;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&text, fmt, ap) < 0)
		text = NULL;
	va_end(ap);
	if (!text) {
		st->failed_notice = true;
		return;
	}
	n = realloc(cfg->notices, (size_t)(cfg->n_notices + 1) * sizeof(*n));
	if (!n) {
		free(text);
		st->failed_notice = true;
		return;
	}
	cfg->notices = n;
	n[cfg->n_notices].warning = warning;
	n[cfg->n_notices].text = text;
	cfg->n_notices++;
}

static void cf_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Go's flag package: the message, then the usage, on stderr. */
static void cf_usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fputs(cf_usage_short, stderr);
}

static void cf_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void cf_error(const char *fmt, ...)
{
	va_list ap;
	fputs("raftkv: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* etcd's "error verifying flags, ... See 'etcd --help'." */
#define cf_verify_error(fmt, ...) \
	cf_error("error verifying flags, " fmt ". See 'raftkv --help'.", ##__VA_ARGS__)

/* --- Go number, bool and duration syntax ------------------------------------ */

static int cf_digit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 10;
	return 99;
}

/* strconv.ParseUint(s, 0, 64): 0, -1 (syntax) or -2 (range).  Base
 * prefixes 0x 0o 0b and a leading 0 (octal); '_' only between digits. */
static int cf_parse_u64(const char *s, uint64_t *out)
{
	unsigned base = 10;
	uint64_t v = 0;
	bool any = false, prev_digit = false;
	const char *p = s;
	if (*p == '\0')
		return -1;
	if (p[0] == '0' && p[1] != '\0') {
		switch (tolower((unsigned char)p[1])) {
		case 'x':
			base = 16;
			p += 2;
			prev_digit = true; /* '_' may follow a base prefix */
			break;
		case 'o':
			base = 8;
			p += 2;
			prev_digit = true;
			break;
		case 'b':
			base = 2;
			p += 2;
			prev_digit = true;
			break;
		default:
			base = 8;
			break;
		}
	}
	for (; *p; p++) {
		int d;
		if (*p == '_') {
			if (!prev_digit)
				return -1;
			prev_digit = false;
			continue;
		}
		d = cf_digit((unsigned char)*p);
		if (d >= (int)base)
			return -1;
		if (v > (UINT64_MAX - (uint64_t)d) / base)
			return -2;
		v = v * base + (uint64_t)d;
		any = true;
		prev_digit = true;
	}
	if (!any || !prev_digit)
		return -1;
	*out = v;
	return 0;
}

/* strconv.ParseInt(s, 0, 64). */
static int cf_parse_i64(const char *s, int64_t *out)
{
	bool neg = false;
	uint64_t u;
	int rv;
	if (*s == '+' || *s == '-') {
		neg = *s == '-';
		s++;
	}
	rv = cf_parse_u64(s, &u);
	if (rv)
		return rv;
	if (neg) {
		if (u > (uint64_t)INT64_MAX + 1)
			return -2;
		*out = u == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)u;
	} else {
		if (u > (uint64_t)INT64_MAX)
			return -2;
		*out = (int64_t)u;
	}
	return 0;
}

/* strconv.ParseBool. */
static int cf_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"1", "t", "T", "TRUE", "true", "True"};
	static const char *const no[] = {"0", "f", "F", "FALSE", "false", "False"};
	size_t i;
	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

/* time.ParseDuration: 0 and nanoseconds in *out, or -1 with Go's message. */
static int cf_parse_duration(const char *orig, int64_t *out, char *err, size_t errlen)
{
	static const struct {
		const char *unit;
		uint64_t ns;
	} units[] = {
		{"ns", 1ull},
		{"us", 1000ull},
		{"\xc2\xb5s", 1000ull}, /* U+00B5 micro sign */
		{"\xce\xbcs", 1000ull}, /* U+03BC Greek mu */
		{"ms", 1000000ull},
		{"s", 1000000000ull},
		{"m", 60000000000ull},
		{"h", 3600000000000ull},
	};
	char q[300];
	const char *s = orig;
	uint64_t d = 0;
	bool neg = false;

	if (*s == '-' || *s == '+') {
		neg = *s == '-';
		s++;
	}
	if (strcmp(s, "0") == 0) {
		*out = 0;
		return 0;
	}
	if (*s == '\0')
		goto invalid;
	while (*s) {
		uint64_t v = 0, f = 0, unit = 0;
		long double scale = 1; /* Go's is a float64: zeros never wrap it */
		bool pre = false, post = false, overflow = false;
		size_t ul, i;
		if (!(*s == '.' || (*s >= '0' && *s <= '9')))
			goto invalid;
		for (; *s >= '0' && *s <= '9'; s++) {
			pre = true;
			if (v > (UINT64_MAX >> 1) / 10) /* Go: leadingInt overflows at 1<<63 */
				goto invalid;
			v = v * 10 + (uint64_t)(*s - '0');
			if (v > (1ull << 63))
				goto invalid;
		}
		if (*s == '.') {
			s++;
			for (; *s >= '0' && *s <= '9'; s++) {
				post = true;
				if (overflow)
					continue;
				if (f > (UINT64_MAX >> 1) / 10) {
					overflow = true; /* Go drops digits past precision */
					continue;
				}
				f = f * 10 + (uint64_t)(*s - '0');
				scale *= 10;
			}
		}
		if (!pre && !post)
			goto invalid;
		for (ul = 0; s[ul] && s[ul] != '.' && !(s[ul] >= '0' && s[ul] <= '9'); ul++)
			;
		if (ul == 0) {
			snprintf(err, errlen, "time: missing unit in duration %s",
				 cf_quote(q, sizeof(q), orig));
			return -1;
		}
		for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
			if (strlen(units[i].unit) == ul && strncmp(units[i].unit, s, ul) == 0) {
				unit = units[i].ns;
				break;
			}
		}
		if (!unit) {
			char u[64], uq[140];
			snprintf(u, sizeof(u), "%.*s", (int)(ul < 60 ? ul : 60), s);
			snprintf(err, errlen, "time: unknown unit %s in duration %s",
				 cf_quote(uq, sizeof(uq), u), cf_quote(q, sizeof(q), orig));
			return -1;
		}
		s += ul;
		if (v > (1ull << 63) / unit)
			goto invalid;
		v *= unit;
		if (f > 0) {
			v += (uint64_t)((long double)f * (long double)unit / scale);
			if (v > (1ull << 63))
				goto invalid;
		}
		d += v;
		if (d > (1ull << 63))
			goto invalid;
	}
	if (neg) {
		*out = d == (1ull << 63) ? INT64_MIN : -(int64_t)d;
		return 0;
	}
	if (d > (uint64_t)INT64_MAX)
		goto invalid;
	*out = (int64_t)d;
	return 0;
invalid:
	snprintf(err, errlen, "time: invalid duration %s", cf_quote(q, sizeof(q), orig));
	return -1;
}

/* Nanoseconds to milliseconds, never rounding a positive value to 0. */
static int64_t cf_ns_to_ms(int64_t ns)
{
	int64_t ms = ns / CF_NS_PER_MS;
	if (ms == 0 && ns > 0)
		ms = 1;
	return ms;
}

/* --- URLs (Go's url.Parse + etcd's types.NewURLs) ---------------------------- */

static bool cf_scheme_char(int c, bool first)
{
	if (isalpha(c))
		return true;
	return !first && (isdigit(c) || c == '+' || c == '-' || c == '.');
}

static bool cf_host_ok(const char *h, size_t n)
{
	size_t i;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)h[i];
		if (!(isalnum(c) || c == '.' || c == '-' || c == '_' || c == '~' || c == '%'))
			return false;
	}
	return true;
}

/* One URL, already trimmed.  Fills out (strings malloc'd) when non-NULL. */
static int cf_url_parse(const char *in, struct config_url *out, char *err, size_t errlen)
{
	char q[600];
	const char *p, *auth, *auth_end, *host, *host_end, *port;
	size_t sl, i, hl;
	unsigned long portv = 0;

	/* Go's getScheme: letters first, then letters, digits, + - . up to ':' */
	for (sl = 0; in[sl] && cf_scheme_char((unsigned char)in[sl], sl == 0); sl++)
		;
	if (in[sl] != ':' || sl == 0) {
		if (sl == 0 && in[0] == ':') {
			snprintf(err, errlen, "parse %s: missing protocol scheme",
				 cf_quote(q, sizeof(q), in));
			return -1;
		}
		/* No scheme: a path.  Go refuses a colon in its first segment. */
		p = strchr(in, ':');
		if (p && !memchr(in, '/', (size_t)(p - in))) {
			snprintf(err, errlen, "parse %s: first path segment in URL cannot contain colon",
				 cf_quote(q, sizeof(q), in));
			return -1;
		}
		snprintf(err, errlen, "URL scheme must be http, https, unix, or unixs: %s", in);
		return -1;
	}
	{
		char scheme[16];
		if (sl >= sizeof(scheme)) {
			snprintf(err, errlen, "URL scheme must be http, https, unix, or unixs: %s", in);
			return -1;
		}
		for (i = 0; i < sl; i++)
			scheme[i] = (char)tolower((unsigned char)in[i]);
		scheme[sl] = '\0';
		if (strcmp(scheme, "http") && strcmp(scheme, "https") && strcmp(scheme, "unix") &&
		    strcmp(scheme, "unixs")) {
			snprintf(err, errlen, "URL scheme must be http, https, unix, or unixs: %s", in);
			return -1;
		}
		if (strcmp(scheme, "unix") == 0 || strcmp(scheme, "unixs") == 0) {
			snprintf(err, errlen, "unix sockets are not supported yet: %s", in);
			return -1;
		}
	}
	p = in + sl + 1;
	if (strncmp(p, "//", 2) != 0) {
		snprintf(err, errlen, "URL address does not have the form \"host:port\": %s", in);
		return -1;
	}
	auth = p + 2;
	auth_end = auth + strcspn(auth, "/?#");
	if (memchr(auth, '@', (size_t)(auth_end - auth))) {
		snprintf(err, errlen, "URL must not contain user information: %s", in);
		return -1;
	}
	if (*auth == '[') {
		host = auth + 1;
		host_end = memchr(host, ']', (size_t)(auth_end - host));
		if (!host_end || host_end[1] != ':') {
			snprintf(err, errlen, "URL address does not have the form \"host:port\": %s", in);
			return -1;
		}
		port = host_end + 2;
	} else {
		const char *c1 = memchr(auth, ':', (size_t)(auth_end - auth));
		if (!c1 || memchr(c1 + 1, ':', (size_t)(auth_end - c1 - 1))) {
			snprintf(err, errlen, "URL address does not have the form \"host:port\": %s", in);
			return -1;
		}
		host = auth;
		host_end = c1;
		port = c1 + 1;
	}
	hl = (size_t)(host_end - host);
	if (!cf_host_ok(host, hl) && !(*auth == '[' && hl > 0)) {
		snprintf(err, errlen, "URL address does not have the form \"host:port\": %s", in);
		return -1;
	}
	for (i = 0; port + i < auth_end; i++) {
		if (!isdigit((unsigned char)port[i])) {
			snprintf(err, errlen, "parse %s: invalid port \":%.*s\" after host",
				 cf_quote(q, sizeof(q), in), (int)(auth_end - port), port);
			return -1;
		}
		if (portv <= 65535)
			portv = portv * 10 + (unsigned long)(port[i] - '0');
	}
	if (i == 0 || portv == 0 || portv > 65535) {
		snprintf(err, errlen, "URL port must be 1-65535: %s", in);
		return -1;
	}
	if (*auth_end != '\0') {
		snprintf(err, errlen, "URL must not contain a path: %s", in);
		return -1;
	}
	if (out) {
		out->scheme = strndup(in, sl);
		out->host = strndup(host, hl);
		out->port = (uint16_t)portv;
		if (!out->scheme || !out->host) {
			config_url_close(out);
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		for (i = 0; i < sl; i++)
			out->scheme[i] = (char)tolower((unsigned char)out->scheme[i]);
	}
	return 0;
}

int config_url_parse(const char *url, struct config_url *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	return cf_url_parse(url, out, err, errlen);
}

void config_url_close(struct config_url *u)
{
	free(u->scheme);
	free(u->host);
	u->scheme = NULL;
	u->host = NULL;
}

/* The URL as Go's url.String() prints it: lower-case scheme, rest as given. */
static char *cf_url_normalize(const char *in)
{
	char *s = strdup(in);
	char *p;
	if (!s)
		return NULL;
	for (p = s; *p && *p != ':'; p++)
		*p = (char)tolower((unsigned char)*p);
	return s;
}

static int cf_strcmp_p(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void cf_strv_free(char **v, int n)
{
	int i;
	if (!v)
		return;
	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* types.NewURLs: split at ',', trim, check each, sort.  0 or -1 (err). */
static int cf_urls_parse(const char *list, char ***out, int *n_out, char *err, size_t errlen)
{
	char *copy = strdup(list), *save = NULL, *tok, *s;
	char **v = NULL;
	int n = 0, cap = 0;
	if (!copy) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	/* strtok would merge empty items, which Go keeps (and then rejects). */
	for (s = copy;; s = save + 1) {
		char *end;
		save = strchr(s, ',');
		if (save)
			*save = '\0';
		tok = s;
		while (isspace((unsigned char)*tok))
			tok++;
		end = tok + strlen(tok);
		while (end > tok && isspace((unsigned char)end[-1]))
			*--end = '\0';
		if (cf_url_parse(tok, NULL, err, errlen))
			goto fail;
		if (n == cap) {
			char **nv;
			cap = cap ? cap * 2 : 4;
			nv = realloc(v, (size_t)cap * sizeof(*v));
			if (!nv)
				goto nomem;
			v = nv;
		}
		v[n] = cf_url_normalize(tok);
		if (!v[n])
			goto nomem;
		n++;
		if (!save)
			break;
	}
	free(copy);
	qsort(v, (size_t)n, sizeof(*v), cf_strcmp_p);
	if (out) {
		*out = v;
		*n_out = n;
	} else {
		cf_strv_free(v, n);
	}
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
fail:
	cf_strv_free(v, n);
	free(copy);
	return -1;
}

/* --- checking one value against its flag's type --------------------------- */

/* 0, or -1 with the reason as Go's flag.Value.Set would word it. */
static int cf_check_value(const struct cf_def *d, const char *v, char *why, size_t whylen)
{
	uint64_t u;
	int64_t i;
	bool b;
	int rv;
	char q[300];
	switch (d->type) {
	case FT_STR:
	case FT_IGNORED:
		return 0;
	case FT_URLS:
		return cf_urls_parse(v, NULL, NULL, why, whylen);
	case FT_BOOL:
		if (cf_parse_bool(v, &b)) {
			snprintf(why, whylen, "parse error");
			return -1;
		}
		return 0;
	case FT_UINT:
	case FT_UINT64:
		rv = cf_parse_u64(v, &u);
		break;
	case FT_UINT32:
		rv = cf_parse_u64(v, &u);
		if (rv == 0 && u > UINT32_MAX)
			rv = -2;
		if (rv) {
			snprintf(why, whylen, "strconv.ParseUint: parsing %s: %s",
				 cf_quote(q, sizeof(q), v),
				 rv == -2 ? "value out of range" : "invalid syntax");
			return -1;
		}
		return 0;
	case FT_INT64:
		rv = cf_parse_i64(v, &i);
		break;
	case FT_DUR:
		if (cf_parse_duration(v, &i, why, whylen)) {
			snprintf(why, whylen, "parse error"); /* Go's flag hides the detail */
			return -1;
		}
		return 0;
	case FT_CHOICE:
		if (!cf_in_list(d->choices, v)) {
			snprintf(why, whylen, "invalid value");
			return -1;
		}
		return 0;
	default:
		return 0;
	}
	if (rv) {
		snprintf(why, whylen, rv == -2 ? "value out of range" : "parse error");
		return -1;
	}
	return 0;
}

/* The value in effect: the one given, else etcd's default. */
static const char *cf_value(const struct cf_state *st, const char *name)
{
	const struct cf_def *d = cf_def_named(name);
	const struct cf_val *v = &st->vals[cf_index(d)];
	return v->src != SRC_DEFAULT ? v->value : d->def;
}

static bool cf_is_set(const struct cf_state *st, const char *name)
{
	return st->vals[cf_index(cf_def_named(name))].src != SRC_DEFAULT;
}

/* Already checked by cf_check_value, so these cannot fail. */
static bool cf_bool(const struct cf_state *st, const char *name)
{
	bool b = false;
	cf_parse_bool(cf_value(st, name), &b);
	return b;
}

static uint64_t cf_u64(const struct cf_state *st, const char *name)
{
	uint64_t u = 0;
	cf_parse_u64(cf_value(st, name), &u);
	return u;
}

static int64_t cf_i64(const struct cf_state *st, const char *name)
{
	int64_t i = 0;
	cf_parse_i64(cf_value(st, name), &i);
	return i;
}

static int64_t cf_dur_ms(const struct cf_state *st, const char *name)
{
	char err[CF_ERR];
	int64_t ns = 0;
	cf_parse_duration(cf_value(st, name), &ns, err, sizeof(err));
	return cf_ns_to_ms(ns);
}

/* Same value, as the flag's type compares it ("0x10" == "16", "1m" == "60s"). */
static bool cf_same_value(const struct cf_def *d, const char *a, const char *b)
{
	char err[CF_ERR];
	switch (d->type) {
	case FT_BOOL: {
		bool x = false, y = false;
		return !cf_parse_bool(a, &x) && !cf_parse_bool(b, &y) && x == y;
	}
	case FT_UINT:
	case FT_UINT32:
	case FT_UINT64: {
		uint64_t x = 0, y = 0;
		return !cf_parse_u64(a, &x) && !cf_parse_u64(b, &y) && x == y;
	}
	case FT_INT64: {
		int64_t x = 0, y = 0;
		return !cf_parse_i64(a, &x) && !cf_parse_i64(b, &y) && x == y;
	}
	case FT_DUR: {
		int64_t x = 0, y = 0;
		return !cf_parse_duration(a, &x, err, sizeof(err)) &&
		       !cf_parse_duration(b, &y, err, sizeof(err)) && x == y;
	}
	default:
		return strcmp(a, b) == 0;
	}
}

static bool cf_value_allowed(const struct cf_def *d, const char *v)
{
	const char *p = d->only;
	for (;;) {
		const char *bar = strchr(p, '|');
		size_t l = bar ? (size_t)(bar - p) : strlen(p);
		char one[64];
		snprintf(one, sizeof(one), "%.*s", (int)l, p);
		if (cf_same_value(d, v, one))
			return true;
		if (!bar)
			return false;
		p = bar + 1;
	}
}

/* --- phase 1: the command line (Go's FlagSet.Parse) -------------------------- */

/* CONFIG_RUN, CONFIG_DONE (help) or CONFIG_EUSAGE; *first_arg is the index
 * of the first non-flag argument. */
static int cf_parse_args(struct cf_state *st, int argc, char **argv, int *first_arg)
{
	char why[CF_ERR], q[CF_ERR];
	int i;
	for (i = 1; i < argc; i++) {
		const char *s = argv[i], *name, *eq, *value;
		const struct cf_def *d;
		size_t len;
		if (strlen(s) < 2 || s[0] != '-')
			break;
		if (strcmp(s, "--") == 0) {
			i++;
			break;
		}
		name = s + (s[1] == '-' ? 2 : 1);
		if (*name == '\0' || *name == '-' || *name == '=') {
			cf_usage_error("bad flag syntax: %s", s);
			return CONFIG_EUSAGE;
		}
		eq = strchr(name + 1, '=');
		len = eq ? (size_t)(eq - name) : strlen(name);
		d = cf_find(name, len);
		if (!d) {
			if ((len == 4 && strncmp(name, "help", 4) == 0) ||
			    (len == 1 && name[0] == 'h')) {
				config_usage(stdout);
				return CONFIG_DONE;
			}
			cf_usage_error("flag provided but not defined: -%.*s", (int)len, name);
			return CONFIG_EUSAGE;
		}
		if (d->type == FT_BOOL || d->type == FT_IGNORED) {
			value = eq ? eq + 1 : "true";
			if (d->type == FT_BOOL && cf_check_value(d, value, why, sizeof(why))) {
				cf_usage_error("invalid boolean value %s for -%s: %s",
					       cf_quote(q, sizeof(q), value), d->name, why);
				return CONFIG_EUSAGE;
			}
			if (d->type == FT_IGNORED)
				cf_notice(st, true, "flag \"-%s\" is no longer supported - ignoring.",
					  d->name);
		} else {
			if (eq) {
				value = eq + 1;
			} else if (i + 1 < argc) {
				value = argv[++i];
			} else {
				cf_usage_error("flag needs an argument: -%s", d->name);
				return CONFIG_EUSAGE;
			}
			if (cf_check_value(d, value, why, sizeof(why))) {
				cf_usage_error("invalid value %s for flag -%s: %s",
					       cf_quote(q, sizeof(q), value), d->name, why);
				return CONFIG_EUSAGE;
			}
		}
		st->vals[cf_index(d)].value = value;
		st->vals[cf_index(d)].src = SRC_ARGS;
	}
	*first_arg = i;
	return CONFIG_RUN;
}

/* --- phase 2: the environment (pkg/flags.SetFlagsFromEnv) ------------------- */

static void cf_env_key(const struct cf_def *d, char *key, size_t size)
{
	size_t o, i;
	o = (size_t)snprintf(key, size, "ETCD_");
	for (i = 0; d->name[i] && o + 1 < size; i++)
		key[o++] = d->name[i] == '-' ? '_' : (char)toupper((unsigned char)d->name[i]);
	key[o] = '\0';
}

static int cf_parse_env(struct cf_state *st)
{
	char key[128], why[CF_ERR], q[CF_ERR], first_err[3 * CF_ERR] = "";
	bool used[CF_N] = {false};
	char **e;
	size_t i;

	for (i = 0; i < CF_N; i++) {
		const struct cf_def *d = &cf_defs[i];
		const char *v;
		if (st->vals[i].src == SRC_ARGS)
			continue;
		cf_env_key(d, key, sizeof(key));
		v = getenv(key);
		if (!v || !*v)
			continue;
		used[i] = true;
		if (cf_check_value(d, v, why, sizeof(why))) {
			if (!first_err[0])
				snprintf(first_err, sizeof(first_err), "invalid value %s for %s: %s",
					 cf_quote(q, sizeof(q), v), key, why);
			continue;
		}
		if (d->type == FT_IGNORED)
			cf_notice(st, true, "flag \"-%s\" is no longer supported - ignoring.", d->name);
		st->vals[i].value = v;
		st->vals[i].src = SRC_ENV;
		cf_notice(st, false, "recognized and used environment variable %s=%s", key, v);
	}

	for (e = environ; e && *e; e++) {
		const char *kv = *e, *eq = strchr(kv, '=');
		size_t kl = eq ? (size_t)(eq - kv) : strlen(kv);
		bool known = false;
		for (i = 0; i < CF_N; i++) {
			cf_env_key(&cf_defs[i], key, sizeof(key));
			if (strlen(key) != kl || strncmp(key, kv, kl) != 0)
				continue;
			known = true;
			if (used[i])
				break;
			if (st->vals[i].src == SRC_ARGS) {
				cf_error("conflicting environment variable \"%s\" is shadowed by "
					 "corresponding command-line flag (either unset environment "
					 "variable or disable flag)",
					 key);
				return CONFIG_EBAD;
			}
			break;
		}
		if (!known && kl > 5 && strncmp(kv, "ETCD_", 5) == 0)
			cf_notice(st, true, "unrecognized environment variable %s", kv);
	}
	if (first_err[0]) {
		cf_verify_error("%s", first_err);
		return CONFIG_EBAD;
	}
	return CONFIG_RUN;
}

/* --- phase 3: flags we cannot honour ---------------------------------------- */

static int cf_check_support(struct cf_state *st)
{
	size_t i;
	for (i = 0; i < CF_N; i++) {
		const struct cf_def *d = &cf_defs[i];
		const struct cf_val *v = &st->vals[i];
		if (v->src == SRC_DEFAULT)
			continue;
		if (d->support == FS_ONLY && !cf_value_allowed(d, v->value)) {
			if (strcmp(d->only, "false") == 0)
				cf_error("flag --%s is not supported yet (only --%s=false is accepted)",
					 d->name, d->name);
			else if (d->only[0] == '\0')
				cf_error("flag --%s is not supported yet (only an empty value is "
					 "accepted)",
					 d->name);
			else
				cf_error("flag --%s is not supported yet (accepted values: %s)",
					 d->name, d->only);
			return CONFIG_EBAD;
		}
		if (d->support == FS_WARN && !cf_same_value(d, v->value, d->def))
			cf_notice(st, true,
				  "--%s=%s is accepted for compatibility with etcd but has no "
				  "effect in raftkv",
				  d->name, v->value);
	}
	return CONFIG_RUN;
}

/* --- phase 4: building and validating struct config -------------------------- */

static int cf_set_str(char **dst, const char *v)
{
	*dst = strdup(v);
	if (!*dst) {
		cf_error("out of memory");
		return CONFIG_EBAD;
	}
	return CONFIG_RUN;
}

static int cf_set_urls(struct cf_state *st, const char *flag, char ***v, int *n)
{
	char err[CF_ERR];
	if (cf_urls_parse(cf_value(st, flag), v, n, err, sizeof(err))) {
		/* Only a default could get here (given values were checked). */
		cf_error("--%s: %s", flag, err);
		return CONFIG_EBAD;
	}
	return CONFIG_RUN;
}

/* checkBindURLs: a listener needs an IP (or "localhost"), not a name. */
static int cf_check_bind(char **urls, int n)
{
	int i;
	for (i = 0; i < n; i++) {
		struct config_url u;
		char err[CF_ERR];
		unsigned char buf[sizeof(struct in6_addr)];
		bool ok;
		if (config_url_parse(urls[i], &u, err, sizeof(err))) {
			cf_verify_error("%s", err);
			return CONFIG_EBAD;
		}
		ok = strcmp(u.host, "localhost") == 0 || inet_pton(AF_INET, u.host, buf) == 1 ||
		     inet_pton(AF_INET6, u.host, buf) == 1;
		config_url_close(&u);
		if (!ok) {
			cf_verify_error("expected IP in URL for binding (%s)", urls[i]);
			return CONFIG_EBAD;
		}
	}
	return CONFIG_RUN;
}

/* checkHostURLs, with etcd's wrapping message. */
static int cf_check_host(const char *flag, char **urls, int n)
{
	int i;
	for (i = 0; i < n; i++) {
		struct config_url u;
		char err[CF_ERR];
		bool empty;
		if (config_url_parse(urls[i], &u, err, sizeof(err))) {
			cf_verify_error("%s", err);
			return CONFIG_EBAD;
		}
		empty = u.host[0] == '\0';
		config_url_close(&u);
		if (empty) {
			char joined[CF_ERR] = "", q[CF_ERR + 8];
			int j;
			for (j = 0; j < n; j++) {
				if (j)
					strncat(joined, ",", sizeof(joined) - strlen(joined) - 1);
				strncat(joined, urls[j], sizeof(joined) - strlen(joined) - 1);
			}
			cf_verify_error("--%s %s must be \"host:port\" (unexpected empty host (%s))",
					flag, cf_quote(q, sizeof(q), joined), urls[i]);
			return CONFIG_EBAD;
		}
	}
	return CONFIG_RUN;
}

/* https needs the TLS flags, which we refuse; say so up front. */
static int cf_check_plain(const char *flag, char **urls, int n)
{
	int i;
	for (i = 0; i < n; i++) {
		if (strncmp(urls[i], "https:", 6) == 0) {
			cf_error("--%s=%s: TLS is not supported yet (use http:// URLs)", flag, urls[i]);
			return CONFIG_EBAD;
		}
	}
	return CONFIG_RUN;
}

static int cf_member_cmp(const void *a, const void *b)
{
	return strcmp(((const struct config_member *)a)->name,
		      ((const struct config_member *)b)->name);
}

/* Adds url (copied) to the member called name[0..nl), creating it. */
static int cf_cluster_add(struct config *cfg, const char *name, size_t nl, const char *url)
{
	struct config_member *m = NULL;
	char **pu;
	int i;
	for (i = 0; i < cfg->n_initial_cluster; i++) {
		if (strlen(cfg->initial_cluster[i].name) == nl &&
		    strncmp(cfg->initial_cluster[i].name, name, nl) == 0) {
			m = &cfg->initial_cluster[i];
			break;
		}
	}
	if (!m) {
		struct config_member *nm =
			realloc(cfg->initial_cluster,
				(size_t)(cfg->n_initial_cluster + 1) * sizeof(*nm));
		if (!nm)
			return -1;
		cfg->initial_cluster = nm;
		m = &nm[cfg->n_initial_cluster];
		memset(m, 0, sizeof(*m));
		m->name = strndup(name, nl);
		if (!m->name)
			return -1;
		cfg->n_initial_cluster++;
	}
	pu = realloc(m->peer_urls, (size_t)(m->n_peer_urls + 1) * sizeof(*pu));
	if (!pu)
		return -1;
	m->peer_urls = pu;
	pu[m->n_peer_urls] = cf_url_normalize(url);
	if (!pu[m->n_peer_urls])
		return -1;
	m->n_peer_urls++;
	return 0;
}

/* types.NewURLsMap: "name=url,name=url"; a name given twice gets two URLs;
 * an item without '=' is a name with an empty (invalid) URL.  The name may
 * be empty: `etcdctl member add` prints "=url" for each member that has not
 * started yet (it has no name until it publishes one), and etcd 3.4 takes
 * such a line in both cluster states.  Like any name, "" given twice is one
 * member with two URLs, as in etcd's map. */
static int cf_parse_cluster(struct config *cfg, const char *s)
{
	char err[CF_ERR];
	char *copy = strdup(s), *item, *next;
	int i;
	if (!copy)
		goto nomem;
	for (item = copy; item; item = next) {
		char *eq, *url, *end;
		next = strchr(item, ',');
		if (next)
			*next++ = '\0';
		if (*item == '\0')
			continue;
		eq = strchr(item, '=');
		url = eq ? eq + 1 : item + strlen(item);
		while (isspace((unsigned char)*url))
			url++;
		end = url + strlen(url);
		while (end > url && isspace((unsigned char)end[-1]))
			*--end = '\0';
		if (cf_url_parse(url, NULL, err, sizeof(err))) {
			cf_error("error setting up initial cluster: %s", err);
			free(copy);
			return CONFIG_EBAD;
		}
		if (!eq) { /* cf_url_parse refused the empty URL already */
			cf_error("error setting up initial cluster: %s has no URL", item);
			free(copy);
			return CONFIG_EBAD;
		}
		if (cf_cluster_add(cfg, item, (size_t)(eq - item), url))
			goto nomem;
	}
	free(copy);
	for (i = 0; i < cfg->n_initial_cluster; i++)
		qsort(cfg->initial_cluster[i].peer_urls, (size_t)cfg->initial_cluster[i].n_peer_urls,
		      sizeof(char *), cf_strcmp_p);
	if (cfg->n_initial_cluster > 0)
		qsort(cfg->initial_cluster, (size_t)cfg->n_initial_cluster,
		      sizeof(*cfg->initial_cluster), cf_member_cmp);
	return CONFIG_RUN;
nomem:
	free(copy);
	cf_error("out of memory");
	return CONFIG_EBAD;
}

/* "<name>=<url>" for each --initial-advertise-peer-urls (etcd's
 * InitialClusterFromName), used when --initial-cluster is not given. */
static int cf_default_cluster(struct config *cfg)
{
	int i;
	for (i = 0; i < cfg->n_initial_advertise_peer_urls; i++) {
		if (cf_cluster_add(cfg, cfg->name, strlen(cfg->name),
				   cfg->initial_advertise_peer_urls[i])) {
			cf_error("out of memory");
			return CONFIG_EBAD;
		}
	}
	return CONFIG_RUN;
}

static int cf_check_cluster_tls(const struct config *cfg)
{
	int i, j;
	for (i = 0; i < cfg->n_initial_cluster; i++)
		for (j = 0; j < cfg->initial_cluster[i].n_peer_urls; j++)
			if (strncmp(cfg->initial_cluster[i].peer_urls[j], "https:", 6) == 0) {
				cf_error("--initial-cluster %s=%s: TLS is not supported yet "
					 "(use http:// URLs)",
					 cfg->initial_cluster[i].name,
					 cfg->initial_cluster[i].peer_urls[j]);
				return CONFIG_EBAD;
			}
	return CONFIG_RUN;
}

/* etcd's parseCompactionRetention: an integer is hours (periodic) or a
 * revision count; otherwise a Go duration (periodic only: etcd would read
 * "1h" as 3600000000000 revisions, which we refuse instead). */
static int cf_compaction(struct cf_state *st)
{
	struct config *cfg = st->cfg;
	const char *mode = cf_value(st, "auto-compaction-mode");
	const char *ret = cf_value(st, "auto-compaction-retention");
	char err[CF_ERR];
	int64_t n, ns;
	bool is_int;

	if (strcmp(mode, "periodic") == 0 || mode[0] == '\0') {
		cfg->auto_compaction_mode = COMPACTION_PERIODIC;
	} else if (strcmp(mode, "revision") == 0) {
		cfg->auto_compaction_mode = COMPACTION_REVISION;
	} else {
		char q[CF_ERR];
		cf_verify_error("unknown auto-compaction-mode %s", cf_quote(q, sizeof(q), mode));
		return CONFIG_EBAD;
	}
	if (cf_set_str(&cfg->auto_compaction_retention, ret))
		return CONFIG_EBAD;

	/* strconv.Atoi: an optional sign and decimal digits, nothing else. */
	{
		const char *p = ret + (*ret == '+' || *ret == '-');
		is_int = *p != '\0' && strspn(p, "0123456789") == strlen(p);
		if (is_int) {
			errno = 0;
			n = strtoll(ret, NULL, 10);
			is_int = errno == 0;
		}
	}
	if (is_int && n >= 0) {
		if (cfg->auto_compaction_mode == COMPACTION_REVISION) {
			cfg->auto_compaction_retention_revs = n;
		} else {
			if (n > INT64_MAX / 3600000) {
				cf_error("error parsing CompactionRetention: %s hours is too long", ret);
				return CONFIG_EBAD;
			}
			cfg->auto_compaction_retention_ms = n * 3600000;
		}
		return CONFIG_RUN;
	}
	if (cf_parse_duration(ret, &ns, err, sizeof(err))) {
		cf_error("error parsing CompactionRetention: %s", err);
		return CONFIG_EBAD;
	}
	if (cfg->auto_compaction_mode == COMPACTION_REVISION) {
		cf_error("error parsing CompactionRetention: --auto-compaction-mode=revision needs "
			 "a number of revisions, not \"%s\"",
			 ret);
		return CONFIG_EBAD;
	}
	if (ns < 0) {
		cf_error("error parsing CompactionRetention: negative duration \"%s\"", ret);
		return CONFIG_EBAD;
	}
	cfg->auto_compaction_retention_ms = cf_ns_to_ms(ns);
	return CONFIG_RUN;
}

static int cf_check_uint32(struct cf_state *st, const char *flag, unsigned *out)
{
	uint64_t v = cf_u64(st, flag);
	if (v > UINT_MAX) {
		cf_verify_error("--%s=%s is too large (at most %u)", flag, cf_value(st, flag),
				UINT_MAX);
		return CONFIG_EBAD;
	}
	*out = (unsigned)v;
	return CONFIG_RUN;
}

static const char *const cf_log_levels[] = {"debug", "info", "warn", "error", "dpanic", "panic",
					    "fatal"};

static int cf_build(struct cf_state *st)
{
	struct config *cfg = st->cfg;
	const char *level;
	size_t i;
	uint64_t tick, elect;

	if (cf_set_str(&cfg->name, cf_value(st, "name")))
		return CONFIG_EBAD;
	if (cf_value(st, "data-dir")[0]) {
		if (cf_set_str(&cfg->data_dir, cf_value(st, "data-dir")))
			return CONFIG_EBAD;
	} else if (asprintf(&cfg->data_dir, "%s.raftkv", cfg->name) < 0) {
		cfg->data_dir = NULL;
		cf_error("out of memory");
		return CONFIG_EBAD;
	}
	if (cf_set_str(&cfg->initial_cluster_token, cf_value(st, "initial-cluster-token")))
		return CONFIG_EBAD;
	cfg->initial_cluster_new = strcmp(cf_value(st, "initial-cluster-state"), "new") == 0;

	/* Log level first, as etcd's Validate sets logging up first. */
	level = cf_bool(st, "debug") ? "debug" : cf_value(st, "log-level");
	for (i = 0; i < sizeof(cf_log_levels) / sizeof(cf_log_levels[0]); i++)
		if (strcmp(level, cf_log_levels[i]) == 0)
			break;
	if (i == sizeof(cf_log_levels) / sizeof(cf_log_levels[0])) {
		char q[CF_ERR];
		cf_verify_error("unknown log level %s (only debug, info, warn, error, panic, or "
				"fatal)",
				cf_quote(q, sizeof(q), level));
		return CONFIG_EBAD;
	}
	if (cf_set_str(&cfg->log_level, level))
		return CONFIG_EBAD;

	if (cf_set_urls(st, "listen-peer-urls", &cfg->listen_peer_urls, &cfg->n_listen_peer_urls) ||
	    cf_set_urls(st, "listen-client-urls", &cfg->listen_client_urls,
			&cfg->n_listen_client_urls) ||
	    cf_set_urls(st, "initial-advertise-peer-urls", &cfg->initial_advertise_peer_urls,
			&cfg->n_initial_advertise_peer_urls))
		return CONFIG_EBAD;
	/* etcd drops the default advertise URL once listen-client-urls is set:
	 * advertising localhost for a member listening elsewhere would be wrong. */
	if (cf_is_set(st, "advertise-client-urls") || !cf_is_set(st, "listen-client-urls")) {
		if (cf_set_urls(st, "advertise-client-urls", &cfg->advertise_client_urls,
				&cfg->n_advertise_client_urls))
			return CONFIG_EBAD;
	}

	if (cf_check_bind(cfg->listen_peer_urls, cfg->n_listen_peer_urls) ||
	    cf_check_bind(cfg->listen_client_urls, cfg->n_listen_client_urls) ||
	    cf_check_host("initial-advertise-peer-urls", cfg->initial_advertise_peer_urls,
			  cfg->n_initial_advertise_peer_urls) ||
	    cf_check_host("advertise-client-urls", cfg->advertise_client_urls,
			  cfg->n_advertise_client_urls))
		return CONFIG_EBAD;

	tick = cf_u64(st, "heartbeat-interval");
	elect = cf_u64(st, "election-timeout");
	if (tick == 0) {
		cf_verify_error("--heartbeat-interval must be >0 (set to %" PRIu64 "ms)", tick);
		return CONFIG_EBAD;
	}
	if (elect == 0) {
		cf_verify_error("--election-timeout must be >0 (set to %" PRIu64 "ms)", elect);
		return CONFIG_EBAD;
	}
	if (tick > elect / 5) { /* 5 * tick > elect, without overflow */
		cf_verify_error("--election-timeout[%" PRIu64 "ms] should be at least as 5 times as "
				"--heartbeat-interval[%" PRIu64 "ms]",
				elect, tick);
		return CONFIG_EBAD;
	}
	if (elect > CF_MAX_ELECTION_MS) {
		cf_verify_error("--election-timeout[%" PRIu64 "ms] is too long, and should be set "
				"less than %ums",
				elect, CF_MAX_ELECTION_MS);
		return CONFIG_EBAD;
	}
	cfg->heartbeat_ms = (unsigned)tick;
	cfg->election_ms = (unsigned)elect;

	if (cf_is_set(st, "listen-client-urls") && cfg->n_advertise_client_urls == 0) {
		cf_verify_error("--advertise-client-urls is required when --listen-client-urls is "
				"set explicitly");
		fputs("raftkv: When listening on specific address(es), this raftkv process must "
		      "advertise accessible url(s) to each connected client.\n",
		      stderr);
		return CONFIG_EBAD;
	}
	if (cf_compaction(st))
		return CONFIG_EBAD;

	cfg->snapshot_count = cf_u64(st, "snapshot-count");
	if (cfg->snapshot_count == 0) {
		cfg->snapshot_count = 100000;
		cf_notice(st, false, "set snapshot count to default 100000");
	}
	cfg->quota_backend_bytes = cf_i64(st, "quota-backend-bytes");
	if (cfg->quota_backend_bytes > CF_MAX_QUOTA_RECOMMENDED)
		cf_notice(st, true, "backend quota %" PRId64 " exceeds maximum recommended quota %lld",
			  cfg->quota_backend_bytes, CF_MAX_QUOTA_RECOMMENDED);
	if (cf_check_uint32(st, "max-txn-ops", &cfg->max_txn_ops) ||
	    cf_check_uint32(st, "max-request-bytes", &cfg->max_request_bytes))
		return CONFIG_EBAD;
	if (cfg->max_request_bytes > CF_MAX_REQUEST_RECOMMENDED)
		cf_notice(st, true, "MaxRequestBytes %u exceeds maximum recommended size %u",
			  cfg->max_request_bytes, CF_MAX_REQUEST_RECOMMENDED);

	cfg->pre_vote = cf_bool(st, "pre-vote");
	cfg->strict_reconfig_check = cf_bool(st, "strict-reconfig-check");
	cfg->enable_grpc_gateway = cf_bool(st, "enable-grpc-gateway");
	cfg->max_concurrent_streams = (uint32_t)cf_u64(st, "max-concurrent-streams");
	cfg->grpc_keepalive_min_time_ms = cf_dur_ms(st, "grpc-keepalive-min-time");
	cfg->grpc_keepalive_interval_ms = cf_dur_ms(st, "grpc-keepalive-interval");
	cfg->grpc_keepalive_timeout_ms = cf_dur_ms(st, "grpc-keepalive-timeout");
	cfg->watch_progress_notify_ms = cf_dur_ms(st, "experimental-watch-progress-notify-interval");
	cfg->warning_apply_ms = cf_dur_ms(st, "experimental-warning-apply-duration");

	/* TLS, then the cluster: etcd fails on these when it starts serving. */
	if (cf_check_plain("listen-client-urls", cfg->listen_client_urls,
			   cfg->n_listen_client_urls) ||
	    cf_check_plain("advertise-client-urls", cfg->advertise_client_urls,
			   cfg->n_advertise_client_urls) ||
	    cf_check_plain("listen-peer-urls", cfg->listen_peer_urls, cfg->n_listen_peer_urls) ||
	    cf_check_plain("initial-advertise-peer-urls", cfg->initial_advertise_peer_urls,
			   cfg->n_initial_advertise_peer_urls))
		return CONFIG_EBAD;
	if (cf_is_set(st, "initial-cluster")) {
		if (cf_parse_cluster(cfg, cf_value(st, "initial-cluster")))
			return CONFIG_EBAD;
	} else if (cf_default_cluster(cfg)) {
		return CONFIG_EBAD;
	}
	if (cf_check_cluster_tls(cfg))
		return CONFIG_EBAD;
	if (st->failed_notice) {
		cf_error("out of memory");
		return CONFIG_EBAD;
	}
	return CONFIG_RUN;
}

int config_parse(struct config *cfg, int argc, char **argv)
{
	struct cf_state *st;
	int rv, first_arg = argc;

	memset(cfg, 0, sizeof(*cfg));
	st = calloc(1, sizeof(*st));
	if (!st) {
		cf_error("out of memory");
		return CONFIG_EBAD;
	}
	st->cfg = cfg;

	rv = cf_parse_args(st, argc, argv, &first_arg);
	if (rv != CONFIG_RUN)
		goto out;
	if (first_arg < argc) {
		const char *a = argv[first_arg];
		if (first_arg == 1 && (strcmp(a, "gateway") == 0 || strcmp(a, "grpc-proxy") == 0))
			cf_error("'etcd %s' is not supported: raftkv only runs a member", a);
		else
			cf_verify_error("'%s' is not a valid flag", a);
		rv = CONFIG_EBAD;
		goto out;
	}
	if (cf_bool(st, "version")) {
		rv = CONFIG_VERSION;
		goto out;
	}
	/* etcd ignores flags and environment with a config file; we do not
	 * read one, so refuse it before anything else could confuse. */
	if (cf_value(st, "config-file")[0]) {
		cf_error("flag --config-file is not supported yet (use flags or ETCD_* "
			 "variables)");
		rv = CONFIG_EBAD;
		goto out;
	}
	rv = cf_parse_env(st);
	if (rv != CONFIG_RUN)
		goto out;
	rv = cf_check_support(st);
	if (rv != CONFIG_RUN)
		goto out;
	rv = cf_build(st);
out:
	free(st);
	return rv;
}

void config_close(struct config *cfg)
{
	int i;
	free(cfg->name);
	free(cfg->data_dir);
	cf_strv_free(cfg->listen_client_urls, cfg->n_listen_client_urls);
	cf_strv_free(cfg->advertise_client_urls, cfg->n_advertise_client_urls);
	cf_strv_free(cfg->listen_peer_urls, cfg->n_listen_peer_urls);
	cf_strv_free(cfg->initial_advertise_peer_urls, cfg->n_initial_advertise_peer_urls);
	for (i = 0; i < cfg->n_initial_cluster; i++) {
		free(cfg->initial_cluster[i].name);
		cf_strv_free(cfg->initial_cluster[i].peer_urls, cfg->initial_cluster[i].n_peer_urls);
	}
	free(cfg->initial_cluster);
	free(cfg->initial_cluster_token);
	free(cfg->auto_compaction_retention);
	free(cfg->log_level);
	for (i = 0; i < cfg->n_notices; i++)
		free(cfg->notices[i].text);
	free(cfg->notices);
	memset(cfg, 0, sizeof(*cfg));
}

/* --- bootstrap checks (etcdserver's VerifyBootstrap) ------------------------- */

/* A URL with its host resolved to an address, as netutil.resolveTCPAddrs
 * does before comparing; the URL unchanged when it does not resolve. */
static void cf_resolve(const char *url, char *out, size_t outlen)
{
	struct config_url u;
	struct addrinfo hints, *res = NULL;
	char err[CF_ERR], addr[INET6_ADDRSTRLEN];
	snprintf(out, outlen, "%s", url);
	if (config_url_parse(url, &u, err, sizeof(err)))
		return;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_INET; /* Go's "tcp" resolution prefers IPv4 */
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(u.host, NULL, &hints, &res) != 0) {
		hints.ai_family = AF_UNSPEC;
		res = NULL;
		if (getaddrinfo(u.host, NULL, &hints, &res) != 0)
			res = NULL;
	}
	if (res) {
		const void *a = res->ai_family == AF_INET
					? (const void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr
					: (const void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr;
		if (inet_ntop(res->ai_family, a, addr, sizeof(addr)))
			snprintf(out, outlen, res->ai_family == AF_INET6 ? "%s://[%s]:%u" : "%s://%s:%u",
				 u.scheme, addr, (unsigned)u.port);
		freeaddrinfo(res);
	}
	config_url_close(&u);
}

/* Go's %q of a []string: ["a" "b"]. */
static void cf_quote_list(char *buf, size_t size, char **v, int n)
{
	char q[CF_ERR];
	int i;
	snprintf(buf, size, "[");
	for (i = 0; i < n; i++) {
		if (i)
			strncat(buf, " ", size - strlen(buf) - 1);
		strncat(buf, cf_quote(q, sizeof(q), v[i]), size - strlen(buf) - 1);
	}
	strncat(buf, "]", size - strlen(buf) - 1);
}

static bool cf_strv_has(char **v, int n, const char *s)
{
	int i;
	for (i = 0; i < n; i++)
		if (strcmp(v[i], s) == 0)
			return true;
	return false;
}

/* netutil.URLStringsEqual on sorted lists: true, or false with why. */
static bool cf_urls_equal(char **a, int na, char **b, int nb, char *why, size_t whylen)
{
	char la[CF_ERR], lb[CF_ERR];
	int i;
	if (na != nb) {
		cf_quote_list(la, sizeof(la), a, na);
		cf_quote_list(lb, sizeof(lb), b, nb);
		snprintf(why, whylen, "len(%s) != len(%s)", la, lb);
		return false;
	}
	for (i = 0; i < na; i++) {
		char ra[600], rb[600], qa[700], qb[700];
		if (strcmp(a[i], b[i]) == 0)
			continue;
		cf_resolve(a[i], ra, sizeof(ra));
		cf_resolve(b[i], rb, sizeof(rb));
		if (strcmp(ra, rb) != 0) {
			snprintf(why, whylen, "resolved urls: %s != %s", cf_quote(qa, sizeof(qa), ra),
				 cf_quote(qb, sizeof(qb), rb));
			return false;
		}
	}
	return true;
}

static void cf_join(char *buf, size_t size, const char *prefix, char **v, int n)
{
	int i;
	buf[0] = '\0';
	for (i = 0; i < n; i++) {
		if (i)
			strncat(buf, ",", size - strlen(buf) - 1);
		strncat(buf, prefix, size - strlen(buf) - 1);
		strncat(buf, v[i], size - strlen(buf) - 1);
	}
}

static int cf_advertise_matches(const struct config *cfg, const struct config_member *self,
				char *err, size_t errlen)
{
	char why[3 * CF_ERR], prefix[300], ap[CF_ERR], umap[CF_ERR];
	char **ia = cfg->initial_advertise_peer_urls;
	int nia = cfg->n_initial_advertise_peer_urls, i;

	if (cf_urls_equal(ia, nia, self->peer_urls, self->n_peer_urls, why, sizeof(why)))
		return 0;
	snprintf(prefix, sizeof(prefix), "%s=", cfg->name);
	cf_join(ap, sizeof(ap), "", ia, nia);
	cf_join(umap, sizeof(umap), prefix, ia, nia);
	for (i = 0; i < self->n_peer_urls; i++) {
		if (!cf_strv_has(ia, nia, self->peer_urls[i])) {
			snprintf(err, errlen,
				 "--initial-cluster has %s=%s but missing from "
				 "--initial-advertise-peer-urls=%s (%s)",
				 cfg->name, self->peer_urls[i], ap, why);
			return -1;
		}
	}
	for (i = 0; i < nia; i++) {
		if (!cf_strv_has(self->peer_urls, self->n_peer_urls, ia[i])) {
			snprintf(err, errlen,
				 "--initial-advertise-peer-urls has %s but missing from "
				 "--initial-cluster=%s",
				 ia[i], umap);
			return -1;
		}
	}
	snprintf(err, errlen, "failed to resolve %s to match --initial-cluster=%s (%s)", ap, umap,
		 why);
	return -1;
}

/* URLsMap.String(): every name=url pair, sorted. */
static void cf_cluster_string(const struct config *cfg, char *all, size_t size)
{
	int i, j;
	all[0] = '\0';
	for (i = 0; i < cfg->n_initial_cluster; i++) {
		const struct config_member *m = &cfg->initial_cluster[i];
		for (j = 0; j < m->n_peer_urls; j++) {
			if (all[0])
				strncat(all, ",", size - strlen(all) - 1);
			strncat(all, m->name, size - strlen(all) - 1);
			strncat(all, "=", size - strlen(all) - 1);
			strncat(all, m->peer_urls[j], size - strlen(all) - 1);
		}
	}
}

int config_verify_bootstrap(const struct config *cfg, char *err, size_t errlen)
{
	const struct config_member *self = NULL;
	char all[CF_ERR];
	int i, j, k, l;

	for (i = 0; i < cfg->n_initial_cluster; i++)
		if (strcmp(cfg->initial_cluster[i].name, cfg->name) == 0)
			self = &cfg->initial_cluster[i];
	if (!self) {
		snprintf(err, errlen,
			 "couldn't find local name \"%s\" in the initial cluster configuration",
			 cfg->name);
		return -1;
	}
	if (cfg->initial_cluster_new && cf_advertise_matches(cfg, self, err, errlen))
		return -1;
	for (i = 0; i < cfg->n_initial_cluster; i++) {
		const struct config_member *a = &cfg->initial_cluster[i];
		for (j = 0; j < a->n_peer_urls; j++) {
			for (k = i; k < cfg->n_initial_cluster; k++) {
				const struct config_member *b = &cfg->initial_cluster[k];
				for (l = k == i ? j + 1 : 0; l < b->n_peer_urls; l++) {
					if (strcmp(a->peer_urls[j], b->peer_urls[l]) == 0)
						goto dup;
				}
			}
		}
	}
	return 0;
dup:
	cf_cluster_string(cfg, all, sizeof(all));
	snprintf(err, errlen, "initial cluster %s has duplicate url", all);
	return -1;
}

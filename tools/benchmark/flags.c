/*
 * flags: the command line of raftkv-benchmark, as etcd's (cobra/pflag)
 * spells it: --name=value or --name value, bare --name for booleans, Go
 * durations ("500ms", "2s", "1m30s").  Tables of struct flag say what
 * each flag is and where its value goes; main.c walks argv with them.
 */
#include "bench.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static const struct flag *flags_find(const struct flag *const *tables, size_t n_tables,
				     const char *name, size_t len)
{
	for (size_t t = 0; t < n_tables; t++)
		for (const struct flag *f = tables[t]; f && f->name; f++)
			if (strlen(f->name) == len && memcmp(f->name, name, len) == 0)
				return f;
	return NULL;
}

static int flags_parse_int(const struct flag *f, const char *s, char *err, size_t errlen)
{
	long long v;
	char *end;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s || *end) {
		snprintf(err, errlen, "--%s: %s is not a number", f->name, s);
		return -1;
	}
	if (v < f->min || v > f->max) {
		snprintf(err, errlen, "--%s: %lld is outside %" PRId64 "..%" PRId64, f->name, v,
			 f->min, f->max);
		return -1;
	}
	*(int64_t *)f->ptr = v;
	return 0;
}

/* Go's time.ParseDuration, for non-negative values, to milliseconds
 * (anything below a millisecond rounds up to one). */
static int flags_parse_duration(const struct flag *f, const char *s, char *err, size_t errlen)
{
	static const struct {
		const char *unit;
		double ms;
	} units[] = {{"ns", 1e-6}, {"us", 1e-3}, {"µs", 1e-3}, {"ms", 1}, {"s", 1e3},
		     {"m", 60e3}, {"h", 3600e3}};
	const char *p = s;
	double total = 0;

	if (strcmp(s, "0") == 0) {
		*(uint64_t *)f->ptr = 0;
		return 0;
	}
	while (*p) {
		char *end;
		double v, ms = 0;
		size_t best = 0, k;

		if (!isdigit((unsigned char)*p) && *p != '.')
			goto bad;
		v = strtod(p, &end);
		if (end == p)
			goto bad;
		p = end;
		/* The longest unit that matches: "ms" rather than "m". */
		for (k = 0; k < sizeof(units) / sizeof(units[0]); k++) {
			size_t ul = strlen(units[k].unit);

			if (ul > best && strncmp(p, units[k].unit, ul) == 0) {
				best = ul;
				ms = units[k].ms;
			}
		}
		if (!best)
			goto bad;
		total += v * ms;
		p += best;
	}
	if (total > 1e15)
		goto bad;
	*(uint64_t *)f->ptr = total > 0 && total < 1 ? 1 : (uint64_t)(total + 0.5);
	return 0;
bad:
	snprintf(err, errlen, "--%s: %s is not a duration (e.g. 500ms, 2s, 1m)", f->name, s);
	return -1;
}

static int flags_parse_bool(const struct flag *f, const char *s, char *err, size_t errlen)
{
	if (!s || strcmp(s, "true") == 0 || strcmp(s, "1") == 0) {
		*(bool *)f->ptr = true;
		return 0;
	}
	if (strcmp(s, "false") == 0 || strcmp(s, "0") == 0) {
		*(bool *)f->ptr = false;
		return 0;
	}
	snprintf(err, errlen, "--%s: %s is not true or false", f->name, s);
	return -1;
}

int flags_parse_one(const struct flag *const *tables, size_t n_tables, int argc, char **argv,
		    int *i, char *err, size_t errlen)
{
	const char *arg = argv[*i], *name = arg + 2, *eq = strchr(name, '='), *val;
	const struct flag *f;

	f = flags_find(tables, n_tables, name, eq ? (size_t)(eq - name) : strlen(name));
	if (!f) {
		snprintf(err, errlen, "unknown flag: %.*s", eq ? (int)(eq - arg) : (int)strlen(arg),
			 arg);
		return -1;
	}
	if (eq) {
		val = eq + 1;
	} else if (f->type == FLAG_BOOL) {
		val = NULL;
	} else {
		if (*i + 1 >= argc) {
			snprintf(err, errlen, "flag needs an argument: --%s", f->name);
			return -1;
		}
		val = argv[++*i];
	}
	switch (f->type) {
	case FLAG_BOOL:
		return flags_parse_bool(f, val, err, errlen);
	case FLAG_INT:
		return flags_parse_int(f, val, err, errlen);
	case FLAG_STRING:
		*(const char **)f->ptr = val;
		return 0;
	case FLAG_DURATION:
		return flags_parse_duration(f, val, err, errlen);
	}
	return -1;
}

void flags_usage(FILE *out, const struct flag *table)
{
	for (const struct flag *f = table; f && f->name; f++) {
		char left[64];

		switch (f->type) {
		case FLAG_BOOL:
			snprintf(left, sizeof(left), "--%s", f->name);
			break;
		case FLAG_INT:
			snprintf(left, sizeof(left), "--%s N", f->name);
			break;
		case FLAG_DURATION:
			snprintf(left, sizeof(left), "--%s DURATION", f->name);
			break;
		case FLAG_STRING:
			snprintf(left, sizeof(left), "--%s S", f->name);
			break;
		}
		fprintf(out, "  %-28s %s\n", left, f->help);
	}
}

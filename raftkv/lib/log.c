/* log: see log.h.  Lines carry a UTC timestamp with milliseconds. */
#include "lib/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

enum log_level log_threshold = LOG_INFO;

static const char *const log_names[] = {"debug", "info", "warn", "error", "fatal"};

int log_level_parse(const char *name, enum log_level *out)
{
	size_t i;
	for (i = 0; i < sizeof(log_names) / sizeof(log_names[0]); i++) {
		if (strcmp(name, log_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	if (strcmp(name, "panic") == 0 || strcmp(name, "dpanic") == 0) {
		*out = LOG_FATAL;
		return 0;
	}
	return -1;
}

void log_write(enum log_level lvl, const char *func, const char *fmt, ...)
{
	struct timeval tv;
	struct tm tm;
	char ts[32];
	va_list ap;
	if (lvl < log_threshold)
		return;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	flockfile(stderr);
	fprintf(stderr, "%s.%03dZ %-5s %s: ", ts, (int)(tv.tv_usec / 1000), log_names[lvl], func);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	funlockfile(stderr);
}

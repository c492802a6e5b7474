/*
 * log: leveled logging to stderr in etcd's JSON-ish line format is not
 * needed; one plain line per event, with level and the calling function.
 */
#ifndef RAFTKV_LOG_H
#define RAFTKV_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_FATAL };

extern enum log_level log_threshold;

/* Parses etcd's --log-level names (debug, info, warn, error, panic, fatal). */
int log_level_parse(const char *name, enum log_level *out);
void log_write(enum log_level lvl, const char *func, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define LOGD(...) do { if (log_threshold <= LOG_DEBUG) log_write(LOG_DEBUG, __func__, __VA_ARGS__); } while (0)
#define LOGI(...) log_write(LOG_INFO, __func__, __VA_ARGS__)
#define LOGW(...) log_write(LOG_WARN, __func__, __VA_ARGS__)
#define LOGE(...) log_write(LOG_ERROR, __func__, __VA_ARGS__)

#endif

/*
 * fuzz_config: etcd's flags and ETCD_* environment variables as config.c
 * parses them (Go flag syntax, every flag's value parser: URLs and URL
 * lists, --initial-cluster, durations, sizes, booleans, enums), then the
 * bootstrap checks a new member makes (config_verify_bootstrap), then
 * config_close.  raftkv has no --config-file (it refuses the flag), so
 * there is no YAML to fuzz.
 *
 * Input: NUL-separated strings.  One of the form ETCD_NAME=value goes to
 * the environment, any other is the next command-line argument.  Host
 * names resolve only as numeric addresses and "localhost" here: this
 * target defines getaddrinfo over libc's with AI_NUMERICHOST for every
 * other name, so no input waits on DNS.  Seeds are command lines from the
 * integration tests and README.
 */
#include <dlfcn.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_ARGS 256

typedef int (*fuzz_gai_fn)(const char *, const char *, const struct addrinfo *,
			   struct addrinfo **);

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		struct addrinfo **res)
{
	static fuzz_gai_fn real;
	struct addrinfo h;

	if (!real)
		real = (fuzz_gai_fn)dlsym(RTLD_NEXT, "getaddrinfo");
	if (!real)
		return EAI_FAIL;
	if (hints)
		h = *hints;
	else
		memset(&h, 0, sizeof(h));
	if (!node || strcmp(node, "localhost") != 0)
		h.ai_flags |= AI_NUMERICHOST;
	else
		node = "127.0.0.1";
	return real(node, service, &h, res);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char *argv[FUZZ_MAX_ARGS + 2];
	struct config cfg;
	char err[2048];
	char *copy, *p, *end;
	int argc = 0;

	copy = malloc(size + 1);
	if (!copy)
		abort();
	memcpy(copy, data, size);
	copy[size] = '\0';
	clearenv();
	argv[argc++] = "raftkv";
	for (p = copy, end = copy + size; p <= end && argc <= FUZZ_MAX_ARGS; p += strlen(p) + 1) {
		char *eq = strchr(p, '=');
		if (strncmp(p, "ETCD_", 5) == 0 && eq) {
			*eq = '\0';
			setenv(p, eq + 1, 1);
			*eq = '=';
		} else if (*p || p < end) {
			argv[argc++] = p;
		}
	}
	argv[argc] = NULL;
	if (config_parse(&cfg, argc, argv) == CONFIG_RUN)
		config_verify_bootstrap(&cfg, err, sizeof(err));
	config_close(&cfg);
	clearenv();
	free(copy);
	return 0;
}

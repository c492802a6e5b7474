/*
 * segcheck: finds damage inside libraft's open segments that libraft would
 * take for a torn write (see segcheck.h).  It only reads: each open-N file
 * whole (libraft reads it whole right after), walking its batches as
 * libraft's loader does; at the first batch that does not check, it looks
 * for an intact batch further on, up to the first 512-byte sector of
 * zeros.  Every length is checked against the bytes present before use.
 */
#include "server/segcheck.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/err.h"

#define SEG_FORMAT 1u
#define SEG_SECTOR 512u
/* libraft reads open segments whole; ours are 8 MiB or a few times the
 * request limit.  Beyond this a file is left to libraft unchecked. */
#define SEG_MAX_FILE (1ull << 30)

static uint32_t seg_crc_table[256];

/* libraft's byteCrc32. */
static uint32_t seg_crc(const uint8_t *p, size_t n)
{
	uint32_t crc = 0;
	size_t i;

	if (seg_crc_table[1] == 0) {
		for (i = 0; i < 256; i++) {
			uint32_t c = (uint32_t)i << 24;
			for (int k = 0; k < 8; k++)
				c = c & 0x80000000u ? (c << 1) ^ 0x04C11DB7u : c << 1;
			seg_crc_table[i] = c;
		}
	}
	for (i = 0; i < n; i++)
		crc = (crc << 8) ^ seg_crc_table[((crc >> 24) ^ p[i]) & 255];
	return crc;
}

static uint32_t seg_get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t seg_get64(const uint8_t *p)
{
	return (uint64_t)seg_get32(p) | (uint64_t)seg_get32(p + 4) << 32;
}

/* The size of the intact batch at off, or 0 if there is none. */
static size_t seg_batch(const uint8_t *p, size_t len, size_t off)
{
	size_t rest, hlen, i;
	uint64_t n, data = 0;

	if (off > len || len - off < 16)
		return 0;
	rest = len - off - 8; /* after the two CRCs */
	n = seg_get64(p + off + 8);
	if (n == 0 || n > (rest - 8) / 16)
		return 0;
	hlen = 8 + 16 * (size_t)n;
	if (seg_crc(p + off + 8, hlen) != seg_get32(p + off))
		return 0;
	for (i = 0; i < n; i++)
		data += seg_get32(p + off + 8 + 8 + 16 * i + 12);
	if (data > rest - hlen)
		return 0;
	if (seg_crc(p + off + 8 + hlen, (size_t)data) != seg_get32(p + off + 4))
		return 0;
	return 8 + hlen + (size_t)data;
}

/* The first 512-byte sector at or after off that holds only zeros, or len. */
static size_t seg_zero_sector(const uint8_t *p, size_t len, size_t off)
{
	size_t s = (off + SEG_SECTOR - 1) / SEG_SECTOR * SEG_SECTOR, i;

	for (; s + SEG_SECTOR <= len; s += SEG_SECTOR) {
		for (i = 0; i < SEG_SECTOR && p[s + i] == 0; i++)
			;
		if (i == SEG_SECTOR)
			return s;
	}
	return len;
}

static int seg_read(const char *path, uint8_t **out, size_t *len)
{
	struct stat st;
	uint8_t *p;
	size_t got = 0;
	ssize_t r;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	*out = NULL;
	*len = 0;
	if (fd < 0)
		return -KV_EIO;
	if (fstat(fd, &st) != 0 || st.st_size < 0) {
		close(fd);
		return -KV_EIO;
	}
	if ((unsigned long long)st.st_size > SEG_MAX_FILE) {
		close(fd);
		return 0; /* left to libraft */
	}
	p = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!p) {
		close(fd);
		return -KV_ENOMEM;
	}
	while (got < (size_t)st.st_size) {
		r = read(fd, p + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	*out = p;
	*len = got;
	return 0;
}

/* The extent of the batch at off when its header checks (its data may not),
 * or 0: header missing, damaged, or the batch would not fit in the file. */
static size_t seg_header_extent(const uint8_t *p, size_t len, size_t off)
{
	size_t rest, hlen, i;
	uint64_t n, data = 0;

	if (off > len || len - off < 16)
		return 0;
	rest = len - off - 8;
	n = seg_get64(p + off + 8);
	if (n == 0 || n > (rest - 8) / 16)
		return 0;
	hlen = 8 + 16 * (size_t)n;
	if (seg_crc(p + off + 8, hlen) != seg_get32(p + off))
		return 0;
	for (i = 0; i < n; i++)
		data += seg_get32(p + off + 8 + 8 + 16 * i + 12);
	if (data > rest - hlen)
		return 0;
	return 8 + hlen + (size_t)data;
}

/* A write torn at a sector boundary leaves the sectors it did not reach as
 * they were: zero (segments are preallocated, and libraft pads the block it
 * rewrites with zeros).  So a batch whose header checks is torn only if,
 * in some sector after its first, all of its bytes are zero. */
static bool seg_torn(const uint8_t *p, size_t start, size_t end)
{
	size_t s = (start / SEG_SECTOR + 1) * SEG_SECTOR, a, b, i;

	for (; s < end; s += SEG_SECTOR) {
		a = s;
		b = s + SEG_SECTOR < end ? s + SEG_SECTOR : end;
		for (i = a; i < b && p[i] == 0; i++)
			;
		if (i == b)
			return true;
	}
	return false;
}

/* One open segment: 0, or -KV_ECORRUPT with why filled. */
static int seg_check_file(const char *name, const uint8_t *p, size_t len, char *why, size_t whylen)
{
	size_t off = 8, b, bad, zero, pos, ext;

	if (len < 8 || seg_get64(p) != SEG_FORMAT)
		return 0; /* empty, never written, or a format libraft refuses itself */
	while (off < len && (b = seg_batch(p, len, off)) != 0)
		off += b;
	if (off >= len)
		return 0;
	bad = off;
	zero = seg_zero_sector(p, len, bad);
	for (pos = bad + 8; pos < zero; pos += 8) {
		if (seg_batch(p, len, pos) == 0)
			continue;
		snprintf(why, whylen,
			 "open segment %s: the entries batch at byte %zu is damaged and an intact "
			 "batch follows at byte %zu, so this is not the torn last write of a crash: "
			 "libraft would silently drop every entry from byte %zu on",
			 name, bad, pos, bad);
		return -KV_ECORRUPT;
	}
	/* The last batch: written whole (its header checks, no sector of it
	 * was left unwritten) yet its data does not check. */
	ext = seg_header_extent(p, len, bad);
	if (ext && !seg_torn(p, bad, bad + ext)) {
		snprintf(why, whylen,
			 "open segment %s: the last entries batch (byte %zu, %zu bytes) was written "
			 "whole but its data checksum fails, so this is damage, not the torn last "
			 "write of a crash: libraft would silently drop it",
			 name, bad, ext);
		return -KV_ECORRUPT;
	}
	return 0;
}

int segcheck_open_segments(const char *dir, char *why, size_t whylen)
{
	char path[4096];
	struct dirent *e;
	uint8_t *p;
	size_t len;
	DIR *d;
	int rv = 0, l;

	why[0] = '\0';
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -KV_EIO;
	while (rv == 0 && (e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, "open-", 5) != 0)
			continue;
		l = snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (l < 0 || (size_t)l >= sizeof(path))
			continue;
		rv = seg_read(path, &p, &len);
		if (rv) {
			snprintf(why, whylen, "open segment %s: cannot read it", e->d_name);
			break;
		}
		if (p)
			rv = seg_check_file(e->d_name, p, len, why, whylen);
		free(p);
	}
	closedir(d);
	return rv;
}

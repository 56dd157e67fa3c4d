/* audit/filter.c: the filters of a read of the audit log, checked with messages a person
 * can act on; RFC 3339 times to and from µs; the keyset cursor, bound to its filters by a
 * digest. Pure. */
#include "audit/filter.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/err.h"
#include "common/utf8.h"

static const char *const statuses[] = {
    "running",         "denied",          "exited",   "signaled",  "timeout", "cancelled",
    "transport_error", "failed_to_start", "shutdown", "abandoned", "lost",
};
#define NSTATUSES (sizeof(statuses) / sizeof(statuses[0]))

int audit_status_valid(const char *s)
{
	for (size_t i = 0; i < NSTATUSES; i++)
		if (strcmp(statuses[i], s) == 0)
			return 1;
	return 0;
}

const char *audit_status_name(unsigned long i)
{
	return i < NSTATUSES ? statuses[i] : NULL;
}

void audit_filter_init(struct audit_filter *f)
{
	memset(f, 0, sizeof(*f));
	f->break_glass = -1;
	f->limit = AUDIT_LIMIT_DEFAULT;
}

static int digits(const char *s, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

static int days_in_month(int y, int m)
{
	static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return m == 2 && leap ? 29 : days[m - 1];
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian). */
static long long days_from_civil(int y, int m, int d)
{
	long long era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int audit_time_parse(const char *s, long long *us)
{
	int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
	long long frac = 0, t;
	const char *p;

	if (strlen(s) < 20 || digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) ||
	    s[7] != '-' || digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') ||
	    digits(s + 11, 2, &h) || s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' ||
	    digits(s + 17, 2, &sec))
		return EB_ERR_INVAL;
	if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 ||
	    sec > 59)
		return EB_ERR_INVAL;
	p = s + 19;
	if (*p == '.') {
		int n = 0;

		for (p++; isdigit((unsigned char)*p); p++, n++) {
			if (n >= 9)
				return EB_ERR_INVAL;
			if (n < 6)
				frac = frac * 10 + (*p - '0');
		}
		if (n == 0)
			return EB_ERR_INVAL;
		for (; n < 6; n++)
			frac *= 10;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-' || (*p == ' ' && strlen(p) == 6)) {
		sign = *p == '-' ? -1 : 1;
		if (digits(p + 1, 2, &oh) || p[3] != ':' || digits(p + 4, 2, &om) || oh > 23 ||
		    om > 59)
			return EB_ERR_INVAL;
		p += 6;
	} else {
		return EB_ERR_INVAL;
	}
	if (*p != '\0')
		return EB_ERR_INVAL;
	t = ((days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec) -
	     sign * (oh * 3600 + om * 60)) *
	        1000000LL +
	    frac;
	/* An offset can move a time of year 9999 past the end of the range (filter.h). */
	if (t < AUDIT_TIME_MIN_US || t > AUDIT_TIME_MAX_US)
		return EB_ERR_INVAL;
	*us = t;
	return 0;
}

void audit_time_format(long long us, char out[32])
{
	long long secs = us >= 0 ? us / 1000000 : -((-us + 999999) / 1000000);
	time_t t = (time_t)secs;
	struct tm tm;
	char buf[96];
	size_t n;

	gmtime_r(&t, &tm);
	snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, us - secs * 1000000);
	n = strlen(buf) < 31 ? strlen(buf) : 31; /* only years past 9999 are longer */
	memcpy(out, buf, n);
	out[n] = '\0';
}

/* Version 1: a byte 1, the position (µs big-endian, the exec id's 16 bytes) and the first
 * 8 bytes of a SHA-256 over the position and the filters. 33 bytes, 44 base64url
 * characters. The digest is no secret: it makes a cursor that was altered, cut, or reused
 * with other filters an error the client hears about, instead of a wrong page. */
#define CURSOR_VERSION 1
#define CURSOR_BYTES   33
#define CURSOR_CHARS   44

static void digest_str(EVP_MD_CTX *md, const char *name, const char *v)
{
	EVP_DigestUpdate(md, name, strlen(name) + 1);
	if (v != NULL)
		EVP_DigestUpdate(md, v, strlen(v) + 1);
	else
		EVP_DigestUpdate(md, "\xff", 1);
}

static void cursor_digest(const struct audit_filter *f, const unsigned char pos[24],
                          unsigned char out[8])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char h[EVP_MAX_MD_SIZE];
	char num[64];

	if (md == NULL)
		abort(); /* nothing sensible to do without it */
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	EVP_DigestUpdate(md, "exec-broker-cursor-v1", 22);
	EVP_DigestUpdate(md, pos, 24);
	digest_str(md, "workspace_id", f->workspace_id);
	digest_str(md, "org_id", f->org_id);
	digest_str(md, "actor", f->actor);
	digest_str(md, "status", f->status);
	if (f->batch_id != NULL) /* so that cursors without it read as before */
		digest_str(md, "batch_id", f->batch_id);
	snprintf(num, sizeof(num), "%d %d %lld %d %lld", f->break_glass, f->has_since,
	         f->has_since ? f->since_us : 0, f->has_until, f->has_until ? f->until_us : 0);
	digest_str(md, "rest", num);
	EVP_DigestFinal_ex(md, h, NULL);
	EVP_MD_CTX_free(md);
	memcpy(out, h, 8);
}

static int uuid_bytes(const char *s, unsigned char out[16])
{
	int n = 0;

	for (int i = 0; s[i] != '\0'; i++) {
		if (s[i] == '-')
			continue;
		if (!isxdigit((unsigned char)s[i]) || !isxdigit((unsigned char)s[i + 1]) || n == 16)
			return -1;
		sscanf(s + i, "%2hhx", &out[n++]);
		i++;
	}
	return n == 16 ? 0 : -1;
}

int audit_exec_id_valid(const char *s)
{
	if (strlen(s) != 36)
		return 0;
	for (int i = 0; i < 36; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
			return 0;
	}
	return 1;
}

void audit_cursor_encode(const struct audit_filter *f, long long us, const char *exec_id,
                         char out[AUDIT_CURSOR_MAX])
{
	unsigned char raw[CURSOR_BYTES];
	uint64_t u = (uint64_t)us;

	raw[0] = CURSOR_VERSION;
	for (int i = 0; i < 8; i++)
		raw[1 + i] = (unsigned char)(u >> (56 - 8 * i));
	memset(raw + 9, 0, 16);
	uuid_bytes(exec_id, raw + 9);
	cursor_digest(f, raw + 1, raw + 25);
	EVP_EncodeBlock((unsigned char *)out, raw, CURSOR_BYTES);
	for (char *p = out; *p; p++)
		*p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
}

int audit_cursor_decode(struct audit_filter *f, const char *text)
{
	unsigned char raw[CURSOR_BYTES + 3], d[8];
	char b64[CURSOR_CHARS + 1];
	uint64_t u = 0;

	if (strlen(text) != CURSOR_CHARS)
		return EB_ERR_INVAL;
	for (int i = 0; i < CURSOR_CHARS; i++) {
		char c = text[i];

		if (!isalnum((unsigned char)c) && c != '-' && c != '_')
			return EB_ERR_INVAL;
		b64[i] = c == '-' ? '+' : c == '_' ? '/' : c;
	}
	b64[CURSOR_CHARS] = '\0';
	if (EVP_DecodeBlock(raw, (const unsigned char *)b64, CURSOR_CHARS) != CURSOR_BYTES ||
	    raw[0] != CURSOR_VERSION)
		return EB_ERR_INVAL;
	cursor_digest(f, raw + 1, d);
	if (memcmp(d, raw + 25, 8) != 0)
		return EB_ERR_INVAL;
	for (int i = 0; i < 8; i++)
		u = u << 8 | raw[1 + i];
	/* The digest proves nothing (anyone can compute it): a position no timestamp can hold
	 * would reach PostgreSQL as an error. */
	if ((long long)u < AUDIT_TIME_MIN_US || (long long)u > AUDIT_TIME_MAX_US)
		return EB_ERR_INVAL;
	f->cursor_us = (long long)u;
	snprintf(f->cursor_id, sizeof(f->cursor_id),
	         "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", raw[9],
	         raw[10], raw[11], raw[12], raw[13], raw[14], raw[15], raw[16], raw[17], raw[18],
	         raw[19], raw[20], raw[21], raw[22], raw[23], raw[24]);
	f->has_cursor = true;
	return 0;
}

/* A name-like filter value: 1-200 bytes, no control characters. */
static bool text_value_ok(const char *v)
{
	size_t n = strlen(v);
	bool incomplete;

	/* What PostgreSQL would refuse (bytes that are not UTF-8) is the client's mistake,
	 * said here, not a database error. */
	if (n == 0 || n > 200 || utf8_valid_prefix((const unsigned char *)v, n, &incomplete) != n)
		return false;
	for (const unsigned char *p = (const unsigned char *)v; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

static int bad(char *field, size_t fieldlen, const char *name, char *err, size_t errlen,
               const char *msg)
{
	snprintf(field, fieldlen, "%s", name);
	snprintf(err, errlen, "%s", msg);
	return EB_ERR_INVAL;
}

int audit_filter_parse(struct audit_filter *f, const char *const *names, const char *const *values,
                       size_t n, char *field, size_t fieldlen, char *err, size_t errlen)
{
	static const char *const known[] = {"workspace_id", "org_id", "actor", "status", "batch_id",
	                                    "break_glass",  "since",  "until", "limit",  "cursor"};
	const char *cursor = NULL;
	char msg[200];

	audit_filter_init(f);
	field[0] = err[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		const char *k = names[i], *v = values[i];
		size_t ki;

		for (ki = 0; ki < sizeof(known) / sizeof(known[0]); ki++)
			if (strcmp(k, known[ki]) == 0)
				break;
		if (ki == sizeof(known) / sizeof(known[0])) {
			snprintf(msg, sizeof(msg),
			         "unknown parameter; the filters are workspace_id, org_id, actor, "
			         "status, batch_id, break_glass, since, until, limit and cursor");
			return bad(field, fieldlen, k, err, errlen, msg);
		}
		for (size_t j = 0; j < i; j++)
			if (strcmp(names[j], k) == 0)
				return bad(field, fieldlen, k, err, errlen,
				           "parameter given more than once; give each filter once");
		if (strcmp(k, "workspace_id") == 0 || strcmp(k, "org_id") == 0 ||
		    strcmp(k, "actor") == 0) {
			if (!text_value_ok(v))
				return bad(field, fieldlen, k, err, errlen,
				           "must be 1-200 bytes of UTF-8 text without control "
				           "characters");
			if (k[0] == 'w')
				f->workspace_id = v;
			else if (k[0] == 'o')
				f->org_id = v;
			else
				f->actor = v;
		} else if (strcmp(k, "status") == 0) {
			if (!audit_status_valid(v))
				return bad(
				    field, fieldlen, k, err, errlen,
				    "unknown status; one of running, denied, exited, signaled, "
				    "timeout, cancelled, transport_error, failed_to_start, "
				    "shutdown, abandoned, lost");
			f->status = v;
		} else if (strcmp(k, "batch_id") == 0) {
			if (!audit_exec_id_valid(v))
				return bad(
				    field, fieldlen, k, err, errlen,
				    "must be a batch's id, a UUID as its first frame gives it");
			f->batch_id = v;
		} else if (strcmp(k, "break_glass") == 0) {
			if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0)
				return bad(field, fieldlen, k, err, errlen,
				           "must be true or false");
			f->break_glass = v[0] == 't';
		} else if (strcmp(k, "since") == 0 || strcmp(k, "until") == 0) {
			long long us;

			if (audit_time_parse(v, &us) != 0)
				return bad(field, fieldlen, k, err, errlen,
				           "must be an RFC 3339 time such as 2026-11-23T10:00:00Z");
			if (k[0] == 's') {
				f->has_since = true;
				f->since_us = us;
			} else {
				f->has_until = true;
				f->until_us = us;
			}
		} else if (strcmp(k, "limit") == 0) {
			char *end;
			long l = strtol(v, &end, 10);

			if (!isdigit((unsigned char)v[0]) || *end != '\0' || l < 1 ||
			    l > AUDIT_LIMIT_MAX)
				return bad(field, fieldlen, k, err, errlen,
				           "must be a whole number from 1 to 1000");
			f->limit = (int)l;
		} else {
			cursor = v;
		}
	}
	/* Last: the cursor is checked against every other filter. */
	if (cursor != NULL && audit_cursor_decode(f, cursor) != 0)
		return bad(field, fieldlen, "cursor", err, errlen,
		           "not a cursor this API issued for these filters; send the next_cursor "
		           "of the previous page with the same filters, or drop it to start over");
	return 0;
}

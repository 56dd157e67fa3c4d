/* audit/chain.c: the bytes a row contributes to the hash chain, field by field as the
 * database's exec_audit_canonical() writes them, and the SHA-256 that links it. */
#include "audit/chain.h"

#include <ctype.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/query.h"
#include "common/err.h"

struct out {
	char **buf;
	size_t *len, *cap;
	int rc;
};

static void put(struct out *o, const char *p, size_t n)
{
	if (o->rc != 0)
		return;
	if (*o->len + n + 1 > *o->cap) {
		size_t cap = (*o->cap ? *o->cap : 512);
		char *nb;

		while (*o->len + n + 1 > cap)
			cap *= 2;
		nb = realloc(*o->buf, cap);
		if (nb == NULL) {
			o->rc = EB_ERR_NOMEM;
			return;
		}
		*o->buf = nb;
		*o->cap = cap;
	}
	memcpy(*o->buf + *o->len, p, n);
	*o->len += n;
	(*o->buf)[*o->len] = '\0';
}

static void put_field(struct out *o, const char *v, size_t n)
{
	char head[32];

	if (v == NULL) {
		put(o, "-", 1);
		return;
	}
	snprintf(head, sizeof(head), "%zu:", n);
	put(o, head, strlen(head));
	put(o, v, n);
}

static void put_col(struct out *o, const PGresult *res, int i, int c)
{
	const char *v = audit_row_text(res, i, c);

	put_field(o, v, v != NULL ? strlen(v) : 0);
}

static void put_bool(struct out *o, const PGresult *res, int i, int c)
{
	const char *v = audit_row_text(res, i, c);

	if (v == NULL)
		put_field(o, NULL, 0);
	else
		put_field(o, v[0] == 't' ? "true" : "false", v[0] == 't' ? 4 : 5);
}

static void put_array(struct out *o, const PGresult *res, int i, int c)
{
	const char *v = audit_row_text(res, i, c);
	json_t *a;
	char head[32];

	if (v == NULL) {
		put(o, "-", 1);
		return;
	}
	a = json_loads(v, JSON_DECODE_ANY, NULL);
	if (!json_is_array(a)) {
		json_decref(a);
		if (o->rc == 0)
			o->rc = EB_ERR_INVAL;
		return;
	}
	snprintf(head, sizeof(head), "%zu[", json_array_size(a));
	put(o, head, strlen(head));
	for (size_t k = 0; k < json_array_size(a); k++) {
		json_t *e = json_array_get(a, k);

		if (json_is_null(e))
			put_field(o, NULL, 0);
		else
			put_field(o, json_string_value(e), json_string_length(e));
	}
	put(o, "]", 1);
	json_decref(a);
}

int audit_canonical(const PGresult *res, int i, char **buf, size_t *len, size_t *cap)
{
	struct out o = {buf, len, cap, 0};

	if (PQnfields(res) < AUDIT_NCOLS)
		return EB_ERR_INVAL;
	put(&o, "exec-broker-audit-v1", 20);
	put_col(&o, res, i, AUDIT_COL_CHAIN_SEQ);
	put_col(&o, res, i, AUDIT_COL_EXEC_ID);
	put_col(&o, res, i, AUDIT_COL_REQUEST_ID);
	put_col(&o, res, i, AUDIT_COL_WORKSPACE_ID);
	put_col(&o, res, i, AUDIT_COL_ORG_ID);
	put_col(&o, res, i, AUDIT_COL_ACTOR);
	put_col(&o, res, i, AUDIT_COL_ACTOR_KIND);
	put_col(&o, res, i, AUDIT_COL_REASON);
	put_array(&o, res, i, AUDIT_COL_ARGV);
	put_col(&o, res, i, AUDIT_COL_CWD);
	put_array(&o, res, i, AUDIT_COL_ENV_KEYS);
	put_col(&o, res, i, AUDIT_COL_STDIN_BYTES);
	put_col(&o, res, i, AUDIT_COL_CLIENT_INET);
	put_col(&o, res, i, AUDIT_COL_TIMEOUT_S);
	put_col(&o, res, i, AUDIT_COL_STATUS);
	put_col(&o, res, i, AUDIT_COL_ERROR_CODE);
	put_col(&o, res, i, AUDIT_COL_EXIT_CODE);
	put_col(&o, res, i, AUDIT_COL_EXIT_SIGNAL);
	put_col(&o, res, i, AUDIT_COL_STARTED_US);
	put_col(&o, res, i, AUDIT_COL_FINISHED_US);
	put_col(&o, res, i, AUDIT_COL_DURATION_MS);
	put_col(&o, res, i, AUDIT_COL_STDOUT_BYTES);
	put_col(&o, res, i, AUDIT_COL_STDERR_BYTES);
	put_bool(&o, res, i, AUDIT_COL_STDOUT_TRUNC);
	put_bool(&o, res, i, AUDIT_COL_STDERR_TRUNC);
	put_col(&o, res, i, AUDIT_COL_BROKER_INSTANCE);
	/* Migration 0006: a detached exec's row ends with the mark and its name; an attached
	 * one's content is what it always was. */
	const char *d = audit_row_text(res, i, AUDIT_COL_DETACHED);
	if (d != NULL && d[0] == 't') {
		put(&o, "detached", 8);
		put_col(&o, res, i, AUDIT_COL_NAME);
	}
	/* Migration 0010: a batch's target ends with the mark and the batch's id. */
	if (audit_row_text(res, i, AUDIT_COL_BATCH_ID) != NULL) {
		put(&o, "batch", 5);
		put_col(&o, res, i, AUDIT_COL_BATCH_ID);
	}
	return o.rc;
}

void audit_link_hash(const unsigned char prev[AUDIT_HASH_LEN], const char *canon, size_t len,
                     unsigned char out[AUDIT_HASH_LEN])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();

	if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(md, prev, AUDIT_HASH_LEN) != 1 ||
	    EVP_DigestUpdate(md, canon, len) != 1 || EVP_DigestFinal_ex(md, out, NULL) != 1)
		abort(); /* only out of memory: a verifier cannot go on without hashing */
	EVP_MD_CTX_free(md);
}

void audit_hash_format(const unsigned char hash[AUDIT_HASH_LEN], char out[2 * AUDIT_HASH_LEN + 1])
{
	for (size_t i = 0; i < AUDIT_HASH_LEN; i++)
		snprintf(out + 2 * i, 3, "%02x", hash[i]);
}

int audit_hash_parse(const char *text, unsigned char hash[AUDIT_HASH_LEN])
{
	if (strlen(text) != 2 * AUDIT_HASH_LEN)
		return EB_ERR_INVAL;
	for (size_t i = 0; i < AUDIT_HASH_LEN; i++) {
		if (!isxdigit((unsigned char)text[2 * i]) ||
		    !isxdigit((unsigned char)text[2 * i + 1]))
			return EB_ERR_INVAL;
		sscanf(text + 2 * i, "%2hhx", &hash[i]);
	}
	return 0;
}

int audit_anchor_parse(const char *text, long long *seq, unsigned char hash[AUDIT_HASH_LEN])
{
	const char *colon = strchr(text, ':');
	char *end;

	if (!isdigit((unsigned char)text[0]))
		return EB_ERR_INVAL;
	*seq = strtoll(text, &end, 10);
	if (colon == NULL || end != colon || *seq < 0 || audit_hash_parse(colon + 1, hash) != 0)
		return EB_ERR_INVAL;
	return 0;
}

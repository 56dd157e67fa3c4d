/* fuzz/fuzz_detached_record.c: the records a host's detached-exec reader prints back
 * (pool/detached.c, detached_parse), which a tenant's command can forge: it runs as the
 * user who owns the exec's directory and its status file. The bytes are parsed whole and
 * again in pieces cut where the input says: both give the same records (a data record's
 * pieces joined) and the same answer, and once a call refuses, every later one does with
 * no record. Each record is within bounds, and written back as a reader prints it the
 * records are the input again (a round trip: nothing is accepted that a reader never
 * prints); a refusal gives back a prefix, so the line refused applied nothing.
 * Input: four piece sizes (all 0: one piece), then the reader's output. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "fuzz/fuzz.h"
#include "pool/detached.h"

struct recs {
	struct detached_rec *r; /* DREC_DATA: data malloc'd */
	uint64_t *left;         /* DREC_DATA: bytes of its record still to come after it */
	size_t n, cap;
	const struct detached_parser *p;
	const char *buf; /* the bytes of the call under way */
	size_t len;
};

static void on_rec(const struct detached_rec *r, void *arg)
{
	struct recs *g = arg;
	switch (r->kind) {
	case DREC_DATA:
		FUZZ_CHECK(r->len > 0 && r->data >= g->buf && r->data + r->len <= g->buf + g->len,
		           "a data piece of %" PRIu64 " bytes outside the call's bytes", r->len);
		FUZZ_CHECK(r->offset + r->len > r->offset, "a data piece's end overflows");
		break;
	case DREC_SKIPPED:
	case DREC_KEPT:
		FUZZ_CHECK(r->kind != DREC_KEPT || r->offset <= r->len,
		           "kept from %" PRIu64 " to %" PRIu64, r->offset, r->len);
		break;
	case DREC_STATUS:
		FUZZ_CHECK(r->status.kind != DST_EXITED ||
		               (r->status.exit_code >= 0 && r->status.exit_code <= 255),
		           "exit code %d", r->status.exit_code);
		FUZZ_CHECK(r->status.duration_ms >= 0, "duration %lld", r->status.duration_ms);
		if (r->status.kind == DST_SIGNALED) {
			const char *s = r->status.signal;

			FUZZ_CHECK(
			    memchr(s, '\0', sizeof(r->status.signal)) != NULL && s[0] != '\0' &&
			        strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-") == strlen(s),
			    "signal \"%.16s\"", s);
		}
		break;
	case DREC_RUNNING:
	case DREC_GONE:
	case DREC_ABSENT:
		break;
	default:
		fuzz_fail("record kind %d", r->kind);
	}
	if (r->kind != DREC_DATA && r->kind != DREC_STATUS && r->kind < DREC_RUNNING)
		FUZZ_CHECK(r->stream == 1 || r->stream == 2, "stream %d", r->stream);
	if (g->n == g->cap) {
		g->cap = g->cap ? 2 * g->cap : 16;
		g->r = realloc(g->r, g->cap * sizeof(*g->r));
		g->left = realloc(g->left, g->cap * sizeof(*g->left));
		FUZZ_CHECK(g->r != NULL && g->left != NULL, "out of memory");
	}
	g->r[g->n] = *r;
	g->left[g->n] = g->p->left;
	if (r->kind == DREC_DATA) {
		char *d = malloc(r->len);

		FUZZ_CHECK(d != NULL, "out of memory");
		memcpy(d, r->data, r->len);
		g->r[g->n].data = d;
	}
	g->n++;
}

static void recs_free(struct recs *g)
{
	for (size_t i = 0; i < g->n; i++)
		if (g->r[i].kind == DREC_DATA)
			free((char *)g->r[i].data);
	free(g->r);
	free(g->left);
}

/* Past a data record of no bytes at pos, "d o|e OFFSET 0\n", if there is one. */
static size_t skip_empty_data(const uint8_t *d, size_t size, size_t pos)
{
	size_t i = pos + 4;

	if (size - pos < 8 || d[pos] != 'd' || d[pos + 1] != ' ' ||
	    (d[pos + 2] != 'o' && d[pos + 2] != 'e') || d[pos + 3] != ' ')
		return pos;
	if (d[i] == '0')
		i++;
	else
		while (i < size && d[i] >= '0' && d[i] <= '9')
			i++;
	if (i == pos + 4 || size - i < 3 || memcmp(d + i, " 0\n", 3) != 0)
		return pos;
	return skip_empty_data(d, size, i + 3);
}

static int feed(struct detached_parser *p, struct recs *g, const uint8_t *b, size_t n)
{
	g->p = p;
	g->buf = (const char *)b;
	g->len = n;
	return detached_parse(p, (const char *)b, n, on_rec, g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct detached_parser whole = {0}, cut = {0};
	struct recs a = {0}, b = {0};
	size_t sizes[4], off = 0, k = 0;
	int ra, rb = 0;

	if (size < 4)
		return 0;
	for (int i = 0; i < 4; i++)
		sizes[i] = data[i];
	data += 4;
	size -= 4;
	if (sizes[0] + sizes[1] + sizes[2] + sizes[3] == 0)
		sizes[0] = size;

	ra = feed(&whole, &a, data, size);
	FUZZ_CHECK(ra == 0 || ra == EB_ERR_INVAL, "detached_parse returned %d", ra);
	do {
		size_t c = sizes[k++ % 4], before = b.n;

		if (c > size - off)
			c = size - off;
		int r = feed(&cut, &b, data + off, c);
		if (rb != 0)
			FUZZ_CHECK(r == rb && b.n == before, "a refusing parser took more");
		rb = r;
		off += c;
	} while (off < size);
	FUZZ_CHECK(ra == rb, "whole: %d, in pieces: %d", ra, rb);
	FUZZ_CHECK(whole.left == cut.left && whole.llen == cut.llen,
	           "whole and in pieces stop in different places");

	/* The same records: b's data pieces joined where they continue one record. */
	size_t j = 0;
	for (size_t i = 0; i < a.n; i++) {
		const struct detached_rec *x = &a.r[i];

		FUZZ_CHECK(j < b.n, "in pieces, %zu records; whole, %zu at least", b.n, i + 1);
		if (x->kind != DREC_DATA) {
			const struct detached_rec *y = &b.r[j++];

			FUZZ_CHECK(y->kind == x->kind && y->stream == x->stream &&
			               y->offset == x->offset && y->len == x->len &&
			               memcmp(&y->status, &x->status, sizeof(x->status)) == 0,
			           "record %zu differs in pieces", i);
			continue;
		}
		uint64_t got = 0;
		while (got < x->len) {
			FUZZ_CHECK(j < b.n, "in pieces, data record %zu is cut short", i);
			const struct detached_rec *y = &b.r[j];

			FUZZ_CHECK(y->kind == DREC_DATA && y->stream == x->stream &&
			               y->offset == x->offset + got && y->len <= x->len - got &&
			               memcmp(y->data, x->data + got, y->len) == 0,
			           "data record %zu differs in pieces", i);
			got += y->len;
			j++;
		}
	}
	FUZZ_CHECK(j == b.n, "in pieces, %zu records more", b.n - j);

	/* Written back as a reader prints them, the records are the input (its prefix, for
	 * a refusal). A whole parse delivers each data record in one piece, the last one
	 * perhaps short of what its header announced. A data record of no bytes gives no
	 * record (the unit tests have one; a reader prints none). */
	size_t pos = 0;
	for (size_t i = 0; i < a.n; i++) {
		const struct detached_rec *x = &a.r[i];
		const char *s = x->stream == 1 ? "o" : "e";
		char line[200];
		int n;

		pos = skip_empty_data(data, size, pos);
		switch (x->kind) {
		case DREC_DATA:
			n = snprintf(line, sizeof(line), "d %s %" PRIu64 " %" PRIu64 "\n", s,
			             x->offset, x->len + a.left[i]);
			break;
		case DREC_SKIPPED:
		case DREC_KEPT:
			n = snprintf(line, sizeof(line), "%c %s %" PRIu64 " %" PRIu64 "\n",
			             x->kind == DREC_SKIPPED ? 'k' : 'l', s, x->offset, x->len);
			break;
		case DREC_STATUS: {
			char val[24];

			if (x->status.kind == DST_EXITED)
				snprintf(val, sizeof(val), "%d", x->status.exit_code);
			else
				snprintf(val, sizeof(val), "%s",
				         x->status.kind == DST_SIGNALED ? x->status.signal : "-");
			n = snprintf(line, sizeof(line), "x %s %s %" PRIu64 " %" PRIu64 " %lld\n",
			             detached_status_name(x->status.kind), val,
			             x->status.stdout_bytes, x->status.stderr_bytes,
			             x->status.duration_ms);
			break;
		}
		default:
			n = snprintf(line, sizeof(line), "%c\n",
			             x->kind == DREC_RUNNING ? 'r'
			             : x->kind == DREC_GONE  ? 'g'
			                                     : 'a');
		}
		FUZZ_CHECK(pos + (size_t)n <= size && memcmp(data + pos, line, (size_t)n) == 0,
		           "record %zu written back is \"%.*s\", the input \"%.*s\"", i, n - 1,
		           line, (int)(size - pos < (size_t)n ? size - pos : (size_t)n - 1),
		           data + pos);
		pos += (size_t)n;
		if (x->kind == DREC_DATA) {
			FUZZ_CHECK(pos + x->len <= size && memcmp(data + pos, x->data, x->len) == 0,
			           "data record %zu's bytes are not the input's", i);
			pos += x->len;
		}
	}
	if (ra == 0) {
		/* What is left: a line under way, or the header of a data record none of
		 * whose bytes came yet. */
		pos = skip_empty_data(data, size, pos);
		if (whole.left > 0 &&
		    (a.n == 0 || a.r[a.n - 1].kind != DREC_DATA || a.left[a.n - 1] == 0)) {
			char h[80];
			int n = snprintf(h, sizeof(h), "d %s %" PRIu64 " %" PRIu64 "\n",
			                 whole.stream == 1 ? "o" : "e", whole.offset, whole.left);

			FUZZ_CHECK(pos + (size_t)n <= size && memcmp(data + pos, h, (size_t)n) == 0,
			           "the last header written back is \"%.*s\"", n - 1, h);
			pos += (size_t)n;
		}
		FUZZ_CHECK(size - pos == whole.llen &&
		               memcmp(data + pos, whole.line, whole.llen) == 0,
		           "the records written back are %zu bytes of the %zu read, %zu held", pos,
		           size, whole.llen);
	}
	recs_free(&a);
	recs_free(&b);
	return 0;
}

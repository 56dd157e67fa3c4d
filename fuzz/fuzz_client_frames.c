/* fuzz/fuzz_client_frames.c: what the exec client makes of a broker's NDJSON frames, a
 * network peer's bytes: logs' frames and offsets (client/detached.c) and a batch's frames
 * (client/fanout.c), with the exec objects ps and wait read.
 * logs: on each stream the bytes written and the bytes counted lost add up to the offset it
 * resumes from, which never goes back; a refused frame moves nothing.
 * batch: what fanout_frame writes is what a model of the documented rules writes: each
 * target's output in whole lines behind "ID: ", a line longer than line_max cut, a
 * target's unfinished line ended at its end, a note for a stream the cap cut; in --json
 * mode nothing.
 * Exec objects: an exit status of 0-255 or DETACHED_RUNNING, a reason for the ones that
 * are no exit code; argv as ps shows it within its width, UTF-8, with no control byte.
 * Input: a flags byte (1: logs follows; 2: --json; the rest: line_max - 1), the width of
 * ps's argv column, then the frames, one a line; an empty line starts another reply. */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/common.h"
#include "client/detached.h"
#include "client/fanout.h"
#include "common/err.h"
#include "common/utf8.h"
#include "fuzz/fuzz.h"

/* A growable byte string of the model's. */
struct mbuf {
	char *p;
	size_t len, cap;
};

static void mb_add(struct mbuf *b, const void *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->p = realloc(b->p, b->cap);
		FUZZ_CHECK(b->p != NULL, "out of memory");
	}
	if (n > 0)
		memcpy(b->p + b->len, p, n);
	b->len += n;
}

struct mtarget {
	char *id;
	struct mbuf held[2];
	bool truncated[2], ended;
};

/* The model of a batch reply's rendering, from fanout.h's contract. */
struct model {
	enum fanout_state state;
	bool raw;
	size_t line_max;
	struct mtarget *t; /* sorted by id */
	size_t n;
	struct mbuf out[2];
};

static struct mtarget *m_target(struct model *m, const char *id)
{
	size_t i = 0;

	while (i < m->n && strcmp(m->t[i].id, id) < 0)
		i++;
	if (i < m->n && strcmp(m->t[i].id, id) == 0)
		return &m->t[i];
	m->t = realloc(m->t, (m->n + 1) * sizeof(*m->t));
	FUZZ_CHECK(m->t != NULL, "out of memory");
	memmove(&m->t[i + 1], &m->t[i], (m->n - i) * sizeof(*m->t));
	memset(&m->t[i], 0, sizeof(*m->t));
	m->t[i].id = strdup(id);
	FUZZ_CHECK(m->t[i].id != NULL, "out of memory");
	m->n++;
	return &m->t[i];
}

static void m_line(struct model *m, struct mtarget *t, int s)
{
	mb_add(&m->out[s], t->id, strlen(t->id));
	mb_add(&m->out[s], ": ", 2);
	mb_add(&m->out[s], t->held[s].p, t->held[s].len);
	mb_add(&m->out[s], "\n", 1);
	t->held[s].len = 0;
}

/* Byte by byte: a newline ends the line; a line of line_max bytes ends before the next. */
static void m_output(struct model *m, struct mtarget *t, int s, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\n') {
			m_line(m, t, s);
			continue;
		}
		if (t->held[s].len == m->line_max)
			m_line(m, t, s);
		mb_add(&t->held[s], &p[i], 1);
	}
}

static void m_end(struct model *m, struct mtarget *t)
{
	static const char *const names[] = {"stdout", "stderr"};
	char note[600];

	if (t->ended)
		return;
	for (int s = 0; s < 2; s++)
		if (t->held[s].len > 0)
			m_line(m, t, s);
	for (int s = 0; s < 2; s++) {
		if (!t->truncated[s])
			continue;
		int n = snprintf(note, sizeof(note),
		                 "exec-broker: %s: the remote %s was cut at the broker's "
		                 "output_cap_bytes; the rest was not sent\n",
		                 t->id, names[s]);
		FUZZ_CHECK(n > 0 && (size_t)n < sizeof(note), "a long id");
		mb_add(&m->out[1], note, (size_t)n);
	}
	t->ended = true;
}

static void m_flush(struct model *m)
{
	for (size_t i = 0; i < m->n; i++)
		m_end(m, &m->t[i]);
}

/* What the model expects of frame f: the kind, and 0 or EB_ERR_INVAL. */
static int m_frame(struct model *m, json_t *f, enum fanout_frame *kind)
{
	json_t *ws = json_object_get(f, "workspace_id");

	*kind = FFRAME_OTHER;
	if (m->state == FANOUT_DONE)
		return 0;
	if (ws != NULL) {
		const char *stream = json_string_value(json_object_get(f, "stream"));
		bool last =
		    json_object_get(f, "exit_code") != NULL || json_object_get(f, "error") != NULL;
		struct client_output o;
		struct mtarget *t;
		json_t *trunc;
		int rc;

		if (!json_is_string(ws))
			return EB_ERR_INVAL;
		if (stream == NULL && !last)
			return 0;
		m->state = FANOUT_TARGETS;
		if (m->raw) {
			*kind = stream != NULL ? FFRAME_OUTPUT : FFRAME_END;
			return 0;
		}
		t = m_target(m, json_string_value(ws));
		if (stream == NULL) {
			*kind = FFRAME_END;
			trunc = json_object_get(f, "truncated");
			t->truncated[0] |= json_is_true(json_object_get(trunc, "stdout"));
			t->truncated[1] |= json_is_true(json_object_get(trunc, "stderr"));
			m_end(m, t);
			return 0;
		}
		rc = client_output_decode(f, stream, &o);
		if (rc != 0 || o.fd < 0)
			return rc;
		*kind = FFRAME_OUTPUT;
		if (o.truncated)
			t->truncated[o.fd - 1] = true;
		else
			m_output(m, t, o.fd - 1, o.data, o.len);
		client_output_free(&o);
		return 0;
	}
	if (json_is_array(json_object_get(f, "results")) ||
	    json_is_object(json_object_get(f, "error"))) {
		*kind =
		    json_is_array(json_object_get(f, "results")) ? FFRAME_SUMMARY : FFRAME_ERROR;
		m->state = FANOUT_DONE;
		if (!m->raw)
			m_flush(m);
		return 0;
	}
	if (m->state == FANOUT_FIRST && json_is_array(json_object_get(f, "targets"))) {
		json_t *targets = json_object_get(f, "targets"), *id;
		size_t i;

		*kind = FFRAME_FIRST;
		m->state = FANOUT_TARGETS;
		if (m->raw)
			return 0;
		json_array_foreach(targets, i, id)
		{
			if (!json_is_string(id))
				return EB_ERR_INVAL;
			m_target(m, json_string_value(id));
		}
	}
	return 0;
}

static void m_free(struct model *m)
{
	for (size_t i = 0; i < m->n; i++) {
		free(m->t[i].id);
		free(m->t[i].held[0].p);
		free(m->t[i].held[1].p);
	}
	free(m->t);
	free(m->out[0].p);
	free(m->out[1].p);
}

static void check_same_out(struct fanout *fo, struct model *m, const char *when)
{
	for (int s = 0; s < 2; s++) {
		FUZZ_CHECK(fo->out[s].len == m->out[s].len &&
		               (m->out[s].len == 0 ||
		                memcmp(fo->out[s].p, m->out[s].p, m->out[s].len) == 0),
		           "%s: %s is %zu bytes \"%.*s\", the model's %zu \"%.*s\"", when,
		           s == 0 ? "stdout" : "stderr", fo->out[s].len,
		           (int)(fo->out[s].len < 200 ? fo->out[s].len : 200), fo->out[s].p,
		           m->out[s].len, (int)(m->out[s].len < 200 ? m->out[s].len : 200),
		           m->out[s].p);
		fo->out[s].len = 0;
		m->out[s].len = 0;
	}
}

/* The bytes written and lost of each stream, over every reply. */
struct tally {
	long long written[2], lost[2];
};

static void check_logs_frame(struct detached_follow *d, struct tally *ty, json_t *f)
{
	struct detached_follow before = *d;
	struct detached_step st;
	int rc = detached_follow_frame(d, f, &st);

	FUZZ_CHECK(d->nframes == before.nframes + 1, "nframes");
	if (rc != 0) {
		FUZZ_CHECK(rc == EB_ERR_INVAL, "detached_follow_frame returned %d", rc);
		FUZZ_CHECK(d->next[0] == before.next[0] && d->next[1] == before.next[1] &&
		               d->progressed == before.progressed,
		           "a refused frame moved the offsets");
		FUZZ_CHECK(st.out.owned == NULL, "a refused frame holds decoded bytes");
		return;
	}
	for (int i = 0; i < 2; i++)
		FUZZ_CHECK(d->next[i] >= before.next[i], "stream %d went back from %lld to %lld", i,
		           before.next[i], d->next[i]);
	FUZZ_CHECK(d->progressed == (before.progressed || d->next[0] > before.next[0] ||
	                             d->next[1] > before.next[1]),
	           "progressed is %d", d->progressed);
	switch (st.kind) {
	case DFRAME_OUTPUT:
	case DFRAME_SKIPPED: {
		int i = st.fd - 1;

		FUZZ_CHECK(st.fd == 1 || st.fd == 2, "fd %d", st.fd);
		FUZZ_CHECK(st.lost >= 0, "lost %lld", st.lost);
		FUZZ_CHECK(st.kind == DFRAME_SKIPPED || st.skip <= st.out.len,
		           "skip %zu of %zu bytes", st.skip, st.out.len);
		if (st.kind == DFRAME_OUTPUT)
			ty->written[i] += (long long)(st.out.len - st.skip);
		ty->lost[i] += st.lost;
		FUZZ_CHECK(d->next[1 - i] == before.next[1 - i], "the other stream moved");
		break;
	}
	case DFRAME_FIRST:
		FUZZ_CHECK(d->nframes == 1, "a first frame at %d", d->nframes);
		/* fall through */
	case DFRAME_OTHER:
	case DFRAME_LAST:
		FUZZ_CHECK(d->next[0] == before.next[0] && d->next[1] == before.next[1],
		           "a frame of no stream moved the offsets");
		break;
	default:
		fuzz_fail("step kind %d", st.kind);
	}
	for (int i = 0; i < 2; i++)
		FUZZ_CHECK(ty->written[i] + ty->lost[i] == d->next[i],
		           "stream %d: %lld written and %lld lost, next at %lld", i, ty->written[i],
		           ty->lost[i], d->next[i]);
	client_output_free(&st.out);
}

static void check_exec_object(json_t *f, size_t width)
{
	const char *why;
	char col[64];
	int x = detached_exit_of_exec(f, &why);
	json_t *argv = json_object_get(f, "argv");

	FUZZ_CHECK(x == DETACHED_RUNNING || (x >= 0 && x <= 255), "exit status %d", x);
	FUZZ_CHECK(why == NULL || why[0] != '\0', "an empty reason");
	detached_exit_column(f, col, sizeof(col));
	FUZZ_CHECK(memchr(col, '\0', sizeof(col)) != NULL && col[0] != '\0', "the EXIT column");
	if (json_is_array(argv)) {
		char *s = detached_argv_display(argv, width);
		size_t n, chars = 0;
		bool incomplete;

		FUZZ_CHECK(s != NULL, "out of memory");
		n = strlen(s);
		FUZZ_CHECK(utf8_valid_prefix((const unsigned char *)s, n, &incomplete) == n,
		           "argv shown is not UTF-8");
		for (size_t i = 0; i < n; i++) {
			FUZZ_CHECK((unsigned char)s[i] >= 0x20 && s[i] != 0x7f,
			           "argv shown holds control byte 0x%02x", (unsigned char)s[i]);
			chars += ((unsigned char)s[i] & 0xc0) != 0x80;
		}
		FUZZ_CHECK(chars <= width, "argv shown in %zu characters, not %zu", chars, width);
		free(s);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct detached_follow d = {.follow = false};
	struct tally ty = {{0, 0}, {0, 0}};
	struct fanout fo;
	struct model m = {0};
	bool fo_failed = false;
	size_t width, off;

	if (size < 2)
		return 0;
	d.follow = data[0] & 1;
	fanout_init(&fo, data[0] & 2);
	fo.line_max = 1 + (data[0] >> 2);
	m.raw = fo.raw;
	m.line_max = fo.line_max;
	m.state = FANOUT_FIRST;
	width = 3 + data[1] % 120;

	for (off = 2; off < size;) {
		const uint8_t *nl = memchr(data + off, '\n', size - off);
		size_t len = nl != NULL ? (size_t)(nl - (data + off)) : size - off;
		json_error_t jerr;
		json_t *f;

		if (len == 0) {
			/* Another reply, resumed from where the last left. */
			d.nframes = 0;
			d.progressed = false;
		} else if ((f = json_loadb((const char *)data + off, len, JSON_ALLOW_NUL, &jerr)) !=
		           NULL) {
			if (json_is_object(f)) {
				check_logs_frame(&d, &ty, f);
				check_exec_object(f, width);
				if (!fo_failed) {
					enum fanout_frame kind, mkind;
					enum fanout_state was = fo.state;
					int rc = fanout_frame(&fo, f, &kind);
					int mrc = m_frame(&m, f, &mkind);

					FUZZ_CHECK(rc == mrc && kind == mkind,
					           "fanout_frame: %d, kind %d; the model: %d, %d",
					           rc, kind, mrc, mkind);
					FUZZ_CHECK(fo.state >= was, "the reply went back a state");
					FUZZ_CHECK((fo.state == FANOUT_DONE) == (fo.last != NULL) ||
					               fo.raw,
					           "done without a last frame");
					if (rc != 0)
						fo_failed = true; /* the client stops there */
					else
						check_same_out(&fo, &m, "a frame");
				}
			}
			json_decref(f);
		}
		off += len + 1;
	}
	if (!fo_failed && fo.state != FANOUT_DONE) {
		FUZZ_CHECK(fanout_flush(&fo) == 0, "fanout_flush failed");
		if (!m.raw)
			m_flush(&m);
		check_same_out(&fo, &m, "the flush");
	}
	if (fo.last != NULL) {
		int x = fanout_exit_of_summary(fo.last);
		char *buf = NULL;
		size_t blen = 0;
		FILE *out = open_memstream(&buf, &blen);

		FUZZ_CHECK(x == 0 || x == CLIENT_EXIT_BATCH, "batch exit status %d", x);
		FUZZ_CHECK(out != NULL, "out of memory");
		FUZZ_CHECK(fanout_summary_print(fo.last, out) == 0, "fanout_summary_print failed");
		fclose(out);
		FUZZ_CHECK(blen > 0 && buf[blen - 1] == '\n' && strstr(buf, "batch ") != NULL,
		           "the summary does not end in its batch line");
		free(buf);
	}
	fanout_free(&fo);
	m_free(&m);
	return 0;
}

/* client/fanout.c: the pure core of a batch: the frames of its reply classified, each
 * target's output cut into whole lines behind its workspace id, the summary's table and the
 * exit status. Everything here is a function of its arguments, tested from tables of cases. */
#include "client/fanout.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client/common.h"
#include "client/detached.h"
#include "common/err.h"
#include "common/fsm.h"
#include "common/table.h"

static const char *const fanout_state_names[] = {"first", "targets", "done"};
static const unsigned fanout_legal[] = {
    [FANOUT_FIRST] = FSM_BIT(FANOUT_TARGETS) | FSM_BIT(FANOUT_DONE),
    [FANOUT_TARGETS] = FSM_BIT(FANOUT_DONE),
    [FANOUT_DONE] = 0,
};
static const struct fsm fanout_fsm = {"batch reply", fanout_state_names, fanout_legal, 3};

static void fanout_set_state(struct fanout *fo, enum fanout_state to)
{
	FSM_SET(&fanout_fsm, fo->state, to, fo->batch_id[0] != '\0' ? fo->batch_id : NULL);
}

static int buf_add(struct fanout_buf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap > 0 ? b->cap : 256;
		char *grown;
		while (cap < b->len + n)
			cap *= 2;
		grown = realloc(b->p, cap);
		if (grown == NULL)
			return EB_ERR_NOMEM;
		b->p = grown;
		b->cap = cap;
	}
	if (n > 0)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

static int buf_adds(struct fanout_buf *b, const char *s)
{
	return buf_add(b, s, strlen(s));
}

static void buf_free(struct fanout_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

void fanout_init(struct fanout *fo, bool raw)
{
	memset(fo, 0, sizeof(*fo));
	fo->state = FANOUT_FIRST;
	fo->raw = raw;
	fo->line_max = FANOUT_LINE_MAX;
}

static int target_cmp(const void *a, const void *b)
{
	return strcmp(((const struct fanout_target *)a)->id, ((const struct fanout_target *)b)->id);
}

/* The target of workspace id, added (in its sorted place) when the first frame did not
 * name it. NULL if out of memory. */
static struct fanout_target *target_get(struct fanout *fo, const char *id)
{
	size_t lo = 0, hi = fo->ntargets;
	struct fanout_target *t;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(fo->targets[mid].id, id);
		if (c == 0)
			return &fo->targets[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (fo->ntargets == fo->cap) {
		size_t cap = fo->cap > 0 ? fo->cap * 2 : 16;
		struct fanout_target *grown = realloc(fo->targets, cap * sizeof(*grown));
		if (grown == NULL)
			return NULL;
		fo->targets = grown;
		fo->cap = cap;
	}
	t = &fo->targets[lo];
	memmove(t + 1, t, (fo->ntargets - lo) * sizeof(*t));
	memset(t, 0, sizeof(*t));
	t->id = strdup(id);
	if (t->id == NULL) {
		memmove(t, t + 1, (fo->ntargets - lo) * sizeof(*t));
		return NULL;
	}
	fo->ntargets++;
	return t;
}

/* {"batch_id","targets":[...]}: every target, sorted once rather than inserted one by one.
 * 0, EB_ERR_INVAL or EB_ERR_NOMEM. */
static int first_frame(struct fanout *fo, json_t *f)
{
	json_t *targets = json_object_get(f, "targets"), *id;
	const char *bid = json_string_value(json_object_get(f, "batch_id"));
	size_t i, n = json_array_size(targets);

	if (bid != NULL)
		snprintf(fo->batch_id, sizeof(fo->batch_id), "%s", bid);
	fanout_set_state(fo, FANOUT_TARGETS);
	if (fo->raw || n == 0)
		return 0;
	if (fo->cap < fo->ntargets + n) {
		struct fanout_target *grown =
		    realloc(fo->targets, (fo->ntargets + n) * sizeof(*grown));
		if (grown == NULL)
			return EB_ERR_NOMEM;
		fo->targets = grown;
		fo->cap = fo->ntargets + n;
	}
	json_array_foreach(targets, i, id)
	{
		struct fanout_target *t = &fo->targets[fo->ntargets];
		if (!json_is_string(id))
			return EB_ERR_INVAL;
		memset(t, 0, sizeof(*t));
		t->id = strdup(json_string_value(id));
		if (t->id == NULL)
			return EB_ERR_NOMEM;
		fo->ntargets++;
	}
	qsort(fo->targets, fo->ntargets, sizeof(*fo->targets), target_cmp);
	/* A target named twice keeps one place. */
	for (i = 1; i < fo->ntargets;) {
		if (strcmp(fo->targets[i - 1].id, fo->targets[i].id) == 0) {
			free(fo->targets[i].id);
			memmove(&fo->targets[i], &fo->targets[i + 1],
			        (fo->ntargets - i - 1) * sizeof(*fo->targets));
			fo->ntargets--;
		} else {
			i++;
		}
	}
	return 0;
}

/* One line of target t onto out: "ID: ", the held part, n bytes of p, and a newline when
 * nl (p has its own otherwise). The held part is then empty. */
static int emit_line(struct fanout *fo, struct fanout_target *t, int s, const char *p, size_t n,
                     bool nl)
{
	struct fanout_buf *out = &fo->out[s], *part = &t->part[s];
	int rc = buf_adds(out, t->id);

	if (rc == 0)
		rc = buf_add(out, ": ", 2);
	if (rc == 0)
		rc = buf_add(out, part->p, part->len);
	if (rc == 0)
		rc = buf_add(out, p, n);
	if (rc == 0 && nl)
		rc = buf_add(out, "\n", 1);
	part->len = 0;
	return rc;
}

/* n bytes of stream s (0 stdout, 1 stderr) of t: each line completed goes out whole; the
 * rest is held. A line longer than line_max goes out cut, as lines of line_max bytes. */
static int take_output(struct fanout *fo, struct fanout_target *t, int s, const char *p, size_t n)
{
	struct fanout_buf *part = &t->part[s];
	int rc = 0;

	while (n > 0 && rc == 0) {
		size_t room = fo->line_max - part->len; /* part never holds more than line_max */
		size_t look = n < room + 1 ? n : room + 1, k;
		const char *nl = memchr(p, '\n', look);
		if (nl != NULL) {
			k = (size_t)(nl - p) + 1;
			rc = emit_line(fo, t, s, p, k, false);
		} else if (n > room) {
			k = room;
			rc = emit_line(fo, t, s, p, k, true);
		} else {
			k = n;
			rc = buf_add(part, p, k);
		}
		p += k;
		n -= k;
	}
	return rc;
}

/* Target t ends: its unfinished lines go out with a newline added, and a line on stderr
 * for each stream the broker's cap cut. */
static int target_end(struct fanout *fo, struct fanout_target *t)
{
	static const char *const names[] = {"stdout", "stderr"};
	int rc = 0;

	if (t->ended)
		return 0;
	for (int s = 0; s < 2 && rc == 0; s++)
		if (t->part[s].len > 0)
			rc = emit_line(fo, t, s, "", 0, true);
	for (int s = 0; s < 2 && rc == 0; s++) {
		char *line;
		if (!t->truncated[s])
			continue;
		if (asprintf(&line,
		             "exec-broker: %s: the remote %s was cut at the broker's "
		             "output_cap_bytes; the rest was not sent\n",
		             t->id, names[s]) < 0)
			return EB_ERR_NOMEM;
		rc = buf_adds(&fo->out[1], line);
		free(line);
	}
	t->ended = true;
	return rc;
}

int fanout_flush(struct fanout *fo)
{
	int rc = 0;

	for (size_t i = 0; i < fo->ntargets && rc == 0; i++)
		rc = target_end(fo, &fo->targets[i]);
	return rc;
}

/* An output frame {"workspace_id","stream","data","encoding"?} or {...,"truncated":true}. */
static int output_frame(struct fanout *fo, struct fanout_target *t, json_t *f, const char *stream,
                        enum fanout_frame *kind)
{
	struct client_output o;
	int rc = client_output_decode(f, stream, &o);

	if (rc != 0 || o.fd < 0)
		return rc; /* an unknown stream: FFRAME_OTHER */
	*kind = FFRAME_OUTPUT;
	if (o.truncated)
		t->truncated[o.fd - 1] = true;
	else
		rc = take_output(fo, t, o.fd - 1, o.data, o.len);
	client_output_free(&o);
	return rc;
}

/* A frame of one target: output, or its exit or error frame. */
static int target_frame(struct fanout *fo, json_t *f, const char *ws, enum fanout_frame *kind)
{
	const char *stream = json_string_value(json_object_get(f, "stream"));
	bool last = json_object_get(f, "exit_code") != NULL || json_object_get(f, "error") != NULL;
	struct fanout_target *t;
	json_t *trunc;

	if (stream == NULL && !last)
		return 0;
	if (fo->state == FANOUT_FIRST)
		fanout_set_state(fo, FANOUT_TARGETS); /* a broker that skipped the first frame */
	if (fo->raw) {
		*kind = stream != NULL ? FFRAME_OUTPUT : FFRAME_END;
		return 0;
	}
	t = target_get(fo, ws);
	if (t == NULL)
		return EB_ERR_NOMEM;
	if (stream != NULL)
		return output_frame(fo, t, f, stream, kind);
	*kind = FFRAME_END;
	trunc = json_object_get(f, "truncated");
	if (json_is_true(json_object_get(trunc, "stdout")))
		t->truncated[0] = true;
	if (json_is_true(json_object_get(trunc, "stderr")))
		t->truncated[1] = true;
	return target_end(fo, t);
}

/* The batch's last frame (its summary, or an error for all of it): every open target
 * ends. */
static int last_frame(struct fanout *fo, json_t *f, enum fanout_frame kind_is,
                      enum fanout_frame *kind)
{
	const char *bid = json_string_value(json_object_get(f, "batch_id"));

	if (fo->batch_id[0] == '\0' && bid != NULL)
		snprintf(fo->batch_id, sizeof(fo->batch_id), "%s", bid);
	fanout_set_state(fo, FANOUT_DONE);
	fo->last = json_incref(f);
	*kind = kind_is;
	return fo->raw ? 0 : fanout_flush(fo);
}

int fanout_frame(struct fanout *fo, json_t *f, enum fanout_frame *kind)
{
	json_t *ws = json_object_get(f, "workspace_id");

	*kind = FFRAME_OTHER;
	if (fo->state == FANOUT_DONE)
		return 0;
	if (ws != NULL) {
		if (!json_is_string(ws))
			return EB_ERR_INVAL;
		return target_frame(fo, f, json_string_value(ws), kind);
	}
	if (json_is_array(json_object_get(f, "results")))
		return last_frame(fo, f, FFRAME_SUMMARY, kind);
	if (json_is_object(json_object_get(f, "error")))
		return last_frame(fo, f, FFRAME_ERROR, kind);
	if (fo->state == FANOUT_FIRST && json_is_array(json_object_get(f, "targets"))) {
		*kind = FFRAME_FIRST;
		return first_frame(fo, f);
	}
	return 0;
}

void fanout_free(struct fanout *fo)
{
	for (size_t i = 0; i < fo->ntargets; i++) {
		free(fo->targets[i].id);
		buf_free(&fo->targets[i].part[0]);
		buf_free(&fo->targets[i].part[1]);
	}
	free(fo->targets);
	buf_free(&fo->out[0]);
	buf_free(&fo->out[1]);
	json_decref(fo->last);
	memset(fo, 0, sizeof(*fo));
}

static bool is_zero(json_t *n)
{
	return json_is_integer(n) && json_integer_value(n) == 0;
}

int fanout_exit_of_summary(json_t *summary)
{
	const char *status = json_string_value(json_object_get(summary, "status"));

	if (status != NULL && strcmp(status, "completed") == 0 &&
	    is_zero(json_object_get(summary, "failed")) &&
	    is_zero(json_object_get(summary, "not_started")))
		return 0;
	return CLIENT_EXIT_BATCH;
}

/* The string member key of o, or "-". */
static const char *str_or_dash(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s != NULL ? s : "-";
}

/* One result {"workspace_id","status","exit_code","signal","duration_ms","error"} as a
 * row. 0 or EB_ERR_NOMEM. */
static int add_result(struct table *t, json_t *r)
{
	json_t *ms = json_object_get(r, "duration_ms"), *err = json_object_get(r, "error");
	const char *code = json_string_value(json_object_get(err, "code"));
	const char *msg = json_string_value(json_object_get(err, "message"));
	char exitbuf[32], dur[32], *error = NULL;
	const char *row[5];
	int rc;

	if (json_is_integer(ms) && json_integer_value(ms) >= 0)
		snprintf(dur, sizeof(dur), "%lld.%03llds", (long long)json_integer_value(ms) / 1000,
		         (long long)json_integer_value(ms) % 1000);
	else
		snprintf(dur, sizeof(dur), "-");
	if (code != NULL && asprintf(&error, "%s: %s", code, msg != NULL ? msg : "") < 0)
		return EB_ERR_NOMEM;
	row[0] = str_or_dash(r, "workspace_id");
	row[1] = str_or_dash(r, "status");
	row[2] = detached_exit_column(r, exitbuf, sizeof(exitbuf));
	row[3] = dur;
	row[4] = error != NULL ? error : "-";
	rc = table_add_row(t, row);
	free(error);
	return rc;
}

int fanout_summary_print(json_t *summary, FILE *out)
{
	static const char *const headers[] = {"WORKSPACE", "STATUS", "EXIT", "DURATION", "ERROR"};
	json_t *results = json_object_get(summary, "results"), *r;
	struct table *t = NULL;
	size_t i;

	if (json_array_size(results) > 0) {
		t = table_new(5, headers);
		if (t == NULL)
			return EB_ERR_NOMEM;
		json_array_foreach(results, i, r)
		{
			if (add_result(t, r) != 0) {
				table_free(t);
				return EB_ERR_NOMEM;
			}
		}
		table_print(t, out);
		table_free(t);
	}
	fprintf(out,
	        "batch %s: %s, %" JSON_INTEGER_FORMAT " succeeded, %" JSON_INTEGER_FORMAT
	        " failed, %" JSON_INTEGER_FORMAT " not started\n",
	        str_or_dash(summary, "batch_id"), str_or_dash(summary, "status"),
	        json_integer_value(json_object_get(summary, "succeeded")),
	        json_integer_value(json_object_get(summary, "failed")),
	        json_integer_value(json_object_get(summary, "not_started")));
	return 0;
}

bool fanout_must_ask(bool all, bool yes, bool on_terminal)
{
	return all && !yes && on_terminal;
}

bool fanout_answer_yes(const char *answer)
{
	size_t n;

	while (isspace((unsigned char)*answer))
		answer++;
	for (n = strlen(answer); n > 0 && isspace((unsigned char)answer[n - 1]); n--)
		;
	return (n == 1 && strncasecmp(answer, "y", 1) == 0) ||
	       (n == 3 && strncasecmp(answer, "yes", 3) == 0);
}

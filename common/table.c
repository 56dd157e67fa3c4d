/* common/table.c: aligned text tables. */
#include "common/table.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"

struct table {
	int ncols;
	size_t nrows, cap; /* rows[0] is the header */
	char ***rows;
};

static size_t utf8_width(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		if (((unsigned char)*s & 0xC0) != 0x80)
			n++;
	return n;
}

struct table *table_new(int ncols, const char *const headers[])
{
	struct table *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	t->ncols = ncols;
	if (table_add_row(t, headers) != 0) {
		table_free(t);
		return NULL;
	}
	return t;
}

int table_add_row(struct table *t, const char *const values[])
{
	char **row;

	if (t->nrows == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 16;
		char ***rows = realloc(t->rows, cap * sizeof(*rows));
		if (rows == NULL)
			return EB_ERR_NOMEM;
		t->rows = rows;
		t->cap = cap;
	}
	row = calloc((size_t)t->ncols, sizeof(*row));
	if (row == NULL)
		return EB_ERR_NOMEM;
	for (int i = 0; i < t->ncols; i++) {
		row[i] = strdup(values[i] ? values[i] : "");
		if (row[i] == NULL) {
			for (int k = 0; k < i; k++)
				free(row[k]);
			free(row);
			return EB_ERR_NOMEM;
		}
	}
	t->rows[t->nrows++] = row;
	return 0;
}

void table_print(const struct table *t, FILE *out)
{
	size_t *width = calloc((size_t)t->ncols, sizeof(*width));

	if (width == NULL)
		return;
	for (size_t r = 0; r < t->nrows; r++)
		for (int c = 0; c < t->ncols; c++) {
			size_t w = utf8_width(t->rows[r][c]);
			if (w > width[c])
				width[c] = w;
		}
	for (size_t r = 0; r < t->nrows; r++) {
		for (int c = 0; c < t->ncols; c++) {
			const char *v = t->rows[r][c];
			fputs(v, out);
			if (c + 1 < t->ncols)
				for (size_t pad = utf8_width(v); pad < width[c] + 2; pad++)
					fputc(' ', out);
		}
		fputc('\n', out);
	}
	free(width);
}

void table_free(struct table *t)
{
	if (t == NULL)
		return;
	for (size_t r = 0; r < t->nrows; r++) {
		for (int c = 0; c < t->ncols; c++)
			free(t->rows[r][c]);
		free(t->rows[r]);
	}
	free(t->rows);
	free(t);
}

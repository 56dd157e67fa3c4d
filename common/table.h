/* common/table.h: aligned text tables for terminal output (`workspace list`, `token list`,
 * `migrate --status`). Widths count UTF-8 characters, not bytes. */
#ifndef EB_COMMON_TABLE_H
#define EB_COMMON_TABLE_H

#include <stdio.h>

struct table;

/* A table with ncols columns and these headers (copied). NULL if out of memory. */
struct table *table_new(int ncols, const char *const headers[]);
/* Appends a row of ncols values (copied; NULL prints as ""). 0 or EB_ERR_NOMEM. */
int table_add_row(struct table *t, const char *const values[]);
void table_print(const struct table *t, FILE *out);
void table_free(struct table *t);

#endif

/* common/labels.h: workspace labels, the key=value pairs that select workspaces. The CLI
 * parses --label with them and the API checks {"labels": {...}} with the same predicates;
 * migrations/0009_workspace_labels.sql holds the same rules in the database. */
#ifndef EB_COMMON_LABELS_H
#define EB_COMMON_LABELS_H

#include <stdbool.h>
#include <stddef.h>

#define LABELS_MAX       64 /* labels on one workspace (a trigger enforces it) */
#define LABELS_KEY_MAX   63
#define LABELS_VALUE_MAX 63

/* A key: 1-63 of [a-z0-9._/-], starting with a lower-case letter or digit. s[0..len) may
 * hold any bytes (a JSON string may hold NUL); those outside the set make it invalid. */
bool labels_key_valid(const char *s, size_t len);
/* A value: 0-63 of [A-Za-z0-9._-]. Empty is allowed, as Kubernetes allows it. */
bool labels_value_valid(const char *s, size_t len);

/* One --label argument: "KEY=VALUE" sets KEY, "KEY-" removes it. */
struct label_arg {
	char key[LABELS_KEY_MAX + 1];
	char value[LABELS_VALUE_MAX + 1]; /* "" when remove */
	bool remove;
};

/* Parses arg into *out. 0, or EB_ERR_INVAL with one line in err saying what is wrong and
 * what is allowed (out is then cleared). */
int labels_parse_arg(const char *arg, struct label_arg *out, char *err, size_t errlen);

#endif

/* fuzz/fuzz_labels.c: label keys and values and the --label argument (common/labels.c),
 * which the CLI parses and the API's batch selector checks. The predicates answer as the
 * documented sets say, on any bytes (a JSON string may hold NUL). An accepted argument is
 * a valid key and value, and written back as KEY=VALUE or KEY- it is the argument again,
 * which parses the same (a round trip); a refused one leaves out cleared and one line in
 * err. Input: any bytes (the argument ends at the first NUL). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/labels.h"
#include "fuzz/fuzz.h"

static bool in_set(char c, const char *extra)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       (c != '\0' && strchr(extra, c) != NULL);
}

static bool model_key(const char *s, size_t len)
{
	if (len < 1 || len > LABELS_KEY_MAX || !in_set(s[0], ""))
		return false;
	for (size_t i = 1; i < len; i++)
		if (!in_set(s[i], "._/-"))
			return false;
	return true;
}

static bool model_value(const char *s, size_t len)
{
	if (len > LABELS_VALUE_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!in_set(s[i], "ABCDEFGHIJKLMNOPQRSTUVWXYZ._-"))
			return false;
	return true;
}

static bool all_zero(const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i] != 0)
			return false;
	return true;
}

static void check_arg(const char *arg)
{
	struct label_arg out, again;
	char err[160], back[LABELS_KEY_MAX + LABELS_VALUE_MAX + 3];
	int rc;

	memset(&out, 0xa5, sizeof(out));
	memset(err, 'Z', sizeof(err));
	rc = labels_parse_arg(arg, &out, err, sizeof(err));
	if (rc != 0) {
		FUZZ_CHECK(rc == EB_ERR_INVAL, "a refusal returned %d", rc);
		FUZZ_CHECK(all_zero(&out, sizeof(out)), "a refusal left out filled");
		FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL, "err is not terminated");
		FUZZ_CHECK(strncmp(err, "label ", 6) == 0, "err \"%s\"", err);
		FUZZ_CHECK(strchr(err, '\n') == NULL || strchr(arg, '\n') != NULL,
		           "err is more than one line");
		return;
	}
	FUZZ_CHECK(memchr(out.key, '\0', sizeof(out.key)) != NULL &&
	               memchr(out.value, '\0', sizeof(out.value)) != NULL,
	           "key or value not terminated");
	FUZZ_CHECK(model_key(out.key, strlen(out.key)), "an invalid key \"%s\"", out.key);
	FUZZ_CHECK(model_value(out.value, strlen(out.value)), "an invalid value \"%s\"", out.value);
	FUZZ_CHECK(!out.remove || out.value[0] == '\0', "a removal with a value");
	snprintf(back, sizeof(back), "%s%s%s", out.key, out.remove ? "-" : "=", out.value);
	FUZZ_CHECK(strcmp(back, arg) == 0, "\"%s\" parsed and written back is \"%s\"", arg, back);
	FUZZ_CHECK(labels_parse_arg(back, &again, err, sizeof(err)) == 0 &&
	               memcmp(&again, &out, sizeof(out)) == 0,
	           "\"%s\" parses differently the second time", back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	char *arg;

	FUZZ_CHECK(labels_key_valid(s, size) == model_key(s, size), "key_valid on %zu bytes", size);
	FUZZ_CHECK(labels_value_valid(s, size) == model_value(s, size), "value_valid on %zu bytes",
	           size);
	arg = malloc(size + 1);
	FUZZ_CHECK(arg != NULL, "out of memory");
	memcpy(arg, data, size);
	arg[size] = '\0';
	check_arg(arg);
	free(arg);
	return 0;
}

/* tests/check_migrate_plan.c: the rules of migration planning (pure), and that the
 * embedded migrations are well-formed. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "db/migrate.h"
#include "tests/runner.h"

#define SUM_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define SUM_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define SUM_C "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"

static const struct migration_ref known3[] = {
    {1, "initial", SUM_A}, {2, "audit_chain", SUM_B}, {5, "later", SUM_C}};

static const struct {
	const char *what;
	struct migration_ref applied[4];
	size_t napplied;
	int rc;
	bool pending[3];
	const char *msg; /* substring of err when rc != 0 */
} plans[] = {
    {"fresh database: everything pending", {{0}}, 0, 0, {true, true, true}, NULL},
    {"partly applied", {{1, "initial", SUM_A}}, 1, 0, {false, true, true}, NULL},
    {"all applied, any order",
     {{5, "later", SUM_C}, {1, "initial", SUM_A}, {2, "audit_chain", SUM_B}},
     3,
     0,
     {false, false, false},
     NULL},
    {"changed after applied", {{1, "initial", SUM_B}}, 1, EB_ERR_CONFLICT, {0}, "0001_initial"},
    {"unknown newer version",
     {{1, "initial", SUM_A}, {7, "future", SUM_A}},
     2,
     EB_ERR_CONFLICT,
     {0},
     "0007"},
    {"gap below an applied one",
     {{1, "initial", SUM_A}, {5, "later", SUM_C}},
     2,
     EB_ERR_CONFLICT,
     {0},
     "0002_audit_chain"},
};

START_TEST(planning_rules)
{
	bool pending[3] = {false, false, false};
	char err[512] = "";
	int rc = migrate_plan(known3, 3, plans[_i].applied, plans[_i].napplied, pending, err,
	                      sizeof(err));

	ck_assert_msg(rc == plans[_i].rc, "%s: rc %d (%s)", plans[_i].what, rc, err);
	if (rc == 0) {
		for (int k = 0; k < 3; k++)
			ck_assert_msg(pending[k] == plans[_i].pending[k], "%s: pending[%d]",
			              plans[_i].what, k);
	} else {
		ck_assert_msg(strstr(err, plans[_i].msg) != NULL, "%s: \"%s\"", plans[_i].what,
		              err);
	}
}
END_TEST

START_TEST(known_must_ascend)
{
	const struct migration_ref bad[] = {{2, "b", SUM_A}, {1, "a", SUM_B}};
	bool pending[2];
	char err[256];

	ck_assert_int_eq(migrate_plan(bad, 2, NULL, 0, pending, err, sizeof(err)), EB_ERR_INVAL);
}
END_TEST

START_TEST(embedded_migrations_are_ordered_with_stable_checksums)
{
	char a[MIGRATE_CHECKSUM_LEN + 1], b[MIGRATE_CHECKSUM_LEN + 1];

	ck_assert_uint_ge(migrations_embedded_count, 1);
	ck_assert_int_eq(migrations_embedded[0].version, 1);
	for (size_t i = 0; i < migrations_embedded_count; i++) {
		const struct migration *m = &migrations_embedded[i];
		ck_assert_uint_eq(strlen(m->sql), m->len);
		ck_assert_uint_gt(m->len, 0);
		if (i > 0)
			ck_assert_int_gt(m->version, migrations_embedded[i - 1].version);
		migrate_checksum(m, a);
		migrate_checksum(m, b);
		ck_assert_str_eq(a, b);
		ck_assert_uint_eq(strspn(a, "0123456789abcdef"), 64);
	}
	/* The checksum covers the text: one byte more changes it. */
	struct migration m = migrations_embedded[0];
	m.len--;
	migrate_checksum(&migrations_embedded[0], a);
	migrate_checksum(&m, b);
	ck_assert_str_ne(a, b);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("migrate_plan");
	TCase *tc = tcase_create("plan");

	tcase_add_loop_test(tc, planning_rules, 0, sizeof(plans) / sizeof(plans[0]));
	tcase_add_test(tc, known_must_ascend);
	tcase_add_test(tc, embedded_migrations_are_ordered_with_stable_checksums);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}

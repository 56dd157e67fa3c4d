/* tests/check_fsm.c: checked state transitions: legal ones happen and are logged at debug
 * level, illegal ones abort. */
#include <check.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsm.h"
#include "common/log.h"
#include "tests/runner.h"

enum light { LIGHT_RED, LIGHT_GREEN, LIGHT_AMBER };

static const char *const light_names[] = {"red", "green", "amber"};
static const unsigned light_legal[] = {
    [LIGHT_RED] = FSM_BIT(LIGHT_GREEN),
    [LIGHT_GREEN] = FSM_BIT(LIGHT_AMBER),
    [LIGHT_AMBER] = FSM_BIT(LIGHT_RED),
};
static const struct fsm light_fsm = {"light", light_names, light_legal, 3};

START_TEST(legal_transitions_change_the_state)
{
	enum light l = LIGHT_RED;

	FSM_SET(&light_fsm, l, LIGHT_GREEN, "l1");
	ck_assert_int_eq(l, LIGHT_GREEN);
	FSM_SET(&light_fsm, l, LIGHT_AMBER, NULL);
	FSM_SET(&light_fsm, l, LIGHT_RED, NULL);
	ck_assert_int_eq(l, LIGHT_RED);
	ck_assert_str_eq(fsm_state_name(&light_fsm, LIGHT_AMBER), "amber");
	ck_assert_str_eq(fsm_state_name(&light_fsm, 7), "?");
}
END_TEST

START_TEST(transitions_are_logged_at_debug_level)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	enum light l = LIGHT_RED;

	log_set_stream(f);
	log_set_level(LOG_INFO);
	FSM_SET(&light_fsm, l, LIGHT_GREEN, "quiet");
	log_set_level(LOG_DEBUG);
	FSM_SET(&light_fsm, l, LIGHT_AMBER, "l2");
	log_set_stream(NULL);
	fclose(f);
	ck_assert_ptr_null(strstr(out, "quiet"));
	ck_assert_ptr_nonnull(strstr(out, "msg=state machine=light id=l2 from=green to=amber\n"));
	free(out);
}
END_TEST

START_TEST(an_illegal_transition_aborts)
{
	enum light l = LIGHT_RED;

	FSM_SET(&light_fsm, l, LIGHT_AMBER, "l3");
}
END_TEST

START_TEST(a_state_out_of_range_aborts)
{
	enum light l = LIGHT_RED;

	FSM_SET(&light_fsm, l, 3, NULL);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("fsm");
	TCase *tc = tcase_create("fsm");

	tcase_add_test(tc, legal_transitions_change_the_state);
	tcase_add_test(tc, transitions_are_logged_at_debug_level);
	tcase_add_test_raise_signal(tc, an_illegal_transition_aborts, SIGABRT);
	tcase_add_test_raise_signal(tc, a_state_out_of_range_aborts, SIGABRT);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}

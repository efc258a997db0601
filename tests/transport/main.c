#include <signal.h>
#include <stdlib.h>

#include "harness.h"

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    SRunner *sr = srunner_create(ws_suite());
    srunner_add_suite(sr, lp_suite());
    srunner_add_suite(sr, mixed_suite());
    srunner_add_suite(sr, diag_suite());
    srunner_add_suite(sr, protocol_suite());
    srunner_add_suite(sr, api_suite());
    srunner_add_suite(sr, health_suite());
    srunner_add_suite(sr, drain_suite());
    srunner_add_suite(sr, loop_suite());
    srunner_add_suite(sr, wsreader_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#include <stdlib.h>

#include "helpers.h"

int main(void)
{
    SRunner *sr = srunner_create(token_suite());
    srunner_add_suite(sr, frame_suite());
    srunner_add_suite(sr, outbox_suite());
    srunner_add_suite(sr, session_suite());
    srunner_add_suite(sr, resume_suite());
    srunner_add_suite(sr, topic_suite());
    srunner_add_suite(sr, log_suite());
    srunner_add_suite(sr, wire_suite());
    srunner_add_suite(sr, race_suite());
    srunner_add_suite(sr, store_suite());
    srunner_add_suite(sr, abi_suite());
    srunner_add_suite(sr, stats_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

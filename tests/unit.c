/* The unit-test runner: every module's Check suite. */
#include "config.h"

#include <stdlib.h>

#include "harness.h"


int main(void)
{
    h_alloc_install();
    SRunner *sr = srunner_create(error_suite());
    srunner_add_suite(sr, stream_suite());
    srunner_add_suite(sr, pair_suite());
    srunner_add_suite(sr, link_suite());
    srunner_add_suite(sr, transport_suite());
    srunner_add_suite(sr, fd_suite());
    srunner_add_suite(sr, alloc_suite());
    srunner_add_suite(sr, pki_suite());
    srunner_add_suite(sr, tls_context_suite());
    srunner_add_suite(sr, tls_cert_suite());
    srunner_add_suite(sr, tls_filter_suite());
    srunner_add_suite(sr, tls_server_suite());
    srunner_add_suite(sr, tls_psk_suite());
    srunner_add_suite(sr, tls_ocsp_suite());
    srunner_add_suite(sr, blocking_suite());
    srunner_add_suite(sr, filters_suite());
    srunner_add_suite(sr, tls_hostile_suite());
    srunner_add_suite(sr, faults_suite());
#ifdef HAVE_LIBUV
    srunner_add_suite(sr, uv_suite());
    srunner_add_suite(sr, dxtls_suite());
#endif
#ifdef HAVE_HIREDIS
    srunner_add_suite(sr, redis_suite());
#endif
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

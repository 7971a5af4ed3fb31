/* Error codes, names and error objects (include/duplex/error.h). */
#include "config.h"

#include <string.h>

#include "harness.h"

static const struct {
    int code;
    const char *name;
} node_names[] = {
    {DX_EPIPE, "EPIPE"},
    {DX_ECONNRESET, "ECONNRESET"},
    {DX_ECANCELED, "ECANCELED"},
    {DX_ETIMEDOUT, "ETIMEDOUT"},
    {DX_EWRITEAFTEREND, "ERR_STREAM_WRITE_AFTER_END"},
    {DX_EDESTROYED, "ERR_STREAM_DESTROYED"},
};

/* Every code has its own name and a message; names are stable strings. */
START_TEST(every_code_has_a_distinct_name_and_message)
{
    static const int codes[] = {
#define CODE_(e, v, name, msg) e,
        DX_ERRNO_MAP(CODE_)
#undef CODE_
    };
    size_t n = sizeof(codes) / sizeof(codes[0]);
    ck_assert_uint_ge(n, 16);
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_lt(codes[i], 0);
        ck_assert_int_eq(codes[i], -(int)(i + 1)); /* dense and stable */
        ck_assert_str_ne(dx_err_name(codes[i]), "");
        if (codes[i] != DX_EUNKNOWN)
            ck_assert_str_ne(dx_strerror(codes[i]), "unknown error");
        for (size_t j = 0; j < i; j++)
            ck_assert_str_ne(dx_err_name(codes[i]), dx_err_name(codes[j]));
    }
    for (size_t i = 0; i < sizeof(node_names) / sizeof(node_names[0]); i++)
        ck_assert_str_eq(dx_err_name(node_names[i].code), node_names[i].name);
    ck_assert_str_eq(dx_strerror(DX_EPIPE), "broken pipe");
}
END_TEST

START_TEST(unknown_codes_are_named_unknown)
{
    ck_assert_str_eq(dx_err_name(-9999), "UNKNOWN");
    ck_assert_str_eq(dx_strerror(-9999), "unknown error");
    ck_assert_str_eq(dx_err_name(0), "UNKNOWN");
    ck_assert_str_eq(dx_err_name(DX_FULL), "UNKNOWN");
}
END_TEST

START_TEST(error_objects_carry_code_name_layer_message_detail)
{
    dx_error *e = dx_error_new(DX_ECONNRESET, NULL, "fd", NULL);
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(dx_error_code(e), DX_ECONNRESET);
    ck_assert_str_eq(dx_error_name(e), "ECONNRESET");
    ck_assert_str_eq(dx_error_layer(e), "fd");
    ck_assert_str_eq(dx_error_message(e), "connection reset by peer");
    ck_assert_str_eq(dx_error_detail(e), "");
    ck_assert_int_eq(dx_error_sys_errno(e), 0);
    ck_assert_int_eq(dx_error_set_detail(e, "read: %s", "Connection reset"), 0);
    ck_assert_int_eq(dx_error_set_sys_errno(e, 104), 0);
    char buf[128];
    size_t n = dx_error_format(e, buf, sizeof(buf));
    ck_assert_str_eq(buf, "fd: ECONNRESET: connection reset by peer (read: Connection reset)");
    ck_assert_uint_eq(n, strlen(buf));
    /* Truncation reports the full length, as snprintf does. */
    char small[8];
    ck_assert_uint_eq(dx_error_format(e, small, sizeof(small)), n);
    ck_assert_str_eq(small, "fd: ECO");

    dx_error *c = dx_error_copy(e);
    ck_assert_ptr_nonnull(c);
    dx_error_free(e);
    ck_assert_str_eq(dx_error_detail(c), "read: Connection reset");
    ck_assert_int_eq(dx_error_sys_errno(c), 104);
    dx_error_free(c);
}
END_TEST

START_TEST(error_objects_take_precise_names_and_formatted_messages)
{
    dx_error *e = dx_error_new(DX_EPROTO, "CERT_HAS_EXPIRED", "tls",
                               "certificate has expired (%d days)", 3);
    ck_assert_str_eq(dx_error_name(e), "CERT_HAS_EXPIRED");
    ck_assert_str_eq(dx_error_message(e), "certificate has expired (3 days)");
    char buf[200];
    dx_error_format(e, buf, sizeof(buf));
    ck_assert_str_eq(buf, "tls: CERT_HAS_EXPIRED: certificate has expired (3 days)");
    /* Over-long texts are truncated, not overflowed. */
    char longtext[1000];
    memset(longtext, 'x', sizeof(longtext) - 1);
    longtext[sizeof(longtext) - 1] = '\0';
    ck_assert_int_eq(dx_error_set_detail(e, "%s", longtext), 0);
    ck_assert_uint_eq(strlen(dx_error_detail(e)), 255);
    dx_error_free(e);
}
END_TEST

START_TEST(null_errors_are_handled)
{
    ck_assert_int_eq(dx_error_code(NULL), DX_EINVAL);
    ck_assert_str_eq(dx_error_name(NULL), "");
    ck_assert_str_eq(dx_error_message(NULL), "");
    ck_assert_int_eq(dx_error_set_detail(NULL, "x"), DX_EINVAL);
    ck_assert_int_eq(dx_error_set_sys_errno(NULL, 1), DX_EINVAL);
    ck_assert_ptr_null(dx_error_copy(NULL));
    dx_error_free(NULL);
    char buf[64];
    dx_error_format(NULL, buf, sizeof(buf));
    ck_assert_str_eq(buf, "ENOMEM: out of memory");
}
END_TEST

START_TEST(version_is_reported)
{
    ck_assert_uint_eq(dx_version(), DX_VERSION_HEX);
    ck_assert_str_eq(dx_version_string(), PACKAGE_VERSION);
}
END_TEST

Suite *error_suite(void)
{
    Suite *s = suite_create("error");
    TCase *tc = tcase_create("codes");
    tcase_add_test(tc, every_code_has_a_distinct_name_and_message);
    tcase_add_test(tc, unknown_codes_are_named_unknown);
    tcase_add_test(tc, error_objects_carry_code_name_layer_message_detail);
    tcase_add_test(tc, error_objects_take_precise_names_and_formatted_messages);
    tcase_add_test(tc, null_errors_are_handled);
    tcase_add_test(tc, version_is_reported);
    suite_add_tcase(s, tc);
    return s;
}

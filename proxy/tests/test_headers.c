/* Unit tests: hop-by-hop header policy (AUTH-6) and CORS origins (HTTP-3). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>

#include "headers.h"

static void
hop_by_hop_headers_are_dropped_both_ways(void **state)
{
    (void)state;
    const char *hop[] = {
        "Connection",          "keep-alive",        "TE", "Trailer", "Transfer-Encoding", "Upgrade",
        "Proxy-Authorization", "proxy-authenticate"};
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++) {
        assert_false(qp_header_forward_request(hop[i], NULL));
        assert_false(qp_header_forward_response(hop[i], NULL));
    }
}

static void
end_to_end_headers_pass(void **state)
{
    (void)state;
    assert_true(qp_header_forward_request("Authorization", NULL));
    assert_true(qp_header_forward_request("authorization", "close"));
    assert_true(qp_header_forward_request("Content-Type", NULL));
    assert_true(qp_header_forward_request("User-Agent", NULL));
    assert_true(qp_header_forward_response("Retry-After", NULL));
    assert_true(qp_header_forward_response("X-Upstream-Thing", NULL));
}

static void
connection_listed_headers_are_hop_by_hop(void **state)
{
    (void)state;
    const char *conn = "keep-alive, X-Secret ,  x-other";
    assert_true(qp_header_in_connection("x-secret", conn));
    assert_true(qp_header_in_connection("X-Other", conn));
    assert_false(qp_header_in_connection("X-Secre", conn));
    assert_false(qp_header_forward_request("X-Secret", conn));
    assert_false(qp_header_forward_response("X-Other", conn));
    assert_true(qp_header_forward_request("X-Secret", NULL));
}

/* An upstream answer with two Connection lines: the second names hop-by-hop headers too. */
static void
every_connection_line_counts_in_responses(void **state)
{
    (void)state;
    struct curl_slist *lines = NULL;
    const char *raw[] = {"Content-Type: application/json",
                         "Connection: keep-alive",
                         "X-First: 1",
                         "connection:  X-Second , x-third",
                         "X-Second: 2",
                         "X-Kept: 3"};
    for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++) {
        struct curl_slist *l = curl_slist_append(lines, raw[i]);
        assert_non_null(l);
        lines = l;
    }
    assert_false(qp_header_forward_response_of("X-Second", lines));
    assert_false(qp_header_forward_response_of("X-Third", lines));
    assert_false(qp_header_forward_response_of("Keep-Alive", lines));
    assert_false(qp_header_forward_response_of("Connection", lines));
    assert_true(qp_header_forward_response_of("X-First", lines));
    assert_true(qp_header_forward_response_of("X-Kept", lines));
    assert_true(qp_header_forward_response_of("X-Kept", NULL));
    curl_slist_free_all(lines);
}

static void
proxy_owned_headers(void **state)
{
    (void)state;
    assert_false(qp_header_forward_request("Host", NULL));
    assert_false(qp_header_forward_request("Content-Length", NULL));
    assert_false(qp_header_forward_request("X-Request-Id", NULL));
    assert_false(qp_header_forward_response("Content-Length", NULL));
    assert_false(qp_header_forward_response("Set-Cookie", NULL));
    assert_true(qp_header_flags("TE") & QP_HDR_HOP);
    assert_int_equal(qp_header_flags("Accept"), 0);
}

static void
cors_origins_match_exactly_or_star(void **state)
{
    (void)state;
    assert_true(qp_cors_origin_allowed("*", "https://a.example"));
    const char *list = "https://a.example, http://localhost:3000/";
    assert_true(qp_cors_origin_allowed(list, "https://a.example"));
    assert_true(qp_cors_origin_allowed(list, "http://localhost:3000"));
    assert_false(qp_cors_origin_allowed(list, "https://a.example.evil"));
    assert_false(qp_cors_origin_allowed(list, "https://b.example"));
    assert_false(qp_cors_origin_allowed(list, ""));
    assert_false(qp_cors_origin_allowed("", "https://a.example"));
}

/* What an SDK says of itself stays with the caller unless the proxy is told otherwise. */
static void
client_identity_headers(void **state)
{
    (void)state;
    assert_true(qp_header_is_client_identity("User-Agent"));
    assert_true(qp_header_is_client_identity("user-agent"));
    assert_true(qp_header_is_client_identity("X-Stainless-OS"));
    assert_true(qp_header_is_client_identity("x-stainless-retry-count"));
    assert_false(qp_header_is_client_identity("X-Stainless")); /* the prefix has its dash */
    assert_false(qp_header_is_client_identity("X-Request-Id"));
    assert_false(qp_header_is_client_identity("Accept"));
    assert_false(qp_header_is_client_identity("User-Agents"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hop_by_hop_headers_are_dropped_both_ways),
        cmocka_unit_test(end_to_end_headers_pass),
        cmocka_unit_test(connection_listed_headers_are_hop_by_hop),
        cmocka_unit_test(proxy_owned_headers),
        cmocka_unit_test(every_connection_line_counts_in_responses),
        cmocka_unit_test(cors_origins_match_exactly_or_star),
        cmocka_unit_test(client_identity_headers),
    };
    return cmocka_run_group_tests_name("unit_proxy_headers", tests, NULL, NULL);
}

/* Health view: policy skip/keep, panic threshold, disabled nodes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "rs_health.h"

static rs_ring *
ring4(bool disable_last) {
    const rs_node nodes[4] = {
        {"a", "127.0.0.1:1", NULL, 1, true},
        {"b", "127.0.0.1:2", NULL, 1, true},
        {"c", "127.0.0.1:3", NULL, 1, true},
        {"d", "127.0.0.1:4", NULL, 1, !disable_last},
    };
    rs_ring_params p;
    rs_ring_params_init(&p);
    rs_ring *r = NULL;
    rs_error err;
    assert_int_equal(rs_ring_build(&p, nodes, 4, &r, &err), 0);
    return r;
}

typedef struct health_case {
    const char *name;
    bool disable_d;
    uint8_t healthy[4]; /* a b c d, in ring order (ids are equal length: sorted) */
    rs_health_policy policy;
    double threshold;
    uint8_t usable[4];
    bool panic;
} health_case;

static void
test_table(void **state) {
    (void)state;
    const health_case cases[] = {
        {"all healthy", false, {1, 1, 1, 1}, RS_HEALTH_SKIP, 0.5, {1, 1, 1, 1}, false},
        {"skip one", false, {1, 0, 1, 1}, RS_HEALTH_SKIP, 0.5, {1, 0, 1, 1}, false},
        {"keep one", false, {1, 0, 1, 1}, RS_HEALTH_KEEP, 0.5, {1, 1, 1, 1}, false},
        {"half healthy is not panic",
         false,
         {1, 1, 0, 0},
         RS_HEALTH_SKIP,
         0.5,
         {1, 1, 0, 0},
         false},
        {"below threshold panics", false, {1, 0, 0, 0}, RS_HEALTH_SKIP, 0.5, {1, 1, 1, 1}, true},
        {"none healthy panics", false, {0, 0, 0, 0}, RS_HEALTH_SKIP, 0.5, {1, 1, 1, 1}, true},
        {"threshold 0 never panics", false, {0, 0, 0, 0}, RS_HEALTH_SKIP, 0.0, {0, 0, 0, 0}, false},
        {"threshold 1 panics on one down",
         false,
         {1, 1, 1, 0},
         RS_HEALTH_SKIP,
         1.0,
         {1, 1, 1, 1},
         true},
        {"disabled never usable", true, {1, 1, 1, 1}, RS_HEALTH_KEEP, 0.5, {1, 1, 1, 0}, false},
        {"disabled excluded from panic count",
         true,
         {1, 1, 0, 0},
         RS_HEALTH_SKIP,
         0.5,
         {1, 1, 0, 0},
         false},
        {"panic ignores disabled", true, {1, 0, 0, 1}, RS_HEALTH_SKIP, 0.5, {1, 1, 1, 0}, true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const health_case *c = &cases[i];
        rs_ring *r = ring4(c->disable_d);
        uint8_t usable[4];
        rs_health_summary sum;
        rs_health_compute(r, c->healthy, c->policy, c->threshold, usable, &sum);
        if (memcmp(usable, c->usable, 4) != 0 || sum.panic != c->panic) {
            fail_msg("%s: usable %d%d%d%d panic %d", c->name, usable[0], usable[1], usable[2],
                     usable[3], sum.panic);
        }
        uint32_t expect_usable = 0;
        for (int k = 0; k < 4; k++) {
            expect_usable += c->usable[k];
        }
        assert_int_equal(sum.usable, expect_usable);
        assert_int_equal(sum.enabled, c->disable_d ? 3 : 4);
        rs_ring_unref(r);
    }
}

static void
test_names(void **state) {
    (void)state;
    rs_health_policy p;
    assert_int_equal(rs_health_policy_from_name("skip", &p), 0);
    assert_int_equal(p, RS_HEALTH_SKIP);
    assert_int_equal(rs_health_policy_from_name("keep", &p), 0);
    assert_int_equal(p, RS_HEALTH_KEEP);
    assert_int_equal(rs_health_policy_from_name("Skip", &p), -22);
    assert_int_equal(rs_health_policy_from_name(NULL, &p), -22);
    assert_string_equal(rs_health_policy_name(RS_HEALTH_KEEP), "keep");
}

int
main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/**
 * @file unit.h
 * The shared main of the unit test executables (tests/unit/unit_main.c). A test file includes this header (after
 * cmocka.h's prerequisites) and lists its cases once, at its end:
 *
 *     WEIR_UNIT_TESTS(cmocka_unit_test(test_a),
 *                     cmocka_unit_test_setup_teardown(test_b, setup, teardown))
 *
 * one case per line, so that tests/CMakeLists.txt registers one ctest entry per case. The executable takes an optional
 * case filter (fnmatch(3) pattern, as in `test_calc test_sum_*`) and fails when it selects no case: a renamed or
 * removed case cannot show up green.
 */
#ifndef WEIR_TESTS_UNIT_H
#define WEIR_TESTS_UNIT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/** The cases of this executable (defined by WEIR_UNIT_TESTS). */
extern const struct CMUnitTest weir_unit_tests[];
/** How many there are. */
extern const size_t weir_unit_num_tests;

#define WEIR_UNIT_TESTS(...)                                                                                                       \
    const struct CMUnitTest weir_unit_tests[] = {__VA_ARGS__};                                                                     \
    const size_t weir_unit_num_tests = sizeof(weir_unit_tests) / sizeof(weir_unit_tests[0]);

#endif

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
 *
 * The cases run with TMPDIR set to a new directory of the run's own; make temporary files there
 * (weir_unit_temp_dir) and remove them. The main removes that directory afterwards, whatever the result, and fails a
 * run that left anything in it.
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

/**
 * Makes a new directory `$TMPDIR/PREFIX-XXXXXX` and writes its name to @p buf; fails the test when it cannot. TMPDIR
 * is the run's own directory (see the file comment): remove what you make, pass or fail it is removed after the run.
 */
void weir_unit_temp_dir(char *buf, size_t size, const char *prefix);
/** Removes @p path and everything under it (no error when it does not exist); 0, or -1 with errno set. */
int weir_unit_remove_tree(const char *path);

#define WEIR_UNIT_TESTS(...)                                                                                                       \
    const struct CMUnitTest weir_unit_tests[] = {__VA_ARGS__};                                                                     \
    const size_t weir_unit_num_tests = sizeof(weir_unit_tests) / sizeof(weir_unit_tests[0]);

#endif

/*
 * Cases that misbehave on purpose. Only the meta entries of tests/CMakeLists.txt run them (through
 * tests/expect_failure.py), to prove that the shared main fails a run that leaves files in its TMPDIR and removes
 * them, also after a case that failed; weir_unit_test() does not register this file.
 */
#include <stdio.h>
#include <stdlib.h>
#include "unit.h"

static void write_file(const char *dir, const char *name)
{
    char path[1024];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_non_null(fp = fopen(path, "w"));
    fputs("a private key\n", fp);
    fclose(fp);
}

/* Passes, but leaves a file behind: the run must fail. */
static void test_leaves_a_file(void **state)
{
    write_file(getenv("TMPDIR"), "left-behind.key");
}

/* Fails before it can remove its directory: the main removes it. */
static void test_fails_holding_a_directory(void **state)
{
    char dir[512];

    weir_unit_temp_dir(dir, sizeof(dir), "weir-meta");
    write_file(dir, "server.key");
    fail_msg("deliberate failure, holding %s", dir);
}

WEIR_UNIT_TESTS(cmocka_unit_test(test_leaves_a_file), cmocka_unit_test(test_fails_holding_a_directory))

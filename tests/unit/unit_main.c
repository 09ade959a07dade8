/* The one main of every unit test executable: runs the cases that the filter selects, and fails when none is. */
#include <fnmatch.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "unit.h"

int main(int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : NULL;
    const char *name = strrchr(argv[0], '/') != NULL ? strrchr(argv[0], '/') + 1 : argv[0];
    struct CMUnitTest *selected = calloc(weir_unit_num_tests + 1, sizeof(*selected));
    size_t n = 0;

    if (argc == 3 && strcmp(argv[1], "--expect-cases") == 0) {
        /* ctest's registration check: the cases it found in the source are all there are. */
        size_t expected = strtoul(argv[2], NULL, 10);
        free(selected);
        if (expected != weir_unit_num_tests) {
            fprintf(stderr, "%s: ctest registered %zu case(s), the executable has %zu\n", name, expected, weir_unit_num_tests);
            return 1;
        }
        return 0;
    }
    if (argc > 2) {
        fprintf(stderr, "usage: %s [CASE-PATTERN] | --expect-cases N\n", name);
        free(selected);
        return 2;
    }
    for (size_t i = 0; i != weir_unit_num_tests; ++i)
        if (filter == NULL || fnmatch(filter, weir_unit_tests[i].name, 0) == 0)
            selected[n++] = weir_unit_tests[i];
    if (n == 0) {
        fprintf(stderr, "%s: no test case matches \"%s\" (%zu case(s) in this executable)\n", name, filter != NULL ? filter : "",
                weir_unit_num_tests);
        free(selected);
        return 1;
    }
    /* Tests that talk to servers they kill must not die of a write to a closed socket. */
    signal(SIGPIPE, SIG_IGN);
    int failed = _cmocka_run_group_tests(name, selected, n, NULL, NULL);
    free(selected);
    return failed == 0 ? 0 : 1;
}

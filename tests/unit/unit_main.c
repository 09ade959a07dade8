/*
 * The one main of every unit test executable: runs the cases that the filter selects, and fails when none is. The
 * cases run with TMPDIR set to a new directory of their own, removed afterwards with whatever is in it; a case that
 * leaves anything there fails (a test removes what it makes, and the removal here covers a test that failed half-way).
 */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "unit.h"

/* $TMPDIR, or /tmp when it is unset or empty. */
static const char *tmp_parent(void)
{
    const char *dir = getenv("TMPDIR");
    return dir != NULL && dir[0] != '\0' ? dir : "/tmp";
}

void weir_unit_temp_dir(char *buf, size_t size, const char *prefix)
{
    const char *parent = tmp_parent();
    int len = snprintf(buf, size, "%s/%s-XXXXXX", parent, prefix);

    if (len < 0 || (size_t)len >= size)
        fail_msg("temporary directory name too long for %zu bytes: %s/%s-XXXXXX", size, parent, prefix);
    if (mkdtemp(buf) == NULL)
        fail_msg("mkdtemp(%s): %s", buf, strerror(errno));
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

int weir_unit_remove_tree(const char *path)
{
    return nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0 || errno == ENOENT ? 0 : -1;
}

/* Prints what is left in @p dir (names of its entries); returns how many there are. */
static size_t report_leftovers(const char *name, const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = 0;

    if (d == NULL)
        return 0;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (n++ == 0)
            fprintf(stderr, "%s: left behind in its TMPDIR, removed now:", name);
        fprintf(stderr, " %s", e->d_name);
    }
    closedir(d);
    if (n != 0)
        fprintf(stderr, "\n");
    return n;
}

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
    char tmpdir[512];
    snprintf(tmpdir, sizeof(tmpdir), "%s/weir-unit-XXXXXX", tmp_parent());
    if (mkdtemp(tmpdir) == NULL || setenv("TMPDIR", tmpdir, 1) != 0) {
        fprintf(stderr, "%s: cannot make a temporary directory %s: %s\n", name, tmpdir, strerror(errno));
        free(selected);
        return 1;
    }
    int failed = _cmocka_run_group_tests(name, selected, n, NULL, NULL);
    free(selected);
    if (report_leftovers(name, tmpdir) != 0)
        failed = 1;
    if (weir_unit_remove_tree(tmpdir) != 0) {
        fprintf(stderr, "%s: cannot remove %s: %s\n", name, tmpdir, strerror(errno));
        failed = 1;
    }
    return failed == 0 ? 0 : 1;
}

/*
 * The main of a fuzz target outside libFuzzer: runs LLVMFuzzerTestOneInput once over every file of the directories
 * (and over the files) named on the command line, in name order, each input in a buffer of exactly its size (so that
 * the sanitizers see a read past its end). Fails when there was no input at all: an empty corpus replays nothing.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "fuzz.h"

/* Weak: a target without a one-time set-up does not define it. */
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

static size_t num_inputs;

static int replay_file(const char *path)
{
    FILE *fp = fopen(path, "rb");
    struct stat st;
    uint8_t *buf;
    int ret = -1;

    if (fp == NULL || fstat(fileno(fp), &st) != 0) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        goto Exit;
    }
    /* malloc(0) may return NULL; libFuzzer hands a valid pointer to an empty input, and so does this. */
    buf = malloc(st.st_size != 0 ? (size_t)st.st_size : 1);
    if (buf == NULL || fread(buf, 1, (size_t)st.st_size, fp) != (size_t)st.st_size) {
        fprintf(stderr, "%s: cannot read\n", path);
        free(buf);
        goto Exit;
    }
    fprintf(stderr, "replaying %s (%zu bytes)\n", path, (size_t)st.st_size);
    LLVMFuzzerTestOneInput(buf, (size_t)st.st_size);
    free(buf);
    ++num_inputs;
    ret = 0;
Exit:
    if (fp != NULL)
        fclose(fp);
    return ret;
}

static int is_visible(const struct dirent *d)
{
    return d->d_name[0] != '.';
}

static int replay_path(const char *path)
{
    struct dirent **names;
    struct stat st;
    int n, ret = 0;

    if (stat(path, &st) != 0) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode))
        return replay_file(path);
    if ((n = scandir(path, &names, is_visible, alphasort)) < 0) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    for (int i = 0; i != n; ++i) {
        char file[4096];
        snprintf(file, sizeof(file), "%s/%s", path, names[i]->d_name);
        if (ret == 0 && stat(file, &st) == 0 && S_ISREG(st.st_mode))
            ret = replay_file(file);
        free(names[i]);
    }
    free(names);
    return ret;
}

int main(int argc, char **argv)
{
    const char *name = strrchr(argv[0], '/') != NULL ? strrchr(argv[0], '/') + 1 : argv[0];

    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS-DIR|FILE...\n", name);
        return 2;
    }
    if (LLVMFuzzerInitialize != NULL)
        LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; ++i)
        if (replay_path(argv[i]) != 0)
            return 1;
    if (num_inputs == 0) {
        fprintf(stderr, "%s: no input found (an empty corpus replays nothing)\n", name);
        return 1;
    }
    fprintf(stderr, "%s: %zu input(s) replayed\n", name, num_inputs);
    return 0;
}

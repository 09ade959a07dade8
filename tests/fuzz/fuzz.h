/**
 * @file fuzz.h
 * What every fuzz target shares. A target is one file, tests/fuzz/NAME.c, that defines LLVMFuzzerTestOneInput (and,
 * when it needs a set-up made once per process, LLVMFuzzerInitialize); it is built twice: against libFuzzer in a clang
 * build with WEIR_FUZZ=ON, and with replay_main.c in every other build, where ctest replays its corpus.
 *
 * Checks use FUZZ_CHECK, never assert(): release builds define NDEBUG, and a target's properties must hold there too.
 */
#ifndef WEIR_TESTS_FUZZ_H
#define WEIR_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/** libFuzzer's entry point: runs one input; returns 0. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/** libFuzzer's optional one-time set-up, called before the first input. */
int LLVMFuzzerInitialize(int *argc, char ***argv);

/** Aborts (a crash for libFuzzer, a failure for the replay) with the failed condition. */
#define FUZZ_CHECK(cond)                                                                                                           \
    do {                                                                                                                           \
        if (!(cond))                                                                                                               \
            fuzz_fail(__FILE__, __LINE__, #cond);                                                                                  \
    } while (0)

__attribute__((noreturn)) static inline void fuzz_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "%s:%d: check failed: %s\n", file, line, what);
    abort();
}

#endif

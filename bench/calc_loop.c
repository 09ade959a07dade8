/*
 * The bare /calc loop, timed alone: calls weir_calc_sum_squares(n, &cancel), with a cancel flag that is never set, as
 * weir's /calc runs it on its work pool, ITER times (after a warm-up) and prints the median, minimum and mean wall time
 * of one call and its mean CPU time (CLOCK_THREAD_CPUTIME_ID), so that bench/bench.py can set weir's time per /calc
 * request against it.
 *
 * usage: calc_loop [n = 1000000] [iterations = 300]
 * CMake target calc_loop (bench/CMakeLists.txt, outside `all`), linked with weir_core, the library the server is built
 * from (no link-time optimisation, so the call is not inlined); bench/run.sh builds it into build-release/bench/.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "weir/calc.h"

static double now_ms(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
    long iters = argc > 2 ? strtol(argv[2], NULL, 10) : 300;
    if (n > WEIR_CALC_N_LIMIT || iters < 1 || iters > 1000000) {
        fprintf(stderr, "usage: calc_loop [n <= %llu] [iterations 1..1000000]\n", (unsigned long long)WEIR_CALC_N_LIMIT);
        return 2;
    }
    double *t = malloc(sizeof(*t) * (size_t)iters);
    if (t == NULL)
        return 1;
    volatile unsigned __int128 sink = 0;
    int never = 0; /* the cancel flag weir's /calc gives the loop; never set here */
    for (int i = 0; i < 10; ++i)
        sink ^= weir_calc_sum_squares(n, &never);
    unsigned __int128 result = 0;
    double total = 0, cpu_start = now_ms(CLOCK_THREAD_CPUTIME_ID);
    for (long i = 0; i < iters; ++i) {
        double start = now_ms(CLOCK_MONOTONIC);
        result = weir_calc_sum_squares(n, &never);
        t[i] = now_ms(CLOCK_MONOTONIC) - start;
        sink ^= result;
        total += t[i];
    }
    double cpu = now_ms(CLOCK_THREAD_CPUTIME_ID) - cpu_start;
    qsort(t, (size_t)iters, sizeof(*t), cmp_double);
    char buf[48];
    weir_u128_to_str(result, buf);
    printf("n=%llu iterations=%ld median_ms=%.4f min_ms=%.4f mean_ms=%.4f cpu_ms=%.4f result=%s\n", (unsigned long long)n, iters,
           t[iters / 2], t[0], total / iters, cpu / iters, buf);
    free(t);
    return 0;
}

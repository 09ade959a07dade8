/*
 * The bare /calc loop, timed alone: calls weir_calc_sum_squares(n, &cancel), with a cancel flag that is never set, as
 * weir's /calc runs it on its work pool, ITER times (after a warm-up) and prints the median, minimum and mean wall time
 * of one call and its mean CPU time (CLOCK_THREAD_CPUTIME_ID), so that the bench can set weir's time per /calc
 * request against it. It also times, interleaved with it, the reference loop below, which is weir's loop as it was
 * before sums could be cancelled (one loop, no blocks, no flag): the ratio of the two medians is what the cancellation
 * checks cost.
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

/* weir_calc_sum_squares before cancellation (a3e73dd): the same loop body, without the blocks and the flag. It stores
 * its result in a volatile, so that the compiler cannot take it for a pure function and call it once for the run (the
 * real one is in another file, out of the optimiser's sight). */
static volatile unsigned __int128 reference_out;

__attribute__((noinline)) static unsigned __int128 reference_sum_squares(uint64_t n)
{
    uint64_t lo = 0, hi = 0;
    for (uint64_t i = 0; i < n; ++i) {
        uint64_t sq = i * i;
        __asm__("" : "+r"(sq));
        uint64_t prev = lo;
        lo += sq;
        hi += lo < prev;
    }
    reference_out = (unsigned __int128)hi << 64 | lo;
    return reference_out;
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
    double *t = malloc(sizeof(*t) * (size_t)iters), *ref = malloc(sizeof(*ref) * (size_t)iters);
    if (t == NULL || ref == NULL)
        return 1;
    volatile unsigned __int128 sink = 0;
    int never = 0; /* the cancel flag weir's /calc gives the loop; never set here */
    for (int i = 0; i < 10; ++i) {
        sink ^= weir_calc_sum_squares(n, &never);
        sink ^= reference_sum_squares(n);
    }
    unsigned __int128 result = 0;
    double total = 0, cpu_main = 0, cpu_at = now_ms(CLOCK_THREAD_CPUTIME_ID);
    for (long i = 0; i < iters; ++i) {
        double start = now_ms(CLOCK_MONOTONIC);
        result = weir_calc_sum_squares(n, &never);
        t[i] = now_ms(CLOCK_MONOTONIC) - start;
        sink ^= result;
        total += t[i];
        cpu_main += now_ms(CLOCK_THREAD_CPUTIME_ID) - cpu_at;
        /* the reference, right after: both see the same conditions */
        start = now_ms(CLOCK_MONOTONIC);
        unsigned __int128 r = reference_sum_squares(n);
        ref[i] = now_ms(CLOCK_MONOTONIC) - start;
        if (r != result) {
            fprintf(stderr, "calc_loop: the reference loop disagrees\n");
            return 1;
        }
        cpu_at = now_ms(CLOCK_THREAD_CPUTIME_ID);
    }
    double cpu = cpu_main;
    qsort(t, (size_t)iters, sizeof(*t), cmp_double);
    qsort(ref, (size_t)iters, sizeof(*ref), cmp_double);
    char buf[48];
    weir_u128_to_str(result, buf);
    printf("n=%llu iterations=%ld median_ms=%.4f min_ms=%.4f mean_ms=%.4f cpu_ms=%.4f ref_median_ms=%.4f ref_min_ms=%.4f "
           "result=%s\n",
           (unsigned long long)n, iters, t[iters / 2], t[0], total / iters, cpu / iters, ref[iters / 2], ref[0], buf);
    free(t);
    free(ref);
    return 0;
}

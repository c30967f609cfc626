/* Round trip of one cache line between CPU 0 and CPU 1: two pinned threads bounce a counter.
 *
 *   cc -O2 -pthread core_to_core.c -o core_to_core && ./core_to_core REPS
 *
 * Prints one line per repetition: nanoseconds per round trip, averaged over 20,000 bounces (about 4 ms).
 * Used by latency_flip.py to see the host's placement of the two vCPUs (benchmarks/RESULTS.md, run X). */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { BOUNCES = 20000 };
static _Atomic long counter __attribute__((aligned(64)));

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void *answer(void *unused) {  /* CPU 1: turns each odd value into the next even one */
    (void)unused;
    pin(1);
    for (long i = 0; i < BOUNCES; i++) {
        while (atomic_load(&counter) != 2 * i + 1) {}
        atomic_store(&counter, 2 * i + 2);
    }
    return NULL;
}

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 1;
    pin(0);
    for (int r = 0; r < reps; r++) {
        pthread_t other;
        atomic_store(&counter, 0);
        pthread_create(&other, NULL, answer, NULL);
        double start = seconds();
        for (long i = 0; i < BOUNCES; i++) {
            atomic_store(&counter, 2 * i + 1);
            while (atomic_load(&counter) != 2 * i + 2) {}
        }
        double elapsed = seconds() - start;
        pthread_join(other, NULL);
        printf("%.0f\n", elapsed / BOUNCES * 1e9);
    }
    return 0;
}

// tock-clock: prints CLOCK_MONOTONIC in nanoseconds and exits. `tock bench latency` runs it as the job's script:
// the first thing the new process does is read the clock, so the reading marks "the script is running". A C
// program linked against libc alone (ops/up builds it with the C compiler, not SwiftPM, which would link the Swift
// runtime into it): a shell or the Swift runtime would add milliseconds of start-up before the reading.
#include <stdio.h>
#include <time.h>

int main(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    printf("%lld\n", (long long)now.tv_sec * 1000000000LL + now.tv_nsec);
    return 0;
}

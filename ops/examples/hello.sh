#!/bin/sh
# A first job: says hello to its arguments and shows what Tock passes to every script.
echo "hello, ${*:-world}"
echo "run $TOCK_RUN_ID of $TOCK_JOB (attempt $TOCK_ATTEMPT, trigger $TOCK_TRIGGER${TOCK_SCHEDULED_FOR:+, scheduled for $TOCK_SCHEDULED_FOR})"

#!/bin/sh
# A daily report: disk use of the file systems this worker sees. Non-zero exit when one is over 90%.
df -h -x tmpfs -x devtmpfs 2>/dev/null || df -h
full=$(df -P -x tmpfs -x devtmpfs 2>/dev/null | awk 'NR > 1 && $5 + 0 > 90 { print $6 }')
if [ -n "$full" ]; then
    echo "over 90% full: $full" >&2
    exit 1
fi

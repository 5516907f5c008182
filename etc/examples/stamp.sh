#!/bin/sh
# Timestamping echo: answers each line as "[ctime]: line".
while IFS= read -r line; do
    printf '[%s]: %s\n' "$(date '+%a %b %e %H:%M:%S %Y')" "$line"
done

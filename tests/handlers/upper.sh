#!/bin/sh
# Uppercase each line as it arrives.
while IFS= read -r line; do
    printf '%s\n' "$line" | tr '[:lower:]' '[:upper:]'
done

#!/bin/sh
# Uppercase echo: each line comes back in capitals, as soon as it arrives.
while IFS= read -r line; do
    printf '%s\n' "$line" | tr '[:lower:]' '[:upper:]'
done

#!/bin/sh
# Answer after $1 seconds (a handler still running across reloads and stops).
sleep "${1:-1}"
echo done

#!/bin/sh
# Die of SIGSEGV without reading anything.
kill -SEGV $$

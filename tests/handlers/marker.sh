#!/bin/sh
# Leave proof that the handler ran.
echo ran > "$1"

#!/bin/sh
# "What time is it?": one line with the current date and time, then close.
exec date '+%A, %B %e, %Y %H:%M:%S %Z'

#!/bin/sh
# clawsd benchmark: make sure the Debian packages `make bench' needs are
# there (those that build clawsd, plus the libstrophe relay's and the
# orchestrator's).  Quiet when nothing is missing.  As root, installs what
# is missing; otherwise says what to install and exits 1.
exec sh "$(dirname "$0")/../deps.sh" bench

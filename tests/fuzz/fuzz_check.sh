#!/bin/sh
# fuzz_check: the fuzz targets in `make check` (scripts/fuzz.sh check): builds
# them with clang + libFuzzer + ASan + UBSan (in build-fuzz/ at the top of
# the tree, incrementally), replays every seed corpus of tests/fuzz/corpus/
# once with leak checks, then fuzzes each target FUZZ_SECONDS (default 15)
# seconds.  Any crash, sanitizer report, leak or timeout fails; without
# clang the test is skipped (77).
top=${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
exec "$top/scripts/fuzz.sh" check

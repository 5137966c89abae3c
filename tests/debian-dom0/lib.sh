# Shell helpers shared by dom0-check.sh (dom0, bash) and domu-check.sh (the Debian
# domU's init, dash): sourced, not run.

# wait_for SECONDS CMD...: polls CMD once a second until it succeeds or time runs out (a
# hang fails the check that waits; nothing is timed).
wait_for() {
  local n=$1
  shift
  until "$@" > /dev/null 2>&1; do
    n=$((n - 1))
    [ "$n" -le 0 ] && return 1
    sleep 1
  done
}

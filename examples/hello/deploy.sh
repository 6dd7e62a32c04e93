#!/bin/sh
# deploy.sh: deploys the hello binary of a release on this machine.
#
# Sluice's release service runs it in a checkout of the released commit with:
#   SLUICE_ARTIFACTS_DIR    the release's artifacts (the binary is $SLUICE_ARTIFACTS_DIR/hello)
#   SLUICE_RELEASE_VERSION  the version being released
#   SLUICE_ENVIRONMENT      the environment's name (staging, ...)
#   SLUICE_STATE_DIR        a directory kept between deploys of this environment
#                           (by Sluice's state store, on whichever release replica deploys)
#   HELLO_ADDR              the address the service listens on
#
# It stops the process of the previous deploy (TERM, then KILL after 5s),
# installs the binary under $SLUICE_STATE_DIR/releases/<version>/, starts it
# detached from the caller (its output goes to $SLUICE_STATE_DIR/hello.log)
# and records its pid in $SLUICE_STATE_DIR/hello.pid. It keeps only the
# running release's binary there.
#
# A hello deployed from another state directory (an earlier `make run` with
# another data directory, left running after Ctrl-C) may still hold the
# address. The deploy finds it by its command line (a deployed hello's,
# with this address) among the processes in /proc and stops it: no file is
# shared between data directories (a step's TMPDIR is its run's own).
# Anything else on the address is left alone, and the deploy fails saying
# so.
set -eu

: "${SLUICE_ARTIFACTS_DIR:?SLUICE_ARTIFACTS_DIR is not set}"
: "${SLUICE_RELEASE_VERSION:?SLUICE_RELEASE_VERSION is not set}"
: "${SLUICE_STATE_DIR:?SLUICE_STATE_DIR is not set}"
env_name=${SLUICE_ENVIRONMENT:-unknown}
addr=${HELLO_ADDR:-127.0.0.1:18180}
version=$SLUICE_RELEASE_VERSION

case $version in
  '' | . | .. | */* | *[[:space:]]*)
    echo "deploy: refusing release version '$version'" >&2
    exit 1
    ;;
esac

artifact=$SLUICE_ARTIFACTS_DIR/hello
if [ ! -f "$artifact" ]; then
  echo "deploy: no binary at $artifact" >&2
  exit 1
fi

mkdir -p "$SLUICE_STATE_DIR"
state_dir=$(cd "$SLUICE_STATE_DIR" && pwd -P)
pidfile=$state_dir/hello.pid
logfile=$state_dir/hello.log
release_dir=$state_dir/releases/$version
bin=$release_dir/hello

log() { echo "deploy[$env_name]: $*"; }

# alive PID: true when PID is a running process (a zombie counts as gone).
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  if [ -r "/proc/$1/stat" ]; then
    # The state is the field after the parenthesised command name.
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || state=
    [ "$state" != Z ] || return 1
  fi
  return 0
}

# command_of PID: PID's command line, arguments separated by spaces; empty
# when it cannot be read.
command_of() {
  if [ -r "/proc/$1/cmdline" ]; then
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true
  else
    ps -o args= -p "$1" 2>/dev/null || true
  fi
}

# ours PID: true when PID runs a hello deployed from this state directory
# (the pid may have been reused since the pid file was written). Where the
# command line cannot be read, the pid file is trusted.
ours() {
  [ -r "/proc/$1/cmdline" ] || return 0
  case $(command_of "$1") in
    "$state_dir"/releases/*/hello\ *) return 0 ;;
  esac
  return 1
}

# hello_on_addr PID: true when PID runs a hello deployed by this script,
# from any state directory, listening on $addr. Unlike ours, it needs to
# read the command line.
hello_on_addr() {
  case $(command_of "$1") in
    */releases/*/hello\ -addr\ "$addr"\ -version\ *) return 0 ;;
  esac
  return 1
}

# signal_and_wait SIGNAL PID TENTHS: sends SIGNAL to PID and waits up to
# TENTHS tenths of a second for it to end.
signal_and_wait() {
  kill "-$1" "$2" 2>/dev/null || true
  i=0
  while alive "$2" && [ "$i" -lt "$3" ]; do
    sleep 0.1
    i=$((i + 1))
  done
}

# stop PID WHAT: TERM, then KILL after 5s; fails if PID is still running.
stop() {
  log "stopping $2 $1 (TERM)"
  signal_and_wait TERM "$1" 50
  if alive "$1"; then
    log "process $1 still running after 5s; sending KILL"
    signal_and_wait KILL "$1" 20
  fi
  if alive "$1"; then
    echo "deploy: could not stop process $1" >&2
    exit 1
  fi
  log "$2 $1 stopped"
}

# read_pid FILE: the pid in FILE's first line, digits only.
read_pid() { head -n 1 "$1" 2>/dev/null | tr -cd '0-9'; }

# 1. Stop the previous deploy.
if [ -f "$pidfile" ]; then
  old_pid=$(read_pid "$pidfile")
  if [ -z "$old_pid" ]; then
    log "ignoring pid file $pidfile without a pid"
  elif ! alive "$old_pid"; then
    log "previous process $old_pid is not running"
  elif ! ours "$old_pid"; then
    log "pid $old_pid is not a deployed hello any more; leaving it alone"
  else
    stop "$old_pid" "previous process"
  fi
  rm -f "$pidfile"
fi

# 2. Stop a hello an earlier deploy from another state directory left on
# the address: a process whose command line is a deployed hello's on $addr.
for proc_dir in /proc/[0-9]*; do
  other_pid=${proc_dir#/proc/}
  [ "$other_pid" != "$$" ] || continue
  if hello_on_addr "$other_pid" && alive "$other_pid"; then
    other_cmd=$(command_of "$other_pid")
    stop "$other_pid" "the hello deployed from ${other_cmd%%/releases/*}, still on $addr: process"
  fi
done

# 3. Install the binary (copy then rename, so a half-written file never runs).
mkdir -p "$release_dir"
cp "$artifact" "$bin.tmp.$$"
chmod +x "$bin.tmp.$$"
mv -f "$bin.tmp.$$" "$bin"
log "installed $artifact as $bin"

# 4. Start it fully detached: its own session when setsid exists, stdin from
# /dev/null and stdout/stderr to the log, so that it keeps none of the
# caller's pipes. The wrapper shell writes its own pid, then execs the binary,
# so the pid file names the service whatever setsid does.
if command -v setsid >/dev/null 2>&1; then
  detach="setsid"
else
  detach="nohup"
fi
echo "=== $(date -u +%Y-%m-%dT%H:%M:%SZ) deploy $version to $env_name on $addr" >>"$logfile"
log_start=$(wc -l <"$logfile")
cd "$state_dir"
# shellcheck disable=SC2016 # the wrapper expands $$, $0 and $@ itself
$detach sh -c 'echo "$$" >"$0.tmp" && mv -f "$0.tmp" "$0" && exec "$@"' \
  "$pidfile" "$bin" -addr "$addr" -version "$version" \
  </dev/null >>"$logfile" 2>&1 &

# 5. Wait for the pid file, then check the process is still up.
i=0
while [ ! -s "$pidfile" ] && [ "$i" -lt 50 ]; do
  sleep 0.1
  i=$((i + 1))
done
if [ ! -s "$pidfile" ]; then
  echo "deploy: $bin did not start (no pid file); log:" >&2
  tail -n 20 "$logfile" >&2 || true
  exit 1
fi
new_pid=$(cat "$pidfile")
sleep 0.5
if ! alive "$new_pid"; then
  rm -f "$pidfile"
  echo "deploy: hello $version (pid $new_pid) exited right after starting; its log:" >&2
  tail -n "+$((log_start + 1))" "$logfile" | tail -n 15 >&2 || true
  if tail -n "+$((log_start + 1))" "$logfile" | grep -q 'address already in use'; then
    echo "deploy: $addr is taken by a process that is not a hello this script deployed, so it was left alone;" >&2
    echo "deploy: stop that process, or give the environment another HELLO_ADDR (and verify URL) in .sluice.yaml" >&2
  fi
  exit 1
fi
log "started hello $version on $addr with pid $new_pid (using $detach)"
log "pid file $pidfile, log $logfile"

# 6. Keep only the running release's binary: Sluice stores the state
# directory between deploys (its size is bounded by release's
# max-state-size), so the binaries of earlier releases must not pile up in
# it. A rollback gets its binary from its release's artifacts again.
for old_dir in "$state_dir"/releases/*; do
  [ -d "$old_dir" ] && [ "$old_dir" != "$release_dir" ] || continue
  rm -rf "$old_dir"
  log "removed $old_dir"
done

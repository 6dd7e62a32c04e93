#!/bin/sh
# deploy.sh: deploys the hello binary of a release on this machine.
#
# Sluice's release service runs it in a checkout of the released commit with:
#   SLUICE_ARTIFACTS_DIR    the release's artifacts (the binary is $SLUICE_ARTIFACTS_DIR/hello)
#   SLUICE_RELEASE_VERSION  the version being released
#   SLUICE_ENVIRONMENT      the environment's name (staging, ...)
#   SLUICE_STATE_DIR        a directory kept between deploys of this environment
#   HELLO_ADDR              the address the service listens on
#
# It stops the process of the previous deploy (TERM, then KILL after 5s),
# installs the binary under $SLUICE_STATE_DIR/releases/<version>/, starts it
# detached from the caller (its output goes to $SLUICE_STATE_DIR/hello.log)
# and records its pid in $SLUICE_STATE_DIR/hello.pid.
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

# ours PID: true unless /proc shows PID runs something other than a deployed
# hello (the pid may have been reused since the pid file was written).
ours() {
  [ -r "/proc/$1/cmdline" ] || return 0
  cmd=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 0
  case $cmd in
    "$state_dir"/releases/*/hello\ *) return 0 ;;
  esac
  return 1
}

# 1. Stop the previous deploy.
if [ -f "$pidfile" ]; then
  old_pid=$(tr -cd '0-9' <"$pidfile")
  if [ -z "$old_pid" ]; then
    log "ignoring pid file $pidfile without a pid"
  elif ! alive "$old_pid"; then
    log "previous process $old_pid is not running"
  elif ! ours "$old_pid"; then
    log "pid $old_pid is not a deployed hello any more; leaving it alone"
  else
    log "stopping previous process $old_pid (TERM)"
    kill -TERM "$old_pid" 2>/dev/null || true
    i=0
    while alive "$old_pid" && [ "$i" -lt 50 ]; do
      sleep 0.1
      i=$((i + 1))
    done
    if alive "$old_pid"; then
      log "process $old_pid still running after 5s; sending KILL"
      kill -KILL "$old_pid" 2>/dev/null || true
      i=0
      while alive "$old_pid" && [ "$i" -lt 20 ]; do
        sleep 0.1
        i=$((i + 1))
      done
    fi
    if alive "$old_pid"; then
      echo "deploy: could not stop process $old_pid" >&2
      exit 1
    fi
    log "previous process $old_pid stopped"
  fi
  rm -f "$pidfile"
fi

# 2. Install the binary (copy then rename, so a half-written file never runs).
mkdir -p "$release_dir"
cp "$artifact" "$bin.tmp.$$"
chmod +x "$bin.tmp.$$"
mv -f "$bin.tmp.$$" "$bin"
log "installed $artifact as $bin"

# 3. Start it fully detached: its own session when setsid exists, stdin from
# /dev/null and stdout/stderr to the log, so that it keeps none of the
# caller's pipes. The wrapper shell writes its own pid, then execs the binary,
# so the pid file names the service whatever setsid does.
if command -v setsid >/dev/null 2>&1; then
  detach="setsid"
else
  detach="nohup"
fi
echo "=== $(date -u +%Y-%m-%dT%H:%M:%SZ) deploy $version to $env_name on $addr" >>"$logfile"
cd "$state_dir"
# shellcheck disable=SC2016 # the wrapper expands $$, $0 and $@ itself
$detach sh -c 'echo "$$" >"$0.tmp" && mv -f "$0.tmp" "$0" && exec "$@"' \
  "$pidfile" "$bin" -addr "$addr" -version "$version" \
  </dev/null >>"$logfile" 2>&1 &

# 4. Wait for the pid file, then check the process is still up.
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
  echo "deploy: $bin (pid $new_pid) exited right after starting; log:" >&2
  tail -n 20 "$logfile" >&2 || true
  rm -f "$pidfile"
  exit 1
fi
log "started hello $version on $addr with pid $new_pid (using $detach)"
log "pid file $pidfile, log $logfile"

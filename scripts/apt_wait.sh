# Sourced by setup.sh: apt-get that waits for another package manager's lock instead of failing.
# A fresh Ubuntu desktop often runs its own apt-get (unattended upgrades) for minutes after login.
# apt waits by itself with DPkg::Lock::Timeout; the loop covers the lists lock and older apt that
# fail at once with "Could not get lock".
APT_GET=${APT_GET:-apt-get}
APT_LOCK_WAIT_SECONDS=${APT_LOCK_WAIT_SECONDS:-900}
APT_LOCK_POLL_SECONDS=${APT_LOCK_POLL_SECONDS:-5}

apt_get_waiting_for_lock() {
  local deadline=$((SECONDS + APT_LOCK_WAIT_SECONDS)) output status sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  while true; do
    status=0
    output=$($sudo env DEBIAN_FRONTEND=noninteractive "$APT_GET" -o DPkg::Lock::Timeout=60 "$@" 2>&1) || status=$?
    if [ "$status" -eq 0 ]; then
      return 0
    fi
    if ! grep -qiE 'could not get lock|unable to acquire the dpkg|unable to lock' <<<"$output" \
        || [ "$SECONDS" -ge "$deadline" ]; then
      printf '%s\n' "$output" >&2
      return "$status"
    fi
    echo "waiting for another package manager (apt or dpkg) to finish..." >&2
    sleep "$APT_LOCK_POLL_SECONDS"
  done
}

#!/usr/bin/env bash
# Cron wrapper for `rotator rotate --all`: loads the MotherDuck admin token from a
# root-only file, runs rotator, and sends its output to syslog/journal (tag "rotator").
#
# Install:
#   install -o root -g root -m 0755 rotator-cron.sh /usr/local/lib/rotator/rotator-cron.sh
#   install -o root -g root -m 0600 /dev/null /etc/rotator/admin-token
#   $EDITOR /etc/rotator/admin-token              # the token alone on one line
#   install -o root -g root -m 0644 rotator.cron /etc/cron.d/rotator
#
# Settings (environment, all optional):
#   ROTATOR_BIN          rotator executable        (default /opt/rotator/venv/bin/rotator)
#   ROTATOR_CONFIG       config file               (default /etc/rotator/rotator.toml)
#   ROTATOR_TOKEN_FILE   admin-token file          (default /etc/rotator/admin-token)
#   ROTATOR_ENV_FILE     extra KEY=value lines, e.g. VAULT_ROLE_ID/VAULT_SECRET_ID
#                        (default /etc/rotator/rotator.env, root-only, skipped if absent)
#
# Exit status is rotator's: 0 ok, 1 rolled back, 2 config/credentials, 3 incomplete
# (resumed next time), 4 needs attention. Non-zero also goes to syslog at err priority.
set -euo pipefail
umask 077

rotator_bin="${ROTATOR_BIN:-/opt/rotator/venv/bin/rotator}"
config="${ROTATOR_CONFIG:-/etc/rotator/rotator.toml}"
token_file="${ROTATOR_TOKEN_FILE:-/etc/rotator/admin-token}"
env_file="${ROTATOR_ENV_FILE:-/etc/rotator/rotator.env}"
tag="rotator"

say() { logger -t "$tag" -p "user.$1" -- "$2"; }

# A secret file anyone else can read (or replace) is refused, not used.
root_only() {
  local file="$1" owner mode
  owner="$(stat -c %u -- "$file")"
  mode="$(stat -c %a -- "$file")"
  if [[ "$owner" != 0 ]] || (( (8#$mode & 8#077) != 0 )); then
    say err "$file must be owned by root and not accessible to group/others (chmod 600)"
    exit 2
  fi
}

if [[ ! -r "$token_file" ]]; then
  say err "admin token file $token_file is missing or unreadable"
  exit 2
fi
root_only "$token_file"
MOTHERDUCK_ADMIN_TOKEN="$(tr -d '[:space:]' <"$token_file")"
export MOTHERDUCK_ADMIN_TOKEN

if [[ -f "$env_file" ]]; then
  root_only "$env_file"
  set -a
  # shellcheck source=/dev/null
  . "$env_file"
  set +a
fi

# JSON log lines (secrets redacted) and the per-account results (--json) both go to
# syslog; journald keeps them under SYSLOG_IDENTIFIER=rotator. A logger that dies does
# not stop rotator (output it cannot write is dropped, the run goes on), and the status
# kept is rotator's own (PIPESTATUS), not logger's.
set +e
"$rotator_bin" --config "$config" --log-format json rotate --all --json 2>&1 \
  | logger -t "$tag" -p user.info
status=${PIPESTATUS[0]}
set -e

case "$status" in
  0) ;;
  3) say warning "rotation incomplete (lease held or interrupted); the next run resumes it" ;;
  1) say err "a rotation failed and was rolled back; the old token is still valid (see above)" ;;
  2) say err "config or credential error; nothing was changed (see above)" ;;
  *) say crit "rotator exited $status: needs attention; run: rotator --config $config status" ;;
esac
exit "$status"

#!/usr/bin/env bash
# Make a Raspberry Pi (Raspberry Pi OS Bookworm with desktop) show the
# checkpoint's screen at boot: Chromium in kiosk mode on http://127.0.0.1:8080/,
# in a labwc session logged in automatically, never blanking. Run as root from
# this source tree after deploy/install.sh; deploy/kiosk/README.md says what each
# step does and how to undo it. Safe to run again.
set -euo pipefail

readonly USAGE="usage: sudo deploy/kiosk/install-kiosk.sh [--user NAME] [--dry-run] [--help]"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
readonly HERE
readonly LAUNCHER=/usr/local/bin/checkpoint-kiosk-browser

user=${SUDO_USER:-}
dry_run=0
while (($#)); do
    case $1 in
    --user)
        (($# >= 2)) || { echo "$USAGE" >&2; exit 2; }
        user=$2
        shift 2
        ;;
    --dry-run) dry_run=1; shift ;;
    -h | --help) echo "$USAGE"; exit 0 ;;
    *) printf 'install-kiosk.sh: unknown option %s\n%s\n' "$1" "$USAGE" >&2; exit 2 ;;
    esac
done

die() {
    printf 'install-kiosk.sh: %s\n' "$*" >&2
    exit 1
}

run() {
    printf '+ %s\n' "$*"
    ((dry_run)) || "$@"
}

[[ -n $user && $user != root ]] || die "name the desktop user that shows the screen: --user NAME (or run with sudo)"
home=$(getent passwd "$user" | cut -d: -f6) || die "no such user: $user"
group=$(id -gn "$user")
((dry_run)) || (($(id -u) == 0)) || die "run as root (sudo), or --dry-run"

# 1. the browser (Raspberry Pi OS with desktop has it; older images call it chromium-browser)
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
    run apt-get install -y --no-install-recommends chromium
fi

# 2. the launcher: waits for the screen, restarts the browser, no crash bubble
run install -m 0755 "$HERE/checkpoint-kiosk-browser" "$LAUNCHER"

# 3. the session's autostart: only the screen (no panel, no desktop, no blanking)
autostart=$home/.config/labwc/autostart
run install -d -m 0755 -o "$user" -g "$group" "$home/.config" "$home/.config/labwc"
if [[ -f $autostart && ! -f $autostart.orig ]] && ! cmp -s "$autostart" "$HERE/labwc/autostart"; then
    run mv "$autostart" "$autostart.orig" # the previous one, kept once
fi
run install -m 0644 -o "$user" -g "$group" "$HERE/labwc/autostart" "$autostart"

# 4. labwc, desktop autologin as $user, no screen blanking
if command -v raspi-config >/dev/null; then
    run raspi-config nonint do_wayland W3
    run env SUDO_USER="$user" raspi-config nonint do_boot_behaviour B4
    run raspi-config nonint do_blanking 1
else
    echo "raspi-config not found: make the desktop log $user in automatically into a labwc session yourself"
fi

echo "Done: reboot to start the screen (sudo reboot)."

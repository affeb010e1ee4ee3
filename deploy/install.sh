#!/usr/bin/env bash
# Install checkpoint-edge as a service on a Raspberry Pi kiosk (Raspberry Pi OS
# Bookworm or Debian 12), from the source tree this script lives in.
#
# Each step looks before it acts: what is already in place is left alone and
# reported ("ok: ..."), so running it again changes nothing. What it does and
# every option: deploy/README.md and --help.
set -euo pipefail

readonly USAGE="usage: deploy/install.sh [--dry-run] [--root DIR] [--wheel FILE] [--no-deps] [--start] [--help]"

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
readonly SRC
readonly PYTHON=/usr/bin/python3 # Debian's: the one python3-picamera2 and python3-lgpio are built for
readonly SVC=checkpoint-edge     # the service user, its group and the unit's name
readonly PREFIX=/opt/checkpoint-edge
readonly VENV=$PREFIX/venv
readonly STAMP=$VENV/checkpoint-edge.installed # what the venv's package was built from
readonly BIN_LINK=/usr/local/bin/checkpoint-edge
readonly CONF_DIR=/etc/checkpoint-edge
readonly STATE_DIR=/var/lib/checkpoint-edge
readonly VOICES_DIR=/usr/local/share/checkpoint-edge/voices # [kiosk] voices (the default)
readonly UNIT=checkpoint-edge.service
readonly UNIT_DIR=/etc/systemd/system
readonly GROUPS_NEEDED=(gpio video)
readonly APT_PACKAGES=(
    python3 python3-venv python3-setuptools python3-wheel # the venv, and building the package offline
    libzbar0                                               # pyzbar, the QR decoder everywhere
    ca-certificates                                        # TLS to the broker when no ca_file is set
    espeak-ng sox libsox-fmt-base                          # the screen's voices; sox measures OGG clips
)
readonly APT_PACKAGES_RASPI=(
    python3-picamera2 # [camera] source = "picamera2"
    python3-lgpio     # [gpio] pin_factory = "lgpio"
)

usage() {
    cat <<EOF
$USAGE

Install checkpoint-edge from this source tree ($SRC) as a systemd service.
Run as root. Each step is skipped when already done; running it again changes
nothing.

  1. apt packages: ${APT_PACKAGES[*]};
     on Raspberry Pi OS also ${APT_PACKAGES_RASPI[*]}
  2. system user $SVC (home $STATE_DIR, no login shell), in groups ${GROUPS_NEEDED[*]}
  3. virtual environment $VENV (--system-site-packages: it sees picamera2
     and lgpio), the package in it, and $BIN_LINK
  4. the screen's Vietnamese and English voices, made by espeak-ng into
     $VOICES_DIR (checkpoint-edge lang voices; again only when their texts change)
  5. $CONF_DIR/config.toml from deploy/config.example.toml, never overwritten
     (a newer example goes beside it as config.toml.example); the directory is
     mode 0750, owner root, group $SVC
  6. systemd/$UNIT into $UNIT_DIR, daemon-reload, enable

Options:
  --dry-run     print every command it would run and every file it would
                write; change nothing (works without root)
  --root DIR    install into the directory tree DIR instead of this system, for
                tests and images: no apt-get, no daemon-reload; the user and
                groups go into DIR/etc/passwd and DIR/etc/group. (The venv's
                scripts name DIR in their paths: it runs from DIR, not from a
                system booted from DIR.)
  --wheel FILE  install this wheel instead of building one from the source tree
  --no-deps     install the package without its Python dependencies (numpy,
                OpenCV, ...): for tests, offline and fast; the service will not
                run until they are installed
  --start       start the service (restart it if this run changed it)
  -h, --help    this help

Exit status: 0 done, 1 a step failed or not root, 2 usage.
EOF
}

die() {
    printf 'install.sh: %s\n' "$*" >&2
    exit 1
}

usage_error() {
    printf 'install.sh: %s\n%s\n' "$1" "$USAGE" >&2
    exit 2
}

DRY_RUN=0
ROOT=""
WHEEL=""
NO_DEPS=0
START=0
while (($#)); do
    case $1 in
    --dry-run) DRY_RUN=1 ;;
    --root | --wheel)
        (($# >= 2)) || usage_error "$1 needs an argument"
        if [[ $1 == --root ]]; then ROOT=$2; else WHEEL=$2; fi
        shift
        ;;
    --root=*) ROOT=${1#--root=} ;;
    --wheel=*) WHEEL=${1#--wheel=} ;;
    --no-deps) NO_DEPS=1 ;;
    --start) START=1 ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) usage_error "unknown option: $1" ;;
    esac
    shift
done

if [[ -n $ROOT ]]; then
    [[ -d $ROOT ]] || usage_error "--root: no such directory: $ROOT"
    ROOT=$(cd "$ROOT" && pwd -P)
    [[ $ROOT != / ]] || ROOT=""
fi
if [[ -n $WHEEL ]]; then
    [[ -f $WHEEL && $WHEEL == *.whl ]] || usage_error "--wheel: not a wheel file: $WHEEL"
    WHEEL=$(cd "$(dirname "$WHEEL")" && pwd -P)/$(basename "$WHEEL")
fi
if ((START)) && [[ -n $ROOT ]]; then
    usage_error "--start cannot be used with --root"
fi
if ((!DRY_RUN)) && ((EUID != 0)); then
    die "must be run as root (try sudo, or --dry-run to see what it would do)"
fi
readonly DRY_RUN ROOT WHEEL NO_DEPS START

CHANGES=0
PACKAGE_CHANGED=0
UNIT_CHANGED=0
WORK=""        # a temporary build directory, removed at exit
BUILT_WHEEL=""
declare -A PLANNED_DIRS=() # directories a dry run would have made
trap '[[ -z $WORK ]] || rm -rf "$WORK"' EXIT

step() { printf '\n== %s\n' "$*"; }
ok() { printf 'ok: %s\n' "$*"; }
note() { printf '%s\n' "$*"; }
changed() { CHANGES=$((CHANGES + 1)); }

# Run a command that changes something (printed either way), or only print it.
run() {
    local cmd
    cmd=$(printf '%q ' "$@")
    if ((DRY_RUN)); then
        printf 'would run: %s\n' "${cmd% }"
    else
        printf '+ %s\n' "${cmd% }"
        "$@"
    fi
    changed
}

# A path of the target system: under --root DIR, inside DIR.
target() { printf '%s%s' "$ROOT" "$1"; }

systemctl_target() {
    if [[ -n $ROOT ]]; then systemctl --root="$ROOT" "$@"; else systemctl "$@"; fi
}

# The passwd or group line of NAME on the target, or nothing.
account() {
    if [[ -n $ROOT ]]; then
        grep -m1 "^$2:" "$ROOT/etc/$1" 2>/dev/null || true
    else
        getent "$1" "$2" || true
    fi
}

# The numeric id of a user or group (the target's, which the host may not know);
# in a dry run the name stands in for one not created yet.
id_of() {
    local line
    line=$(account "$1" "$2")
    if [[ -n $line ]]; then
        cut -d: -f3 <<<"$line"
    elif ((DRY_RUN)); then
        printf '%s\n' "$2"
    else
        die "no $1 entry for $2"
    fi
}

# Make the directory of FILE if it is missing (and not made earlier in a dry run).
ensure_parent() {
    local dir
    dir=$(dirname "$1")
    [[ -d $dir || -n ${PLANNED_DIRS[$dir]:-} ]] || run mkdir -p "$dir"
    PLANNED_DIRS[$dir]=1
}

# Install SRC as DST with MODE and owner, unless DST already is exactly that
# (then return 1).
put_file() {
    local src=$1 dst=$2 mode=$3 owner=$4 what=$5
    if [[ -f $dst ]] && cmp -s "$src" "$dst" &&
        [[ $(stat -c '%a %u:%g' "$dst") == "${mode#0} $owner" ]]; then
        ok "$what: $dst is up to date"
        return 1
    fi
    ensure_parent "$dst"
    if ((DRY_RUN)); then
        note "would write: $dst (mode $mode, owner $owner) from $src"
    else
        # (Called as a condition, where set -e is off: check by hand.)
        install -m "$mode" -o "${owner%:*}" -g "${owner#*:}" "$src" "$dst" || die "cannot write $dst"
        note "wrote: $dst (mode $mode, owner $owner)"
    fi
    changed
}

# A directory with MODE and owner: created, or its mode and owner put right.
ensure_dir() {
    local dir=$1 mode=$2 owner=$3
    if [[ ! -d $dir ]]; then
        run install -d -m "$mode" -o "${owner%:*}" -g "${owner#*:}" "$dir"
        PLANNED_DIRS[$dir]=1
    elif [[ $(stat -c '%a %u:%g' "$dir") != "${mode#0} $owner" ]]; then
        note "$dir is $(stat -c '%a %u:%g' "$dir"); setting $mode $owner"
        run chown "$owner" "$dir"
        run chmod "$mode" "$dir"
    else
        ok "$dir (mode $mode, owner $owner)"
    fi
}

is_raspberry_pi_os() {
    grep -Eqrs 'archive\.raspberrypi\.(com|org)' /etc/apt/sources.list /etc/apt/sources.list.d/
}

step_apt() {
    step "apt packages"
    if [[ -n $ROOT ]]; then
        note "skipped: --root (the target needs: ${APT_PACKAGES[*]}; on Raspberry Pi OS also ${APT_PACKAGES_RASPI[*]})"
        return
    fi
    local wanted=("${APT_PACKAGES[@]}") missing=() pkg
    if is_raspberry_pi_os; then
        wanted+=("${APT_PACKAGES_RASPI[@]}")
    else
        note "skipped: ${APT_PACKAGES_RASPI[*]} (not Raspberry Pi OS: no archive.raspberrypi.com in the apt sources)"
    fi
    for pkg in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if ((${#missing[@]} == 0)); then
        ok "already installed: ${wanted[*]}"
        return
    fi
    run apt-get update -q
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

step_user() {
    step "service user and groups"
    local db group uid gid
    if [[ -n $ROOT ]]; then
        # useradd/groupadd --prefix edit DIR/etc without chroot; they need the files.
        for db in passwd group shadow gshadow; do
            if [[ ! -e $ROOT/etc/$db ]]; then
                run install -D -m "$([[ $db == *shadow ]] && echo 0640 || echo 0644)" /dev/null "$ROOT/etc/$db"
            fi
        done
    fi
    local prefix=()
    [[ -z $ROOT ]] || prefix=(--prefix "$ROOT")
    for group in "${GROUPS_NEEDED[@]}"; do
        if [[ -n $(account group "$group") ]]; then
            ok "group $group exists"
        else
            run groupadd "${prefix[@]}" --system "$group"
        fi
    done
    if [[ -z $(account passwd "$SVC") ]]; then
        run useradd "${prefix[@]}" --system --user-group --home-dir "$STATE_DIR" --no-create-home \
            --shell /usr/sbin/nologin --comment "checkpoint-edge kiosk service" \
            --groups "$(IFS=, && echo "${GROUPS_NEEDED[*]}")" "$SVC"
    else
        ok "user $SVC exists"
        for group in "${GROUPS_NEEDED[@]}"; do
            if [[ ,$(account group "$group" | cut -d: -f4), == *,"$SVC",* ]]; then
                ok "user $SVC is in group $group"
            else
                run usermod "${prefix[@]}" --append --groups "$group" "$SVC"
            fi
        done
    fi
    # Its home is the service's StateDirectory (systemd sets its mode at start):
    # made here only if missing, and left alone after.
    if [[ -d $(target "$STATE_DIR") ]]; then
        ok "$(target "$STATE_DIR") exists"
    else
        uid=$(id_of passwd "$SVC")
        gid=$(id_of group "$SVC")
        run install -d -m 0750 -o "$uid" -g "$gid" "$(target "$STATE_DIR")"
    fi
}

# What the package in the venv is built from, and whether with dependencies.
source_fingerprint() {
    local hash
    if [[ -n $WHEEL ]]; then
        hash=$(sha256sum "$WHEEL" | cut -c1-64)
        printf 'wheel %s sha256:%s' "$(basename "$WHEEL")" "$hash"
    else
        hash=$(cd "$SRC" && find pyproject.toml README.md edge -type f \
            ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 |
            LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-64)
        printf 'source %s sha256:%s' "$SRC" "$hash"
    fi
    if ((NO_DEPS)); then printf ' no-deps\n'; else printf ' with-deps\n'; fi
}

# Build the wheel of the source tree with the venv's setuptools, offline, into
# a temporary directory; set BUILT_WHEEL to its path.
build_wheel() {
    local venv=$1 version work
    version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$SRC/pyproject.toml")
    if ((DRY_RUN)); then
        work=${TMPDIR:-/tmp}/checkpoint-edge.XXXXXX # shown, never made
        note "would copy: pyproject.toml README.md edge/ from $SRC to $work/src"
    else
        WORK=$(mktemp -d)
        work=$WORK
        mkdir "$work/src" "$work/dist"
        tar -C "$SRC" --exclude=__pycache__ --exclude='*.pyc' -cf - pyproject.toml README.md edge |
            tar -C "$work/src" -xf -
    fi
    # pyproject.toml names its licence as an SPDX string (PEP 639, setuptools >= 77);
    # Debian 12's setuptools (66) only reads the older table form of the same text.
    if ! "$venv/bin/python" -c 'import setuptools, sys
sys.exit(int(setuptools.__version__.split(".")[0]) < 77)' 2>/dev/null; then
        if ((DRY_RUN)); then
            note "would write the licence as a table in the copy's pyproject.toml (setuptools < 77)"
        else
            sed -i 's/^license = "\(.*\)"$/license = { text = "\1" }/' "$work/src/pyproject.toml"
        fi
    fi
    run "$venv/bin/python" -m pip wheel --quiet --no-deps --no-build-isolation --no-index \
        --wheel-dir "$work/dist" "$work/src"
    BUILT_WHEEL=$work/dist/checkpoint_edge-$version-py3-none-any.whl
    ((DRY_RUN)) || [[ -f $BUILT_WHEEL ]] || die "the build made no $BUILT_WHEEL"
}

venv_is_healthy() {
    local venv=$1
    [[ -x $venv/bin/python ]] && "$venv/bin/python" -c '' 2>/dev/null &&
        grep -qx 'include-system-site-packages = true' "$venv/pyvenv.cfg"
}

step_venv() {
    step "virtual environment"
    local venv stamp want wheel
    venv=$(target "$VENV")
    stamp=$(target "$STAMP")
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        if ((DRY_RUN)); then
            note "note: $PYTHON is missing or older than 3.11 (the apt step installs it)"
        else
            die "$PYTHON is missing or older than 3.11"
        fi
    fi
    if venv_is_healthy "$venv"; then
        ok "$venv (with system site packages)"
    elif [[ -e $venv ]]; then
        note "$venv does not run or does not see the system's packages: making it again"
        run "$PYTHON" -m venv --clear --system-site-packages "$venv"
    else
        run "$PYTHON" -m venv --system-site-packages "$venv"
    fi

    want=$(source_fingerprint)
    if [[ -f $stamp && $(<"$stamp") == "$want" ]] && "$venv/bin/python" -c 'import edge' 2>/dev/null; then
        ok "checkpoint-edge $("$venv/bin/python" -c 'import edge; print(edge.__version__)') is installed from $(cut -d' ' -f1-2 <<<"$want")"
    else
        if [[ -n $WHEEL ]]; then
            wheel=$WHEEL
        else
            # Built from a copy: the source tree may be read-only, and stays clean.
            build_wheel "$venv"
            wheel=$BUILT_WHEEL
        fi
        if ((!NO_DEPS)); then
            run "$venv/bin/python" -m pip install --quiet "$wheel"
        fi
        run "$venv/bin/python" -m pip install --quiet --no-deps --force-reinstall "$wheel"
        if ((DRY_RUN)); then
            note "would write: $stamp"
        else
            printf '%s\n' "$want" >"$stamp"
            note "installed checkpoint-edge $("$venv/bin/python" -c 'import edge; print(edge.__version__)') into $venv"
        fi
        PACKAGE_CHANGED=1
    fi
    if ((NO_DEPS)); then
        note "note: --no-deps: the Python dependencies are not installed; the service will not run without them"
    elif ((!DRY_RUN)); then
        "$venv/bin/checkpoint-edge" --version >/dev/null || die "$venv/bin/checkpoint-edge does not run"
    fi

    local link
    link=$(target "$BIN_LINK")
    if [[ -L $link && $(readlink "$link") == "$VENV/bin/checkpoint-edge" ]]; then
        ok "$link -> $VENV/bin/checkpoint-edge"
    else
        ensure_parent "$link"
        run ln -sfn "$VENV/bin/checkpoint-edge" "$link"
    fi
}

step_voices() {
    step "voices"
    local cli out said
    cli=$(target "$VENV")/bin/checkpoint-edge
    out=$(target "$VOICES_DIR")
    if ((NO_DEPS)); then
        note "skipped: --no-deps (the package cannot run yet; later: checkpoint-edge lang voices --out $VOICES_DIR)"
    elif [[ -n $ROOT ]] && ! command -v espeak-ng >/dev/null; then
        note "skipped: --root and no espeak-ng here (on the target: checkpoint-edge lang voices --out $VOICES_DIR)"
    elif ((DRY_RUN)); then
        printf 'would run: %s lang voices --out %s\n' "$cli" "$out"
    else
        said=$("$cli" lang voices --out "$out") || die "the voices could not be made (is espeak-ng installed?)"
        printf '%s\n' "$said"
        if grep -q ': made: ' <<<"$said"; then changed; fi
    fi
}

step_config() {
    step "config"
    local owner conf example
    owner="0:$(id_of group "$SVC")"
    ensure_dir "$(target "$CONF_DIR")" 0750 "$owner"
    ensure_dir "$(target "$CONF_DIR/tls")" 0750 "$owner"
    ensure_dir "$(target "$CONF_DIR/credentials")" 0700 "0:0"
    conf=$(target "$CONF_DIR/config.toml")
    example=$SRC/deploy/config.example.toml
    if [[ ! -e $conf ]]; then
        put_file "$example" "$conf" 0640 "$owner" "config" || true
    elif cmp -s "$example" "$conf"; then
        ok "$conf is still the unedited example: edit it (below)"
    else
        ok "$conf exists and is kept as it is"
        if put_file "$example" "$conf.example" 0640 "$owner" "example config"; then
            note "the example of this version is beside it: diff $CONF_DIR/config.toml $CONF_DIR/config.toml.example"
        fi
    fi
}

step_unit() {
    step "systemd unit"
    local src=$SRC/systemd/$UNIT
    if put_file "$src" "$(target "$UNIT_DIR/$UNIT")" 0644 0:0 "unit"; then
        UNIT_CHANGED=1
    fi
    if ! grep -q "^ExecStart=$VENV/bin/checkpoint-edge " "$src"; then
        note "warning: $UNIT does not run $VENV/bin/checkpoint-edge (its ExecStart: $(grep -m1 '^ExecStart=' "$src" || echo none))"
    fi
    if [[ -n $ROOT ]]; then
        note "skipped: systemctl daemon-reload (--root)"
    elif [[ ! -d /run/systemd/system ]]; then
        note "skipped: systemctl daemon-reload (systemd is not running here)"
    elif ((UNIT_CHANGED)); then
        run systemctl daemon-reload
    else
        ok "unit unchanged: no daemon-reload needed"
    fi

    step "enable"
    if systemctl_target is-enabled --quiet "$UNIT" 2>/dev/null; then
        ok "$UNIT is enabled"
    elif [[ -n $ROOT ]]; then
        run systemctl --root="$ROOT" enable "$UNIT"
    else
        run systemctl enable "$UNIT"
    fi
}

step_start() {
    [[ -z $ROOT && -d /run/systemd/system ]] || return 0
    local active=0
    systemctl is-active --quiet "$UNIT" && active=1
    if ((START)); then
        step "start"
        if ((!active)); then
            run systemctl start "$UNIT"
        elif ((PACKAGE_CHANGED || UNIT_CHANGED)); then
            run systemctl restart "$UNIT"
        else
            ok "$UNIT is running"
        fi
    elif ((active && (PACKAGE_CHANGED || UNIT_CHANGED))); then
        note "note: $UNIT is running the previous version: systemctl restart $UNIT"
    fi
}

next_steps() {
    cat <<EOF

Next:
  1. Edit $CONF_DIR/config.toml: [device] id (the certificate's CN), [mqtt] host,
     [trust] files. Copy the kiosk's TLS files (deploy/mosquitto/README.md,
     "Add a kiosk"): ca.pem, <id>.pem as device.pem and fleet-signing.pub.pem
     into $CONF_DIR/tls/; the key <id>.key as $CONF_DIR/credentials/mqtt-key
     (mode 0600, root: systemd hands it to the service alone).
  2. checkpoint-edge check-config $CONF_DIR/config.toml
  3. systemctl start $SVC
  4. checkpoint-edge doctor; journalctl -u $SVC -f
EOF
}

main() {
    ((!DRY_RUN)) || note "dry run: nothing is changed; commands and files are printed"
    [[ -z $ROOT ]] || note "target: $ROOT (--root)"
    step_apt
    step_user
    step_venv
    step_voices
    step_config
    step_unit
    step_start
    echo
    if ((DRY_RUN)); then
        note "Dry run: $CHANGES change(s) would be made; nothing was changed."
    elif ((CHANGES == 0)); then
        note "Nothing changed: everything was already installed."
    else
        note "Installed: $CHANGES change(s)."
    fi
    next_steps
}

main

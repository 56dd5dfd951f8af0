#!/usr/bin/env bash
# Runs a command with Debian 13's Swift toolchain on a Debian 12 host, in a
# cached trixie chroot (Debian 12 has no Swift compiler; Debian 13's
# `swiftlang` package is Swift 6).
#
#   swift-chroot.sh [--bind HOST_DIR:CHROOT_DIR]... [--env NAME=VALUE]... [--cd DIR] -- COMMAND [ARG]...
#
# The first run makes the chroot: `debootstrap --variant=minbase trixie`
# (debootstrap's default mirror), then `apt-get install --no-install-recommends
# swiftlang libc6-dev` inside it; a few minutes, once per machine. It is kept in
# $LLAMETTE_SWIFT_CHROOT (default /var/cache/llamette-swift-trixie) and
# reused by later runs; a stamp file marks it complete, so an interrupted
# first run starts over. Runs on one machine are serialised with flock.
#
# For the command, /proc is mounted and /dev bind-mounted in the chroot, plus
# each --bind (HOST_DIR bind-mounted at CHROOT_DIR, created if needed); all of
# it is unmounted on exit, whatever the exit. The command runs as root with
# HOME=/root, a plain PATH and each --env, in DIR (--cd) if given. Exits with
# its status.
#
# Needs root and debootstrap (apt-get install debootstrap).
set -euo pipefail

chroot_dir=${LLAMETTE_SWIFT_CHROOT:-/var/cache/llamette-swift-trixie}
# Bump when the package set changes: an older chroot is then rebuilt.
stamp_text="llamette swift chroot v1: trixie minbase + swiftlang libc6-dev"
stamp=$chroot_dir/.llamette-swift-ready

binds=()
envs=()
workdir=/
while [ $# -gt 0 ]; do
    case $1 in
    --bind) binds+=("$2"); shift 2 ;;
    --env) envs+=("$2"); shift 2 ;;
    --cd) workdir=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "usage: swift-chroot.sh [--bind HOST:CHROOT]... [--env NAME=VALUE]... [--cd DIR] -- COMMAND..." >&2; exit 2 ;;
    esac
done
[ $# -gt 0 ] || { echo "swift-chroot.sh: no command" >&2; exit 2; }

log() { echo "swift-chroot: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
    log "needs root (debootstrap, chroot, mount)"
    exit 1
fi

# Everything mounted here is unmounted on exit, last first.
mounted=()
cleanup() {
    local i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" 2>/dev/null ||
            log "could not unmount ${mounted[i]}"
    done
    mounted=()
}
child=
# shellcheck disable=SC2317  # (called by the traps)
on_signal() {
    [ -z "$child" ] || kill -TERM "$child" 2>/dev/null
    [ -z "$child" ] || wait "$child" 2>/dev/null
    exit "$1"
}
trap cleanup EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

mount_in() { # mount_in TARGET MOUNT-ARGS...
    local target=$1
    shift
    mount "$@" "$target"
    mounted+=("$target")
}

make_chroot() {
    local partial=$chroot_dir.partial t0=$SECONDS
    if ! command -v debootstrap >/dev/null; then
        log "debootstrap is missing: apt-get install debootstrap"
        return 1
    fi
    log "creating the Debian 13 (trixie) chroot with Swift in $chroot_dir (once per machine; a few minutes)"
    # A leftover from an interrupted run may still have mounts in it.
    if [ -d "$partial" ]; then
        grep -o " $partial/[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m" || true; done
        rm -rf --one-file-system "$partial"
    fi
    if [ -d "$chroot_dir" ]; then
        grep -o " $chroot_dir/[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m" || true; done
        rm -rf --one-file-system "$chroot_dir"
    fi
    mkdir -p "$(dirname "$partial")"
    debootstrap --variant=minbase trixie "$partial" >"$partial.log" 2>&1 || {
        tail -20 "$partial.log" >&2
        log "debootstrap failed (full log: $partial.log)"
        return 1
    }
    cp /etc/resolv.conf "$partial/etc/resolv.conf"
    mount_in "$partial/proc" -t proc proc
    if ! chroot "$partial" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        DEBIAN_FRONTEND=noninteractive sh -c \
        'apt-get update -qq && apt-get install -y -qq --no-install-recommends swiftlang libc6-dev && apt-get clean' \
        >>"$partial.log" 2>&1; then
        tail -20 "$partial.log" >&2
        log "installing swiftlang failed (full log: $partial.log)"
        return 1
    fi
    cleanup
    mv "$partial" "$chroot_dir"
    rm -f "$partial.log"
    echo "$stamp_text" >"$stamp"
    log "chroot ready in $((SECONDS - t0)) s"
}

mkdir -p "$(dirname "$chroot_dir")"
exec 9>"$chroot_dir.lock"
flock 9
if [ "$(cat "$stamp" 2>/dev/null)" != "$stamp_text" ]; then
    make_chroot
else
    log "using the cached chroot $chroot_dir"
fi

cp /etc/resolv.conf "$chroot_dir/etc/resolv.conf" 2>/dev/null || true
mount_in "$chroot_dir/proc" -t proc proc
mount_in "$chroot_dir/dev" --bind /dev
for b in "${binds[@]}"; do
    host=${b%%:*}
    inside=$chroot_dir${b#*:}
    mkdir -p "$inside"
    mount_in "$inside" --bind "$host"
done

# In the background, so that a signal to this script unmounts at once (bash
# runs traps only between commands); the command's stdin stays this one's.
{ true <&0; } 2>/dev/null || exec 0</dev/null  # no stdin at all (CI): an empty one
set +e
# shellcheck disable=SC2016  # (the inner sh expands them)
chroot "$chroot_dir" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 TERM="${TERM:-dumb}" ${envs[@]+"${envs[@]}"} \
    sh -c 'cd "$1" && shift && exec "$@"' sh "$workdir" "$@" <&0 &
child=$!
wait "$child"
status=$?
child=
set -e
exit "$status"

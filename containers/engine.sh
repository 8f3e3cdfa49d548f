#!/usr/bin/env bash
# A private Docker engine for tests and CI: no registry is reachable here, so everything is local.
#
#   containers/engine.sh start       install docker.io + debootstrap if absent, start dockerd on a
#                                    private socket, print `export DOCKER_HOST=unix://...`
#   containers/engine.sh base-image  build (once, cached) the test base image from debootstrap
#   containers/engine.sh stop        stop the dockerd this script started, by its PID
#   containers/engine.sh env         print the DOCKER_HOST line
#   containers/engine.sh status      exit 0 if the dockerd this script starts is running
#
# State lives in $SEGKIT_ENGINE_DIR (default /var/tmp/segkit-engine): data-root (images are cached
# between runs), the socket, dockerd.pid, dockerd.log and the cached root file system tarball.
# dockerd runs with the vfs storage driver (works on any file system, no overlay mounts), and no
# iptables, ip6tables or bridge (containers get --network none or the host's loopback only).
set -euo pipefail

DIR=${SEGKIT_ENGINE_DIR:-/var/tmp/segkit-engine}
SOCK="$DIR/docker.sock"
PIDFILE="$DIR/dockerd.pid"
BASE_IMAGE=${SEGKIT_TEST_BASE_IMAGE:-segkit-test-base:bookworm}
SUITE=${SEGKIT_BASE_SUITE:-bookworm}
MIRROR=${SEGKIT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
export DOCKER_HOST="unix://$SOCK"

log() { echo "engine: $*" >&2; }

need_root() {
    if [ "$(id -u)" != 0 ]; then
        log "needs root (dockerd and debootstrap do)"; exit 3
    fi
}

install_tools() {
    if command -v dockerd >/dev/null && command -v debootstrap >/dev/null && command -v docker >/dev/null; then
        return
    fi
    need_root
    log "installing docker.io and debootstrap from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends docker.io debootstrap ca-certificates >&2
}

running() {
    [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

start() {
    install_tools
    need_root
    mkdir -p "$DIR/data"
    if running; then
        log "dockerd already running (pid $(cat "$PIDFILE"))"
    else
        rm -f "$SOCK"
        # setsid: dockerd gets its own session so that the caller's terminal signals do not reach it
        setsid dockerd --storage-driver vfs --iptables=false --ip6tables=false --bridge=none \
            --data-root "$DIR/data" --exec-root "$DIR/exec" -H "unix://$SOCK" \
            --pidfile "$DIR/dockerd.daemon.pid" >"$DIR/dockerd.log" 2>&1 </dev/null &
        echo $! >"$PIDFILE"
        for _ in $(seq 1 120); do
            if docker version >/dev/null 2>&1; then break; fi
            if ! running; then log "dockerd exited; see $DIR/dockerd.log"; tail -n 20 "$DIR/dockerd.log" >&2; exit 1; fi
            sleep 0.5
        done
        docker version >/dev/null 2>&1 || { log "dockerd did not answer within 60 s"; exit 1; }
        log "dockerd started (pid $(cat "$PIDFILE")), socket $SOCK"
    fi
    echo "export DOCKER_HOST=$DOCKER_HOST"
}

stop() {
    if ! running; then log "no dockerd started by this script is running"; rm -f "$PIDFILE"; return; fi
    local pid
    pid=$(cat "$PIDFILE")
    kill -TERM "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then log "dockerd $pid ignored SIGTERM for 30 s; sending SIGKILL"; kill -KILL "$pid"; fi
    rm -f "$PIDFILE" "$SOCK"
    log "dockerd $pid stopped"
}

base_image() {
    if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        log "base image $BASE_IMAGE present"; return
    fi
    local tarball="$DIR/$SUITE-minbase.tar"
    if [ ! -s "$tarball" ]; then
        need_root
        local root="$DIR/rootfs.partial"
        rm -rf "$root"
        log "debootstrap $SUITE (minbase + python3) into $root"
        debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
            "$SUITE" "$root" "$MIRROR" >&2
        # no apt lists, caches or docs in the image
        rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
            "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
        tar -C "$root" --numeric-owner -cf "$tarball.tmp" .
        mv "$tarball.tmp" "$tarball"
        rm -rf "$root"
    fi
    docker import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
        -c 'CMD ["/bin/bash"]' "$tarball" "$BASE_IMAGE" >&2
    log "imported $BASE_IMAGE"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    base-image) base_image ;;
    env) echo "export DOCKER_HOST=$DOCKER_HOST" ;;
    status) running ;;
    *) echo "usage: $0 start|base-image|stop|env|status" >&2; exit 64 ;;
esac

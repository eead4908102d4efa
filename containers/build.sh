#!/usr/bin/env bash
# Build the cass-hpc image; `make container` runs this from the repository root.
#
#   containers/build.sh [--engine apptainer|podman|docker] [--sif cass.sif]
#                       [--tag localhost/cass-hpc:latest] [--base IMAGE] [--debootstrap]
#                       [--archive cass.tar]
#
# Engine: apptainer (containers/cass.def -> cass.sif) where installed, else podman, else docker
# (containers/Containerfile -> an OCI image); --engine picks one. With podman or docker, the
# host's pip settings (pip config list: index-url, extra-index-url, find-links, cert) are passed
# to the build and their local files mounted read-only, so a local wheel mirror (this project's
# dev machines keep torch there) is used instead of downloading several GB, and a site's own CA
# bundle (an intercepting proxy) is trusted as on the host.
#   --base IMAGE     the BASE_IMAGE build argument (default: the recipe's python:3.11.7-slim)
#   --debootstrap    podman: make the base without a registry (Debian bookworm minbase +
#                    python3 by debootstrap, imported as localhost/cass-base:bookworm; reused)
#   --archive FILE   podman/docker: also save the image as a docker-archive, for
#                    `apptainer build cass.sif docker-archive://FILE` on a machine with apptainer
# Environment: PODMAN_FLAGS (global podman flags, e.g. --runtime runc), BUILD_FLAGS (extra build
# flags, e.g. --network=host), PYTHON (whose pip config is read; default python3).
set -euo pipefail
me=containers/build.sh
engine=auto sif=cass.sif tag=localhost/cass-hpc:latest base="" debootstrap=0 archive=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --engine) engine=$2; shift 2 ;;
    --sif) sif=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --base) base=$2; shift 2 ;;
    --debootstrap) debootstrap=1; shift ;;
    --archive) archive=$2; shift 2 ;;
    -h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "$me: unknown option $1 (see $me --help)" >&2; exit 2 ;;
  esac
done
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ $engine == auto ]]; then
  if command -v apptainer >/dev/null; then engine=apptainer
  elif command -v podman >/dev/null; then engine=podman
  elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then engine=docker
  else
    echo "make container: no container engine here: install apptainer (clusters), podman or docker (see containers/README.md)" >&2
    exit 1
  fi
fi
if ! command -v "$engine" >/dev/null; then
  echo "make container: $engine is not installed (see containers/README.md)" >&2
  exit 1
fi

if [[ $engine == apptainer ]]; then
  args=()
  [[ -n $base ]] && args+=(--build-arg "BASE_IMAGE=$base")
  echo "$me: apptainer build $sif containers/cass.def" >&2
  exec apptainer build "${args[@]}" "$sif" containers/cass.def
fi

# podman / docker: the Containerfile, the host's pip index settings, and their local folders.
pip_vars=() volumes=()
read_pip_config() {
  "${PYTHON:-python3}" -m pip config list 2>/dev/null | sed -n \
    "s/^[^=]*\.\(index-url\|extra-index-url\|find-links\|cert\)='\(.*\)'$/\1 \2/p"
}
declare -A pip_settings=()
while read -r key value; do
  pip_settings[$key]=$value  # a later scope (user, env) overrides an earlier one, as in pip
done < <(read_pip_config)
for key in "${!pip_settings[@]}"; do
  value=${pip_settings[$key]}
  pip_vars+=("PIP_$(tr 'a-z-' 'A-Z_' <<<"$key")=$value")
  for location in $value; do
    path=${location#file://}
    [[ $path == /* && -e $path ]] || continue
    [[ $(basename "$path") == simple ]] && path=$(dirname "$path")  # an index links ../../files
    volumes+=(--volume "$path:$path:ro")  # a folder of wheels, an index, or pip's CA bundle
  done
done

if [[ $debootstrap == 1 ]]; then
  [[ $engine == podman ]] || { echo "$me: --debootstrap needs podman" >&2; exit 2; }
  base=localhost/cass-base:bookworm
  # shellcheck disable=SC2086  # PODMAN_FLAGS is a list of flags
  if podman ${PODMAN_FLAGS:-} image exists "$base"; then
    echo "$me: reusing $base (podman rmi $base to remake it)" >&2
  else
    command -v debootstrap >/dev/null || { echo "$me: --debootstrap needs debootstrap (apt-get install debootstrap)" >&2; exit 1; }
    root=$(mktemp -d "${TMPDIR:-/tmp}/cass-base.XXXXXX")
    trap 'rm -rf "$root" "$root.log"' EXIT
    echo "$me: debootstrap bookworm (minbase + python3) into $root" >&2
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" \
      "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$root.log" 2>&1 \
      || { echo "$me: debootstrap failed: $(tail -n 1 "$root.log")" >&2; exit 1; }
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    # shellcheck disable=SC2086
    tar -C "$root" -c . | podman ${PODMAN_FLAGS:-} import - "$base" >/dev/null
  fi
fi
args=(-f containers/Containerfile -t "$tag")
[[ -n $base ]] && args+=(--build-arg "BASE_IMAGE=$base")

if [[ $engine == podman ]]; then
  for var in "${pip_vars[@]}"; do args+=(--build-arg "$var"); done
  args+=(--ignorefile containers/Containerfile.dockerignore "${volumes[@]}")
  echo "$me: podman ${PODMAN_FLAGS:-} build ${BUILD_FLAGS:-} --jobs 1 ${args[*]} ." >&2
  # shellcheck disable=SC2086
  podman ${PODMAN_FLAGS:-} build ${BUILD_FLAGS:-} --jobs 1 "${args[@]}" .
  # shellcheck disable=SC2086
  [[ -z $archive ]] || podman ${PODMAN_FLAGS:-} save --format docker-archive -o "$archive" "$tag"
else
  # BuildKit reads containers/Containerfile.dockerignore by itself; it mounts no host folder
  # into a build, so only the host's remote index URLs are passed on.
  for var in "${pip_vars[@]}"; do [[ $var == *=http* ]] && args+=(--build-arg "$var"); done
  echo "$me: docker build ${BUILD_FLAGS:-} ${args[*]} ." >&2
  # shellcheck disable=SC2086
  DOCKER_BUILDKIT=1 docker build ${BUILD_FLAGS:-} "${args[@]}" .
  [[ -z $archive ]] || docker save -o "$archive" "$tag"
fi
echo "$me: built $tag" >&2

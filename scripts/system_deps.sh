#!/usr/bin/env bash
# The system packages of scripts/system-packages.txt: checked; installed with apt-get when run as root,
# otherwise set-up stops here with one line naming what is missing.
#   GS_LIBRARY_PATH=dir1:dir2  look for libraries only there (tests hide the system's libraries with it)
#   GS_APT=0                   never install, only report
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LIST="$ROOT/scripts/system-packages.txt"
PYTHON=${PYTHON:-python3}
command -v "$PYTHON" >/dev/null || PYTHON=python3

have_lib() {   # soname
  if [ -n "${GS_LIBRARY_PATH:-}" ]; then
    local d; IFS=: read -ra dirs <<<"$GS_LIBRARY_PATH"
    for d in "${dirs[@]}"; do [ -e "$d/$1" ] && return 0; done
    return 1
  fi
  [[ $(ldconfig -p 2>/dev/null) == *"$1 ("* ]]
}
have_dri() {   # Mesa driver file
  local d dirs=(/usr/lib/*/dri /usr/lib64/dri /usr/lib/dri)
  [ -n "${GS_LIBRARY_PATH:-}" ] && IFS=: read -ra dirs <<<"$GS_LIBRARY_PATH"
  for d in "${dirs[@]}"; do [ -e "$d/$1" ] || [ -e "$d/dri/$1" ] && return 0; done
  return 1
}
missing() {
  local pkg check kind what out=()
  while read -r pkg check _; do
    [[ -z ${pkg:-} || $pkg == \#* ]] && continue
    kind=${check%%:*}; what=${check#*:}
    case $kind in
      lib) have_lib "$what" ;;
      dri) have_dri "$what" ;;
      bin) command -v "$what" >/dev/null ;;
      py) "$PYTHON" -c "import $what" 2>/dev/null ;;
      header) [ -f "$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/$what" ] ;;
      *) echo "[setup] bad check '$check' in $LIST" >&2; false ;;
    esac || out+=("$pkg")
  done <"$LIST"
  echo "${out[*]}"
}

need=$(missing)
[ -z "$need" ] && exit 0
if [ "${GS_APT:-1}" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "[setup] installing system packages: $need"
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086
  (apt-get update -qq && apt-get install -y -qq --no-install-recommends $need) >/dev/null || {
    echo "[setup] apt-get could not install: $need" >&2; exit 1; }
  need=$(missing)
  [ -z "$need" ] && exit 0
fi
echo "[setup] missing system packages: $need (install them, e.g. sudo apt-get install $need, then re-run)" >&2
exit 1

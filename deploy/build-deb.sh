#!/usr/bin/env bash
# make deb: build the sensor's Debian package, dist/net-gazer-sensor_<version>_<arch>.deb.
#   deploy/build-deb.sh [OUT_DIR]
# The recipe is deploy/debian (debhelper; the rules make a private venv in /opt/net-gazer with
# Debian's own /usr/bin/python3). This script copies the source tree as git sees it (tracked and
# new files, nothing ignored) to build/deb, puts the recipe at its top as debian/, writes the
# changelog for the version in net_gazer/__init__.py, and runs dpkg-buildpackage there, so the
# working tree is never written to. Build dependencies: see deploy/debian/control.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$top/dist}" && cd "${1:-$top/dist}" && pwd)
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$top/net_gazer/__init__.py")
[[ -n "$version" ]] || { echo "build-deb: no __version__ in net_gazer/__init__.py" >&2; exit 1; }

for tool in dpkg-buildpackage dh git; do
    command -v "$tool" >/dev/null || {
        echo "build-deb: $tool is missing; install the build dependencies: apt-get install" \
            "debhelper dpkg-dev git python3-dev python3-venv libpcap-dev" >&2
        exit 1
    }
done

work="$top/build/deb"
src="$work/net-gazer-sensor-$version"
rm -rf "$work"
mkdir -p "$src"
git -C "$top" ls-files -z --cached --others --exclude-standard \
    | (cd "$top" && xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh) \
    | tar -C "$top" --null -T - -cf - | tar -C "$src" -xf -
cp -a "$top/deploy/debian" "$src/debian"

# The last commit's time, for a reproducible changelog date (and SOURCE_DATE_EPOCH for dh).
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$top" log -1 --format=%ct 2>/dev/null || date +%s)}
maintainer=$(sed -n 's/^Maintainer: //p' "$src/debian/control")
cat >"$src/debian/changelog" <<CHANGES
net-gazer-sensor ($version) unstable; urgency=medium

  * Built from the net-gazer source tree ($(git -C "$top" describe --always --dirty 2>/dev/null || echo unknown)).

 -- $maintainer  $(date -u -R -d "@$SOURCE_DATE_EPOCH")
CHANGES

(cd "$src" && dpkg-buildpackage -b -us -uc -rfakeroot)
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
deb="net-gazer-sensor_${version}_${arch}.deb"
mv "$work/$deb" "$out/$deb"
echo "build-deb: $out/$deb"

#!/usr/bin/env bash
# Installs the Vulkan loader and Mesa's lavapipe (a CPU Vulkan driver) from Debian bookworm-backports so
# that Dawn (npm `webgpu`) finds a WebGPU adapter on a machine without a GPU. Idempotent.
set -euo pipefail
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

have_backports_mesa() {
  dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | grep -q 'bpo' && [ -e /usr/lib/x86_64-linux-gnu/libvulkan.so.1 ]
}
if have_backports_mesa; then
  echo "lavapipe: Mesa $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers) already installed"
  exit 0
fi

src=/etc/apt/sources.list.d/debian.sources
bp=/etc/apt/sources.list.d/goe-backports.sources
if [ ! -f "$bp" ]; then
  if [ -f "$src" ]; then
    # The first stanza's URIs with the suite changed to bookworm-backports.
    uris=$(awk '/^URIs:/{print $2; exit}' "$src")
    keyring=$(awk '/^Signed-By:/{print $2; exit}' "$src")
  else
    uris=$(awk '$1=="deb" && $3=="bookworm"{print $2; exit}' /etc/apt/sources.list)
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  fi
  printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: %s\n' \
    "$uris" "${keyring:-/usr/share/keyrings/debian-archive-keyring.gpg}" | $SUDO tee "$bp" >/dev/null
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
  -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null
echo "lavapipe: Mesa $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers) installed"

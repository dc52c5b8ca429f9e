#!/usr/bin/env bash
# Installs Mesa's lavapipe, a Vulkan device in software, so that the wgpu backend runs on a
# machine without a GPU (CI): Debian's mesa-vulkan-drivers (and the Vulkan loader).
set -euo pipefail
if compgen -G "/usr/share/vulkan/icd.d/lvp_icd*.json" >/dev/null; then
    echo "lavapipe: present"
    exit 0
fi
echo "lavapipe: installing the Debian packages mesa-vulkan-drivers libvulkan1"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq mesa-vulkan-drivers libvulkan1
compgen -G "/usr/share/vulkan/icd.d/lvp_icd*.json" >/dev/null ||
    { echo "lavapipe: no lvp_icd*.json after the install" >&2; exit 1; }

#!/usr/bin/env bash
# Installs the real data the dwlth-data tests read. Idempotent: each step is skipped when its
# files are already there. Run as root (CI runs it as root) from anywhere in the repository.
#
# - Fashion-MNIST (70,000 images, MIT) from the Debian package `dataset-fashion-mnist`,
#   installed to /usr/share/datasets/fashion-mnist/*.gz (gzipped IDX).
# - foolbox 3.3.4's sample images (20 CIFAR-10 and 20 CIFAR-100 test PNGs, 20 ImageNet JPEGs,
#   named <set>_<index>_<label>.png|jpg) from the PyPI wheel, unpacked to
#   $DWLTH_TEST_DATA/foolbox (default: target/test-data/foolbox).
set -euo pipefail
cd "$(dirname "$0")/.."

FASHION_DIR=/usr/share/datasets/fashion-mnist
TEST_DATA="${DWLTH_TEST_DATA:-$PWD/target/test-data}"
FOOLBOX_DIR="$TEST_DATA/foolbox"
FOOLBOX_VERSION=3.3.4

fashion_files=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz
               t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)

have_fashion() {
    local f
    for f in "${fashion_files[@]}"; do
        [[ -s "$FASHION_DIR/$f" ]] || return 1
    done
}

if have_fashion; then
    echo "fashion-mnist: present in $FASHION_DIR"
else
    echo "fashion-mnist: installing the Debian package dataset-fashion-mnist"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq dataset-fashion-mnist
    have_fashion || { echo "fashion-mnist: files missing from $FASHION_DIR after install" >&2; exit 1; }
fi

# 60 images: 20 cifar10_*, 20 cifar100_*, 20 imagenet_*.
count_foolbox() {
    find "$FOOLBOX_DIR" -maxdepth 1 -type f \( -name '*.png' -o -name '*.jpg' \) 2>/dev/null | wc -l
}

if [[ "$(count_foolbox)" -ge 60 ]]; then
    echo "foolbox images: present in $FOOLBOX_DIR"
else
    echo "foolbox images: downloading foolbox==$FOOLBOX_VERSION"
    pip_cmd=()
    if command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1; then
        pip_cmd=(python3 -m pip)
    elif command -v pip3 >/dev/null; then
        pip_cmd=(pip3)
    else
        echo "foolbox images: no pip found (install python3-pip)" >&2
        exit 1
    fi
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    "${pip_cmd[@]}" download --quiet --no-deps --dest "$work" "foolbox==$FOOLBOX_VERSION"
    wheel="$(find "$work" -name "foolbox-$FOOLBOX_VERSION-*.whl" | head -n 1)"
    [[ -n "$wheel" ]] || { echo "foolbox images: wheel not downloaded" >&2; exit 1; }
    unzip -q -o "$wheel" 'foolbox/data/*' -d "$work/unpacked"
    # Unpack beside the destination, then swap it in: a half-copied folder never looks complete.
    mkdir -p "$TEST_DATA"
    staging="$TEST_DATA/.foolbox.tmp-$$"
    rm -rf "$staging"
    mkdir -p "$staging"
    cp "$work"/unpacked/foolbox/data/* "$staging"/
    rm -rf "$FOOLBOX_DIR"
    mv "$staging" "$FOOLBOX_DIR"
    echo "foolbox images: $(count_foolbox) files in $FOOLBOX_DIR"
fi

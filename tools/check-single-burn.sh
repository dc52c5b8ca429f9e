#!/usr/bin/env bash
# Checks that depending on any single dwlth crate builds the same Burn as the facade: for a
# downstream crate depending on one member crate by path (and one depending on the facade), and
# for the workspace's own `cargo test --workspace` and `cargo test -p <member>`, every package
# in Burn's dependency closure must be resolved with exactly the features the facade's build
# gives it. A package whose features differ is built differently, and so is every Burn crate
# above it: a second Burn.
#
#   tools/check-single-burn.sh [flex|wgpu|cuda]
#
# With a backend, every crate that has that feature is depended on with it (default features
# kept) and the facade with `dwlth/<backend>`; crates without it are skipped. No argument: the
# default features. Uses `cargo tree` only (nothing is compiled) and the workspace's Cargo.lock
# (copied into each downstream crate), offline; runs in a few seconds. Prints the packages that
# differ and exits 1 if any do.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
backend="${1:-}"
case "$backend" in
    "" | flex | wgpu | cuda) ;;
    *) echo "usage: $0 [flex|wgpu|cuda]" >&2; exit 2 ;;
esac
export CARGO_NET_OFFLINE=true

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The part of `cargo tree --prefix depth` rooted at `burn`, as "name version<TAB>features" lines
# (sorted, unique): the features every package of Burn's closure is built with.
burn_closure() { # dir, then cargo tree arguments
    local dir="$1"; shift
    (cd "$dir" && cargo tree --offline --prefix depth -f '{p}|{f}' -p burn "$@") |
        awk '
            match($0, /^[0-9]+/) {
                depth = substr($0, 1, RLENGTH) + 0; line = substr($0, RLENGTH + 1)
                split(line, part, "|"); pkg = part[1]; feats = part[2]
                sub(/ \(\*\)$/, "", feats)
                sub(/ \(proc-macro\)$/, "", pkg); sub(/ \(\/.*\)$/, "", pkg)
                if (depth == 0) { inside = (pkg ~ /^burn v/) }
                if (inside) print pkg "\t" feats
            }' | sort -u
}

# Compares one graph's closure with the reference; prints the differences, returns 1 if any.
compare() { # label, closure file
    local label="$1" file="$2" diffs
    if [ ! -s "$file" ]; then
        printf 'FAIL  %s: no Burn in its graph\n' "$label"; return 1
    fi
    diffs="$(awk -F'\t' '
        NR == FNR { if ($1 in ref) ref[$1] = ref[$1] " / " $2; else ref[$1] = $2; next }
        { if ($1 in got) got[$1] = got[$1] " / " $2; else got[$1] = $2 }
        END {
            for (p in ref) {
                if (!(p in got)) print p ": only in the facade'\''s Burn closure"
                else if (ref[p] != got[p]) {
                    nr = split(ref[p], r, ","); ng = split(got[p], g, ","); miss = ""; extra = ""
                    delete rs; delete gs
                    for (i = 1; i <= nr; i++) rs[r[i]] = 1
                    for (i = 1; i <= ng; i++) gs[g[i]] = 1
                    for (i = 1; i <= nr; i++) if (!(r[i] in gs)) miss = miss (miss == "" ? "" : ",") r[i]
                    for (i = 1; i <= ng; i++) if (!(g[i] in rs)) extra = extra (extra == "" ? "" : ",") g[i]
                    print p ": facade [" ref[p] "], here [" got[p] "]" \
                        (miss != "" ? "; missing " miss : "") (extra != "" ? "; extra " extra : "")
                }
            }
            for (p in got) if (!(p in ref)) print p ": only in this Burn closure"
        }' "$work/reference" "$file" | sort)"
    if [ -z "$diffs" ]; then
        printf 'ok    %s\n' "$label"; return 0
    fi
    printf 'FAIL  %s: %d package(s) of Burn'\''s closure differ\n' "$label" \
        "$(printf '%s\n' "$diffs" | wc -l)"
    printf '%s\n' "$diffs" | sed 's/^/        /'
    return 1
}

# A downstream crate depending on one crate by path, with the workspace's lock file.
downstream() { # crate name, path
    local name="$1" path="$2" dir="$work/$1" features=""
    mkdir -p "$dir/src"
    : > "$dir/src/lib.rs"
    [ -n "$backend" ] && features=", features = [\"$backend\"]"
    cat > "$dir/Cargo.toml" <<EOF
[package]
name = "downstream-of-$name"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
$name = { path = "$path"$features }

[workspace]
EOF
    cp "$root/Cargo.lock" "$dir/Cargo.lock"
    printf '%s\n' "$dir"
}

has_feature() { # Cargo.toml, feature
    awk -v f="$2" '/^\[/ { in_features = ($0 == "[features]") }
        in_features && $1 == f { found = 1 } END { exit !found }' "$1"
}

facade_features=()
[ -n "$backend" ] && facade_features=(--features "dwlth/$backend")

# The reference: the facade as the workspace builds it (`cargo build -p dwlth`).
burn_closure "$root" -p dwlth -e normal,build "${facade_features[@]}" > "$work/reference"
echo "reference: the facade dwlth${backend:+ with $backend}," \
    "Burn's closure of $(wc -l < "$work/reference") packages"

status=0
members=()
for manifest in "$root"/crates/*/Cargo.toml; do
    members+=("$(awk -F'"' '/^name *=/ { print $2; exit }' "$manifest")")
done

# `cargo test --workspace`: every member, with dev-dependencies, unified.
ws_args=()
for m in "${members[@]}"; do ws_args+=(-p "$m"); done
burn_closure "$root" "${ws_args[@]}" -p dwlth -e normal,build,dev "${facade_features[@]}" > "$work/ws"
compare "the workspace, all members with dev-dependencies" "$work/ws" || status=1

dir="$(downstream dwlth "$root")"
burn_closure "$dir" -e normal,build > "$work/facade"
compare "a crate depending on dwlth" "$work/facade" || status=1

for m in "${members[@]}"; do
    path="$root/crates/$m"
    deps="$(cd "$root" && cargo tree --offline -p "$m" -e normal --prefix none -f '{p}')"
    if ! grep -q '^burn v' <<< "$deps"; then
        continue # does not depend on Burn
    fi
    member_features=()
    if [ -n "$backend" ]; then
        if ! has_feature "$path/Cargo.toml" "$backend"; then
            printf 'skip  %s: no feature `%s`\n' "$m" "$backend"; continue
        fi
        member_features=(--features "$m/$backend")
    fi
    dir="$(downstream "$m" "$path")"
    burn_closure "$dir" -e normal,build > "$work/$m.closure"
    compare "a crate depending on $m alone" "$work/$m.closure" || status=1
    # `cargo test -p <member>` in the workspace: the member alone, with its dev-dependencies.
    burn_closure "$root" -p "$m" -e normal,build,dev "${member_features[@]}" > "$work/$m.ws"
    compare "the workspace, $m alone with dev-dependencies" "$work/$m.ws" || status=1
done

if [ "$status" -ne 0 ]; then
    echo "Burn's closure differs from the facade's:" \
        "depending on the crates above builds a second Burn."
fi
exit "$status"

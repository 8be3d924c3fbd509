#!/bin/sh
# make install's steps (mk/install.sh PREFIX SWIFT), kept out of the Makefile so the test suite can run
# them on an already built tree (a `swift build` from inside `swift test` would wait on its lock).
# Installs the built muxlab under PREFIX: the binary, its preloaded allocation counter, the plot script
# and muxlab.commit in PREFIX/lib/muxlab/; the Swift runtime libraries it links (those ldd resolves in
# the toolchain) in PREFIX/lib/muxlab/swift/; PREFIX/bin/muxlab, a script that runs it with those
# libraries first. The host then needs no Swift toolchain, only `make deps`' Debian libraries.
set -eu
prefix=${1:?usage: mk/install.sh PREFIX [SWIFT]}
swift=${2:-$(command -v swift || echo /opt/swift/usr/bin/swift)}
case "$prefix" in /*) ;; *) prefix="$(pwd)/$prefix" ;; esac
cd "$(dirname "$0")/.."   # the repository root, whatever the caller's directory
built=.build/release
for f in muxlab libMuxAllocCounter.so muxlab.commit muxlab_Plots.resources/muxplot.py; do
    if [ ! -e "$built/$f" ]; then echo "muxlab install: $built/$f is missing: run make build first" >&2; exit 1; fi
done
lib="$prefix/lib/muxlab"
rm -rf "$lib.new"
mkdir -p "$lib.new/swift" "$prefix/bin"
cp -p "$built/muxlab" "$built/libMuxAllocCounter.so" "$built/muxlab.commit" "$lib.new/"
cp -r "$built/muxlab_Plots.resources" "$lib.new/"
toolchain=$(dirname "$(dirname "$(readlink -f "$swift")")")
libs=$(ldd "$built/muxlab" | awk '$3 ~ /^\// {print $3}' | grep "^$toolchain/" || true)
if [ -z "$libs" ]; then echo "muxlab install: ldd names no library under the toolchain $toolchain: is $swift the toolchain muxlab was built with?" >&2; exit 1; fi
for so in $libs; do cp "$so" "$lib.new/swift/"; done
rm -rf "$lib"
mv "$lib.new" "$lib"
commit=$(cat "$lib/muxlab.commit")
cat > "$prefix/bin/muxlab" <<SCRIPT
#!/bin/sh
# muxlab, installed by make install from commit $commit
LD_LIBRARY_PATH="$lib/swift\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "$lib/muxlab" "\$@"
SCRIPT
chmod 755 "$prefix/bin/muxlab"
echo "muxlab: installed $("$prefix/bin/muxlab" --version) in $lib ($(echo "$libs" | wc -l) Swift runtime libraries); run it as $prefix/bin/muxlab"

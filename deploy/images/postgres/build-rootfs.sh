#!/usr/bin/env bash
# build-rootfs.sh DEST: assembles the root filesystem of the sluice-postgres
# image in DEST/root from this host's Debian packages postgresql-15 and
# busybox-static, and writes the PostgreSQL version to DEST/pg-version.
#
# The image is FROM scratch: it gets the PostgreSQL programs and modules, the
# shared libraries `ldd` lists for them (copied to the same paths, so the
# loader finds them without a cache), the share folder, the time zones, the
# C.UTF-8 locale, a static busybox for the shell that initdb and the
# entrypoint need, and a passwd with the postgres user. LLVM JIT is left out
# (the entrypoint sets jit = off), which saves about 100 MB. `make images`
# runs this; nothing here needs the network.
set -euo pipefail

dest=${1:?usage: build-rootfs.sh DEST}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
major=15
pgbin=/usr/lib/postgresql/$major/bin
pglib=/usr/lib/postgresql/$major/lib
pgshare=/usr/share/postgresql/$major
# The programs the image offers: the server and initdb, psql for the init
# SQL and the healthcheck, and the usual client tools for backups.
programs=(postgres initdb pg_ctl psql pg_isready pg_dump pg_dumpall pg_restore)

die() {
  echo "build-rootfs.sh: $*" >&2
  exit 1
}

[[ -x $pgbin/postgres ]] || die "$pgbin/postgres is missing: install the Debian package postgresql-$major"
[[ -x /bin/busybox ]] || die "/bin/busybox is missing: install the Debian package busybox-static"
if ldd /bin/busybox >/dev/null 2>&1; then
  die "/bin/busybox is dynamically linked: install the Debian package busybox-static instead of busybox"
fi
[[ -d /usr/lib/locale/C.utf8 ]] || die "/usr/lib/locale/C.utf8 is missing (Debian's libc-bin provides it)"

root=$dest/root
rm -rf "$root"
mkdir -p "$root"

# copy PATH...: copies files (following links) to the same path under root.
copy() {
  local p
  for p in "$@"; do
    mkdir -p "$root$(dirname "$p")"
    cp -L "$p" "$root$p"
  done
}

# The programs, every module but LLVM's JIT, and every library they load.
objects=()
for p in "${programs[@]}"; do
  objects+=("$pgbin/$p")
done
for so in "$pglib"/*.so; do
  [[ $(basename "$so") == llvmjit* ]] && continue
  objects+=("$so")
done
copy "${objects[@]}"

mapfile -t libs < <(
  for o in "${objects[@]}"; do
    # Lines are "libx.so.1 => /path/libx.so.1 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)".
    ldd "$o" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
  done | sort -u
)
for l in "${libs[@]}"; do
  [[ -e $l ]] || die "$l (listed by ldd) does not exist"
done
copy "${libs[@]}"

# Data files: the catalog templates, extensions and text search data; time
# zones (Debian builds PostgreSQL with the system tzdata); the C.UTF-8 locale.
mkdir -p "$root/usr/share/postgresql" "$root/usr/share" "$root/usr/lib/locale"
cp -a "$pgshare" "$root/usr/share/postgresql/"
rm -rf "$root$pgshare/man"
cp -a /usr/share/zoneinfo "$root/usr/share/"
rm -f "$root/usr/share/zoneinfo/localtime" # -> /etc/localtime, the host's
cp -a /usr/lib/locale/C.utf8 "$root/usr/lib/locale/"

# The shell and its applets (installed by the Dockerfile), the user, the
# entrypoint, and the folders the server writes to.
copy /bin/busybox
mkdir -p "$root/etc" "$root/usr/local/bin" "$root/tmp" "$root/var/lib/postgresql/data" "$root/var/run/postgresql"
cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
postgres:x:100:102:PostgreSQL administrator:/var/lib/postgresql:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
postgres:x:102:
nogroup:x:65534:
EOF
install -m 0755 "$here/pg-entrypoint" "$root/usr/local/bin/pg-entrypoint"
chmod 1777 "$root/tmp"

"$pgbin/postgres" --version | awk '{ print $3 }' >"$dest/pg-version"
echo "build-rootfs.sh: PostgreSQL $(cat "$dest/pg-version"), $(du -sh "$root" | cut -f1) in $root"

#!/usr/bin/env bash
set -euo pipefail
# Run by bin/build-images on the debootstrapped root file system as $1: makes it a lean image base.
rootfs=$1
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
# Images install no documentation and no recommended packages.
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/terafleet-nodoc" <<'CFG'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
CFG
cat >"$rootfs/etc/apt/apt.conf.d/90terafleet" <<'CFG'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Retries "3";
CFG

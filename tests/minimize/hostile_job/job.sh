#!/bin/sh
# A job that acts as an untrusted image may: it changes files that edgetrim reads to decide
# what to keep, and it leaves a marker that the next run would see if runs shared a rootfs.
if [ -e /var/tmp/edgetrim-marker ]; then
    echo "an earlier run left its marker"
    exit 3
fi
: > /var/tmp/edgetrim-marker
/usr/local/bin/helper -c 'echo helper ran'
# The helper is a copy of dash, which needs libc only. The payload contains a copy of tar,
# which also needs libacl. The payload itself is no ELF file, so nothing makes libacl needed.
busybox tar -xOf /opt/payload.tar tar > /usr/local/bin/helper
printf 'Package: libc6\nStatus: install ok installed\nVersion: 0-tampered\nArchitecture: amd64\n' \
    > /var/lib/dpkg/status
for conf in /etc/ld.so.conf.d/*.conf; do
    echo /opt/decoy > "$conf"
done
read -r report < '/srv/report (deleted)'
echo "report: $report"
echo "args: $*"

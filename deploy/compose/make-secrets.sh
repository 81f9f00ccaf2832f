#!/bin/sh
# Creates the keys every node of one deployment shares: the password
# digest key (--secret), the image-name key (--image-key) and the
# operators' admin token (--admin-token-file: the moderation API and page
# on the db nodes' admin port, deploy/README.md "Moderating"). Each is 32
# random bytes in hex, mode 0600, and an existing one is never replaced:
# keep them. Changing --secret invalidates every password, changing the
# image key every upload name issued but not used yet; a new admin token
# (delete the file, run this again, restart db1 and db2) retires the old.
#
# Compose bind-mounts a file secret with its owner and mode from the host
# (it ignores uid/gid/mode for file secrets), and the nodes run as uid
# 65532: run this as root (sudo) so that the files are handed to 65532;
# otherwise it says what to run.
set -eu
cd "$(dirname "$0")"
mkdir -p secrets
umask 077
for f in secret.hex image-key.hex admin-token; do
  [ -s "secrets/$f" ] || od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "secrets/$f"
done
if [ "$(id -u)" = 0 ]; then
  chown 65532:65532 secrets/secret.hex secrets/image-key.hex secrets/admin-token
elif [ -n "$(find secrets -type f ! -user 65532)" ]; then
  echo "the nodes (uid 65532) cannot read these 0600 files: sudo chown 65532:65532 $(pwd)/secrets/*" >&2
fi
echo "keys in $(pwd)/secrets"

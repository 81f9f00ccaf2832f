#!/bin/sh
# Creates the two keys every node of one deployment shares: the password
# digest key (--secret) and the image-name key (--image-key). Keep them:
# changing --secret invalidates every password, changing the image key
# every upload name issued but not used yet.
set -eu
cd "$(dirname "$0")"
mkdir -p secrets
umask 077
for f in secret.hex image-key.hex; do
  [ -s "secrets/$f" ] || od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "secrets/$f"
done
echo "keys in $(pwd)/secrets"

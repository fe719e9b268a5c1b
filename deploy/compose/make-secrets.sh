#!/bin/sh
# Makes the compose cluster's bearer tokens in deploy/compose/secrets/ (git-ignored): the
# coordinator's token file, the workers' token and a user token with the scopes of
# `pgtrain up`'s: read, submit, data (pull models) and predict (online prediction).
set -eu
cd "$(dirname "$0")"
if [ -e secrets/auth.tokens ]; then
	echo "secrets/auth.tokens exists; remove deploy/compose/secrets to make new tokens" >&2
	exit 0
fi
mkdir -p secrets
chmod 700 secrets
token() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
worker=$(token)
user=$(token)
# Readable inside the containers, which run as another user; the directory guards them here.
umask 022
printf '%s worker workers\n%s read,submit,data,predict user\n' "$worker" "$user" >secrets/auth.tokens
printf '%s\n' "$worker" >secrets/worker.token
printf '%s\n' "$user" >secrets/user.token
echo "tokens written to $(pwd)/secrets; the user token is in secrets/user.token"

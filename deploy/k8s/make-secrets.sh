#!/bin/sh
# Writes the Kubernetes overlay's secret files into deploy/k8s/overlays/small/secrets/
# (git-ignored): the NATS token, the coordinator's token file, the workers' token, a user
# token (read, submit, data, predict) and the database DSN given as the one argument.
# A password is better left out of the DSN: give the roles PGPASSWORD from a Secret of
# your own, or use a client certificate.
set -eu
if [ $# -ne 1 ]; then
	echo "usage: $0 DSN" >&2
	exit 2
fi
cd "$(dirname "$0")/overlays/small"
if [ -e secrets/auth.tokens ]; then
	echo "secrets/auth.tokens exists; remove deploy/k8s/overlays/small/secrets to make new tokens" >&2
	exit 0
fi
umask 077
mkdir -p secrets
token() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
worker=$(token)
user=$(token)
token >secrets/nats.token
printf '%s worker workers\n%s read,submit,data,predict user\n' "$worker" "$user" >secrets/auth.tokens
printf '%s\n' "$worker" >secrets/worker.token
printf '%s\n' "$user" >secrets/user.token
printf '%s' "$1" >secrets/dsn
echo "secrets written to $(pwd)/secrets; the user token is in secrets/user.token"

#!/usr/bin/env bash
# Makes the Secrets' files an overlay's secretGenerator reads (never committed: .gitignore):
#   secrets/token                   a random bearer token (security.token_file)
#   secrets/ca.crt, tls.crt, tls.key  a private CA and one certificate for every service,
#                                   used as server and client certificate (mutual TLS)
#   bash deploy/k8s/make-secrets.sh deploy/k8s/overlays/gpu [NAMESPACE]
# Bring your own (cert-manager, a corporate CA) by putting files of these names there instead.
set -euo pipefail
dir="${1:?usage: make-secrets.sh OVERLAY_DIR [NAMESPACE]}/secrets"
ns="${2:-cmdistill}"
mkdir -p "$dir"
umask 077
[[ -s $dir/token ]] || openssl rand -hex 32 | tr -d '\n' >"$dir/token"
if [[ ! -s $dir/tls.crt ]]; then
  tmp=$(mktemp -d)
  openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=cmdistill-ca" \
    -keyout "$tmp/ca.key" -out "$dir/ca.crt" 2>/dev/null
  sans="DNS:localhost,IP:127.0.0.1"
  for s in learner teacher reward; do
    sans+=",DNS:$s,DNS:$s.$ns,DNS:$s.$ns.svc,DNS:$s.$ns.svc.cluster.local"
  done
  openssl req -newkey rsa:2048 -nodes -subj "/CN=cmdistill" -keyout "$dir/tls.key" \
    -out "$tmp/tls.csr" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$sans" >"$tmp/ext"
  openssl x509 -req -in "$tmp/tls.csr" -CA "$dir/ca.crt" -CAkey "$tmp/ca.key" \
    -CAcreateserial -days 365 -extfile "$tmp/ext" -out "$dir/tls.crt" 2>/dev/null
  rm -rf "$tmp"   # the CA key is not kept: issue new certificates by running this again
fi
echo "secrets in $dir: $(ls "$dir" | tr '\n' ' ')"

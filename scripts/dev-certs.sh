#!/bin/sh
# Creates development certificates for sandboxd and its host agents with the
# openssl CLI: a CA, a server certificate for sandbox-agent and a client
# certificate for sandboxd, all EC P-256.
#
#   scripts/dev-certs.sh DIR
#
# DIR gets ca.pem/ca.key (the CA that signs both sides), agent.pem/agent.key
# (serverAuth; SAN IP:127.0.0.1, IP:::1, DNS:localhost) and client.pem/
# client.key (clientAuth, CN=sandboxd).  Idempotent: files that exist are kept,
# so rerunning never invalidates certificates already handed out.  Keys are
# written 0600.  For development and tests only: a real deployment keeps the
# CA key offline.
set -eu

die() { echo "dev-certs: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 DIR"
dir=$1
command -v openssl >/dev/null 2>&1 || die "openssl is not installed"
mkdir -p "$dir"
umask 077

DAYS=825

new_key() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.tmp" 2>/dev/null
    mv "$1.tmp" "$1"
}

# sign NAME SUBJECT EXTENSIONS: NAME.key and NAME.pem, signed by the CA.
sign() {
    name=$1 subject=$2 ext=$3
    [ -f "$dir/$name.pem" ] && [ -f "$dir/$name.key" ] && return 0
    new_key "$dir/$name.key"
    printf '%s\n' "$ext" >"$dir/$name.ext"
    openssl req -new -key "$dir/$name.key" -subj "$subject" -out "$dir/$name.csr" 2>/dev/null
    openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
        -CAcreateserial -CAserial "$dir/ca.srl" -days "$DAYS" -sha256 \
        -extfile "$dir/$name.ext" -out "$dir/$name.pem.tmp" 2>/dev/null
    mv "$dir/$name.pem.tmp" "$dir/$name.pem"
    rm -f "$dir/$name.csr" "$dir/$name.ext"
}

if [ ! -f "$dir/ca.pem" ] || [ ! -f "$dir/ca.key" ]; then
    # A new CA invalidates everything it signed before.
    rm -f "$dir/agent.pem" "$dir/client.pem"
    new_key "$dir/ca.key"
    openssl req -x509 -new -key "$dir/ca.key" -sha256 -days "$DAYS" \
        -subj "/O=sandboxd development/CN=sandboxd development CA" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" \
        -out "$dir/ca.pem.tmp" 2>/dev/null
    mv "$dir/ca.pem.tmp" "$dir/ca.pem"
fi

sign agent "/O=sandboxd development/CN=sandbox-agent" \
"basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyAgreement
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid"

sign client "/O=sandboxd development/CN=sandboxd" \
"basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyAgreement
extendedKeyUsage=clientAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid"

chmod 0644 "$dir/ca.pem" "$dir/agent.pem" "$dir/client.pem"

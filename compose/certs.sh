#!/bin/sh
# The compose cluster's certificates, made once on the host with openssl:
# a CA, each broker's certificate (its name is its host name and, as CN, its
# principal) with its key in one PEM file (Kafka's PEM keystore), and the
# registry's. Run from compose/: ./certs.sh
set -eu
mkdir -p certs && cd certs
[ -f ca.pem ] || openssl req -x509 -newkey rsa:3072 -nodes -days 825 -subj "/CN=kfn compose CA" \
  -keyout ca.key -out ca.pem
for name in kafka-1 kafka-2 kafka-3 registry; do
  [ -f "$name.pem" ] && continue
  openssl req -newkey rsa:3072 -nodes -subj "/CN=$name" -keyout "$name.key" -out "$name.csr"
  printf 'subjectAltName=DNS:%s,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' "$name" >"$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
    -extfile "$name.ext" -out "$name.crt"
  cat "$name.key" "$name.crt" >"$name.pem"
  rm -f "$name.csr" "$name.ext"
done
# The containers run as non-root users: they read the keys through the group.
chmod 0640 ./*.key ./*.pem
chmod 0600 ca.key

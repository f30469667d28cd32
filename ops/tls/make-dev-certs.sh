#!/usr/bin/env bash
# A development CA and certificates for TLS in transit (docs/privacy.md), made with openssl:
#
#   bash ops/tls/make-dev-certs.sh [DIR]      # default ./tls (ignored by git)
#
# writes into DIR:
#   ca.pem, ca.key             the CA; clients trust ca.pem (AGENTGYM_KAFKA_SSL_CA, curl --cacert)
#   kafka.pem, kafka.key       the brokers: kafka, kafka-2, kafka-3, localhost, 127.0.0.1 (compose's three Kafka
#                              nodes, `agentgym kafka start --tls`)
#   gateway.pem, gateway.key   the API: gateway, localhost, 127.0.0.1 (AGENTGYM_GATEWAY_TLS_CERT/_KEY)
#   client.pem, client.key     a client certificate, for brokers or an API that require one (mutual TLS)
#
# EC P-256 keys, unencrypted PKCS#8 (what Kafka's PEM key store reads), valid 825 days. For
# production use certificates from your own CA; these are for a laptop or a test network.
# An existing CA in DIR is reused, so re-running adds certificates the same clients trust.
set -euo pipefail

dir="${1:-tls}"
days="${DAYS:-825}"
mkdir -p "$dir"
cd "$dir"
umask 077

if [[ ! -f ca.pem || ! -f ca.key ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days "$days" \
    -subj "/CN=Agent Gym development CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi

leaf() {  # name, extendedKeyUsage, subjectAltName ("" for none)
  local name="$1" usage="$2" san="$3"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$name.key" -out "$name.csr" \
    -subj "/CN=$name" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature"
    echo "extendedKeyUsage=$usage"
    echo "subjectKeyIdentifier=hash"
    echo "authorityKeyIdentifier=keyid,issuer"
    if [[ -n "$san" ]]; then echo "subjectAltName=$san"; fi
  } > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days "$days" -out "$name.pem" \
    -extfile "$name.ext" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

# the broker also connects to itself (inter-broker listener): serverAuth and clientAuth
leaf kafka "serverAuth,clientAuth" "DNS:kafka,DNS:kafka-2,DNS:kafka-3,DNS:localhost,IP:127.0.0.1"
leaf gateway "serverAuth" "DNS:gateway,DNS:localhost,IP:127.0.0.1"
leaf client "clientAuth" ""
chmod 0644 ./*.pem  # certificates are public; keys stay 0600
echo "made in $dir: ca.pem, kafka.pem/.key, gateway.pem/.key, client.pem/.key"

#!/usr/bin/env bash
# The compose `kafka` service's entrypoint: SASL/SCRAM for the apache/kafka image.
#
# SCRAM credentials live in the KRaft metadata and are written when the storage is
# formatted (`kafka-storage.sh format --add-scram`, KIP-900); the image's own start-up
# formats without them. So this formats first (once: --ignore-formatted), with one
# principal per service (docs/security.md), then hands over to the image's entrypoint,
# whose own format step finds the storage formatted. Passwords come from the
# SCRAM_<PRINCIPAL>_PASSWORD variables compose.yaml sets.
set -euo pipefail

data_dir="${KAFKA_LOG_DIRS:-/var/lib/kafka/data}"
format_props=/tmp/agentgym-format.properties
cat > "$format_props" <<PROPS
process.roles=${KAFKA_PROCESS_ROLES}
node.id=${KAFKA_NODE_ID}
controller.quorum.voters=${KAFKA_CONTROLLER_QUORUM_VOTERS}
controller.listener.names=CONTROLLER
listeners=INTERNAL://:29092,CONTROLLER://:9093
advertised.listeners=INTERNAL://kafka:29092
inter.broker.listener.name=INTERNAL
listener.security.protocol.map=INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=${data_dir}
PROPS

scram=()
for principal in admin sdk gateway trainer processors; do
  var="SCRAM_${principal^^}_PASSWORD"
  password="${!var:?$var is not set}"
  for mechanism in SCRAM-SHA-256 SCRAM-SHA-512; do
    scram+=(--add-scram "${mechanism}=[name=${principal},password=${password}]")
  done
done
/opt/kafka/bin/kafka-storage.sh format --cluster-id="${CLUSTER_ID}" -c "$format_props" --ignore-formatted "${scram[@]}"
rm -f "$format_props"

# for the healthcheck and for operators inside the container (kafka-topics.sh --command-config)
umask 077
client_protocol=SASL_PLAINTEXT
if [[ -n "${TLS_CERT_FILE:-}" ]]; then
  # TLS (compose.tls.yaml): Kafka's PEM key store holds the private key, then the certificate chain
  cat "${TLS_KEY_FILE:?TLS_KEY_FILE is not set}" "$TLS_CERT_FILE" > /tmp/agentgym-keystore.pem
  client_protocol=SASL_SSL
fi
cat > /tmp/admin-client.properties <<PROPS
security.protocol=${client_protocol}
sasl.mechanism=SCRAM-SHA-256
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="${SCRAM_ADMIN_PASSWORD}";
PROPS
if [[ -n "${TLS_CA_FILE:-}" ]]; then
  printf 'ssl.truststore.type=PEM\nssl.truststore.location=%s\n' "$TLS_CA_FILE" >> /tmp/admin-client.properties
fi

exec /etc/kafka/docker/run

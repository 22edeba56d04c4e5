#!/usr/bin/env bash
# Generate the Compose stack's secrets into deploy/compose/secrets/ (git-ignored), once:
# random tokens and passwords, a CA and a TLS certificate for Kafka (SASL_SSL), and the files
# Kafka, Qdrant and Grafana read them from. Run it again with --force to replace them all.
#   deploy/compose/make-secrets.sh
set -euo pipefail
cd "$(dirname "$0")"
out=secrets
if [[ -e "$out" && "${1:-}" != "--force" ]]; then
  echo "$out/ exists: keeping it (--force replaces every secret)" >&2
  exit 0
fi
rm -rf "$out"
mkdir -m 700 "$out"
cd "$out"
umask 077

random() { openssl rand -hex 32; }
random > encoder_token
random > web_token
random > qdrant_api_key
random > grafana_admin_password
random > kafka_password          # the workers' SASL password (user "coursestream")
random > kafka_admin_password    # the broker's own user
random > kafka_keystore_password

# Kafka's users (SASL/PLAIN over TLS): the JAAS file the broker reads.
cat > kafka_server_jaas.conf <<EOF
KafkaServer {
  org.apache.kafka.common.security.plain.PlainLoginModule required
  username="admin"
  password="$(cat kafka_admin_password)"
  user_admin="$(cat kafka_admin_password)"
  user_coursestream="$(cat kafka_password)";
};
EOF

# Qdrant reads config/local.yaml over its defaults.
printf 'service:\n  api_key: %s\n' "$(cat qdrant_api_key)" > qdrant_local.yaml

# A CA of this stack, and the broker's certificate for the names the containers use.
openssl req -x509 -newkey rsa:3072 -nodes -days 825 -subj "/CN=coursestream compose CA" \
  -keyout kafka_ca.key -out kafka_ca.pem 2>/dev/null
openssl req -newkey rsa:3072 -nodes -subj "/CN=kafka" -keyout kafka.key -out kafka.csr 2>/dev/null
printf 'subjectAltName=DNS:kafka,DNS:localhost\nextendedKeyUsage=serverAuth\n' > kafka.ext
openssl x509 -req -in kafka.csr -CA kafka_ca.pem -CAkey kafka_ca.key -CAcreateserial -days 825 \
  -extfile kafka.ext -out kafka.pem 2>/dev/null
openssl pkcs12 -export -in kafka.pem -inkey kafka.key -certfile kafka_ca.pem -name kafka \
  -passout file:kafka_keystore_password -out kafka.p12
rm -f kafka_ca.key kafka_ca.srl kafka.csr kafka.ext kafka.key kafka.pem  # the CA signs nothing else

# The containers run as other users than this one: readable, by the files' mode, to them.
chmod 444 ./*
echo "secrets written to $(pwd)"

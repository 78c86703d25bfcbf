#!/bin/sh
# One node of the compose cluster: KRaft (broker and controller), the client
# listener SASL_SSL with SCRAM-SHA-512, the brokers and controllers talking
# mTLS (their certificates' CN is their principal, a super user), ACLs
# enforced. SCRAM users are created when the storage is formatted, from the
# KFN_*_PASSWORD variables; a formatted volume is started as it is.
set -eu
: "${NODE_ID:?}" "${CLUSTER_ID:?}" "${KFN_ADMIN_PASSWORD:?}"
host="kafka-${NODE_ID}"
props=/tmp/server.properties
cat >"$props" <<PROPS
process.roles=broker,controller
node.id=${NODE_ID}
controller.quorum.voters=1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093
listeners=CLIENT://:9092,CONTROLLER://:9093,INTERNAL://:9094
advertised.listeners=CLIENT://${host}:9092,INTERNAL://${host}:9094
listener.security.protocol.map=CLIENT:SASL_SSL,CONTROLLER:SSL,INTERNAL:SSL
controller.listener.names=CONTROLLER
inter.broker.listener.name=INTERNAL
log.dirs=/var/lib/kafka/data
ssl.keystore.type=PEM
ssl.keystore.location=/certs/${host}.pem
ssl.truststore.type=PEM
ssl.truststore.location=/certs/ca.pem
ssl.client.auth=required
listener.name.client.ssl.client.auth=none
ssl.principal.mapping.rules=RULE:^CN=([^,]+)\$/\$1/,DEFAULT
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:kafka-1;User:kafka-2;User:kafka-3;User:kfn-admin
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
auto.create.topics.enable=false
PROPS
if [ ! -f /var/lib/kafka/data/meta.properties ]; then
  scram() { echo "SCRAM-SHA-512=[name=$1,password=$2]"; }
  set -- --add-scram "$(scram kfn-admin "$KFN_ADMIN_PASSWORD")"
  # One user per function and the registry's, as `kfn dev --secure` makes them.
  for var in $(env | sed -n 's/^\(KFN_PASSWORD_[A-Z0-9_]*\)=.*/\1/p'); do
    name=$(echo "${var#KFN_PASSWORD_}" | tr 'A-Z' 'a-z')
    eval "password=\${$var}"
    set -- "$@" --add-scram "$(scram "kfn-${name}" "$password")"
  done
  /opt/kafka/bin/kafka-storage.sh format --config "$props" --cluster-id "$CLUSTER_ID" "$@"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$props"

# shellcheck shell=bash
# The secure local stack, sourced by scripts/stack: the production services' security, on
# 127.0.0.1 beside the plaintext stack, each with a server certificate of a CA made here.
#
#   Kafka       127.0.0.1:9094  SASL_SSL, SCRAM-SHA-512 (user dwh), controller on 9095
#   Redis       127.0.0.1:6380  TLS only, a password
#   PostgreSQL  127.0.0.1:5433  TLS only (hostnossl rejected), scram-sha-256, user dwh;
#                               also on 127.0.0.2, a name its certificate does not hold
#
# Certificates, keys and the generated passwords live in $SECURE_DIR:
#   ca/ca.crt         the CA every client trusts (KAFKA_SSL_CA_LOCATION, REDIS_SSL_CA_FILE,
#                     PG_WAREHOUSE_SSLROOTCERT)
#   ca/server.*       the servers' key and certificate (SAN: localhost, 127.0.0.1)
#   secrets.env       the passwords (made once, random), read by `scripts/stack env --secure`

SECURE_DIR="$STACK_DIR/secure"
SECURE_CA_DIR="$SECURE_DIR/ca"
SECURE_SECRETS="$SECURE_DIR/secrets.env"
SECURE_PG_PORT=5433
SECURE_PG_OTHER_HOST=127.0.0.2
SECURE_REDIS_PORT=6380
SECURE_KAFKA_PORT=9094
SECURE_KAFKA_CONTROLLER_PORT=9095
SECURE_KAFKA_USER=dwh
SECURE_KAFKA_ADMIN=broker
SECURE_PG_DIR="$SECURE_DIR/postgres"
SECURE_PG_DATA="$SECURE_PG_DIR/data"
SECURE_PG_LOG="$SECURE_PG_DIR/postgres.log"
SECURE_PG_SOCKET_DIR="$SECURE_PG_DIR/run"
if ((${#SECURE_PG_SOCKET_DIR} > 90)); then
  SECURE_PG_SOCKET_DIR="/tmp/stack-pgs-$(printf '%s' "$SECURE_PG_DIR" | sha256sum | cut -c1-12)"
fi
SECURE_REDIS_DIR="$SECURE_DIR/redis"
SECURE_REDIS_LOG="$SECURE_REDIS_DIR/redis.log"
SECURE_KAFKA_DIR="$SECURE_DIR/kafka"
SECURE_KAFKA_CONF="$SECURE_KAFKA_DIR/config"
SECURE_KAFKA_DATA="$SECURE_KAFKA_DIR/data"
SECURE_KAFKA_LOG_DIR="$SECURE_KAFKA_DIR/logs"
SECURE_KAFKA_LOG="$SECURE_KAFKA_LOG_DIR/server.log"
SECURE_KAFKA_STDOUT="$SECURE_KAFKA_LOG_DIR/stdout.log"
CERT_DAYS=825

# ------------------------------------------------------------------------------ certificates

# secure_secrets: load the passwords, making them (random, 32 hex digits) the first time.
secure_secrets() {
  if [[ ! -s $SECURE_SECRETS ]]; then
    mkdir -p "$SECURE_DIR"
    # Others may pass through (the postgres OS user to its data folder), not list or read.
    chmod 711 "$SECURE_DIR"
    local name password
    rm -f "$SECURE_SECRETS.new"
    for name in KAFKA_PASSWORD KAFKA_ADMIN_PASSWORD REDIS_PASSWORD PG_PASSWORD KEYSTORE_PASSWORD; do
      # assigned on its own line, so a failing openssl stops here (set -e) instead of
      # leaving an empty password in the file for good
      password=$(openssl rand -hex 16)
      [[ $password =~ ^[0-9a-f]{32}$ ]] || die "openssl rand gave no password"
      (umask 077 && printf 'SECURE_%s=%s\n' "$name" "$password" >>"$SECURE_SECRETS.new")
    done
    mv "$SECURE_SECRETS.new" "$SECURE_SECRETS"
  fi
  # shellcheck disable=SC1090
  source "$SECURE_SECRETS"
}

# secure_certificates: a CA and one server certificate for localhost and 127.0.0.1, made once.
secure_certificates() {
  local ca=$SECURE_CA_DIR
  [[ -s $ca/server.crt && -s $ca/kafka.p12 ]] && return 0
  command -v openssl >/dev/null || die "openssl not found (needed for the secure stack's certificates)"
  say "making a CA and server certificates with openssl in $ca"
  mkdir -p "$ca"
  chmod 755 "$ca"
  (
    set -e
    cd "$ca"
    openssl req -x509 -newkey rsa:2048 -nodes -days "$CERT_DAYS" -sha256 \
      -keyout ca.key -out ca.crt -subj "/CN=dwh local stack CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost"
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days "$CERT_DAYS" \
      -sha256 -extfile server.ext -out server.crt
    openssl pkcs12 -export -inkey server.key -in server.crt -certfile ca.crt -name kafka \
      -passout "pass:$SECURE_KEYSTORE_PASSWORD" -out kafka.p12
    rm -f server.csr server.ext ca.srl
    chmod 600 ca.key server.key kafka.p12
    chmod 644 ca.crt server.crt
  ) >"$SECURE_DIR/openssl.log" 2>&1 || die "openssl failed, see $SECURE_DIR/openssl.log"
}

# ------------------------------------------------------------------------------------ probes

secure_pg_ready() {
  [[ $(PGPASSWORD=$SECURE_PG_PASSWORD PGCONNECT_TIMEOUT=5 timeout 10 "$(pg_bin)/psql" -X -q -A -t \
    "host=$HOST port=$SECURE_PG_PORT dbname=$PG_DB user=$PG_USER sslmode=verify-full sslrootcert=$SECURE_CA_DIR/ca.crt" \
    -c 'SELECT 1' 2>/dev/null) == 1 ]]
}

secure_redis_ready() {
  [[ $(REDISCLI_AUTH=$SECURE_REDIS_PASSWORD timeout 5 redis-cli --tls --cacert "$SECURE_CA_DIR/ca.crt" \
    -h "$HOST" -p "$SECURE_REDIS_PORT" ping 2>/dev/null) == PONG ]]
}

# secure_kafka_ready: the broker answers a metadata request over SASL_SSL as the client user.
secure_kafka_ready() {
  port_open "$SECURE_KAFKA_PORT" &&
    PROBE_PASSWORD=$SECURE_KAFKA_PASSWORD probe_kafka "$SECURE_KAFKA_PORT" "$SECURE_KAFKA_USER" \
      "$SECURE_CA_DIR/ca.crt"
}

# ---------------------------------------------------------------------------------- PostgreSQL

start_secure_postgres() {
  local bin pid owner=postgres
  bin=$(pg_bin)
  is_root || owner=$(id -un)
  mkdir -p "$SECURE_PG_DATA" "$SECURE_PG_SOCKET_DIR"
  chown "$owner" "$SECURE_PG_DIR" "$SECURE_PG_DATA" "$SECURE_PG_SOCKET_DIR"
  chmod 700 "$SECURE_PG_DATA"
  if [[ ! -f $SECURE_PG_DATA/PG_VERSION ]]; then
    say "initdb $SECURE_PG_DATA (TLS only)"
    as_pg "$bin/initdb" -D "$SECURE_PG_DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
      --auth-local=trust --auth-host=scram-sha-256 >"$SECURE_PG_DIR/initdb.log" 2>&1 ||
      die "initdb failed, see $SECURE_PG_DIR/initdb.log"
  fi
  # The server reads its key as its own OS user, with no access for others.
  install -o "$owner" -m 600 "$SECURE_CA_DIR/server.key" "$SECURE_PG_DATA/server.key"
  install -o "$owner" -m 644 "$SECURE_CA_DIR/server.crt" "$SECURE_PG_DATA/server.crt"
  as_pg tee "$SECURE_PG_DATA/postgresql.auto.conf" >/dev/null <<EOF
# written by scripts/stack --secure at every start
listen_addresses = '$HOST,$SECURE_PG_OTHER_HOST'
port = $SECURE_PG_PORT
unix_socket_directories = '$SECURE_PG_SOCKET_DIR'
password_encryption = 'scram-sha-256'
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
ssl_min_protocol_version = 'TLSv1.2'
EOF
  as_pg tee "$SECURE_PG_DATA/pg_hba.conf" >/dev/null <<EOF
# written by scripts/stack --secure: TLS with scram-sha-256 over TCP, nothing else
local     all  postgres                 peer map=stack
local     all  all                      reject
hostssl   all  all       127.0.0.0/8    scram-sha-256
hostnossl all  all       0.0.0.0/0      reject
hostnossl all  all       ::/0           reject
EOF
  as_pg tee "$SECURE_PG_DATA/pg_ident.conf" >/dev/null <<EOF
# written by scripts/stack --secure
stack  $owner  postgres
EOF
  say "starting PostgreSQL (TLS) on $HOST:$SECURE_PG_PORT (log: $SECURE_PG_LOG)"
  if ! as_pg "$bin/pg_ctl" -D "$SECURE_PG_DATA" -l "$SECURE_PG_LOG" -w -t "$TIMEOUT" start \
    >"$SECURE_PG_DIR/pg_ctl.log" 2>&1 9>&-; then
    fail_service "PostgreSQL (TLS)" "pg_ctl start failed ($(tail -n 1 "$SECURE_PG_DIR/pg_ctl.log"))" "$SECURE_PG_LOG"
  fi
  pid=$(head -n 1 "$SECURE_PG_DATA/postmaster.pid")
  printf '%s\n' "$pid" >"$RUN_DIR/secure-postgres.pid"
  PG_PASSWORD=$SECURE_PG_PASSWORD pg_bootstrap as_pg "$bin/psql" -h "$SECURE_PG_SOCKET_DIR" \
    -p "$SECURE_PG_PORT" -U postgres -d postgres >>"$SECURE_PG_DIR/bootstrap.log" 2>&1 ||
    fail_service "PostgreSQL (TLS)" "creating role/database failed" "$SECURE_PG_DIR/bootstrap.log"
  wait_ready "PostgreSQL (TLS)" "$pid" "$SECURE_PG_LOG" secure_pg_ready
  say "PostgreSQL (TLS) ready (pid $pid)"
}

# --------------------------------------------------------------------------------------- Redis

start_secure_redis() {
  local conf="$SECURE_REDIS_DIR/redis.conf" pid
  mkdir -p "$SECURE_REDIS_DIR/data"
  (
    umask 077
    cat >"$conf" <<EOF
# written by scripts/stack --secure: TLS only, a password
bind $HOST
port 0
tls-port $SECURE_REDIS_PORT
tls-cert-file $SECURE_CA_DIR/server.crt
tls-key-file $SECURE_CA_DIR/server.key
tls-ca-cert-file $SECURE_CA_DIR/ca.crt
tls-auth-clients no
requirepass $SECURE_REDIS_PASSWORD
protected-mode yes
daemonize yes
pidfile $RUN_DIR/secure-redis.pid
logfile $SECURE_REDIS_LOG
dir $SECURE_REDIS_DIR/data
save ""
appendonly no
EOF
  )
  say "starting Redis (TLS) on $HOST:$SECURE_REDIS_PORT (log: $SECURE_REDIS_LOG)"
  rm -f "$RUN_DIR/secure-redis.pid"
  redis-server "$conf" >>"$SECURE_REDIS_LOG" 2>&1 9>&- ||
    fail_service "Redis (TLS)" "redis-server did not start" "$SECURE_REDIS_LOG"
  wait_ready "Redis (TLS)" "" "$SECURE_REDIS_LOG" test -s "$RUN_DIR/secure-redis.pid"
  pid=$(<"$RUN_DIR/secure-redis.pid")
  wait_ready "Redis (TLS)" "$pid" "$SECURE_REDIS_LOG" secure_redis_ready
  say "Redis (TLS) ready (pid $pid)"
}

# --------------------------------------------------------------------------------------- Kafka

write_secure_kafka_config() {
  mkdir -p "$SECURE_KAFKA_CONF" "$SECURE_KAFKA_DATA" "$SECURE_KAFKA_LOG_DIR"
  (
    umask 077
    {
      cat <<EOF
# written by scripts/stack --secure: clients and the broker itself on SASL_SSL with
# SCRAM-SHA-512, the controller on loopback in plaintext
controller.quorum.voters=1@$HOST:$SECURE_KAFKA_CONTROLLER_PORT
listeners=SASL_SSL://$HOST:$SECURE_KAFKA_PORT,CONTROLLER://$HOST:$SECURE_KAFKA_CONTROLLER_PORT
advertised.listeners=SASL_SSL://$HOST:$SECURE_KAFKA_PORT
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$SECURE_KAFKA_ADMIN" password="$SECURE_KAFKA_ADMIN_PASSWORD";
ssl.keystore.type=PKCS12
ssl.keystore.location=$SECURE_CA_DIR/kafka.p12
ssl.keystore.password=$SECURE_KEYSTORE_PASSWORD
ssl.truststore.type=PEM
ssl.truststore.location=$SECURE_CA_DIR/ca.crt
ssl.endpoint.identification.algorithm=https
EOF
      kafka_node_properties "$SECURE_KAFKA_DATA"
    } >"$SECURE_KAFKA_CONF/server.properties"
  )
  sed "s|$KAFKA_LOG_DIR|$SECURE_KAFKA_LOG_DIR|g; s|$KAFKA_LOG|$SECURE_KAFKA_LOG|g" \
    "$KAFKA_CONF/log4j2.xml" >"$SECURE_KAFKA_CONF/log4j2.xml"
}

start_secure_kafka() {
  local pid
  ensure_kafka_jars
  write_kafka_config # for its log4j2.xml
  write_secure_kafka_config
  format_kafka_storage "$SECURE_KAFKA_CONF" "$SECURE_KAFKA_DATA" "$SECURE_KAFKA_LOG_DIR" \
    --add-scram "SCRAM-SHA-512=[name=$SECURE_KAFKA_ADMIN,password=$SECURE_KAFKA_ADMIN_PASSWORD]" \
    --add-scram "SCRAM-SHA-512=[name=$SECURE_KAFKA_USER,password=$SECURE_KAFKA_PASSWORD]"
  say "starting Kafka (SASL_SSL) on $HOST:$SECURE_KAFKA_PORT, controller $SECURE_KAFKA_CONTROLLER_PORT (log: $SECURE_KAFKA_LOG)"
  launch_kafka secure-kafka "$SECURE_KAFKA_CONF" "$SECURE_KAFKA_LOG_DIR" "$SECURE_KAFKA_STDOUT"
  pid=$(<"$RUN_DIR/secure-kafka.pid")
  wait_ready "Kafka (SASL_SSL)" "$pid" "$SECURE_KAFKA_LOG" secure_kafka_ready
  say "Kafka (SASL_SSL) ready (pid $pid)"
}

# ------------------------------------------------------------------------------ up, down, env

# secure_port_free NAME PORT: a service we would start needs its port; name who holds it.
secure_port_free() {
  local owner
  port_open "$2" || return 0
  owner=$(port_owner "$2")
  die "port $2 ($1 of the secure stack) is taken${owner:+ by $owner}; free it"
}

cmd_up_secure() {
  secure_secrets
  secure_certificates
  if ours_pid secure-postgres >/dev/null; then
    wait_ready "PostgreSQL (TLS)" "" "$SECURE_PG_LOG" secure_pg_ready
  else
    secure_port_free "PostgreSQL (TLS)" "$SECURE_PG_PORT"
    start_secure_postgres
  fi
  if ours_pid secure-redis >/dev/null; then
    wait_ready "Redis (TLS)" "" "$SECURE_REDIS_LOG" secure_redis_ready
  else
    secure_port_free "Redis (TLS)" "$SECURE_REDIS_PORT"
    start_secure_redis
  fi
  if ours_pid secure-kafka >/dev/null; then
    wait_ready "Kafka (SASL_SSL)" "" "$SECURE_KAFKA_LOG" secure_kafka_ready
  else
    secure_port_free "Kafka (SASL_SSL)" "$SECURE_KAFKA_PORT"
    secure_port_free "Kafka (SASL_SSL) controller" "$SECURE_KAFKA_CONTROLLER_PORT"
    start_secure_kafka
  fi
  say "secure stack is up; connection settings: scripts/stack env --secure"
}

cmd_env_secure() {
  [[ -s $SECURE_SECRETS ]] || die "the secure stack was never started: scripts/stack up --secure"
  secure_secrets
  cat <<EOF
export KAFKA_HOST=$HOST
export KAFKA_PORT=$SECURE_KAFKA_PORT
export KAFKA_SECURITY_PROTOCOL=SASL_SSL
export KAFKA_SASL_MECHANISM=SCRAM-SHA-512
export KAFKA_CONSUMER_USERNAME=$SECURE_KAFKA_USER
export KAFKA_CONSUMER_PASSWORD=$SECURE_KAFKA_PASSWORD
export KAFKA_SSL_CA_LOCATION=$SECURE_CA_DIR/ca.crt
export REDIS_HOST=$HOST
export REDIS_PORT=$SECURE_REDIS_PORT
export REDIS_PASSWORD=$SECURE_REDIS_PASSWORD
export REDIS_SSL=true
export REDIS_SSL_CA_FILE=$SECURE_CA_DIR/ca.crt
export PG_WAREHOUSE_HOST=$HOST
export PG_WAREHOUSE_PORT=$SECURE_PG_PORT
export PG_WAREHOUSE_DBNAME=$PG_DB
export PG_WAREHOUSE_USER=$PG_USER
export PG_WAREHOUSE_PASSWORD=$SECURE_PG_PASSWORD
export PG_WAREHOUSE_SSLMODE=verify-full
export PG_WAREHOUSE_SSLROOTCERT=$SECURE_CA_DIR/ca.crt
EOF
}

secure_status() {
  local rc=0 pid row name key port probe
  for row in "postgresql-tls secure-postgres $SECURE_PG_PORT secure_pg_ready" \
    "redis-tls secure-redis $SECURE_REDIS_PORT secure_redis_ready" \
    "kafka-sasl-ssl secure-kafka $SECURE_KAFKA_PORT secure_kafka_ready"; do
    read -r name key port probe <<<"$row"
    pid=$(ours_pid "$key") || pid=""
    if [[ -z $pid ]]; then
      if port_open "$port"; then
        status_line "$name" "$port" taken - foreign "$(port_owner "$port")"
      else
        status_line "$name" "$port" down - - ""
      fi
      rc=1
    elif "$probe"; then
      status_line "$name" "$port" up "$pid" ours "verified with the CA in $SECURE_CA_DIR"
    else
      status_line "$name" "$port" no-answer "$pid" ours "running but not answering"
      rc=1
    fi
  done
  return "$rc"
}

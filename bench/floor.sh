#!/usr/bin/env bash
# The floor bench/deployment.py compares site.yml with: the same end state on a fresh node, done directly
# with apt and docker run, no Ansible. Same packages (docker.io, the NVIDIA toolkit from the apt
# repository, prometheus-node-exporter), same daemon.json, same images from the same registry, same
# containers with the same mounts, environment, GPUs, ports and health checks; it ends when every
# TeraChem server passes its health check and every worker its own, each run now (Docker runs them
# every two minutes): the servers answer and the workers have reached the broker.
# Runs inside a node: docker exec -i -e FLOOR_... NODE bash -s head|gpu < bench/floor.sh
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
role=$1
registry=registry:5000/terafleet
ip=$(hostname -I | awk '{print $1}')
# Each step's end, in seconds since the epoch, for bench/logs/floor-NODE.log.
stamp() { printf 'floor %s %s\n' "$(date +%s.%N)" "$1"; }
stamp start

apt-get update -q >/dev/null
printf 'ARGS="--web.listen-address=%s:9100 --collector.textfile.directory=/var/lib/prometheus/node-exporter"\n' "$ip" \
  >/etc/default/prometheus-node-exporter
apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold docker.io prometheus-node-exporter \
  >/dev/null
stamp docker.io
mkdir -p /etc/docker
printf '{"insecure-registries": ["registry:5000"], "live-restore": true}\n' >/etc/docker/daemon.json
if [[ $role == gpu ]]; then
  python3 -c 'import urllib.request,sys; sys.stdout.buffer.write(urllib.request.urlopen("http://aptrepo/gpgkey").read())' \
    >/usr/share/keyrings/nvidia-container-toolkit-keyring.asc
  echo "deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.asc] http://aptrepo/stable/deb/\$(ARCH) /" \
    >/etc/apt/sources.list.d/nvidia-container-toolkit.list
  apt-get update -q >/dev/null
  apt-get install -y -q nvidia-container-toolkit >/dev/null
  nvidia-ctk runtime configure --runtime=docker >/dev/null
  stamp nvidia-container-toolkit
fi
systemctl restart docker
stamp 'docker restarted'

if [[ $role == head ]]; then
  docker pull -q $registry/broker:latest >/dev/null
  docker pull -q $registry/backend:latest >/dev/null
  stamp pulled
  install -d -m 0700 /etc/terafleet/broker/rabbitmq /etc/terafleet/broker/redis /etc/terafleet/broker/tls
  printf '%s\n' "$FLOOR_TLS_CA" >/etc/terafleet/broker/tls/ca.crt
  printf '%s\n' "$FLOOR_TLS_CERT" >/etc/terafleet/broker/tls/broker.crt
  printf '%s\n' "$FLOOR_TLS_KEY" >/etc/terafleet/broker/tls/broker.key
  chmod 0644 /etc/terafleet/broker/tls/*
  tls_mounts() {
    for file in ca.crt broker.crt broker.key; do
      printf -- '--mount type=bind,source=/etc/terafleet/broker/tls/%s,target=%s/%s,readonly ' "$file" "$1" "$file"
    done
  }
  cat >/etc/terafleet/broker/rabbitmq/10-terafleet.conf <<CONF
default_user = terafleet
default_pass = $FLOOR_RABBITMQ_PASSWORD
default_vhost = terafleet
default_permissions.configure = .*
default_permissions.read = .*
default_permissions.write = .*
listeners.tcp = none
listeners.ssl.default = 5671
ssl_options.cacertfile = /etc/rabbitmq/tls/ca.crt
ssl_options.certfile = /etc/rabbitmq/tls/broker.crt
ssl_options.keyfile = /etc/rabbitmq/tls/broker.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
consumer_timeout = 604800000
CONF
  printf '[rabbitmq_prometheus].\n' >/etc/terafleet/broker/rabbitmq/enabled_plugins
  printf 'bind 0.0.0.0\nprotected-mode no\nport 0\ntls-port 6379\ntls-cert-file /usr/local/etc/redis/tls/broker.crt\ntls-key-file /usr/local/etc/redis/tls/broker.key\ntls-ca-cert-file /usr/local/etc/redis/tls/ca.crt\ntls-auth-clients no\ndir /data\nuser default off\nuser terafleet reset on >%s ~* &* -@all +@read +@write +@keyspace +@pubsub +@transaction +@connection +@scripting +time -@dangerous\nappendonly yes\n' \
    "$FLOOR_REDIS_PASSWORD" >/etc/terafleet/broker/redis/redis.conf
  # shellcheck disable=SC2046 # the mounts are one word each
  docker run -d --name terafleet-rabbitmq --restart unless-stopped -p "$ip:5671:5671" -p "$ip:15692:15692" \
    $(tls_mounts /etc/rabbitmq/tls) \
    --mount type=bind,source=/etc/terafleet/broker/rabbitmq/enabled_plugins,target=/etc/rabbitmq/enabled_plugins,readonly \
    --mount type=volume,source=terafleet-rabbitmq-data,target=/var/lib/rabbitmq \
    --mount type=bind,source=/etc/terafleet/broker/rabbitmq/10-terafleet.conf,target=/etc/rabbitmq/conf.d/10-terafleet.conf,readonly \
    $registry/broker:latest >/dev/null
  # shellcheck disable=SC2046 # the mounts are one word each
  docker run -d --name terafleet-redis --restart unless-stopped -p "$ip:6379:6379" $(tls_mounts /usr/local/etc/redis/tls) \
    --mount type=volume,source=terafleet-redis-data,target=/data \
    --mount type=bind,source=/etc/terafleet/broker/redis/redis.conf,target=/usr/local/etc/redis/redis.conf,readonly \
    $registry/backend:latest redis-server /usr/local/etc/redis/redis.conf >/dev/null
  for _ in $(seq 120); do
    docker exec terafleet-rabbitmq rabbitmq-diagnostics -q check_port_connectivity >/dev/null 2>&1 && stamp serving && exit 0
    sleep 1
  done
  exit 1
fi

for image in standin worker frontend; do docker pull -q $registry/$image:latest >/dev/null; stamp "pulled $image"; done
node=$(hostname -s)
install -d -m 0700 /etc/terafleet/terachem
printf '%s\n' "$FLOOR_LICENSE" >/etc/terafleet/terachem/license.key
chmod 0400 /etc/terafleet/terachem/license.key
install -d -m 0700 /etc/terafleet/worker
printf '%s\n' "amqps://terafleet:$FLOOR_RABBITMQ_PASSWORD@$FLOOR_HEAD:5671/terafleet" >/etc/terafleet/worker/broker_url
printf '%s\n' "rediss://terafleet:$FLOOR_REDIS_PASSWORD@$FLOOR_HEAD:6379/0" >/etc/terafleet/worker/result_backend
printf '%s\n' "$FLOOR_TLS_CA" >/etc/terafleet/worker/ca.crt
chmod 0400 /etc/terafleet/worker/broker_url /etc/terafleet/worker/result_backend
chmod 0444 /etc/terafleet/worker/ca.crt
docker network create terafleet >/dev/null
health='exec 3<>/dev/tcp/127.0.0.1/11111 && printf "\0\0\0\0\0\0\0\0" >&3 && for byte in 1 2 3 4; do IFS= read -r -t 4 -d "" answer <&3 && [ -z "$answer" ] || exit 1; done'
ports=()
for gpu in $(seq 0 $((FLOOR_GPUS - 1))); do
  set_name=gpu$gpu
  scratch=/lstor/terafleet/scratch/$node-$set_name
  mkdir -p "$scratch"
  docker volume create --driver local --opt type=none --opt o=bind --opt device="$scratch" terafleet-scratch-$set_name >/dev/null
  docker run -d --name terachem-$set_name --hostname terachem-$set_name --network terafleet --network-alias terachem-$set_name \
    --gpus "device=$gpu" --init --restart unless-stopped --stop-timeout 30 -w /scratch -e STANDIN_BACKEND=pyscf \
    --mount type=volume,source=terafleet-scratch-$set_name,target=/scratch,volume-nocopy \
    --mount type=bind,source=/etc/terafleet/terachem/license.key,target=/opt/terachem/license.key,readonly \
    --health-cmd "bash -c '$health'" --health-interval 120s --health-timeout 5s \
    --health-retries 3 --health-start-period 60s --label org.terafleet.role=terachem \
    $registry/standin:latest terachem -s 11111 >/dev/null
  docker run -d --name worker-$set_name --hostname worker-$set_name --network terafleet --restart unless-stopped \
    --stop-timeout 86400 --label org.terafleet.role=worker \
    -e TERAFLEET_BROKER_URL_FILE=/run/terafleet/broker_url -e TERAFLEET_RESULT_BACKEND_FILE=/run/terafleet/result_backend \
    -e TERAFLEET_TLS_CA_FILE=/run/terafleet/ca.crt \
    -e TERAFLEET_QUEUES="terachem,terachem.$node.$set_name" -e TERAFLEET_NODE="$node" -e TERAFLEET_GPU_SET=$set_name \
    -e TCPB_HOST=terachem-$set_name -e TCPB_PORT=11111 -e TERAFLEET_SCRATCH_DIR=/scratch \
    --mount type=volume,source=terafleet-scratch-$set_name,target=/scratch,readonly \
    --mount type=bind,source=/etc/terafleet/worker,target=/run/terafleet,readonly \
    $registry/worker:latest >/dev/null
  ports+=(-p "$ip:$((8080 + gpu)):$((8080 + gpu))")
done
docker run -d --name terafleet-frontend --network terafleet --restart unless-stopped "${ports[@]}" \
  --mount type=bind,source=/lstor/terafleet/scratch,target=/scratch --label org.terafleet.role=frontend \
  $registry/frontend:latest >/dev/null
stamp 'containers started'
waiting=()
for gpu in $(seq 0 $((FLOOR_GPUS - 1))); do waiting+=(terachem-gpu$gpu worker-gpu$gpu); done
for _ in $(seq 300); do
  left=()
  for name in "${waiting[@]}"; do
    if [[ $name == terachem-* ]]; then check=(bash -c "$health"); else check=(terafleet-healthcheck); fi
    docker exec "$name" "${check[@]}" >/dev/null 2>&1 || left+=("$name")
  done
  [[ ${#left[@]} -eq 0 ]] && stamp 'servers and workers answer' && exit 0
  waiting=("${left[@]}")
  sleep 1
done
exit 1

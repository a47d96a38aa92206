#!/usr/bin/env bash
# Runs the shipped three-node cluster configuration (node.conf + ../accounts.conf, unchanged)
# on loopback: three nats-servers with TLS to clients, mutually authenticated TLS routes and
# JetStream fsync on every write. For trying the cluster locally and for the fault tests
# (tests/tests/cluster.rs runs it).
#
#   start-local.sh DIR            start the members that are not running (all, the first time)
#   start-local.sh DIR stop       stop all three (SIGTERM, then wait)
#   start-local.sh DIR kill-9 N   kill member N (1..3) with SIGKILL, as a crash would
#   start-local.sh DIR status     which members run
#
# DIR keeps everything of this local cluster (0700): tls/ (a dev CA and one certificate per
# member, made with openssl on first start), passwords.env (one random password per user of
# accounts.conf, 0600), n<N>.env, n<N>.log, n<N>.pid, the JetStream stores n<N>/, and
# profiles/<user>.json (0600): connection profiles for `keyledger serve` (service_profile) and
# for `keyledger kms --profile` (profiles/app.json, tenant TENANT_A = account 111122223333).
#
# Ports: KL_LOCAL_CLIENT_PORTS (default "4222 4223 4224") and KL_LOCAL_ROUTE_PORTS (default
# "6222 6223 6224"), three each. nats-server: $NATS_SERVER, else on PATH, else the project's
# own (.tools/nats/bin, installed by deploy/install-nats-server.sh when missing).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
usage() { echo "usage: $0 DIR [start|stop|kill-9 N|status]" >&2; exit 2; }
[ $# -ge 1 ] || usage
dir="$1"
action="${2:-start}"
# nats-server reads paths from the environment as config values: no quotes, backslashes or
# whitespace in them.
case "$dir" in *'"'* | *'\'* | *[[:space:]]*) echo "DIR may not contain quotes, backslashes or whitespace" >&2; exit 2 ;; esac
mkdir -p "$dir"
chmod 700 "$dir"
dir="$(cd "$dir" && pwd)"

# The ports are chosen on the first start and kept (DIR/ports.env): a restart uses the same.
if [ -f "$dir/ports.env" ]; then
  # shellcheck disable=SC1091
  . "$dir/ports.env"
  for var in KL_LOCAL_CLIENT_PORTS KL_LOCAL_ROUTE_PORTS; do
    saved="saved_$var"
    if [ -n "${!var:-}" ] && [ "${!var}" != "${!saved}" ]; then
      echo "$dir was started with $var=\"${!saved}\"; it keeps its ports" >&2; exit 2
    fi
  done
  KL_LOCAL_CLIENT_PORTS="$saved_KL_LOCAL_CLIENT_PORTS"
  KL_LOCAL_ROUTE_PORTS="$saved_KL_LOCAL_ROUTE_PORTS"
fi
read -r -a client_ports <<<"${KL_LOCAL_CLIENT_PORTS:-4222 4223 4224}"
read -r -a route_ports <<<"${KL_LOCAL_ROUTE_PORTS:-6222 6223 6224}"
[ "${#client_ports[@]}" -eq 3 ] && [ "${#route_ports[@]}" -eq 3 ] || {
  echo "KL_LOCAL_CLIENT_PORTS and KL_LOCAL_ROUTE_PORTS need three ports each" >&2; exit 2; }

# The users of accounts.conf and the variable holding each one's password.
users=(keyledger keyd checkpointer cryptod-1 cryptod-2 cryptod-3 auditd gateway app)
password_var() {
  case "$1" in
    keyledger) echo KEYLEDGER_SERVICE_PASSWORD ;;
    app) echo KEYLEDGER_TENANT_A_PASSWORD ;;
    *) echo "KEYLEDGER_$(echo "$1" | tr 'a-z-' 'A-Z_')_PASSWORD" ;;
  esac
}

# A member runs when its pid is alive, not a zombie (a killed child of a reaper that has not
# reaped it yet), and is this cluster's nats-server (a stale pid file, after a reboot say, may
# name an unrelated process: never signal that).
running() {
  [ -f "$dir/n$1.pid" ] || return 1
  local pid state
  pid="$(cat "$dir/n$1.pid")"
  state="$(ps -o stat= -p "$pid" 2>/dev/null)" || return 1
  [ -n "$state" ] && [ "${state#Z}" = "$state" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "-c $here/node.conf"
}

case "$action" in
  status)
    for i in 1 2 3; do
      if running "$i"; then echo "n$i running (pid $(cat "$dir/n$i.pid"))"; else echo "n$i stopped"; fi
    done
    exit 0 ;;
  stop)
    for i in 1 2 3; do if running "$i"; then kill "$(cat "$dir/n$i.pid")"; fi; done
    for i in 1 2 3; do
      for _ in $(seq 100); do running "$i" || break; sleep 0.1; done
      rm -f "$dir/n$i.pid"
    done
    exit 0 ;;
  kill-9)
    n="${3:-}"
    case "$n" in 1 | 2 | 3) ;; *) usage ;; esac
    if running "$n"; then kill -9 "$(cat "$dir/n$n.pid")"; fi
    for _ in $(seq 100); do running "$n" || break; sleep 0.1; done
    exit 0 ;;
  start) ;;
  *) usage ;;
esac

# nats-server 2.15 (Debian's 2.9 is too old).
server="${NATS_SERVER:-}"
if [ -z "$server" ]; then
  if command -v nats-server >/dev/null; then server="$(command -v nats-server)"
  else
    [ -x "$root/.tools/nats/bin/nats-server" ] || "$root/deploy/install-nats-server.sh" >&2
    server="$root/.tools/nats/bin/nats-server"
  fi
fi

# A dev CA and a certificate per member for 127.0.0.1/localhost, server and client auth.
tls="$dir/tls"
if [ ! -f "$tls/ca.pem" ]; then
  command -v openssl >/dev/null || { echo "openssl is needed to make the local cluster's certificates" >&2; exit 1; }
  mkdir -p "$tls"
  chmod 700 "$tls"
  (
    umask 077
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -days 365 \
      -subj "/CN=Keyledger local cluster CA" -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null
    for i in 1 2 3; do
      openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
        -subj "/CN=kl-nats-$i" -keyout "$tls/n$i.key" -out "$tls/n$i.csr" 2>/dev/null
      printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kl-nats-$i" \
        "extendedKeyUsage=serverAuth,clientAuth" "keyUsage=digitalSignature" >"$tls/n$i.ext"
      openssl x509 -req -in "$tls/n$i.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
        -days 365 -extfile "$tls/n$i.ext" -out "$tls/n$i.pem" 2>/dev/null
      rm -f "$tls/n$i.csr" "$tls/n$i.ext"
    done
  )
fi

# One random password per user, kept in a 0600 file. nats-server parses a variable's value as
# a config value: a password must not look like a number, hence the letters in front.
if [ ! -f "$dir/passwords.env" ]; then
  (
    umask 077
    for u in "${users[@]}"; do
      echo "$(password_var "$u")=kl$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
    done >"$dir/passwords.env.tmp"
    mv "$dir/passwords.env.tmp" "$dir/passwords.env"
  )
fi

routes="[tls://127.0.0.1:${route_ports[0]}, tls://127.0.0.1:${route_ports[1]}, tls://127.0.0.1:${route_ports[2]}]"
urls="tls://127.0.0.1:${client_ports[0]},tls://127.0.0.1:${client_ports[1]},tls://127.0.0.1:${client_ports[2]}"

for i in 1 2 3; do
  cat >"$dir/n$i.env" <<EOF
KL_NATS_NAME=kl-nats-$i
KL_NATS_HOST=127.0.0.1
KL_NATS_PORT=${client_ports[$((i - 1))]}
KL_NATS_CLUSTER_PORT=${route_ports[$((i - 1))]}
KL_NATS_ROUTES="$routes"
KL_NATS_STORE="$dir/n$i"
KL_NATS_TLS_CERT="$tls/n$i.pem"
KL_NATS_TLS_KEY="$tls/n$i.key"
KL_NATS_TLS_CA="$tls/ca.pem"
EOF
done

in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
started=()
# Stops what this run started, when it fails.
undo() {
  for i in "${started[@]}"; do
    if running "$i"; then kill "$(cat "$dir/n$i.pid")"; fi
    rm -f "$dir/n$i.pid"
  done
}
for i in 1 2 3; do
  running "$i" && continue
  for port in "${client_ports[$((i - 1))]}" "${route_ports[$((i - 1))]}"; do
    if in_use "$port"; then
      echo "port $port (member n$i) is in use by another process" >&2
      undo
      exit 1
    fi
  done
  # A new session: the member outlives this script and is not killed with its caller's
  # process group.
  setsid bash -c 'set -a; . "$1"; . "$2"; exec "$3" -c "$4"' member \
    "$dir/passwords.env" "$dir/n$i.env" "$server" "$here/node.conf" >>"$dir/n$i.log" 2>&1 </dev/null &
  echo $! >"$dir/n$i.pid"
  started+=("$i")
done

# Ready when the client port accepts connections (JetStream needs a quorum, i.e. two members,
# before streams answer; Keyledger's roles wait for that themselves).
for i in "${started[@]}"; do
  port="${client_ports[$((i - 1))]}"
  ok=""
  for _ in $(seq 300); do
    if ! running "$i"; then break; fi
    if in_use "$port"; then ok=1; break; fi
    sleep 0.1
  done
  if [ -z "$ok" ] || ! running "$i"; then
    echo "member n$i did not start; the end of $dir/n$i.log:" >&2
    tail -n 20 "$dir/n$i.log" >&2
    echo >&2
    undo
    exit 1
  fi
done
# The ports stay with DIR from the first successful start on.
[ -f "$dir/ports.env" ] || printf 'saved_KL_LOCAL_CLIENT_PORTS="%s"\nsaved_KL_LOCAL_ROUTE_PORTS="%s"\n' \
  "${client_ports[*]}" "${route_ports[*]}" >"$dir/ports.env"

# Connection profiles (JSON, 0600) with every member's URL and the CA.
mkdir -p "$dir/profiles"
# shellcheck disable=SC1091
. "$dir/passwords.env"
for u in "${users[@]}"; do
  var="$(password_var "$u")"
  pw="${!var}"
  case "$u" in
    app) body="\"url\":\"$urls\",\"user\":\"app\",\"password\":\"$pw\",\"inbox_prefix\":\"_INBOX.app\",\"keyledger_account\":\"111122223333\"" ;;
    gateway) body="\"url\":\"$urls\",\"nats_account\":\"GATEWAY\",\"user\":\"gateway\",\"password\":\"$pw\",\"inbox_prefix\":\"_INBOX.gateway\"" ;;
    *) body="\"url\":\"$urls\",\"nats_account\":\"KEYLEDGER\",\"user\":\"$u\",\"password\":\"$pw\",\"inbox_prefix\":\"_INBOX.$u\"" ;;
  esac
  (umask 077; echo "{$body,\"ca_file\":\"$tls/ca.pem\"}" >"$dir/profiles/$u.json")
done

echo "three members on $urls (TLS; CA $tls/ca.pem)"
echo "connection profiles: $dir/profiles/<user>.json; logs: $dir/n<N>.log; stop: $0 $dir stop"

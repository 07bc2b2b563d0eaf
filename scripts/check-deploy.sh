#!/usr/bin/env bash
# Checks the deployment files in docs/deploy/ with the real tools, where this machine has
# them (installing Debian's prometheus (promtool) and nginx when missing):
#   - the Grafana dashboard is valid JSON and names only metric families afw registers;
#   - prometheus.yml passes `promtool check config`;
#   - nginx.conf passes `nginx -t` (with the upstream names pointed at loopback and a
#     throwaway certificate);
#   - afw.service passes `systemd-analyze verify` (with the built binary and the example
#     environment file);
#   - compose.yaml passes `docker compose config` when the compose plugin exists.
# The Dockerfile and the compose stack are not built or run here: images cannot be pulled.
set -euo pipefail
cd "$(dirname "$0")/.."
D=docs/deploy
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT

need() { # need <command> <debian package>
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "==> installing $2 (Debian package) for $1"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$2" >/dev/null \
    || { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$2" >/dev/null; }
}

echo "==> deploy: Grafana dashboard names only registered families"
python3 - "$D/grafana-dashboard.json" src/metrics.rs <<'PY'
import json, re, sys
dash = json.load(open(sys.argv[1]))
source = open(sys.argv[2]).read()
registered = set(re.findall(r'"((?:[a-z]+_)*[a-z]+)"', source))
exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
bad = []
for name in sorted({m for e in exprs for m in re.findall(r"\bafw_[a-z_]+", e)}):
    base = re.sub(r"_(total|bucket|sum|count)$", "", name[len("afw_"):])
    if base not in registered:
        bad.append(name)
if bad:
    sys.exit(f"not registered by src/metrics.rs: {', '.join(bad)}")
print(f"{len(dash['panels'])} panels, {len(exprs)} queries: every family is registered")
PY

need promtool prometheus
echo "==> deploy: promtool check config"
echo "example-key" > "$TMP/key"
sed "s#/etc/prometheus/afw-metrics-key#$TMP/key#" "$D/prometheus.yml" > "$TMP/prometheus.yml"
promtool check config "$TMP/prometheus.yml"

need nginx nginx
echo "==> deploy: nginx -t"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=afw.example.com" \
  -keyout "$TMP/tls.key" -out "$TMP/tls.crt" 2>/dev/null
sed -e "s#afw1:3001#127.0.0.1:3001#; s#afw2:3001#127.0.0.2:3001#" \
    -e "s#/etc/nginx/certs#$TMP#g" "$D/nginx.conf" > "$TMP/nginx.conf"
nginx -t -q -c "$TMP/nginx.conf" -e "$TMP/error.log" -g "pid $TMP/nginx.pid;"
echo "nginx.conf: syntax ok"

echo "==> deploy: systemd-analyze verify"
if command -v systemd-analyze >/dev/null 2>&1; then
  bin="$(pwd)/target/release/afw"; [ -x "$bin" ] || bin="$(pwd)/target/debug/afw"
  [ -x "$bin" ] || bin=/usr/bin/true
  cp "$D/afw.env.example" "$TMP/afw.env"
  sed -e "s#^ExecStart=.*#ExecStart=$bin#" -e "s#^EnvironmentFile=.*#EnvironmentFile=$TMP/afw.env#" \
    "$D/afw.service" > "$TMP/afw.service"
  out="$(SYSTEMD_LOG_LEVEL=warning systemd-analyze verify "$TMP/afw.service" 2>&1 || true)"
  # Without a running systemd (containers) verify still parses the unit; only its own
  # complaints about this unit count.
  if grep -E "afw\.service" <<<"$out" | grep -viE "Failed to (connect|create|initialize)|bus"; then
    echo "afw.service: systemd-analyze verify complained (above)"; exit 1
  fi
  echo "afw.service: ok"
else
  echo "afw.service: NOT checked (systemd-analyze missing)"
fi

echo "==> deploy: docker compose config"
if docker compose version >/dev/null 2>&1; then
  AFW_API_KEY=x AFW_METRICS_KEY=y docker compose -f "$D/compose.yaml" config -q
  echo "compose.yaml: ok"
else
  echo "compose.yaml: NOT checked (no docker compose plugin on this machine)"
fi

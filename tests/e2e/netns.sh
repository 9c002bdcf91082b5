#!/usr/bin/env bash
# A small "Hugging Face Space" network made of network namespaces (needs root):
#
#   $P-client 192.168.77.2 --- 192.168.77.1 $P-proxy 10.77.0.1 --- 10.77.0.2 $P-space
#   (browser)                   (nginx, "HF's proxy")               (entrypoint + gateway)
#
# The proxy namespace forwards packets too, so a client can also reach the Space directly
# (that is how the test checks that forwarded headers from a peer outside
# gateway.trustedProxies = 10.0.0.0/8 are refused). Nothing here touches the root namespace's
# interfaces or any address outside these namespaces: both veth ends are created in place.
#
#   netns.sh up P     create (fails if they exist)
#   netns.sh down P   delete (ignores what is already gone)
set -euo pipefail

cmd="${1:?usage: netns.sh up|down PREFIX}"
P="${2:?usage: netns.sh up|down PREFIX}"
nx() { ip netns exec "$1" "${@:2}"; }

case "$cmd" in
up)
  for n in space proxy client; do ip netns add "$P-$n"; nx "$P-$n" ip link set lo up; done
  ip link add sp0 netns "$P-space" type veth peer name px0 netns "$P-proxy"
  ip link add cl0 netns "$P-client" type veth peer name px1 netns "$P-proxy"
  nx "$P-space" ip addr add 10.77.0.2/24 dev sp0
  nx "$P-proxy" ip addr add 10.77.0.1/24 dev px0
  nx "$P-proxy" ip addr add 192.168.77.1/24 dev px1
  nx "$P-client" ip addr add 192.168.77.2/24 dev cl0
  for l in "space sp0" "proxy px0" "proxy px1" "client cl0"; do set -- $l; nx "$P-$1" ip link set "$2" up; done
  nx "$P-space" ip route add 192.168.77.0/24 via 10.77.0.1
  nx "$P-client" ip route add 10.77.0.0/24 via 192.168.77.1
  nx "$P-proxy" sysctl -qw net.ipv4.ip_forward=1
  ;;
down)
  for n in space proxy client; do ip netns del "$P-$n" 2>/dev/null || true; done
  ;;
*) echo "usage: netns.sh up|down PREFIX" >&2; exit 2 ;;
esac

"""``python -m e2e.kubelet CONTROLPLANE_DIR WORKDIR``: run the process kubelet until SIGTERM.

Reads the API server's address from ``CONTROLPLANE_DIR/controlplane.json``, the CA from
``CONTROLPLANE_DIR/pki`` and, from the API server's kubelet client certificate there, the one user
its kubelet API serves; writes ``WORKDIR/kubelet.json`` (control API URL, kubelet API URL,
namespace prefix, pid) once the nodes are registered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from pathlib import Path

from e2e import pki
from e2e.kubelet.kubelet import KubeletConfig, NodeSpec, serve, valid_prefix

# The API server's client certificate towards kubelets (``--kubelet-client-certificate``), made by
# e2e.controlplane: its user is the one the kubelet API serves.
APISERVER_KUBELET_CLIENT = "apiserver-kubelet-client.crt"
DEFAULT_NODES = (
    "node-a:etcd.pyetcd.io/disk=ssd,node-b:etcd.pyetcd.io/disk=ssd,"
    "node-c:etcd.pyetcd.io/disk=ssd,node-d"
)


def parse_nodes(text: str) -> tuple[NodeSpec, ...]:
    """``name[:key=value[;key=value]],...``"""
    nodes = []
    for item in text.split(","):
        name, _, labels = item.strip().partition(":")
        pairs = dict(p.split("=", 1) for p in labels.split(";") if p)
        nodes.append(NodeSpec(name, pairs))
    return tuple(nodes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the e2e process kubelet")
    parser.add_argument("controlplane", type=Path)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--nodes", default=DEFAULT_NODES)
    parser.add_argument("--prefix", default="ke2e")
    parser.add_argument("--control-port", type=int, default=0)
    parser.add_argument("--server-port", type=int, default=0, help="kubelet API port (0: free)")
    parser.add_argument("--backoff", type=float, default=10.0, help="first restart back-off (s)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    info = json.loads((args.controlplane / "controlplane.json").read_text())
    pki_dir = args.controlplane / "pki"
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    config = KubeletConfig(
        server=info["server"],
        ca=pki.KeyPair(pki_dir / "ca.crt", pki_dir / "ca.key"),
        workdir=workdir,
        nodes=parse_nodes(args.nodes),
        prefix=valid_prefix(args.prefix),
        backoff_base=args.backoff,
        server_port=args.server_port,
        apiserver_users=frozenset({pki.common_name(pki_dir / APISERVER_KUBELET_CLIENT)}),
    )
    asyncio.run(serve(config, args.control_port, workdir / "kubelet.json"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

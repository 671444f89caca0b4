"""`GET /dayfly/v1/nodes`: the live nodes of the cluster (one node: itself), from memory."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .common import JSON


async def list_nodes(request: Request) -> Response:
    p = request.app.state.platform
    me = p.membership.node_id
    nodes = [{**n.to_json(), "self": n.id == me} for n in p.membership.peers()]
    return JSON({"cluster": p.membership.cluster, "nodes": nodes})


routes = [Route("/dayfly/v1/nodes", list_nodes, methods=["GET"])]

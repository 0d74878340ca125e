"""A follower passes to the leader the few calls only the leader can serve.

Confirming a held offboarding is one: the held change lives in the leader's memory.
The call goes to the URL the leader advertised when it took the lead (stored with
its epoch), with the caller's token and request id, and the leader's answer comes
back as it is. A call that was forwarded once is never forwarded again (a stale
address could point at another follower): that replica answers it itself.
"""

from __future__ import annotations

from fastapi import Request, Response

from orchestrator.errors import Conflict, TemporaryError
from orchestrator.interfaces.views import ReplicaView

#: marks a forwarded call (and names the replica that forwarded it)
FORWARDED = "X-Orchestrator-Forwarded-By"
#: how long the leader may take to answer a forwarded call
TIMEOUT_SECONDS = 30.0
#: the caller's headers that travel with the call
PASSED = ("authorization", "content-type", "x-request-id")


def should_forward(request: Request, replica: ReplicaView) -> bool:
    return replica.role == "follower" and FORWARDED not in request.headers


async def to_leader(request: Request, replica: ReplicaView) -> Response:
    """The leader's answer to ``request``; Conflict when the leader is not known,
    TemporaryError (503) when it does not answer."""
    # imported here, not with the API: only followers forward (start-up time and memory)
    import httpx

    if not replica.leader_url:
        raise Conflict(
            f"this replica follows, and the leader ({replica.leader or 'unknown'}) has not"
            " said where its API listens: call the leader itself"
        )
    headers = {k: v for k, v in request.headers.items() if k.lower() in PASSED}
    headers[FORWARDED] = replica.replica or "a follower"
    url = f"{replica.leader_url}{request.url.path}"
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as client:
            answer = await client.request(
                request.method,
                url,
                params=request.query_params,
                headers=headers,
                content=await request.body(),
            )
    except httpx.HTTPError as error:
        raise TemporaryError(
            f"this replica follows, and the leader {replica.leader} at {replica.leader_url}"
            f" did not answer ({type(error).__name__}); try again shortly",
            reason="LeaderUnavailable",
        ) from None
    # the request id went with the call; this replica's request log answers it too
    passed = {"X-Forwarded-To": replica.leader or replica.leader_url}
    return Response(
        content=answer.content,
        status_code=answer.status_code,
        media_type=answer.headers.get("content-type"),
        headers=passed,
    )

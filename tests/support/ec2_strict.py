"""moto as strict as EC2 about an instant fleet's spot requests, so "nothing left" means what it means
in an account.

EC2 makes each spot request of an instant EC2 Fleet `one-time`, and a one-time request is `closed` the
moment its instance ends (status `instance-terminated-by-user`, or `...-by-service` on a reclaim). moto
5.2 creates them `persistent` and leaves them `active` after their instance is terminated, so a test that
lists open or active spot requests would see every one of them "left", and a test that ignores them
would not notice a request EC2 really kept open. `strict_spot_requests()` patches moto's EC2 backend in
this process (the ThreadedMotoServer of tests/support/moto_server.py runs here) to do what EC2 does.
Idempotent; nothing of ec2dbn's code is touched.
"""

from __future__ import annotations

from typing import Any

_PATCHED = "_ec2dbn_strict"


def strict_spot_requests() -> None:
    """From now on: an instant fleet's spot requests are one-time, and closed with their instance."""
    from moto.ec2.models.fleets import Fleet
    from moto.ec2.models.instances import Instance

    if getattr(Fleet, _PATCHED, False):
        return
    create_spot_requests = Fleet.create_spot_requests
    terminate = Instance.terminate

    def one_time(self: Any, weight_to_add: float) -> Any:
        before = {id(r) for r in self.spot_requests}
        requests = create_spot_requests(self, weight_to_add)
        if self.fleet_type == "instant":
            for request in self.spot_requests:
                if id(request) not in before:
                    request.type = "one-time"
        return requests

    def closing(self: Any) -> Any:
        previous = terminate(self)
        for request in list(self.ec2_backend.spot_instance_requests.values()):
            mine = request.instance is self and request.type == "one-time"
            if mine and request.state in ("open", "active"):
                request.state = "closed"
                request._status_code = "instance-terminated-by-user"
                request.status_message = "Spot Instance terminated due to user-initiated termination."
        return previous

    Fleet.create_spot_requests = one_time  # type: ignore[method-assign]
    Instance.terminate = closing  # type: ignore[method-assign]
    setattr(Fleet, _PATCHED, True)

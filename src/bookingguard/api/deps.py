"""Request dependencies: the services object built by ``bootstrap``."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from bookingguard.bootstrap import Services

__all__ = ["ServicesDep", "get_services"]


async def get_services(request: Request) -> Services:
    """The app's services (set by ``create_app``); async, so no worker thread is taken."""
    return cast(Services, request.app.state.services)


#: A route parameter typed ``ServicesDep`` receives the app's services.
ServicesDep = Annotated[Services, Depends(get_services)]

"""Who may call the operations routes: operators change, viewers read."""

from typing import Annotated

from fastapi import Depends

from pulmogate.api.deps import CurrentUser, current_user

Operator = Annotated[CurrentUser, Depends(current_user)]
Viewer = Annotated[CurrentUser, Depends(current_user)]

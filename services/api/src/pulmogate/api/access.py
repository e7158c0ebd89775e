"""Who may call the operations routes: operators change and test, viewers read."""

from pulmogate.api.deps import OperatorDep, ViewerDep

Operator = OperatorDep
Viewer = ViewerDep

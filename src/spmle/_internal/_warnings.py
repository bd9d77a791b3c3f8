"""Warning classes, so that users can filter them one by one."""


class ConvergenceWarning(UserWarning):
    """The outer optimiser or an inner NPMLE solve did not converge."""


class HessianWarning(UserWarning):
    """The profile Hessian is not negative definite or is nearly singular."""


class GridWarning(UserWarning):
    """The estimated mixing distribution has mass on the edge of the grid."""

"""The theory room: expected (mean-field) dynamics of the learning rules, closed forms of the
papers' linear chains, and flow fields.

:mod:`lpfa.dynamics.expected` turns any network into the ODE dθ/dt = E[Δθ]/η of its rule by
running the simulator's own step on a design batch with the right moments.
"""

from lpfa.dynamics.expected import ExpectedDynamics, Trajectory, linear_config, moment_design

__all__ = ["ExpectedDynamics", "Trajectory", "linear_config", "moment_design"]

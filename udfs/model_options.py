"""Model options River does not ship, declared in `conf/` like River's own classes.

A model spec names them `udfs.model_options.<Class>` (see `udfs.model_spec`). EWMA feature scaling
needs nothing here: River's `preprocessing.AdaptiveStandardScaler` scales with exponentially
weighted means and variances (`fading_factor` is the EWMA weight).

>>> from udfs.model_spec import build_model
>>> model = build_model({"steps": [
...     {"class": "preprocessing.AdaptiveStandardScaler", "params": {"fading_factor": 0.05}},
...     {"class": "linear_model.LogisticRegression", "params": {"optimizer": {"class": "optim.SGD", "params": {
...         "lr": {"class": "udfs.model_options.InverseTimeDecay", "params": {"eta0": 0.1, "alpha": 0.01}}}}}},
... ]})
>>> model["LogisticRegression"].optimizer.learning_rate
0.1
>>> [round(InverseTimeDecay(eta0=0.1, alpha=0.01).get(t), 4) for t in (0, 100, 900)]
[0.1, 0.05, 0.01]
"""

from river.optim.base import Scheduler

__all__ = ["InverseTimeDecay"]


class InverseTimeDecay(Scheduler):
    """The learning rate eta_t = eta0 / (1 + alpha * t): large steps while a key's model is new,
    smaller ones as it settles, so a late outlier moves an old model less than a young one.

    Parameters
    ----------
    eta0
        The learning rate of the first update.
    alpha
        How fast it decays; after 1 / alpha updates the rate is half of eta0.
    """

    def __init__(self, eta0: float, alpha: float):
        if eta0 <= 0 or alpha < 0:
            raise ValueError(f"eta0 must be > 0 and alpha >= 0, got eta0={eta0}, alpha={alpha}")
        self.eta0 = eta0
        self.alpha = alpha

    def get(self, t: int) -> float:
        return self.eta0 / (1 + self.alpha * t)

"""The experiments of a run, in the order they run and appear in RESULTS.md (sections and targets). An explicit
list: a new experiment is one module and one line here (see bench/README.md)."""

import copy

from . import exp1_upload, exp3_calc, exp4_scale, exp5_ceiling, exp6_isolation, exp7_redis, exp8_metrics, exp9_s3, \
    exp10_cluster
from .common import RUN_PARAMS

EXPERIMENTS = (
    exp1_upload.EXPERIMENT,  # Exp 1 and 2 (memory, from the same runs)
    exp3_calc.EXPERIMENT,
    exp4_scale.EXPERIMENT,
    exp5_ceiling.EXPERIMENT,
    exp6_isolation.EXPERIMENT,
    exp7_redis.EXPERIMENT,
    exp8_metrics.EXPERIMENT,
    exp9_s3.EXPERIMENT,
    exp10_cluster.EXPERIMENT,
)

_names = [e.name for e in EXPERIMENTS]
assert len(set(_names)) == len(_names), "two experiments share a name"
_files = [f for e in EXPERIMENTS for f in e.files]
assert len(set(_files)) == len(_files), "two experiments write the same CSV file"


def params(mode):
    """The parameters of a run ("full" or "quick"): the run's own, then each experiment's, in registry order."""
    p = copy.deepcopy(RUN_PARAMS[mode])
    for e in EXPERIMENTS:
        p.update(copy.deepcopy(e.params.get(mode, {})))
    return p

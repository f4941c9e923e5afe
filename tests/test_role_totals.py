"""`RoleTotals`: the per-role loss and KL every backend reports, and their merge across ranks."""

import pytest

from lsp_mlx.backends.base import RoleTotals
from lsp_mlx.records import PolicySample


def sample(role: str, weight: float) -> PolicySample:
    return PolicySample(prompt=[1], completion=[2], advantage=0.0, weight=weight, role=role)


def test_loss_is_weighted_sum_and_kl_is_mean_per_role() -> None:
    totals = RoleTotals()
    chunk = [sample("solver", 0.25), sample("solver", 0.25), sample("challenger", 0.5)]
    totals.add(chunk, kls=[0.1, 0.3, 2.0], per_sample=[4.0, -2.0, 1.0])
    totals.add([sample("solver", 0.25)], kls=[0.2], per_sample=[8.0])
    out = totals.per_role()
    assert out["solver"]["loss"] == pytest.approx(0.25 * (4.0 - 2.0 + 8.0))
    assert out["solver"]["kl"] == pytest.approx((0.1 + 0.3 + 0.2) / 3)
    assert out["challenger"] == pytest.approx({"loss": 0.5, "kl": 2.0})


def test_merging_ranks_equals_one_process() -> None:
    samples = [sample("solver", 0.1 * (i + 1)) for i in range(4)]
    kls, losses = [0.5, 0.1, 0.7, 0.2], [1.0, -1.0, 3.0, 2.0]
    whole = RoleTotals()
    whole.add(samples, kls, losses)
    ranks = [RoleTotals(), RoleTotals()]
    ranks[0].add(samples[:1], kls[:1], losses[:1])
    ranks[1].add(samples[1:], kls[1:], losses[1:])
    merged = RoleTotals()
    for r in ranks:
        merged.merge(r.totals)
    assert merged.per_role()["solver"] == pytest.approx(whole.per_role()["solver"])
    assert RoleTotals().per_role() == {}
